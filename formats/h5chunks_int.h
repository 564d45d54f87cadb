/*
 * formats/h5chunks_int.h — what the files of the chunk-index reader share:
 * the parse state, the decoded layout message, checked reads of metadata
 * blocks (formats/h5chunks.c) and one entry point per index kind
 * (formats/h5index_*.c).  Private to those files; opening thread only.
 */
#ifndef SCF_FORMATS_H5CHUNKS_INT_H
#define SCF_FORMATS_H5CHUNKS_INT_H

#include "formats/h5chunks.h"

#include <stddef.h>
#include <stdint.h>

#define SCF__H5_MAX_DEPTH   64          /* B-tree levels */
#define SCF__H5_NONE        UINT64_MAX

enum scf__h5_index {
	SCF__IDX_BTREE1 = 0, /* layout version 3 */
	SCF__IDX_SINGLE = 1,
	SCF__IDX_IMPLICIT = 2,
	SCF__IDX_FARRAY = 3,
	SCF__IDX_EARRAY = 4,
	SCF__IDX_BTREE2 = 5
};

/* The chunked layout message, decoded. */
typedef struct scf__h5layout {
	unsigned version, index, flags, ndims;
	uint64_t cdims[3];
	uint64_t addr;
	uint64_t single_size;  /* single chunk index, filtered */
	uint32_t single_mask;
	uint8_t fa_page_bits;
	uint8_t ea[5];         /* max bits, index elmts, min ptrs, min elmts, page bits */
} scf__h5layout;

/* One parse: the file, the dataset's geometry and the map being filled. */
typedef struct scf__h5r {
	int fd;
	unsigned sa, ss;       /* bytes per address / length */
	uint64_t undef;        /* the undefined address at width sa */
	uint64_t base, eof;
	char *err;
	size_t errlen;
	unsigned rank;
	uint64_t dims[2], maxdims[2], cdims[2];
	uint64_t elem_size, chunk_bytes;
	unsigned slow;         /* dimension that varies slowest in array indexes */
	uint64_t down;         /* array entries per step of the slow dimension */
	uint64_t maxgrid[2];   /* chunks per dimension at the maximum extent */
	uint64_t n_lin;        /* array entries that cover the current grid */
	scf__chunk_map *map;
	uint64_t exc_cap;      /* room in map->exc */
	uint8_t *node[SCF__H5_MAX_DEPTH]; /* one B-tree node buffer per depth */
	size_t node_cap[SCF__H5_MAX_DEPTH];
	size_t node_guess;
	uint64_t *seen;        /* B-tree node addresses visited (open addressing) */
	size_t seen_cap, seen_n;
	/* Metadata blocks read (exact extents), which no chunk may overlap;
	 * meta[i].id indexes meta_what, the kind of block, for messages. */
	scf__byte_range *meta;
	const char **meta_what;
	size_t meta_n, meta_cap;
	int meta_off;          /* reads of a guessed length: not recorded */
} scf__h5r;

/* Element format shared by the fixed and extensible arrays. */
typedef struct scf__h5arr {
	const char *what;
	unsigned client;       /* 1: filtered chunks (address, size, mask) */
	unsigned esize, csize; /* bytes per element, bytes of its size field */
	uint64_t hdr_addr;
} scf__h5arr;

/* Little-endian field of n (1..8) bytes; HDF5 metadata is little-endian. */
static inline uint64_t scf__h5_get(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = n; i-- > 0;)
		v = (v << 8) | p[i];
	return v;
}

static inline uint32_t scf__h5_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* Metadata reads, each checked against the file's end (formats/h5chunks.c). */
__attribute__((format(printf, 3, 4)))
int scf__h5_fail(scf__h5r *r, int code, const char *fmt, ...);
int scf__h5_sum(scf__h5r *r, const uint8_t *p, size_t len, const char *what,
                uint64_t addr);
int scf__h5_span(const scf__h5r *r, uint64_t rel, uint64_t len, uint64_t *abs);
int scf__h5_meta(scf__h5r *r, uint64_t abs, uint64_t len, const char *what);
int scf__h5_read(scf__h5r *r, uint64_t rel, void *buf, size_t len,
                 const char *what);
int scf__h5_read_upto(scf__h5r *r, uint64_t rel, void *buf, size_t want,
                      size_t *got, const char *what);
uint8_t *scf__h5_alloc(scf__h5r *r, uint64_t len, int *rc);

/* Chunks into the map (formats/h5chunks.c). */
uint64_t scf__h5_lin_to_map(const scf__h5r *r, uint64_t li);
int scf__h5_put(scf__h5r *r, uint64_t idx, uint64_t rel, uint64_t size,
                uint32_t mask, const char *what);

/* Array entries, fixed and extensible alike (formats/h5index_array.c). */
int scf__h5_arr_format(scf__h5r *r, scf__h5arr *a, unsigned client, unsigned esize);
int scf__h5_elements(scf__h5r *r, const scf__h5arr *a, const uint8_t *p,
                     uint64_t li0, uint64_t count);
int scf__h5_block_prefix(scf__h5r *r, const scf__h5arr *a, const uint8_t *p,
                         const char *sig, uint64_t addr);
int scf__h5_pages(scf__h5r *r, const scf__h5arr *a, const uint8_t *pages,
                  uint64_t addr, const uint8_t *bitmap, uint64_t bit0,
                  uint64_t nelmts, uint64_t page_n, uint64_t li0);

/*
 * One index kind each, called once the layout message is decoded and the
 * map sized: fill r->map from the index at l->addr (undefined: nothing
 * written).  0 or a negative code, with the reason in r->err.
 */
int scf__h5_btree1(scf__h5r *r, const scf__h5layout *l);   /* h5index_btree1.c */
int scf__h5_single(scf__h5r *r, const scf__h5layout *l);   /* h5index_single.c */
int scf__h5_implicit(scf__h5r *r, const scf__h5layout *l); /* h5index_single.c */
int scf__h5_farray(scf__h5r *r, const scf__h5layout *l);   /* h5index_farray.c */
int scf__h5_earray(scf__h5r *r, const scf__h5layout *l);   /* h5index_earray.c */

#endif
