/*
 * tests/test_repack — tools/repack: a matrix rewritten with worker threads,
 * every row of the output compared with an H5Dread of the input (the
 * fixtures' reference reader), for each codec, input layout and dtype, with
 * slices small enough that the pipeline wraps its slots many times; and
 * --verify (scf_repack_verify) catching a chunk changed after the write.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "tests/fixtures.h"
#include "tools/repack.h"

static char *dir;

static void setup(void) { dir = fx_tmpdir(); cr_assert_not_null(dir); }
static void teardown(void) { fx_rmdir(dir); }

TestSuite(repack, .init = setup, .fini = teardown, .timeout = 120);

/* Every row of `out` equals the same row of `in`, both read with H5Dread. */
static void check_same_rows(const char *in, const char *out)
{
	fx_ref a, b;

	cr_assert_eq(fx_ref_load(in, "X", &a), 0);
	cr_assert_eq(fx_ref_load(out, "X", &b), 0);
	cr_assert_eq(a.n_rows, b.n_rows);
	cr_assert_eq(a.n_cols, b.n_cols);
	cr_assert_eq(a.nnz, b.nnz);
	cr_assert_gt(a.nnz, 0, "fixture without entries proves nothing");
	for (uint64_t r = 0; r < a.n_rows; r++) {
		cr_assert_eq(a.indptr[r + 1], b.indptr[r + 1], "row %lu: indptr differs", r);
		for (int64_t k = a.indptr[r]; k < a.indptr[r + 1]; k++) {
			cr_assert_eq(a.indices[k], b.indices[k], "row %lu entry %ld: column %ld, "
			             "input %ld", r, k, b.indices[k], a.indices[k]);
			cr_assert_eq(a.data[k], b.data[k], "row %lu entry %ld: %g, input %g", r, k,
			             b.data[k], a.data[k]);
		}
	}
	fx_ref_free(&a);
	fx_ref_free(&b);
}

/* The creation properties of out's dataset: chunk and filter ids. */
static void dset_layout(const char *path, const char *name, hsize_t *chunk, int *filters,
                        int *n_filters)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	hid_t d = H5Dopen2(f, name, H5P_DEFAULT), dcpl = H5Dget_create_plist(d);

	cr_assert_geq(dcpl, 0);
	cr_assert_eq(H5Pget_chunk(dcpl, 1, chunk), 1, "%s: %s not chunked", path, name);
	*n_filters = H5Pget_nfilters(dcpl);
	for (int i = 0; i < *n_filters && i < 4; i++) {
		unsigned flags, cd[8];
		size_t ncd = 8;
		filters[i] = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, 0, NULL, NULL);
	}
	H5Pclose(dcpl);
	H5Dclose(d);
	H5Fclose(f);
}

static void repack_ok(const char *in, const char *out, scf_repack_opts o)
{
	char err[1024] = "";
	int rc = scf_repack(in, out, &o, NULL, err, sizeof(err));
	cr_assert_eq(rc, 0, "scf_repack: %s", err);
}

/* gzip input (h5py's default codec), read raw by the workers, several threads. */
Test(repack, gzip_input_threads_deflate_output)
{
	char *in = fx_path(dir, "in.h5ad"), *out = fx_path(dir, "out.h5ad");
	fx_csr_spec s = { .n_rows = 700, .n_cols = 3000, .mean_nnz = 60, .empty_every = 9,
	                  .chunk = 997, .deflate = 6, .seed = 1 };
	cr_assert_eq(fx_write_csr(in, &s), 0);
	repack_ok(in, out, (scf_repack_opts){ .chunk_rows = 4, .codec = SCF_CODEC_DEFLATE,
	                                      .threads = 3, .slice = 1000 });
	check_same_rows(in, out);
	hsize_t chunk;
	int f[4] = { 0 }, nf = 0;
	dset_layout(out, "X/data", &chunk, f, &nf);
	cr_assert_eq(nf, 2, "shuffle and deflate expected, got %d filters", nf);
	cr_assert_eq(f[0], H5Z_FILTER_SHUFFLE);
	cr_assert_eq(f[1], H5Z_FILTER_DEFLATE);
	cr_assert_geq(chunk, 256);
	cr_assert_lt(chunk, 997, "chunks of about 4 rows of 60 entries, got %llu",
	             (unsigned long long)chunk);
	free(in);
	free(out);
}

/* Shuffle + gzip + fletcher32 input, int64 indices, float64 values, zstd output. */
Test(repack, filtered_wide_types_zstd_output)
{
	char *in = fx_path(dir, "in.h5ad"), *out = fx_path(dir, "out.h5ad");
	fx_csr_spec s = { .n_rows = 500, .n_cols = 70000, .mean_nnz = 40, .chunk = 512,
	                  .deflate = 1, .shuffle = 1, .fletcher32 = 1, .data_type = FX_F64,
	                  .index_type = FX_I64, .seed = 2 };
	char err[1024] = "";
	cr_assert_eq(fx_write_csr(in, &s), 0);
	/* verify registers a zstd decoder with HDF5, so fx_ref_load reads it next */
	scf_repack_opts o = { .codec = SCF_CODEC_ZSTD, .threads = 2, .slice = 700,
	                      .verify = 1 };
	cr_assert_eq(scf_repack(in, out, &o, NULL, err, sizeof(err)), 0, "%s", err);
	check_same_rows(in, out);
	free(in);
	free(out);
}

/* Contiguous input (read through H5Dread on the HDF5 thread), no codec, 1 thread. */
Test(repack, contiguous_input_no_codec)
{
	char *in = fx_path(dir, "in.h5ad"), *out = fx_path(dir, "out.h5ad");
	fx_csr_spec s = { .n_rows = 400, .n_cols = 1000, .mean_nnz = 30, .data_type = FX_I32,
	                  .seed = 3 };
	cr_assert_eq(fx_write_csr(in, &s), 0);
	repack_ok(in, out, (scf_repack_opts){ .codec = SCF_CODEC_NONE, .threads = 1,
	                                      .slice = 300 });
	check_same_rows(in, out);
	free(in);
	free(out);
}

/* Resizable, latest-format input with uint16 values; unsliced default; all CPUs. */
Test(repack, resizable_latest_default_threads)
{
	char *in = fx_path(dir, "in.h5ad"), *out = fx_path(dir, "out.h5ad");
	fx_csr_spec s = { .n_rows = 300, .n_cols = 500, .mean_nnz = 20, .chunk = 333,
	                  .resizable = 1, .libver_latest = 1, .deflate = 4,
	                  .data_type = FX_U16, .seed = 4 };
	cr_assert_eq(fx_write_csr(in, &s), 0);
	repack_ok(in, out, (scf_repack_opts){ .codec = SCF_CODEC_DEFLATE, .level = 9 });
	check_same_rows(in, out);
	free(in);
	free(out);
}

/* An anndata-written file (whatever user block and layout anndata chooses). */
Test(repack, anndata_gzip)
{
	char *in = fx_path(dir, "in.h5ad"), *out = fx_path(dir, "out.h5ad");
	int rc = fx_write_anndata(in, 300, 400, 0.1, 5, "gzip");
	if (rc == 1)
		cr_skip_test("anndata is not installed for /usr/bin/python3");
	cr_assert_eq(rc, 0);
	repack_ok(in, out, (scf_repack_opts){ .codec = SCF_CODEC_DEFLATE, .threads = 2,
	                                      .slice = 500 });
	check_same_rows(in, out);
	free(in);
	free(out);
}

/* Progress to a file: a line per 10%, ending at 100%; verify's line too. */
Test(repack, progress_lines)
{
	char *in = fx_path(dir, "in.h5ad"), *out = fx_path(dir, "out.h5ad");
	fx_csr_spec s = { .n_rows = 400, .n_cols = 800, .mean_nnz = 40, .chunk = 400,
	                  .deflate = 1, .seed = 6 };
	char err[1024] = "", line[512];
	int pct_lines = 0, hundred = 0, verified = 0;
	FILE *log = tmpfile();

	cr_assert_eq(fx_write_csr(in, &s), 0);
	scf_repack_opts o = { .codec = SCF_CODEC_DEFLATE, .threads = 2, .slice = 300,
	                      .progress = 1, .verify = 1 };
	cr_assert_eq(scf_repack(in, out, &o, log, err, sizeof(err)), 0, "%s", err);
	rewind(log);
	while (fgets(line, sizeof(line), log)) {
		pct_lines += strstr(line, "repack: ") && strchr(line, '%');
		hundred += strstr(line, "100%") != NULL;
		verified += strstr(line, "verified") != NULL;
	}
	fclose(log);
	cr_assert_geq(pct_lines, 5, "%d progress lines", pct_lines);
	cr_assert_leq(pct_lines, 12, "%d progress lines: not one per 10%%", pct_lines);
	cr_assert_eq(hundred, 1);
	cr_assert_eq(verified, 1);
	free(in);
	free(out);
}

/*
 * Change one stored chunk of out's dataset `name` in place (HDF5's raw chunk
 * read and write, so the file stays valid): XOR byte `at` of chunk `k`.
 */
static void flip_chunk_byte(const char *path, const char *name, hsize_t k, hsize_t chunk,
                            size_t at)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), d = H5Dopen2(f, name, H5P_DEFAULT);
	hsize_t off = k * chunk, size = 0;
	uint32_t mask = 0;

	cr_assert_geq(d, 0);
	cr_assert_geq(H5Dget_chunk_storage_size(d, &off, &size), 0);
	cr_assert_gt(size, at);
	uint8_t *buf = malloc(size);
	cr_assert_geq(H5Dread_chunk(d, H5P_DEFAULT, &off, &mask, buf), 0);
	buf[at] ^= 0x5a;
	cr_assert_geq(H5Dwrite_chunk(d, H5P_DEFAULT, mask, &off, size, buf), 0);
	free(buf);
	H5Dclose(d);
	H5Fclose(f);
}

/* The row holding entry e, from the input's indptr read with H5Dread. */
static uint64_t row_of_entry(const char *in, uint64_t e)
{
	fx_ref a;
	uint64_t r = 0;

	cr_assert_eq(fx_ref_load(in, "X", &a), 0);
	while (r + 1 < a.n_rows && (uint64_t)a.indptr[r + 1] <= e)
		r++;
	fx_ref_free(&a);
	return r;
}

/* A changed value in an uncompressed chunk: verify names the row it lies in. */
Test(repack, verify_names_the_changed_row)
{
	char *in = fx_path(dir, "in.h5ad"), *out = fx_path(dir, "out.h5ad");
	fx_csr_spec s = { .n_rows = 500, .n_cols = 2000, .mean_nnz = 50, .chunk = 1000,
	                  .deflate = 3, .seed = 7 };
	char err[1024] = "", want[64];
	hsize_t chunk;
	int f[4], nf;

	cr_assert_eq(fx_write_csr(in, &s), 0);
	repack_ok(in, out, (scf_repack_opts){ .codec = SCF_CODEC_NONE, .threads = 2,
	                                      .slice = 2000 });
	cr_assert_eq(scf_repack_verify(in, out, "X", NULL, err, sizeof(err)), 0, "%s", err);
	dset_layout(out, "X/data", &chunk, f, &nf);
	cr_assert_eq(nf, 0);
	/* float32 entry 37 of chunk 5: its highest byte, so the value surely changes */
	flip_chunk_byte(out, "X/data", 5, chunk, 37 * 4 + 3);
	uint64_t row = row_of_entry(in, 5 * chunk + 37);
	cr_assert_eq(scf_repack_verify(in, out, "X", NULL, err, sizeof(err)), -1,
	             "a changed value went unnoticed");
	snprintf(want, sizeof(want), "in 1 row (row %llu)", (unsigned long long)row);
	cr_assert(strstr(err, "X/data") && strstr(err, want), "message: %s (want \"%s\")", err,
	          want);
	cr_assert(strstr(err, in) && strstr(err, out), "message names both files: %s", err);
	free(in);
	free(out);
}

/* A column id changed in a deflate output chunk: the chunk no longer decodes. */
Test(repack, verify_catches_a_damaged_deflate_chunk)
{
	char *in = fx_path(dir, "in.h5ad"), *out = fx_path(dir, "out.h5ad");
	fx_csr_spec s = { .n_rows = 500, .n_cols = 2000, .mean_nnz = 50, .chunk = 1000,
	                  .deflate = 3, .seed = 8 };
	char err[1024] = "";
	hsize_t chunk;
	int f[4], nf;

	cr_assert_eq(fx_write_csr(in, &s), 0);
	repack_ok(in, out, (scf_repack_opts){ .codec = SCF_CODEC_DEFLATE, .threads = 2,
	                                      .slice = 2000 });
	dset_layout(out, "X/indices", &chunk, f, &nf);
	flip_chunk_byte(out, "X/indices", 3, chunk, 20);
	cr_assert_eq(scf_repack_verify(in, out, "X", NULL, err, sizeof(err)), -1,
	             "a damaged chunk went unnoticed");
	cr_assert(strstr(err, "X/indices"), "message: %s", err);
	free(in);
	free(out);
}

/* A missing matrix or input is refused with a sentence naming the files. */
Test(repack, refusals_name_the_files)
{
	char *in = fx_path(dir, "in.h5ad"), *out = fx_path(dir, "out.h5ad");
	char *nope = fx_path(dir, "missing.h5ad");
	fx_csr_spec s = { .n_rows = 10, .n_cols = 10, .mean_nnz = 3, .seed = 9 };
	char err[1024] = "";

	cr_assert_eq(fx_write_csr(in, &s), 0);
	scf_repack_opts o = { .matrix = "layers/none" };
	cr_assert_eq(scf_repack(in, out, &o, NULL, err, sizeof(err)), -1);
	cr_assert(strstr(err, in) && strstr(err, "layers/none"), "message: %s", err);
	o.matrix = NULL;
	cr_assert_eq(scf_repack(nope, out, &o, NULL, err, sizeof(err)), -1);
	cr_assert(strstr(err, nope), "message: %s", err);
	free(nope);
	free(in);
	free(out);
}

/* verify registers zstd with HDF5 when it has none: a second zstd repack still works. */
Test(repack, zstd_twice_in_one_process)
{
	char *in = fx_path(dir, "in.h5ad"), *out = fx_path(dir, "out.h5ad");
	fx_csr_spec s = { .n_rows = 200, .n_cols = 300, .mean_nnz = 20, .chunk = 300,
	                  .deflate = 1, .seed = 10 };
	char err[1024] = "";

	cr_assert_eq(fx_write_csr(in, &s), 0);
	scf_repack_opts o = { .codec = SCF_CODEC_ZSTD, .threads = 2, .verify = 1 };
	for (int i = 0; i < 2; i++)
		cr_assert_eq(scf_repack(in, out, &o, NULL, err, sizeof(err)), 0, "run %d: %s", i, err);
	check_same_rows(in, out);
	free(in);
	free(out);
}
