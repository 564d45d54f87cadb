/*
 * tools/repack — rewrite an .h5ad's CSR matrix with small, row-sized chunks
 * (and a codec of choice) so that random access decodes little more than it
 * delivers.  Everything else in the file is copied as is.  One thread makes
 * every HDF5 call (metadata, chunk lookups, direct chunk writes, in order);
 * worker threads read, decode and re-encode the chunks, a bounded number of
 * slices in flight, so memory stays bounded whatever the file size.
 */
#ifndef SCF_TOOLS_REPACK_H
#define SCF_TOOLS_REPACK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum scf_codec { SCF_CODEC_NONE = 0, SCF_CODEC_DEFLATE = 1, SCF_CODEC_ZSTD = 2 };

typedef struct scf_repack_opts {
	const char *matrix;   /* "X" by default */
	uint32_t chunk_rows;  /* mean rows per chunk, default 4 */
	int codec;            /* enum scf_codec */
	int level;            /* codec level; 0: default (deflate 4, zstd 3) */
	int no_shuffle;       /* 1: no byte shuffle before the codec (default: shuffle) */
	uint32_t threads;     /* decode/encode workers; 0: one per online CPU; at most 256 */
	int verify;           /* 1: after writing, compare every entry of the output with
	                         the input, both read with HDF5's H5Dread; a difference
	                         fails the repack, naming the rows */
	int progress;         /* 1: report progress on the `progress` stream: a \r line
	                         on a terminal, otherwise a line per 10% */
	uint32_t slice;       /* entries per slice in flight (rounded up to whole chunks);
	                         0: 2^20.  Memory is about (2 x threads + 2) slices of
	                         decoded and encoded bytes; small values are for tests */
} scf_repack_opts;

/*
 * Rewrite matrix o->matrix of `in` into `out` (created, truncated).  0, or
 * -1 with a sentence naming both files and the problem in err.  `progress`
 * (may be NULL) receives a few lines on the chunking chosen, and the
 * progress itself when o->progress is set.
 */
int scf_repack(const char *in, const char *out, const scf_repack_opts *o, FILE *progress,
               char *err, size_t errlen);

/*
 * Compare matrix `matrix` ("X" when NULL) of `out` with that of `in`:
 * indptr, data and indices entry by entry, as stored (same dtype), both read
 * with H5Dread (a zstd decoder is registered with HDF5 when it has none).
 * 0 when equal; -1 with err naming the dataset, the number of rows that
 * differ and the first of them, or what could not be read.
 */
int scf_repack_verify(const char *in, const char *out, const char *matrix, FILE *progress,
                      char *err, size_t errlen);

#endif
