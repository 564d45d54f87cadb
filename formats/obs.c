/*
 * formats/obs — categorical and integer obs columns, read once at open.
 * Thread: the caller of scf_open(); HDF5 is not thread-safe here.
 */
#include "formats/obs.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scfetch.h"
#include "formats/faults.h" /* last: may wrap malloc in test builds */

/* Read a 1-D integer dataset whole as int32; checks its length. */
static int read_codes(hid_t loc, const char *dname, uint64_t n_rows, int32_t **out,
                      char *why, size_t wlen)
{
	hid_t d = H5Dopen2(loc, dname, H5P_DEFAULT), sp, t;
	hsize_t n = 0;
	int rc = 0;

	if (d < 0) {
		snprintf(why, wlen, "dataset %s missing", dname);
		return SCF_E_CORRUPT;
	}
	sp = H5Dget_space(d);
	t = H5Dget_type(d);
	if (H5Sget_simple_extent_ndims(sp) != 1 || H5Tget_class(t) != H5T_INTEGER) {
		snprintf(why, wlen, "is not a 1-D integer column (categorical or integer obs only)");
		rc = SCF_E_UNSUPPORTED;
		goto out;
	}
	H5Sget_simple_extent_dims(sp, &n, NULL);
	if (n != n_rows) {
		snprintf(why, wlen, "has %llu entries for %llu rows", (unsigned long long)n,
		         (unsigned long long)n_rows);
		rc = SCF_E_CORRUPT;
		goto out;
	}
	*out = malloc((n ? n : 1) * sizeof(int32_t));
	if (!*out) {
		rc = -ENOMEM;
		snprintf(why, wlen, "out of memory");
	} else if (n && H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0) {
		snprintf(why, wlen, "cannot be read as int32");
		rc = SCF_E_CORRUPT;
	}
out:
	H5Tclose(t);
	H5Sclose(sp);
	H5Dclose(d);
	return rc;
}

/* Category names: variable- or fixed-length strings, copied into C strings. */
static int read_names(hid_t g, scf__obs_col *c, char *why, size_t wlen)
{
	hid_t d = H5Dopen2(g, "categories", H5P_DEFAULT), sp, t, mt;
	hsize_t n = 0;
	int rc = 0;

	if (d < 0) {
		snprintf(why, wlen, "categories missing");
		return SCF_E_CORRUPT;
	}
	sp = H5Dget_space(d);
	t = H5Dget_type(d);
	H5Sget_simple_extent_dims(sp, &n, NULL);
	if (H5Tget_class(t) != H5T_STRING) {
		/* numeric categories: name them by their value */
		double *v = malloc((n ? n : 1) * sizeof(double));
		c->categories = calloc(n ? n : 1, sizeof(char *));
		if (!v || !c->categories || (n && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL,
		                                        H5P_DEFAULT, v) < 0)) {
			rc = SCF_E_CORRUPT;
			snprintf(why, wlen, "categories cannot be read");
		}
		for (hsize_t i = 0; rc == 0 && i < n; i++) {
			char buf[64];
			snprintf(buf, sizeof(buf), "%.17g", v[i]);
			if (!(c->categories[i] = strdup(buf)))
				rc = -ENOMEM;
		}
		free(v);
	} else {
		char **s = calloc(n ? n : 1, sizeof(char *));
		int vlen = H5Tis_variable_str(t) > 0;
		size_t fixed = vlen ? 0 : H5Tget_size(t);
		char *buf = vlen ? NULL : calloc(n ? n : 1, fixed + 1);
		mt = H5Tcopy(H5T_C_S1);
		H5Tset_size(mt, vlen ? H5T_VARIABLE : fixed + 1);
		H5Tset_cset(mt, H5Tget_cset(t));
		c->categories = calloc(n ? n : 1, sizeof(char *));
		if (!s || !c->categories || (!vlen && !buf) ||
		    (n && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, vlen ? (void *)s : buf) < 0)) {
			rc = SCF_E_CORRUPT;
			snprintf(why, wlen, "categories cannot be read as strings");
		} else {
			for (hsize_t i = 0; i < n && rc == 0; i++) {
				const char *src = vlen ? s[i] : buf + i * (fixed + 1);
				if (!(c->categories[i] = strdup(src ? src : "")))
					rc = -ENOMEM;
			}
			if (vlen)
				H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, s);
		}
		H5Tclose(mt);
		free(buf);
		free(s);
	}
	c->n_categories = n;
	H5Tclose(t);
	H5Sclose(sp);
	H5Dclose(d);
	return rc;
}

/* Codes must name a category or be -1 (missing). */
static int check_codes(const scf__obs_col *c, uint64_t n_rows, char *why, size_t wlen)
{
	for (uint64_t r = 0; r < n_rows; r++) {
		if (c->codes[r] < -1 || (c->categories && c->codes[r] >= (int64_t)c->n_categories)) {
			snprintf(why, wlen, "row %llu has code %d but there are %llu categories",
			         (unsigned long long)r, c->codes[r], (unsigned long long)c->n_categories);
			return SCF_E_CORRUPT;
		}
	}
	return 0;
}

static int load_column(hid_t file, scf__obs_col *c, uint64_t n_rows, char *why, size_t wlen)
{
	char path[160];
	H5O_info_t oi;
	int rc;

	snprintf(path, sizeof(path), "obs/%s", c->name);
	if (H5Lexists(file, "obs", H5P_DEFAULT) <= 0 || H5Lexists(file, path, H5P_DEFAULT) <= 0 ||
	    H5Oget_info_by_name2(file, path, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
		snprintf(why, wlen, "no such column");
		return SCF_E_NOT_H5AD;
	}
	if (oi.type == H5O_TYPE_DATASET)
		return read_codes(file, path, n_rows, &c->codes, why, wlen);
	hid_t g = H5Gopen2(file, path, H5P_DEFAULT);
	if (g < 0) {
		snprintf(why, wlen, "cannot be opened");
		return SCF_E_CORRUPT;
	}
	rc = read_codes(g, "codes", n_rows, &c->codes, why, wlen);
	if (rc == 0)
		rc = read_names(g, c, why, wlen);
	if (rc == 0)
		rc = check_codes(c, n_rows, why, wlen);
	H5Gclose(g);
	return rc;
}

int scf__obs_load(scf__obs_col *c, const char *path, const char *name, uint64_t n_rows,
                  char *err, size_t errlen)
{
	H5E_auto2_t old_fn;
	void *old_data;
	char why[300] = "";
	hid_t file;
	int rc;

	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (file < 0) {
		rc = SCF_E_NOT_H5AD;
		snprintf(why, sizeof(why), "HDF5 cannot open the file");
	} else {
		rc = load_column(file, c, n_rows, why, sizeof(why));
		H5Fclose(file);
	}
	H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
	if (rc < 0) {
		snprintf(err, errlen, "%s: obs/%s: %s", path, name, why);
		scf__obs_free(c);
	}
	return rc;
}

void scf__obs_free(scf__obs_col *c)
{
	for (uint64_t i = 0; c->categories && i < c->n_categories; i++)
		free(c->categories[i]);
	free(c->categories);
	free(c->codes);
	c->categories = NULL;
	c->codes = NULL;
}
