/*
 * engine/collection — a list of .h5ad files opened as one index space: each
 * file's descriptor (O_DIRECT where the filesystem allows it) and described
 * matrix, the check that every file shares one gene axis, and obs columns
 * concatenated across files (categories mapped to the union of the files'
 * lists).  Global row ids follow the order of the list: file f holds rows
 * [row0[f], row0[f + 1]).  Thread: the caller of scf_open_collection();
 * read-only afterwards.
 */
#ifndef SCF_ENGINE_COLLECTION_H
#define SCF_ENGINE_COLLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "engine/plan.h"
#include "formats/h5ad.h"
#include "formats/obs.h"

typedef struct scf__collection {
	char key[128];             /* the matrix: "X", "layers/counts" */
	int want_direct;           /* try O_DIRECT */
	scf__idxcfg ix;            /* the index cache: used, and where */
	uint32_t n_files;
	scf__matrix *mats;         /* n_files */
	int *fds;                  /* n_files; -1: not open */
	uint64_t *row0;            /* n_files + 1 */
	scf__files files;          /* the view plan and assembly use */
	uint64_t n_rows, n_cols, nnz; /* of the whole collection */
	int direct;                /* 1 if every file is read with O_DIRECT */
	int any_direct;            /* 1 if some file is: reads must be aligned */
} scf__collection;

/* Open every file, describe its matrix, check one gene axis.  0 or a code + sentence. */
int scf__coll_open(scf__collection *c, const char *const *paths, uint32_t n, const char *key,
                   int want_direct, const scf__idxcfg *ix, char *errbuf, size_t errlen);
void scf__coll_close(scf__collection *c);

/* obs column `name` of every file, concatenated, as one column of n_rows. */
int scf__coll_obs_load(const scf__collection *c, scf__obs_col *col, const char *name,
                       char *errbuf, size_t errlen);

#endif
