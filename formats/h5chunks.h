/*
 * formats/h5chunks — read an HDF5 dataset's chunk index in one pass.
 *
 * HDF5 1.10's own per-chunk queries walk the index from its start on every
 * call (quadratic over a dataset); this reader parses the dataset's object
 * header, its data layout message and the index it points to (version-1
 * B-tree; single chunk, implicit, fixed array and extensible array indexes
 * of layout version 4) straight from the file with pread(), and produces a
 * dense map from chunk grid position to file extent.  Runs on the opening
 * thread only; no HDF5 library calls.
 */
#ifndef SCF_FORMATS_H5CHUNKS_H
#define SCF_FORMATS_H5CHUNKS_H

#include <stddef.h>
#include <stdint.h>

#define SCF__CHUNK_UNALLOCATED UINT64_MAX

/* One stored chunk, as the accessors below hand it out. */
typedef struct scf__chunk {
	uint64_t addr;        /* absolute file offset; SCF__CHUNK_UNALLOCATED: never
	                         written (reads as the fill value) */
	uint32_t size;        /* bytes stored (after filters) */
	uint32_t filter_mask; /* bit i set: filter i of the pipeline was skipped */
} scf__chunk;

/*
 * What the map keeps per chunk: 12 bytes, not 16, since an atlas has tens of
 * millions of chunks.  Packed so that an array of them can be mapped
 * straight from an index cache file; read it through the accessors.
 */
typedef struct __attribute__((packed)) scf__chunk_rec {
	uint64_t addr;
	uint32_t size;
} scf__chunk_rec;
_Static_assert(sizeof(scf__chunk_rec) == 12, "a chunk record is 12 bytes");

/*
 * A chunk whose filter mask is not 0.  Writers skip a filter for a chunk
 * only when it would not shrink, so these are few: kept aside, sorted by
 * idx, and found by binary search when a filtered chunk is planned.
 */
typedef struct scf__chunk_exc {
	uint64_t idx;
	uint32_t mask;
	uint32_t _pad;        /* 0 */
} scf__chunk_exc;

typedef struct scf__chunk_map {
	unsigned rank;         /* 1 or 2 */
	int borrowed;          /* rec and exc point into a mapped index cache
	                          (formats/idxcache.c): not freed with the map */
	uint64_t dims[2];      /* current dataset extent, in elements */
	uint64_t chunk_dims[2];/* chunk shape, in elements */
	uint64_t grid[2];      /* chunks per dimension: ceil(dims / chunk_dims) */
	uint64_t n;            /* grid[0] * grid[1] (grid[1] == 1 for rank 1) */
	scf__chunk_rec *rec;   /* n entries, row-major over the grid */
	scf__chunk_exc *exc;   /* n_exc entries, idx strictly increasing */
	uint64_t n_exc;
	struct scf__byte_range *meta; /* the object header and index blocks read, sorted
	                                 (none when the map came from an index cache) */
	uint64_t n_meta;
} scf__chunk_map;

static inline uint64_t scf__chunk_addr(const scf__chunk_map *m, uint64_t i)
{
	return m->rec[i].addr;
}

static inline uint32_t scf__chunk_size(const scf__chunk_map *m, uint64_t i)
{
	return m->rec[i].size;
}

/* Filter mask of chunk i: 0 unless listed among the exceptions. */
static inline uint32_t scf__chunk_mask(const scf__chunk_map *m, uint64_t i)
{
	uint64_t lo = 0, hi = m->n_exc;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (m->exc[mid].idx < i)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < m->n_exc && m->exc[lo].idx == i ? m->exc[lo].mask : 0;
}

static inline scf__chunk scf__chunk_at(const scf__chunk_map *m, uint64_t i)
{
	return (scf__chunk){ m->rec[i].addr, m->rec[i].size, scf__chunk_mask(m, i) };
}

/* Facts from the superblock and the HDF5 API the parser needs. */
typedef struct scf__h5geom {
	unsigned sizeof_addr; /* H5Pget_sizes: bytes per file address (8 normally) */
	unsigned sizeof_size; /* H5Pget_sizes: bytes per length field */
	uint64_t base_addr;   /* absolute offset that file addresses are relative to */
	uint64_t eof;         /* file size in bytes: every address is checked against it */
} scf__h5geom;

/*
 * Fill *out for the dataset whose object header is at ohdr_addr (relative,
 * as H5Oget_info reports it).  rank/dims/chunk_dims/elem_size come from the
 * HDF5 API and are cross-checked against the layout message.  Returns 0, a
 * negative errno (-ENOMEM, -EIO), SCF_E_CORRUPT (index inconsistent, address
 * past end of file, loop, missing chunk record) or SCF_E_UNSUPPORTED (index
 * type not handled, e.g. version-2 B-tree), writing a sentence about the
 * problem (without file or dataset name, the caller adds them) to err.
 */
int scf__h5chunks_read(int fd, const scf__h5geom *g, uint64_t ohdr_addr,
                       unsigned rank, const uint64_t *dims,
                       const uint64_t *chunk_dims, size_t elem_size,
                       scf__chunk_map *out, char *err, size_t errlen);

void scf__chunk_map_free(scf__chunk_map *m);

/* Bytes of the file: a chunk (id: its map index) or, inside the reader, a
 * metadata block (id: which one). */
typedef struct scf__byte_range {
	uint64_t addr, len;
	uint64_t id;
} scf__byte_range;


/*
 * The written chunks of m in address order (the map's order is kept when it
 * is already sorted, as HDF5 writes it), in a new array of *n entries that
 * the caller frees; NULL when out of memory.
 */
scf__byte_range *scf__chunk_extents(const scf__chunk_map *m, size_t *n);

/* Sort a list of extents by address. */
void scf__extents_sort(scf__byte_range *r, size_t n);

/*
 * Whether two lists sorted by address share a byte: 1 with *ia, *ib the
 * first such pair found, else 0.  a must be free of overlaps within itself;
 * b may overlap itself (metadata blocks read twice).
 */
int scf__extents_meet(const scf__byte_range *a, size_t na, const scf__byte_range *b, size_t nb,
                      size_t *ia, size_t *ib);

#endif
