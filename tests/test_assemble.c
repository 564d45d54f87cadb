/*
 * tests/test_assemble — engine/assemble on its own: a fetch planned by
 * engine/plan, its reads carried out here with pread, assembled, and every
 * delivered value compared with an H5Dread of the same row (fx_ref): each
 * stored dtype, filtered chunks, column selection, dense output, dense
 * files, normalize_total and log1p (computed here in double from the
 * reference), delivery order, and column ids outside [0, n_cols) refused
 * with the file, dataset and row named.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "engine/assemble.h"
#include "tests/fixtures.h"

static char *dir;

static void setup(void) { dir = fx_tmpdir(); cr_assert_not_null(dir); }
static void teardown(void) { fx_rmdir(dir); }

TestSuite(assemble, .init = setup, .fini = teardown, .timeout = 120);

/* One assembled fetch and what it needs kept alive. */
typedef struct fetch {
	scf__matrix m;
	uint64_t row0[2];
	scf__files fs;
	scf__plan p;
	scf__scratch sc;
	scf__fetch_order o;
	uint8_t *arena;
	scf_batch batch[64];
	uint32_t n_batch;
	int rc;
	char err[1024];
} fetch;

/*
 * Assemble rows[0..n) (sorted) of path's X, delivered in reverse order so
 * that delivery order and file order differ.
 */
static fetch *assemble_rows(const char *path, const uint64_t *rows, uint64_t n,
                            scf__asm_cfg cfg)
{
	fetch *f = calloc(1, sizeof(*f));
	char err[2048];

	cr_assert_eq(scf__h5ad_open(&f->m, path, "X", err, sizeof(err)), 0, "%s", err);
	f->row0[1] = f->m.n_rows;
	f->fs = (scf__files){ .m = &f->m, .row0 = f->row0, .n = 1 };
	scf__plan_cfg pc = { .align = 1, .max_read = 1 << 20, .gap = 4096 };
	scf__plan_init(&f->p);
	cr_assert_eq(scf__plan_build(&f->p, &f->m, &pc, rows, n), 0);
	uint8_t *stg = calloc(1, f->p.staging_bytes + 1);
	int fd = open(path, O_RDONLY);
	for (uint64_t i = 0; i < f->p.n_reads; i++) {
		const scf__read *rd = &f->p.reads[i];
		cr_assert_geq(pread(fd, stg + rd->staging_off, rd->len, (off_t)rd->file_off),
		              (ssize_t)rd->need);
	}
	close(fd);
	f->o.n = f->o.n_deliver = n;
	f->o.rows = malloc(n * sizeof(uint64_t));
	f->o.perm = malloc(n * sizeof(uint32_t));
	memcpy(f->o.rows, rows, n * sizeof(uint64_t));
	for (uint64_t i = 0; i < n; i++)
		f->o.perm[i] = (uint32_t)(n - 1 - i);
	cr_assert_eq(scf__scratch_init(&f->sc, &f->fs, n), 0);
	cfg.fs = &f->fs;
	cfg.n_cols = f->m.n_cols;
	if (!cfg.n_out_cols)
		cfg.n_out_cols = f->m.n_cols;
	if (!cfg.batch_size)
		cfg.batch_size = 16;
	cr_assert_leq((n + cfg.batch_size - 1) / cfg.batch_size, 64);
	f->arena = calloc(1, scf__assemble_bytes(&cfg, &f->p, n));
	f->rc = scf__assemble(&cfg, &f->p, &f->o, stg, f->arena, f->batch, &f->n_batch, &f->sc,
	                      f->err, sizeof(f->err));
	free(stg);
	return f;
}

static void fetch_free(fetch *f)
{
	scf__scratch_free(&f->sc);
	scf__plan_free(&f->p);
	scf__h5ad_free(&f->m);
	free(f->o.rows);
	free(f->o.perm);
	free(f->arena);
	free(f);
}

/* The expected output row r: reference values through the selection and transforms. */
static void expect_row(const fx_ref *ref, uint64_t r, const int32_t *map, uint64_t n_out,
                       double target, int log1p_, double *dense, int64_t *idx, double *val,
                       uint64_t *n)
{
	double sum = 0;
	*n = 0;
	for (int64_t k = ref->indptr[r]; k < ref->indptr[r + 1]; k++)
		sum += ref->data[k];
	double factor = target > 0 && sum != 0 ? target / sum : 1.0;
	if (dense)
		memset(dense, 0, n_out * sizeof(double));
	for (int64_t k = ref->indptr[r]; k < ref->indptr[r + 1]; k++) {
		int64_t c = map ? map[ref->indices[k]] : ref->indices[k];
		if (c < 0)
			continue;
		double v = ref->data[k] * factor;
		if (dense) {
			dense[c] += ref->data[k];
		} else {
			idx[*n] = c;
			val[(*n)++] = log1p_ ? log1p(v) : v;
		}
	}
	if (dense)
		for (uint64_t c = 0; c < n_out; c++)
			dense[c] = log1p_ ? log1p(dense[c] * factor) : dense[c] * factor;
}

static int close_enough(double got, double want, int exact)
{
	if (exact)
		return (float)want == (float)got;
	return fabs(got - want) <= 1e-5 * fabs(want) + 1e-6;
}

/* Every delivered row of the fetch against the reference. */
static void check_fetch(const fetch *f, const fx_ref *ref, const uint64_t *rows, uint64_t n,
                        const int32_t *map, uint64_t n_out, double target, int log1p_,
                        int dense_out)
{
	int exact = !(target > 0) && !log1p_;
	double *dense = malloc((n_out + 1) * sizeof(double)), *val = malloc((ref->n_cols + 1) * 8);
	int64_t *idx = malloc((ref->n_cols + 1) * 8);
	uint64_t pos = 0;

	cr_assert_eq(f->rc, 0, "scf__assemble: %s", f->err);
	for (uint32_t b = 0; b < f->n_batch; b++) {
		const scf_batch *bt = &f->batch[b];
		cr_assert_eq(bt->n_cols, n_out);
		for (uint64_t j = 0; j < bt->n_rows; j++, pos++) {
			uint64_t r = rows[n - 1 - pos], len;
			cr_assert_eq(bt->row_ids[j], r, "delivery order: position %lu", pos);
			expect_row(ref, r, map, n_out, target, log1p_, dense_out ? dense : NULL, idx, val,
			           &len);
			if (dense_out) {
				for (uint64_t c = 0; c < n_out; c++)
					cr_assert(close_enough(bt->data[j * n_out + c], dense[c], exact),
					          "row %lu col %lu: %g, expected %g", r, c,
					          bt->data[j * n_out + c], dense[c]);
				continue;
			}
			int64_t s = bt->indptr[j];
			cr_assert_eq((uint64_t)(bt->indptr[j + 1] - s), len, "row %lu: entries", r);
			for (uint64_t e = 0; e < len; e++) {
				cr_assert_eq(bt->indices[s + e], idx[e], "row %lu entry %lu: column", r, e);
				cr_assert(close_enough(bt->data[s + e], val[e], exact),
				          "row %lu col %ld: %g, expected %g", r, idx[e], bt->data[s + e],
				          val[e]);
			}
		}
	}
	cr_assert_eq(pos, n, "rows delivered");
	free(dense);
	free(val);
	free(idx);
}

static uint64_t *some_rows(uint64_t n_rows, uint64_t step, uint64_t *n)
{
	uint64_t *rows = malloc((n_rows / step + 1) * sizeof(uint64_t));
	*n = 0;
	for (uint64_t r = 1; r < n_rows; r += step)
		rows[(*n)++] = r;
	return rows;
}

/* Write, assemble rows, compare; cfg's output, selection and transforms as given. */
static void round_trip(const fx_csr_spec *s, const char *name, scf__asm_cfg cfg,
                       const int32_t *map, uint64_t n_out)
{
	char *path = fx_path(dir, name);
	fx_ref ref;
	uint64_t n;

	cr_assert_eq(fx_write_csr(path, s), 0);
	cr_assert_eq(fx_ref_load(path, "X", &ref), 0);
	uint64_t *rows = some_rows(ref.n_rows, 3, &n);
	cfg.col_map = map;
	cfg.n_out_cols = n_out;
	fetch *f = assemble_rows(path, rows, n, cfg);
	check_fetch(f, &ref, rows, n, map, n_out ? n_out : ref.n_cols, cfg.target_sum, cfg.log1p,
	            cfg.output == SCF_OUTPUT_DENSE);
	fetch_free(f);
	fx_ref_free(&ref);
	free(rows);
	free(path);
}

Test(assemble, every_stored_dtype_converts)
{
	static const int dtypes[] = { FX_F32, FX_F64, FX_I8, FX_I16, FX_I32, FX_I64, FX_U16,
	                              FX_U32 };
	for (unsigned i = 0; i < 8; i++) {
		fx_csr_spec s = { .n_rows = 100, .n_cols = 400, .mean_nnz = 15, .empty_every = 6,
		                  .data_type = dtypes[i], .index_type = i % 2 ? FX_I64 : FX_I32,
		                  .seed = i + 10 };
		char name[32];
		snprintf(name, sizeof(name), "t%u.h5ad", i);
		round_trip(&s, name, (scf__asm_cfg){ .output = SCF_OUTPUT_CSR }, NULL, 0);
		s.chunk = 50; /* pieces across chunk boundaries */
		snprintf(name, sizeof(name), "k%u.h5ad", i);
		round_trip(&s, name, (scf__asm_cfg){ .output = SCF_OUTPUT_CSR }, NULL, 0);
	}
}

Test(assemble, filtered_chunks_decode)
{
	fx_csr_spec s = { .n_rows = 200, .n_cols = 600, .mean_nnz = 30, .chunk = 64,
	                  .deflate = 6, .shuffle = 1, .fletcher32 = 1, .data_type = FX_F64,
	                  .seed = 3 };
	round_trip(&s, "z.h5ad", (scf__asm_cfg){ .output = SCF_OUTPUT_CSR }, NULL, 0);
	round_trip(&s, "zd.h5ad", (scf__asm_cfg){ .output = SCF_OUTPUT_DENSE }, NULL, 0);
}

/* Keep every third column, renumbered c / 3. */
static int32_t *thirds(uint64_t n_cols, uint64_t *n_out)
{
	int32_t *map = malloc(n_cols * sizeof(int32_t));
	*n_out = 0;
	for (uint64_t c = 0; c < n_cols; c++)
		map[c] = c % 3 == 1 ? (int32_t)(*n_out)++ : -1;
	return map;
}

Test(assemble, column_selection)
{
	fx_csr_spec s = { .n_rows = 150, .n_cols = 300, .mean_nnz = 40, .chunk = 100,
	                  .data_type = FX_I32, .seed = 4 };
	uint64_t n_out;
	int32_t *map = thirds(300, &n_out);
	round_trip(&s, "sel.h5ad", (scf__asm_cfg){ .output = SCF_OUTPUT_CSR }, map, n_out);
	round_trip(&s, "seld.h5ad", (scf__asm_cfg){ .output = SCF_OUTPUT_DENSE }, map, n_out);
	free(map);
}

Test(assemble, normalize_total_and_log1p)
{
	fx_csr_spec s = { .n_rows = 150, .n_cols = 300, .mean_nnz = 40, .data_type = FX_U16,
	                  .empty_every = 5, .seed = 5 };
	uint64_t n_out;
	int32_t *map = thirds(300, &n_out);
	round_trip(&s, "n.h5ad", (scf__asm_cfg){ .output = SCF_OUTPUT_CSR, .target_sum = 1e4 },
	           NULL, 0);
	round_trip(&s, "l.h5ad", (scf__asm_cfg){ .output = SCF_OUTPUT_CSR, .log1p = 1 }, NULL, 0);
	/* the factor comes from all of a row's genes, before the selection */
	round_trip(&s, "nl.h5ad", (scf__asm_cfg){ .output = SCF_OUTPUT_CSR, .target_sum = 1e4,
	                                          .log1p = 1 }, map, n_out);
	round_trip(&s, "nld.h5ad", (scf__asm_cfg){ .output = SCF_OUTPUT_DENSE, .target_sum = 100,
	                                           .log1p = 1 }, map, n_out);
	free(map);
}

Test(assemble, dense_files_in_both_outputs)
{
	fx_dense_spec s = { .n_rows = 40, .n_cols = 23, .data_type = FX_I16, .chunk_rows = 6,
	                    .chunk_cols = 5, .density = 0.4, .seed = 6 };
	char *path = fx_path(dir, "d.h5ad");
	uint64_t rows[] = { 0, 5, 6, 17, 39 }, n_out;
	fx_ref ref;

	cr_assert_eq(fx_write_dense(path, &s), 0);
	cr_assert_eq(fx_ref_load(path, "X", &ref), 0); /* non-zeros of the dense rows */
	int32_t *map = thirds(23, &n_out);
	for (int out = 0; out < 2; out++) {
		for (int sel = 0; sel < 2; sel++) {
			scf__asm_cfg cfg = { .output = out, .col_map = sel ? map : NULL,
			                     .n_out_cols = sel ? n_out : 0 };
			fetch *f = assemble_rows(path, rows, 5, cfg);
			check_fetch(f, &ref, rows, 5, sel ? map : NULL, sel ? n_out : 23, 0, 0, out);
			fetch_free(f);
		}
	}
	free(map);
	fx_ref_free(&ref);
	free(path);
}

/* A CSR file whose row `bad_row` holds column id `bad` (int64 ids). */
static char *write_bad_ids(const char *name, uint64_t bad_row, int64_t bad)
{
	char *path = fx_path(dir, name);
	int64_t indptr[6] = { 0, 2, 4, 6, 8, 10 }, shape[2] = { 5, 10 };
	int64_t idx[10] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	float data[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
	hsize_t n10 = 10, n6 = 6, two = 2;

	idx[2 * bad_row + 1] = bad;
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hid_t g = H5Gcreate2(f, "X", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	hid_t st = H5Tcopy(H5T_C_S1), sc = H5Screate(H5S_SCALAR);
	H5Tset_size(st, H5T_VARIABLE);
	const char *enc = "csr_matrix";
	hid_t a = H5Acreate2(g, "encoding-type", st, sc, H5P_DEFAULT, H5P_DEFAULT);
	H5Awrite(a, st, &enc);
	H5Aclose(a);
	hid_t s2 = H5Screate_simple(1, &two, NULL);
	a = H5Acreate2(g, "shape", H5T_STD_I64LE, s2, H5P_DEFAULT, H5P_DEFAULT);
	H5Awrite(a, H5T_NATIVE_INT64, shape);
	H5Aclose(a);
	hid_t s10 = H5Screate_simple(1, &n10, NULL), s6 = H5Screate_simple(1, &n6, NULL);
	hid_t d = H5Dcreate2(g, "data", H5T_IEEE_F32LE, s10, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
	H5Dclose(d);
	d = H5Dcreate2(g, "indices", H5T_STD_I64LE, s10, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, idx);
	H5Dclose(d);
	d = H5Dcreate2(g, "indptr", H5T_STD_I64LE, s6, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, indptr);
	H5Dclose(d);
	H5Sclose(s10);
	H5Sclose(s6);
	H5Sclose(s2);
	H5Sclose(sc);
	H5Tclose(st);
	H5Gclose(g);
	H5Fclose(f);
	return path;
}

Test(assemble, column_ids_outside_the_matrix_are_refused)
{
	static const int64_t bad[] = { 10, -1, (int64_t)1 << 33 };
	uint64_t rows[] = { 0, 1, 2, 3, 4 };

	for (int i = 0; i < 3; i++) {
		for (int out = 0; out < 2; out++) {
			char name[32], want[32];
			snprintf(name, sizeof(name), "bad%d.h5ad", i);
			char *path = write_bad_ids(name, 3, bad[i]);
			fetch *f = assemble_rows(path, rows, 5, (scf__asm_cfg){ .output = out });
			cr_assert_eq(f->rc, SCF_E_CORRUPT, "column id %ld accepted (%s)", bad[i],
			             out ? "dense" : "csr");
			snprintf(want, sizeof(want), "row 3 ");
			cr_assert(strstr(f->err, path) && strstr(f->err, "X/indices") &&
			          strstr(f->err, want), "message: %s", f->err);
			fetch_free(f);
			free(path);
		}
	}
	/* the same file with a valid id there assembles */
	char *ok = write_bad_ids("ok.h5ad", 3, 9);
	fetch *f = assemble_rows(ok, rows, 5, (scf__asm_cfg){ .output = SCF_OUTPUT_CSR });
	cr_assert_eq(f->rc, 0, "%s", f->err);
	fetch_free(f);
	free(ok);
}
