/*
 * fuzz/fuzz.h — input formats shared by the libFuzzer targets and the seed
 * corpus generator (fuzz/make_corpus.c), so that seeds always parse the way
 * the targets read them.
 */
#ifndef SCF_FUZZ_FUZZ_H
#define SCF_FUZZ_FUZZ_H

#include <stdint.h>
#include <string.h>

/*
 * fuzz_h5chunks: a 32-byte header with what the HDF5 API would have told
 * formats/h5ad.c about the dataset, then the whole file image.
 */
typedef struct fz_h5c_hdr {
	uint64_t ohdr_addr;    /* object header address (relative to base_addr) */
	uint32_t dims[2];      /* current extent in elements */
	uint32_t chunk[2];     /* chunk shape in elements */
	uint8_t rank;          /* 1 or 2 (other values: rank = 1 + (rank & 1)) */
	uint8_t elem_size;     /* bytes per element */
	uint8_t sizeof_addr;   /* 2, 4 or 8 */
	uint8_t sizeof_size;   /* 2, 4 or 8 */
	uint32_t base_addr;    /* userblock size */
} fz_h5c_hdr;

#define FZ_H5C_HDR_LEN 32

static inline void fz_h5c_pack(const fz_h5c_hdr *h, uint8_t *out)
{
	memcpy(out, &h->ohdr_addr, 8);
	memcpy(out + 8, h->dims, 8);
	memcpy(out + 16, h->chunk, 8);
	out[24] = h->rank;
	out[25] = h->elem_size;
	out[26] = h->sizeof_addr;
	out[27] = h->sizeof_size;
	memcpy(out + 28, &h->base_addr, 4);
}

static inline void fz_h5c_unpack(const uint8_t *in, fz_h5c_hdr *h)
{
	memcpy(&h->ohdr_addr, in, 8);
	memcpy(h->dims, in + 8, 8);
	memcpy(h->chunk, in + 16, 8);
	h->rank = in[24];
	h->elem_size = in[25];
	h->sizeof_addr = in[26];
	h->sizeof_size = in[27];
	memcpy(&h->base_addr, in + 28, 4);
}

/*
 * fuzz_filters: a 6-byte header, then the chunk as stored.
 *   [0] pipeline (index into fz_pipelines, modulo their count)
 *   [1] element size: 1 << ([1] & 3)
 *   [2] filter mask (bit i: pipeline entry i skipped)
 *   [3] shuffle's recorded element size (cd[0]); 0: none recorded
 *   [4..5] decoded size in elements, little-endian
 */
#define FZ_FLT_HDR_LEN 6

enum { FZ_DEFLATE = 1, FZ_SHUFFLE = 2, FZ_FLETCHER = 3, FZ_SCALEOFFSET = 6,
       FZ_LZF = 32000, FZ_ZSTD = 32015 };

typedef struct fz_pipeline {
	unsigned n;
	int id[3]; /* in HDF5's order: the first one was applied first */
} fz_pipeline;

static const fz_pipeline fz_pipelines[] = {
	{ 1, { FZ_DEFLATE } },
	{ 2, { FZ_SHUFFLE, FZ_DEFLATE } },
	{ 1, { FZ_ZSTD } },
	{ 2, { FZ_SHUFFLE, FZ_ZSTD } },
	{ 1, { FZ_LZF } },
	{ 2, { FZ_SHUFFLE, FZ_LZF } },
	{ 1, { FZ_FLETCHER } },
	{ 2, { FZ_SHUFFLE, FZ_FLETCHER } },
	{ 2, { FZ_DEFLATE, FZ_FLETCHER } },
	{ 3, { FZ_SHUFFLE, FZ_DEFLATE, FZ_FLETCHER } },
	{ 1, { FZ_SHUFFLE } },
	{ 2, { FZ_LZF, FZ_FLETCHER } },
	{ 2, { FZ_FLETCHER, FZ_DEFLATE } },
	{ 3, { FZ_SHUFFLE, FZ_ZSTD, FZ_FLETCHER } },
	{ 2, { FZ_DEFLATE, FZ_ZSTD } },   /* stacked compressors: refused */
	{ 1, { FZ_SCALEOFFSET } },        /* not decodable: refused */
	{ 0, { 0 } },                     /* no filter at all */
};

#define FZ_N_PIPELINES (sizeof(fz_pipelines) / sizeof(fz_pipelines[0]))

#endif
