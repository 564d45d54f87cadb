/*
 * tools/repack — stream a CSR matrix into a new file with row-sized chunks.
 * The chunk holds about chunk_rows mean rows, so a random row costs at most
 * two chunk decodes instead of tens.  Every new chunk is encoded here (byte
 * shuffle, then libdeflate's zlib stream or libzstd) and written with HDF5's
 * direct chunk write; zstd is filter 32015, marked optional, so readers
 * without the plugin still open the rest of the file.
 *
 * The work is a pipeline of slices of whole output chunks, a fixed number in
 * flight: the caller's thread makes every HDF5 call (HDF5 is not
 * thread-safe): it looks up where the input chunks of a slice lie, hands the
 * slice to the workers, and writes finished slices in order.  A worker
 * preads the slice's stored input chunks, decodes them (common/codecs: the
 * engine's decoders), and encodes the output chunks.  Input HDF5 cannot be
 * read raw (contiguous storage, a chunk never written, a filter the codecs
 * lack) is read with H5Dread on the caller's thread instead.
 * Threads: scf_repack's caller (HDF5, writes) and its worker threads.
 */
#include "tools/repack.h"

#include <errno.h>
#include <fcntl.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <hdf5.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "common/codecs.h"
#include "tools/h5util.h"

#define JOB_ELEMS (1u << 20)     /* elements per slice (rounded up to whole chunks) */
#define VERIFY_ELEMS (4u << 20)  /* elements compared per step of --verify */
#define MAX_THREADS 256
#define MIN_SLOTS 16             /* slices in flight, at least */
#define MAX_SLOTS 64             /* and at most */
#define ZSTD_FILTER 32015

typedef struct repack {
	const char *in_path, *out_path;
	const scf_repack_opts *o;
	hid_t in, out;
	int fd;                  /* the input, for the workers' preads */
	uint64_t base;           /* user block: chunk addresses are relative to it */
	char *err;
	size_t errlen;
	FILE *progress;
	/* progress */
	uint64_t n_rows, done, total;
	double t0;
	int last, tty;
} repack;

static int fail(repack *r, const char *fmt, ...)
{
	char what[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(r->err, r->errlen, "repack %s -> %s: %s", r->in_path, r->out_path, what);
	return -1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Copy every attribute of src onto dst (types and shapes as they are). */
static herr_t copy_attr(hid_t src, const char *name, const H5A_info_t *info, void *dst_p)
{
	hid_t dst = *(hid_t *)dst_p, a = H5Aopen(src, name, H5P_DEFAULT), t, s, b;
	herr_t rc = -1;

	if (a < 0)
		return -1;
	t = H5Aget_type(a);
	s = H5Aget_space(a);
	size_t bytes = H5Tget_size(t) * (size_t)H5Sget_simple_extent_npoints(s);
	void *buf = malloc(bytes ? bytes : 1);
	if (buf && H5Aread(a, t, buf) >= 0 &&
	    (b = H5Acreate2(dst, name, t, s, H5P_DEFAULT, H5P_DEFAULT)) >= 0) {
		rc = H5Awrite(b, t, buf);
		H5Aclose(b);
	}
	if (buf && H5Tis_variable_str(t) > 0)
		H5Dvlen_reclaim(t, s, H5P_DEFAULT, buf);
	free(buf);
	H5Sclose(s);
	H5Tclose(t);
	H5Aclose(a);
	return rc;
}

static int copy_attrs(hid_t src, hid_t dst)
{
	return H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_attr, &dst) < 0 ? -1 : 0;
}

/* Copy the tree under `path` except the matrix, which is written anew. */
typedef struct walk { repack *r; const char *skip; char prefix[512]; int rc; } walk;

static int copy_tree(repack *r, const char *path);

static herr_t copy_link(hid_t g, const char *name, const H5L_info_t *info, void *w_p)
{
	walk *w = w_p;
	repack *r = w->r;
	char full[768];

	snprintf(full, sizeof(full), "%s%s", w->prefix, name);
	if (strcmp(full, w->skip) == 0)
		return 0;
	size_t n = strlen(full);
	if (strncmp(w->skip, full, n) == 0 && w->skip[n] == '/') {
		/* an ancestor of the matrix: recreate it and descend */
		hid_t sg = H5Gopen2(r->in, full, H5P_DEFAULT);
		hid_t dg = H5Gcreate2(r->out, full, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
		int rc = sg >= 0 && dg >= 0 ? copy_attrs(sg, dg) : -1;
		if (sg >= 0) H5Gclose(sg);
		if (dg >= 0) H5Gclose(dg);
		if (rc == 0)
			rc = copy_tree(r, full);
		w->rc = rc;
		return rc < 0 ? -1 : 0;
	}
	if (H5Ocopy(r->in, full, r->out, full, H5P_DEFAULT, H5P_DEFAULT) < 0) {
		w->rc = fail(r, "cannot copy %s", full);
		return -1;
	}
	return 0;
}

static int copy_tree(repack *r, const char *path)
{
	walk w = { .r = r, .skip = r->o->matrix, .rc = 0 };
	hid_t g = H5Gopen2(r->in, path, H5P_DEFAULT);

	if (g < 0)
		return fail(r, "cannot open %s", path);
	snprintf(w.prefix, sizeof(w.prefix), "%s", strcmp(path, "/") ? path : "");
	if (w.prefix[0])
		strncat(w.prefix, "/", sizeof(w.prefix) - strlen(w.prefix) - 1);
	herr_t rc = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_link, &w);
	H5Gclose(g);
	return rc < 0 || w.rc < 0 ? (w.rc < 0 ? w.rc : fail(r, "cannot walk %s", path)) : 0;
}

/* Creation properties of a rewritten dataset: chunk size and codec. */
static hid_t make_dcpl(repack *r, hsize_t chunk)
{
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);

	H5Pset_chunk(dcpl, 1, &chunk);
	/* Byte shuffle groups the similar high bytes of counts and column ids:
	 * smaller chunks, and zstd decodes them about twice as fast. */
	if (r->o->codec != SCF_CODEC_NONE && !r->o->no_shuffle)
		H5Pset_shuffle(dcpl);
	if (r->o->codec == SCF_CODEC_DEFLATE) {
		H5Pset_deflate(dcpl, r->o->level ? (unsigned)r->o->level : 4);
	} else if (r->o->codec == SCF_CODEC_ZSTD) {
		unsigned level = r->o->level ? (unsigned)r->o->level : 3;
		H5Pset_filter(dcpl, ZSTD_FILTER, H5Z_FLAG_OPTIONAL, 1, &level);
	}
	return dcpl;
}

/* HDF5's shuffle filter, forward: byte b of element i goes to b * n + i. */
static void shuffle_bytes(uint8_t *dst, const uint8_t *src, size_t n, size_t esz)
{
	size_t i = 0;

#ifdef __SSE2__
	/* 4-byte elements (float32 counts, int32 ids: nearly every file), 16 at
	 * a time: three rounds of byte interleaving gather each byte plane; 4x
	 * the scalar loop, which was a tenth of the encoder's time. */
	for (; esz == 4 && i + 16 <= n; i += 16) {
		const __m128i *s = (const __m128i *)(src + 4 * i);
		__m128i a = _mm_loadu_si128(s), b = _mm_loadu_si128(s + 1);
		__m128i c = _mm_loadu_si128(s + 2), d = _mm_loadu_si128(s + 3);
		__m128i ab0 = _mm_unpacklo_epi8(a, b), ab1 = _mm_unpackhi_epi8(a, b);
		__m128i cd0 = _mm_unpacklo_epi8(c, d), cd1 = _mm_unpackhi_epi8(c, d);
		__m128i x0 = _mm_unpacklo_epi8(ab0, ab1), x1 = _mm_unpackhi_epi8(ab0, ab1);
		__m128i y0 = _mm_unpacklo_epi8(cd0, cd1), y1 = _mm_unpackhi_epi8(cd0, cd1);
		__m128i p0 = _mm_unpacklo_epi8(x0, x1), p1 = _mm_unpackhi_epi8(x0, x1);
		__m128i q0 = _mm_unpacklo_epi8(y0, y1), q1 = _mm_unpackhi_epi8(y0, y1);
		_mm_storeu_si128((__m128i *)(dst + i), _mm_unpacklo_epi64(p0, q0));
		_mm_storeu_si128((__m128i *)(dst + n + i), _mm_unpackhi_epi64(p0, q0));
		_mm_storeu_si128((__m128i *)(dst + 2 * n + i), _mm_unpacklo_epi64(p1, q1));
		_mm_storeu_si128((__m128i *)(dst + 3 * n + i), _mm_unpackhi_epi64(p1, q1));
	}
#endif
	for (size_t b = 0; b < esz; b++)
		for (size_t k = i; k < n; k++)
			dst[b * n + k] = src[k * esz + b];
}

/* ---- the slice pipeline ---- */

/* One dataset being rewritten: what the workers need to know. */
typedef struct dsinfo {
	const char *name;
	size_t esz;
	uint64_t n;               /* elements */
	uint64_t chunk;           /* output chunk, elements */
	uint64_t in_chunk;        /* input chunk, elements; 0: read with H5Dread */
	scf__filter filter[SCF__MAX_FILTERS];
	unsigned n_filters;
	int fd;
	uint64_t base;
	int codec, level, shuffle;
} dsinfo;

/* A stored input chunk a slice needs. */
typedef struct rawchunk {
	uint64_t index, addr, len;
	uint32_t mask;
} rawchunk;

/* A slice of whole output chunks: elements [s, e). */
typedef struct job {
	uint64_t s, e;
	int done, failed;         /* pool mu */
	int filled;               /* dec was filled by H5Dread: nothing to decode */
	rawchunk *rc;
	size_t n_rc, cap_rc;
	uint8_t *dec;             /* the slice's elements, zero-padded to whole chunks */
	uint8_t *z;               /* encoded output chunks, back to back */
	size_t z_cap;
	size_t *zoff, *zlen;      /* per output chunk (offsets into dec for no codec) */
	size_t n_out, cap_out;
	char err[400];
} job;

typedef struct pool {
	pthread_mutex_t mu;
	pthread_cond_t cv_work, cv_done;
	job *slot;
	unsigned n_slot;
	uint64_t n_queued, next_take;  /* slices handed to the workers, taken by them */
	int stop;
	const dsinfo *di;
} pool;

/* A worker's codecs and scratch. */
typedef struct worker {
	pool *p;
	pthread_t th;
	int started;
	scf__filter_ctx *fctx;
	struct libdeflate_compressor *dc;
	ZSTD_CCtx *zc;
	uint8_t *chunk;           /* one decoded input chunk */
	uint8_t *raw;             /* one stored input chunk */
	size_t raw_cap;
	uint8_t *sbuf;            /* one shuffled output chunk */
} worker;

/* Grow *buf to at least need bytes. */
static int grow_bytes(uint8_t **buf, size_t *cap, size_t need)
{
	uint8_t *q;

	if (need <= *cap)
		return 0;
	q = realloc(*buf, need);
	if (!q)
		return -1;
	*buf = q;
	*cap = need;
	return 0;
}

/* Read and decode the stored input chunks of a slice into its elements. */
static int decode_job(worker *w, job *j)
{
	const dsinfo *di = w->p->di;
	uint64_t ic = di->in_chunk;
	char why[300];

	for (size_t i = 0; i < j->n_rc; i++) {
		const rawchunk *c = &j->rc[i];
		if (grow_bytes(&w->raw, &w->raw_cap, c->len ? c->len : 1) < 0) {
			snprintf(j->err, sizeof(j->err), "out of memory");
			return -1;
		}
		for (uint64_t got = 0; got < c->len;) {
			ssize_t k = pread(di->fd, w->raw + got, c->len - got,
			                  (off_t)(di->base + c->addr + got));
			if (k <= 0) {
				snprintf(j->err, sizeof(j->err), "chunk %llu: cannot read %llu bytes "
				         "at byte %llu: %s", (unsigned long long)c->index,
				         (unsigned long long)c->len, (unsigned long long)(di->base + c->addr),
				         k < 0 ? strerror(errno) : "end of file");
				return -1;
			}
			got += (uint64_t)k;
		}
		/* a chunk inside the slice decodes in place; one across its edge, aside */
		uint64_t c0 = c->index * ic, lo = c0 > j->s ? c0 : j->s;
		uint64_t hi = c0 + ic < j->e ? c0 + ic : j->e;
		int inside = c0 >= j->s && c0 + ic <= j->e;
		uint8_t *to = inside ? j->dec + (c0 - j->s) * di->esz : w->chunk;
		why[0] = '\0';
		if (scf__filter_decode(w->fctx, di->filter, di->n_filters, c->mask, di->esz, w->raw,
		                       c->len, to, ic * di->esz, why, sizeof(why)) < 0) {
			snprintf(j->err, sizeof(j->err), "chunk %llu does not decode: %s",
			         (unsigned long long)c->index, why);
			return -1;
		}
		if (!inside)
			memcpy(j->dec + (lo - j->s) * di->esz, w->chunk + (lo - c0) * di->esz,
			       (hi - lo) * di->esz);
	}
	return 0;
}

/* Compress one output chunk of `bytes` at src into dst; size or 0 on failure. */
static size_t encode_chunk(worker *w, const uint8_t *src, size_t bytes, uint8_t *dst,
                           size_t cap)
{
	const dsinfo *di = w->p->di;

	if (di->shuffle && di->esz > 1) {
		shuffle_bytes(w->sbuf, src, bytes / di->esz, di->esz);
		src = w->sbuf;
	}
	if (di->codec == SCF_CODEC_DEFLATE)
		return libdeflate_zlib_compress(w->dc, src, bytes, dst, cap);
	size_t z = ZSTD_compressCCtx(w->zc, dst, cap, src, bytes, di->level);
	return ZSTD_isError(z) ? 0 : z;
}

/* Bound on one encoded chunk of `bytes`. */
static size_t encode_bound(worker *w, size_t bytes)
{
	if (w->p->di->codec == SCF_CODEC_DEFLATE)
		return libdeflate_zlib_compress_bound(w->dc, bytes);
	return ZSTD_compressBound(bytes);
}

/* Encode the output chunks of a slice whose elements are in dec. */
static int encode_job(worker *w, job *j)
{
	const dsinfo *di = w->p->di;
	size_t bytes = di->chunk * di->esz, bound, at = 0;

	memset(j->dec + (j->e - j->s) * di->esz, 0, j->n_out * bytes - (j->e - j->s) * di->esz);
	if (di->codec == SCF_CODEC_NONE) {
		for (size_t i = 0; i < j->n_out; i++) {
			j->zoff[i] = i * bytes;
			j->zlen[i] = bytes;
		}
		return 0;
	}
	bound = encode_bound(w, bytes);
	if (grow_bytes(&j->z, &j->z_cap, j->n_out * bound) < 0) {
		snprintf(j->err, sizeof(j->err), "out of memory");
		return -1;
	}
	for (size_t i = 0; i < j->n_out; i++) {
		size_t z = encode_chunk(w, j->dec + i * bytes, bytes, j->z + at, bound);
		if (z == 0) {
			snprintf(j->err, sizeof(j->err), "output chunk %llu does not encode",
			         (unsigned long long)(j->s / di->chunk + i));
			return -1;
		}
		j->zoff[i] = at;
		j->zlen[i] = z;
		at += z;
	}
	return 0;
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	pool *p = w->p;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->next_take == p->n_queued)
			pthread_cond_wait(&p->cv_work, &p->mu);
		if (p->stop)
			break;
		job *j = &p->slot[p->next_take++ % p->n_slot];
		pthread_mutex_unlock(&p->mu);
		int rc = j->filled ? 0 : decode_job(w, j);
		if (rc == 0)
			rc = encode_job(w, j);
		pthread_mutex_lock(&p->mu);
		j->failed = rc < 0;
		j->done = 1;
		pthread_cond_broadcast(&p->cv_done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int worker_init(worker *w, pool *p)
{
	const dsinfo *di = p->di;

	memset(w, 0, sizeof(*w));
	w->p = p;
	if (di->in_chunk) {
		w->fctx = scf__filter_ctx_new();
		w->chunk = malloc(di->in_chunk * di->esz);
		if (!w->fctx || !w->chunk)
			return -1;
	}
	if (di->codec == SCF_CODEC_DEFLATE && !(w->dc = libdeflate_alloc_compressor(di->level)))
		return -1;
	if (di->codec == SCF_CODEC_ZSTD && !(w->zc = ZSTD_createCCtx()))
		return -1;
	if (di->codec != SCF_CODEC_NONE && !(w->sbuf = malloc(di->chunk * di->esz)))
		return -1;
	return 0;
}

static void worker_free(worker *w)
{
	scf__filter_ctx_free(w->fctx);
	libdeflate_free_compressor(w->dc);
	ZSTD_freeCCtx(w->zc);
	free(w->chunk);
	free(w->raw);
	free(w->sbuf);
}

static void job_free(job *j)
{
	free(j->rc);
	free(j->dec);
	free(j->z);
	free(j->zoff);
	free(j->zlen);
}

/* Progress: a \r line on a terminal, else a line per 10%. */
static void progress_add(repack *r, uint64_t elems)
{
	r->done += elems;
	if (!r->progress || !r->o->progress || r->total == 0)
		return;
	int pct = (int)(r->done * 100 / r->total);
	if (pct == r->last || (!r->tty && pct / 10 == r->last / 10 && pct != 100))
		return;
	r->last = pct;
	double t = now_s() - r->t0;
	double cells = (double)r->n_rows * (double)r->done / (double)r->total;
	fprintf(r->progress, "%s  repack: %3d%%, %.1f s, %.0f cells/s%s", r->tty ? "\r" : "",
	        pct, t, t > 0 ? cells / t : 0.0, r->tty && pct < 100 ? "" : "\n");
	fflush(r->progress);
}

/*
 * Caller's thread: where the stored input chunks of a slice lie, or, when
 * they cannot be read raw, the slice itself through H5Dread.
 */
static int prepare_job(repack *r, const dsinfo *di, hid_t sd, hid_t t, job *j)
{
	j->n_rc = 0;
	j->filled = 0;
	j->n_out = (j->e - j->s + di->chunk - 1) / di->chunk;
	if (!di->in_chunk)
		goto whole;
	for (uint64_t c = j->s / di->in_chunk; c <= (j->e - 1) / di->in_chunk; c++) {
		hsize_t off = c * di->in_chunk, size = 0;
		haddr_t addr = HADDR_UNDEF;
		unsigned mask = 0;
		if (H5Dget_chunk_info_by_coord(sd, &off, &mask, &addr, &size) < 0 ||
		    addr == HADDR_UNDEF || size == 0)
			goto whole; /* e.g. a chunk never written: HDF5 knows its fill value */
		if (j->n_rc == j->cap_rc) {
			size_t cap = j->cap_rc ? 2 * j->cap_rc : 16;
			rawchunk *q = realloc(j->rc, cap * sizeof(*q));
			if (!q)
				return fail(r, "out of memory");
			j->rc = q;
			j->cap_rc = cap;
		}
		j->rc[j->n_rc++] = (rawchunk){ .index = c, .addr = addr, .len = size, .mask = mask };
	}
	return 0;
whole:;
	hsize_t start = j->s, cnt = j->e - j->s;
	hid_t fs = H5Dget_space(sd), ms = H5Screate_simple(1, &cnt, NULL);
	int rc = fs >= 0 && ms >= 0 &&
	         H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &cnt, NULL) >= 0 &&
	         H5Dread(sd, t, ms, fs, H5P_DEFAULT, j->dec) >= 0 ? 0 : -1;
	if (ms >= 0)
		H5Sclose(ms);
	if (fs >= 0)
		H5Sclose(fs);
	if (rc < 0)
		return fail(r, "cannot read entries [%llu, %llu) of %s", (unsigned long long)start,
		            (unsigned long long)(start + cnt), di->name);
	j->n_rc = 0;
	j->filled = 1;
	return 0;
}

/* Caller's thread: a finished slice's chunks, in order. */
static int write_job(repack *r, const dsinfo *di, hid_t dd, const job *j)
{
	for (size_t i = 0; i < j->n_out; i++) {
		hsize_t off = j->s + i * di->chunk;
		const uint8_t *b = (di->codec == SCF_CODEC_NONE ? j->dec : j->z) + j->zoff[i];
		if (H5Dwrite_chunk(dd, H5P_DEFAULT, 0, &off, j->zlen[i], b) < 0)
			return fail(r, "cannot write chunk %llu of %s", (unsigned long long)(off / di->chunk),
			            di->name);
	}
	progress_add(r, j->e - j->s);
	return 0;
}

static unsigned worker_count(const scf_repack_opts *o)
{
	long n = o->threads ? (long)o->threads : sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (unsigned)n;
}

/*
 * Slices in flight: enough that the workers keep going while the HDF5
 * thread waits on the disk (write-back throttling stalls it for whole
 * seconds on a busy disk), at least MIN_SLOTS, about 8 MB each at 4 bytes
 * per entry.
 */
static unsigned slot_count(unsigned nw)
{
	unsigned n = 2 * nw + 2;

	n = n < MIN_SLOTS ? MIN_SLOTS : n;
	return n > MAX_SLOTS ? MAX_SLOTS : n;
}

/* Every slice of the dataset through the workers; written in order. */
static int run_pipeline(repack *r, const dsinfo *di, hid_t sd, hid_t t, hid_t dd)
{
	unsigned nw = worker_count(r->o), ns = slot_count(nw);
	uint64_t per = r->o->slice ? r->o->slice : JOB_ELEMS;
	per = per > di->in_chunk ? per : di->in_chunk;
	per = (per + di->chunk - 1) / di->chunk * di->chunk;
	uint64_t n_jobs = (di->n + per - 1) / per, rd = 0, wr = 0;
	size_t outs = per / di->chunk;
	pool p = { .di = di, .n_slot = ns };
	worker *w = calloc(nw, sizeof(*w));
	int rc = 0;

	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv_work, NULL);
	pthread_cond_init(&p.cv_done, NULL);
	p.slot = calloc(ns, sizeof(*p.slot));
	if (!w || !p.slot)
		rc = fail(r, "out of memory");
	for (unsigned i = 0; rc == 0 && i < ns; i++) {
		job *j = &p.slot[i];
		j->dec = malloc(per * di->esz);
		j->zoff = malloc(outs * sizeof(size_t));
		j->zlen = malloc(outs * sizeof(size_t));
		if (!j->dec || !j->zoff || !j->zlen)
			rc = fail(r, "out of memory for %u slices of %llu entries", ns,
			          (unsigned long long)per);
	}
	for (unsigned i = 0; rc == 0 && i < nw; i++) {
		if (worker_init(&w[i], &p) < 0)
			rc = fail(r, "out of memory for the workers");
		else if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0)
			rc = fail(r, "cannot start a worker thread");
		else
			w[i].started = 1;
	}
	while (rc == 0 && wr < n_jobs) {
		/* keep the workers fed, then write the oldest slice when it is done */
		while (rc == 0 && rd < n_jobs && rd - wr < ns) {
			job *j = &p.slot[rd % ns];
			j->s = rd * per;
			j->e = j->s + per < di->n ? j->s + per : di->n;
			if ((rc = prepare_job(r, di, sd, t, j)) < 0)
				break;
			pthread_mutex_lock(&p.mu);
			j->done = 0;
			p.n_queued++;
			pthread_cond_signal(&p.cv_work);
			pthread_mutex_unlock(&p.mu);
			rd++;
		}
		if (rc < 0)
			break;
		job *j = &p.slot[wr % ns];
		pthread_mutex_lock(&p.mu);
		while (!j->done)
			pthread_cond_wait(&p.cv_done, &p.mu);
		pthread_mutex_unlock(&p.mu);
		if (j->failed)
			rc = fail(r, "%s: %s", di->name, j->err);
		else
			rc = write_job(r, di, dd, j);
		wr++;
	}
	pthread_mutex_lock(&p.mu);
	p.stop = 1;
	pthread_cond_broadcast(&p.cv_work);
	pthread_mutex_unlock(&p.mu);
	for (unsigned i = 0; w && i < nw; i++) {
		if (w[i].started)
			pthread_join(w[i].th, NULL);
		worker_free(&w[i]);
	}
	for (unsigned i = 0; p.slot && i < ns; i++)
		job_free(&p.slot[i]);
	free(p.slot);
	free(w);
	pthread_cond_destroy(&p.cv_done);
	pthread_cond_destroy(&p.cv_work);
	pthread_mutex_destroy(&p.mu);
	return rc;
}

/*
 * The input's chunking and filters, when its stored chunks can be read raw
 * and decoded by the workers; in_chunk stays 0 otherwise.
 */
static void describe_input(repack *r, hid_t sd, dsinfo *di)
{
	hid_t dcpl = H5Dget_create_plist(sd);
	hsize_t cd = 0;

	di->in_chunk = 0;
	if (dcpl < 0)
		return;
	if (H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 1, &cd) == 1 && cd > 0 &&
	    H5Pget_external_count(dcpl) == 0) {
		int nf = H5Pget_nfilters(dcpl), ok = nf >= 0 && nf <= SCF__MAX_FILTERS;
		for (int i = 0; ok && i < nf; i++) {
			scf__filter *f = &di->filter[i];
			f->n_cd = 8;
			f->id = H5Pget_filter2(dcpl, (unsigned)i, &f->flags, &f->n_cd, f->cd, 0, NULL,
			                       NULL);
			if (f->n_cd > 8)
				f->n_cd = 8;
			ok = scf__filter_supported(f->id);
		}
		if (ok) {
			di->n_filters = (unsigned)nf;
			di->in_chunk = cd;
		}
	}
	H5Pclose(dcpl);
	(void)r;
}

/* Stream one 1-D dataset of the matrix into its new, rechunked twin. */
static int copy_dataset(repack *r, const char *name, hsize_t chunk)
{
	hid_t sd = H5Dopen2(r->in, name, H5P_DEFAULT), ssp, t, dd = -1, dcpl, dsp;
	hsize_t n = 0, maxd;
	int rc = 0;

	if (sd < 0)
		return fail(r, "%s missing", name);
	ssp = H5Dget_space(sd);
	H5Sget_simple_extent_dims(ssp, &n, NULL);
	t = H5Dget_type(sd);
	if (chunk > n && n > 0)
		chunk = n;
	if (chunk == 0)
		chunk = 1;
	dsinfo di = { .name = name, .esz = H5Tget_size(t), .n = n, .chunk = chunk, .fd = r->fd,
	              .base = r->base, .codec = r->o->codec,
	              .shuffle = r->o->codec != SCF_CODEC_NONE && !r->o->no_shuffle };
	di.level = r->o->level ? r->o->level : r->o->codec == SCF_CODEC_DEFLATE ? 4 : 3;
	describe_input(r, sd, &di);
	dcpl = make_dcpl(r, chunk);
	/* an empty dataset cannot hold a chunk of 1 unless it may grow */
	maxd = n ? n : H5S_UNLIMITED;
	dsp = H5Screate_simple(1, &n, &maxd);
	dd = H5Dcreate2(r->out, name, t, dsp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	if (dd < 0) {
		rc = fail(r, "cannot create %s", name);
		goto out;
	}
	if (n > 0)
		rc = run_pipeline(r, &di, sd, t, dd);
	if (r->progress && rc == 0)
		fprintf(r->progress, "  %s: %llu entries in chunks of %llu%s\n", name,
		        (unsigned long long)n, (unsigned long long)chunk,
		        di.in_chunk ? "" : " (input read through HDF5)");
	if (rc == 0 && copy_attrs(sd, dd) < 0)
		rc = fail(r, "cannot copy the attributes of %s", name);
out:
	if (dd >= 0)
		H5Dclose(dd);
	H5Sclose(dsp);
	H5Pclose(dcpl);
	H5Tclose(t);
	H5Sclose(ssp);
	H5Dclose(sd);
	return rc;
}

/* Elements of a 1-D dataset, or -1. */
static int64_t dset_len(hid_t file, const char *name)
{
	hid_t d = H5Dopen2(file, name, H5P_DEFAULT), sp = d >= 0 ? H5Dget_space(d) : -1;
	hsize_t n = 0;
	int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1 &&
	         H5Sget_simple_extent_dims(sp, &n, NULL) == 1;

	if (sp >= 0)
		H5Sclose(sp);
	if (d >= 0)
		H5Dclose(d);
	return ok ? (int64_t)n : -1;
}

/* The matrix group: its attributes, indptr as is, data and indices rechunked. */
static int write_matrix(repack *r)
{
	const char *key = r->o->matrix;
	char name[300];
	hid_t sg = H5Gopen2(r->in, key, H5P_DEFAULT), dg;
	int64_t nptr, nnz;

	if (sg < 0)
		return fail(r, "%s is not a group (repack handles CSR matrices)", key);
	dg = H5Gcreate2(r->out, key, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	int rc = dg >= 0 ? copy_attrs(sg, dg) : -1;
	H5Gclose(sg);
	if (dg >= 0)
		H5Gclose(dg);
	if (rc < 0)
		return fail(r, "cannot create %s", key);
	snprintf(name, sizeof(name), "%s/indptr", key);
	if ((nptr = dset_len(r->in, name)) < 0 ||
	    H5Ocopy(r->in, name, r->out, name, H5P_DEFAULT, H5P_DEFAULT) < 0)
		return fail(r, "cannot copy %s", name);
	snprintf(name, sizeof(name), "%s/data", key);
	if ((nnz = dset_len(r->in, name)) < 0)
		return fail(r, "%s missing or not 1-D", name);
	r->n_rows = nptr > 0 ? (uint64_t)nptr - 1 : 0;
	r->total = 2 * (uint64_t)nnz;
	double mean = nptr > 1 ? (double)nnz / (double)(nptr - 1) : 1.0;
	hsize_t chunk = (hsize_t)(mean * (r->o->chunk_rows ? r->o->chunk_rows : 4) + 0.5);
	if (chunk < 256)
		chunk = 256;
	if (r->progress)
		fprintf(r->progress, "  %.0f entries per row on average: chunks of %llu entries, "
		        "%u threads\n", mean, (unsigned long long)chunk, worker_count(r->o));
	if (copy_dataset(r, name, chunk) < 0)
		return -1;
	snprintf(name, sizeof(name), "%s/indices", key);
	return copy_dataset(r, name, chunk);
}

/* Where the input's chunk addresses start: after its user block. */
static int open_input(repack *r)
{
	hid_t fcpl = H5Fget_create_plist(r->in);
	hsize_t ub = 0;

	if (fcpl < 0 || H5Pget_userblock(fcpl, &ub) < 0) {
		if (fcpl >= 0)
			H5Pclose(fcpl);
		return fail(r, "cannot read the input's creation properties");
	}
	H5Pclose(fcpl);
	r->base = ub;
	r->fd = open(r->in_path, O_RDONLY | O_CLOEXEC);
	return r->fd < 0 ? fail(r, "cannot open the input: %s", strerror(errno)) : 0;
}

int scf_repack(const char *in, const char *out, const scf_repack_opts *o, FILE *progress,
               char *err, size_t errlen)
{
	scf_repack_opts def = *o;
	repack r = { .in_path = in, .out_path = out, .o = &def, .err = err, .errlen = errlen,
	             .progress = progress, .fd = -1, .last = -1, .t0 = now_s() };
	h5u_quiet q;
	int rc;

	if (!def.matrix)
		def.matrix = "X";
	if (def.codec < SCF_CODEC_NONE || def.codec > SCF_CODEC_ZSTD)
		return fail(&r, "unknown codec %d", def.codec);
	r.tty = progress && isatty(fileno(progress));
	h5u_quiet_on(&q);
	r.in = H5Fopen(in, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (r.in < 0) {
		h5u_quiet_off(&q);
		return fail(&r, "cannot open the input as HDF5");
	}
	r.out = H5Fcreate(out, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	if (r.out < 0) {
		H5Fclose(r.in);
		h5u_quiet_off(&q);
		return fail(&r, "cannot create the output");
	}
	rc = open_input(&r);
	hid_t ir = H5Gopen2(r.in, "/", H5P_DEFAULT), orr = H5Gopen2(r.out, "/", H5P_DEFAULT);
	if (rc == 0 && copy_attrs(ir, orr) < 0)
		rc = fail(&r, "cannot copy the root attributes");
	H5Gclose(ir);
	H5Gclose(orr);
	if (rc == 0)
		rc = copy_tree(&r, "/");
	if (rc == 0)
		rc = write_matrix(&r);
	if (H5Fclose(r.out) < 0 && rc == 0)
		rc = fail(&r, "cannot close the output");
	H5Fclose(r.in);
	if (r.fd >= 0)
		close(r.fd);
	h5u_quiet_off(&q);
	if (rc == 0 && def.verify) {
		if (progress)
			fprintf(progress, "  verifying every entry against the input (H5Dread)\n");
		rc = scf_repack_verify(in, out, def.matrix, progress, err, errlen);
	}
	return rc;
}

/* ---- verify ---- */

/*
 * zstd for HDF5 (filter 32015), for the comparison when no plugin provides
 * one: HDF5 drives the pipeline (and undoes the shuffle itself).  It can
 * encode too, so that a later repack in the same process can still create
 * datasets with the filter (HDF5 refuses a filter registered without an
 * encoder).
 */
static size_t h5z_zstd(unsigned flags, size_t cd_nelmts, const unsigned cd_values[],
                       size_t nbytes, size_t *buf_size, void **buf)
{
	unsigned long long n;
	size_t got;
	void *o;

	if (!(flags & H5Z_FLAG_REVERSE)) {
		size_t cap = ZSTD_compressBound(nbytes);
		int level = cd_nelmts > 0 ? (int)cd_values[0] : 3;
		if (!(o = H5allocate_memory(cap, 0)))
			return 0;
		got = ZSTD_compress(o, cap, *buf, nbytes, level);
		if (ZSTD_isError(got)) {
			H5free_memory(o);
			return 0;
		}
		H5free_memory(*buf);
		*buf = o;
		*buf_size = cap;
		return got;
	}
	n = ZSTD_getFrameContentSize(*buf, nbytes);
	if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN || n > SIZE_MAX / 2)
		return 0;
	if (!(o = H5allocate_memory(n ? (size_t)n : 1, 0)))
		return 0;
	got = ZSTD_decompress(o, (size_t)n, *buf, nbytes);
	if (ZSTD_isError(got) || got != n) {
		H5free_memory(o);
		return 0;
	}
	H5free_memory(*buf);
	*buf = o;
	*buf_size = (size_t)n;
	return got;
}

static void register_zstd(void)
{
	static const H5Z_class2_t cls = { H5Z_CLASS_T_VERS, ZSTD_FILTER, 1, 1,
	                                  "zstd (scfetch repack)", NULL, NULL, h5z_zstd };

	if (H5Zfilter_avail(ZSTD_FILTER) <= 0)
		H5Zregister(&cls);
}

/* Row of element e: the last r with indptr[r] <= e (indptr sorted). */
static uint64_t row_of(const int64_t *indptr, uint64_t n_rows, uint64_t e)
{
	uint64_t lo = 0, hi = n_rows;

	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if ((uint64_t)indptr[mid] <= e)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

typedef struct diff {
	uint64_t rows, first[5], last;
	unsigned n_first;
} diff;

static void diff_row(diff *d, uint64_t row)
{
	if (d->rows && d->last == row)
		return;
	if (d->n_first < 5)
		d->first[d->n_first++] = row;
	d->rows++;
	d->last = row;
}

/* Elements [s, s + cnt) of a 1-D dataset, as stored (type t), into buf. */
static int read_slice(hid_t d, hid_t t, uint64_t s, uint64_t cnt, void *buf)
{
	hsize_t start = s, c = cnt;
	hid_t fs = H5Dget_space(d), ms = H5Screate_simple(1, &c, NULL);
	int rc = fs >= 0 && ms >= 0 &&
	         H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &c, NULL) >= 0 &&
	         H5Dread(d, t, ms, fs, H5P_DEFAULT, buf) >= 0 ? 0 : -1;

	if (ms >= 0)
		H5Sclose(ms);
	if (fs >= 0)
		H5Sclose(fs);
	return rc;
}

/* Compare one dataset of both files; 0 equal, -1 with the rows that differ in r->err. */
static int verify_dataset(repack *r, hid_t fin, hid_t fout, const char *name,
                          const int64_t *indptr, uint64_t n_rows, int is_indptr)
{
	hid_t a = H5Dopen2(fin, name, H5P_DEFAULT), b = H5Dopen2(fout, name, H5P_DEFAULT);
	hid_t ta = a >= 0 ? H5Dget_type(a) : -1, tb = b >= 0 ? H5Dget_type(b) : -1;
	int64_t na = dset_len(fin, name), nb = dset_len(fout, name);
	uint8_t *x = NULL, *y = NULL;
	diff d = { 0 };
	int rc = 0;

	if (a < 0 || b < 0 || ta < 0 || tb < 0 || na < 0 || nb < 0) {
		rc = fail(r, "verify: %s cannot be opened in both files", name);
		goto out;
	}
	if (H5Tequal(ta, tb) <= 0 || na != nb) {
		rc = fail(r, "verify: %s differs in type or length (%lld and %lld entries)", name,
		          (long long)na, (long long)nb);
		goto out;
	}
	size_t esz = H5Tget_size(ta);
	x = malloc(VERIFY_ELEMS * esz);
	y = malloc(VERIFY_ELEMS * esz);
	if (!x || !y) {
		rc = fail(r, "verify: out of memory");
		goto out;
	}
	for (uint64_t s = 0; s < (uint64_t)na; s += VERIFY_ELEMS) {
		uint64_t cnt = (uint64_t)na - s < VERIFY_ELEMS ? (uint64_t)na - s : VERIFY_ELEMS;
		uint64_t r0 = is_indptr ? s : row_of(indptr, n_rows, s);
		uint64_t r1 = is_indptr ? s + cnt - 1 : row_of(indptr, n_rows, s + cnt - 1);
		if (read_slice(a, ta, s, cnt, x) < 0) {
			rc = fail(r, "verify: cannot read entries [%llu, %llu) of %s in the input "
			          "(rows %llu to %llu) with H5Dread", (unsigned long long)s,
			          (unsigned long long)(s + cnt), name, (unsigned long long)r0,
			          (unsigned long long)r1);
			goto out;
		}
		if (read_slice(b, ta, s, cnt, y) < 0) {
			rc = fail(r, "verify: cannot read entries [%llu, %llu) of %s in the output "
			          "(rows %llu to %llu) with H5Dread: a chunk does not decode",
			          (unsigned long long)s, (unsigned long long)(s + cnt), name,
			          (unsigned long long)r0, (unsigned long long)r1);
			goto out;
		}
		if (memcmp(x, y, cnt * esz) == 0)
			continue;
		for (uint64_t i = 0; i < cnt; i++)
			if (memcmp(x + i * esz, y + i * esz, esz) != 0)
				diff_row(&d, is_indptr ? (s + i > 0 ? s + i - 1 : 0)
				                       : row_of(indptr, n_rows, s + i));
	}
	if (d.rows) {
		char list[120] = "";
		for (unsigned i = 0; i < d.n_first; i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%llu",
			         i ? ", " : "", (unsigned long long)d.first[i]);
		rc = fail(r, "verify: %s differs from the input in %llu row%s (row%s %s%s)", name,
		          (unsigned long long)d.rows, d.rows == 1 ? "" : "s",
		          d.n_first == 1 ? "" : "s", list, d.rows > d.n_first ? ", ..." : "");
	}
out:
	free(x);
	free(y);
	if (ta >= 0)
		H5Tclose(ta);
	if (tb >= 0)
		H5Tclose(tb);
	if (a >= 0)
		H5Dclose(a);
	if (b >= 0)
		H5Dclose(b);
	return rc;
}

int scf_repack_verify(const char *in, const char *out, const char *matrix, FILE *progress,
                      char *err, size_t errlen)
{
	scf_repack_opts o = { .matrix = matrix ? matrix : "X" };
	repack r = { .in_path = in, .out_path = out, .o = &o, .err = err, .errlen = errlen,
	             .progress = progress, .fd = -1 };
	char name[300];
	int64_t *indptr = NULL;
	hid_t fin = -1, fout = -1, d = -1;
	int64_t np;
	h5u_quiet q;
	int rc = 0;

	h5u_quiet_on(&q);
	register_zstd();
	fin = H5Fopen(in, H5F_ACC_RDONLY, H5P_DEFAULT);
	fout = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (fin < 0 || fout < 0) {
		rc = fail(&r, "verify: cannot open %s as HDF5", fin < 0 ? "the input" : "the output");
		goto out;
	}
	snprintf(name, sizeof(name), "%s/indptr", o.matrix);
	np = dset_len(fin, name);
	d = H5Dopen2(fin, name, H5P_DEFAULT);
	indptr = np > 0 ? malloc((size_t)np * sizeof(int64_t)) : NULL;
	if (d < 0 || !indptr || H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
	                                indptr) < 0) {
		rc = fail(&r, "verify: cannot read %s of the input", name);
		goto out;
	}
	/* the output's indptr first: the rows of data and indices are the input's */
	rc = verify_dataset(&r, fin, fout, name, indptr, (uint64_t)np - 1, 1);
	snprintf(name, sizeof(name), "%s/data", o.matrix);
	if (rc == 0)
		rc = verify_dataset(&r, fin, fout, name, indptr, (uint64_t)np - 1, 0);
	snprintf(name, sizeof(name), "%s/indices", o.matrix);
	if (rc == 0)
		rc = verify_dataset(&r, fin, fout, name, indptr, (uint64_t)np - 1, 0);
	if (rc == 0 && progress)
		fprintf(progress, "  verified: %s of the output equals the input's, all %lld rows\n",
		        o.matrix, (long long)(np - 1));
out:
	free(indptr);
	if (d >= 0)
		H5Dclose(d);
	if (fout >= 0)
		H5Fclose(fout);
	if (fin >= 0)
		H5Fclose(fin);
	h5u_quiet_off(&q);
	return rc;
}
