/*
 * formats/contents — the table of contents of an .h5ad: which matrices it
 * holds (X, layers/<name>, raw/X) and which obs columns, with the kind of
 * each, from metadata alone (no column is read).  For scf_describe(); the
 * loader reads the columns it is asked for through formats/obs.
 * Thread: the caller of scf_describe(); HDF5 is not thread-safe here.
 */
#ifndef SCF_FORMATS_CONTENTS_H
#define SCF_FORMATS_CONTENTS_H

#include <hdf5.h>
#include <stdint.h>

/* One obs column as the table of contents sees it. */
typedef struct scf__obs_entry {
	char name[128];
	int kind;               /* enum scf__obs_kind, or -1: not delivered */
	uint64_t n_categories;  /* categorical */
} scf__obs_entry;

/*
 * The matrices of file, "X" first, then "layers/<name>" in name order, then
 * "raw/X": *names (n of them) is one allocation holding the pointers and
 * the strings (free() it).  0 or -ENOMEM.
 */
int scf__contents_matrices(hid_t file, char ***names, uint32_t *n);

/*
 * The obs columns of file, in creation order where the file keeps it (else
 * name order), the index and __categories left out: *cols (n of them) is
 * malloc'd.  n_rows, when not 0, is the length a column must have to be
 * delivered.  0 (no obs frame: none) or -ENOMEM.
 */
int scf__contents_obs(hid_t file, uint64_t n_rows, scf__obs_entry **cols, uint32_t *n);

#endif
