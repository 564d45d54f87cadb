/*
 * tests/fixtures — test inputs written by the real writers (the HDF5 C API
 * here, anndata through tests/write_anndata.py) and the reference reader
 * (plain H5Dread) against which every delivered cell is compared.
 * Thread: the test's main thread only; HDF5 is not thread-safe in Debian's build.
 */
#include "tests/fixtures.h"
#include "tools/h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SCF_TEST_PYTHON
#define SCF_TEST_PYTHON "/usr/bin/python3"
#endif
#ifndef SCF_SOURCE_DIR
#define SCF_SOURCE_DIR "."
#endif

extern char **environ;

/* ---- randomness: fixtures must be the same on every run and machine ---- */

typedef struct fx_rng { uint64_t s; } fx_rng;

/* splitmix64: one word of state is plenty for test data. */
static uint64_t rng_next(fx_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, n); the modulo bias is irrelevant for fixtures. */
static uint64_t rng_below(fx_rng *r, uint64_t n)
{
	return n ? rng_next(r) % n : 0;
}

static double rng_unit(fx_rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/*
 * A stored value: odd multiples of 1/8 for floats (never integers, exact in
 * float32, so comparisons after conversion are exact), small positive ints
 * for integer types (they fit int8).
 */
static double rng_value(fx_rng *r, int type)
{
	if (type == FX_F32 || type == FX_F64)
		return (double)(2 * rng_below(r, 4000) + 1) / 8.0;
	return (double)(1 + rng_below(r, 100));
}

/* ---- HDF5 helpers ---- */

static hid_t file_type(int t)
{
	switch (t) {
	case FX_F64: return H5T_IEEE_F64LE;
	case FX_I8: return H5T_STD_I8LE;
	case FX_I16: return H5T_STD_I16LE;
	case FX_I32: return H5T_STD_I32LE;
	case FX_I64: return H5T_STD_I64LE;
	case FX_U16: return H5T_STD_U16LE;
	case FX_U32: return H5T_STD_U32LE;
	default: return H5T_IEEE_F32LE;
	}
}

/* `column-order`: the categorical column names, or an empty array. */
static int attr_columns(hid_t obj, const char *const *names, hsize_t n)
{
	hid_t t;
	int rc;

	if (n == 0)
		return h5u_attr_array(obj, "column-order", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, NULL, 0);
	t = h5u_vlen_str();
	rc = t < 0 ? -1 : h5u_attr_array(obj, "column-order", t, t, names, n);
	h5u_put(t);
	return rc;
}

/* A group anndata reads as a dict (layers/, and any other intermediate). */
static hid_t dict_group(hid_t parent, const char *name)
{
	hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);

	if (g >= 0 && h5u_attr_encoding(g, "dict", "0.1.0") < 0) {
		h5u_put(g);
		return -1;
	}
	return g;
}

/*
 * The group that will hold `path`'s last component, creating intermediate
 * groups ("layers/counts" creates layers/); *leaf points into path.
 */
static hid_t open_parent(hid_t file, const char *path, const char **leaf)
{
	hid_t g = H5Gopen2(file, "/", H5P_DEFAULT), next;
	const char *p = path, *slash;
	char name[256];

	while (g >= 0 && (slash = strchr(p, '/')) != NULL) {
		size_t n = (size_t)(slash - p);
		if (n == 0 || n >= sizeof(name)) {
			h5u_put(g);
			return -1;
		}
		memcpy(name, p, n);
		name[n] = '\0';
		next = H5Lexists(g, name, H5P_DEFAULT) > 0 ? H5Gopen2(g, name, H5P_DEFAULT)
		                                          : dict_group(g, name);
		h5u_put(g);
		g = next;
		p = slash + 1;
	}
	*leaf = p;
	return g;
}

/* libver latest switches chunked datasets to the v4 fixed/extensible-array indexes. */
static hid_t create_file(const char *path, int latest)
{
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), f = -1;

	if (fapl >= 0 && (!latest ||
	                  H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST) >= 0))
		f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
	h5u_put(fapl);
	if (f >= 0 && h5u_attr_encoding(f, "anndata", "0.1.0") < 0) {
		H5Fclose(f);
		return -1;
	}
	return f;
}

/* ---- obs and var, as anndata writes a DataFrame ---- */

/* `prefix0`, `prefix1`, ... as a variable-length string array. */
static int write_names(hid_t grp, const char *dset, const char *prefix, uint64_t n)
{
	size_t width = strlen(prefix) + 24;
	char *text = malloc(n * width + 1);
	const char **ptr = malloc((n + 1) * sizeof(*ptr));
	hsize_t dims = n;
	hid_t t = h5u_vlen_str(), sp = H5Screate_simple(1, &dims, NULL), d = -1;
	int rc = -1;

	if (text && ptr) {
		for (uint64_t i = 0; i < n; i++) {
			ptr[i] = text + i * width;
			snprintf(text + i * width, width, "%s%" PRIu64, prefix, i);
		}
		if (t >= 0 && sp >= 0)
			d = H5Dcreate2(grp, dset, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	}
	if (d >= 0 && (n == 0 || H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptr) >= 0) &&
	    h5u_attr_encoding(d, "string-array", "0.2.0") >= 0)
		rc = 0;
	h5u_put(d);
	h5u_put(sp);
	h5u_put(t);
	free(ptr);
	free(text);
	return rc;
}

/* Rows sorted by label: row r has label r * n_labels / n_rows. */
static int write_codes(hid_t grp, uint64_t n_rows, uint32_t n_labels)
{
	hsize_t dims = n_rows;
	hid_t ft = n_labels <= INT8_MAX ? H5T_STD_I8LE : n_labels <= INT16_MAX ? H5T_STD_I16LE
	                                                                       : H5T_STD_I32LE;
	int32_t *codes = malloc((n_rows + 1) * sizeof(int32_t));
	hid_t sp = H5Screate_simple(1, &dims, NULL), d = -1;
	int rc = -1;

	if (codes) {
		for (uint64_t r = 0; r < n_rows; r++)
			codes[r] = (int32_t)(r * n_labels / n_rows);
		if (sp >= 0)
			d = H5Dcreate2(grp, "codes", ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	}
	if (d >= 0 && (n_rows == 0 ||
	               H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, codes) >= 0) &&
	    h5u_attr_encoding(d, "array", "0.2.0") >= 0)
		rc = 0;
	h5u_put(d);
	h5u_put(sp);
	free(codes);
	return rc;
}

/* obs/cell_type: a pandas Categorical as anndata 0.8 stores it. */
static int write_categorical(hid_t frame, uint64_t n_rows, uint32_t n_labels)
{
	hid_t g = H5Gcreate2(frame, "cell_type", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	int rc = -1;

	if (g >= 0 && h5u_attr_encoding(g, "categorical", "0.2.0") >= 0 &&
	    h5u_attr_false(g, "ordered") >= 0 && write_codes(g, n_rows, n_labels) >= 0 &&
	    write_names(g, "categories", "type", n_labels) >= 0)
		rc = 0;
	h5u_put(g);
	return rc;
}

/* obs or var: a DataFrame with its index, and a cell_type column when n_labels > 0. */
static int write_frame(hid_t file, const char *name, const char *prefix, uint64_t n,
                       uint32_t n_labels)
{
	static const char *const columns[] = { "cell_type" };
	hid_t g = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	int rc = -1;

	if (g >= 0 && h5u_attr_encoding(g, "dataframe", "0.2.0") >= 0 &&
	    h5u_attr_str(g, "_index", "_index") >= 0 && attr_columns(g, columns, n_labels ? 1 : 0) >= 0 &&
	    write_names(g, "_index", prefix, n) >= 0 &&
	    (n_labels == 0 || write_categorical(g, n, n_labels) >= 0))
		rc = 0;
	h5u_put(g);
	return rc;
}

/* ---- the CSR fixture ---- */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* k distinct columns of n, sorted (Floyd's algorithm; mark is all-zero on entry and exit). */
static void pick_columns(fx_rng *r, uint64_t n, uint64_t k, uint8_t *mark, int64_t *out)
{
	for (uint64_t j = n - k, m = 0; j < n; j++, m++) {
		uint64_t t = rng_below(r, j + 1);
		if (mark[t])
			t = j;
		mark[t] = 1;
		out[m] = (int64_t)t;
	}
	qsort(out, k, sizeof(int64_t), cmp_i64);
	for (uint64_t m = 0; m < k; m++)
		mark[out[m]] = 0;
}

/*
 * The matrix itself, in an fx_ref: rows of varying length (uniform in
 * [0, 2 * mean]), every empty_every-th row empty, sorted unique columns.
 */
static int gen_csr(const fx_csr_spec *s, fx_ref *m)
{
	fx_rng r = { s->seed * 0x2545f4914f6cdd1dULL + 1 };
	uint8_t *mark;

	memset(m, 0, sizeof(*m));
	m->n_rows = s->n_rows;
	m->n_cols = s->n_cols;
	m->indptr = malloc((s->n_rows + 1) * sizeof(int64_t));
	if (!m->indptr)
		return -1;
	m->indptr[0] = 0;
	for (uint64_t i = 0; i < s->n_rows; i++) {
		uint64_t len = rng_below(&r, 2 * (uint64_t)s->mean_nnz + 1);
		if (len > s->n_cols)
			len = s->n_cols;
		if (s->empty_every && i % s->empty_every == 0)
			len = 0;
		m->indptr[i + 1] = m->indptr[i] + (int64_t)len;
	}
	m->nnz = (uint64_t)m->indptr[s->n_rows];
	m->indices = malloc((m->nnz + 1) * sizeof(int64_t));
	m->data = malloc((m->nnz + 1) * sizeof(double));
	mark = calloc(s->n_cols + 1, 1);
	if (!m->indices || !m->data || !mark) {
		free(mark);
		fx_ref_free(m);
		return -1;
	}
	for (uint64_t i = 0; i < s->n_rows; i++) {
		int64_t lo = m->indptr[i], hi = m->indptr[i + 1];
		pick_columns(&r, s->n_cols, (uint64_t)(hi - lo), mark, m->indices + lo);
		for (int64_t k = lo; k < hi; k++)
			m->data[k] = rng_value(&r, s->data_type);
	}
	free(mark);
	return 0;
}

/*
 * One of data/indices/indptr in the requested layout.  Chunk dimensions may
 * not exceed a fixed maximum, so fixed-size datasets get chunks clamped to
 * their length, and an empty chunked one is made resizable.
 */
static int write_1d(hid_t grp, const char *name, hid_t ftype, hid_t mtype, const void *buf,
                    uint64_t n, const fx_csr_spec *s)
{
	hsize_t dims = n, maxd = n, chunk = s->chunk;
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), sp = -1, d = -1;
	int rc = -1;

	if (dcpl < 0)
		return -1;
	if (chunk) {
		if (s->resizable || n == 0)
			maxd = H5S_UNLIMITED;
		else if (chunk > n)
			chunk = n;
		if (H5Pset_chunk(dcpl, 1, &chunk) < 0 ||
		    (s->shuffle && H5Pset_shuffle(dcpl) < 0) ||
		    (s->deflate && H5Pset_deflate(dcpl, (unsigned)s->deflate) < 0) ||
		    (s->fletcher32 && H5Pset_fletcher32(dcpl) < 0))
			goto out;
	} else if (H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0) {
		goto out;
	}
	sp = H5Screate_simple(1, &dims, &maxd);
	if (sp >= 0)
		d = H5Dcreate2(grp, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	/* an empty contiguous dataset stays unallocated: a valid file, no storage */
	if (d >= 0 && (n == 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0))
		rc = 0;
out:
	h5u_put(d);
	h5u_put(sp);
	h5u_put(dcpl);
	return rc;
}

/* The csr_matrix group: markers, shape, then the three arrays (HDF5 converts types). */
static int write_csr_group(hid_t parent, const char *leaf, const fx_csr_spec *s, const fx_ref *m)
{
	int64_t shape[2] = { (int64_t)m->n_rows, (int64_t)m->n_cols };
	int index_type = s->index_type == FX_I64 ? FX_I64 : FX_I32;
	int indptr_type = s->indptr_type == FX_I32 ? FX_I32 : FX_I64;
	hid_t g = H5Gcreate2(parent, leaf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	int rc = -1;

	if (g >= 0 && h5u_attr_encoding(g, "csr_matrix", "0.1.0") >= 0 &&
	    h5u_attr_array(g, "shape", H5T_STD_I64LE, H5T_NATIVE_INT64, shape, 2) >= 0 &&
	    write_1d(g, "data", file_type(s->data_type), H5T_NATIVE_DOUBLE, m->data, m->nnz, s) >= 0 &&
	    write_1d(g, "indices", file_type(index_type), H5T_NATIVE_INT64, m->indices, m->nnz, s) >= 0 &&
	    write_1d(g, "indptr", file_type(indptr_type), H5T_NATIVE_INT64, m->indptr,
	             m->n_rows + 1, s) >= 0)
		rc = 0;
	h5u_put(g);
	return rc;
}

int fx_write_csr(const char *path, const fx_csr_spec *s)
{
	const char *matrix = s->matrix ? s->matrix : "X", *leaf;
	hid_t file, parent = -1;
	fx_ref m;
	int rc = -1;

	if (gen_csr(s, &m) < 0) {
		fprintf(stderr, "fixtures: %s: out of memory\n", path);
		return -1;
	}
	file = create_file(path, s->libver_latest);
	if (file < 0)
		goto out_ref;
	parent = open_parent(file, matrix, &leaf);
	if (parent >= 0 && write_csr_group(parent, leaf, s, &m) >= 0 &&
	    write_frame(file, "obs", "cell", s->n_rows, s->n_labels) >= 0 &&
	    write_frame(file, "var", "gene", s->n_cols, 0) >= 0)
		rc = 0;
	h5u_put(parent);
	if (H5Fclose(file) < 0)
		rc = -1;
out_ref:
	fx_ref_free(&m);
	if (rc < 0)
		fprintf(stderr, "fixtures: cannot write %s (%s)\n", path, matrix);
	return rc;
}

/* ---- the dense fixture ---- */

/* A 2-D dataset; a zero chunk dimension means the whole extent. */
static int write_dense_dataset(hid_t parent, const char *leaf, const fx_dense_spec *s,
                               const double *v)
{
	hsize_t dims[2] = { s->n_rows, s->n_cols };
	hsize_t chunk[2] = { s->chunk_rows ? s->chunk_rows : s->n_rows,
	                     s->chunk_cols ? s->chunk_cols : s->n_cols };
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), sp = H5Screate_simple(2, dims, NULL), d = -1;
	int chunked = (s->chunk_rows || s->chunk_cols) && dims[0] && dims[1];
	int rc = -1;

	for (int i = 0; i < 2; i++)
		chunk[i] = chunk[i] > dims[i] ? dims[i] : chunk[i];
	if (dcpl >= 0 && sp >= 0 &&
	    (chunked ? H5Pset_chunk(dcpl, 2, chunk) : H5Pset_layout(dcpl, H5D_CONTIGUOUS)) >= 0)
		d = H5Dcreate2(parent, leaf, file_type(s->data_type), sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	if (d >= 0 && h5u_attr_encoding(d, "array", "0.2.0") >= 0 &&
	    (dims[0] * dims[1] == 0 ||
	     H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0))
		rc = 0;
	h5u_put(d);
	h5u_put(sp);
	h5u_put(dcpl);
	return rc;
}

int fx_write_dense(const char *path, const fx_dense_spec *s)
{
	const char *matrix = s->matrix ? s->matrix : "X", *leaf;
	uint64_t n = s->n_rows * s->n_cols;
	double *v = malloc((n + 1) * sizeof(double));
	fx_rng r = { s->seed * 0x2545f4914f6cdd1dULL + 2 };
	hid_t file, parent = -1;
	int rc = -1;

	if (!v) {
		fprintf(stderr, "fixtures: %s: out of memory\n", path);
		return -1;
	}
	for (uint64_t i = 0; i < n; i++)
		v[i] = rng_unit(&r) < s->density ? rng_value(&r, s->data_type) : 0.0;
	file = create_file(path, 0);
	if (file < 0)
		goto out_v;
	parent = open_parent(file, matrix, &leaf);
	if (parent >= 0 && write_dense_dataset(parent, leaf, s, v) >= 0 &&
	    write_frame(file, "obs", "cell", s->n_rows, 0) >= 0 &&
	    write_frame(file, "var", "gene", s->n_cols, 0) >= 0)
		rc = 0;
	h5u_put(parent);
	if (H5Fclose(file) < 0)
		rc = -1;
out_v:
	free(v);
	if (rc < 0)
		fprintf(stderr, "fixtures: cannot write %s (%s)\n", path, matrix);
	return rc;
}

/* ---- anndata itself ---- */

/* Exit status of write_anndata.py when `import anndata` fails. */
#define FX_NO_ANNDATA 3

/* Run one of the Python fixture writers; 1 when its module is missing. */
static int run_python(char *const argv[])
{
	pid_t pid;
	int status, err;

	err = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
	if (err) {
		fprintf(stderr, "fixtures: cannot run %s: %s\n", argv[0], strerror(err));
		return err == ENOENT ? 1 : -1;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == FX_NO_ANNDATA)
		return 1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "fixtures: %s failed writing %s\n", argv[1], argv[2]);
		return -1;
	}
	return 0;
}

int fx_write_anndata(const char *path, uint64_t n_rows, uint64_t n_cols, double density,
                     uint64_t seed, const char *compression)
{
	char rows[24], cols[24], dens[32], sd[24], comp[32];
	char *argv[] = { SCF_TEST_PYTHON, SCF_SOURCE_DIR "/tests/write_anndata.py", (char *)path,
	                 rows, cols, dens, sd, comp, NULL };

	snprintf(rows, sizeof(rows), "%" PRIu64, n_rows);
	snprintf(cols, sizeof(cols), "%" PRIu64, n_cols);
	snprintf(dens, sizeof(dens), "%.17g", density);
	snprintf(sd, sizeof(sd), "%" PRIu64, seed);
	snprintf(comp, sizeof(comp), "%s", compression ? compression : "none");
	return run_python(argv);
}

int fx_write_h5py_csr(const char *path, uint64_t n_rows, uint64_t n_cols, uint64_t seed,
                      const char *filters)
{
	char rows[24], cols[24], sd[24];
	char *argv[] = { SCF_TEST_PYTHON, SCF_SOURCE_DIR "/tests/write_h5py_csr.py", (char *)path,
	                 rows, cols, sd, (char *)filters, NULL };

	snprintf(rows, sizeof(rows), "%" PRIu64, n_rows);
	snprintf(cols, sizeof(cols), "%" PRIu64, n_cols);
	snprintf(sd, sizeof(sd), "%" PRIu64, seed);
	return run_python(argv);
}

/* ---- the reference reader ---- */

void fx_ref_free(fx_ref *r)
{
	if (!r)
		return;
	free(r->indptr);
	free(r->indices);
	free(r->data);
	memset(r, 0, sizeof(*r));
}

/* A whole 1-D dataset, converted by HDF5 to the memory type of `esize` bytes. */
static void *read_1d(hid_t grp, const char *name, hid_t mtype, size_t esize, uint64_t *n)
{
	hid_t d = H5Dopen2(grp, name, H5P_DEFAULT), sp = -1;
	hsize_t dims = 0;
	void *buf = NULL;

	if (d >= 0)
		sp = H5Dget_space(d);
	if (sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1 &&
	    H5Sget_simple_extent_dims(sp, &dims, NULL) == 1)
		buf = malloc((dims + 1) * esize);
	if (buf && dims && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
		free(buf);
		buf = NULL;
	}
	*n = dims;
	h5u_put(sp);
	h5u_put(d);
	return buf;
}

/* A csr_matrix group: shape from its attribute, arrays whole. */
static int ref_csr(hid_t g, fx_ref *out)
{
	int64_t shape[2];
	uint64_t n_ptr, n_idx, n_data;
	hid_t a = H5Aopen(g, "shape", H5P_DEFAULT), sp = a >= 0 ? H5Aget_space(a) : -1;
	int ok = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 2 &&
	         H5Aread(a, H5T_NATIVE_INT64, shape) >= 0 && shape[0] >= 0 && shape[1] >= 0;

	h5u_put(sp);
	h5u_put(a);
	if (!ok)
		return -1;
	out->n_rows = (uint64_t)shape[0];
	out->n_cols = (uint64_t)shape[1];
	out->indptr = read_1d(g, "indptr", H5T_NATIVE_INT64, sizeof(int64_t), &n_ptr);
	out->indices = read_1d(g, "indices", H5T_NATIVE_INT64, sizeof(int64_t), &n_idx);
	out->data = read_1d(g, "data", H5T_NATIVE_DOUBLE, sizeof(double), &n_data);
	if (!out->indptr || !out->indices || !out->data || n_ptr != out->n_rows + 1 ||
	    n_idx != n_data || out->indptr[0] != 0 || out->indptr[out->n_rows] < 0 ||
	    (uint64_t)out->indptr[out->n_rows] > n_data)
		return -1;
	out->nnz = (uint64_t)out->indptr[out->n_rows];
	return 0;
}

/* A dense 2-D dataset read whole, kept as CSR of its non-zeros. */
static int ref_dense(hid_t d, fx_ref *out)
{
	hsize_t dims[2];
	hid_t sp = H5Dget_space(d);
	int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 2 &&
	         H5Sget_simple_extent_dims(sp, dims, NULL) == 2;
	uint64_t n = ok ? dims[0] * dims[1] : 0, k = 0;
	double *v = ok ? malloc((n + 1) * sizeof(double)) : NULL;

	h5u_put(sp);
	if (!v || (n && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0))
		goto fail;
	out->n_rows = dims[0];
	out->n_cols = dims[1];
	for (uint64_t i = 0; i < n; i++)
		out->nnz += v[i] != 0.0;
	out->indptr = malloc((out->n_rows + 1) * sizeof(int64_t));
	out->indices = malloc((out->nnz + 1) * sizeof(int64_t));
	out->data = malloc((out->nnz + 1) * sizeof(double));
	if (!out->indptr || !out->indices || !out->data)
		goto fail;
	out->indptr[0] = 0;
	for (uint64_t r = 0; r < out->n_rows; r++) {
		for (uint64_t c = 0; c < out->n_cols; c++) {
			double x = v[r * out->n_cols + c];
			if (x != 0.0) {
				out->indices[k] = (int64_t)c;
				out->data[k++] = x;
			}
		}
		out->indptr[r + 1] = (int64_t)k;
	}
	free(v);
	return 0;
fail:
	free(v);
	return -1;
}

int fx_ref_load(const char *path, const char *matrix, fx_ref *out)
{
	hid_t file, obj = -1;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (file >= 0)
		obj = H5Oopen(file, matrix, H5P_DEFAULT);
	if (obj >= 0) {
		H5I_type_t t = H5Iget_type(obj);
		rc = t == H5I_GROUP ? ref_csr(obj, out) : t == H5I_DATASET ? ref_dense(obj, out) : -1;
	}
	h5u_put(obj);
	if (file >= 0)
		H5Fclose(file);
	if (rc < 0) {
		fx_ref_free(out);
		fprintf(stderr, "fixtures: cannot load %s from %s\n", matrix, path);
	}
	return rc;
}

/* ---- temporary directories ---- */

char *fx_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *dir;

	/* tmpfs (often /tmp) refuses O_DIRECT; /var/tmp is on a real disk */
	if (!base || !*base)
		base = "/var/tmp";
	dir = fx_path(base, "scfetch-test-XXXXXX");
	if (dir && !mkdtemp(dir)) {
		fprintf(stderr, "fixtures: mkdtemp %s: %s\n", dir, strerror(errno));
		free(dir);
		return NULL;
	}
	return dir;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0)
		fprintf(stderr, "fixtures: remove %s: %s\n", path, strerror(errno));
	return 0;
}

void fx_rmdir(char *dir)
{
	if (!dir)
		return;
	nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

char *fx_path(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);

	if (p) {
		memcpy(p, dir, a);
		p[a] = '/';
		memcpy(p + a + 1, name, b + 1);
	}
	return p;
}

/* The reference for obs columns: H5Dread of the codes, converted to int32. */
int32_t *fx_read_codes(const char *path, const char *dataset, uint64_t n)
{
	int32_t *out = malloc((n ? n : 1) * sizeof(int32_t));
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = -1;

	if (f >= 0)
		d = H5Dopen2(f, dataset, H5P_DEFAULT);
	if (!out || d < 0 || H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
		free(out);
		out = NULL;
	}
	if (d >= 0)
		H5Dclose(d);
	if (f >= 0)
		H5Fclose(f);
	return out;
}

/* ---- files as bytes ---- */

static void die(const char *what, const char *path)
{
	fprintf(stderr, "fixtures: %s %s: %s\n", what, path, strerror(errno));
	abort();
}

uint64_t fx_file_len(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		die("stat", path);
	return (uint64_t)st.st_size;
}

uint8_t *fx_slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	uint8_t *b;

	if (fd < 0)
		die("open", path);
	*len = (size_t)fx_file_len(path);
	b = malloc(*len + 1);
	if (!b || pread(fd, b, *len, 0) != (ssize_t)*len)
		die("read", path);
	close(fd);
	return b;
}

void fx_spill(const char *path, const void *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, b, len) != (ssize_t)len)
		die("write", path);
	close(fd);
}

char *fx_copy(const char *dir, const char *src, const char *name)
{
	size_t len;
	uint8_t *b = fx_slurp(src, &len);
	char *p = fx_path(dir, name);

	if (!p)
		die("out of memory for", name);
	fx_spill(p, b, len);
	free(b);
	return p;
}

void fx_poke(const char *path, uint64_t off, const void *b, size_t n)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || pwrite(fd, b, n, (off_t)off) != (ssize_t)n)
		die("pwrite", path);
	close(fd);
}

void fx_poke_u64(const char *path, uint64_t off, uint64_t v)
{
	fx_poke(path, off, &v, 8);
}

void fx_poke_u32(const char *path, uint64_t off, uint32_t v)
{
	fx_poke(path, off, &v, 4);
}

/* ---- HDF5 edits of a copy ---- */

hid_t fx_h5_open_rw(const char *path)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);

	if (f < 0)
		die("H5Fopen", path);
	return f;
}

void fx_h5_delete(const char *path, const char *name)
{
	hid_t f = fx_h5_open_rw(path);

	if (H5Ldelete(f, name, H5P_DEFAULT) < 0)
		die("H5Ldelete", name);
	H5Fclose(f);
}

void fx_h5_replace(const char *path, const char *name, hid_t ftype, hid_t mtype,
                   const void *buf, int rank, const hsize_t *dims)
{
	hid_t f = fx_h5_open_rw(path), sp, d;

	if (H5Lexists(f, name, H5P_DEFAULT) > 0 && H5Ldelete(f, name, H5P_DEFAULT) < 0)
		die("H5Ldelete", name);
	sp = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
	d = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	if (d < 0 || (buf && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0))
		die("H5Dcreate/H5Dwrite", name);
	H5Dclose(d);
	H5Sclose(sp);
	H5Fclose(f);
}

void fx_h5_attr(const char *path, const char *obj, const char *name, hid_t ftype,
                hid_t mtype, const void *buf, hssize_t n)
{
	hid_t f = fx_h5_open_rw(path), o = H5Oopen(f, obj, H5P_DEFAULT), sp, a;
	hsize_t dims = (hsize_t)n;

	if (o < 0)
		die("H5Oopen", obj);
	if (H5Aexists(o, name) > 0 && H5Adelete(o, name) < 0)
		die("H5Adelete", name);
	sp = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, NULL);
	a = H5Acreate2(o, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
	if (a < 0 || (buf && H5Awrite(a, mtype, buf) < 0))
		die("H5Acreate/H5Awrite", name);
	H5Aclose(a);
	H5Sclose(sp);
	H5Oclose(o);
	H5Fclose(f);
}

/* ---- where chunks and their index entries lie ---- */

fx_chunk_at fx_chunk_info(const char *path, const char *name, uint64_t k)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, name, H5P_DEFAULT);
	hid_t sp = H5Dget_space(d);
	hsize_t n = 0, off[2];
	haddr_t addr;
	hsize_t size;
	unsigned mask;
	fx_chunk_at c;

	if (H5Dget_num_chunks(d, sp, &n) < 0 || n == 0)
		die("no chunks in", name);
	if (k >= n)
		k = n - 1;
	if (H5Dget_chunk_info(d, sp, k, off, &mask, &addr, &size) < 0)
		die("H5Dget_chunk_info", name);
	c = (fx_chunk_at){ addr, size, n };
	H5Sclose(sp);
	H5Dclose(d);
	H5Fclose(f);
	return c;
}

uint64_t fx_chunk_addr(const char *path, const char *name, uint64_t k)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	hid_t d = f >= 0 ? H5Dopen2(f, name, H5P_DEFAULT) : -1;
	hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
	hsize_t off[2], size;
	haddr_t addr = HADDR_UNDEF;
	unsigned mask;

	if (sp < 0 || H5Dget_chunk_info(d, sp, k, off, &mask, &addr, &size) < 0)
		addr = HADDR_UNDEF;
	if (sp >= 0)
		H5Sclose(sp);
	if (d >= 0)
		H5Dclose(d);
	if (f >= 0)
		H5Fclose(f);
	return addr == HADDR_UNDEF ? UINT64_MAX : (uint64_t)addr;
}

/*
 * Candidates: the 8 bytes equal the address and follow a version-1 B-tree
 * key of the chunk's size, or lie a few KiB after an array index block's
 * signature.  Files keep stale copies of rewritten index blocks, so the
 * live entry is the one whose change HDF5 sees.
 */
uint64_t fx_index_entry(const char *dir, const char *path, const char *name, uint64_t k,
                        unsigned rank, fx_chunk_at *out)
{
	static const char *const sigs[] = { "FADB", "EAIB", "EASB", "EADB" };
	fx_chunk_at c = fx_chunk_info(path, name, k);
	size_t len, hits = 0, sig = SIZE_MAX, key = 8 + 8 * ((size_t)rank + 1);
	uint8_t *b = fx_slurp(path, &len);
	char *probe = fx_path(dir, "probe.h5ad");
	uint64_t at = 0;

	k = k < c.n ? k : c.n - 1;
	for (size_t i = 0; i + 8 <= len; i++) {
		for (int s = 0; s < 4; s++)
			if (i + 4 <= len && memcmp(b + i, sigs[s], 4) == 0)
				sig = i;
		if (fx_get_u64(b + i) != c.addr)
			continue;
		int in_tree = i >= key && fx_get_u32(b + i - key) == c.size;
		int in_array = sig != SIZE_MAX && i - sig < 8192;
		if (!in_tree && !in_array)
			continue;
		fx_spill(probe, b, len);
		fx_poke_u64(probe, i, c.addr + 1);
		if (fx_chunk_addr(probe, name, k) != c.addr) {
			at = i;
			hits++;
		}
	}
	unlink(probe);
	free(probe);
	free(b);
	if (hits != 1) {
		fprintf(stderr, "fixtures: %s: the address of %s chunk %lu found in %zu index "
		        "entries\n", path, name, (unsigned long)k, hits);
		abort();
	}
	if (out)
		*out = c;
	return at;
}

