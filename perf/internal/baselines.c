/*
 * perf/internal/baselines — the suite's runners that need the engine's
 * internals, in a program of their own (scf_baselines) so that scf_suite
 * itself uses the public API only.  Internal on purpose: they take the
 * fetch sequence from the engine's sampler and the reads from its planner.
 *   plan   what the engine would read, without reading it: read sizes for
 *          fio, the row sequence and iolog other runners replay, entropies
 *   pread  the planner's reads, one synchronous O_DIRECT pread at a time
 *          (what io_uring buys, isolated)
 * usage: scf_baselines plan|pread ARGS (as perf/common.c suite_cfg_argv
 * writes them); the figures go to stdout as one run_res, in binary.
 * Thread: the process's only thread.
 */
#include "perf/suite.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/plan.h"
#include "engine/sampler.h"
#include "formats/h5ad.h"
#include "formats/obs.h"

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
		sum += suite_batch_entropy(b, batch);
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
 * c->rows, when set, receives the sequence for the runners that replay it
 * (hdf5, perf/anndata_runner.py): per fetch, u64 n, u64 n_deliver, n sorted
 * rows; c->iolog, when set, the reads as a fio iolog.
 */
static void run_plan(const suite_cfg *c, run_res *r)
{
	seqsrc q;
	scf__plan p;
	scf__plan_cfg pc = plan_cfg(c);
	uint64_t *lens = NULL, n_lens = 0, cap_lens = 0, bin_bytes[SUITE_BINS] = { 0 };
	uint64_t h = SUITE_FNV_INIT, ent_n = 0;
	double ent_sum = 0;
	int32_t *bc = NULL;
	FILE *log = NULL, *rf = NULL;

	scf__plan_init(&p);
	if (seq_open(&q, c, 1, r->err, sizeof(r->err)) < 0)
		goto out;
	bc = malloc(c->batch * sizeof(*bc));
	if (!bc)
		goto oom;
	if (c->iolog) {
		log = fopen(c->iolog, "w");
		if (log)
			fprintf(log, "fio version 2 iolog\n%s add\n%s open\n", c->path, c->path);
	}
	if (c->rows)
		rf = fopen(c->rows, "wb");
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
					h = suite_fnv_u64(h, row);
			}
			ent_sum += suite_batch_entropy(bc, nb);
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
		qsort(d, n_lens, sizeof(*d), suite_cmp_double);
		r->read_median = suite_pct(d, n_lens, 0.5);
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
		snprintf(r->err, sizeof(r->err), "%s: cannot write the row sequence", c->rows);
	}
	free(lens);
	free(bc);
	scf__plan_free(&p);
	seq_close(&q);
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

static void run_pread(const suite_cfg *c, run_res *r)
{
	seqsrc q;
	scf__plan p;
	scf__plan_cfg pc = plan_cfg(c);
	uint8_t *buf = NULL;
	uint64_t cap_buf = 0, nw = 0, h = SUITE_FNV_INIT, rc0, sc0, rb0, rc1, sc1, rb1;
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
		suite_fetch_waits(w, &nw, cap, suite_now() - f0, q.o.n_deliver, c->batch);
		if (r->fetches == 0)
			for (uint64_t j = 0; j < q.o.n_deliver; j++)
				h = suite_fnv_u64(h, q.o.rows[q.o.perm[j]]);
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

int main(int argc, char **argv)
{
	suite_cfg c;
	run_res *r = calloc(1, sizeof(*r));

	if (!r || argc < 2 || suite_cfg_parse(argc - 1, argv + 1, &c) < 0 ||
	    (strcmp(argv[1], "plan") != 0 && strcmp(argv[1], "pread") != 0)) {
		fprintf(stderr, "usage: scf_baselines plan|pread ARGS (run by scf_suite)\n");
		return 2;
	}
	if (strcmp(argv[1], "plan") == 0)
		run_plan(&c, r);
	else
		run_pread(&c, r);
	if (suite_write_all(STDOUT_FILENO, r, sizeof(*r)) < 0)
		return 1;
	free(r);
	return 0;
}
