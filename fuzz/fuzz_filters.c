/*
 * fuzz/fuzz_filters — libFuzzer target for engine/filters: one stored chunk
 * undone through a pipeline the first input byte picks (deflate, zstd, lzf,
 * shuffle, fletcher32 and their combinations, plus pipelines that must be
 * refused).  The output buffer is exactly the decoded size, so ASan sees any
 * write past it; every failure must leave a sentence.  Input format: see
 * fuzz/fuzz.h.  The decoder context lives across inputs, as a decode
 * worker's does across chunks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codecs.h"
#include "fuzz/fuzz.h"
#include "scfetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static scf__filter_ctx *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	scf__filter pl[3];
	char err[512];

	if (size < FZ_FLT_HDR_LEN)
		return 0;
	if (!ctx && !(ctx = scf__filter_ctx_new()))
		abort();
	const fz_pipeline *p = &fz_pipelines[data[0] % FZ_N_PIPELINES];
	size_t elem = (size_t)1 << (data[1] & 3);
	uint32_t mask = data[2];
	size_t out_len = ((size_t)data[4] | (size_t)data[5] << 8) * elem;
	uint8_t *out = malloc(out_len ? out_len : 1);

	if (!out)
		abort();
	memset(pl, 0, sizeof(pl));
	for (unsigned i = 0; i < p->n; i++) {
		pl[i].id = p->id[i];
		if (p->id[i] == FZ_SHUFFLE && data[3]) {
			pl[i].n_cd = 1;
			pl[i].cd[0] = data[3];
		}
	}
	/* a private copy, exactly as long as the stored chunk */
	size_t in_len = size - FZ_FLT_HDR_LEN;
	uint8_t *in = malloc(in_len ? in_len : 1);
	if (!in)
		abort();
	memcpy(in, data + FZ_FLT_HDR_LEN, in_len);
	err[0] = '\0';
	int rc = scf__filter_decode(ctx, pl, p->n, mask, elem, in, in_len, out, out_len, err,
	                            sizeof(err));
	if (rc < 0 && !err[0]) {
		fprintf(stderr, "fuzz_filters: code %d without a message\n", rc);
		abort();
	}
	if (rc > 0)
		abort();
	/* The prefix decode (partial inflate) on the same bytes: ISA-L's streaming
	 * inflate where only deflate applies, else the whole-chunk path.  A
	 * prefix that decodes must equal the whole chunk's first bytes. */
	size_t want = out_len / 2 + (data[1] & 7), made = 0;
	if (want > out_len)
		want = out_len;
	uint8_t *pre = malloc(out_len ? out_len : 1);
	if (!pre)
		abort();
	err[0] = '\0';
	int rp = scf__filter_decode_prefix(ctx, pl, p->n, mask, elem, in, in_len, pre, out_len,
	                                   want, &made, err, sizeof(err));
	if ((rp < 0 && !err[0]) || rp > 0 || (rp == 0 && made < want))
		abort();
	if (rp == 0 && rc == 0 && memcmp(pre, out, want) != 0) {
		fprintf(stderr, "fuzz_filters: prefix of %zu bytes differs from the whole chunk\n",
		        want);
		abort();
	}
	free(pre);
	if (getenv("SCF_FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz_filters: pipeline %u: %d %s\n", data[0] % (unsigned)FZ_N_PIPELINES,
		        rc, err);
	free(in);
	free(out);
	return 0;
}
