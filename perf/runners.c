/*
 * perf/runners — the runners of the suite that need nothing of the engine
 * but its public API: scfetch itself, and the HDF5 library as h5py/anndata
 * drive it.  Both read the fetch sequence the plan (perf/internal/baselines.c)
 * drew with the engine's sampler, so every runner reads the same rows in the
 * same order: scfetch by being configured alike, hdf5 by replaying the
 * plan's row file.
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
#include <time.h>
#include <unistd.h>

#include "scfetch.h"
#include "tools/h5util.h"

/* ---- scfetch: the engine through its public API ---- */

/* Bytes one stored entry occupies in the file (data + indices element sizes). */
static uint64_t csr_entry_bytes(const char *path, const char *matrix)
{
	char name[300];
	uint64_t n = 0;
	h5u_quiet quiet;

	h5u_quiet_on(&quiet);
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
	h5u_quiet_off(&quiet);
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
			s->h = suite_fnv_u64(s->h, b->row_ids[i]);
		s->bc[i] = b->obs ? b->obs[i * b->n_obs] : -1;
	}
	s->ent += suite_batch_entropy(s->bc, b->n_rows);
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
		.obs = cols, .n_obs = 1, .flags = c->flags, .chunk_cache_bytes = c->chunk_cache,
	};
	uint64_t entry = csr_entry_bytes(c->path, c->matrix);
	uint64_t rc0, sc0, rb0, rc1, sc1, rb1;
	sf_loop s = { .fetch_rows = (uint64_t)c->batch * c->fetch, .h = SUITE_FNV_INIT };
	scf_info info = { .size = sizeof(scf_info) };
	scf_stats st0 = { .size = sizeof(scf_stats) }, st = { .size = sizeof(scf_stats) };

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

/* The plan's row sequence (suite_cfg.rows), one fetch at a time. */
typedef struct rowfile {
	FILE *f;
	uint64_t n, n_deliver, cap, *rows;
} rowfile;

/* 1: the next fetch's sorted rows; 0: no more; -1: the file is cut short. */
static int rowfile_next(rowfile *q, uint64_t n_rows)
{
	uint64_t hd[2];

	if (fread(hd, sizeof(hd), 1, q->f) != 1)
		return 0;
	if (hd[0] > q->cap) {
		uint64_t *t = realloc(q->rows, hd[0] * sizeof(*t));
		if (!t)
			return -1;
		q->rows = t;
		q->cap = hd[0];
	}
	if (fread(q->rows, sizeof(uint64_t), hd[0], q->f) != hd[0] || hd[1] > hd[0])
		return -1;
	for (uint64_t i = 0; i < hd[0]; i++)
		if (q->rows[i] >= n_rows)
			return -1;
	q->n = hd[0];
	q->n_deliver = hd[1];
	return 1;
}

/* indptr through H5Dread, as anndata holds it (rows + 1 entries). */
static int read_indptr(const h5x *x, int64_t **ip, uint64_t *n_rows)
{
	hid_t sp = H5Dget_space(x->d[2]);
	hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;

	if (sp >= 0)
		H5Sclose(sp);
	if (n < 1 || !(*ip = malloc((size_t)n * sizeof(**ip))))
		return -1;
	*n_rows = (uint64_t)n - 1;
	return H5Dread(x->d[2], H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, *ip) < 0 ? -1 : 0;
}

/*
 * Replays the plan's row file, so it reads the plan's sequence by
 * construction (perf/suite.c takes the plan's hash for it).
 */
void run_hdf5(const suite_cfg *c, run_res *r)
{
	rowfile q = { 0 };
	h5x x = { .f = -1 };
	uint8_t *bd = NULL, *bi = NULL;
	int64_t *ip = NULL;
	uint64_t cap_d = 0, cap_i = 0, nw = 0, n_rows = 0, rc0, sc0, rb0, rc1, sc1, rb1;
	double *w = NULL, paused = 0;
	int evict = -1, more;
	h5u_quiet quiet;

	h5u_quiet_on(&quiet);
	if (!c->rows || !(q.f = fopen(c->rows, "rb"))) {
		snprintf(r->err, sizeof(r->err), "no row sequence from the plan to replay");
		goto out;
	}
	r->cache_dropped = drop_caches();
	evict = open(c->path, O_RDONLY | O_CLOEXEC);
	if (h5x_open(&x, c) < 0 || read_indptr(&x, &ip, &n_rows) < 0) {
		snprintf(r->err, sizeof(r->err), "%s: HDF5 cannot read %s/{data,indices,indptr} "
		         "(the HDF5 runner reads CSR matrices only)", c->path, c->matrix);
		goto out;
	}
	/* batches the plan's fetches make: whole ones, plus a short last one per fetch */
	uint64_t cells = c->max_cells && c->max_cells < n_rows ? c->max_cells : n_rows;
	uint64_t fetch_rows = (uint64_t)c->batch * c->fetch;
	uint64_t cap = (cells + fetch_rows) / c->batch + cells / fetch_rows + 2;
	w = malloc(cap * sizeof(*w));
	if (!w)
		goto oom;
	suite_proc_io(&rc0, &sc0, &rb0);
	double cpu0 = suite_cpu(), t0 = suite_now();
	int over = 0;
	while (!over && (more = rowfile_next(&q, n_rows)) > 0) {
		/*
		 * A file much larger than RAM: no fetch finds the previous ones in the
		 * page cache.  The eviction itself is not timed.
		 */
		double e0 = suite_now();
		if (evict >= 0 && r->fetches > 0)
			posix_fadvise(evict, 0, 0, POSIX_FADV_DONTNEED);
		double f0 = suite_now();
		paused += f0 - e0;
		/* SparseDataset.to_backed(): indptr = group["indptr"][:] on every X[...] */
		if (c->hdf5_indptr_each_fetch &&
		    H5Dread(x.d[2], H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ip) < 0)
			goto h5fail;
		uint64_t nnz = 0, off = 0, done = 0;
		for (uint64_t i = 0; i < q.n; i++)
			nnz += (uint64_t)(ip[q.rows[i] + 1] - ip[q.rows[i]]);
		if (grow_buf(&bd, &cap_d, nnz * x.esz[0] + 1) < 0 ||
		    grow_buf(&bi, &cap_i, nnz * x.esz[1] + 1) < 0)
			goto oom;
		/* get_compressed_vectors: every row's data slice, then every row's indices slice. */
		for (uint64_t i = 0; i < q.n && !over; i++) {
			uint64_t s = (uint64_t)ip[q.rows[i]], n = (uint64_t)ip[q.rows[i] + 1] - s;
			if (n && read_slice(x.d[0], x.fs[0], x.t[0], s, n, bd + off * x.esz[0]) < 0)
				goto h5fail;
			off += n;
			over = (i & 63) == 63 && suite_now() - t0 - paused > c->time_limit;
		}
		off = 0;
		for (uint64_t i = 0; i < q.n && !over; i++) {
			uint64_t s = (uint64_t)ip[q.rows[i]], n = (uint64_t)ip[q.rows[i] + 1] - s;
			if (n && read_slice(x.d[1], x.fs[1], x.t[1], s, n, bi + off * x.esz[1]) < 0)
				goto h5fail;
			off += n;
			done = i + 1;
			over = (i & 63) == 63 && suite_now() - t0 - paused > c->time_limit;
		}
		/* A fetch cut by the time limit counts the rows whose data and indices both arrived. */
		uint64_t got = done == q.n ? q.n_deliver : done;
		suite_fetch_waits(w, &nw, cap, suite_now() - f0, got, c->batch);
		r->cells += got;
		r->batches += (got + c->batch - 1) / c->batch;
		r->bytes_delivered += off * (x.esz[0] + x.esz[1]);
		r->fetches += done == q.n;
		over = over || suite_now() - t0 - paused > c->time_limit;
	}
	if (!over && more < 0) {
		snprintf(r->err, sizeof(r->err), "%s: the plan's row sequence is cut short or "
		         "names rows past the matrix", c->rows);
		goto out;
	}
	r->secs = suite_now() - t0 - paused;
	r->cpu_s = suite_cpu() - cpu0;
	suite_proc_io(&rc1, &sc1, &rb1);
	r->bytes_read = rc1 - rc0;
	r->reads = sc1 - sc0;
	r->dev_read_bytes = rb1 - rb0;
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
	h5u_quiet_off(&quiet);
	if (q.f)
		fclose(q.f);
	free(q.rows);
	free(bd);
	free(bi);
	free(ip);
	free(w);
}
