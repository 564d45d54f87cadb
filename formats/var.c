/*
 * formats/var — hash of the var index (gene names), read with HDF5 at open.
 * Thread: the caller of scf_open(); HDF5 is not thread-safe here.
 */
#include "formats/var.h"

#include <errno.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "common/checked.h"
#include "formats/h5check.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

static uint64_t fnv(uint64_t h, const char *s)
{
	for (;; s++) { /* the terminating 0 too: {"ab","c"} differs from {"a","bc"} */
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
		if (!*s)
			return h;
	}
}

/* Hash a 1-D string dataset (variable or fixed length).  1, 0 or -ENOMEM. */
static int hash_strings(hid_t d, uint64_t *hash, uint64_t *count)
{
	hid_t sp = H5Dget_space(d), t = H5Dget_type(d), mt = -1;
	hsize_t n = 0;
	int rc = 0;

	char why[200];
	if (H5Tget_class(t) != H5T_STRING || H5Sget_simple_extent_ndims(sp) != 1)
		goto out;
	H5Sget_simple_extent_dims(sp, &n, NULL);
	if (scf__h5_check_backed(d, n, why, sizeof(why)) < 0)
		goto out; /* not a readable index: nothing to compare */
	int vlen = H5Tis_variable_str(t) > 0;
	size_t fixed = vlen ? 0 : H5Tget_size(t);
	void *buf = vlen ? scf__calloc_array(n, sizeof(char *)) : scf__calloc_array(n, fixed + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	mt = H5Tcopy(H5T_C_S1);
	H5Tset_size(mt, vlen ? H5T_VARIABLE : fixed + 1);
	H5Tset_cset(mt, H5Tget_cset(t));
	if (n == 0 || H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) {
		uint64_t h = 0xcbf29ce484222325ULL;
		for (hsize_t i = 0; i < n; i++) {
			const char *s = vlen ? ((char **)buf)[i] : (char *)buf + i * (fixed + 1);
			h = fnv(h, s ? s : "");
		}
		if (vlen && n)
			H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
		*hash = h;
		*count = n;
		rc = 1;
	}
	free(buf);
out:
	if (mt >= 0)
		H5Tclose(mt);
	H5Tclose(t);
	H5Sclose(sp);
	return rc;
}

/*
 * The index dataset of var group g: named by its `_index` attribute, a
 * single string (an array of them names nothing: the default is used).
 */
static hid_t open_index(hid_t g)
{
	char name[256] = "_index", why[200];

	if (scf__h5_attr_string(g, "_index", name, sizeof(name), why, sizeof(why)) <= 0)
		snprintf(name, sizeof(name), "_index");
	if (H5Lexists(g, name, H5P_DEFAULT) <= 0)
		return -1;
	return H5Dopen2(g, name, H5P_DEFAULT);
}

int scf__var_hash(const char *path, const char *key, uint64_t *hash, uint64_t *n)
{
	const char *gname = strcmp(key, "raw/X") == 0 ? "raw/var" : "var";
	scf__h5quiet quiet;
	hid_t file, g, d;
	int rc = 0;

	scf__h5_quiet(&quiet);
	file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (file >= 0) {
		if (H5Lexists(file, gname, H5P_DEFAULT) > 0 &&
		    (g = H5Gopen2(file, gname, H5P_DEFAULT)) >= 0) {
			if ((d = open_index(g)) >= 0) {
				rc = hash_strings(d, hash, n);
				H5Dclose(d);
			}
			H5Gclose(g);
		}
		H5Fclose(file);
	}
	scf__h5_loud(&quiet);
	return rc;
}
