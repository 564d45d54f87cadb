/*
 * tests/test_describe — scf_describe(): what a file holds, from metadata
 * alone, as the CLI's info and tune read it: the matrix's datasets (dtype,
 * shape, storage, chunks, filters, stored bytes), the file's matrices and
 * its obs columns; a missing matrix still lists the others; a struct too
 * small for the first version is refused.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scfetch.h"
#include "tests/fixtures.h"

static char *dir;

static void setup(void)
{
	dir = fx_tmpdir();
	cr_assert_not_null(dir);
}

static void teardown(void) { fx_rmdir(dir); }

TestSuite(describe, .init = setup, .fini = teardown, .timeout = 60);

static char *write_csr(const char *name, fx_csr_spec s)
{
	char *p = fx_path(dir, name);
	cr_assert_eq(fx_write_csr(p, &s), 0);
	return p;
}

Test(describe, chunked_filtered_csr)
{
	char *p = write_csr("a.h5ad", (fx_csr_spec){ .n_rows = 300, .n_cols = 50, .mean_nnz = 6,
	                    .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 100,
	                    .resizable = 1, .deflate = 4, .shuffle = 1, .n_labels = 5,
	                    .seed = 3 });
	scf_description d = { .size = sizeof(d) };
	char err[512];
	fx_ref ref;

	cr_assert_eq(fx_ref_load(p, "X", &ref), 0);
	cr_assert_eq(scf_describe(p, "X", &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(d.dense, 0);
	cr_assert_str_eq(d.matrix, "X");
	cr_assert_eq(d.n_rows, 300);
	cr_assert_eq(d.n_cols, 50);
	cr_assert_eq(d.nnz, ref.nnz);
	cr_assert_str_eq(d.indptr_dtype, "int64");
	cr_assert_eq(d.n_datasets, 3);
	const scf_dataset_desc *data = &d.dataset[0], *idx = &d.dataset[1];
	cr_assert_str_eq(data->name, "X/data");
	cr_assert_str_eq(data->dtype, "float32");
	cr_assert_str_eq(idx->name, "X/indices");
	cr_assert_str_eq(idx->dtype, "int32");
	cr_assert_str_eq(d.dataset[2].name, "X/indptr");
	cr_assert_eq(data->rank, 1);
	cr_assert_eq(data->dims[0], ref.nnz);
	cr_assert_eq(data->chunked, 1);
	cr_assert_eq(data->chunk_dims[0], 100);
	cr_assert_eq(data->n_chunks, (ref.nnz + 99) / 100);
	cr_assert_str_eq(data->filters, "shuffle+deflate");
	/* deflated: stored, but fewer bytes than the raw elements */
	cr_assert(data->stored_bytes > 0 && data->stored_bytes < 4 * ref.nnz + 400);
	cr_assert_eq(d.n_matrices, 1);
	cr_assert_str_eq(d.matrices[0], "X");
	int found = 0;
	for (uint32_t i = 0; i < d.n_obs; i++) {
		if (strcmp(d.obs[i].name, "cell_type") == 0) {
			found = 1;
			cr_assert_eq(d.obs[i].kind, SCF_OBS_CATEGORICAL);
			cr_assert_eq(d.obs[i].n_categories, 5);
		}
		cr_assert_str_neq(d.obs[i].name, "_index");
	}
	cr_assert(found, "obs/cell_type not described");
	scf_describe_free(&d);
	cr_assert_null(d.obs);
	scf_describe_free(&d); /* twice, and NULL, are harmless */
	scf_describe_free(NULL);
	fx_ref_free(&ref);
	free(p);
}

Test(describe, contiguous_dense)
{
	char *p = fx_path(dir, "dense.h5ad");
	fx_dense_spec s = { .n_rows = 20, .n_cols = 7, .density = 0.5, .seed = 1 };
	scf_description d = { .size = sizeof(d) };
	char err[512];

	cr_assert_eq(fx_write_dense(p, &s), 0);
	cr_assert_eq(scf_describe(p, "X", &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(d.dense, 1);
	cr_assert_eq(d.n_datasets, 1);
	cr_assert_eq(d.dataset[0].rank, 2);
	cr_assert_eq(d.dataset[0].dims[0], 20);
	cr_assert_eq(d.dataset[0].dims[1], 7);
	cr_assert_eq(d.dataset[0].chunked, 0);
	cr_assert_eq(d.dataset[0].stored_bytes, 20 * 7 * 4);
	cr_assert_str_eq(d.dataset[0].filters, "");
	scf_describe_free(&d);
	free(p);
}

Test(describe, missing_matrix_still_lists_the_others)
{
	char *p = write_csr("b.h5ad", (fx_csr_spec){ .n_rows = 10, .n_cols = 5, .mean_nnz = 2,
	                    .index_type = FX_I32, .indptr_type = FX_I32, .seed = 1 });
	scf_description d = { .size = sizeof(d) };
	char err[512] = "";

	int rc = scf_describe(p, "layers/nope", &d, err, sizeof(err));
	cr_assert_lt(rc, 0);
	cr_assert(strstr(err, "b.h5ad") && strstr(err, "layers/nope"), "%s", err);
	cr_assert_eq(d.n_datasets, 0);
	cr_assert_eq(d.n_matrices, 1);
	cr_assert_str_eq(d.matrices[0], "X");
	scf_describe_free(&d);

	/* no matrix asked for: only the file's contents */
	d = (scf_description){ .size = sizeof(d) };
	cr_assert_eq(scf_describe(p, NULL, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(d.n_datasets, 0);
	cr_assert_eq(d.n_matrices, 1);
	scf_describe_free(&d);
	free(p);
}

Test(describe, refuses_what_it_cannot_fill)
{
	scf_description d = { .size = 8 };
	char *absent = fx_path(dir, "absent.h5ad");
	char err[512] = "";

	cr_assert_eq(scf_describe(absent, "X", &d, err, sizeof(err)), -EINVAL);
	cr_assert_eq(scf_describe(absent, "X", NULL, err, sizeof(err)), -EINVAL);
	d.size = sizeof(d);
	cr_assert_lt(scf_describe(absent, "X", &d, err, sizeof(err)), 0);
	cr_assert(strstr(err, "absent.h5ad") != NULL, "%s", err);
	cr_assert_eq(d.n_matrices, 0);
	scf_describe_free(&d);
	free(absent);
}
