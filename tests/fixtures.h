/*
 * tests/fixtures — test inputs written by the real writers (the HDF5 C API,
 * and anndata through Debian's python3), and an independent reference
 * reader built on H5Dread, against which the engine's output is compared.
 */
#ifndef SCF_TESTS_FIXTURES_H
#define SCF_TESTS_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

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

#endif
