/*
 * formats/contents — the matrices and obs columns an .h5ad holds, found by
 * walking its groups and reading dataset headers only.
 * Thread: the caller of scf_describe(); HDF5 is not thread-safe here.
 */
#include "formats/contents.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/h5check.h"
#include "formats/obs.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

/* Name of link i of group g, creation order when kept, else name order; 0 or -1. */
static int link_name(hid_t g, hsize_t i, int crt_order, char *buf, size_t len)
{
	ssize_t n = H5Lget_name_by_idx(g, ".", crt_order ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME,
	                               H5_ITER_INC, i, buf, len, H5P_DEFAULT);
	return n > 0 && (size_t)n < len ? 0 : -1;
}

/* Whether every link of path (a/b/c) exists: HDF5 calls a missing group an error. */
static int has_path(hid_t file, const char *path)
{
	char part[256];

	for (const char *p = strchr(path, '/'); ; p = strchr(p + 1, '/')) {
		size_t n = p ? (size_t)(p - path) : strlen(path);
		if (n >= sizeof(part))
			return 0;
		memcpy(part, path, n);
		part[n] = 0;
		if (H5Lexists(file, part, H5P_DEFAULT) <= 0)
			return 0;
		if (!p)
			return H5Oexists_by_name(file, path, H5P_DEFAULT) > 0;
	}
}

/* Pointers and strings in one block, so that one free() releases the list. */
static char **pack_names(char (*tmp)[160], uint32_t n)
{
	size_t bytes = (n + 1) * sizeof(char *);
	char **out, *s;

	for (uint32_t i = 0; i < n; i++)
		bytes += strlen(tmp[i]) + 1;
	out = malloc(bytes);
	if (!out)
		return NULL;
	s = (char *)(out + n + 1);
	for (uint32_t i = 0; i < n; i++) {
		size_t len = strlen(tmp[i]) + 1;
		out[i] = memcpy(s, tmp[i], len);
		s += len;
	}
	out[n] = NULL;
	return out;
}

int scf__contents_matrices(hid_t file, char ***names, uint32_t *n)
{
	enum { MAX_MATRICES = 256 };
	char (*tmp)[160] = malloc(MAX_MATRICES * sizeof(*tmp));
	uint32_t k = 0;
	H5G_info_t gi;

	*names = NULL;
	*n = 0;
	if (!tmp)
		return -ENOMEM;
	if (has_path(file, "X"))
		strcpy(tmp[k++], "X");
	hid_t g = has_path(file, "layers") ? H5Gopen2(file, "layers", H5P_DEFAULT) : -1;
	for (hsize_t i = 0; g >= 0 && H5Gget_info(g, &gi) >= 0 && i < gi.nlinks &&
	                    k < MAX_MATRICES - 1; i++) {
		char leaf[128];
		if (link_name(g, i, 0, leaf, sizeof(leaf)) == 0)
			snprintf(tmp[k++], sizeof(*tmp), "layers/%s", leaf);
	}
	if (g >= 0)
		H5Gclose(g);
	if (has_path(file, "raw/X"))
		strcpy(tmp[k++], "raw/X");
	*names = pack_names(tmp, k);
	free(tmp);
	if (!*names)
		return -ENOMEM;
	*n = k;
	return 0;
}

/* A 1-D dataset of n_rows entries (any length when n_rows is 0): its type class, or -1. */
static int column_class(hid_t d, uint64_t n_rows)
{
	char why[200];
	uint64_t len = 0;
	int cls = -1;

	if (scf__h5_dset_shape(d, 1, &len, why, sizeof(why)) < 0 || (n_rows && len != n_rows))
		return -1;
	hid_t t = H5Dget_type(d);
	if (t >= 0)
		cls = H5Tget_class(t);
	if (t >= 0)
		H5Tclose(t);
	return cls;
}

/* A plain column: integers and booleans (an enum) are delivered as ints, floats as floats. */
static void probe_values(hid_t obs, scf__obs_entry *e, uint64_t n_rows)
{
	hid_t d = H5Dopen2(obs, e->name, H5P_DEFAULT);
	int cls = d >= 0 ? column_class(d, n_rows) : -1;

	if (cls == H5T_INTEGER || cls == H5T_ENUM)
		e->kind = SCF__OBS_INT;
	else if (cls == H5T_FLOAT)
		e->kind = SCF__OBS_FLOAT;
	if (d >= 0)
		H5Dclose(d);
}

/* A categorical group: integer codes, and the length of its categories. */
static void probe_categorical(hid_t obs, scf__obs_entry *e, uint64_t n_rows)
{
	char enc[64], why[200];
	uint64_t n_cat = 0;
	hid_t g = H5Gopen2(obs, e->name, H5P_DEFAULT);

	if (g < 0)
		return;
	int rc = scf__h5_attr_string(g, "encoding-type", enc, sizeof(enc), why, sizeof(why));
	hid_t codes = rc >= 0 && (rc == 0 || strcmp(enc, "categorical") == 0) &&
	              H5Lexists(g, "codes", H5P_DEFAULT) > 0 ? H5Dopen2(g, "codes", H5P_DEFAULT) : -1;
	hid_t cats = codes >= 0 && H5Lexists(g, "categories", H5P_DEFAULT) > 0
	             ? H5Dopen2(g, "categories", H5P_DEFAULT) : -1;
	if (cats >= 0 && column_class(codes, n_rows) == H5T_INTEGER &&
	    scf__h5_dset_shape(cats, 1, &n_cat, why, sizeof(why)) == 0) {
		e->kind = SCF__OBS_CATEGORICAL;
		e->n_categories = n_cat;
	}
	if (cats >= 0)
		H5Dclose(cats);
	if (codes >= 0)
		H5Dclose(codes);
	H5Gclose(g);
}

static void probe_column(hid_t obs, scf__obs_entry *e, uint64_t n_rows)
{
	H5O_info_t oi;

	e->kind = -1;
	if (H5Oget_info_by_name2(obs, e->name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
		return;
	if (oi.type == H5O_TYPE_DATASET)
		probe_values(obs, e, n_rows);
	else if (oi.type == H5O_TYPE_GROUP)
		probe_categorical(obs, e, n_rows);
}

int scf__contents_obs(hid_t file, uint64_t n_rows, scf__obs_entry **cols, uint32_t *n)
{
	hid_t g = has_path(file, "obs") ? H5Gopen2(file, "obs", H5P_DEFAULT) : -1;
	H5G_info_t gi;
	uint32_t k = 0;

	*cols = NULL;
	*n = 0;
	if (g < 0 || H5Gget_info(g, &gi) < 0 || gi.nlinks == 0 || gi.nlinks > UINT32_MAX) {
		if (g >= 0)
			H5Gclose(g);
		return 0;
	}
	*cols = calloc(gi.nlinks, sizeof(**cols));
	if (!*cols) {
		H5Gclose(g);
		return -ENOMEM;
	}
	for (hsize_t i = 0; i < gi.nlinks; i++) {
		scf__obs_entry *e = &(*cols)[k];
		if (link_name(g, i, 1, e->name, sizeof(e->name)) < 0 &&
		    link_name(g, i, 0, e->name, sizeof(e->name)) < 0)
			continue;
		if (strcmp(e->name, "__categories") == 0 || strcmp(e->name, "_index") == 0)
			continue; /* the index and anndata < 0.8's category store */
		probe_column(g, e, n_rows);
		k++;
	}
	H5Gclose(g);
	*n = k;
	return 0;
}
