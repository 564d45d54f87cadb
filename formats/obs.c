/*
 * formats/obs — categorical, integer and float obs columns, read once at
 * open.  Thread: the caller of scf_open(); HDF5 is not thread-safe here.
 */
#include "formats/obs.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scfetch.h"
#include "common/checked.h"
#include "formats/h5check.h"
#include "formats/h5ad.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

/* A 1-D dataset of n_rows entries, written, of a plausible size: opened, or < 0. */
static hid_t open_column(hid_t loc, const char *dname, uint64_t n_rows, int *rc, char *why,
                         size_t wlen)
{
	hid_t d = H5Dopen2(loc, dname, H5P_DEFAULT);
	uint64_t n = 0;

	*rc = 0;
	if (d < 0) {
		snprintf(why, wlen, "dataset %s missing", dname);
		*rc = SCF_E_CORRUPT;
		return -1;
	}
	if ((*rc = scf__h5_dset_shape(d, 1, &n, why, wlen)) == 0 && n != n_rows) {
		snprintf(why, wlen, "has %llu entries for %llu rows", (unsigned long long)n,
		         (unsigned long long)n_rows);
		*rc = SCF_E_CORRUPT;
	}
	if (*rc == 0)
		*rc = scf__h5_check_backed(d, n, why, wlen);
	if (*rc < 0) {
		H5Dclose(d);
		return -1;
	}
	return d;
}

/* Integers (or a boolean enum) as int64, without loss. */
static int read_ints(hid_t d, hid_t t, uint64_t n, scf__obs_col *c, char *why, size_t wlen)
{
	int is_enum = H5Tget_class(t) == H5T_ENUM;
	hid_t base = is_enum ? H5Tget_super(t) : H5Tcopy(t);
	int is_unsigned = H5Tget_sign(base) == H5T_SGN_NONE;
	size_t size = H5Tget_size(base);
	int rc = 0;

	H5Tclose(base);
	c->kind = SCF__OBS_INT;
	c->ints = scf__alloc_array(n, sizeof(int64_t));
	if (!c->ints) {
		snprintf(why, wlen, "out of memory");
		return -ENOMEM;
	}
	if (is_enum) {
		/* HDF5 converts an enum only to an enum: read the native enum's bytes */
		hid_t mt = H5Tget_native_type(t, H5T_DIR_ASCEND);
		size_t ms = mt >= 0 ? H5Tget_size(mt) : 0;
		uint8_t *raw = ms ? scf__alloc_array(n, ms) : NULL;
		hid_t mbase = mt >= 0 ? H5Tget_super(mt) : -1;
		if (!raw || mbase < 0 || (n && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0)) {
			snprintf(why, wlen, "cannot be read as an enum of integers");
			rc = SCF_E_CORRUPT;
		}
		for (uint64_t i = 0; rc == 0 && i < n; i++) {
			uint64_t u = 0;
			memcpy(&u, raw + i * ms, ms);
			if (!is_unsigned && ms < 8 && (u >> (ms * 8 - 1)))
				u |= ~0ULL << (ms * 8);
			c->ints[i] = (int64_t)u;
		}
		free(raw);
		if (mbase >= 0)
			H5Tclose(mbase);
		if (mt >= 0)
			H5Tclose(mt);
	} else if (is_unsigned && size == 8) {
		/* uint64 beyond INT64_MAX would be clamped by HDF5: read as stored, check */
		if (n && H5Dread(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->ints) < 0) {
			snprintf(why, wlen, "cannot be read as uint64");
			return SCF_E_CORRUPT;
		}
		for (uint64_t i = 0; i < n; i++)
			if (c->ints[i] < 0) {
				snprintf(why, wlen, "row %llu holds %llu, beyond the int64 range this "
				         "library delivers", (unsigned long long)i,
				         (unsigned long long)(uint64_t)c->ints[i]);
				return SCF_E_UNSUPPORTED;
			}
	} else if (n && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->ints) < 0) {
		snprintf(why, wlen, "cannot be read as int64");
		return SCF_E_CORRUPT;
	}
	c->fits_i32 = 1;
	for (uint64_t i = 0; rc == 0 && i < n; i++)
		if (c->ints[i] < INT32_MIN || c->ints[i] > INT32_MAX)
			c->fits_i32 = 0;
	return rc;
}

/* A plain column: integer, boolean or float values, one per row. */
static int read_values(hid_t loc, const char *dname, uint64_t n_rows, scf__obs_col *c,
                       char *why, size_t wlen)
{
	int rc;
	hid_t d = open_column(loc, dname, n_rows, &rc, why, wlen), t;

	if (d < 0)
		return rc;
	t = H5Dget_type(d);
	switch (H5Tget_class(t)) {
	case H5T_INTEGER:
	case H5T_ENUM:
		rc = read_ints(d, t, n_rows, c, why, wlen);
		break;
	case H5T_FLOAT:
		c->kind = SCF__OBS_FLOAT;
		c->floats = scf__alloc_array(n_rows, sizeof(double));
		if (!c->floats) {
			snprintf(why, wlen, "out of memory");
			rc = -ENOMEM;
		} else if (n_rows && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT,
		                             c->floats) < 0) {
			snprintf(why, wlen, "cannot be read as float64");
			rc = SCF_E_CORRUPT;
		}
		break;
	default:
		snprintf(why, wlen, "is neither categorical nor a column of integers, booleans "
		         "or floats (strings must be stored as a categorical)");
		rc = SCF_E_UNSUPPORTED;
	}
	H5Tclose(t);
	H5Dclose(d);
	return rc;
}

/* Categorical codes as int32: a wider code is out of range and fails the check. */
static int read_codes(hid_t g, uint64_t n_rows, scf__obs_col *c, char *why, size_t wlen)
{
	int rc;
	hid_t d = open_column(g, "codes", n_rows, &rc, why, wlen), t;

	if (d < 0)
		return rc;
	t = H5Dget_type(d);
	if (H5Tget_class(t) != H5T_INTEGER) {
		snprintf(why, wlen, "codes are not integers");
		rc = SCF_E_CORRUPT;
	} else if (!(c->codes = scf__alloc_array(n_rows, sizeof(int32_t)))) {
		snprintf(why, wlen, "out of memory");
		rc = -ENOMEM;
	} else if (n_rows && H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT,
	                             c->codes) < 0) {
		snprintf(why, wlen, "codes cannot be read as int32");
		rc = SCF_E_CORRUPT;
	}
	H5Tclose(t);
	H5Dclose(d);
	return rc;
}

/* Numeric categories: name them by their value. */
static int numeric_names(hid_t d, scf__obs_col *c, uint64_t n, char *why, size_t wlen)
{
	double *v = scf__alloc_array(n, sizeof(double));
	int rc = 0;

	if (!v)
		return -ENOMEM;
	if (n && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
		snprintf(why, wlen, "categories cannot be read");
		rc = SCF_E_CORRUPT;
	}
	for (uint64_t i = 0; rc == 0 && i < n; i++) {
		char buf[64];
		snprintf(buf, sizeof(buf), "%.17g", v[i]);
		if (!(c->categories[i] = strdup(buf)))
			rc = -ENOMEM;
	}
	free(v);
	return rc;
}

/* String categories, variable or fixed length, copied into C strings. */
static int string_names(hid_t d, hid_t t, scf__obs_col *c, uint64_t n, char *why,
                        size_t wlen)
{
	int vlen = H5Tis_variable_str(t) > 0;
	size_t fixed = vlen ? 0 : H5Tget_size(t);
	void *buf = vlen ? scf__calloc_array(n, sizeof(char *)) : scf__calloc_array(n, fixed + 1);
	hid_t mt, sp;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	mt = H5Tcopy(H5T_C_S1);
	H5Tset_size(mt, vlen ? H5T_VARIABLE : fixed + 1);
	H5Tset_cset(mt, H5Tget_cset(t));
	if (n && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
		snprintf(why, wlen, "categories cannot be read as strings");
		rc = SCF_E_CORRUPT;
	} else {
		for (uint64_t i = 0; i < n && rc == 0; i++) {
			const char *src = vlen ? ((char **)buf)[i] : (char *)buf + i * (fixed + 1);
			if (!(c->categories[i] = strdup(src ? src : "")))
				rc = -ENOMEM;
		}
		if (vlen && n) {
			sp = H5Dget_space(d);
			H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
			H5Sclose(sp);
		}
	}
	H5Tclose(mt);
	free(buf);
	return rc;
}

/* Category names: a 1-D dataset, written, of fewer than 2^31 entries. */
static int read_names(hid_t g, scf__obs_col *c, char *why, size_t wlen)
{
	hid_t d = H5Dopen2(g, "categories", H5P_DEFAULT), t;
	uint64_t n = 0;
	int rc;

	if (d < 0) {
		snprintf(why, wlen, "categories missing");
		return SCF_E_CORRUPT;
	}
	rc = scf__h5_dset_shape(d, 1, &n, why, wlen);
	if (rc < 0) {
		char tmp[200];
		snprintf(tmp, sizeof(tmp), "categories %s", why);
		snprintf(why, wlen, "%s", tmp);
	}
	if (rc == 0 && n > INT32_MAX) {
		snprintf(why, wlen, "%llu categories, more than int32 codes can name",
		         (unsigned long long)n);
		rc = SCF_E_UNSUPPORTED;
	}
	if (rc == 0 && (rc = scf__h5_check_backed(d, n, why, wlen)) < 0) {
		char tmp[200];
		snprintf(tmp, sizeof(tmp), "categories %s", why);
		snprintf(why, wlen, "%s", tmp);
	}
	if (rc == 0 && !(c->categories = scf__calloc_array(n, sizeof(char *))))
		rc = -ENOMEM;
	if (rc == 0) {
		c->n_categories = n;
		t = H5Dget_type(d);
		rc = H5Tget_class(t) == H5T_STRING ? string_names(d, t, c, n, why, wlen)
		                                   : numeric_names(d, c, n, why, wlen);
		H5Tclose(t);
	}
	if (rc == -ENOMEM)
		snprintf(why, wlen, "out of memory");
	H5Dclose(d);
	return rc;
}

/* Codes must name a category or be -1 (missing). */
static int check_codes(const scf__obs_col *c, uint64_t n_rows, char *why, size_t wlen)
{
	for (uint64_t r = 0; r < n_rows; r++) {
		if (c->codes[r] < -1 || c->codes[r] >= (int64_t)c->n_categories) {
			snprintf(why, wlen, "row %llu has code %d but there are %llu categories",
			         (unsigned long long)r, c->codes[r], (unsigned long long)c->n_categories);
			return SCF_E_CORRUPT;
		}
	}
	return 0;
}

static int load_categorical(hid_t g, scf__obs_col *c, uint64_t n_rows, char *why,
                            size_t wlen)
{
	char enc[64];
	int rc = scf__h5_attr_string(g, "encoding-type", enc, sizeof(enc), why, wlen);

	if (rc < 0)
		return rc;
	if (rc == 1 && strcmp(enc, "categorical") != 0) {
		snprintf(why, wlen, "is a group with encoding-type \"%s\"; only categorical "
		         "groups are read", enc);
		return SCF_E_UNSUPPORTED;
	}
	c->kind = SCF__OBS_CATEGORICAL;
	rc = read_codes(g, n_rows, c, why, wlen);
	if (rc == 0)
		rc = read_names(g, c, why, wlen);
	if (rc == 0)
		rc = check_codes(c, n_rows, why, wlen);
	return rc;
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
		return read_values(file, path, n_rows, c, why, wlen);
	hid_t g = H5Gopen2(file, path, H5P_DEFAULT);
	if (g < 0) {
		snprintf(why, wlen, "cannot be opened");
		return SCF_E_CORRUPT;
	}
	rc = load_categorical(g, c, n_rows, why, wlen);
	H5Gclose(g);
	return rc;
}

int scf__obs_load(scf__obs_col *c, const char *path, const char *name, uint64_t n_rows,
                  char *err, size_t errlen)
{
	scf__h5quiet quiet;
	char why[300] = "", what[500];
	hid_t file;
	int rc;

	memset(c, 0, sizeof(*c));
	if (strlen(name) >= sizeof(c->name) || strchr(name, '/') || !name[0]) {
		snprintf(what, sizeof(what), "obs/%s: not a column name (empty, with '/' or "
		         "longer than %zu bytes)", name, sizeof(c->name) - 1);
		scf__path_msg(err, errlen, path, what);
		return -EINVAL;
	}
	snprintf(c->name, sizeof(c->name), "%s", name);
	scf__h5_quiet(&quiet);
	file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (file < 0) {
		rc = SCF_E_NOT_H5AD;
		snprintf(why, sizeof(why), "HDF5 cannot open the file");
	} else {
		rc = load_column(file, c, n_rows, why, sizeof(why));
		H5Fclose(file);
	}
	scf__h5_loud(&quiet);
	if (rc < 0) {
		snprintf(what, sizeof(what), "obs/%s: %s", name, why);
		scf__path_msg(err, errlen, path, what);
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
	free(c->ints);
	free(c->floats);
	c->categories = NULL;
	c->codes = NULL;
	c->ints = NULL;
	c->floats = NULL;
	c->n_categories = 0;
}

/* Append one extent to *r (*n of *cap used); 0 or -ENOMEM. */
static int push_range(scf__byte_range **r, size_t *n, size_t *cap, uint64_t addr, uint64_t len)
{
	if (*n == *cap) {
		scf__byte_range *q = realloc(*r, (*cap * 2 + 16) * sizeof(*q));
		if (!q)
			return -ENOMEM;
		*r = q;
		*cap = *cap * 2 + 16;
	}
	(*r)[(*n)++] = (scf__byte_range){ addr, len, 0 };
	return 0;
}

/* Append the stored extents of dataset `dname` under loc; 0 or -ENOMEM. */
static int add_storage(hid_t loc, const char *dname, scf__byte_range **r, size_t *n,
                       size_t *cap)
{
	hid_t d = H5Lexists(loc, dname, H5P_DEFAULT) > 0 ? H5Dopen2(loc, dname, H5P_DEFAULT) : -1;
	hid_t sp = d >= 0 ? H5Dget_space(d) : -1, dcpl = d >= 0 ? H5Dget_create_plist(d) : -1;
	hsize_t nc = 0;
	int rc = 0;

	if (d >= 0 && sp >= 0 && dcpl >= 0) {
		if (H5Pget_layout(dcpl) == H5D_CONTIGUOUS) {
			haddr_t off = H5Dget_offset(d);
			if (off != HADDR_UNDEF)
				rc = push_range(r, n, cap, off, H5Dget_storage_size(d));
		} else if (H5Pget_layout(dcpl) == H5D_CHUNKED &&
		           H5Dget_num_chunks(d, sp, &nc) >= 0) {
			for (hsize_t i = 0; rc == 0 && i < nc; i++) {
				haddr_t addr;
				hsize_t size;
				if (H5Dget_chunk_info(d, sp, i, NULL, NULL, &addr, &size) >= 0)
					rc = push_range(r, n, cap, addr, size);
			}
		}
	}
	if (dcpl >= 0)
		H5Pclose(dcpl);
	if (sp >= 0)
		H5Sclose(sp);
	if (d >= 0)
		H5Dclose(d);
	return rc;
}

int scf__obs_check_storage(const char *path, const char *name, const struct scf__matrix *m,
                           char *err, size_t errlen)
{
	scf__h5quiet quiet;
	scf__byte_range *r = NULL;
	size_t n = 0, cap = 0;
	char col[200], what[600];
	const char *which = NULL;
	int rc = 0;

	snprintf(col, sizeof(col), "obs/%s", name);
	scf__h5_quiet(&quiet);
	hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (file >= 0) {
		H5O_info_t oi;
		if (H5Oget_info_by_name2(file, col, &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0) {
			if (oi.type == H5O_TYPE_DATASET) {
				rc = add_storage(file, col, &r, &n, &cap);
			} else {
				hid_t g = H5Gopen2(file, col, H5P_DEFAULT);
				if (g >= 0) {
					rc = add_storage(g, "codes", &r, &n, &cap);
					if (rc == 0)
						rc = add_storage(g, "categories", &r, &n, &cap);
					H5Gclose(g);
				}
			}
		}
		H5Fclose(file);
	}
	scf__h5_loud(&quiet);
	if (rc == 0 && n) {
		scf__extents_sort(r, n);
		rc = scf__h5ad_meets(m, r, n, &which);
	}
	free(r);
	if (rc == 1) {
		snprintf(what, sizeof(what), "%s: stored bytes overlap those of %s: the chunk index "
		         "or layout points into another object", which, col);
		scf__path_msg(err, errlen, path, what);
		return SCF_E_CORRUPT;
	}
	if (rc < 0)
		scf__path_msg(err, errlen, path, "out of memory checking obs storage");
	return rc;
}
