/*
 * tests/test_h5ad — formats/h5ad on its own: files written by the HDF5 C
 * API and by h5py in each layout, dtype and filter pipeline are described
 * as HDF5 itself describes them (H5Dget_offset, H5Pget_chunk,
 * H5Dget_chunk_info_by_coord, H5Pget_filter2, H5Dread of indptr), and each
 * case the checks of formats/h5ad.h refuse is refused with a message that
 * names the file and the dataset.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "formats/h5ad.h"
#include "scfetch.h"
#include "tests/fixtures.h"

static char *dir;

static void setup(void) { dir = fx_tmpdir(); cr_assert_not_null(dir); }
static void teardown(void) { fx_rmdir(dir); }

TestSuite(h5ad, .init = setup, .fini = teardown, .timeout = 120);

/* One dataset of the description against HDF5's own account of it. */
static void check_dset(const char *path, const scf__dset *ds, uint64_t n_elem,
                       uint8_t cls, uint8_t esz)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	hid_t d = H5Dopen2(f, ds->name, H5P_DEFAULT), dcpl = H5Dget_create_plist(d);
	hid_t fcpl = H5Fget_create_plist(f);
	hsize_t ub = 0;

	cr_assert_geq(d, 0, "%s: %s", path, ds->name);
	H5Pget_userblock(fcpl, &ub);
	cr_assert_eq(ds->dims[0] * (ds->rank == 2 ? ds->dims[1] : 1), n_elem, "%s", ds->name);
	cr_assert_eq(ds->type.cls, cls, "%s: class %d", ds->name, ds->type.cls);
	cr_assert_eq(ds->type.size, esz, "%s: size %d", ds->name, ds->type.size);
	int nf = H5Pget_nfilters(dcpl);
	cr_assert_eq((int)ds->n_filters, nf, "%s: filters", ds->name);
	for (int i = 0; i < nf; i++) {
		unsigned flags, cd[8];
		size_t ncd = 8;
		cr_assert_eq(ds->filter[i].id, H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, 0,
		                                              NULL, NULL), "%s: filter %d", ds->name, i);
	}
	if (H5Pget_layout(dcpl) == H5D_CONTIGUOUS) {
		cr_assert_eq(ds->storage, SCF__CONTIGUOUS, "%s", ds->name);
		if (n_elem)
			cr_assert_eq(ds->offset, H5Dget_offset(d) + ub, "%s: offset", ds->name);
	} else {
		hsize_t cd[2] = { 0, 0 };
		cr_assert_eq(ds->storage, SCF__CHUNKED, "%s", ds->name);
		cr_assert_eq(H5Pget_chunk(dcpl, 2, cd), (int)ds->rank);
		cr_assert_eq(ds->chunks.chunk_dims[0], cd[0]);
		const scf__chunk_map *cm = &ds->chunks;
		uint64_t g1 = ds->rank == 2 ? cm->grid[1] : 1;
		for (uint64_t i = 0; i < cm->n; i++) {
			hsize_t off[2] = { (i / g1) * cd[0], ds->rank == 2 ? (i % g1) * cd[1] : 0 };
			unsigned mask = 0;
			haddr_t addr = HADDR_UNDEF;
			hsize_t size = 0;
			cr_assert_geq(H5Dget_chunk_info_by_coord(d, off, &mask, &addr, &size), 0);
			if (addr == HADDR_UNDEF) {
				cr_assert_eq(scf__chunk_addr(cm, i), SCF__CHUNK_UNALLOCATED, "%s: chunk %lu",
				             ds->name, i);
				continue;
			}
			cr_assert_eq(scf__chunk_addr(cm, i), addr + ub, "%s: chunk %lu address",
			             ds->name, i);
			cr_assert_eq(scf__chunk_size(cm, i), size, "%s: chunk %lu size", ds->name, i);
			cr_assert_eq(scf__chunk_mask(cm, i), mask, "%s: chunk %lu mask", ds->name, i);
		}
	}
	H5Pclose(fcpl);
	H5Pclose(dcpl);
	H5Dclose(d);
	H5Fclose(f);
}

static uint8_t cls_of(int t)
{
	return t == FX_F32 || t == FX_F64 ? SCF__T_FLOAT
	       : t == FX_U16 || t == FX_U32 ? SCF__T_UINT : SCF__T_INT;
}

static uint8_t size_of(int t)
{
	static const uint8_t s[] = { [FX_F32] = 4, [FX_F64] = 8, [FX_I8] = 1, [FX_I16] = 2,
	                             [FX_I32] = 4, [FX_I64] = 8, [FX_U16] = 2, [FX_U32] = 4 };
	return s[t];
}

/* A CSR fixture described: shape, indptr (H5Dread), and each dataset. */
static void describe_csr(const fx_csr_spec *s, const char *name)
{
	char *path = fx_path(dir, name), err[2048];
	scf__matrix m;
	fx_ref ref;

	cr_assert_eq(fx_write_csr(path, s), 0);
	cr_assert_eq(fx_ref_load(path, "X", &ref), 0);
	int rc = scf__h5ad_open(&m, path, "X", err, sizeof(err));
	cr_assert_eq(rc, 0, "%s: %s", name, err);
	cr_assert_eq(m.encoding, SCF__CSR);
	cr_assert_eq(m.n_rows, ref.n_rows);
	cr_assert_eq(m.n_cols, ref.n_cols);
	cr_assert_eq(m.nnz, ref.nnz);
	uint64_t widest = 0;
	for (uint64_t r = 0; r <= ref.n_rows; r++) {
		cr_assert_eq(m.indptr[r], ref.indptr[r], "%s: indptr[%lu]", name, r);
		if (r < ref.n_rows && (uint64_t)(ref.indptr[r + 1] - ref.indptr[r]) > widest)
			widest = (uint64_t)(ref.indptr[r + 1] - ref.indptr[r]);
	}
	cr_assert_eq(m.max_row_nnz, widest);
	int dt = s->data_type, it = s->index_type == FX_I64 ? FX_I64 : FX_I32;
	int pt = s->indptr_type == FX_I32 ? FX_I32 : FX_I64;
	check_dset(path, &m.data, ref.nnz, cls_of(dt), size_of(dt));
	check_dset(path, &m.indices, ref.nnz, cls_of(it), size_of(it));
	check_dset(path, &m.indptr_ds, ref.n_rows + 1, cls_of(pt), size_of(pt));
	cr_assert_str_eq(m.data.name, "X/data");
	cr_assert_str_eq(m.indices.name, "X/indices");
	scf__h5ad_free(&m);
	fx_ref_free(&ref);
	free(path);
}

Test(h5ad, csr_layouts_and_dtypes)
{
	static const int dtypes[] = { FX_F32, FX_F64, FX_I8, FX_I16, FX_I32, FX_I64, FX_U16,
	                              FX_U32 };
	for (unsigned i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++) {
		fx_csr_spec s = { .n_rows = 120, .n_cols = 300, .mean_nnz = 12, .empty_every = 7,
		                  .data_type = dtypes[i], .index_type = i % 2 ? FX_I64 : FX_I32,
		                  .indptr_type = i % 3 ? FX_I64 : FX_I32, .seed = i + 1 };
		char name[32];
		snprintf(name, sizeof(name), "contig%u.h5ad", i);
		describe_csr(&s, name);
		s.chunk = 97;
		snprintf(name, sizeof(name), "chunked%u.h5ad", i);
		describe_csr(&s, name);
	}
}

Test(h5ad, csr_filters_and_indexes)
{
	fx_csr_spec s = { .n_rows = 200, .n_cols = 500, .mean_nnz = 20, .chunk = 128,
	                  .deflate = 4, .shuffle = 1, .fletcher32 = 1, .seed = 3 };
	describe_csr(&s, "filtered.h5ad");
	s.resizable = 1; /* extensible array (v4) or B-tree index */
	describe_csr(&s, "resizable.h5ad");
	s.libver_latest = 1;
	describe_csr(&s, "latest_resizable.h5ad");
	s.resizable = 0; /* fixed array index */
	describe_csr(&s, "latest_fixed.h5ad");
	s.chunk = 100000; /* one chunk: the single-chunk index */
	describe_csr(&s, "latest_single.h5ad");
}

Test(h5ad, dense_layouts)
{
	fx_dense_spec specs[] = {
		{ .n_rows = 40, .n_cols = 30, .data_type = FX_F32, .density = 0.3, .seed = 1 },
		{ .n_rows = 40, .n_cols = 30, .data_type = FX_I16, .chunk_rows = 7, .chunk_cols = 9,
		  .density = 0.5, .seed = 2 },
		{ .n_rows = 33, .n_cols = 5, .data_type = FX_F64, .chunk_rows = 4, .chunk_cols = 5,
		  .density = 0.9, .seed = 3 },
	};
	for (unsigned i = 0; i < 3; i++) {
		char name[32], err[2048];
		snprintf(name, sizeof(name), "dense%u.h5ad", i);
		char *path = fx_path(dir, name);
		scf__matrix m;
		cr_assert_eq(fx_write_dense(path, &specs[i]), 0);
		cr_assert_eq(scf__h5ad_open(&m, path, "X", err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(m.encoding, SCF__DENSE);
		cr_assert_eq(m.n_rows, specs[i].n_rows);
		cr_assert_eq(m.n_cols, specs[i].n_cols);
		cr_assert_eq(m.data.rank, 2);
		check_dset(path, &m.data, specs[i].n_rows * specs[i].n_cols,
		           cls_of(specs[i].data_type), size_of(specs[i].data_type));
		scf__h5ad_free(&m);
		free(path);
	}
}

/* h5py's writers: gzip, lzf, shuffle; described as HDF5 sees them. */
Test(h5ad, h5py_filters)
{
	static const char *const filters[] = { "gzip1", "lzf", "shuffle-gzip", "gzip-fletcher" };
	for (unsigned i = 0; i < 4; i++) {
		char name[32], err[2048];
		snprintf(name, sizeof(name), "h5py%u.h5ad", i);
		char *path = fx_path(dir, name);
		int rc = fx_write_h5py_csr(path, 150, 400, i + 1, filters[i]);
		if (rc == 1)
			cr_skip_test("h5py is not installed for /usr/bin/python3");
		cr_assert_eq(rc, 0);
		scf__matrix m;
		fx_ref ref;
		cr_assert_eq(scf__h5ad_open(&m, path, "X", err, sizeof(err)), 0, "%s: %s",
		             filters[i], err);
		cr_assert_eq(fx_ref_load(path, "ref", &ref), 0);
		cr_assert_eq(m.nnz, ref.nnz);
		cr_assert_eq(m.n_rows, ref.n_rows);
		for (uint64_t r = 0; r <= ref.n_rows; r++)
			cr_assert_eq(m.indptr[r], ref.indptr[r]);
		/* lzf (32000) cannot be read by this HDF5 build, but it can be described */
		cr_assert_gt(m.data.n_filters, 0, "%s", filters[i]);
		cr_assert_eq(m.data.filter[m.data.n_filters - 1].id,
		             strstr(filters[i], "lzf") ? 32000 : strstr(filters[i], "fletcher") ? 3 : 1);
		scf__h5ad_free(&m);
		fx_ref_free(&ref);
		free(path);
	}
}

/* ---- refusals: a small writer that can get every part wrong ---- */

typedef struct bad {
	const char *encoding;        /* NULL: csr_matrix */
	int no_shape;
	int64_t shape[2];            /* 0,0: 4 x 10 */
	hid_t data_t, indices_t, indptr_t;  /* 0: float32, int32, int64 */
	const int64_t *indptr;       /* NULL: 0,2,4,6,8 */
	uint64_t n_indptr;
	uint64_t n_data, n_indices;  /* 0: 8 */
	int data_layout;             /* 0 contiguous, 1 compact, 2 external, 3 chunked
	                                (4) with only the first chunk written */
	int data_filter;             /* an optional filter id on chunked data */
} bad;

static void write_1d(hid_t g, const char *name, hid_t ft, uint64_t n, const void *buf,
                     hid_t mt, int layout, int filter, const char *ext)
{
	hsize_t dims = n, ch = 4;
	hid_t sp = H5Screate_simple(1, &dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);

	if (layout == 1)
		H5Pset_layout(dcpl, H5D_COMPACT);
	if (layout == 2)
		H5Pset_external(dcpl, ext, 0, n * H5Tget_size(ft));
	if (layout == 3 || filter) {
		H5Pset_chunk(dcpl, 1, &ch);
		if (filter)
			H5Pset_filter(dcpl, (H5Z_filter_t)filter, H5Z_FLAG_OPTIONAL, 0, NULL);
	}
	hid_t d = H5Dcreate2(g, name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	cr_assert_geq(d, 0, "cannot create %s", name);
	if (layout == 3) { /* elements 0..3 only: the other chunks are never written */
		hsize_t s = 0, c = 4;
		hid_t ms = H5Screate_simple(1, &c, NULL);
		H5Sselect_hyperslab(sp, H5S_SELECT_SET, &s, NULL, &c, NULL);
		cr_assert_geq(H5Dwrite(d, mt, ms, sp, H5P_DEFAULT, buf), 0);
		H5Sclose(ms);
	} else {
		cr_assert_geq(H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), 0);
	}
	H5Dclose(d);
	H5Pclose(dcpl);
	H5Sclose(sp);
}

static void str_attr(hid_t obj, const char *name, const char *v)
{
	hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
	H5Tset_size(t, H5T_VARIABLE);
	hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
	H5Awrite(a, t, &v);
	H5Aclose(a);
	H5Sclose(sp);
	H5Tclose(t);
}

static char *write_bad(const char *name, const bad *b)
{
	char *path = fx_path(dir, name), *ext = fx_path(dir, "external.bin");
	static const int64_t ip[] = { 0, 2, 4, 6, 8 };
	double vals[64];
	int64_t idx[64];
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hid_t g = H5Gcreate2(f, "X", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);

	for (int i = 0; i < 64; i++) {
		vals[i] = i + 1;
		idx[i] = i % 10;
	}
	str_attr(g, "encoding-type", b->encoding ? b->encoding : "csr_matrix");
	str_attr(g, "encoding-version", "0.1.0");
	if (!b->no_shape) {
		int64_t shape[2] = { b->shape[0] ? b->shape[0] : 4, b->shape[1] ? b->shape[1] : 10 };
		hsize_t two = 2;
		hid_t sp = H5Screate_simple(1, &two, NULL);
		hid_t a = H5Acreate2(g, "shape", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
		H5Awrite(a, H5T_NATIVE_INT64, shape);
		H5Aclose(a);
		H5Sclose(sp);
	}
	write_1d(g, "data", b->data_t ? b->data_t : H5T_IEEE_F32LE, b->n_data ? b->n_data : 8, vals,
	         H5T_NATIVE_DOUBLE, b->data_layout, b->data_filter, ext);
	write_1d(g, "indices", b->indices_t ? b->indices_t : H5T_STD_I32LE,
	         b->n_indices ? b->n_indices : 8, idx, H5T_NATIVE_INT64, 0, 0, ext);
	write_1d(g, "indptr", b->indptr_t ? b->indptr_t : H5T_STD_I64LE,
	         b->indptr ? b->n_indptr : 5, b->indptr ? b->indptr : ip, H5T_NATIVE_INT64, 0, 0, ext);
	H5Gclose(g);
	H5Fclose(f);
	free(ext);
	return path;
}

/* Open must fail with `code`, and the message name the file and every `want`. */
static void refused(const char *path, const char *key, int code, const char *want1,
                    const char *want2)
{
	char err[2048] = "";
	scf__matrix m;
	int rc = scf__h5ad_open(&m, path, key, err, sizeof(err));

	cr_assert_eq(rc, code, "%s: got %d (%s), expected %d", path, rc, err, code);
	cr_assert(strstr(err, path), "message does not name the file: %s", err);
	cr_assert(!want1 || strstr(err, want1), "message lacks \"%s\": %s", want1, err);
	cr_assert(!want2 || strstr(err, want2), "message lacks \"%s\": %s", want2, err);
}

Test(h5ad, the_small_writer_is_valid)
{
	char *p = write_bad("good.h5ad", &(bad){ 0 });
	char err[2048];
	scf__matrix m;
	cr_assert_eq(scf__h5ad_open(&m, p, "X", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(m.nnz, 8);
	cr_assert_eq(m.max_row_nnz, 2);
	scf__h5ad_free(&m);
	free(p);
}

Test(h5ad, refuses_encodings_and_shapes)
{
	char *p;

	p = write_bad("csc.h5ad", &(bad){ .encoding = "csc_matrix" });
	refused(p, "X", SCF_E_UNSUPPORTED, "X", "csc_matrix");
	free(p);
	p = write_bad("coo.h5ad", &(bad){ .encoding = "coo_matrix" });
	refused(p, "X", SCF_E_NOT_H5AD, "X", "coo_matrix");
	free(p);
	p = write_bad("noshape.h5ad", &(bad){ .no_shape = 1 });
	refused(p, "X", SCF_E_CORRUPT, "X", "shape");
	free(p);
	p = write_bad("wide.h5ad", &(bad){ .shape = { 4, (int64_t)1 << 31 } });
	refused(p, "X", SCF_E_CORRUPT, "X", "2^31");
	free(p);
	p = write_bad("nokey.h5ad", &(bad){ 0 });
	refused(p, "layers/counts", SCF_E_NOT_H5AD, "layers/counts", NULL);
	char key[300];
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	refused(p, key, -EINVAL, "matrix key", NULL);
	free(p);
}

Test(h5ad, refuses_dtypes)
{
	char *p;

	p = write_bad("fptr.h5ad", &(bad){ .indptr_t = H5T_IEEE_F64LE });
	refused(p, "X", SCF_E_CORRUPT, "X/indptr", "integer");
	free(p);
	p = write_bad("fidx.h5ad", &(bad){ .indices_t = H5T_IEEE_F32LE });
	refused(p, "X", SCF_E_CORRUPT, "X/indices", "float32");
	free(p);
	p = write_bad("be.h5ad", &(bad){ .data_t = H5T_IEEE_F32BE });
	refused(p, "X", SCF_E_UNSUPPORTED, "X/data", "little-endian");
	free(p);
	hid_t i24 = H5Tcopy(H5T_STD_I32LE); /* a 3-byte integer */
	H5Tset_precision(i24, 24);
	H5Tset_size(i24, 3);
	p = write_bad("int24.h5ad", &(bad){ .data_t = i24 });
	refused(p, "X", SCF_E_UNSUPPORTED, "X/data", NULL);
	H5Tclose(i24);
	free(p);
}

Test(h5ad, refuses_indptr)
{
	static const int64_t down[] = { 0, 2, 1, 6, 8 }, past[] = { 0, 2, 4, 6, 9 };
	static const int64_t neg[] = { -1, 2, 4, 6, 8 };
	char *p;

	p = write_bad("short.h5ad", &(bad){ .indptr = down, .n_indptr = 4 });
	refused(p, "X", SCF_E_CORRUPT, "X/indptr", "expected rows + 1");
	free(p);
	p = write_bad("down.h5ad", &(bad){ .indptr = down, .n_indptr = 5 });
	refused(p, "X", SCF_E_CORRUPT, "X/indptr", "not monotonic at row 1");
	free(p);
	p = write_bad("neg.h5ad", &(bad){ .indptr = neg, .n_indptr = 5 });
	refused(p, "X", SCF_E_CORRUPT, "X/indptr", "row 0");
	free(p);
	p = write_bad("past.h5ad", &(bad){ .indptr = past, .n_indptr = 5 });
	refused(p, "X", SCF_E_CORRUPT, "X/indptr", "ends at 9");
	free(p);
	p = write_bad("uneven.h5ad", &(bad){ .n_indices = 9 });
	refused(p, "X", SCF_E_CORRUPT, "X/indptr", "indices 9");
	free(p);
}

Test(h5ad, refuses_layouts_and_filters)
{
	char *p;

	p = write_bad("compact.h5ad", &(bad){ .data_layout = 1 });
	refused(p, "X", SCF_E_UNSUPPORTED, "X/data", "compact");
	free(p);
	p = write_bad("external.h5ad", &(bad){ .data_layout = 2 });
	refused(p, "X", SCF_E_UNSUPPORTED, "X/data", "external");
	free(p);
	p = write_bad("unwritten.h5ad", &(bad){ .data_layout = 3 });
	refused(p, "X", SCF_E_CORRUPT, "X/data", "never written");
	free(p);
	p = write_bad("filter.h5ad", &(bad){ .data_filter = 307 }); /* bzip2's id */
	refused(p, "X", SCF_E_UNSUPPORTED, "X/data", "filter id 307");
	free(p);
}

Test(h5ad, refuses_files)
{
	char *p = fx_path(dir, "text.h5ad"), *q = fx_path(dir, "absent.h5ad");
	FILE *f = fopen(p, "w");
	fprintf(f, "%0600d\n", 0);
	fclose(f);
	refused(p, "X", SCF_E_NOT_H5AD, "not an HDF5 file", NULL);
	refused(q, "X", -ENOENT, NULL, NULL);
	/* a dense matrix of rows and no columns */
	fx_dense_spec d = { .n_rows = 5, .n_cols = 0, .data_type = FX_F32 };
	char *z = fx_path(dir, "nocols.h5ad");
	cr_assert_eq(fx_write_dense(z, &d), 0);
	refused(z, "X", SCF_E_UNSUPPORTED, "0 columns", NULL);
	free(z);
	free(p);
	free(q);
}
