/*
 * formats/var — hash of the var index (gene names), read with HDF5 at open.
 * Thread: the caller of scf_open(); HDF5 is not thread-safe here.
 */
#include "formats/var.h"

#include <errno.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "formats/faults.h" /* last: may wrap malloc in test builds */

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

	if (H5Tget_class(t) != H5T_STRING || H5Sget_simple_extent_ndims(sp) != 1)
		goto out;
	H5Sget_simple_extent_dims(sp, &n, NULL);
	int vlen = H5Tis_variable_str(t) > 0;
	size_t fixed = vlen ? 0 : H5Tget_size(t);
	void *buf = vlen ? calloc(n ? n : 1, sizeof(char *)) : calloc(n ? n : 1, fixed + 1);
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

/* The index dataset of var group g: named by its `_index` attribute. */
static hid_t open_index(hid_t g)
{
	char name[256] = "_index";
	hid_t a, t;

	if (H5Aexists(g, "_index") > 0 && (a = H5Aopen(g, "_index", H5P_DEFAULT)) >= 0) {
		t = H5Aget_type(a);
		if (H5Tget_class(t) == H5T_STRING) {
			hid_t mt = H5Tcopy(H5T_C_S1);
			char *v = NULL;
			if (H5Tis_variable_str(t) > 0) {
				H5Tset_size(mt, H5T_VARIABLE);
				if (H5Aread(a, mt, &v) >= 0 && v) {
					snprintf(name, sizeof(name), "%s", v);
					H5free_memory(v);
				}
			} else if (H5Tget_size(t) < sizeof(name)) {
				H5Tset_size(mt, sizeof(name));
				H5Aread(a, mt, name);
			}
			H5Tclose(mt);
		}
		H5Tclose(t);
		H5Aclose(a);
	}
	if (H5Lexists(g, name, H5P_DEFAULT) <= 0)
		return -1;
	return H5Dopen2(g, name, H5P_DEFAULT);
}

int scf__var_hash(const char *path, const char *key, uint64_t *hash, uint64_t *n)
{
	const char *gname = strcmp(key, "raw/X") == 0 ? "raw/var" : "var";
	H5E_auto2_t old_fn;
	void *old_data;
	hid_t file, g, d;
	int rc = 0;

	H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
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
	H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
	return rc;
}
