/*
 * tests/test_plan — engine/plan on its own, over files written by the HDF5
 * C API: the plan's reads are carried out here with pread, and each row's
 * pieces must hold that row's bytes as H5Dread returns them; pieces split
 * at chunk boundaries, filtered chunks listed once at the address HDF5
 * gives (H5Dget_chunk_info_by_coord), reads aligned and capped as asked,
 * and runs merged exactly where an independent merge of the row extents
 * (H5Dget_offset + indptr) says.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "engine/plan.h"
#include "tests/fixtures.h"

static char *dir;

static void setup(void) { dir = fx_tmpdir(); cr_assert_not_null(dir); }
static void teardown(void) { fx_rmdir(dir); }

TestSuite(plan, .init = setup, .fini = teardown, .timeout = 120);

static void open_matrix(const char *path, scf__matrix *m)
{
	char err[2048];
	cr_assert_eq(scf__h5ad_open(m, path, "X", err, sizeof(err)), 0, "%s", err);
}

/* Carry out the plan's reads from the files (one descriptor per file). */
static uint8_t *execute(const scf__plan *p, const int *fds)
{
	uint8_t *stg = calloc(1, p->staging_bytes + 1);

	for (uint64_t i = 0; i < p->n_reads; i++) {
		const scf__read *rd = &p->reads[i];
		cr_assert_leq(rd->staging_off + rd->len, p->staging_bytes, "read %lu outside staging", i);
		cr_assert_leq(rd->need, rd->len);
		ssize_t got = pread(fds[rd->file], stg + rd->staging_off, rd->len, (off_t)rd->file_off);
		cr_assert_geq(got, (ssize_t)rd->need, "read %lu: %zd bytes, %u needed", i, got, rd->need);
	}
	return stg;
}

/* The bytes of row k's pieces (raw pieces only), concatenated. */
static uint64_t row_bytes(const scf__plan *p, const uint8_t *stg, int which, uint64_t k,
                          uint8_t *out)
{
	const uint64_t *rowi = which ? p->irow : p->drow;
	const scf__piece *pc = which ? p->ipiece : p->dpiece;
	uint64_t w = 0;

	for (uint64_t i = rowi[k]; i < rowi[k + 1]; i++) {
		cr_assert_eq(pc[i].zchunk, SCF__RAW);
		cr_assert_neq(pc[i].x.file_off, SCF__NO_FILE);
		memcpy(out + w, stg + pc[i].x.staging_off, pc[i].x.nbytes);
		w += pc[i].x.nbytes;
	}
	return w;
}

/* Rows' pieces hold the rows (int32 data and indices, as the fixture stores them). */
static void check_rows(const scf__plan *p, const uint8_t *stg, const fx_ref *ref,
                       const uint64_t *rows, uint64_t n)
{
	int32_t *buf = malloc((ref->n_cols + 1) * 8);

	for (uint64_t k = 0; k < n; k++) {
		uint64_t r = rows[k], len = (uint64_t)(ref->indptr[r + 1] - ref->indptr[r]);
		cr_assert_eq(row_bytes(p, stg, 0, k, (uint8_t *)buf), 4 * len, "row %lu data", r);
		for (uint64_t e = 0; e < len; e++)
			cr_assert_eq(buf[e], (int32_t)ref->data[ref->indptr[r] + e], "row %lu value %lu", r, e);
		cr_assert_eq(row_bytes(p, stg, 1, k, (uint8_t *)buf), 4 * len, "row %lu indices", r);
		for (uint64_t e = 0; e < len; e++)
			cr_assert_eq(buf[e], ref->indices[ref->indptr[r] + e], "row %lu index %lu", r, e);
	}
	free(buf);
}

static uint64_t *every(uint64_t n_rows, uint64_t step, uint64_t *n)
{
	uint64_t *rows = malloc((n_rows / step + 1) * sizeof(uint64_t));
	*n = 0;
	for (uint64_t r = 0; r < n_rows; r += step)
		rows[(*n)++] = r;
	return rows;
}

static const fx_csr_spec contig = { .n_rows = 300, .n_cols = 800, .mean_nnz = 25,
                                    .empty_every = 11, .data_type = FX_I32, .seed = 1 };

Test(plan, contiguous_rows_map_to_their_bytes)
{
	char *path = fx_path(dir, "c.h5ad");
	scf__matrix m;
	scf__plan p;
	fx_ref ref;
	uint64_t n, nnz = 0;

	cr_assert_eq(fx_write_csr(path, &contig), 0);
	cr_assert_eq(fx_ref_load(path, "X", &ref), 0);
	open_matrix(path, &m);
	uint64_t *rows = every(ref.n_rows, 3, &n);
	int fd = open(path, O_RDONLY);
	scf__plan_cfg cfg = { .align = 1, .max_read = 1 << 20, .gap = 0 };
	scf__plan_init(&p);
	cr_assert_eq(scf__plan_build(&p, &m, &cfg, rows, n), 0);
	for (uint64_t k = 0; k < n; k++) {
		uint64_t len = (uint64_t)(ref.indptr[rows[k] + 1] - ref.indptr[rows[k]]);
		nnz += len;
		/* contiguous storage: one piece per non-empty row and dataset */
		cr_assert_eq(p.drow[k + 1] - p.drow[k], len ? 1 : 0, "row %lu", rows[k]);
		cr_assert_eq(p.rfile[k], 0);
	}
	cr_assert_eq(p.n_rows, n);
	cr_assert_eq(p.nnz, nnz);
	cr_assert_eq(p.bytes_requested, 8 * nnz);
	cr_assert_eq(p.n_zchunk, 0);
	uint8_t *stg = execute(&p, &fd);
	check_rows(&p, stg, &ref, rows, n);
	free(stg);
	scf__plan_free(&p);
	scf__h5ad_free(&m);
	fx_ref_free(&ref);
	close(fd);
	free(rows);
	free(path);
}

Test(plan, reads_are_aligned_and_capped)
{
	char *path = fx_path(dir, "c.h5ad");
	scf__matrix m;
	scf__plan p;
	fx_ref ref;
	uint64_t n;

	cr_assert_eq(fx_write_csr(path, &contig), 0);
	cr_assert_eq(fx_ref_load(path, "X", &ref), 0);
	open_matrix(path, &m);
	uint64_t *rows = every(ref.n_rows, 2, &n);
	int fd = open(path, O_RDONLY);
	scf__plan_cfg cfg = { .align = 4096, .max_read = 8192, .gap = 0 };
	scf__plan_init(&p);
	cr_assert_eq(scf__plan_build(&p, &m, &cfg, rows, n), 0);
	cr_assert_gt(p.n_reads, 1);
	for (uint64_t i = 0; i < p.n_reads; i++) {
		cr_assert_eq(p.reads[i].file_off % 4096, 0, "read %lu offset", i);
		cr_assert_eq(p.reads[i].len % 4096, 0, "read %lu length", i);
		cr_assert_eq(p.reads[i].staging_off % 4096, 0, "read %lu staging", i);
		cr_assert_leq(p.reads[i].len, 8192, "read %lu longer than max_read", i);
		cr_assert_gt(p.reads[i].need, 0);
	}
	cr_assert_eq(p.staging_bytes % 4096, 0);
	uint8_t *stg = execute(&p, &fd);
	check_rows(&p, stg, &ref, rows, n);
	free(stg);
	scf__plan_free(&p);
	scf__h5ad_free(&m);
	fx_ref_free(&ref);
	close(fd);
	free(rows);
	free(path);
}

typedef struct span { uint64_t s, e; } span;

static int cmp_span(const void *a, const void *b)
{
	const span *x = a, *y = b;
	return x->s < y->s ? -1 : x->s > y->s;
}

/* Runs after merging the rows' extents closer than gap: the oracle. */
static uint64_t expected_runs(const char *path, const fx_ref *ref, const uint64_t *rows,
                              uint64_t n, uint64_t gap)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	hid_t d = H5Dopen2(f, "X/data", H5P_DEFAULT), i = H5Dopen2(f, "X/indices", H5P_DEFAULT);
	uint64_t base[2] = { H5Dget_offset(d), H5Dget_offset(i) }, k = 0, runs = 0, end = 0;
	span *sp = malloc(2 * n * sizeof(span));

	H5Dclose(d);
	H5Dclose(i);
	H5Fclose(f);
	for (uint64_t j = 0; j < n; j++)
		for (int w = 0; w < 2; w++)
			if (ref->indptr[rows[j] + 1] > ref->indptr[rows[j]])
				sp[k++] = (span){ base[w] + 4 * (uint64_t)ref->indptr[rows[j]],
				                  base[w] + 4 * (uint64_t)ref->indptr[rows[j] + 1] };
	qsort(sp, k, sizeof(span), cmp_span);
	for (uint64_t j = 0; j < k; j++) {
		if (j == 0 || sp[j].s > end + gap) {
			runs++;
			end = sp[j].e;
		} else if (sp[j].e > end) {
			end = sp[j].e;
		}
	}
	free(sp);
	return runs;
}

Test(plan, coalescing_follows_the_gap)
{
	char *path = fx_path(dir, "c.h5ad");
	scf__matrix m;
	fx_ref ref;
	uint64_t n;
	static const uint32_t gaps[] = { 0, 40, 200, 1000, 1u << 30 };

	cr_assert_eq(fx_write_csr(path, &contig), 0);
	cr_assert_eq(fx_ref_load(path, "X", &ref), 0);
	open_matrix(path, &m);
	uint64_t *rows = every(ref.n_rows, 5, &n);
	uint64_t last = UINT64_MAX;
	for (unsigned g = 0; g < 5; g++) {
		scf__plan p;
		scf__plan_cfg cfg = { .align = 1, .max_read = 1u << 30, .gap = gaps[g] };
		scf__plan_init(&p);
		cr_assert_eq(scf__plan_build(&p, &m, &cfg, rows, n), 0);
		uint64_t want = expected_runs(path, &ref, rows, n, gaps[g]);
		cr_assert_eq(p.n_reads, want, "gap %u: %lu reads, %lu runs expected", gaps[g],
		             p.n_reads, want);
		cr_assert_leq(p.n_reads, last, "a wider gap never adds reads");
		last = p.n_reads;
		scf__plan_free(&p);
	}
	cr_assert_leq(last, 2, "one run per dataset at most with an unlimited gap");
	scf__h5ad_free(&m);
	fx_ref_free(&ref);
	free(rows);
	free(path);
}

/* Chunk c of a 1-D dataset, from HDF5: address and stored size. */
static void chunk_info(const char *path, const char *name, uint64_t c, uint64_t cd,
                       uint64_t *addr, uint64_t *size)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, name, H5P_DEFAULT);
	hsize_t off = c * cd, sz = 0;
	haddr_t a = HADDR_UNDEF;
	unsigned mask;

	cr_assert_geq(H5Dget_chunk_info_by_coord(d, &off, &mask, &a, &sz), 0);
	*addr = a;
	*size = sz;
	H5Dclose(d);
	H5Fclose(f);
}

Test(plan, chunked_pieces_split_at_chunk_boundaries)
{
	char *path = fx_path(dir, "k.h5ad");
	fx_csr_spec s = contig;
	scf__matrix m;
	scf__plan p;
	fx_ref ref;
	uint64_t n;

	s.chunk = 37;
	cr_assert_eq(fx_write_csr(path, &s), 0);
	cr_assert_eq(fx_ref_load(path, "X", &ref), 0);
	open_matrix(path, &m);
	uint64_t *rows = every(ref.n_rows, 4, &n);
	int fd = open(path, O_RDONLY);
	scf__plan_cfg cfg = { .align = 1, .max_read = 1 << 20, .gap = 512 };
	scf__plan_init(&p);
	cr_assert_eq(scf__plan_build(&p, &m, &cfg, rows, n), 0);
	for (uint64_t k = 0; k < n; k++) {
		uint64_t e0 = (uint64_t)ref.indptr[rows[k]], e1 = (uint64_t)ref.indptr[rows[k] + 1];
		uint64_t want = e1 > e0 ? (e1 - 1) / 37 - e0 / 37 + 1 : 0;
		cr_assert_eq(p.drow[k + 1] - p.drow[k], want, "row %lu: pieces", rows[k]);
		cr_assert_eq(p.irow[k + 1] - p.irow[k], want, "row %lu: pieces", rows[k]);
		if (want) {
			uint64_t addr, size;
			chunk_info(path, "X/data", e0 / 37, 37, &addr, &size);
			cr_assert_eq(p.dpiece[p.drow[k]].x.file_off, addr + 4 * (e0 % 37),
			             "row %lu: first piece's offset", rows[k]);
		}
	}
	uint8_t *stg = execute(&p, &fd);
	check_rows(&p, stg, &ref, rows, n);
	free(stg);
	scf__plan_free(&p);
	scf__h5ad_free(&m);
	fx_ref_free(&ref);
	close(fd);
	free(rows);
	free(path);
}

Test(plan, filtered_chunks_are_listed_once)
{
	char *path = fx_path(dir, "z.h5ad");
	fx_csr_spec s = contig;
	scf__matrix m;
	scf__plan p;
	fx_ref ref;
	uint64_t n;
	const uint64_t cd = 64;

	s.chunk = cd;
	s.deflate = 5;
	s.shuffle = 1;
	cr_assert_eq(fx_write_csr(path, &s), 0);
	cr_assert_eq(fx_ref_load(path, "X", &ref), 0);
	open_matrix(path, &m);
	uint64_t *rows = every(ref.n_rows, 7, &n);
	scf__plan_cfg cfg = { .align = 4096, .max_read = 1 << 20, .gap = 0 };
	scf__plan_init(&p);
	cr_assert_eq(scf__plan_build(&p, &m, &cfg, rows, n), 0);
	/* the oracle: chunks the rows touch, per dataset */
	uint64_t n_chunks = (ref.nnz + cd - 1) / cd, want = 0;
	uint8_t *used = calloc(n_chunks, 1);
	for (uint64_t k = 0; k < n; k++) {
		uint64_t e0 = (uint64_t)ref.indptr[rows[k]], e1 = (uint64_t)ref.indptr[rows[k] + 1];
		for (uint64_t c = e0 / cd; e1 > e0 && c <= (e1 - 1) / cd; c++)
			used[c] = 1;
		for (uint64_t i = p.drow[k]; i < p.drow[k + 1]; i++) {
			const scf__piece *pc = &p.dpiece[i];
			cr_assert_neq(pc->zchunk, SCF__RAW);
			cr_assert_lt(pc->zchunk, p.n_zchunk);
			uint64_t first = i == p.drow[k] ? e0 : p.zchunk[pc->zchunk].id * cd;
			cr_assert_eq(pc->x.staging_off, 4 * (first - p.zchunk[pc->zchunk].id * cd),
			             "row %lu: piece's place in its chunk", rows[k]);
		}
	}
	for (uint64_t c = 0; c < n_chunks; c++)
		want += used[c];
	cr_assert_eq(p.n_zchunk, 2 * want, "%lu chunks listed, %lu touched (x2 datasets)",
	             p.n_zchunk, want);
	cr_assert_eq(p.bytes_decoded, p.n_zchunk * cd * 4);
	for (uint64_t z = 0; z < p.n_zchunk; z++) {
		uint64_t addr, size;
		cr_assert(used[p.zchunk[z].id], "chunk %lu listed but not touched", p.zchunk[z].id);
		for (uint64_t y = 0; y < z; y++)
			cr_assert(p.zchunk[y].id != p.zchunk[z].id || p.zchunk[y].ds != p.zchunk[z].ds,
			          "chunk %lu listed twice", p.zchunk[z].id);
		chunk_info(path, p.zchunk[z].ds ? "X/indices" : "X/data", p.zchunk[z].id, cd, &addr,
		           &size);
		cr_assert_eq(p.zchunk[z].x.file_off, addr);
		cr_assert_eq(p.zchunk[z].x.nbytes, size);
	}
	free(used);
	scf__plan_free(&p);
	scf__h5ad_free(&m);
	fx_ref_free(&ref);
	free(rows);
	free(path);
}

Test(plan, dense_rows_one_piece_per_chunk_column)
{
	char *path = fx_path(dir, "d.h5ad");
	fx_dense_spec s = { .n_rows = 30, .n_cols = 23, .data_type = FX_F32, .chunk_rows = 7,
	                    .chunk_cols = 5, .density = 0.6, .seed = 4 };
	scf__matrix m;
	scf__plan p;
	uint64_t rows[] = { 0, 6, 7, 13, 29 };
	float *all = malloc(30 * 23 * sizeof(float)), got[23];

	cr_assert_eq(fx_write_dense(path, &s), 0);
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "X", H5P_DEFAULT);
	cr_assert_geq(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, all), 0);
	H5Dclose(d);
	H5Fclose(f);
	open_matrix(path, &m);
	int fd = open(path, O_RDONLY);
	scf__plan_cfg cfg = { .align = 1, .max_read = 1 << 20, .gap = 0 };
	scf__plan_init(&p);
	cr_assert_eq(scf__plan_build(&p, &m, &cfg, rows, 5), 0);
	cr_assert_eq(p.dense_rows, 5);
	cr_assert_eq(p.nnz, 0);
	uint8_t *stg = execute(&p, &fd);
	for (uint64_t k = 0; k < 5; k++) {
		cr_assert_eq(p.drow[k + 1] - p.drow[k], 5, "ceil(23 / 5) chunk columns");
		cr_assert_eq(p.irow[k + 1] - p.irow[k], 0);
		cr_assert_eq(row_bytes(&p, stg, 0, k, (uint8_t *)got), 23 * sizeof(float));
		cr_assert_eq(memcmp(got, all + rows[k] * 23, sizeof(got)), 0, "row %lu", rows[k]);
	}
	free(stg);
	free(all);
	scf__plan_free(&p);
	scf__h5ad_free(&m);
	close(fd);
	free(path);
}

Test(plan, collections_keep_reads_inside_one_file)
{
	char *pa = fx_path(dir, "a.h5ad"), *pb = fx_path(dir, "b.h5ad"), *pe = fx_path(dir, "e.h5ad");
	fx_csr_spec sa = contig, sb = contig, se = contig;
	scf__matrix m[3];
	fx_ref ra, rb;
	scf__plan p;

	sb.n_rows = 120;
	sb.seed = 9;
	se.n_rows = 0;
	cr_assert_eq(fx_write_csr(pa, &sa), 0);
	cr_assert_eq(fx_write_csr(pe, &se), 0);
	cr_assert_eq(fx_write_csr(pb, &sb), 0);
	cr_assert_eq(fx_ref_load(pa, "X", &ra), 0);
	cr_assert_eq(fx_ref_load(pb, "X", &rb), 0);
	open_matrix(pa, &m[0]);
	open_matrix(pe, &m[1]);
	open_matrix(pb, &m[2]);
	uint64_t row0[4] = { 0, 300, 300, 420 };
	scf__files fs = { .m = m, .row0 = row0, .n = 3 };
	cr_assert_eq(scf__files_find(&fs, 0), 0);
	cr_assert_eq(scf__files_find(&fs, 299), 0);
	cr_assert_eq(scf__files_find(&fs, 300), 2, "the empty file holds no row");
	cr_assert_eq(scf__files_find(&fs, 419), 2);
	uint64_t rows[] = { 1, 150, 298, 299, 300, 301, 350, 419 }, n = 8;
	int fds[3] = { open(pa, O_RDONLY), open(pe, O_RDONLY), open(pb, O_RDONLY) };
	scf__plan_cfg cfg = { .align = 4096, .max_read = 1 << 20, .gap = 1u << 30 };
	scf__plan_init(&p);
	cr_assert_eq(scf__plan_build_files(&p, &fs, &cfg, rows, n), 0);
	uint32_t seen = 0;
	for (uint64_t i = 0; i < p.n_reads; i++)
		seen |= 1u << p.reads[i].file;
	cr_assert_eq(seen, 5, "reads of files 0 and 2 only");
	cr_assert_geq(p.n_reads, 2, "a read never spans files, even with an unlimited gap");
	uint8_t *stg = execute(&p, fds);
	for (uint64_t k = 0; k < n; k++) {
		cr_assert_eq(p.rfile[k], rows[k] < 300 ? 0 : 2);
		for (uint64_t i = p.drow[k]; i < p.drow[k + 1]; i++)
			cr_assert_eq(p.dpiece[i].x.file, p.rfile[k]);
	}
	/* content: rows 0..3 are file 0's, 4..7 file 2's (local ids la, lb) */
	uint64_t la[] = { 1, 150, 298, 299 }, lb[] = { 0, 1, 50, 119 };
	int32_t buf[2048];
	for (uint64_t k = 0; k < n; k++) {
		const fx_ref *ref = k < 4 ? &ra : &rb;
		uint64_t r = k < 4 ? la[k] : lb[k - 4];
		uint64_t len = (uint64_t)(ref->indptr[r + 1] - ref->indptr[r]);
		cr_assert_eq(row_bytes(&p, stg, 1, k, (uint8_t *)buf), 4 * len);
		for (uint64_t e = 0; e < len; e++)
			cr_assert_eq(buf[e], ref->indices[ref->indptr[r] + e], "row %lu", rows[k]);
	}
	free(stg);
	scf__plan_free(&p);
	for (int i = 0; i < 3; i++) {
		scf__h5ad_free(&m[i]);
		close(fds[i]);
	}
	fx_ref_free(&ra);
	fx_ref_free(&rb);
	free(pa);
	free(pb);
	free(pe);
}
