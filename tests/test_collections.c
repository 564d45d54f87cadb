/*
 * tests/test_collections — several .h5ad files read as one index space:
 * three files with different storage (chunked and deflated, contiguous
 * float64 with int64 indices, chunked int32 data with shuffle) deliver
 * every (file, row) exactly once per epoch, each equal to H5Dread's row,
 * whatever the strategy or the number of ranks; fetches span files; obs
 * categories map to their union; gene axes that differ are refused with
 * both files named; read faults and states name and fit the right files.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/faults.h"
#include "scfetch.h"
#include "tests/fixtures.h"

#define NF 3
static const uint64_t rows_of[NF] = { 700, 450, 1000 };
static const uint32_t labels_of[NF] = { 3, 5, 2 };
static char *dir, *paths[NF];
static fx_ref ref[NF];
static uint64_t row0[NF + 1];

static void setup(void)
{
	fx_csr_spec s[NF] = {
		{ .n_rows = rows_of[0], .n_cols = 200, .mean_nnz = 12, .empty_every = 5,
		  .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 500, .resizable = 1,
		  .deflate = 1, .n_labels = labels_of[0], .seed = 1 },
		{ .n_rows = rows_of[1], .n_cols = 200, .mean_nnz = 20, .empty_every = 3,
		  .data_type = FX_F64, .index_type = FX_I64, .indptr_type = FX_I32,
		  .n_labels = labels_of[1], .seed = 2 },
		{ .n_rows = rows_of[2], .n_cols = 200, .mean_nnz = 8, .empty_every = 7,
		  .data_type = FX_I32, .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 2048,
		  .deflate = 4, .shuffle = 1, .n_labels = labels_of[2], .seed = 3 },
	};
	dir = fx_tmpdir();
	for (int f = 0; f < NF; f++) {
		char name[32];
		snprintf(name, sizeof(name), "plate%d.h5ad", f);
		paths[f] = fx_path(dir, name);
		cr_assert_eq(fx_write_csr(paths[f], &s[f]), 0);
		cr_assert_eq(fx_ref_load(paths[f], "X", &ref[f]), 0);
		row0[f + 1] = row0[f] + rows_of[f];
	}
}

static void teardown(void)
{
	scf__fault_read_hook(NULL, NULL);
	for (int f = 0; f < NF; f++) {
		fx_ref_free(&ref[f]);
		free(paths[f]);
	}
	fx_rmdir(dir);
}

TestSuite(collections, .init = setup, .fini = teardown, .timeout = 120);

static scf_options base(void)
{
	return (scf_options){ .size = sizeof(scf_options), .batch_size = 16, .block_size = 4,
	                      .fetch_factor = 4, .seed = 9, .max_read = 8192, .queue_depth = 32 };
}

static scf_loader *open_all(const scf_options *o)
{
	char err[1024];
	scf_loader *l;
	int rc = scf_open_collection(&l, (const char *const *)paths, NF, o, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	return l;
}

/* The file of global row g, found without the library. */
static int file_of(uint64_t g)
{
	int f = 0;
	while (g >= row0[f + 1])
		f++;
	return f;
}

/* Row j of b must equal H5Dread's row of its (file, row). */
static void check_row(const scf_loader *l, const scf_batch *b, uint64_t j)
{
	uint64_t g = b->row_ids[j], r;
	uint32_t f;

	cr_assert_eq(scf_row_locate(l, g, &f, &r), 0);
	cr_assert_eq(f, (uint32_t)file_of(g), "row %lu", g);
	cr_assert_eq(r, g - row0[f], "row %lu", g);
	const fx_ref *x = &ref[f];
	int64_t lo = x->indptr[r], n = x->indptr[r + 1] - lo;
	cr_assert_eq(b->indptr[j + 1] - b->indptr[j], n, "file %u row %lu length", f, r);
	for (int64_t k = 0; k < n; k++) {
		cr_assert_eq(b->indices[b->indptr[j] + k], x->indices[lo + k], "file %u row %lu", f, r);
		cr_assert_eq(b->data[b->indptr[j] + k], (float)x->data[lo + k], "file %u row %lu", f, r);
	}
}

/* One epoch: checks every row, counts deliveries, and batches mixing files. */
static uint64_t epoch(scf_loader *l, uint64_t *seen, uint64_t *mixed)
{
	scf_batch *b;
	uint64_t n = 0;
	int rc;

	while ((rc = scf_next(l, &b)) == 0) {
		int first = file_of(b->row_ids[0]), mix = 0;
		for (uint64_t j = 0; j < b->n_rows; j++) {
			check_row(l, b, j);
			seen[b->row_ids[j]]++;
			mix |= file_of(b->row_ids[j]) != first;
		}
		*mixed += mix;
		n += b->n_rows;
		scf_release(l, b);
	}
	cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
	return n;
}

static void assert_each_once(const uint64_t *seen)
{
	for (uint64_t g = 0; g < row0[NF]; g++)
		cr_assert_eq(seen[g], 1, "global row %lu (file %d) seen %lu times", g, file_of(g),
		             seen[g]);
}

Test(collections, one_epoch_delivers_every_file_row_once)
{
	uint32_t blocks[] = { 4, 1 };
	for (int i = 0; i < 2; i++) {
		scf_options o = base();
		o.block_size = blocks[i];
		scf_loader *l = open_all(&o);
		uint64_t *seen = calloc(row0[NF], sizeof(uint64_t)), mixed = 0;
		scf_info info = { .size = sizeof(scf_info) };
		scf_stats st = { .size = sizeof(scf_stats) };
		cr_assert_eq(scf_info_get(l, &info), 0);
		cr_assert_eq(info.n_rows, row0[NF]);
		cr_assert_eq(info.n_cols, 200);
		cr_assert_eq(info.nnz, ref[0].nnz + ref[1].nnz + ref[2].nnz);
		cr_assert_eq(epoch(l, seen, &mixed), row0[NF]);
		assert_each_once(seen);
		/* shuffled blocks of one row: most batches hold rows of several files */
		if (blocks[i] == 1)
			cr_assert_gt(mixed, 10, "only %lu batches mix files", mixed);
		scf_stats_get(l, &st);
		cr_assert_gt(st.reads_submitted, 0);
		free(seen);
		scf_close(l);
	}
}

Test(collections, streaming_is_file_order)
{
	scf_options o = base();
	o.strategy = SCF_STRATEGY_STREAMING;
	scf_loader *l = open_all(&o);
	scf_batch *b;
	uint64_t next = 0;
	int rc;

	while ((rc = scf_next(l, &b)) == 0) {
		for (uint64_t j = 0; j < b->n_rows; j++) {
			cr_assert_eq(b->row_ids[j], next++);
			check_row(l, b, j);
		}
		scf_release(l, b);
	}
	cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
	cr_assert_eq(next, row0[NF]);
	scf_close(l);
}

Test(collections, two_ranks_partition_the_collection)
{
	uint64_t *seen = calloc(row0[NF], sizeof(uint64_t)), mixed = 0;
	for (uint32_t r = 0; r < 2; r++) {
		scf_options o = base();
		o.rank = r;
		o.world_size = 2;
		scf_loader *l = open_all(&o);
		epoch(l, seen, &mixed);
		scf_close(l);
	}
	assert_each_once(seen);
	free(seen);
}

Test(collections, dense_output_and_column_selection)
{
	int32_t cols[] = { 199, 0, 57, 3 };
	scf_options o = base();
	o.output = SCF_OUTPUT_DENSE;
	o.columns = cols;
	o.n_columns = 4;
	scf_loader *l = open_all(&o);
	scf_batch *b;
	uint64_t n = 0;
	int rc;

	while ((rc = scf_next(l, &b)) == 0) {
		for (uint64_t j = 0; j < b->n_rows; j++) {
			uint64_t g = b->row_ids[j];
			int f = file_of(g);
			uint64_t r = g - row0[f];
			float want[4] = { 0 };
			for (int64_t k = ref[f].indptr[r]; k < ref[f].indptr[r + 1]; k++)
				for (int c = 0; c < 4; c++)
					if (ref[f].indices[k] == cols[c])
						want[c] = (float)ref[f].data[k];
			for (int c = 0; c < 4; c++)
				cr_assert_eq(b->data[j * 4 + c], want[c], "file %d row %lu col %d", f, r, c);
		}
		n += b->n_rows;
		scf_release(l, b);
	}
	cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
	cr_assert_eq(n, row0[NF]);
	scf_close(l);
}

Test(collections, locate_and_file_info)
{
	scf_options o = base();
	scf_loader *l = open_all(&o);
	uint32_t f;
	uint64_t r, first, n;
	const char *p;

	cr_assert_eq(scf_file_count(l), NF);
	for (uint32_t i = 0; i < NF; i++) {
		cr_assert_eq(scf_file_info(l, i, &p, &first, &n), 0);
		cr_assert_str_eq(p, paths[i]);
		cr_assert_eq(first, row0[i]);
		cr_assert_eq(n, rows_of[i]);
		/* first and last row of each file round-trip */
		cr_assert_eq(scf_row_locate(l, first, &f, &r), 0);
		cr_assert(f == i && r == 0);
		cr_assert_eq(scf_row_locate(l, first + n - 1, &f, &r), 0);
		cr_assert(f == i && r == n - 1);
	}
	cr_assert_eq(scf_row_locate(l, row0[NF], &f, &r), -EINVAL);
	cr_assert_eq(scf_file_info(l, NF, &p, &first, &n), -EINVAL);
	scf_close(l);

	/* scf_open is the collection of one */
	char err[512];
	cr_assert_eq(scf_open(&l, paths[1], &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(scf_file_count(l), 1);
	cr_assert_eq(scf_row_locate(l, 5, &f, &r), 0);
	cr_assert(f == 0 && r == 5);
	scf_close(l);
}

/* Replace a 1-D string dataset with fixed-length strings `names`. */
static void rewrite_strings(const char *path, const char *dset, const char *const *names,
                            hsize_t n)
{
	hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
	cr_assert_geq(file, 0);
	cr_assert_geq(H5Ldelete(file, dset, H5P_DEFAULT), 0);
	char *buf = calloc(n, 32);
	for (hsize_t i = 0; i < n; i++)
		snprintf(buf + i * 32, 32, "%s", names[i]);
	hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate_simple(1, &n, NULL);
	H5Tset_size(t, 32);
	hid_t d = H5Dcreate2(file, dset, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	cr_assert_geq(d, 0);
	cr_assert_geq(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), 0);
	H5Dclose(d);
	H5Sclose(sp);
	H5Tclose(t);
	H5Fclose(file);
	free(buf);
}

Test(collections, obs_categories_map_to_their_union)
{
	/* file 1 lists its categories in reverse: its codes mean other names */
	const char *rev[] = { "type4", "type3", "type2", "type1", "type0" };
	rewrite_strings(paths[1], "obs/cell_type/categories", rev, 5);
	const char *cols[] = { "cell_type" };
	scf_options o = base();
	o.obs = cols;
	o.n_obs = 1;
	scf_loader *l = open_all(&o);
	const char *const *names;
	uint64_t ncat;
	scf_batch *b;
	int rc;

	cr_assert_eq(scf_obs_categories(l, 0, &names, &ncat), 0);
	cr_assert_eq(ncat, 5);
	while ((rc = scf_next(l, &b)) == 0) {
		for (uint64_t j = 0; j < b->n_rows; j++) {
			uint64_t g = b->row_ids[j];
			int f = file_of(g);
			uint64_t r = g - row0[f];
			int code = (int)(r * labels_of[f] / rows_of[f]); /* the fixture's code */
			char want[16];
			if (f == 1)
				snprintf(want, sizeof(want), "%s", rev[code]);
			else
				snprintf(want, sizeof(want), "type%d", code);
			cr_assert_geq(b->obs[j], 0);
			cr_assert_str_eq(names[b->obs[j]], want, "file %d row %lu", f, r);
		}
		scf_release(l, b);
	}
	cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
	scf_close(l);

	/* class-balanced sampling over the union: every class is drawn */
	o.strategy = SCF_STRATEGY_CLASS_BALANCED;
	o.balance_obs = "cell_type";
	l = open_all(&o);
	uint64_t per[5] = { 0 };
	while ((rc = scf_next(l, &b)) == 0) {
		for (uint64_t j = 0; j < b->n_rows; j++)
			per[b->obs[j]]++;
		scf_release(l, b);
	}
	cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
	for (int c = 0; c < 5; c++)
		cr_assert_gt(per[c], row0[NF] / 5 / 2, "class %d drawn %lu times", c, per[c]);
	scf_close(l);
}

Test(collections, mismatched_widths_name_both_files)
{
	char *odd = fx_path(dir, "odd.h5ad"), err[1024];
	fx_csr_spec s = { .n_rows = 50, .n_cols = 201, .mean_nnz = 5, .index_type = FX_I32,
	                  .indptr_type = FX_I64, .seed = 4 };
	cr_assert_eq(fx_write_csr(odd, &s), 0);
	const char *list[] = { paths[0], paths[1], odd };
	scf_loader *l = (scf_loader *)1;
	int rc = scf_open_collection(&l, list, 3, NULL, err, sizeof(err));
	cr_assert_eq(rc, -EINVAL, "rc %d: %s", rc, err);
	cr_assert_null(l);
	cr_assert_not_null(strstr(err, odd), "%s", err);
	cr_assert_not_null(strstr(err, paths[0]), "%s", err);
	cr_assert_not_null(strstr(err, "201"), "%s", err);
	cr_assert_not_null(strstr(err, "200"), "%s", err);
	free(odd);
}

Test(collections, different_gene_names_are_refused)
{
	const char **genes = calloc(200, sizeof(char *));
	char (*buf)[16] = calloc(200, 16);
	for (int i = 0; i < 200; i++) {
		snprintf(buf[i], 16, "gene%d", i == 17 ? 9999 : i);
		genes[i] = buf[i];
	}
	rewrite_strings(paths[2], "var/_index", genes, 200);
	char err[1024];
	scf_loader *l;
	int rc = scf_open_collection(&l, (const char *const *)paths, NF, NULL, err, sizeof(err));
	cr_assert_eq(rc, -EINVAL, "rc %d: %s", rc, err);
	cr_assert_not_null(strstr(err, paths[2]), "%s", err);
	cr_assert_not_null(strstr(err, "gene names"), "%s", err);
	/* the same names as fixed-length strings hash the same as variable-length ones */
	snprintf(buf[17], 16, "gene17");
	rewrite_strings(paths[2], "var/_index", genes, 200);
	rc = scf_open_collection(&l, (const char *const *)paths, NF, NULL, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	scf_close(l);
	free(buf);
	free(genes);
}

Test(collections, missing_file_is_named)
{
	char *gone = fx_path(dir, "missing.h5ad"), err[1024];
	const char *list[] = { paths[0], gone, paths[2] };
	scf_loader *l;
	int rc = scf_open_collection(&l, list, 3, NULL, err, sizeof(err));
	cr_assert_eq(rc, -ENOENT, "rc %d: %s", rc, err);
	cr_assert_not_null(strstr(err, gone), "%s", err);
	cr_assert_eq(scf_open_collection(&l, list, 0, NULL, err, sizeof(err)), -EINVAL);
	cr_assert_eq(scf_open_collection(&l, NULL, 2, NULL, err, sizeof(err)), -EINVAL);
	free(gone);
}

Test(collections, subsets_use_global_ids)
{
	scf_options o = base();
	uint64_t idx[] = { 0, 699, 700, 1149, 1150, 2149, 5, 1000 };
	o.indices = idx;
	o.n_indices = 8;
	scf_loader *l = open_all(&o);
	uint64_t *seen = calloc(row0[NF], sizeof(uint64_t)), mixed = 0;
	cr_assert_eq(epoch(l, seen, &mixed), 8);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(seen[idx[i]], 1, "row %lu", idx[i]);
	free(seen);
	scf_close(l);
}

static int eio_file2(void *ctx, uint32_t file, uint64_t off, uint32_t len, int res)
{
	return file == 2 ? -EIO : res;
}

Test(collections, read_errors_name_their_file)
{
	scf_options o = base();
	scf__fault_read_hook(eio_file2, NULL);
	scf_loader *l = open_all(&o);
	scf_batch *b;
	int rc;
	while ((rc = scf_next(l, &b)) == 0)
		scf_release(l, b);
	cr_assert_eq(rc, -EIO, "rc %d", rc);
	cr_assert_not_null(strstr(scf_errmsg(l), paths[2]), "%s", scf_errmsg(l));
	scf_close(l);
}

Test(collections, state_resumes_and_fits_only_its_collection)
{
	scf_options o = base();
	scf_loader *l = open_all(&o);
	scf_batch *b;
	scf_state st;
	uint64_t want[64], got = 0;

	for (int i = 0; i < 5; i++) {
		cr_assert_eq(scf_next(l, &b), 0);
		scf_release(l, b);
	}
	cr_assert_eq(scf_state_save(l, &st), 0);
	cr_assert_eq(scf_next(l, &b), 0);
	memcpy(want, b->row_ids, b->n_rows * sizeof(uint64_t));
	got = b->n_rows;
	scf_release(l, b);
	scf_close(l);

	l = open_all(&o);
	cr_assert_eq(scf_state_load(l, &st), 0, "%s", scf_errmsg(l));
	cr_assert_eq(scf_next(l, &b), 0);
	cr_assert_eq(b->n_rows, got);
	cr_assert_arr_eq(b->row_ids, want, got * sizeof(uint64_t));
	scf_release(l, b);
	scf_close(l);

	/* the same files in another order are another index space */
	char err[1024];
	const char *other[] = { paths[1], paths[0], paths[2] };
	cr_assert_eq(scf_open_collection(&l, other, 3, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(scf_state_load(l, &st), -EINVAL);
	cr_assert_not_null(strstr(scf_errmsg(l), "does not fit"), "%s", scf_errmsg(l));
	scf_close(l);
}

Test(collections, dense_and_csr_files_together)
{
	char *dpath = fx_path(dir, "dense.h5ad"), err[1024];
	fx_dense_spec ds = { .n_rows = 300, .n_cols = 200, .data_type = FX_F32, .chunk_rows = 64,
	                     .chunk_cols = 50, .density = 0.1, .seed = 6 };
	fx_ref dref;
	cr_assert_eq(fx_write_dense(dpath, &ds), 0);
	cr_assert_eq(fx_ref_load(dpath, "X", &dref), 0);
	const char *list[] = { dpath, paths[1] };
	scf_options o = base();
	o.block_size = 1;
	scf_loader *l;
	cr_assert_eq(scf_open_collection(&l, list, 2, &o, err, sizeof(err)), 0, "%s", err);
	scf_batch *b;
	uint64_t n = 0;
	int rc;
	while ((rc = scf_next(l, &b)) == 0) {
		for (uint64_t j = 0; j < b->n_rows; j++) {
			uint64_t g = b->row_ids[j], r = g < 300 ? g : g - 300;
			const fx_ref *x = g < 300 ? &dref : &ref[1];
			int64_t lo = x->indptr[r], len = x->indptr[r + 1] - lo;
			cr_assert_eq(b->indptr[j + 1] - b->indptr[j], len, "row %lu", g);
			for (int64_t k = 0; k < len; k++) {
				cr_assert_eq(b->indices[b->indptr[j] + k], x->indices[lo + k]);
				cr_assert_eq(b->data[b->indptr[j] + k], (float)x->data[lo + k]);
			}
		}
		n += b->n_rows;
		scf_release(l, b);
	}
	cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
	cr_assert_eq(n, 750);
	scf_close(l);
	fx_ref_free(&dref);
	free(dpath);
}

/* The collection's own open path (per-file arrays, obs union) under allocation failures. */
Test(collections, every_allocation_of_open_may_fail)
{
	const char *cols[] = { "cell_type" };
	scf_options o = base();
	uint64_t n;

	o.obs = cols;
	o.n_obs = 1;
	o.threads = 1;
	for (n = 1; n < 3000; n++) {
		char err[1024] = "";
		scf_loader *l = NULL;
		scf__fault_alloc_after(n);
		int rc = scf_open_collection(&l, (const char *const *)paths, NF, &o, err, sizeof(err));
		uint64_t failed = scf__fault_alloc_failed();
		scf__fault_alloc_after(0);
		if (rc == 0) {
			scf_close(l);
			if (!failed)
				break;
			continue; /* the failure hit a path with a fallback */
		}
		cr_assert_null(l);
		cr_assert_neq(err[0], '\0', "n %lu: no message for rc %d", n, rc);
		cr_assert_not_null(strstr(err, ".h5ad"), "n %lu: %s", n, err);
	}
	cr_assert_gt(n, 20, "the injector reached only %lu allocations", n);
	cr_assert_lt(n, 3000, "open never succeeded");
}

/* A file on a filesystem without O_DIRECT (tmpfs) beside files with it. */
Test(collections, direct_and_buffered_files_together)
{
	char shm[] = "/dev/shm/scf-coll-XXXXXX", err[1024];
	int fd = mkstemp(shm);
	if (fd < 0)
		cr_skip_test("no /dev/shm");
	int probe = open(shm, O_RDONLY | O_DIRECT);
	if (probe >= 0) {
		close(probe);
		close(fd);
		unlink(shm);
		cr_skip_test("/dev/shm accepts O_DIRECT here: nothing to mix");
	}
	FILE *in = fopen(paths[1], "rb");
	char buf[65536];
	size_t k;
	while ((k = fread(buf, 1, sizeof(buf), in)) > 0)
		cr_assert_eq(write(fd, buf, k), (ssize_t)k);
	fclose(in);
	close(fd);
	const char *list[] = { paths[0], shm, paths[2] };
	scf_options o = base();
	scf_loader *l;
	cr_assert_eq(scf_open_collection(&l, list, 3, &o, err, sizeof(err)), 0, "%s", err);
	uint64_t *seen = calloc(row0[NF], sizeof(uint64_t)), mixed = 0;
	cr_assert_eq(epoch(l, seen, &mixed), row0[NF]);
	assert_each_once(seen);
	scf_stats st = { .size = sizeof(scf_stats) };
	scf_stats_get(l, &st);
	cr_assert_eq(st.direct, 0, "one file is buffered");
	free(seen);
	scf_close(l);
	unlink(shm);
}
