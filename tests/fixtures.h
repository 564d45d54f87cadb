/*
 * tests/fixtures — test inputs written by the real writers (the HDF5 C API,
 * and anndata through Debian's python3), and an independent reference
 * reader built on H5Dread, against which the engine's output is compared.
 */
#ifndef SCF_TESTS_FIXTURES_H
#define SCF_TESTS_FIXTURES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <hdf5.h>

/* Element types a fixture can store. */
enum fx_type { FX_F32, FX_F64, FX_I8, FX_I16, FX_I32, FX_I64, FX_U16, FX_U32 };

/* A CSR matrix written with the HDF5 C API in anndata's layout. */
typedef struct fx_csr_spec {
	const char *matrix;   /* "X" (default when NULL), "layers/counts", ... */
	uint64_t n_rows, n_cols;
	uint32_t mean_nnz;    /* mean stored entries per row (varied row to row) */
	uint32_t empty_every; /* every k-th row has no entries (0: none) */
	int data_type;        /* enum fx_type, default FX_F32 */
	int index_type;       /* FX_I32 or FX_I64 */
	int indptr_type;      /* FX_I32 or FX_I64 */
	uint64_t chunk;       /* 0: contiguous data/indices; else elements per chunk */
	int resizable;        /* chunked with unlimited max shape, as anndata writes */
	int libver_latest;    /* H5F_LIBVER_LATEST: layout v4 indexes */
	int deflate;          /* 0: none, else gzip level */
	int shuffle;          /* byte shuffle before deflate */
	int fletcher32;       /* checksum after deflate */
	uint32_t n_labels;    /* >0: obs/cell_type categorical, rows sorted by label */
	uint64_t seed;
} fx_csr_spec;

/* A dense 2-D matrix written with the HDF5 C API. */
typedef struct fx_dense_spec {
	const char *matrix;
	uint64_t n_rows, n_cols;
	int data_type;
	uint64_t chunk_rows, chunk_cols; /* 0,0: contiguous */
	double density;                  /* fraction of non-zero cells */
	uint64_t seed;
} fx_dense_spec;

/* Write; return 0 or -1 (message on stderr). */
int fx_write_csr(const char *path, const fx_csr_spec *s);
int fx_write_dense(const char *path, const fx_dense_spec *s);

/*
 * Write an .h5ad through anndata (/usr/bin/python3) with a random sparse
 * CSR X (float32) of n_rows x n_cols, optional layers/counts (int), obs
 * categorical `cell_type`.  Returns 0, -1 on failure, or 1 when anndata is
 * not installed (the caller skips, saying so).
 */
int fx_write_anndata(const char *path, uint64_t n_rows, uint64_t n_cols,
                     double density, uint64_t seed, const char *compression);

/*
 * Write an .h5ad CSR matrix `X` with h5py and the given filters ("gzip1",
 * "gzip9", "lzf", "shuffle-gzip", "shuffle-lzf", "gzip-fletcher"), plus an
 * uncompressed twin `ref` of the same matrix that H5Dread can read even when
 * the C library lacks the filter (lzf).  1 when h5py is missing.
 */
int fx_write_h5py_csr(const char *path, uint64_t n_rows, uint64_t n_cols, uint64_t seed,
                      const char *filters);

/* The reference: a matrix read whole through H5Dread, as CSR, doubles. */
typedef struct fx_ref {
	uint64_t n_rows, n_cols, nnz;
	int64_t *indptr;  /* n_rows + 1 */
	int64_t *indices; /* nnz */
	double *data;     /* nnz */
} fx_ref;

/* Load `matrix` (CSR group or dense dataset; dense becomes CSR of non-zeros). */
int fx_ref_load(const char *path, const char *matrix, fx_ref *out);
void fx_ref_free(fx_ref *r);

/* A 1-D integer dataset read whole with H5Dread as int32 (malloc'd), or NULL. */
int32_t *fx_read_codes(const char *path, const char *dataset, uint64_t n);

/* A fresh private directory under $TMPDIR (or /var/tmp: O_DIRECT-capable). */
char *fx_tmpdir(void);
/* Remove it and everything in it. */
void fx_rmdir(char *dir);
/* dir + "/" + name, malloc'd. */
char *fx_path(const char *dir, const char *name);

/*
 * Files as bytes, for the tests that break them.  A test cannot go on
 * without its input: these print the reason and abort() on failure.
 */
uint64_t fx_file_len(const char *path);
uint8_t *fx_slurp(const char *path, size_t *len); /* malloc'd, len + 1 bytes */
void fx_spill(const char *path, const void *b, size_t len);
/* A fresh copy of src named `name` in dir (malloc'd path). */
char *fx_copy(const char *dir, const char *src, const char *name);
/* Overwrite n bytes at off; HDF5 metadata is little-endian, as is x86. */
void fx_poke(const char *path, uint64_t off, const void *b, size_t n);
void fx_poke_u64(const char *path, uint64_t off, uint64_t v);
void fx_poke_u32(const char *path, uint64_t off, uint32_t v);

/* HDF5 edits of a (copied) file, aborting on failure as above. */
hid_t fx_h5_open_rw(const char *path);
void fx_h5_delete(const char *path, const char *name);
/* Replace (or create) dataset `name` by a contiguous one; buf NULL: never written. */
void fx_h5_replace(const char *path, const char *name, hid_t ftype, hid_t mtype,
                   const void *buf, int rank, const hsize_t *dims);
/* Replace (or create) an attribute of object `obj`: n values (n < 0: a scalar). */
void fx_h5_attr(const char *path, const char *obj, const char *name, hid_t ftype,
                hid_t mtype, const void *buf, hssize_t n);

/* Where a chunk lies, as HDF5 reports it, and how many the dataset has. */
typedef struct fx_chunk_at {
	uint64_t addr, size, n;
} fx_chunk_at;

/* Chunk k (HDF5's order) of a dataset; k past the end means the last one. */
fx_chunk_at fx_chunk_info(const char *path, const char *name, uint64_t k);
/* HDF5's address of chunk k, or UINT64_MAX when HDF5 cannot say (a broken index). */
uint64_t fx_chunk_addr(const char *path, const char *name, uint64_t k);
/*
 * Offset of the file bytes holding the address of chunk k of `name` in its
 * chunk index (a B-tree entry or an array index element), found by probing
 * copies in dir; *out (when not NULL) gets the chunk.
 */
uint64_t fx_index_entry(const char *dir, const char *path, const char *name, uint64_t k,
                        unsigned rank, fx_chunk_at *out);

static inline uint64_t fx_get_u64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint32_t fx_get_u32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

#endif
