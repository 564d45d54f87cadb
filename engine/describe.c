/*
 * engine/describe — scf_describe(): what a file holds, for tools that must
 * not reach inside the library (the CLI's info and tune, the perf suite).
 * formats/ does the work (h5ad: the matrix; contents: matrices and obs
 * columns); this file copies its answers into the public structs.
 * Thread: the caller's; HDF5 is not thread-safe here.
 */
#include "scfetch.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/checked.h"
#include "formats/contents.h"
#include "formats/h5ad.h"
#include "formats/h5check.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

/*
 * The first version's size: a caller passing less cannot be told apart from
 * garbage.  When fields are added, this stays at the end of `_pad`.
 */
#define DESC_V1_SIZE (offsetof(scf_description, _pad) + sizeof(uint32_t))

/* Bytes the dataset's elements occupy in the file. */
static uint64_t stored_bytes(const scf__dset *ds)
{
	uint64_t n = 0;

	if (ds->storage == SCF__CONTIGUOUS)
		return scf__dtype_bytes(ds->type, ds->dims[0] * (ds->rank == 2 ? ds->dims[1] : 1));
	for (uint64_t i = 0; ds->chunks.rec && i < ds->chunks.n; i++)
		if (scf__chunk_addr(&ds->chunks, i) != SCF__CHUNK_UNALLOCATED)
			n += scf__chunk_size(&ds->chunks, i);
	return n;
}

/* The pipeline as "shuffle+deflate". */
static void filter_text(const scf__dset *ds, char *buf, size_t len)
{
	size_t k = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < ds->n_filters && k < len; i++) {
		char nb[32];
		k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? "+" : "",
		                      scf__filter_name(ds->filter[i].id, nb, sizeof(nb)));
	}
}

static void copy_dset(scf_dataset_desc *out, const scf__dset *ds)
{
	snprintf(out->name, sizeof(out->name), "%s", ds->name);
	snprintf(out->dtype, sizeof(out->dtype), "%s", scf__dtype_name(ds->type));
	filter_text(ds, out->filters, sizeof(out->filters));
	out->rank = ds->rank;
	out->dims[0] = ds->dims[0];
	out->dims[1] = ds->rank == 2 ? ds->dims[1] : 1;
	out->chunked = ds->storage == SCF__CHUNKED;
	if (out->chunked) {
		out->chunk_dims[0] = ds->chunks.chunk_dims[0];
		out->chunk_dims[1] = ds->rank == 2 ? ds->chunks.chunk_dims[1] : 1;
		out->n_chunks = ds->chunks.n;
	} else {
		out->offset = ds->offset;
	}
	out->stored_bytes = stored_bytes(ds);
}

/* The matrix through the same door scf_open() uses, so the verdict is the same. */
static int describe_matrix(scf_description *d, const char *path, const char *key,
                           char *errbuf, size_t errlen)
{
	char err[1024];
	scf__matrix *m = malloc(sizeof(*m));
	int rc;

	if (!m)
		return -ENOMEM;
	rc = scf__h5ad_open(m, path, key, err, sizeof(err));
	if (rc < 0) {
		if (errbuf)
			snprintf(errbuf, errlen, "%s", err);
		free(m);
		return rc;
	}
	d->dense = m->encoding == SCF__DENSE;
	d->n_rows = m->n_rows;
	d->n_cols = m->n_cols;
	d->nnz = m->nnz;
	copy_dset(&d->dataset[0], &m->data);
	d->n_datasets = 1;
	if (!d->dense) {
		snprintf(d->indptr_dtype, sizeof(d->indptr_dtype), "%s",
		         scf__dtype_name(m->indptr_type));
		copy_dset(&d->dataset[1], &m->indices);
		copy_dset(&d->dataset[2], &m->indptr_ds);
		d->n_datasets = 3;
	}
	scf__h5ad_free(m);
	free(m);
	return 0;
}

/* Matrices and obs columns; 0 when HDF5 cannot open the file (nothing to list). */
static int describe_contents(scf_description *d, const char *path)
{
	scf__h5quiet quiet;
	scf__obs_entry *cols = NULL;
	char **names = NULL, why[300];
	uint32_t n_cols = 0, n_names = 0;
	int rc = 0;

	/* a FIFO or device would block HDF5's open forever */
	if (scf__file_check(path, why, sizeof(why)) < 0)
		return 0;
	scf__h5_quiet(&quiet);
	hid_t file = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
	if (file >= 0) {
		rc = scf__contents_matrices(file, &names, &n_names);
		if (rc == 0)
			rc = scf__contents_obs(file, d->n_rows, &cols, &n_cols);
		H5Fclose(file);
	}
	scf__h5_loud(&quiet);
	d->matrices = (const char *const *)names;
	d->n_matrices = n_names;
	if (n_cols && !(d->obs = calloc(n_cols, sizeof(*d->obs))))
		rc = -ENOMEM;
	for (uint32_t i = 0; d->obs && i < n_cols; i++) {
		snprintf(d->obs[i].name, sizeof(d->obs[i].name), "%s", cols[i].name);
		d->obs[i].kind = cols[i].kind;
		d->obs[i].n_categories = cols[i].n_categories;
	}
	d->n_obs = d->obs ? n_cols : 0;
	free(cols);
	return rc;
}

int scf_describe(const char *path, const char *matrix, scf_description *out, char *errbuf,
                 size_t errlen)
{
	scf_description d;
	int rc = 0, rc2;

	if (!out || out->size < DESC_V1_SIZE || !path)
		return -EINVAL;
	memset(&d, 0, sizeof(d));
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (matrix) {
		snprintf(d.matrix, sizeof(d.matrix), "%s", matrix);
		rc = describe_matrix(&d, path, matrix, errbuf, errlen);
	}
	rc2 = describe_contents(&d, path);
	if (rc == 0 && rc2 < 0) {
		rc = rc2;
		if (errbuf)
			snprintf(errbuf, errlen, "%s: out of memory listing its contents", path);
	}
	/* A caller built against an older header gets the fields it knows. */
	scf__copy_sized(out, &d, sizeof(d));
	return rc;
}

void scf_describe_free(scf_description *d)
{
	if (!d)
		return;
	free((void *)d->matrices);
	free(d->obs);
	d->matrices = NULL;
	d->obs = NULL;
	d->n_matrices = d->n_obs = 0;
}
