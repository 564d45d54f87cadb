/*
 * tests/test_engine — end to end: files written by the HDF5 C API and by
 * anndata, streamed through the whole engine, every delivered cell compared
 * with an independent H5Dread of the same row; every row exactly once per
 * epoch; reproducible orders; ranks partition; errors name file and dataset.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "scfetch.h"
#include "tests/fixtures.h"
#include "tools/repack.h"

static char *dir;

static void setup(void) { dir = fx_tmpdir(); cr_assert_not_null(dir); }
static void teardown(void) { fx_rmdir(dir); }

TestSuite(engine, .init = setup, .fini = teardown, .timeout = 120);

static scf_options opts(uint32_t batch, uint32_t block, uint32_t ff)
{
	return (scf_options){ .size = sizeof(scf_options), .batch_size = batch,
	                      .block_size = block, .fetch_factor = ff, .seed = 11 };
}

/* Compare one delivered CSR row with the reference row. */
static void check_csr_row(const fx_ref *ref, const scf_batch *b, uint64_t j)
{
	uint64_t r = b->row_ids[j];
	cr_assert_lt(r, ref->n_rows, "row id %lu out of range", r);
	int64_t lo = ref->indptr[r], hi = ref->indptr[r + 1];
	int64_t n = b->indptr[j + 1] - b->indptr[j];
	cr_assert_eq(n, hi - lo, "row %lu: %ld entries, reference %ld", r, n, hi - lo);
	for (int64_t k = 0; k < n; k++) {
		int32_t ci = b->indices[b->indptr[j] + k];
		float v = b->data[b->indptr[j] + k];
		cr_assert_eq(ci, ref->indices[lo + k], "row %lu entry %ld: column %d, reference %ld",
		             r, k, ci, ref->indices[lo + k]);
		cr_assert_eq(v, (float)ref->data[lo + k], "row %lu col %d: %g, reference %g",
		             r, ci, v, ref->data[lo + k]);
	}
}

/* Compare one delivered dense row with the reference row. */
static void check_dense_row(const fx_ref *ref, const scf_batch *b, uint64_t j, float *tmp)
{
	uint64_t r = b->row_ids[j];
	cr_assert_lt(r, ref->n_rows);
	memset(tmp, 0, ref->n_cols * sizeof(float));
	for (int64_t k = ref->indptr[r]; k < ref->indptr[r + 1]; k++)
		tmp[ref->indices[k]] = (float)ref->data[k];
	cr_assert_eq(memcmp(tmp, b->data + j * ref->n_cols, ref->n_cols * sizeof(float)), 0,
	             "dense row %lu differs from the reference", r);
}

/*
 * Stream `epochs` epochs; check every cell; return the row-id sequence of
 * the first epoch (caller frees) and its length.
 */
static uint64_t *stream_against(const char *path, const char *matrix, const char *ref_path,
                                const char *ref_matrix, scf_options o, int epochs,
                                uint64_t *n_out, uint8_t *seen_out)
{
	char err[1024];
	scf_loader *l;
	fx_ref ref;
	scf_info info = { .size = sizeof(scf_info) };

	cr_assert_eq(fx_ref_load(ref_path, ref_matrix, &ref), 0);
	o.matrix = matrix;
	int rc = scf_open(&l, path, &o, err, sizeof(err));
	cr_assert_eq(rc, 0, "scf_open: %s", err);
	scf_info_get(l, &info);
	cr_assert_eq(info.n_rows, ref.n_rows);
	cr_assert_eq(info.n_cols, ref.n_cols);
	uint64_t *seq = malloc((ref.n_rows + 1) * sizeof(uint64_t)), n = 0;
	uint8_t *seen = calloc(ref.n_rows + 1, 1);
	float *tmp = malloc((ref.n_cols + 1) * sizeof(float));
	for (int e = 0; e < epochs; e++) {
		uint64_t rows = 0, batches = 0;
		memset(seen, 0, ref.n_rows + 1);
		for (;;) {
			scf_batch *b;
			rc = scf_next(l, &b);
			cr_assert_geq(rc, 0, "scf_next: %s", scf_errmsg(l));
			if (rc == SCF_END_OF_EPOCH)
				break;
			cr_assert_eq(b->epoch, o.epoch + (uint32_t)e);
			cr_assert_eq(b->index, batches, "batch index");
			cr_assert_leq(b->n_rows, o.batch_size ? o.batch_size : 64);
			for (uint64_t j = 0; j < b->n_rows; j++) {
				uint64_t r = b->row_ids[j];
				cr_assert_lt(r, ref.n_rows);
				cr_assert_eq(seen[r], 0, "row %lu delivered twice in epoch %d", r, e);
				seen[r] = 1;
				if (e == 0)
					seq[n++] = r;
				if (b->output == SCF_OUTPUT_DENSE)
					check_dense_row(&ref, b, j, tmp);
				else
					check_csr_row(&ref, b, j);
			}
			rows += b->n_rows;
			batches++;
			scf_release(l, b);
		}
		cr_assert_eq(rows, info.rows_per_epoch, "epoch %d: %lu rows, expected %lu", e,
		             rows, info.rows_per_epoch);
		cr_assert_eq(batches, info.batches_per_epoch);
	}
	if (seen_out)
		memcpy(seen_out, seen, ref.n_rows);
	scf_close(l);
	free(tmp);
	free(seen);
	fx_ref_free(&ref);
	*n_out = n;
	return seq;
}

static uint64_t *stream_and_check(const char *path, const char *matrix, scf_options o,
                                  int epochs, uint64_t *n_out, uint8_t *seen_out)
{
	return stream_against(path, matrix, path, matrix ? matrix : "X", o, epochs, n_out,
	                      seen_out);
}

/* `epochs` full epochs must cover every row when one process reads everything (the
 * decode tests check one epoch per variant: valgrind_engine runs them too). */
static void check_epochs(const char *path, const char *matrix, scf_options o, int epochs)
{
	uint64_t n;
	fx_ref ref;
	cr_assert_eq(fx_ref_load(path, matrix ? matrix : "X", &ref), 0);
	free(stream_and_check(path, matrix, o, epochs, &n, NULL));
	cr_assert_eq(n, ref.n_rows, "an epoch must deliver all %lu rows, got %lu", ref.n_rows, n);
	fx_ref_free(&ref);
}

static void check_file(const char *path, const char *matrix, scf_options o)
{
	check_epochs(path, matrix, o, 2);
}

static char *write_csr(const char *name, fx_csr_spec s)
{
	char *p = fx_path(dir, name);
	cr_assert_eq(fx_write_csr(p, &s), 0, "fixture %s", name);
	return p;
}

Test(engine, contiguous_csr)
{
	char *p = write_csr("contig.h5ad", (fx_csr_spec){ .n_rows = 3000, .n_cols = 500,
		.mean_nnz = 40, .empty_every = 7, .index_type = FX_I32, .indptr_type = FX_I64,
		.seed = 1 });
	check_file(p, NULL, opts(32, 16, 4));
	check_file(p, NULL, opts(7, 1, 3));
	free(p);
}

Test(engine, chunked_sizes_and_rows_spanning_chunks)
{
	const uint64_t chunks[] = { 5, 777, 1000, 65536 };
	for (int i = 0; i < 4; i++) {
		char name[64];
		snprintf(name, sizeof(name), "chunk%lu.h5ad", chunks[i]);
		char *p = write_csr(name, (fx_csr_spec){ .n_rows = 2000, .n_cols = 1000,
			.mean_nnz = 60, .empty_every = 5, .index_type = FX_I32,
			.indptr_type = FX_I32, .chunk = chunks[i], .resizable = 1,
			.seed = 2 + (uint64_t)i });
		check_file(p, NULL, opts(16, 4, 8));
		free(p);
	}
}

Test(engine, dtypes_int64_indices_float64_and_int_data)
{
	const int dtypes[] = { FX_F64, FX_I32, FX_U16, FX_I8 };
	for (int i = 0; i < 4; i++) {
		char name[64];
		snprintf(name, sizeof(name), "dt%d.h5ad", i);
		char *p = write_csr(name, (fx_csr_spec){ .n_rows = 1500, .n_cols = 300,
			.mean_nnz = 30, .data_type = dtypes[i], .index_type = FX_I64,
			.indptr_type = FX_I64, .chunk = i % 2 ? 333 : 0, .seed = 10 + (uint64_t)i });
		check_file(p, NULL, opts(20, 8, 5));
		free(p);
	}
}

Test(engine, latest_format_indexes)
{
	char *p = write_csr("latest_ea.h5ad", (fx_csr_spec){ .n_rows = 2500, .n_cols = 800,
		.mean_nnz = 50, .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 1024,
		.resizable = 1, .libver_latest = 1, .seed = 20 });
	check_file(p, NULL, opts(32, 16, 4));
	free(p);
	p = write_csr("latest_fa.h5ad", (fx_csr_spec){ .n_rows = 2500, .n_cols = 800,
		.mean_nnz = 50, .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 999,
		.resizable = 0, .libver_latest = 1, .seed = 21 });
	check_file(p, NULL, opts(32, 16, 4));
	free(p);
}

Test(engine, layers_and_streaming_and_dense_output)
{
	char *p = write_csr("layers.h5ad", (fx_csr_spec){ .matrix = "layers/counts",
		.n_rows = 1200, .n_cols = 250, .mean_nnz = 25, .data_type = FX_I32,
		.index_type = FX_I32, .indptr_type = FX_I64, .chunk = 500, .resizable = 1,
		.seed = 30 });
	scf_options o = opts(50, 10, 3);
	check_file(p, "layers/counts", o);
	o.strategy = SCF_STRATEGY_STREAMING;
	check_file(p, "layers/counts", o);
	o.output = SCF_OUTPUT_DENSE;
	check_file(p, "layers/counts", o);
	free(p);
}

Test(engine, dense_matrices)
{
	const uint64_t cr[] = { 0, 64, 100 }, cc[] = { 0, 50, 1000 };
	for (int i = 0; i < 3; i++) {
		char name[64];
		snprintf(name, sizeof(name), "dense%d.h5ad", i);
		char *p = fx_path(dir, name);
		fx_dense_spec s = { .n_rows = 700, .n_cols = 130, .data_type = i == 1 ? FX_F64 : FX_F32,
		                    .chunk_rows = cr[i], .chunk_cols = cc[i] ? (cc[i] > 130 ? 130 : cc[i]) : 0,
		                    .density = 0.2, .seed = 40 + (uint64_t)i };
		cr_assert_eq(fx_write_dense(p, &s), 0);
		scf_options o = opts(16, 8, 4);
		check_file(p, NULL, o);
		o.output = SCF_OUTPUT_DENSE;
		check_file(p, NULL, o);
		free(p);
	}
}

/* Many small reads, tiny queue, no coalescing, buffered: same cells. */
Test(engine, io_settings_do_not_change_cells)
{
	char *p = write_csr("io.h5ad", (fx_csr_spec){ .n_rows = 2000, .n_cols = 2000,
		.mean_nnz = 200, .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 4096,
		.resizable = 1, .seed = 50 });
	scf_options o = opts(32, 4, 8);
	o.queue_depth = 4;
	o.max_read = 4096;
	o.coalesce_gap = UINT32_MAX;
	o.fetches_in_flight = 1;
	o.threads = 1;
	check_file(p, NULL, o);
	o = opts(32, 64, 16);
	o.flags = SCF_F_BUFFERED | SCF_F_NO_PIN;
	o.fetches_in_flight = 8;
	o.threads = 3;
	check_file(p, NULL, o);
	free(p);
}

Test(engine, seeds_reproduce_and_ranks_partition)
{
	char *p = write_csr("seed.h5ad", (fx_csr_spec){ .n_rows = 3001, .n_cols = 100,
		.mean_nnz = 10, .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 700,
		.resizable = 1, .seed = 60 });
	uint64_t na, nb, nc;
	scf_options o = opts(16, 8, 4);
	uint64_t *a = stream_and_check(p, NULL, o, 1, &na, NULL);
	uint64_t *b = stream_and_check(p, NULL, o, 1, &nb, NULL);
	o.seed = 12;
	uint64_t *c = stream_and_check(p, NULL, o, 1, &nc, NULL);
	cr_assert_eq(na, 3001);
	cr_assert_eq(memcmp(a, b, na * 8), 0, "same seed must give the same batches");
	cr_assert_neq(memcmp(a, c, na * 8), 0, "another seed must differ");
	free(a); free(b); free(c);

	uint8_t *all = calloc(3001, 1), *mine = calloc(3001, 1);
	uint64_t total = 0;
	for (uint32_t r = 0; r < 3; r++) {
		o = opts(16, 8, 4);
		o.rank = r;
		o.world_size = 3;
		uint64_t n;
		free(stream_and_check(p, NULL, o, 1, &n, mine));
		for (uint64_t i = 0; i < 3001; i++) {
			cr_assert(!(all[i] && mine[i]), "row %lu on two ranks", i);
			all[i] |= mine[i];
		}
		total += n;
	}
	cr_assert_eq(total, 3001, "ranks together must cover the epoch");
	free(all); free(mine); free(p);
}

Test(engine, anndata_written_file)
{
	char *p = fx_path(dir, "anndata.h5ad");
	int rc = fx_write_anndata(p, 2000, 700, 0.05, 70, NULL);
	if (rc == 1)
		cr_skip_test("anndata is not installed (Debian: python3-anndata)");
	cr_assert_eq(rc, 0);
	check_file(p, NULL, opts(64, 16, 4));
	check_file(p, "layers/counts", opts(64, 1, 2));
	free(p);
}

Test(engine, set_epoch_and_close_in_flight)
{
	char *p = write_csr("epoch.h5ad", (fx_csr_spec){ .n_rows = 5000, .n_cols = 300,
		.mean_nnz = 30, .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 1000,
		.resizable = 1, .seed = 80 });
	char err[512];
	scf_loader *l;
	scf_batch *b, *held;
	scf_options o = opts(8, 4, 4);

	o.epoch = 5;
	cr_assert_eq(scf_open(&l, p, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(scf_next(l, &held), 0);
	cr_assert_eq(held->epoch, 5);
	uint64_t first = held->row_ids[0];
	cr_assert_eq(scf_set_epoch(l, 5), 0);  /* restart the same epoch */
	cr_assert_eq(scf_next(l, &b), 0);
	cr_assert_eq(b->epoch, 5);
	cr_assert_eq(b->row_ids[0], first, "restarted epoch must begin where it began");
	cr_assert_eq(held->row_ids[0], first, "held batch must stay valid");
	scf_release(l, held);
	scf_release(l, b);
	cr_assert_eq(scf_set_epoch(l, 9), 0);
	cr_assert_eq(scf_next(l, &b), 0);
	cr_assert_eq(b->epoch, 9);
	/* close with this batch held and fetches in flight */
	scf_close(l);
	scf_close(NULL);
	free(p);
}

Test(engine, consumer_holding_everything_gets_an_error_not_a_hang)
{
	char *p = write_csr("held.h5ad", (fx_csr_spec){ .n_rows = 5000, .n_cols = 100,
		.mean_nnz = 5, .index_type = FX_I32, .indptr_type = FX_I64, .seed = 90 });
	char err[512];
	scf_loader *l;
	scf_batch *b;
	scf_options o = opts(10, 4, 2);
	int rc = 0, n = 0;

	o.fetches_in_flight = 1;
	cr_assert_eq(scf_open(&l, p, &o, err, sizeof(err)), 0, "%s", err);
	while (n < 1000 && (rc = scf_next(l, &b)) == 0)
		n++;  /* never released */
	cr_assert_eq(rc, SCF_E_BUFFERS_HELD, "rc %d after %d batches", rc, n);
	cr_assert_eq(n, 3 * 2, "three slots of two batches each");
	cr_assert_not_null(strstr(scf_errmsg(l), "held.h5ad"));
	scf_close(l);
	free(p);
}

/* A CSR matrix whose data uses HDF5's scale-offset filter, which the engine does not decode. */
static void write_scaleoffset_csr(const char *path)
{
	const float data[4] = { 1, 2, 3, 4 };
	const int32_t idx[4] = { 0, 1, 2, 0 };
	const int64_t ptr[5] = { 0, 1, 2, 3, 4 }, shape[2] = { 4, 3 };
	hsize_t n4 = 4, n5 = 5, n2 = 2, chunk = 2;
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hid_t g = H5Gcreate2(f, "X", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	hid_t st = H5Tcopy(H5T_C_S1), s1 = H5Screate(H5S_SCALAR);
	H5Tset_size(st, 10);
	hid_t a = H5Acreate2(g, "encoding-type", st, s1, H5P_DEFAULT, H5P_DEFAULT);
	H5Awrite(a, st, "csr_matrix");
	H5Aclose(a);
	hid_t s2 = H5Screate_simple(1, &n2, NULL);
	a = H5Acreate2(g, "shape", H5T_STD_I64LE, s2, H5P_DEFAULT, H5P_DEFAULT);
	H5Awrite(a, H5T_NATIVE_INT64, shape);
	H5Aclose(a);
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), sp4 = H5Screate_simple(1, &n4, NULL);
	H5Pset_chunk(dcpl, 1, &chunk);
	H5Pset_scaleoffset(dcpl, H5Z_SO_FLOAT_DSCALE, 2);
	hid_t d = H5Dcreate2(g, "data", H5T_IEEE_F32LE, sp4, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
	H5Dclose(d);
	d = H5Dcreate2(g, "indices", H5T_STD_I32LE, sp4, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, idx);
	H5Dclose(d);
	hid_t sp5 = H5Screate_simple(1, &n5, NULL);
	d = H5Dcreate2(g, "indptr", H5T_STD_I64LE, sp5, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptr);
	H5Dclose(d);
	H5Sclose(sp5); H5Sclose(sp4); H5Sclose(s2); H5Sclose(s1); H5Tclose(st);
	H5Pclose(dcpl); H5Gclose(g); H5Fclose(f);
}

/* Open-time refusals: a sentence naming the file, the dataset and the problem. */
Test(engine, clear_errors_at_open)
{
	char err[1024];
	scf_loader *l = (scf_loader *)1;
	char *so = fx_path(dir, "scaleoffset.h5ad");
	char *p = write_csr("gz.h5ad", (fx_csr_spec){ .n_rows = 100, .n_cols = 50, .mean_nnz = 5,
		.index_type = FX_I32, .indptr_type = FX_I64, .chunk = 64, .deflate = 4, .seed = 3 });

	write_scaleoffset_csr(so);
	int rc = scf_open(&l, so, NULL, err, sizeof(err));
	cr_assert_eq(rc, SCF_E_UNSUPPORTED, "%d %s", rc, err);
	cr_assert_null(l);
	cr_assert_not_null(strstr(err, so), "%s", err);
	cr_assert_not_null(strstr(err, "X/data"), "%s", err);
	cr_assert_not_null(strstr(err, "scaleoffset"), "%s", err);
	free(so);

	scf_options o = opts(0, 0, 0);
	o.matrix = "layers/none";
	rc = scf_open(&l, p, &o, err, sizeof(err));
	cr_assert_eq(rc, SCF_E_NOT_H5AD);
	cr_assert_not_null(strstr(err, "layers/none"), "%s", err);

	rc = scf_open(&l, "/nonexistent/x.h5ad", NULL, err, sizeof(err));
	cr_assert_eq(rc, -ENOENT);
	cr_assert_not_null(strstr(err, "/nonexistent/x.h5ad"));

	char *txt = fx_path(dir, "not.h5ad");
	FILE *f = fopen(txt, "w");
	fputs("not hdf5 at all\n", f);
	fclose(f);
	rc = scf_open(&l, txt, NULL, err, sizeof(err));
	cr_assert_eq(rc, SCF_E_NOT_H5AD, "%d %s", rc, err);
	free(txt);
	free(p);
}

Test(engine, invalid_options)
{
	char err[512];
	scf_loader *l;
	char *p = write_csr("opt.h5ad", (fx_csr_spec){ .n_rows = 10, .n_cols = 5, .mean_nnz = 2,
		.index_type = FX_I32, .indptr_type = FX_I64, .seed = 4 });
	scf_options bad[7];
	for (int i = 0; i < 7; i++)
		bad[i] = opts(0, 0, 0);
	bad[0].size = 0;
	bad[1].reserved[3] = 1;
	bad[2].flags = 1u << 30;
	bad[3].batch_size = (1u << 20) + 1;
	bad[4].rank = 2, bad[4].world_size = 2;
	bad[5].strategy = 9;
	bad[6].max_read = 5000;
	for (int i = 0; i < 7; i++) {
		int rc = scf_open(&l, p, &bad[i], err, sizeof(err));
		cr_assert_eq(rc, -EINVAL, "case %d: rc %d", i, rc);
		cr_assert_not_null(strstr(err, "invalid options"), "case %d: %s", i, err);
	}
	free(p);
}

/* A file truncated while an epoch runs: an error through scf_next, no wrong row. */
Test(engine, file_truncated_mid_epoch)
{
	char *p = write_csr("trunc.h5ad", (fx_csr_spec){ .n_rows = 20000, .n_cols = 2000,
		.mean_nnz = 100, .index_type = FX_I32, .indptr_type = FX_I64, .seed = 5 });
	char err[512];
	scf_loader *l;
	scf_batch *b;
	scf_options o = opts(64, 16, 4);
	fx_ref ref;
	int rc;

	cr_assert_eq(fx_ref_load(p, "X", &ref), 0);
	o.fetches_in_flight = 1;
	cr_assert_eq(scf_open(&l, p, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(truncate(p, 1 << 20), 0);
	while ((rc = scf_next(l, &b)) == 0) {
		for (uint64_t j = 0; j < b->n_rows; j++)
			check_csr_row(&ref, b, j);
		scf_release(l, b);
	}
	cr_assert_eq(rc, SCF_E_CORRUPT, "rc %d: %s", rc, scf_errmsg(l));
	cr_assert_not_null(strstr(scf_errmsg(l), "truncated"), "%s", scf_errmsg(l));
	cr_assert_not_null(strstr(scf_errmsg(l), "trunc.h5ad"), "%s", scf_errmsg(l));
	cr_assert_eq(scf_next(l, &b), SCF_E_CORRUPT, "errors are sticky");
	scf_close(l);
	fx_ref_free(&ref);
	free(p);
}

/* obs codes delivered per row equal the file's codes (read with H5Dread). */
Test(engine, obs_columns_follow_their_rows)
{
	char *p = write_csr("obs.h5ad", (fx_csr_spec){ .n_rows = 3000, .n_cols = 200,
		.mean_nnz = 10, .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 512,
		.resizable = 1, .n_labels = 17, .seed = 6 });
	const char *cols[] = { "cell_type" };
	scf_options o = opts(32, 8, 4);
	char err[512];
	scf_loader *l;
	scf_batch *b;
	int32_t *ref = fx_read_codes(p, "obs/cell_type/codes", 3000);
	int rc;

	cr_assert_not_null(ref);
	o.obs = cols;
	o.n_obs = 1;
	cr_assert_eq(scf_open(&l, p, &o, err, sizeof(err)), 0, "%s", err);
	const char *const *names;
	uint64_t n_names;
	cr_assert_eq(scf_obs_categories(l, 0, &names, &n_names), 0);
	cr_assert_eq(n_names, 17);
	cr_assert_not_null(names[16]);
	cr_assert_eq(scf_obs_categories(l, 1, &names, &n_names), -EINVAL);
	uint64_t rows = 0;
	while ((rc = scf_next(l, &b)) == 0) {
		cr_assert_eq(b->n_obs, 1);
		for (uint64_t j = 0; j < b->n_rows; j++)
			cr_assert_eq(b->obs[j], ref[b->row_ids[j]], "row %lu", b->row_ids[j]);
		rows += b->n_rows;
		scf_release(l, b);
	}
	cr_assert_eq(rc, SCF_END_OF_EPOCH);
	cr_assert_eq(rows, 3000);
	scf_close(l);

	cols[0] = "no_such_column";
	rc = scf_open(&l, p, &o, err, sizeof(err));
	cr_assert_eq(rc, SCF_E_NOT_H5AD);
	cr_assert_not_null(strstr(err, "obs/no_such_column"), "%s", err);
	free(ref);
	free(p);
}

/* ---- compressed matrices: the engine's own decoders against H5Dread ---- */

Test(engine, compressed_by_the_hdf5_c_writer)
{
	const struct { int level, shuffle, fletcher, index; uint64_t chunk; } c[] = {
		{ 1, 0, 0, FX_I32, 1000 }, { 9, 0, 0, FX_I64, 333 }, { 4, 1, 0, FX_I32, 4096 },
		{ 4, 1, 1, FX_I32, 777 }, { 0, 0, 1, FX_I32, 500 },
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char name[64];
		snprintf(name, sizeof(name), "z%zu.h5ad", i);
		char *p = write_csr(name, (fx_csr_spec){ .n_rows = 1500, .n_cols = 600,
			.mean_nnz = 40, .empty_every = 6, .index_type = c[i].index,
			.indptr_type = FX_I64, .chunk = c[i].chunk, .resizable = 1,
			.deflate = c[i].level, .shuffle = c[i].shuffle, .fletcher32 = c[i].fletcher,
			.seed = 100 + i });
		check_file(p, NULL, opts(32, 16, 4));
		check_file(p, NULL, opts(16, 1, 8));
		free(p);
	}
}

Test(engine, compressed_by_h5py)
{
	const char *specs[] = { "gzip1", "gzip9", "lzf", "shuffle-gzip", "shuffle-lzf",
	                        "gzip-fletcher" };
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		char *p = fx_path(dir, specs[i]);
		int rc = fx_write_h5py_csr(p, 2000, 500, 7 + i, specs[i]);
		if (rc == 1)
			cr_skip_test("h5py is not installed (Debian: python3-h5py)");
		cr_assert_eq(rc, 0, "%s", specs[i]);
		uint64_t n;
		free(stream_against(p, "X", p, "ref", opts(32, 8, 4), 2, &n, NULL));
		cr_assert_eq(n, 2000, "%s", specs[i]);
		free(stream_against(p, "X", p, "ref", opts(8, 1, 16), 1, &n, NULL));
		free(p);
	}
}

Test(engine, compressed_by_anndata)
{
	char *p = fx_path(dir, "anndata-gzip.h5ad");
	int rc = fx_write_anndata(p, 3000, 800, 0.05, 71, "gzip");
	if (rc == 1)
		cr_skip_test("anndata is not installed (Debian: python3-anndata)");
	cr_assert_eq(rc, 0);
	check_file(p, NULL, opts(64, 16, 4));
	check_file(p, "layers/counts", opts(64, 4, 8));
	free(p);
}

/* repack: every row of the output equals the input's, whatever the codec. */
Test(engine, repack_round_trip)
{
	char *in = write_csr("in.h5ad", (fx_csr_spec){ .n_rows = 2500, .n_cols = 900,
		.mean_nnz = 60, .empty_every = 10, .data_type = FX_F64, .index_type = FX_I32,
		.indptr_type = FX_I64, .chunk = 20000, .resizable = 1, .deflate = 4,
		.n_labels = 5, .seed = 111 });
	/* shuffled zstd and deflate (the default), unshuffled zstd, no codec */
	const int codecs[] = { SCF_CODEC_ZSTD, SCF_CODEC_DEFLATE, SCF_CODEC_NONE, SCF_CODEC_ZSTD };
	for (int i = 0; i < 4; i++) {
		char name[32], err[512];
		snprintf(name, sizeof(name), "out%d.h5ad", i);
		char *out = fx_path(dir, name);
		scf_repack_opts ro = { .matrix = "X", .chunk_rows = 3, .codec = codecs[i],
		                       .no_shuffle = i == 3 };
		cr_assert_eq(scf_repack(in, out, &ro, NULL, err, sizeof(err)), 0, "%s", err);
		/* the pipeline says what was done: shuffle first unless told otherwise */
		hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
		hid_t d = H5Dopen2(f, "X/data", H5P_DEFAULT), pl = H5Dget_create_plist(d);
		unsigned fl, cd[4];
		size_t ncd = 4;
		int first = H5Pget_nfilters(pl) > 0 ?
			(int)H5Pget_filter2(pl, 0, &fl, &ncd, cd, 0, NULL, NULL) : -1;
		cr_assert_eq(first == H5Z_FILTER_SHUFFLE, codecs[i] != SCF_CODEC_NONE && i != 3,
		             "repack %d: first filter %d", i, first);
		H5Pclose(pl);
		H5Dclose(d);
		H5Fclose(f);
		uint64_t n;
		free(stream_against(out, "X", in, "X", opts(32, 4, 4), 1, &n, NULL));
		cr_assert_eq(n, 2500);
		int32_t *a = fx_read_codes(in, "obs/cell_type/codes", 2500);
		int32_t *b = fx_read_codes(out, "obs/cell_type/codes", 2500);
		cr_assert(a && b && memcmp(a, b, 2500 * 4) == 0, "obs must be copied");
		free(a);
		free(b);
		free(out);
	}
	free(in);
}

/* A damaged chunk: an error naming the dataset and chunk, never a wrong row. */
Test(engine, corrupt_chunk_is_an_error_not_a_wrong_row)
{
	char *p = write_csr("bad.h5ad", (fx_csr_spec){ .n_rows = 4000, .n_cols = 500,
		.mean_nnz = 50, .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 2000,
		.resizable = 1, .deflate = 4, .seed = 120 });
	fx_ref ref;
	cr_assert_eq(fx_ref_load(p, "X", &ref), 0);

	/* flip bytes in the middle of one data chunk, found through HDF5 */
	hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "X/data", H5P_DEFAULT);
	haddr_t addr;
	hsize_t size, off;
	unsigned mask;
	hid_t space = H5Dget_space(d);
	cr_assert_geq(H5Dget_chunk_info(d, space, 40, &off, &mask, &addr, &size), 0);
	H5Sclose(space);
	H5Dclose(d);
	H5Fclose(f);
	int fd = open(p, O_RDWR);
	uint8_t junk[16];
	memset(junk, 0xa5, sizeof(junk));
	cr_assert_eq(pwrite(fd, junk, sizeof(junk), (off_t)(addr + size / 2)), 16);
	close(fd);

	char err[512];
	scf_loader *l;
	scf_batch *b;
	int rc;
	uint64_t rows = 0;
	scf_options o = opts(32, 8, 4);
	o.strategy = SCF_STRATEGY_STREAMING;
	cr_assert_eq(scf_open(&l, p, &o, err, sizeof(err)), 0, "%s", err);
	while ((rc = scf_next(l, &b)) == 0) {
		for (uint64_t j = 0; j < b->n_rows; j++)
			check_csr_row(&ref, b, j);
		rows += b->n_rows;
		scf_release(l, b);
	}
	cr_assert_eq(rc, SCF_E_CORRUPT, "rc %d after %lu rows: %s", rc, rows, scf_errmsg(l));
	cr_assert_not_null(strstr(scf_errmsg(l), "X/data"), "%s", scf_errmsg(l));
	cr_assert_not_null(strstr(scf_errmsg(l), "chunk 40"), "%s", scf_errmsg(l));
	cr_assert_lt(rows, 4000);
	scf_close(l);
	fx_ref_free(&ref);
	free(p);
}

/* One epoch with o; the decode counters it left. */
static scf_stats epoch_stats(const char *path, scf_options o)
{
	char err[512];
	scf_loader *l;
	scf_batch *b;
	scf_stats st = { .size = sizeof(scf_stats) };
	int rc;

	cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
	while ((rc = scf_next(l, &b)) == 0)
		scf_release(l, b);
	cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
	cr_assert_eq(scf_stats_get(l, &st), 0);
	scf_close(l);
	return st;
}

/*
 * Partial inflate: deflate-only chunks are inflated up to the last byte a
 * fetch uses; every row still equals HDF5's, and the counters show the
 * work not done.  Shuffled chunks must be decoded whole.
 */
Test(engine, partial_inflate_rows_equal_and_work_skipped)
{
	const struct { int shuffle; uint64_t chunk; } c[] = { { 0, 3000 }, { 1, 3000 } };
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char name[64];
		snprintf(name, sizeof(name), "partial%zu.h5ad", i);
		char *p = write_csr(name, (fx_csr_spec){ .n_rows = 1500, .n_cols = 700,
			.mean_nnz = 60, .empty_every = 9, .index_type = FX_I32,
			.indptr_type = FX_I64, .chunk = c[i].chunk, .resizable = 1, .deflate = 4,
			.shuffle = c[i].shuffle, .seed = 200 + i });
		scf_options o = opts(8, 1, 4);
		o.flags = SCF_F_PARTIAL_INFLATE | SCF_F_NO_CHUNK_CACHE;
		check_epochs(p, NULL, o, 1);
		o.flags = SCF_F_PARTIAL_INFLATE | SCF_F_NO_CHUNK_CACHE; /* counts of decodes alone */
		scf_stats part = epoch_stats(p, o);
		o.flags = SCF_F_NO_CHUNK_CACHE;
		scf_stats full = epoch_stats(p, o);
		cr_assert_eq(full.bytes_decode_skipped, 0);
		cr_assert_gt(full.chunks_decoded, 0);
		if (c[i].shuffle) {
			cr_assert_eq(part.bytes_decode_skipped, 0, "shuffled chunks decode whole");
		} else {
			cr_assert_gt(part.bytes_decode_skipped, part.bytes_decoded / 4,
			             "scattered rows: %lu bytes made, %lu skipped",
			             part.bytes_decoded, part.bytes_decode_skipped);
			cr_assert_lt(part.bytes_decoded, full.bytes_decoded * 3 / 4,
			             "partial %lu bytes vs whole %lu", part.bytes_decoded,
			             full.bytes_decoded);
		}
		/* a cache that holds every decoded chunk: each is decoded once, whole */
		o.flags = SCF_F_PARTIAL_INFLATE;
		cr_assert_eq(epoch_stats(p, o).bytes_decode_skipped, 0);
		o.flags = SCF_F_PARTIAL_INFLATE | SCF_F_NO_CHUNK_CACHE;
		o.strategy = SCF_STRATEGY_STREAMING;
		check_epochs(p, NULL, o, 1);
		free(p);
	}
	char *p = fx_path(dir, "anndata-partial.h5ad");
	int rc = fx_write_anndata(p, 2000, 800, 0.05, 72, "gzip");
	if (rc == 1)
		cr_skip_test("anndata is not installed (Debian: python3-anndata)");
	cr_assert_eq(rc, 0);
	scf_options o = opts(16, 1, 8);
	o.flags = SCF_F_PARTIAL_INFLATE | SCF_F_NO_CHUNK_CACHE;
	check_epochs(p, NULL, o, 1);
	free(p);
}

/*
 * The decoded-chunk cache: scattered rows that land in chunks an earlier
 * fetch decoded take them from the cache (no read, no decode); rows equal
 * HDF5's with the cache on, off, with a budget of one chunk and with
 * partial inflate (prefixes in the cache, extended when a fetch needs more).
 */
Test(engine, chunk_cache_hits_and_rows_equal)
{
	char *p = write_csr("zcache.h5ad", (fx_csr_spec){ .n_rows = 2000, .n_cols = 600,
		.mean_nnz = 40, .empty_every = 7, .index_type = FX_I32, .indptr_type = FX_I64,
		.chunk = 4000, .resizable = 1, .deflate = 3, .seed = 300 });
	scf_options o = opts(16, 1, 4);
	check_epochs(p, NULL, o, 1);
	scf_stats on = epoch_stats(p, o);
	o.flags = SCF_F_NO_CHUNK_CACHE;
	scf_stats off = epoch_stats(p, o);
	cr_assert_eq(off.chunk_cache_hits, 0);
	cr_assert_gt(on.chunk_cache_hits, on.chunks_decoded / 4, "hits %lu, decodes %lu",
	             on.chunk_cache_hits, on.chunks_decoded);
	cr_assert_lt(on.chunks_decoded, off.chunks_decoded / 2, "decodes %lu with, %lu without",
	             on.chunks_decoded, off.chunks_decoded);
	o.flags = 0;
	o.chunk_cache_bytes = 1; /* smaller than a chunk: holds nothing */
	cr_assert_eq(epoch_stats(p, o).chunk_cache_hits, 0);
	o.chunk_cache_bytes = 3 * 4000 * 4; /* three chunks: constant eviction */
	check_epochs(p, NULL, o, 1);
	o.flags = SCF_F_PARTIAL_INFLATE; /* prefixes in the cache, extended when needed */
	check_epochs(p, NULL, o, 1);
	free(p);
}

/*
 * scf_info and scf_stats grow like scf_options: a caller built against an
 * older header passes a smaller size and gets only the fields it knows (the
 * rest of its memory untouched); a size below the leading fields is refused.
 */
Test(engine, info_and_stats_fill_only_the_callers_size)
{
	char *p = write_csr("sized.h5ad", (fx_csr_spec){ .n_rows = 500, .n_cols = 100,
		.mean_nnz = 10, .index_type = FX_I32, .indptr_type = FX_I64, .seed = 400 });
	char err[512];
	scf_loader *l;
	scf_batch *b;
	scf_options o = opts(16, 4, 2);
	cr_assert_eq(scf_open(&l, p, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(scf_next(l, &b), 0);
	scf_release(l, b);

	scf_stats full = { .size = sizeof(full) }, old;
	cr_assert_eq(scf_stats_get(l, &full), 0);
	cr_assert_eq(full.size, sizeof(full));
	cr_assert_geq(full.batches, 1);
	memset(&old, 0xab, sizeof(old));
	old.size = (uint32_t)offsetof(scf_stats, decode_ns); /* the 0.1 fields only */
	cr_assert_eq(scf_stats_get(l, &old), 0);
	cr_assert_eq(old.rows, full.rows);
	cr_assert_eq(old.direct, full.direct);
	uint64_t fill;
	memset(&fill, 0xab, sizeof(fill));
	cr_assert_eq(old.decode_ns, fill, "a field past the caller's size was written");
	cr_assert_eq(old.bytes_decode_skipped, fill);
	old.size = 4;
	cr_assert_eq(scf_stats_get(l, &old), -EINVAL);

	scf_info info, small;
	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	cr_assert_eq(scf_info_get(l, &info), 0);
	cr_assert_eq(info.n_rows, 500);
	memset(&small, 0xcd, sizeof(small));
	small.size = (uint32_t)offsetof(scf_info, index_cached);
	cr_assert_eq(scf_info_get(l, &small), 0);
	cr_assert_eq(small.n_cols_out, info.n_cols_out);
	cr_assert_eq(small.index_built, 0xcdcdcdcdu, "index_built is past the caller's size");
	small.size = 0;
	cr_assert_eq(scf_info_get(l, &small), -EINVAL);
	scf_close(l);
	free(p);
}
