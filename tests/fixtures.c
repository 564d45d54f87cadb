/*
 * tests/fixtures — test inputs written by the real writers (the HDF5 C API
 * here, anndata through tests/write_anndata.py) and the reference reader
 * (plain H5Dread) against which every delivered cell is compared.
 * Thread: the test's main thread only; HDF5 is not thread-safe in Debian's build.
 */
#include "tests/fixtures.h"

#include <errno.h>
#include <ftw.h>
#include <hdf5.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Any HDF5 id, closed whatever its kind; ignores ids that failed. */
static void put(hid_t id)
{
	if (id >= 0)
		H5Idec_ref(id);
}

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

/* h5py stores Python str as variable-length UTF-8; anndata expects that. */
static hid_t vlen_str(void)
{
	hid_t t = H5Tcopy(H5T_C_S1);

	if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
		put(t);
		return -1;
	}
	return t;
}

/* anndata's encoding markers are scalar string attributes. */
static int attr_str(hid_t obj, const char *name, const char *value)
{
	hid_t t = vlen_str(), sp = H5Screate(H5S_SCALAR), a = -1;
	int rc = -1;

	if (t >= 0 && sp >= 0)
		a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
	if (a >= 0 && H5Awrite(a, t, &value) >= 0)
		rc = 0;
	put(a);
	put(sp);
	put(t);
	return rc;
}

static int attr_encoding(hid_t obj, const char *type, const char *version)
{
	return attr_str(obj, "encoding-type", type) < 0 ||
	       attr_str(obj, "encoding-version", version) < 0 ? -1 : 0;
}

/* A 1-D attribute; n == 0 with strings mirrors anndata's empty float64 array. */
static int attr_array(hid_t obj, const char *name, hid_t ftype, hid_t mtype,
                      const void *buf, hsize_t n)
{
	hid_t sp = H5Screate_simple(1, &n, NULL), a = -1;
	int rc = -1;

	if (sp >= 0)
		a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
	if (a >= 0 && (n == 0 || H5Awrite(a, mtype, buf) >= 0))
		rc = 0;
	put(a);
	put(sp);
	return rc;
}

/* `column-order`: the categorical column names, or an empty array. */
static int attr_columns(hid_t obj, const char *const *names, hsize_t n)
{
	hid_t t;
	int rc;

	if (n == 0)
		return attr_array(obj, "column-order", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, NULL, 0);
	t = vlen_str();
	rc = t < 0 ? -1 : attr_array(obj, "column-order", t, t, names, n);
	put(t);
	return rc;
}

/* h5py writes numpy bools as an int8 enum {FALSE, TRUE}; `ordered` is one. */
static int attr_false(hid_t obj, const char *name)
{
	signed char no = 0, yes = 1;
	hid_t t = H5Tenum_create(H5T_NATIVE_SCHAR), sp = H5Screate(H5S_SCALAR), a = -1;
	int rc = -1;

	if (t >= 0 && sp >= 0 && H5Tenum_insert(t, "FALSE", &no) >= 0 &&
	    H5Tenum_insert(t, "TRUE", &yes) >= 0)
		a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
	if (a >= 0 && H5Awrite(a, t, &no) >= 0)
		rc = 0;
	put(a);
	put(sp);
	put(t);
	return rc;
}

/* A group anndata reads as a dict (layers/, and any other intermediate). */
static hid_t dict_group(hid_t parent, const char *name)
{
	hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);

	if (g >= 0 && attr_encoding(g, "dict", "0.1.0") < 0) {
		put(g);
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
			put(g);
			return -1;
		}
		memcpy(name, p, n);
		name[n] = '\0';
		next = H5Lexists(g, name, H5P_DEFAULT) > 0 ? H5Gopen2(g, name, H5P_DEFAULT)
		                                          : dict_group(g, name);
		put(g);
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
	put(fapl);
	if (f >= 0 && attr_encoding(f, "anndata", "0.1.0") < 0) {
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
	hid_t t = vlen_str(), sp = H5Screate_simple(1, &dims, NULL), d = -1;
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
	    attr_encoding(d, "string-array", "0.2.0") >= 0)
		rc = 0;
	put(d);
	put(sp);
	put(t);
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
	    attr_encoding(d, "array", "0.2.0") >= 0)
		rc = 0;
	put(d);
	put(sp);
	free(codes);
	return rc;
}

/* obs/cell_type: a pandas Categorical as anndata 0.8 stores it. */
static int write_categorical(hid_t frame, uint64_t n_rows, uint32_t n_labels)
{
	hid_t g = H5Gcreate2(frame, "cell_type", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	int rc = -1;

	if (g >= 0 && attr_encoding(g, "categorical", "0.2.0") >= 0 &&
	    attr_false(g, "ordered") >= 0 && write_codes(g, n_rows, n_labels) >= 0 &&
	    write_names(g, "categories", "type", n_labels) >= 0)
		rc = 0;
	put(g);
	return rc;
}

/* obs or var: a DataFrame with its index, and a cell_type column when n_labels > 0. */
static int write_frame(hid_t file, const char *name, const char *prefix, uint64_t n,
                       uint32_t n_labels)
{
	static const char *const columns[] = { "cell_type" };
	hid_t g = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	int rc = -1;

	if (g >= 0 && attr_encoding(g, "dataframe", "0.2.0") >= 0 &&
	    attr_str(g, "_index", "_index") >= 0 && attr_columns(g, columns, n_labels ? 1 : 0) >= 0 &&
	    write_names(g, "_index", prefix, n) >= 0 &&
	    (n_labels == 0 || write_categorical(g, n, n_labels) >= 0))
		rc = 0;
	put(g);
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
	put(d);
	put(sp);
	put(dcpl);
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

	if (g >= 0 && attr_encoding(g, "csr_matrix", "0.1.0") >= 0 &&
	    attr_array(g, "shape", H5T_STD_I64LE, H5T_NATIVE_INT64, shape, 2) >= 0 &&
	    write_1d(g, "data", file_type(s->data_type), H5T_NATIVE_DOUBLE, m->data, m->nnz, s) >= 0 &&
	    write_1d(g, "indices", file_type(index_type), H5T_NATIVE_INT64, m->indices, m->nnz, s) >= 0 &&
	    write_1d(g, "indptr", file_type(indptr_type), H5T_NATIVE_INT64, m->indptr,
	             m->n_rows + 1, s) >= 0)
		rc = 0;
	put(g);
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
	put(parent);
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
	if (d >= 0 && attr_encoding(d, "array", "0.2.0") >= 0 &&
	    (dims[0] * dims[1] == 0 ||
	     H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0))
		rc = 0;
	put(d);
	put(sp);
	put(dcpl);
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
	put(parent);
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
	put(sp);
	put(d);
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

	put(sp);
	put(a);
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

	put(sp);
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
	put(obj);
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
