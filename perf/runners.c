/*
 * perf/runners — the ways of reading one fetch sequence that the suite
 * compares: scfetch itself, the HDF5 library as h5py/anndata drive it, a
 * synchronous O_DIRECT pread loop over the engine's own planned reads, and
 * the plan alone (its read-size statistics feed fio).  The sequence comes
 * from the engine's sampler with the loader's configuration, so every
 * runner reads the same rows in the same order.
 * Thread: the runner's child process (perf/suite.c forks one per runner).
 */
#include "perf/suite.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/plan.h"
#include "engine/sampler.h"
#include "formats/h5ad.h"
#include "formats/obs.h"
#include "scfetch.h"

/* CPU seconds of this process, every thread (io_uring's workers included). */
double suite_cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

double suite_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/*
 * This process's I/O counters: rchar (bytes read() and friends returned),
 * syscr (read calls), read_bytes (what the block layer fetched, O_DIRECT and
 * buffered alike; io_uring's workers are threads of this process).
 */
void suite_proc_io(uint64_t *rchar, uint64_t *syscr, uint64_t *read_bytes)
{
	char line[256];
	unsigned long long v;
	FILE *f = fopen("/proc/self/io", "r");

	*rchar = *syscr = *read_bytes = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "rchar: %llu", &v) == 1)
			*rchar = v;
		else if (sscanf(line, "syscr: %llu", &v) == 1)
			*syscr = v;
		else if (sscanf(line, "read_bytes: %llu", &v) == 1)
			*read_bytes = v;
	}
	fclose(f);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *w, uint64_t n, double p)
{
	if (n == 0)
		return 0;
	uint64_t k = (uint64_t)ceil(p * (double)n);
	return w[k ? k - 1 : 0];
}

/*
 * The first wait is the pipeline's start (opening, the first fetch): kept
 * apart as first_wait; percentiles are over the waits after it.  The steady
 * figures also leave out the rest of the warm-up: the batches of the first
 * `inflight` fetches, which the loader reads back to back at the start.
 */
void suite_waits(const suite_cfg *c, const char *runner, double *w, uint64_t n, run_res *r)
{
	uint64_t skip = (uint64_t)c->inflight * c->fetch;

	if (n == 0)
		return;
	r->first_wait = w[0];
	if (n > skip + 1) {
		double *s = malloc((n - skip) * sizeof(*s));
		if (s) {
			memcpy(s, w + skip, (n - skip) * sizeof(*s));
			qsort(s, n - skip, sizeof(*s), cmp_double);
			r->steady_p99 = pct(s, n - skip, 0.99);
			r->steady_p999 = pct(s, n - skip, 0.999);
			r->steady_max = s[n - skip - 1];
			free(s);
		}
	}
	qsort(w + 1, n - 1, sizeof(*w), cmp_double);
	r->wait_p50 = pct(w + 1, n - 1, 0.50);
	r->wait_p99 = pct(w + 1, n - 1, 0.99);
	r->wait_p999 = pct(w + 1, n - 1, 0.999);
	r->wait_max = n > 1 ? w[n - 1] : 0;
	if (!c->out_dir || n < 2)
		return;
	char path[4096];
	snprintf(path, sizeof(path), "%s/waits-%s-%s.dat", c->out_dir, c->tag ? c->tag : "run",
	         runner);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	/* 1000 quantiles keep the file small. */
	fprintf(f, "# wait_us cumulative_fraction (%llu batches after the first)\n",
	        (unsigned long long)(n - 1));
	for (int q = 1; q <= 1000; q++)
		fprintf(f, "%.3f %.4f\n", pct(w + 1, n - 1, q / 1000.0) * 1e6, q / 1000.0);
	fclose(f);
}

/* ---- the fetch sequence, from the engine's sampler ---- */

typedef struct seqsrc {
	scf__matrix m;
	int have_m, have_s;
	scf__sampler s;
	scf__fetch_order o;
	uint64_t k, fetch_rows, target_cells;
	scf__obs_col obs;
	int have_obs;
} seqsrc;

static void seq_close(seqsrc *q)
{
	if (q->have_obs)
		scf__obs_free(&q->obs);
	if (q->have_s)
		scf__sampler_free(&q->s);
	if (q->have_m)
		scf__h5ad_free(&q->m);
	free(q->o.rows);
	free(q->o.perm);
}

/* Rows a run delivers: max_cells rounded up to whole fetches, at most an epoch. */
static uint64_t target_cells(const suite_cfg *c, uint64_t epoch_rows, uint64_t fetch_rows)
{
	if (!c->max_cells)
		return epoch_rows;
	uint64_t n = (c->max_cells + fetch_rows - 1) / fetch_rows * fetch_rows;
	return n < epoch_rows ? n : epoch_rows;
}

/* The loader's sampler configuration (engine/loader.c init_sampler), rank 0 of 1. */
static int seq_open(seqsrc *q, const suite_cfg *c, int want_obs, char *err, size_t len)
{
	uint64_t batches, rows;

	memset(q, 0, sizeof(*q));
	if (scf__h5ad_open(&q->m, c->path, c->matrix, err, len) < 0)
		return -1;
	q->have_m = 1;
	if (q->m.encoding == SCF__CSR && !q->m.indptr) {
		snprintf(err, len, "%s: indptr is stored with a filter HDF5 cannot decode here",
		         c->path);
		return -1;
	}
	scf__sampler_cfg sc = {
		.n_rows = q->m.n_rows, .streaming = c->stream, .fetch_shuffle = !c->stream,
		.batch_size = c->batch, .block_size = c->block, .fetch_factor = c->fetch,
		.seed = c->seed, .world_size = 1, .num_workers = 1,
	};
	if (scf__sampler_init(&q->s, &sc) < 0) {
		snprintf(err, len, "sampler: invalid configuration");
		return -1;
	}
	q->have_s = 1;
	scf__sampler_epoch(&q->s, 0);
	scf__sampler_counts(&q->s, &batches, &rows);
	q->fetch_rows = scf__sampler_fetch_rows(&q->s);
	q->target_cells = target_cells(c, rows, q->fetch_rows);
	q->o.rows = malloc(q->fetch_rows * sizeof(uint64_t));
	q->o.perm = malloc(q->fetch_rows * sizeof(uint32_t));
	if (!q->o.rows || !q->o.perm) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	if (want_obs) {
		if (scf__obs_load(&q->obs, c->path, c->obs_col, q->m.n_rows, err, len) < 0)
			return -1;
		q->have_obs = 1;
		if (q->obs.kind != SCF__OBS_CATEGORICAL) {
			snprintf(err, len, "%s: obs/%s is not categorical", c->path, c->obs_col);
			return -1;
		}
	}
	return 0;
}

/* The next non-empty fetch of epoch 0, or 0 at the end of the epoch. */
static int seq_next(seqsrc *q)
{
	while (q->k < q->s.my_count) {
		scf__sampler_fetch(&q->s, q->k++, &q->o);
		if (q->o.n_deliver > 0)
			return 1;
	}
	return 0;
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		h ^= (v >> (8 * i)) & 0xff;
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_INIT 0xcbf29ce484222325ULL

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

/* Shannon entropy (nats) of the labels of one batch; missing labels (-1) skipped. */
static double batch_entropy(int32_t *codes, uint64_t n)
{
	uint64_t total = 0, run = 0;
	double h = 0;

	qsort(codes, n, sizeof(*codes), cmp_i32);
	for (uint64_t i = 0; i < n; i++)
		total += codes[i] >= 0;
	for (uint64_t i = 0; i < n; i++) {
		if (codes[i] < 0)
			continue;
		run++;
		if (i + 1 == n || codes[i + 1] != codes[i]) {
			double p = (double)run / (double)total;
			h -= p * log(p);
			run = 0;
		}
	}
	return h;
}

/* The paper's reference: batches of the same size drawn truly at random. */
static double random_entropy(const int32_t *codes, uint64_t n_rows, uint32_t batch)
{
	enum { N_BATCHES = 20000 };
	uint64_t *perm = malloc(n_rows * sizeof(*perm)), x = 0x9e3779b97f4a7c15ULL;
	int32_t *b = malloc(batch * sizeof(*b));
	double sum = 0;

	if (!perm || !b || n_rows < batch) {
		free(perm);
		free(b);
		return NAN;
	}
	for (uint64_t i = 0; i < n_rows; i++)
		perm[i] = i;
	for (int k = 0; k < N_BATCHES; k++) {
		/* A partial Fisher-Yates: `batch` distinct rows, uniformly. */
		for (uint32_t i = 0; i < batch; i++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			uint64_t j = i + x % (n_rows - i), t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
			b[i] = codes[perm[i]];
		}
		sum += batch_entropy(b, batch);
	}
	free(perm);
	free(b);
	return sum / N_BATCHES;
}

static scf__plan_cfg plan_cfg(const suite_cfg *c)
{
	return (scf__plan_cfg){ .align = 4096, .max_read = c->max_read,
	                        .gap = c->gap == UINT32_MAX ? 0 : c->gap };
}

/* Read-size bins: 4 KiB steps, then x1.5 / x2 steps up to 64 MiB. */
static int bin_of(uint64_t len)
{
	static uint64_t edge[SUITE_BINS];
	static int n;

	if (!n) {
		uint64_t e = 4096;
		for (int i = 0; i < 4; i++)
			edge[n++] = e * (i + 1);
		for (e = 16384; n < SUITE_BINS - 1 && e < (64ull << 20); e *= 2) {
			edge[n++] = e + e / 2;
			edge[n++] = 2 * e;
		}
		edge[n++] = UINT64_MAX;
	}
	for (int i = 0; i < n; i++)
		if (len <= edge[i])
			return i;
	return n - 1;
}

/* ---- plan: what the engine would read, without reading it ---- */

/*
 * rows_path, when set, receives the sequence for out-of-process runners
 * (perf/anndata_runner.py): per fetch, u64 n, u64 n_deliver, n sorted rows.
 */
void run_plan(const suite_cfg *c, run_res *r, const char *iolog_path, const char *rows_path)
{
	seqsrc q;
	scf__plan p;
	scf__plan_cfg pc = plan_cfg(c);
	uint64_t *lens = NULL, n_lens = 0, cap_lens = 0, bin_bytes[SUITE_BINS] = { 0 };
	uint64_t h = FNV_INIT, ent_n = 0;
	double ent_sum = 0;
	int32_t *bc = NULL;
	FILE *log = NULL, *rf = NULL;

	scf__plan_init(&p);
	if (seq_open(&q, c, 1, r->err, sizeof(r->err)) < 0)
		goto out;
	bc = malloc(c->batch * sizeof(*bc));
	if (!bc)
		goto oom;
	if (iolog_path) {
		log = fopen(iolog_path, "w");
		if (log)
			fprintf(log, "fio version 2 iolog\n%s add\n%s open\n", c->path, c->path);
	}
	if (rows_path)
		rf = fopen(rows_path, "wb");
	while (r->cells < q.target_cells && seq_next(&q)) {
		if (scf__plan_build(&p, &q.m, &pc, q.o.rows, q.o.n) < 0) {
			snprintf(r->err, sizeof(r->err), "plan: out of memory");
			goto out;
		}
		for (uint64_t i = 0; i < p.n_reads; i++) {
			uint64_t len = p.reads[i].len;
			if (n_lens == cap_lens) {
				cap_lens = cap_lens ? 2 * cap_lens : 65536;
				uint64_t *t = realloc(lens, cap_lens * sizeof(*lens));
				if (!t)
					goto oom;
				lens = t;
			}
			lens[n_lens++] = len;
			int b = bin_of(len);
			r->bin_count[b]++;
			bin_bytes[b] += len;
			r->bytes_read += len;
			if (log)
				fprintf(log, "%s read %llu %llu\n", c->path,
				        (unsigned long long)p.reads[i].file_off, (unsigned long long)len);
		}
		r->reads += p.n_reads;
		r->bytes_delivered += p.bytes_requested;
		if (rf) {
			uint64_t hd[2] = { q.o.n, q.o.n_deliver };
			fwrite(hd, sizeof(hd), 1, rf);
			fwrite(q.o.rows, sizeof(uint64_t), q.o.n, rf);
		}
		if (p.bytes_requested > r->fetch_bytes_max)
			r->fetch_bytes_max = p.bytes_requested;
		if (p.staging_bytes > r->staging_max)
			r->staging_max = p.staging_bytes;
		/* Output buffers: float32 data, int32 indices, int64 indptr per batch, row ids, codes. */
		uint64_t arena = p.nnz * 8 + (q.o.n + c->fetch) * 8 + q.o.n * 12;
		if (arena > r->arena_max)
			r->arena_max = arena;
		for (uint64_t j = 0; j < q.o.n_deliver; j += c->batch) {
			uint64_t nb = q.o.n_deliver - j < c->batch ? q.o.n_deliver - j : c->batch;
			for (uint64_t t = 0; t < nb; t++) {
				uint64_t row = q.o.rows[q.o.perm[j + t]];
				bc[t] = q.obs.codes[row];
				if (r->fetches == 0)
					h = fnv_u64(h, row);
			}
			ent_sum += batch_entropy(bc, nb);
			ent_n++;
			r->batches++;
		}
		r->cells += q.o.n_deliver;
		r->fetches++;
	}
	if (log) {
		fprintf(log, "%s close\n", c->path);
		fclose(log);
		log = NULL;
	}
	r->first_fetch_hash = h;
	r->entropy = ent_n ? ent_sum / ent_n : 0;
	r->entropy_random = random_entropy(q.obs.codes, q.m.n_rows, c->batch);
	r->fetch_bytes_mean = r->fetches ? r->bytes_delivered / r->fetches : 0;
	r->reads_per_fetch = r->fetches ? (double)r->reads / r->fetches : 0;
	r->read_mean = r->reads ? (double)r->bytes_read / r->reads : 0;
	r->amp = r->bytes_delivered ? (double)r->bytes_read / r->bytes_delivered : 0;
	if (n_lens) {
		double *d = malloc(n_lens * sizeof(*d));
		if (!d)
			goto oom;
		for (uint64_t i = 0; i < n_lens; i++)
			d[i] = (double)lens[i];
		qsort(d, n_lens, sizeof(*d), cmp_double);
		r->read_median = pct(d, n_lens, 0.5);
		free(d);
	}
	double depth = ceil(r->reads_per_fetch * c->inflight);
	r->depth_used = depth < c->qd - 1 ? (uint32_t)(depth > 1 ? depth : 1) : c->qd - 1;
	r->indptr_bytes = (q.m.n_rows + 1) * sizeof(int64_t);
	r->n_rows = q.m.n_rows;
	for (int b = 0; b < SUITE_BINS; b++) {
		if (!r->bin_count[b])
			continue;
		uint64_t mean = bin_bytes[b] / r->bin_count[b];
		r->bin_size[r->n_bins] = (mean + 4095) / 4096 * 4096;
		r->bin_count[r->n_bins++] = r->bin_count[b];
	}
	for (uint32_t b = r->n_bins; b < SUITE_BINS; b++)
		r->bin_count[b] = r->bin_size[b] = 0;
	r->ok = 1;
	goto out;
oom:
	snprintf(r->err, sizeof(r->err), "plan: out of memory");
out:
	if (log)
		fclose(log);
	if (rf && fclose(rf) != 0 && r->ok) {
		r->ok = 0;
		snprintf(r->err, sizeof(r->err), "%s: cannot write the row sequence", rows_path);
	}
	free(lens);
	free(bc);
	scf__plan_free(&p);
	seq_close(&q);
}

/* ---- scfetch: the engine through its public API ---- */

/* Bytes one stored entry occupies in the file (data + indices element sizes). */
static uint64_t csr_entry_bytes(const char *path, const char *matrix)
{
	char name[300];
	uint64_t n = 0;
	H5E_auto2_t fn;
	void *fd;

	H5Eget_auto2(H5E_DEFAULT, &fn, &fd);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	for (int i = 0; i < 2 && f >= 0; i++) {
		snprintf(name, sizeof(name), "%s/%s", matrix, i ? "indices" : "data");
		hid_t d = H5Dopen2(f, name, H5P_DEFAULT), t = d >= 0 ? H5Dget_type(d) : -1;
		n += t >= 0 ? H5Tget_size(t) : 0;
		if (t >= 0)
			H5Tclose(t);
		if (d >= 0)
			H5Dclose(d);
	}
	if (f >= 0)
		H5Fclose(f);
	H5Eset_auto2(H5E_DEFAULT, fn, fd);
	return n ? n : 8;
}

static void sleep_until(double t)
{
	struct timespec ts = { .tv_sec = (time_t)t, .tv_nsec = (long)((t - floor(t)) * 1e9) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/*
 * Consume until `until` cells (or the end of the stream); -1 on error.  Warm-up
 * batches count for the entropy and the sequence hash, not for the figures.
 */
typedef struct sf_loop {
	scf_loader *l;
	uint64_t fetch_rows, h, nw, cap, consumed;
	int32_t *bc;
	double ent, *w;
	uint64_t ent_n;
} sf_loop;

static void sf_batch(sf_loop *s, const scf_batch *b)
{
	for (uint64_t i = 0; i < b->n_rows; i++) {
		if (s->consumed + i < s->fetch_rows)
			s->h = fnv_u64(s->h, b->row_ids[i]);
		s->bc[i] = b->obs ? b->obs[i * b->n_obs] : -1;
	}
	s->ent += batch_entropy(s->bc, b->n_rows);
	s->ent_n++;
	s->consumed += b->n_rows;
}

static int sf_warmup(sf_loop *s, uint64_t until, char *err, size_t len)
{
	while (s->consumed < until) {
		scf_batch *b;
		int rc = scf_next(s->l, &b);
		if (rc == SCF_END_OF_EPOCH)
			continue;
		if (rc < 0) {
			snprintf(err, len, "%s", scf_errmsg(s->l));
			return -1;
		}
		sf_batch(s, b);
		scf_release(s->l, b);
	}
	return 0;
}

void run_scfetch(const suite_cfg *c, run_res *r)
{
	const char *cols[1] = { c->obs_col };
	scf_options o = {
		.size = sizeof(o), .matrix = c->matrix,
		.strategy = c->stream ? SCF_STRATEGY_STREAMING : SCF_STRATEGY_BLOCK_SHUFFLING,
		.batch_size = c->batch, .block_size = c->block, .fetch_factor = c->fetch,
		.seed = c->seed, .fetches_in_flight = c->inflight, .queue_depth = c->qd,
		.max_read = c->max_read, .coalesce_gap = c->gap, .threads = c->threads,
		.obs = cols, .n_obs = 1,
	};
	uint64_t entry = csr_entry_bytes(c->path, c->matrix);
	uint64_t rc0, sc0, rb0, rc1, sc1, rb1;
	sf_loop s = { .fetch_rows = (uint64_t)c->batch * c->fetch, .h = FNV_INIT };
	scf_info info;
	scf_stats st0, st;

	s.bc = malloc(c->batch * sizeof(*s.bc));
	if (!s.bc || scf_open(&s.l, c->path, &o, r->err, sizeof(r->err)) < 0)
		goto out;
	scf_info_get(s.l, &info);
	/* The loader runs on into the next epochs when asked for more than one. */
	uint64_t target = c->max_cells ? (c->max_cells + s.fetch_rows - 1) / s.fetch_rows * s.fetch_rows
	                               : info.rows_per_epoch;
	s.cap = target / c->batch + 2;
	s.w = malloc(s.cap * sizeof(*s.w));
	if (!s.w) {
		snprintf(r->err, sizeof(r->err), "out of memory");
		goto out;
	}
	/* A paced consumer starts cold: its warm-up is part of what it measures. */
	if (c->pace_interval <= 0 && sf_warmup(&s, c->warmup_cells, r->err, sizeof(r->err)) < 0)
		goto out;
	uint64_t start = s.consumed;
	scf_stats_get(s.l, &st0);
	suite_proc_io(&rc0, &sc0, &rb0);
	double cpu0 = suite_cpu(), t0 = suite_now(), next = t0;
	for (;;) {
		scf_batch *b;
		double w0 = suite_now();
		int rc = scf_next(s.l, &b);
		double w1 = suite_now();
		if (rc == SCF_END_OF_EPOCH) {
			if (s.consumed - start >= target || info.rows_per_epoch == 0)
				break;
			continue;
		}
		if (rc < 0) {
			snprintf(r->err, sizeof(r->err), "%s", scf_errmsg(s.l));
			goto out;
		}
		if (s.nw < s.cap)
			s.w[s.nw++] = w1 - w0;
		sf_batch(&s, b);
		r->batches++;
		r->bytes_delivered += b->nnz * entry;
		scf_release(s.l, b);
		/* A generous bound of its own: the loader is not the slow runner. */
		if (s.consumed - start >= target || w1 - t0 > 12 * c->time_limit)
			break;
		if (c->pace_interval > 0) {
			next += c->pace_interval;
			sleep_until(next);
		}
	}
	r->secs = suite_now() - t0;
	r->cpu_s = suite_cpu() - cpu0;
	r->cells = s.consumed - start;
	scf_stats_get(s.l, &st);
	suite_proc_io(&rc1, &sc1, &rb1);
	r->bytes_read = st.bytes_read - st0.bytes_read;
	r->reads = st.reads_submitted - st0.reads_submitted;
	r->fetches = st.fetches;
	r->dev_read_bytes = rb1 - rb0;
	r->direct = st.direct;
	r->pinned = st.pinned;
	r->entropy = s.ent_n ? s.ent / s.ent_n : 0;
	r->first_fetch_hash = s.h;
	/* Amplification on the engine's own books (fetches read ahead and not consumed alike). */
	uint64_t req = st.bytes_requested - st0.bytes_requested;
	r->amp = req ? (double)r->bytes_read / req : 0;
	/*
	 * bytes_read counts reads when planned, reads_submitted when submitted: at
	 * the stop they differ by the fetches read ahead, so no mean from them.
	 * The planner's mean (the plan runner's) is the engine's.
	 */
	r->read_mean = NAN;
	suite_waits(c, c->pace_interval > 0 ? "paced" : "scfetch", s.w, s.nw, r);
	r->ok = 1;
out:
	scf_close(s.l);
	free(s.w);
	free(s.bc);
}

/* ---- pread: the planner's reads, one synchronous O_DIRECT pread at a time ---- */

/* Read [off, off+len); the file may end after `need` bytes (alignment padding). */
static int pread_full(int fd, uint8_t *buf, uint64_t len, uint64_t off, uint64_t need)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return done >= need ? 0 : -ENODATA;
		done += (uint64_t)n;
	}
	return 0;
}

/* Waits of a synchronous loader: the first batch of a fetch waits for all of it. */
static void push_fetch_waits(double *w, uint64_t *nw, uint64_t cap, double fetch_secs,
                             uint64_t rows, uint32_t batch)
{
	for (uint64_t j = 0; j < rows && *nw < cap; j += batch)
		w[(*nw)++] = j == 0 ? fetch_secs : 0.0;
}

void run_pread(const suite_cfg *c, run_res *r)
{
	seqsrc q;
	scf__plan p;
	scf__plan_cfg pc = plan_cfg(c);
	uint8_t *buf = NULL;
	uint64_t cap_buf = 0, nw = 0, h = FNV_INIT, rc0, sc0, rb0, rc1, sc1, rb1;
	double *w = NULL;
	int fd = -1;

	scf__plan_init(&p);
	if (seq_open(&q, c, 0, r->err, sizeof(r->err)) < 0)
		goto out;
	fd = open(c->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		snprintf(r->err, sizeof(r->err), "%s: open O_DIRECT: %s", c->path, strerror(errno));
		goto out;
	}
	r->direct = 1;
	uint64_t cap = q.target_cells / c->batch + 2;
	w = malloc(cap * sizeof(*w));
	if (!w)
		goto oom;
	suite_proc_io(&rc0, &sc0, &rb0);
	double cpu0 = suite_cpu(), t0 = suite_now();
	while (r->cells < q.target_cells && seq_next(&q)) {
		double f0 = suite_now();
		if (scf__plan_build(&p, &q.m, &pc, q.o.rows, q.o.n) < 0)
			goto oom;
		if (p.staging_bytes > cap_buf) {
			free(buf);
			cap_buf = (p.staging_bytes + p.staging_bytes / 4 + 4095) / 4096 * 4096;
			if (posix_memalign((void **)&buf, 4096, cap_buf) != 0) {
				buf = NULL;
				goto oom;
			}
		}
		for (uint64_t i = 0; i < p.n_reads; i++) {
			const scf__read *rd = &p.reads[i];
			int e = pread_full(fd, buf + rd->staging_off, rd->len, rd->file_off, rd->need);
			if (e < 0) {
				snprintf(r->err, sizeof(r->err), "pread of %u bytes at %llu: %s", rd->len,
				         (unsigned long long)rd->file_off, strerror(-e));
				goto out;
			}
			r->bytes_read += rd->len;
		}
		push_fetch_waits(w, &nw, cap, suite_now() - f0, q.o.n_deliver, c->batch);
		if (r->fetches == 0)
			for (uint64_t j = 0; j < q.o.n_deliver; j++)
				h = fnv_u64(h, q.o.rows[q.o.perm[j]]);
		r->reads += p.n_reads;
		r->cells += q.o.n_deliver;
		r->batches += (q.o.n_deliver + c->batch - 1) / c->batch;
		r->bytes_delivered += p.bytes_requested;
		r->fetches++;
		if (suite_now() - t0 > c->time_limit)
			break;
	}
	r->secs = suite_now() - t0;
	r->cpu_s = suite_cpu() - cpu0;
	suite_proc_io(&rc1, &sc1, &rb1);
	r->dev_read_bytes = rb1 - rb0;
	r->first_fetch_hash = h;
	r->amp = r->bytes_delivered ? (double)r->bytes_read / r->bytes_delivered : 0;
	r->read_mean = r->reads ? (double)r->bytes_read / r->reads : 0;
	r->entropy = NAN; /* the plan's: same sequence */
	suite_waits(c, "pread", w, nw, r);
	r->ok = 1;
	goto out;
oom:
	snprintf(r->err, sizeof(r->err), "out of memory");
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(w);
	scf__plan_free(&p);
	seq_close(&q);
}

/* ---- hdf5: what anndata 0.8 does for X[sorted_rows] on a backed CSR ---- */

/* Page cache off the table: O_DIRECT is impossible through HDF5's sec2 driver. */
static int drop_caches(void)
{
	sync();
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int ok = write(fd, "3\n", 2) == 2;
	close(fd);
	return ok;
}

/* h5py's dset[s:e]: a fresh memory space, a hyperslab of the file space, one H5Dread. */
static int read_slice(hid_t d, hid_t fs, hid_t mt, hsize_t s, hsize_t n, void *buf)
{
	hid_t ms = H5Screate_simple(1, &n, NULL);
	int rc = ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, &s, NULL, &n, NULL) >= 0 &&
	         H5Dread(d, mt, ms, fs, H5P_DEFAULT, buf) >= 0 ? 0 : -1;
	if (ms >= 0)
		H5Sclose(ms);
	return rc;
}

typedef struct h5x {
	hid_t f, d[3], t[3], fs[2]; /* data, indices, indptr */
	size_t esz[2];
} h5x;

static int h5x_open(h5x *x, const suite_cfg *c)
{
	static const char *const names[3] = { "data", "indices", "indptr" };
	char name[300];

	/* h5py.File(path, "r"): default driver (sec2), default 1 MiB chunk cache. */
	x->f = H5Fopen(c->path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (x->f < 0)
		return -1;
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "%s/%s", c->matrix, names[i]);
		x->d[i] = H5Dopen2(x->f, name, H5P_DEFAULT);
		if (x->d[i] < 0)
			return -1;
		hid_t ft = H5Dget_type(x->d[i]);
		/* numpy's dtype of the dataset: the native twin of the file type, no conversion. */
		x->t[i] = H5Tget_native_type(ft, H5T_DIR_ASCEND);
		H5Tclose(ft);
		if (i < 2) {
			x->esz[i] = H5Tget_size(x->t[i]);
			x->fs[i] = H5Dget_space(x->d[i]);
		}
	}
	return 0;
}

static void h5x_close(h5x *x)
{
	for (int i = 0; i < 3; i++) {
		if (i < 2 && x->fs[i] > 0)
			H5Sclose(x->fs[i]);
		if (x->t[i] > 0)
			H5Tclose(x->t[i]);
		if (x->d[i] > 0)
			H5Dclose(x->d[i]);
	}
	if (x->f > 0)
		H5Fclose(x->f);
}

static int grow_buf(uint8_t **b, uint64_t *cap, uint64_t need)
{
	if (need <= *cap)
		return 0;
	free(*b);
	*cap = need + need / 4;
	*b = malloc(*cap);
	return *b ? 0 : -1;
}

void run_hdf5(const suite_cfg *c, run_res *r)
{
	seqsrc q;
	h5x x = { .f = -1 };
	uint8_t *bd = NULL, *bi = NULL;
	int64_t *ip = NULL;
	uint64_t cap_d = 0, cap_i = 0, nw = 0, h = FNV_INIT, rc0, sc0, rb0, rc1, sc1, rb1;
	double *w = NULL, paused = 0;
	int evict = -1;
	H5E_auto2_t efn;
	void *edata;

	H5Eget_auto2(H5E_DEFAULT, &efn, &edata);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	if (seq_open(&q, c, 0, r->err, sizeof(r->err)) < 0)
		goto out;
	if (q.m.encoding != SCF__CSR) {
		snprintf(r->err, sizeof(r->err), "the HDF5 runner reads CSR matrices only");
		goto out;
	}
	uint64_t cap = q.target_cells / c->batch + 2;
	w = malloc(cap * sizeof(*w));
	ip = malloc((q.m.n_rows + 1) * sizeof(*ip));
	if (!w || !ip)
		goto oom;
	r->cache_dropped = drop_caches();
	evict = open(c->path, O_RDONLY | O_CLOEXEC);
	if (h5x_open(&x, c) < 0) {
		snprintf(r->err, sizeof(r->err), "%s: HDF5 cannot open %s/{data,indices,indptr}",
		         c->path, c->matrix);
		goto out;
	}
	suite_proc_io(&rc0, &sc0, &rb0);
	double cpu0 = suite_cpu(), t0 = suite_now();
	int over = 0;
	while (!over && r->cells < q.target_cells && seq_next(&q)) {
		/*
		 * A file much larger than RAM: no fetch finds the previous ones in the
		 * page cache.  The eviction itself is not timed.
		 */
		double e0 = suite_now();
		if (evict >= 0 && r->fetches > 0)
			posix_fadvise(evict, 0, 0, POSIX_FADV_DONTNEED);
		double f0 = suite_now();
		paused += f0 - e0;
		const int64_t *ipt = q.m.indptr;
		/* SparseDataset.to_backed(): indptr = group["indptr"][:] on every X[...] */
		if (c->hdf5_indptr_each_fetch) {
			if (H5Dread(x.d[2], H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ip) < 0)
				goto h5fail;
			ipt = ip;
		}
		uint64_t nnz = 0, off = 0, done = 0;
		for (uint64_t i = 0; i < q.o.n; i++)
			nnz += (uint64_t)(ipt[q.o.rows[i] + 1] - ipt[q.o.rows[i]]);
		if (grow_buf(&bd, &cap_d, nnz * x.esz[0] + 1) < 0 ||
		    grow_buf(&bi, &cap_i, nnz * x.esz[1] + 1) < 0)
			goto oom;
		/* get_compressed_vectors: every row's data slice, then every row's indices slice. */
		for (uint64_t i = 0; i < q.o.n && !over; i++) {
			uint64_t s = (uint64_t)ipt[q.o.rows[i]], n = (uint64_t)ipt[q.o.rows[i] + 1] - s;
			if (n && read_slice(x.d[0], x.fs[0], x.t[0], s, n, bd + off * x.esz[0]) < 0)
				goto h5fail;
			off += n;
			over = (i & 63) == 63 && suite_now() - t0 - paused > c->time_limit;
		}
		off = 0;
		for (uint64_t i = 0; i < q.o.n && !over; i++) {
			uint64_t s = (uint64_t)ipt[q.o.rows[i]], n = (uint64_t)ipt[q.o.rows[i] + 1] - s;
			if (n && read_slice(x.d[1], x.fs[1], x.t[1], s, n, bi + off * x.esz[1]) < 0)
				goto h5fail;
			off += n;
			done = i + 1;
			over = (i & 63) == 63 && suite_now() - t0 - paused > c->time_limit;
		}
		/* A fetch cut by the time limit counts the rows whose data and indices both arrived. */
		uint64_t got = done == q.o.n ? q.o.n_deliver : done;
		push_fetch_waits(w, &nw, cap, suite_now() - f0, got, c->batch);
		if (r->fetches == 0 && done == q.o.n)
			for (uint64_t j = 0; j < q.o.n_deliver; j++)
				h = fnv_u64(h, q.o.rows[q.o.perm[j]]);
		r->cells += got;
		r->batches += (got + c->batch - 1) / c->batch;
		r->bytes_delivered += off * (x.esz[0] + x.esz[1]);
		r->fetches += done == q.o.n;
		over = over || suite_now() - t0 - paused > c->time_limit;
	}
	r->secs = suite_now() - t0 - paused;
	r->cpu_s = suite_cpu() - cpu0;
	suite_proc_io(&rc1, &sc1, &rb1);
	r->bytes_read = rc1 - rc0;
	r->reads = sc1 - sc0;
	r->dev_read_bytes = rb1 - rb0;
	r->first_fetch_hash = h;
	/* What the disk delivered (readahead and whole chunks included) per byte of rows. */
	r->amp = r->bytes_delivered ? (double)r->dev_read_bytes / r->bytes_delivered : 0;
	r->read_mean = r->reads ? (double)r->bytes_read / r->reads : 0;
	r->entropy = NAN;
	suite_waits(c, "hdf5", w, nw, r);
	r->ok = 1;
	goto out;
h5fail:
	snprintf(r->err, sizeof(r->err), "%s: H5Dread failed", c->path);
	goto out;
oom:
	snprintf(r->err, sizeof(r->err), "out of memory");
out:
	if (evict >= 0)
		close(evict);
	h5x_close(&x);
	H5Eset_auto2(H5E_DEFAULT, efn, edata);
	free(bd);
	free(bi);
	free(ip);
	free(w);
	seq_close(&q);
}
