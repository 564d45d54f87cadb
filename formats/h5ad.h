/*
 * formats/h5ad — what an AnnData matrix is on disk.
 *
 * Opens the file with the HDF5 library (metadata only), finds the matrix
 * (CSR group or dense 2-D dataset), checks encodings, shapes and dtypes,
 * loads indptr whole and resolves every dataset the hot path reads to file
 * extents: one offset for contiguous storage, or a chunk map.  After this,
 * the engine reads bytes with io_uring and never calls HDF5 again.
 * Runs on the thread that calls scf_open().
 */
#ifndef SCF_FORMATS_H5AD_H
#define SCF_FORMATS_H5AD_H

#include <stddef.h>
#include <stdint.h>

#include "common/codecs.h"
#include "formats/h5chunks.h"

/* Element type of a stored dataset, as the engine converts it. */
enum scf__type_class { SCF__T_INT = 0, SCF__T_UINT = 1, SCF__T_FLOAT = 2 };

typedef struct scf__dtype {
	uint8_t cls;  /* enum scf__type_class */
	uint8_t size; /* bytes: 1, 2, 4, 8 */
} scf__dtype;

enum scf__storage { SCF__CONTIGUOUS = 1, SCF__CHUNKED = 2 };


/* One HDF5 dataset resolved to file extents. */
typedef struct scf__dset {
	char name[128];         /* path inside the file, e.g. "X/data" */
	unsigned rank;          /* 1 or 2 */
	uint64_t dims[2];
	scf__dtype type;
	int storage;            /* enum scf__storage */
	uint64_t offset;        /* contiguous: absolute file offset of element 0 */
	uint64_t ohdr;          /* absolute file offset of its object header */
	scf__chunk_map chunks;  /* chunked */
	unsigned n_filters;
	scf__filter filter[SCF__MAX_FILTERS];
	float fill;             /* value of elements never written (HDF5 fill value) */
} scf__dset;

enum scf__encoding { SCF__CSR = 1, SCF__DENSE = 2 };

/* How an open uses the index cache (formats/idxcache.c). */
typedef struct scf__idxcfg {
	int use;                /* 0: neither read nor write a cache */
	const char *dir;        /* scf_options.index_dir, or NULL */
} scf__idxcfg;

/*
 * The index cache of a matrix: indptr and the chunk maps of data and
 * indices may point into its read-only mapping, shared by every process.
 */
typedef struct scf__idxinfo {
	int state;              /* enum scf__idx_state */
	int err;                /* UNCACHED: the last write's negative errno */
	int stale;              /* 1 + the place (formats/idxcache.c) of a cache found
	                           unusable, else 0 */
	char *note;             /* what the cache did, for scf_index_note(); or NULL */
	char *file;             /* the cache file used or written, or NULL */
	void *map;              /* its mapping, or NULL */
	size_t map_len;
} scf__idxinfo;

/* Where a described matrix's chunk maps and indptr came from. */
enum scf__idx_state {
	SCF__IDX_PARSED = 0,    /* read from the file; no cache asked for */
	SCF__IDX_REUSED = 1,    /* mapped from a valid index cache */
	SCF__IDX_BUILT = 2,     /* read from the file, and a cache written */
	SCF__IDX_UNCACHED = 3   /* read from the file; no cache could be written */
};

typedef struct scf__matrix {
	char path[4096];        /* the file, for messages */
	char key[128];          /* "X", "layers/counts" */
	int encoding;           /* enum scf__encoding */
	uint64_t n_rows, n_cols, nnz;
	int64_t *indptr;        /* CSR: n_rows + 1, checked monotonic, ends at nnz */
	scf__dset data;         /* CSR data, or the dense 2-D dataset */
	scf__dset indices;      /* CSR only */
	scf__dset indptr_ds;    /* CSR only: where indptr lies */
	scf__dtype indptr_type; /* as stored, for `info` */
	uint64_t max_row_nnz;   /* CSR: most entries stored in one row (scratch sizes) */
	uint64_t sb_start, sb_len; /* the superblock's bytes */
	int indptr_borrowed;    /* indptr points into idx.map: not freed */
	scf__idxinfo idx;
} scf__matrix;

/*
 * What a described matrix guarantees to the engine, which trusts it from
 * then on (every number below was checked here, against the file):
 *   - path and key fit their buffers (a longer key is refused, never cut);
 *   - path is a regular file; attributes read were scalars of their class;
 *   - data/indices/indptr have rank 1 (dense data rank 2) and a supported
 *     little-endian integer or float type; indices are integers;
 *   - n_cols < 2^31, dense n_cols > 0; CSR indptr has n_rows + 1 entries,
 *     starts >= 0, never decreases, ends inside data and indices (which have
 *     equal lengths), and max_row_nnz is its largest step;
 *   - contiguous storage lies inside the file; chunk maps cover the grid,
 *     every chunk inside the file, no two sharing bytes, none inside an
 *     index node or object header of data, indices or indptr, nor the
 *     superblock; data's and indices' stored bytes are disjoint from each
 *     other's and from indptr's;
 *   - datasets read whole (indptr) were written everywhere and are no larger
 *     than the file can hold.
 * Column ids are not checked here (that would read every stored entry); the
 * assembly checks each one against n_cols as it converts it.
 *
 * Describe `key` in the .h5ad at path.  Returns 0 or a negative code with a
 * sentence naming the file, the dataset and the problem in err.
 * Filtered datasets are described (the caller decides what it can decode).
 * scf__h5ad_open_cached() takes the chunk maps and indptr from a valid
 * index cache when cfg->use is set (writing one when there is none); the
 * guarantees above hold for cached data too (see formats/idxcache.h).
 */
int scf__h5ad_open(scf__matrix *m, const char *path, const char *key,
                   char *err, size_t errlen);
int scf__h5ad_open_cached(scf__matrix *m, const char *path, const char *key,
                          const scf__idxcfg *cfg, char *err, size_t errlen);
void scf__h5ad_free(scf__matrix *m);

/*
 * Whether any of r[0..n) (sorted by address) shares a byte with the stored
 * bytes of m's data or indices: 1 with *which naming that dataset, else 0;
 * -ENOMEM.  For the objects read beside the matrix (obs columns).
 */
int scf__h5ad_meets(const scf__matrix *m, const scf__byte_range *r, size_t n,
                    const char **which);

/*
 * formats/indptr: the n entries of a described 1-D integer dataset (indptr)
 * into out, read with pread and the codecs.  0 or a code + reason in why.
 */
int scf__indptr_read(const scf__dset *ds, int fd, uint64_t n, int64_t *out, char *why,
                     size_t wlen);

/* Byte length of element range [first, first+count) when stored contiguously. */
static inline uint64_t scf__dtype_bytes(scf__dtype t, uint64_t count)
{
	return (uint64_t)t.size * count;
}

/* Readable name of a type ("float32", "int64"), for messages and `info`. */
const char *scf__dtype_name(scf__dtype t);

#endif
