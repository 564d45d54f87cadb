/*
 * engine/assemble — from a fetch's staging bytes to its minibatches.  The
 * output layout (which batch, which offset each row lands at) is computed
 * first from indptr; then rows are visited in file order, so each filtered
 * chunk is decoded once, and every row is converted (data to float32,
 * indices to int32, checked against the column count) straight into its
 * final place in the fetch's output arena, which the batches point into.
 * Thread: a decode worker; one fetch per call; the scratch is the worker's.
 */
#ifndef SCF_ENGINE_ASSEMBLE_H
#define SCF_ENGINE_ASSEMBLE_H

#include <stddef.h>
#include <stdint.h>

#include "common/codecs.h"
#include "engine/plan.h"
#include "engine/sampler.h"
#include "engine/zcache.h"
#include "formats/h5ad.h"
#include "formats/obs.h"
#include "scfetch.h"

/*
 * Decoded chunks kept by a worker: `ways` slots, chunk id modulo ways.  One
 * cache serves every file of a collection (slots sized for the largest
 * chunk), so a worker's memory does not grow with the number of files.
 */
typedef struct scf__chunk_cache {
	uint8_t *buf;
	uint64_t *ids;       /* UINT64_MAX: empty */
	uint64_t *valid;     /* decoded bytes held in each slot (a prefix, or all) */
	uint32_t *files;     /* file of the chunk in each slot */
	uint64_t chunk_bytes;
	uint32_t ways;
} scf__chunk_cache;

/* Per-worker scratch, sized at worker start. */
typedef struct scf__scratch {
	float *vals;         /* one row */
	int32_t *idx;
	uint32_t *pos_of;    /* fetch row -> delivery position */
	uint64_t *out_off;   /* delivery position -> element offset in the arena */
	uint64_t *row_len;   /* delivery position -> entries kept (column selection) */
	scf__filter_ctx *fctx;
	scf__chunk_cache cache[2]; /* data, indices */
	scf_stats work;      /* this worker's share of the decode counters since the
	                        last fetch it handed over: bytes_decoded, decode_ns,
	                        assemble_ns, chunks_decoded, chunk_cache_hits,
	                        bytes_decode_skipped */
} scf__scratch;

int scf__scratch_init(scf__scratch *s, const scf__files *fs, uint64_t fetch_rows);
void scf__scratch_free(scf__scratch *s);

/* What the assembly of every fetch shares: the files, obs columns, output shape. */
typedef struct scf__asm_cfg {
	const scf__files *fs;  /* every file has the same n_cols */
	const scf__obs_col *obs;
	uint32_t n_obs;
	uint32_t batch_size;
	int output;
	const int32_t *col_map;  /* column selection: n_cols entries, -1 dropped; or NULL */
	uint64_t n_cols;         /* columns of every file */
	uint64_t n_out_cols;     /* columns delivered */
	double target_sum;       /* > 0: rows scaled to sum to this */
	int log1p;               /* values become log(1 + x) */
	int partial_inflate;     /* decode deflate chunks only up to the last byte used */
	scf__zcache *zc;         /* decoded chunks shared across fetches, or NULL */
} scf__asm_cfg;

/* Decoded bytes of z the assembly will use (the whole chunk, or the prefix used). */
uint64_t scf__zchunk_want(const scf__asm_cfg *cfg, const scf__zchunk *z);

/* Arena bytes a fetch needs for its batches. */
size_t scf__assemble_bytes(const scf__asm_cfg *cfg, const scf__plan *p, uint64_t n_rows);

/*
 * Fill batch[0..*n_batch) from staging.  arena holds scf__assemble_bytes()
 * bytes.  Returns 0, or SCF_E_CORRUPT (a column index outside the matrix, a
 * chunk that does not decode) / -ENOMEM with a sentence naming the file,
 * the dataset and the row or chunk in err.
 */
int scf__assemble(const scf__asm_cfg *cfg, const scf__plan *p, const scf__fetch_order *o,
                  const uint8_t *staging, uint8_t *arena, scf_batch *batch,
                  uint32_t *n_batch, scf__scratch *scratch, char *err, size_t errlen);

#endif
