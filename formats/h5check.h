/*
 * formats/h5check — the checked door between HDF5's answers and the rest of
 * scfetch.  Every number the formats stage takes from a file (the rank and
 * dims of a dataspace, the shape of an attribute, the size a dataset
 * declares) passes through one of these before anything is sized or
 * indexed by it:
 *   - an attribute read as a string or as integers must be a scalar (or a
 *     one-element array) of that class, or exactly n integers;
 *   - a dataset's rank must be the one expected, and its dims are copied
 *     only then;
 *   - a dataset read whole must have all its storage written (no chunk left
 *     to its fill value) and declare no more bytes than the file could
 *     hold, compressed (so a 13 KB file cannot make open allocate GBs);
 *   - a path must name a regular file (a FIFO would block open() forever).
 * Each returns 0 (or 1: found) or a negative code, with the reason (no file
 * or dataset name; the caller adds them) in why.
 * Thread: the caller of scf_open(); HDF5 is not thread-safe here.
 */
#ifndef SCF_FORMATS_H5CHECK_H
#define SCF_FORMATS_H5CHECK_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* HDF5 prints its error stack by default; scfetch reports its own sentence. */
typedef struct scf__h5quiet {
	H5E_auto2_t fn;
	void *data;
} scf__h5quiet;

void scf__h5_quiet(scf__h5quiet *q);
void scf__h5_loud(const scf__h5quiet *q);

/*
 * path names a regular file that can be opened for reading: 0, or a
 * negative errno (ENOENT, EACCES, ELOOP, EISDIR, ...) or SCF_E_NOT_H5AD
 * for a FIFO, socket or device, with the reason in why.
 */
int scf__file_check(const char *path, char *why, size_t wlen);

/*
 * String attribute `name` of obj into buf (fixed or variable length).
 * 1 when read, 0 when absent, SCF_E_CORRUPT when it is not one string or
 * does not fit in len bytes.
 */
int scf__h5_attr_string(hid_t obj, const char *name, char *buf, size_t len, char *why,
                        size_t wlen);

/* Integer attribute `name`: exactly n values, as int64.  1, 0 absent, or SCF_E_CORRUPT. */
int scf__h5_attr_ints(hid_t obj, const char *name, int64_t *out, size_t n, char *why,
                      size_t wlen);

/* Rank of d must be want_rank (1 or 2); then dims[0..rank) are set. */
int scf__h5_dset_shape(hid_t d, unsigned want_rank, uint64_t *dims, char *why, size_t wlen);

/*
 * d (n_elem elements) is about to be read whole: its storage must be
 * written everywhere and n_elem stored elements must be plausible for the
 * file's size, at the best compression ratio deflate reaches.
 */
int scf__h5_check_backed(hid_t d, uint64_t n_elem, char *why, size_t wlen);

#endif
