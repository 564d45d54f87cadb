/*
 * formats/obs — per-cell values from the AnnData `obs` frame, read whole at
 * open with the HDF5 library so the engine can hand each batch the values
 * of its rows.  Three kinds of column:
 *   categorical: a group of integer `codes` and 1-D `categories` (strings
 *     or numbers); every code is -1 (missing) or names a category;
 *   integer: a 1-D integer (or boolean enum) dataset, kept as int64 without
 *     loss (uint64 values above INT64_MAX are refused);
 *   float: a 1-D float32/float64 dataset, kept as double.
 * Datasets are checked (rank 1, one entry per row, storage written, size
 * plausible for the file) before anything is allocated from their sizes.
 * Thread: the caller of scf_open().
 */
#ifndef SCF_FORMATS_OBS_H
#define SCF_FORMATS_OBS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum scf__obs_kind { SCF__OBS_CATEGORICAL = 0, SCF__OBS_INT = 1, SCF__OBS_FLOAT = 2 };

typedef struct scf__obs_col {
	char name[128];
	int kind;           /* enum scf__obs_kind */
	int32_t *codes;     /* categorical: one per row; -1 missing */
	int64_t *ints;      /* integer column: one per row */
	double *floats;     /* float column: one per row */
	char **categories;  /* categorical: n_categories names */
	uint64_t n_categories;
	int fits_i32;       /* integer: every value fits in int32 */
} scf__obs_col;

/* Read obs/<name> for n_rows rows.  0 or a negative code + sentence in err. */
int scf__obs_load(scf__obs_col *c, const char *path, const char *name, uint64_t n_rows,
                  char *err, size_t errlen);
void scf__obs_free(scf__obs_col *c);

struct scf__matrix;
/*
 * The stored bytes of obs/<name> (codes, values, categories) share none
 * with matrix m's data or indices: else a damaged chunk index could deliver
 * them as cells.  0, or SCF_E_CORRUPT with a sentence naming both.
 */
int scf__obs_check_storage(const char *path, const char *name, const struct scf__matrix *m,
                           char *err, size_t errlen);

/* Row r as one 64-bit word: the code, the integer, or the double's bits. */
static inline int64_t scf__obs_word(const scf__obs_col *c, uint64_t r)
{
	int64_t w;

	if (c->kind == SCF__OBS_CATEGORICAL)
		return c->codes[r];
	if (c->kind == SCF__OBS_INT)
		return c->ints[r];
	memcpy(&w, &c->floats[r], sizeof(w));
	return w;
}

/* Row r as the int32 of scf_batch.obs: the code, a value that fits, else INT32_MIN. */
static inline int32_t scf__obs_i32(const scf__obs_col *c, uint64_t r)
{
	if (c->kind == SCF__OBS_CATEGORICAL)
		return c->codes[r];
	if (c->kind == SCF__OBS_INT && c->fits_i32)
		return (int32_t)c->ints[r];
	return INT32_MIN;
}

#endif
