/*
 * formats/obs — per-cell labels from the AnnData `obs` frame: categorical
 * columns (codes + category names) or plain integer columns, read whole at
 * open with the HDF5 library so the engine can hand each batch the labels
 * of its rows.  Thread: the caller of scf_open().
 */
#ifndef SCF_FORMATS_OBS_H
#define SCF_FORMATS_OBS_H

#include <stddef.h>
#include <stdint.h>

typedef struct scf__obs_col {
	char name[128];
	int32_t *codes;     /* one per row; -1: missing */
	char **categories;  /* n_categories names, NULL for an integer column */
	uint64_t n_categories;
} scf__obs_col;

/* Read obs/<name> for n_rows rows.  0 or a negative code + sentence in err. */
int scf__obs_load(scf__obs_col *c, const char *path, const char *name, uint64_t n_rows,
                  char *err, size_t errlen);
void scf__obs_free(scf__obs_col *c);

#endif
