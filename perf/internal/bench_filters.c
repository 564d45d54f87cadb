/*
 * perf/internal/bench_filters — decode speed of common/codecs (internal: it
 * calls the decoders directly, not through the public API) on one core, in MB/s
 * of decoded output, for chunks shaped like single-cell data: float32
 * counts (mostly ones and twos) and int32 sorted column indices, 64K
 * elements each, compressed here with libdeflate (level 4, as h5py's gzip
 * default), libzstd (level 3) and a small greedy LZF compressor.
 * Single-threaded; run it on an idle core.  Usage: bench_filters [seconds]
 *
 * With --file F.h5ad: the deflate implementations side by side on the
 * stored chunks of F's X/data and X/indices as the file's writer made them
 * (anndata/h5py: zlib streams): the engine's path (libdeflate), zlib,
 * ISA-L's igzip, and ISA-L stopped after half of each chunk's output (what
 * a partial decode of a chunk's head costs).  MB/s of decoded output, one
 * core.  Usage: bench_filters --file F.h5ad [seconds]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hdf5.h>
#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include "common/codecs.h"

#define CHUNK_ELEMS 65536
#define N_CHUNKS 16 /* distinct chunks, cycled, so one is not decoded from cache */
#define N_GENES 36601

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- what single-cell chunks hold ---- */

/* UMI counts: ~45% ones, ~25% twos, then a geometric tail. */
static void fill_counts(float *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t r = rnd() % 100;
		float c = r < 45 ? 1.0f : r < 70 ? 2.0f : 3.0f;
		if (r >= 70)
			while (c < 2000.0f && rnd() % 100 < 55)
				c += 1.0f + (float)(rnd() % 3);
		v[i] = c;
	}
}

/* CSR column indices: cell after cell, each a sorted subset of the genes. */
static void fill_indices(int32_t *v, size_t n)
{
	size_t at = 0;

	while (at < n) {
		uint64_t nnz = 500 + rnd() % 4500;
		for (int32_t g = 0; g < N_GENES && at < n; g++)
			if (rnd() % N_GENES < nnz)
				v[at++] = g;
	}
}

/* ---- compressors (the writers' side, not timed) ---- */

static void shuffle4(uint8_t *dst, const uint8_t *src, size_t len)
{
	size_t n = len / 4;

	for (size_t b = 0; b < 4; b++)
		for (size_t e = 0; e < n; e++)
			dst[b * n + e] = src[e * 4 + b];
}

static size_t deflate4(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
	struct libdeflate_compressor *z = libdeflate_alloc_compressor(4);
	size_t n = libdeflate_zlib_compress(z, src, len, dst, cap);
	libdeflate_free_compressor(z);
	return n;
}

static size_t zstd3(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
	size_t n = ZSTD_compress(dst, cap, src, len, 3);
	return ZSTD_isError(n) ? 0 : n;
}

/* Emit in[from, to) as literal runs of at most 32 bytes; 0 when out is full. */
static int lzf_literals(const uint8_t *in, size_t from, size_t to, uint8_t *out, size_t *op,
                        size_t cap)
{
	while (from < to) {
		size_t run = to - from > 32 ? 32 : to - from;
		if (*op + 1 + run > cap)
			return 0;
		out[(*op)++] = (uint8_t)(run - 1);
		memcpy(out + *op, in + from, run);
		*op += run;
		from += run;
	}
	return 1;
}

/* Back-reference of len bytes at distance dist, in LZF's 2- or 3-byte form. */
static int lzf_ref(size_t len, size_t dist, uint8_t *out, size_t *op, size_t cap)
{
	size_t l = len - 2, off = dist - 1;

	if (*op + 3 > cap)
		return 0;
	if (l < 7) {
		out[(*op)++] = (uint8_t)((l << 5) | (off >> 8));
	} else {
		out[(*op)++] = (uint8_t)((7 << 5) | (off >> 8));
		out[(*op)++] = (uint8_t)(l - 7);
	}
	out[(*op)++] = (uint8_t)off;
	return 1;
}

/* Greedy LZF with a 3-byte hash: raw stream, as h5py's filter stores it. */
static size_t lzf_compress(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	static uint32_t table[1 << 14];
	size_t ip = 0, op = 0, lit = 0;

	memset(table, 0, sizeof(table));
	while (ip + 3 <= n) {
		uint32_t h = ((uint32_t)in[ip] << 16 | in[ip + 1] << 8 | in[ip + 2]) * 2654435761u >> 18;
		size_t ref = table[h];
		table[h] = (uint32_t)ip + 1;
		if (!ref-- || ip - ref > 8192 || memcmp(in + ref, in + ip, 3)) {
			ip++;
			continue;
		}
		size_t max = n - ip < 264 ? n - ip : 264, len = 3;
		while (len < max && in[ref + len] == in[ip + len])
			len++;
		if (!lzf_literals(in, lit, ip, out, &op, cap) || !lzf_ref(len, ip - ref, out, &op, cap))
			return 0;
		ip += len;
		lit = ip;
	}
	return lzf_literals(in, lit, n, out, &op, cap) ? op : 0;
}

/* ---- the cases ---- */

typedef struct codec {
	const char *name;
	unsigned nf;
	scf__filter pl[2];
	size_t (*compress)(const uint8_t *, size_t, uint8_t *, size_t);
} codec;

#define SHUF { .id = 2, .n_cd = 1, .cd = { 4 } }
#define DEFL { .id = 1, .n_cd = 1, .cd = { 4 } }
#define ZSTD { .id = 32015 }
#define LZF  { .id = 32000, .n_cd = 3, .cd = { 4, 1, CHUNK_ELEMS * 4 } }

static const codec codecs[] = {
	{ "deflate-4", 1, { DEFL }, deflate4 },
	{ "shuffle+deflate-4", 2, { SHUF, DEFL }, deflate4 },
	{ "zstd-3", 1, { ZSTD }, zstd3 },
	{ "shuffle+zstd-3", 2, { SHUF, ZSTD }, zstd3 },
	{ "lzf", 1, { LZF }, lzf_compress },
	{ "shuffle+lzf", 2, { SHUF, LZF }, lzf_compress },
};

typedef struct stored {
	uint8_t *bytes[N_CHUNKS];
	size_t len[N_CHUNKS];
	size_t total;
} stored;

/* Apply the codec's pipeline, writer side, to every source chunk. */
static int store(const codec *cd, uint8_t *const src[], size_t bytes, stored *s)
{
	uint8_t *tmp = malloc(bytes);
	size_t cap = bytes * 2 + 1024;

	s->total = 0;
	for (int k = 0; k < N_CHUNKS; k++) {
		const uint8_t *in = src[k];
		if (cd->nf == 2) {
			shuffle4(tmp, src[k], bytes);
			in = tmp;
		}
		s->bytes[k] = malloc(cap);
		s->len[k] = cd->compress(in, bytes, s->bytes[k], cap);
		s->total += s->len[k];
	}
	free(tmp);
	for (int k = 0; k < N_CHUNKS; k++)
		if (!s->len[k])
			return -1;
	return 0;
}

/* Decode every chunk once and compare, then decode in a loop for `secs`. */
static double run(const codec *cd, uint8_t *const src[], size_t bytes, const stored *s,
                  double secs)
{
	scf__filter_ctx *c = scf__filter_ctx_new();
	uint8_t *out = malloc(bytes);
	char err[256];
	long iters = 0;

	for (int k = 0; k < N_CHUNKS; k++) {
		if (scf__filter_decode(c, cd->pl, cd->nf, 0, 4, s->bytes[k], s->len[k], out, bytes,
		                       err, sizeof(err)) < 0 || memcmp(out, src[k], bytes)) {
			fprintf(stderr, "%s: chunk %d does not round-trip: %s\n", cd->name, k, err);
			exit(1);
		}
	}
	double t0 = now(), t;
	do {
		for (int k = 0; k < N_CHUNKS; k++)
			scf__filter_decode(c, cd->pl, cd->nf, 0, 4, s->bytes[k], s->len[k], out, bytes,
			                   err, sizeof(err));
		iters += N_CHUNKS;
		t = now() - t0;
	} while (t < secs);
	free(out);
	scf__filter_ctx_free(c);
	return (double)iters * bytes / t / 1e6;
}

/* ---- real chunks: deflate implementations side by side ---- */

#define MAX_REAL 48

typedef struct real_chunks {
	uint8_t *in[MAX_REAL];
	size_t in_len[MAX_REAL];
	size_t out_len;   /* decoded bytes of a full chunk */
	int n;
	scf__filter pl[SCF__MAX_FILTERS];
	unsigned nf;
	size_t elem;
} real_chunks;

/* Up to MAX_REAL stored chunks spread over dataset `name`, as written. */
static int load_real(hid_t f, const char *name, real_chunks *rc)
{
	hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
	hid_t sp = d < 0 ? -1 : H5Dget_space(d);
	hid_t dcpl = d < 0 ? -1 : H5Dget_create_plist(d);
	hid_t ty = d < 0 ? -1 : H5Dget_type(d);
	hsize_t nchunks = 0, cdim[1];

	memset(rc, 0, sizeof(*rc));
	if (d < 0 || H5Pget_layout(dcpl) != H5D_CHUNKED || H5Dget_num_chunks(d, sp, &nchunks) < 0)
		return -1;
	H5Pget_chunk(dcpl, 1, cdim);
	rc->elem = H5Tget_size(ty);
	rc->out_len = cdim[0] * rc->elem;
	rc->nf = (unsigned)H5Pget_nfilters(dcpl);
	for (unsigned i = 0; i < rc->nf && i < SCF__MAX_FILTERS; i++) {
		unsigned flags;
		size_t ncd = 8;
		rc->pl[i].id = H5Pget_filter2(dcpl, i, &flags, &ncd, rc->pl[i].cd, 0, NULL, NULL);
		rc->pl[i].flags = flags;
		rc->pl[i].n_cd = ncd;
	}
	for (hsize_t k = 0; k < nchunks && rc->n < MAX_REAL; k += nchunks / MAX_REAL + 1) {
		hsize_t off[1];
		unsigned mask;
		haddr_t addr;
		hsize_t size;
		if (H5Dget_chunk_info(d, sp, k, off, &mask, &addr, &size) < 0 || size == 0)
			continue;
		rc->in[rc->n] = malloc(size);
		if (H5Dread_chunk(d, H5P_DEFAULT, off, &mask, rc->in[rc->n]) < 0)
			return -1;
		rc->in_len[rc->n++] = size;
	}
	H5Tclose(ty);
	H5Pclose(dcpl);
	H5Sclose(sp);
	H5Dclose(d);
	return rc->n ? 0 : -1;
}

typedef size_t (*inflate_fn)(const uint8_t *in, size_t len, uint8_t *out, size_t want,
                             void *ctx);

static size_t via_engine(const uint8_t *in, size_t len, uint8_t *out, size_t want, void *ctx)
{
	const real_chunks *rc = ((void **)ctx)[1];
	char err[200];
	return scf__filter_decode(((void **)ctx)[0], rc->pl, rc->nf, 0, rc->elem, in, len, out,
	                          want, err, sizeof(err)) < 0 ? 0 : want;
}

static size_t via_zlib(const uint8_t *in, size_t len, uint8_t *out, size_t want, void *ctx)
{
	z_stream z;
	(void)ctx;
	memset(&z, 0, sizeof(z));
	if (inflateInit(&z) != Z_OK)
		return 0;
	z.next_in = (uint8_t *)in;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)want;
	int r = inflate(&z, Z_FINISH);
	size_t got = want - z.avail_out;
	inflateEnd(&z);
	return r == Z_STREAM_END || (r == Z_BUF_ERROR && got == want) ? got : 0;
}

/* ISA-L with the zlib wrapper: header parsed, Adler-32 checked at the end. */
static size_t via_isal(const uint8_t *in, size_t len, uint8_t *out, size_t want, void *ctx)
{
	struct inflate_state *st = ctx;
	isal_inflate_init(st);
	st->crc_flag = ISAL_ZLIB;
	st->next_in = (uint8_t *)in;
	st->avail_in = (uint32_t)len;
	st->next_out = out;
	st->avail_out = (uint32_t)want;
	int r = isal_inflate(st);
	size_t got = want - st->avail_out;
	return r >= 0 && got == want ? got : 0;
}

static double time_inflate(const real_chunks *rc, inflate_fn fn, void *ctx, size_t want,
                           uint8_t *out, const uint8_t *const *ref, double secs)
{
	long iters = 0;
	double t0 = now(), t;

	for (int k = 0; k < rc->n; k++)
		if (fn(rc->in[k], rc->in_len[k], out, want, ctx) != want ||
		    memcmp(out, ref[k], want)) {
			fprintf(stderr, "bench_filters: chunk %d does not decode equal\n", k);
			exit(1);
		}
	do {
		for (int k = 0; k < rc->n; k++)
			fn(rc->in[k], rc->in_len[k], out, want, ctx);
		iters += rc->n;
		t = now() - t0;
	} while (t < secs);
	return (double)iters * want / t / 1e6;
}

static int bench_file(const char *path, double secs)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	const char *names[2] = { "X/data", "X/indices" };

	if (f < 0) {
		fprintf(stderr, "bench_filters: cannot open %s\n", path);
		return 1;
	}
	printf("bench_filters: stored chunks of %s, %.1f s per case, 1 thread, MB/s of output\n",
	       path, secs);
	printf("%-10s %8s %7s %9s %9s %9s %9s %7s\n", "dataset", "KB out", "ratio", "engine",
	       "zlib", "isa-l", "isa-l 1/2", "isa/eng");
	for (int d = 0; d < 2; d++) {
		real_chunks rc;
		if (load_real(f, names[d], &rc) < 0 || rc.nf != 1 || rc.pl[0].id != 1) {
			printf("%-10s (not a deflate-only chunked dataset: skipped)\n", names[d]);
			continue;
		}
		uint8_t *out = malloc(rc.out_len);
		uint8_t *ref[MAX_REAL];
		scf__filter_ctx *fc = scf__filter_ctx_new();
		void *ectx[2] = { fc, &rc };
		struct inflate_state *st = malloc(sizeof(*st));
		size_t in_total = 0;
		for (int k = 0; k < rc.n; k++) {
			ref[k] = malloc(rc.out_len);
			in_total += rc.in_len[k];
			if (via_zlib(rc.in[k], rc.in_len[k], ref[k], rc.out_len, NULL) != rc.out_len) {
				fprintf(stderr, "bench_filters: zlib cannot decode chunk %d of %s\n", k,
				        names[d]);
				return 1;
			}
		}
		double e = time_inflate(&rc, via_engine, ectx, rc.out_len, out,
		                        (const uint8_t *const *)ref, secs);
		double z = time_inflate(&rc, via_zlib, NULL, rc.out_len, out,
		                        (const uint8_t *const *)ref, secs);
		double i = time_inflate(&rc, via_isal, st, rc.out_len, out,
		                        (const uint8_t *const *)ref, secs);
		double h = time_inflate(&rc, via_isal, st, rc.out_len / 2, out,
		                        (const uint8_t *const *)ref, secs);
		printf("%-10s %8zu %7.2f %9.0f %9.0f %9.0f %9.0f %7.2f\n", names[d],
		       rc.out_len / 1024, (double)rc.out_len * rc.n / in_total, e, z, i, h, i / e);
		for (int k = 0; k < rc.n; k++) {
			free(ref[k]);
			free(rc.in[k]);
		}
		free(st);
		free(out);
		scf__filter_ctx_free(fc);
	}
	printf("(isa-l 1/2: MB/s of output made when each chunk is inflated only up to its\n"
	       " middle, as a partial inflate does: about the same rate, on half the bytes)\n");
	H5Fclose(f);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--file"))
		return bench_file(argv[2], argc > 3 ? atof(argv[3]) : 1.0);
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	size_t bytes = CHUNK_ELEMS * 4;
	uint8_t *counts[N_CHUNKS], *indices[N_CHUNKS];
	double zstd_worst = 1e30;

	for (int k = 0; k < N_CHUNKS; k++) {
		counts[k] = malloc(bytes);
		indices[k] = malloc(bytes);
		fill_counts((float *)counts[k], CHUNK_ELEMS);
		fill_indices((int32_t *)indices[k], CHUNK_ELEMS);
	}
	printf("bench_filters: %d-element chunks (%zu KB out), %d distinct per case, %.1f s each, 1 thread\n",
	       CHUNK_ELEMS, bytes / 1024, N_CHUNKS, secs);
	printf("%-20s %-16s %7s %10s\n", "codec", "data", "ratio", "MB/s out");
	for (size_t i = 0; i < sizeof(codecs) / sizeof(codecs[0]); i++) {
		for (int d = 0; d < 2; d++) {
			uint8_t **src = d ? indices : counts;
			stored s;
			if (store(&codecs[i], src, bytes, &s) < 0) {
				printf("%-20s %-16s  (compressor failed)\n", codecs[i].name,
				       d ? "int32 indices" : "float32 counts");
				continue;
			}
			double mbs = run(&codecs[i], src, bytes, &s, secs);
			printf("%-20s %-16s %7.2f %10.0f\n", codecs[i].name,
			       d ? "int32 indices" : "float32 counts",
			       (double)bytes * N_CHUNKS / s.total, mbs);
			if (codecs[i].pl[codecs[i].nf - 1].id == 32015 && mbs < zstd_worst)
				zstd_worst = mbs;
			for (int k = 0; k < N_CHUNKS; k++)
				free(s.bytes[k]);
		}
	}
	printf("zstd target >= 1000 MB/s per core: %s (slowest zstd case %.0f MB/s)\n",
	       zstd_worst >= 1000 ? "met" : "NOT met", zstd_worst);
	for (int k = 0; k < N_CHUNKS; k++) {
		free(counts[k]);
		free(indices[k]);
	}
	return 0;
}
