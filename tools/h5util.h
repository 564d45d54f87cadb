/*
 * tools/h5util — the HDF5 helpers of the code outside the library that
 * writes or reads files with the HDF5 library itself: the writers
 * (tools/synth, tools/repack), the tests' fixtures, the fuzz corpus and
 * the perf runners.  The library has its own door to HDF5
 * (formats/h5check) and shares nothing with these.
 * Thread: the caller's; HDF5 is not thread-safe here.
 */
#ifndef SCF_TOOLS_H5UTIL_H
#define SCF_TOOLS_H5UTIL_H

#include <hdf5.h>

/* HDF5 prints its error stack by default; callers report their own sentence. */
typedef struct h5u_quiet {
	H5E_auto2_t fn;
	void *data;
} h5u_quiet;

void h5u_quiet_on(h5u_quiet *q);
void h5u_quiet_off(const h5u_quiet *q);

/* Any HDF5 id, closed whatever its kind; ids that failed (< 0) are ignored. */
void h5u_put(hid_t id);

/* Variable-length UTF-8 strings, as h5py stores Python str (anndata expects them). */
hid_t h5u_vlen_str(void);

/* A scalar variable-length string attribute (anndata's markers).  0 or -1. */
int h5u_attr_str(hid_t obj, const char *name, const char *value);

/* encoding-type and encoding-version.  0 or -1. */
int h5u_attr_encoding(hid_t obj, const char *type, const char *version);

/* A 1-D attribute of n values; n == 0 writes the empty extent only.  0 or -1. */
int h5u_attr_array(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *buf,
                   hsize_t n);

/* h5py writes numpy bools as an int8 enum {FALSE, TRUE}; `ordered` is one.  0 or -1. */
int h5u_attr_false(hid_t obj, const char *name);

#endif
