/*
 * tools/repack — rewrite an .h5ad's CSR matrix with small, row-sized chunks
 * (and a codec of choice) so that random access decodes little more than it
 * delivers.  Everything else in the file is copied as is.  Streams in slices
 * through the HDF5 library: memory stays bounded whatever the file size.
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
} scf_repack_opts;

int scf_repack(const char *in, const char *out, const scf_repack_opts *o, FILE *progress,
               char *err, size_t errlen);

#endif
