/*
 * perf/bench_filters — decode speed of engine/filters on one core, in MB/s
 * of decoded output, for chunks shaped like single-cell data: float32
 * counts (mostly ones and twos) and int32 sorted column indices, 64K
 * elements each, compressed here with libdeflate (level 4, as h5py's gzip
 * default), libzstd (level 3) and a small greedy LZF compressor.
 * Single-threaded; run it on an idle core.  Usage: bench_filters [seconds]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libdeflate.h>
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

int main(int argc, char **argv)
{
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
