/*
 * common/codecs — undo an HDF5 filter pipeline on one stored chunk, from
 * the raw bytes io_uring read, without the HDF5 library: deflate (1, with
 * libdeflate), shuffle (2), fletcher32 (3, verified), lzf (32000) and zstd
 * (32015), in the reverse of the order the pipeline lists them, skipping
 * those whose bit is set in the chunk's filter mask.
 * Thread: a decode worker; each worker owns one scf__filter_ctx.
 */
#ifndef SCF_COMMON_CODECS_H
#define SCF_COMMON_CODECS_H

#include <stddef.h>
#include <stdint.h>

#define SCF__MAX_FILTERS 8

/* One stage of a dataset's HDF5 filter pipeline, as its layout lists it. */
typedef struct scf__filter {
	int id;              /* HDF5 filter id: 1 deflate, 2 shuffle, 3 fletcher32, ... */
	unsigned flags;      /* H5Z_FLAG_OPTIONAL ... */
	size_t n_cd;         /* client data values used */
	unsigned cd[8];
} scf__filter;

/* Readable name of an HDF5 filter id ("deflate", "zstd", "filter 307"). */
const char *scf__filter_name(int id, char *buf, size_t len);

typedef struct scf__filter_ctx scf__filter_ctx;

/* Reusable decompression state and scratch; NULL on ENOMEM. */
scf__filter_ctx *scf__filter_ctx_new(void);
void scf__filter_ctx_free(scf__filter_ctx *c);

/* 1 if the engine can undo filter `id`. */
int scf__filter_supported(int id);

/*
 * Decode `in` (in_len bytes as stored) into `out`, which receives exactly
 * out_len bytes (the chunk's full uncompressed size: product of chunk dims
 * times elem_size).  Returns 0, or SCF_E_CORRUPT (bad stream, size mismatch,
 * checksum mismatch) / SCF_E_UNSUPPORTED (unknown filter) / -ENOMEM, with a
 * sentence naming the filter and the problem in err (the caller adds the
 * file, dataset and chunk).
 */
int scf__filter_decode(scf__filter_ctx *c, const scf__filter *pipeline, unsigned n_filters,
                       uint32_t filter_mask, size_t elem_size,
                       const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                       char *err, size_t errlen);

/*
 * The first `want` bytes of the chunk (want <= out_len), decoding no further
 * than needed when the only filter applied is deflate (*made = want; the
 * zlib Adler-32, which covers the whole chunk, is then not checked);
 * otherwise the whole chunk as scf__filter_decode (*made = out_len).
 */
int scf__filter_decode_prefix(scf__filter_ctx *c, const scf__filter *pipeline,
                              unsigned n_filters, uint32_t filter_mask, size_t elem_size,
                              const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                              size_t want, size_t *made, char *err, size_t errlen);

#endif
