/*
 * tests/test_hostile — hostile and unusual files and options (issue 11),
 * through the public API.  Each case writes its file here (HDF5 C API, or
 * anndata/h5py through Debian's python3 where that is the writer whose
 * layout matters), opens it with scf_open/scf_open_collection and streams
 * it.  The only right outcomes: a negative code whose sentence names the
 * file and the dataset, attribute or column (and gives the real reason), or
 * every delivered value equal to an independent reader's (H5Dread of the
 * same file; for duplicates, what scipy/anndata compute).  Sizes the file
 * declares but does not back, and option values near 2^64, must cost
 * neither minutes nor gigabytes.  Run under ASan (-DSCF_ASAN=ON) this also
 * shows no memory error.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "scfetch.h"
#include "tests/fixtures.h"
#include "tools/h5util.h"

#ifndef SCF_TEST_PYTHON
#define SCF_TEST_PYTHON "/usr/bin/python3"
#endif

extern char **environ;

static char *dir;

static void setup(void)
{
	dir = fx_tmpdir();
	cr_assert_not_null(dir);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* hostile files make HDF5 talk */
}

static void teardown(void) { fx_rmdir(dir); }

#ifdef SCF_SANITIZE_ADDRESS
/* As in test_badinput: HDF5 1.10.8's own leak on some broken files is not ours. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:H5C_protect\n"; }
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }
#endif

TestSuite(hostile, .init = setup, .fini = teardown, .timeout = 120);

/*
 * Seconds an open of a crafted file may take: it must never hang or go
 * quadratic.  ASan with full malloc stacks runs these opens 3-4x slower
 * and shared CI machines add noise, so the bound is wider there.
 */
#ifdef SCF_SANITIZE_ADDRESS
#define OPEN_LIMIT 10.0
#else
#define OPEN_LIMIT 3.0
#endif

/* ---- small tools ---- */

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/*
 * Heap use of the code under test.  Under ASan every allocation passes
 * through the sanitizer's hooks: live bytes and their peak are exact, and a
 * huge calloc counts even when its pages are never touched.  Elsewhere the
 * peak resident set (reset through clear_refs where the kernel allows).
 */
#ifdef SCF_SANITIZE_ADDRESS
/* from <sanitizer/allocator_interface.h>, which not every compiler installs */
int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t),
                                              void (*f)(const volatile void *));
size_t __sanitizer_get_allocated_size(const volatile void *p);
int __sanitizer_get_ownership(const volatile void *p);
static _Atomic int64_t heap_live, heap_peak;
static _Atomic int heap_hooked;

static void on_malloc(const volatile void *p, size_t n)
{
	(void)p;
	int64_t v = atomic_fetch_add(&heap_live, (int64_t)n) + (int64_t)n;
	int64_t pk = atomic_load(&heap_peak);
	while (v > pk && !atomic_compare_exchange_weak(&heap_peak, &pk, v))
		;
}

static void on_free(const volatile void *p)
{
	if (p && __sanitizer_get_ownership(p))
		atomic_fetch_sub(&heap_live, (int64_t)__sanitizer_get_allocated_size(p));
}
#endif

static long rss_kb(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, strlen(field)) == 0)
			v = strtol(line + strlen(field), NULL, 10);
	fclose(f);
	return v;
}

typedef struct meter {
	double t0;
	int64_t heap0;
	long rss0;
} meter;

static void meter_start(meter *m)
{
#ifdef SCF_SANITIZE_ADDRESS
	if (!atomic_exchange(&heap_hooked, 1))
		__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
	m->heap0 = atomic_load(&heap_live);
	atomic_store(&heap_peak, m->heap0);
#else
	m->heap0 = 0;
#endif
	FILE *f = fopen("/proc/self/clear_refs", "w"); /* "5": reset the peak RSS */
	if (f) {
		fputs("5", f);
		fclose(f);
	}
	m->rss0 = rss_kb("VmRSS:");
	m->t0 = now_s();
}

/* Seconds since meter_start, and the growth in MB of the heap's (ASan) or RSS's peak. */
static double meter_stop(const meter *m, double *mb, const char *label)
{
	double secs = now_s() - m->t0;
#ifdef SCF_SANITIZE_ADDRESS
	*mb = (double)(atomic_load(&heap_peak) - m->heap0) / 1048576.0;
	const char *what = "heap peak";
#else
	long hwm = rss_kb("VmHWM:");
	*mb = hwm < 0 || m->rss0 < 0 ? 0 : (double)(hwm - m->rss0) / 1024.0;
	const char *what = "peak RSS";
#endif
	printf("hostile: %s: %.3f s, %s growth %.1f MB\n", label, secs, what, *mb);
	fflush(stdout);
	return secs;
}

/* Run a Python writer in the test's directory; 1 when its modules are missing (exit 3). */
static int run_python(const char *script, const char *const *args, int n_args)
{
	char *sp = fx_path(dir, "writer.py");
	FILE *f = fopen(sp, "w");
	char *argv[16];
	pid_t pid;
	int status, err;

	cr_assert_not_null(f);
	fputs(script, f);
	fclose(f);
	argv[0] = (char *)SCF_TEST_PYTHON;
	argv[1] = sp;
	for (int i = 0; i < n_args && i < 12; i++)
		argv[2 + i] = (char *)args[i];
	argv[2 + (n_args < 12 ? n_args : 12)] = NULL;
	err = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
	if (err) {
		free(sp);
		return 1;
	}
	while (waitpid(pid, &status, 0) < 0)
		cr_assert_eq(errno, EINTR);
	free(sp);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
		return 1;
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the Python writer failed");
	return 0;
}

/* ---- HDF5 edits of a copy ---- */

/* An attribute holding n copies of `s`: fixed-length (width > 0) or variable-length strings. */
static void h5_attr_strings(const char *path, const char *obj, const char *name,
                            const char *s, hssize_t n, size_t width)
{
	hid_t t = H5Tcopy(H5T_C_S1);
	size_t count = n < 0 ? 1 : (size_t)n;

	H5Tset_cset(t, H5T_CSET_UTF8);
	if (width) {
		char *buf = calloc(count, width);
		for (size_t i = 0; i < count; i++)
			strncpy(buf + i * width, s, width);
		H5Tset_size(t, width);
		fx_h5_attr(path, obj, name, t, t, buf, n);
		free(buf);
	} else {
		const char **ptr = malloc(count * sizeof(*ptr));
		for (size_t i = 0; i < count; i++)
			ptr[i] = s;
		H5Tset_size(t, H5T_VARIABLE);
		fx_h5_attr(path, obj, name, t, t, ptr, n);
		free(ptr);
	}
	H5Tclose(t);
}

/* ---- outcomes ---- */

enum outcome { OPEN_FAILED, NEXT_FAILED, READ_ALL };

/*
 * A refusal: negative, with a sentence naming the file (when `path`) and
 * `dset` as "FILE: DSET: ..." (when given) and saying `what` (when given).
 */
static void check_refusal(const char *label, const char *path, int rc, const char *msg,
                          const char *dset, const char *what)
{
	char pat[300];

	printf("hostile: %s\n    -> %d %s\n", label, rc, msg ? msg : "(null)");
	fflush(stdout);
	cr_assert_lt(rc, 0, "%s: rc %d", label, rc);
	cr_assert(msg && msg[0], "%s: rc %d (%s) with an empty message", label, rc,
	          scf_strerror(rc));
	if (path)
		cr_assert_not_null(strstr(msg, path), "%s: the message does not name the file: %s",
		                   label, msg);
	if (dset) {
		snprintf(pat, sizeof(pat), "%s:", dset);
		cr_assert_not_null(strstr(msg, pat), "%s: the message does not name %s: %s", label,
		                   dset, msg);
	}
	if (what)
		cr_assert_not_null(strstr(msg, what), "%s: the message does not say \"%s\": %s",
		                   label, what, msg);
}

/* The defaults of these tests: small batches, two threads, O_DIRECT off. */
static scf_options opts(uint32_t strategy, uint32_t output)
{
	return (scf_options){ .size = sizeof(scf_options), .strategy = strategy, .output = output,
	                      .batch_size = 16, .block_size = 4, .fetch_factor = 4,
	                      .fetches_in_flight = 2, .threads = 2, .seed = 7,
	                      .flags = SCF_F_BUFFERED | SCF_F_NO_PIN };
}

/*
 * One delivered row against the reference, as a dense row of doubles:
 * dense output cell by cell; CSR output entry by entry against the
 * reference's stored entries (csr_ref), which may hold duplicate ids.
 */
static void check_row(const char *label, const scf_batch *b, uint64_t j, const double *dense,
                      const fx_ref *csr_ref, uint64_t n_cols)
{
	uint64_t r = b->row_ids[j];

	if (b->output == SCF_OUTPUT_DENSE) {
		cr_assert_eq(b->n_cols, n_cols, "%s: %lu columns, expected %lu", label,
		             (unsigned long)b->n_cols, (unsigned long)n_cols);
		for (uint64_t c = 0; c < n_cols; c++) {
			float v = b->data[j * n_cols + c], want = (float)dense[r * n_cols + c];
			cr_assert(v == want || (isnan(v) && isnan(want)),
			          "%s: WRONG VALUE: row %lu column %lu is %g, the reference has %g",
			          label, (unsigned long)r, (unsigned long)c, v, want);
		}
		return;
	}
	cr_assert_not_null(csr_ref, "%s: CSR output without a CSR reference", label);
	int64_t lo = csr_ref->indptr[r], hi = csr_ref->indptr[r + 1];
	int64_t n = b->indptr[j + 1] - b->indptr[j];
	cr_assert_eq(n, hi - lo, "%s: WRONG ROW %lu: %ld entries, the file has %ld", label,
	             (unsigned long)r, (long)n, (long)(hi - lo));
	for (int64_t k = 0; k < n; k++) {
		int32_t c = b->indices[b->indptr[j] + k];
		float v = b->data[b->indptr[j] + k];
		cr_assert_eq(c, csr_ref->indices[lo + k], "%s: WRONG ROW %lu: entry %ld in column "
		             "%d, the file has %ld", label, (unsigned long)r, (long)k, c,
		             (long)csr_ref->indices[lo + k]);
		cr_assert_eq(v, (float)csr_ref->data[lo + k], "%s: WRONG ROW %lu: entry %ld is %g, "
		             "the file has %g", label, (unsigned long)r, (long)k, v,
		             csr_ref->data[lo + k]);
	}
}

/*
 * Stream one epoch of an open loader, every row checked; close it.
 * Returns READ_ALL, or NEXT_FAILED after checking the sentence.
 */
static int stream_epoch(const char *label, scf_loader *l, const char *path, uint64_t n_rows,
                        uint64_t n_cols, const double *dense, const fx_ref *csr_ref,
                        const char *dset)
{
	uint8_t *seen = calloc(n_rows + 1, 1);
	uint64_t rows = 0, batches = 0;
	scf_batch *b;
	int rc, out = READ_ALL;

	for (;;) {
		rc = scf_next(l, &b);
		if (rc == SCF_END_OF_EPOCH)
			break;
		if (rc < 0) {
			check_refusal(label, path, rc, scf_errmsg(l), dset, NULL);
			out = NEXT_FAILED;
			break;
		}
		cr_assert_leq(++batches, n_rows + 1, "%s: more batches than rows", label);
		for (uint64_t j = 0; j < b->n_rows; j++) {
			uint64_t r = b->row_ids[j];
			cr_assert_lt(r, n_rows, "%s: row id %lu out of range", label, (unsigned long)r);
			cr_assert_eq(seen[r], 0, "%s: row %lu twice", label, (unsigned long)r);
			seen[r] = 1;
			check_row(label, b, j, dense, csr_ref, n_cols);
		}
		rows += b->n_rows;
		cr_assert_eq(scf_release(l, b), 0);
	}
	if (out == READ_ALL)
		cr_assert_eq(rows, n_rows, "%s: an epoch of %lu rows, expected %lu", label,
		             (unsigned long)rows, (unsigned long)n_rows);
	free(seen);
	scf_close(l);
	return out;
}

/* Open `path` with `o` and stream it: refused with a sentence naming dset, or right. */
static int open_or_right(const char *label, const char *path, const scf_options *o,
                         const fx_ref *ref, const char *dset)
{
	char err[2048] = "";
	scf_loader *l = NULL;
	int rc = scf_open(&l, path, o, err, sizeof(err));

	if (rc != 0) {
		cr_assert_null(l, "%s: a failed open must leave *out NULL", label);
		check_refusal(label, path, rc, err, dset, NULL);
		return OPEN_FAILED;
	}
	printf("hostile: %s\n    -> opened\n", label);
	return stream_epoch(label, l, path, ref->n_rows, ref->n_cols, NULL, ref, dset);
}

/* ---- fixtures ---- */

static char *write_csr(const char *name, fx_csr_spec s)
{
	char *p = fx_path(dir, name);
	cr_assert_eq(fx_write_csr(p, &s), 0, "fixture %s", name);
	return p;
}

static fx_csr_spec base_spec(uint64_t chunk, uint64_t seed)
{
	return (fx_csr_spec){ .n_rows = 600, .n_cols = 300, .mean_nnz = 20, .empty_every = 9,
	                      .index_type = FX_I32, .indptr_type = FX_I64, .chunk = chunk,
	                      .resizable = chunk != 0, .n_labels = 5, .seed = seed };
}

static void load_ref(const char *path, const char *matrix, fx_ref *ref)
{
	cr_assert_eq(fx_ref_load(path, matrix, ref), 0, "reference %s", path);
}

/*
 * A CSR X of exactly these arrays (duplicates, more entries than columns,
 * whatever): a valid fixture of n_rows x n_cols, its X arrays replaced.
 */
static char *write_csr_arrays(const char *name, uint64_t n_rows, uint64_t n_cols,
                              uint64_t shape_cols, const int64_t *indptr,
                              const int64_t *indices, const double *data)
{
	fx_csr_spec s = { .n_rows = n_rows, .n_cols = n_cols ? n_cols : 1, .mean_nnz = 2,
	                  .index_type = FX_I32, .indptr_type = FX_I64, .seed = 3 };
	char *p = write_csr(name, s);
	hsize_t np = n_rows + 1, nn = (hsize_t)indptr[n_rows];
	const int64_t shape[2] = { (int64_t)n_rows, (int64_t)shape_cols };

	fx_h5_replace(p, "X/indptr", H5T_STD_I64LE, H5T_NATIVE_INT64, indptr, 1, &np);
	fx_h5_replace(p, "X/indices", H5T_STD_I32LE, H5T_NATIVE_INT64, nn ? indices : NULL, 1, &nn);
	fx_h5_replace(p, "X/data", H5T_IEEE_F32LE, H5T_NATIVE_DOUBLE, nn ? data : NULL, 1, &nn);
	fx_h5_attr(p, "X", "shape", H5T_STD_I64LE, H5T_NATIVE_INT64, shape, 2);
	return p;
}

/* ---- where things lie in a file ---- */

static uint64_t dset_offset(const char *path, const char *name)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, name, H5P_DEFAULT);
	haddr_t a = H5Dget_offset(d);

	cr_assert_neq(a, HADDR_UNDEF, "%s is not contiguous and written", name);
	H5Dclose(d);
	H5Fclose(f);
	return (uint64_t)a;
}

/* ======================================================================
 * 1. encoding-type of X, and var's _index, as array attributes
 * ====================================================================== */

Test(hostile, array_attributes_encoding_type_and_var_index)
{
	char *base = write_csr("base.h5ad", base_spec(64, 1));
	fx_ref ref;
	load_ref(base, "X", &ref);
	scf_options o = opts(SCF_STRATEGY_STREAMING, SCF_OUTPUT_CSR);
	const struct { const char *obj, *attr, *value, *dset; hssize_t n; size_t width; } v[] = {
		{ "X", "encoding-type", "csr_matrix", "X", 1000, 16 },
		{ "X", "encoding-type", "csr_matrix", "X", 1000, 0 },
		{ "X", "encoding-type", "csr_matrix", "X", 1, 0 },
		{ "X", "encoding-type", "a string far longer than any encoding name a reader "
		  "would keep in a small stack buffer, longer than sixty-four bytes", "X", 3, 200 },
		{ "X", "encoding-type", "csr_matrix", "X", 0, 16 },
		{ "var", "_index", "_index", "var", 1000, 16 },
		{ "var", "_index", "_index", "var", 1000, 0 },
		{ "var", "_index", "gene names beyond 256 bytes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "var", -1, 0 },
	};
	char label[300];

	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		char *p = fx_copy(dir, base, "attr.h5ad");
		h5_attr_strings(p, v[k].obj, v[k].attr, v[k].value, v[k].n, v[k].width);
		if (v[k].n < 0)
			snprintf(label, sizeof(label), "%s's %s as a scalar string of %zu bytes",
			         v[k].obj, v[k].attr, strlen(v[k].value));
		else
			snprintf(label, sizeof(label), "%s's %s as an array of %lld %s strings",
			         v[k].obj, v[k].attr, (long long)v[k].n,
			         v[k].width ? "fixed-length" : "variable-length");
		/*
		 * Refused, or read right; an encoding that is no csr_matrix in any
		 * reading (an empty array, other strings) must be refused.
		 */
		int out = open_or_right(label, p, &o, &ref, v[k].dset);
		if (strcmp(v[k].obj, "X") == 0 && (v[k].n == 0 || v[k].width == 200))
			cr_assert_eq(out, OPEN_FAILED, "%s: opened as if X were csr_matrix", label);

		/* the same file beside a good one, in a collection, both orders */
		for (int order = 0; order < 2; order++) {
			const char *paths[2] = { order ? p : base, order ? base : p };
			char err[2048] = "", l2[400];
			scf_loader *l = NULL;
			int rc = scf_open_collection(&l, paths, 2, &o, err, sizeof(err));
			snprintf(l2, sizeof(l2), "%s, collection (%s first)", label,
			         order ? "it" : "a good file");
			if (rc != 0) {
				check_refusal(l2, p, rc, err, v[k].dset, NULL);
				continue;
			}
			printf("hostile: %s\n    -> opened\n", l2);
			scf_info info = { .size = sizeof(scf_info) };
			scf_info_get(l, &info);
			cr_assert_eq(info.n_rows, 2 * ref.n_rows);
			uint64_t rows = 0;
			scf_batch *b;
			while ((rc = scf_next(l, &b)) == 0) {
				for (uint64_t j = 0; j < b->n_rows; j++) {
					uint32_t file;
					uint64_t fr;
					cr_assert_eq(scf_row_locate(l, b->row_ids[j], &file, &fr), 0);
					/* both files hold the same matrix */
					int64_t lo = ref.indptr[fr], n = b->indptr[j + 1] - b->indptr[j];
					cr_assert_eq(n, ref.indptr[fr + 1] - lo, "%s: WRONG ROW", l2);
					for (int64_t e = 0; e < n; e++)
						cr_assert_eq(b->data[b->indptr[j] + e], (float)ref.data[lo + e],
						             "%s: WRONG VALUE", l2);
				}
				rows += b->n_rows;
				scf_release(l, b);
			}
			if (rc < 0)
				check_refusal(l2, NULL, rc, scf_errmsg(l), NULL, NULL);
			else
				cr_assert_eq(rows, 2 * ref.n_rows, "%s: %lu rows", l2, (unsigned long)rows);
			scf_close(l);
		}
		free(p);
	}
	fx_ref_free(&ref);
	free(base);
}

/* ======================================================================
 * 2 and 9. more stored entries than columns; duplicate ids; dense output
 * ====================================================================== */

/* Dense rows from CSR arrays, duplicates summed (scipy's toarray, anndata's to_dense). */
static double *dense_sum(uint64_t n_rows, uint64_t n_cols, const int64_t *indptr,
                         const int64_t *indices, const double *data)
{
	double *d = calloc(n_rows * n_cols + 1, sizeof(double));
	for (uint64_t r = 0; r < n_rows; r++)
		for (int64_t k = indptr[r]; k < indptr[r + 1]; k++)
			d[r * n_cols + (uint64_t)indices[k]] += (double)(float)data[k];
	return d;
}

/*
 * anndata's reading of X as a dense array (float64, row-major) into `out`:
 * 0 done, 1 when anndata is not installed.
 */
static const char *const py_dense =
	"import sys\n"
	"try:\n"
	"    import anndata, numpy as np\n"
	"except ImportError:\n"
	"    sys.exit(3)\n"
	"a = anndata.read_h5ad(sys.argv[1])\n"
	"x = a.X.toarray() if hasattr(a.X, 'toarray') else np.asarray(a.X)\n"
	"np.ascontiguousarray(x, dtype=np.float64).tofile(sys.argv[2])\n";

static int anndata_dense(const char *path, double *out, uint64_t n)
{
	char *raw = fx_path(dir, "dense.f64");
	const char *args[] = { path, raw };
	int rc = run_python(py_dense, args, 2);

	if (rc == 0) {
		size_t len;
		uint8_t *b = fx_slurp(raw, &len);
		cr_assert_eq(len, n * sizeof(double), "anndata's array has %zu bytes", len);
		memcpy(out, b, len);
		free(b);
	}
	free(raw);
	return rc;
}

/* Both outputs of one custom CSR file: CSR as stored, dense as scipy sums it. */
static void csr_both_outputs(const char *label, const char *p, uint64_t n_rows,
                             uint64_t n_cols, const int64_t *indptr, const int64_t *indices,
                             const double *data, int check_anndata)
{
	fx_ref stored = { .n_rows = n_rows, .n_cols = n_cols, .nnz = (uint64_t)indptr[n_rows],
	                  .indptr = (int64_t *)indptr, .indices = (int64_t *)indices,
	                  .data = (double *)data };
	double *dense = dense_sum(n_rows, n_cols, indptr, indices, data);
	char l2[300];

	if (check_anndata) {
		double *ad = malloc((n_rows * n_cols + 1) * sizeof(double));
		int rc = anndata_dense(p, ad, n_rows * n_cols);
		if (rc == 1)
			printf("hostile: %s: anndata not installed, its reading not compared\n", label);
		for (uint64_t i = 0; rc == 0 && i < n_rows * n_cols; i++)
			cr_assert_eq(ad[i], dense[i], "%s: anndata reads %g at %lu, the test sums %g",
			             label, ad[i], (unsigned long)i, dense[i]);
		free(ad);
	}
	for (int strat = 0; strat < 2; strat++) {
		uint32_t s = strat ? SCF_STRATEGY_BLOCK_SHUFFLING : SCF_STRATEGY_STREAMING;
		for (int dense_out = 0; dense_out < 2; dense_out++) {
			scf_options o = opts(s, dense_out ? SCF_OUTPUT_DENSE : SCF_OUTPUT_CSR);
			char err[2048] = "";
			scf_loader *l = NULL;
			snprintf(l2, sizeof(l2), "%s, %s output, %s", label, dense_out ? "dense" : "CSR",
			         strat ? "block shuffling" : "streaming");
			int rc = scf_open(&l, p, &o, err, sizeof(err));
			cr_assert_eq(rc, 0, "%s: a valid file refused: %s", l2, err);
			int out = stream_epoch(l2, l, p, n_rows, n_cols, dense, &stored, NULL);
			cr_assert_eq(out, READ_ALL, "%s: a valid file failed in scf_next", l2);
			printf("hostile: %s\n    -> read whole and right\n", l2);
		}
	}
	free(dense);
}

Test(hostile, row_with_more_entries_than_columns_dense_output)
{
	/* 20 x 4; row 5 holds 10 entries (every column, some three times); row 9 eight */
	enum { R = 20, C = 4 };
	int64_t indptr[R + 1], indices[64];
	double data[64];
	uint64_t nnz = 0;

	for (uint64_t r = 0; r < R; r++) {
		indptr[r] = (int64_t)nnz;
		uint64_t len = r == 5 ? 10 : r == 9 ? 8 : r % 3;
		for (uint64_t k = 0; k < len; k++) {
			indices[nnz] = r == 5 || r == 9 ? (int64_t)(k % C) : (int64_t)((r + k) % C);
			data[nnz] = (double)(2 * (r * 7 + k) + 1) / 8.0;
			nnz++;
		}
	}
	indptr[R] = (int64_t)nnz;
	char *p = write_csr_arrays("wide-rows.h5ad", R, C, C, indptr, indices, data);
	csr_both_outputs("row of 10 entries in 4 columns", p, R, C, indptr, indices, data, 1);
	free(p);

	/* the same entries under a shape of 0 columns: every id is out of range */
	p = write_csr_arrays("zero-cols.h5ad", R, C, 0, indptr, indices, data);
	for (int dense_out = 0; dense_out < 2; dense_out++) {
		scf_options o = opts(SCF_STRATEGY_STREAMING, dense_out ? SCF_OUTPUT_DENSE
		                                                        : SCF_OUTPUT_CSR);
		char err[2048] = "", label[128];
		scf_loader *l = NULL;
		snprintf(label, sizeof(label), "shape (20, 0) with stored entries, %s output",
		         dense_out ? "dense" : "CSR");
		int rc = scf_open(&l, p, &o, err, sizeof(err));
		if (rc != 0) {
			check_refusal(label, p, rc, err, NULL, NULL);
			continue;
		}
		/* opened: the first row with entries must fail its fetch, naming X/indices */
		fx_ref stored = { .n_rows = R, .n_cols = 0, .nnz = nnz, .indptr = indptr,
		                  .indices = indices, .data = data };
		cr_assert_eq(stream_epoch(label, l, p, R, 0, NULL, &stored, "X/indices"), NEXT_FAILED,
		             "%s: entries in a matrix of 0 columns delivered", label);
	}
	free(p);
}

Test(hostile, duplicate_column_ids_dense_sums_csr_as_stored)
{
	/* 60 x 50: every third row repeats ids (runs of 2 and 3, and unsorted repeats) */
	enum { R = 60, C = 50 };
	int64_t indptr[R + 1], *indices = malloc(R * 12 * sizeof(int64_t));
	double *data = malloc(R * 12 * sizeof(double));
	uint64_t nnz = 0;

	for (uint64_t r = 0; r < R; r++) {
		indptr[r] = (int64_t)nnz;
		uint64_t len = r % 7 == 0 ? 0 : 3 + r % 9;
		for (uint64_t k = 0; k < len; k++) {
			int64_t c = (int64_t)((r * 11 + k * 5) % C);
			if (r % 3 == 0 && k > 0 && k % 2 == 1)
				c = indices[nnz - 1];            /* a run: c, c */
			if (r % 3 == 1 && k == len - 1)
				c = indices[indptr[r]];          /* the row's first id once more, at its end */
			indices[nnz] = c;
			data[nnz] = (double)(2 * ((r * 13 + k * 3) % 200) + 1) / 8.0;
			nnz++;
		}
	}
	indptr[R] = (int64_t)nnz;
	char *p = write_csr_arrays("dups.h5ad", R, C, C, indptr, indices, data);
	csr_both_outputs("duplicate column ids", p, R, C, indptr, indices, data, 1);
	free(p);
	free(indices);
	free(data);
}

/* ======================================================================
 * 3. obs categorical whose categories (or codes) are not 1-D
 * ====================================================================== */

Test(hostile, categorical_categories_of_rank_two)
{
	char *base = write_csr("base.h5ad", base_spec(0, 3));
	fx_ref ref;
	load_ref(base, "X", &ref);
	const char *obs[] = { "cell_type" };
	scf_options o = opts(SCF_STRATEGY_STREAMING, SCF_OUTPUT_CSR);
	o.obs = obs;
	o.n_obs = 1;
	hsize_t d2[2] = { 5, 3 }, big[2] = { 5, 2000 };
	double nums[15];
	const char *strs[15];
	char fixed[15][8];
	for (int i = 0; i < 15; i++) {
		nums[i] = i;
		strs[i] = "type";
		snprintf(fixed[i], 8, "t%d", i);
	}
	hid_t vs = h5u_vlen_str(), fs = H5Tcopy(H5T_C_S1);
	H5Tset_size(fs, 8);
	double *many = calloc(5 * 2000, sizeof(double));
	int64_t codes2[600 * 2] = { 0 };
	const struct { const char *what, *dset; hid_t ft, mt; const void *buf; int rank;
	               const hsize_t *dims; } v[] = {
		{ "categories 5x3 float64", "obs/cell_type/categories", H5T_IEEE_F64LE,
		  H5T_NATIVE_DOUBLE, nums, 2, d2 },
		{ "categories 5x2000 float64", "obs/cell_type/categories", H5T_IEEE_F64LE,
		  H5T_NATIVE_DOUBLE, many, 2, big },
		{ "categories 5x3 variable-length strings", "obs/cell_type/categories", vs, vs, strs,
		  2, d2 },
		{ "categories 5x3 fixed-length strings", "obs/cell_type/categories", fs, fs, fixed, 2,
		  d2 },
		{ "categories scalar", "obs/cell_type/categories", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
		  nums, 0, d2 },
		{ "codes 600x2", "obs/cell_type/codes", H5T_STD_I64LE, H5T_NATIVE_INT64, codes2, 2,
		  (const hsize_t[]){ 600, 2 } },
	};
	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		char *p = fx_copy(dir, base, "cat.h5ad");
		fx_h5_replace(p, v[k].dset, v[k].ft, v[k].mt, v[k].buf, v[k].rank, v[k].dims);
		char err[2048] = "";
		scf_loader *l = NULL;
		int rc = scf_open(&l, p, &o, err, sizeof(err));
		if (rc == 0)
			scf_close(l);
		cr_assert_neq(rc, 0, "obs %s: opened", v[k].what);
		check_refusal(v[k].what, p, rc, err, "obs/cell_type", NULL);
		free(p);
	}
	H5Tclose(vs);
	H5Tclose(fs);
	free(many);
	fx_ref_free(&ref);
	free(base);
}

/* ======================================================================
 * 4. class balance on integer columns: below -1, INT32_MAX, int64 extremes
 * ====================================================================== */

Test(hostile, class_balanced_on_extreme_integers)
{
	char *base = write_csr("base.h5ad", base_spec(0, 4));
	fx_ref ref;
	load_ref(base, "X", &ref);
	const int64_t cls[][3] = {
		{ -2, -5, -100000 },
		{ 0, 1, INT32_MAX },
		{ INT32_MIN, -1, INT32_MAX },
		{ INT64_MIN, (int64_t)1 << 40, INT64_MAX },
	};
	const char *obs[] = { "donor" };
	int64_t *v = malloc(ref.n_rows * sizeof(int64_t));

	for (size_t k = 0; k < sizeof(cls) / sizeof(cls[0]); k++) {
		/* 500, 80 and 20 rows: balanced sampling draws each about a third of the time */
		for (uint64_t r = 0; r < ref.n_rows; r++)
			v[r] = cls[k][r < 500 ? 0 : r < 580 ? 1 : 2];
		char *p = fx_copy(dir, base, "classes.h5ad"), label[200];
		hsize_t n = ref.n_rows;
		fx_h5_replace(p, "obs/donor", H5T_STD_I64LE, H5T_NATIVE_INT64, v, 1, &n);
		snprintf(label, sizeof(label), "class balance over %lld, %lld, %lld",
		         (long long)cls[k][0], (long long)cls[k][1], (long long)cls[k][2]);
		scf_options o = opts(SCF_STRATEGY_CLASS_BALANCED, SCF_OUTPUT_CSR);
		o.balance_obs = "donor";
		o.obs = obs;
		o.n_obs = 1;
		char err[2048] = "";
		scf_loader *l = NULL;
		meter m;
		double mb;
		meter_start(&m);
		int rc = scf_open(&l, p, &o, err, sizeof(err));
		double secs = meter_stop(&m, &mb, label);
		cr_assert_lt(secs, OPEN_LIMIT, "%s: open took %.1f s", label, secs);
		cr_assert_lt(mb, 200.0, "%s: open grew memory by %.0f MB", label, mb);
		if (rc != 0) {
			check_refusal(label, p, rc, err, "obs/donor", NULL);
			free(p);
			continue;
		}
		uint64_t count[3] = { 0 }, rows = 0;
		scf_batch *b;
		while ((rc = scf_next(l, &b)) == 0) {
			cr_assert_eq(b->n_obs, 1);
			cr_assert_not_null(b->obs_values, "%s: no obs_values", label);
			for (uint64_t j = 0; j < b->n_rows; j++) {
				uint64_t r = b->row_ids[j];
				cr_assert_eq(b->obs_values[j], v[r], "%s: row %lu: donor %lld, the file "
				             "has %lld", label, (unsigned long)r, (long long)b->obs_values[j],
				             (long long)v[r]);
				count[r < 500 ? 0 : r < 580 ? 1 : 2]++;
				check_row(label, b, j, NULL, &ref, ref.n_cols);
			}
			rows += b->n_rows;
			scf_release(l, b);
		}
		cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s: %s", label, scf_errmsg(l));
		printf("hostile: %s\n    -> %lu rows drawn: %lu, %lu, %lu\n", label,
		       (unsigned long)rows, (unsigned long)count[0], (unsigned long)count[1],
		       (unsigned long)count[2]);
		for (int c = 0; c < 3; c++)
			cr_assert(count[c] * 3 >= rows / 2 && count[c] * 3 <= rows * 2,
			          "%s: class %d drawn %lu times of %lu: not balanced", label, c,
			          (unsigned long)count[c], (unsigned long)rows);
		scf_close(l);
		free(p);
	}
	free(v);
	fx_ref_free(&ref);
	free(base);
}

/* ======================================================================
 * 5. total_size near 2^61 with block_size 2^30 on weighted strategies
 * ====================================================================== */

Test(hostile, total_size_near_two_to_the_61)
{
	char *p = write_csr("base.h5ad", base_spec(0, 5));
	fx_ref ref;
	load_ref(p, "X", &ref);
	double *w = malloc(ref.n_rows * sizeof(double));
	for (uint64_t r = 0; r < ref.n_rows; r++)
		w[r] = 1.0 + (double)(r % 5);
	const uint64_t sizes[] = { ((uint64_t)1 << 61) - 3, (uint64_t)1 << 61,
	                           ((uint64_t)1 << 61) + 1, (UINT64_MAX >> 3) + 1, UINT64_MAX,
	                           UINT64_MAX - 1023, SCF_MAX_TOTAL_SIZE + 1 };
	const char *obs[] = { "cell_type" };

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		for (int balanced = 0; balanced < 2; balanced++) {
			scf_options o = opts(balanced ? SCF_STRATEGY_CLASS_BALANCED
			                              : SCF_STRATEGY_BLOCK_WEIGHTED, SCF_OUTPUT_CSR);
			o.block_size = 1u << 30;
			o.total_size = sizes[k];
			if (balanced) {
				o.balance_obs = "cell_type";
				o.obs = obs;
				o.n_obs = 1;
			} else {
				o.weights = w;
				o.n_weights = ref.n_rows;
			}
			char err[2048] = "", label[160];
			scf_loader *l = NULL;
			snprintf(label, sizeof(label), "%s, block_size 2^30, total_size %llu",
			         balanced ? "class balanced" : "block weighted",
			         (unsigned long long)sizes[k]);
			int rc = scf_open(&l, p, &o, err, sizeof(err));
			if (rc == 0)
				scf_close(l);
			cr_assert(rc == -EINVAL || rc == -EOVERFLOW, "%s: rc %d (%s), expected -EINVAL "
			          "or -EOVERFLOW: %s", label, rc, scf_strerror(rc), err);
			check_refusal(label, p, rc, err, NULL, "total_size");
		}
	}
	free(w);
	fx_ref_free(&ref);
	free(p);
}

/* ======================================================================
 * 7. dense chunked X with a fill value and chunks never written
 * ====================================================================== */

/* A dense fixture whose X is rewritten: chunked, fill value `fill`, only some chunks written. */
static char *write_dense_with_holes(const char *name, hid_t ftype, double fill,
                                    uint64_t rows, uint64_t cols, uint64_t crow, uint64_t ccol)
{
	fx_dense_spec ds = { .n_rows = rows, .n_cols = cols, .density = 0.4, .seed = 77 };
	char *p = fx_path(dir, name);
	cr_assert_eq(fx_write_dense(p, &ds), 0);
	fx_h5_delete(p, "X");
	hid_t f = fx_h5_open_rw(p), dcpl = H5Pcreate(H5P_DATASET_CREATE);
	hsize_t dims[2] = { rows, cols }, ch[2] = { crow, ccol };
	hid_t sp = H5Screate_simple(2, dims, NULL);
	H5Pset_chunk(dcpl, 2, ch);
	cr_assert_geq(H5Pset_fill_value(dcpl, H5T_NATIVE_DOUBLE, &fill), 0);
	H5Pset_fill_time(dcpl, H5D_FILL_TIME_IFSET);
	hid_t d = H5Dcreate2(f, "X", ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	cr_assert_geq(d, 0);
	/* write every other chunk (in a checkerboard), values k/8 + 1 so never the fill */
	uint64_t nr = (rows + crow - 1) / crow, nc = (cols + ccol - 1) / ccol;
	double *blk = malloc(crow * ccol * sizeof(double));
	for (uint64_t a = 0; a < nr; a++) {
		for (uint64_t b = 0; b < nc; b++) {
			if ((a + b) % 2)
				continue;
			hsize_t start[2] = { a * crow, b * ccol };
			hsize_t cnt[2] = { start[0] + crow > rows ? rows - start[0] : crow,
			                   start[1] + ccol > cols ? cols - start[1] : ccol };
			for (uint64_t i = 0; i < cnt[0] * cnt[1]; i++)
				blk[i] = (i + a * 3 + b) % 4 == 0 ? 0.0 : 1.0 + (double)((i * 7 + a) % 40) / 8.0;
			hid_t fs = H5Dget_space(d), ms = H5Screate_simple(2, cnt, NULL);
			H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
			cr_assert_geq(H5Dwrite(d, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, blk), 0);
			H5Sclose(ms);
			H5Sclose(fs);
		}
	}
	free(blk);
	/* anndata's marker on a dense array */
	hid_t t = h5u_vlen_str(), s1 = H5Screate(H5S_SCALAR);
	const char *enc[2] = { "array", "0.2.0" }, *an[2] = { "encoding-type", "encoding-version" };
	for (int i = 0; i < 2; i++) {
		hid_t at = H5Acreate2(d, an[i], t, s1, H5P_DEFAULT, H5P_DEFAULT);
		H5Awrite(at, t, &enc[i]);
		H5Aclose(at);
	}
	H5Sclose(s1);
	H5Tclose(t);
	H5Dclose(d);
	H5Sclose(sp);
	H5Pclose(dcpl);
	H5Fclose(f);
	return p;
}

/* X read whole by H5Dread as doubles: the independent reader (h5py reads the same). */
static double *h5_read_dense(const char *path, uint64_t n)
{
	double *v = malloc((n + 1) * sizeof(double));
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "X", H5P_DEFAULT);
	cr_assert_geq(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), 0);
	H5Dclose(d);
	H5Fclose(f);
	return v;
}

/* Dense reference as CSR of its non-zeros (the fill is non-zero: it is stored). */
static void dense_to_csr(const double *v, uint64_t rows, uint64_t cols, fx_ref *out)
{
	uint64_t k = 0;
	out->n_rows = rows;
	out->n_cols = cols;
	out->indptr = malloc((rows + 1) * sizeof(int64_t));
	out->indices = malloc((rows * cols + 1) * sizeof(int64_t));
	out->data = malloc((rows * cols + 1) * sizeof(double));
	out->indptr[0] = 0;
	for (uint64_t r = 0; r < rows; r++) {
		for (uint64_t c = 0; c < cols; c++)
			if (v[r * cols + c] != 0.0) {
				out->indices[k] = (int64_t)c;
				out->data[k++] = v[r * cols + c];
			}
		out->indptr[r + 1] = (int64_t)k;
	}
	out->nnz = k;
}

Test(hostile, dense_fill_value_in_unwritten_chunks)
{
	const struct { const char *name; hid_t type; double fill; } v[] = {
		{ "float32, fill 2.5", H5T_IEEE_F32LE, 2.5 },
		{ "float64, fill -1.25", H5T_IEEE_F64LE, -1.25 },
		{ "int16, fill 7", H5T_STD_I16LE, 7.0 },
	};
	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		const uint64_t rows = 90, cols = 37;
		char *p = write_dense_with_holes("fill.h5ad", v[k].type, v[k].fill, rows, cols, 8, 10);
		double *ref = h5_read_dense(p, rows * cols);
		uint64_t n_fill = 0;
		for (uint64_t i = 0; i < rows * cols; i++)
			n_fill += ref[i] == v[k].fill;
		cr_assert_gt(n_fill, rows * cols / 4, "%s: the fixture has no unwritten chunks",
		             v[k].name);
		fx_ref csr;
		dense_to_csr(ref, rows, cols, &csr);
		for (int dense_out = 0; dense_out < 2; dense_out++) {
			for (int strat = 0; strat < 2; strat++) {
				scf_options o = opts(strat ? SCF_STRATEGY_BLOCK_SHUFFLING
				                           : SCF_STRATEGY_STREAMING,
				                     dense_out ? SCF_OUTPUT_DENSE : SCF_OUTPUT_CSR);
				char err[2048] = "", label[200];
				scf_loader *l = NULL;
				snprintf(label, sizeof(label), "dense %s, %s output, %s", v[k].name,
				         dense_out ? "dense" : "CSR", strat ? "shuffled" : "streaming");
				int rc = scf_open(&l, p, &o, err, sizeof(err));
				cr_assert_eq(rc, 0, "%s: a valid file refused: %s", label, err);
				cr_assert_eq(stream_epoch(label, l, p, rows, cols, ref, &csr, NULL),
				             READ_ALL, "%s: a valid file failed in scf_next", label);
				printf("hostile: %s\n    -> read whole and right (%lu fill cells)\n", label,
				       (unsigned long)n_fill);
			}
		}
		fx_ref_free(&csr);
		free(ref);
		free(p);
	}
}

/* ======================================================================
 * 8. integer obs beyond int32, uint32, floats and booleans: without loss
 * ====================================================================== */

static const char *const py_obs =
	"import sys\n"
	"try:\n"
	"    import anndata, numpy as np, pandas as pd, scipy.sparse as sp\n"
	"except ImportError:\n"
	"    sys.exit(3)\n"
	"n = 64\n"
	"X = sp.random(n, 12, density=0.3, format='csr', dtype=np.float32, random_state=5)\n"
	"obs = pd.DataFrame(index=['c%d' % i for i in range(n)])\n"
	"obs['donor'] = np.resize(np.array([2**31, 2**40 + 5, -2**40, 0, -2, 2**31 - 1,\n"
	"                                   -2**63, 2**63 - 1, 2**32, -(2**31) - 1], np.int64), n)\n"
	"obs['plate'] = np.resize(np.array([3000000000, 0, 4294967295, 12, 2**31], np.uint32), n)\n"
	"obs['small'] = np.resize(np.array([3, -4, 100, 0], np.int16), n)\n"
	"obs['u64'] = np.resize(np.array([0, 2**62, 5], np.uint64), n)\n"
	"obs['score'] = np.resize(np.array([0.1, -2.5, 1e300, float('inf'), -0.0, 5e-324,\n"
	"                                   float('nan')], np.float64), n)\n"
	"obs['frac'] = np.resize(np.array([0.5, 1e-3, 3.4e38, -0.0, 1e-45], np.float32), n)\n"
	"obs['flag'] = np.resize(np.array([True, False, False, True, True]), n)\n"
	"obs['cell_type'] = pd.Categorical(np.resize(np.array(['b', 'a', 'c', 'a']), n))\n"
	"anndata.AnnData(X=X, obs=obs).write_h5ad(sys.argv[1])\n";

enum { OBS_CAT, OBS_DONOR, OBS_PLATE, OBS_SMALL, OBS_U64, OBS_SCORE, OBS_FRAC, OBS_FLAG,
       N_OBS_COLS };

/* Column `name` of obs read whole by H5Dread: int64 values, or double bits, or enum bytes. */
static int64_t *ref_obs(const char *path, const char *name, int kind, uint64_t n)
{
	int64_t *out = calloc(n + 1, sizeof(int64_t));
	char dset[128];
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d;

	snprintf(dset, sizeof(dset), kind == SCF_OBS_CATEGORICAL ? "obs/%s/codes" : "obs/%s",
	         name);
	d = H5Dopen2(f, dset, H5P_DEFAULT);
	cr_assert_geq(d, 0, "%s", dset);
	hid_t t = H5Dget_type(d);
	if (H5Tget_class(t) == H5T_ENUM) {
		/* h5py's bool: an enum of int8; HDF5 converts an enum only to an enum */
		hid_t mt = H5Tget_native_type(t, H5T_DIR_ASCEND);
		size_t ms = H5Tget_size(mt);
		int8_t *raw = calloc(n + 1, ms);
		cr_assert_eq(ms, 1, "%s: an enum of %zu bytes", dset, ms);
		cr_assert_geq(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw), 0);
		for (uint64_t i = 0; i < n; i++)
			out[i] = raw[i];
		free(raw);
		H5Tclose(mt);
	} else if (kind == SCF_OBS_FLOAT) {
		double *v = malloc((n + 1) * sizeof(double));
		cr_assert_geq(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), 0);
		memcpy(out, v, n * sizeof(double));
		free(v);
	} else if (H5Tget_sign(t) == H5T_SGN_NONE && H5Tget_size(t) == 8) {
		cr_assert_geq(H5Dread(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out), 0);
	} else {
		cr_assert_geq(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out), 0);
	}
	H5Tclose(t);
	H5Dclose(d);
	H5Fclose(f);
	return out;
}

Test(hostile, obs_values_of_every_dtype_without_loss)
{
#ifndef SCF_HAVE_OBS_VALUES
	cr_skip_test("scf_batch.obs_values and scf_obs_kind are not in this scfetch.h yet");
#else
	char *p = fx_path(dir, "obs.h5ad");
	const char *args[] = { p };
	if (run_python(py_obs, args, 1) == 1) {
		free(p);
		cr_skip_test("anndata is not installed (python3-anndata): obs dtypes not tried");
	}
	static const char *const names[N_OBS_COLS] = { "cell_type", "donor", "plate", "small",
	                                               "u64", "score", "frac", "flag" };
	static const uint32_t kinds[N_OBS_COLS] = { SCF_OBS_CATEGORICAL, SCF_OBS_INT, SCF_OBS_INT,
	                                            SCF_OBS_INT, SCF_OBS_INT, SCF_OBS_FLOAT,
	                                            SCF_OBS_FLOAT, SCF_OBS_INT };
	const uint64_t n = 64;
	int64_t *want[N_OBS_COLS];
	int fits[N_OBS_COLS];
	for (int c = 0; c < N_OBS_COLS; c++) {
		want[c] = ref_obs(p, names[c], (int)kinds[c], n);
		fits[c] = kinds[c] != SCF_OBS_FLOAT;
		for (uint64_t r = 0; fits[c] && r < n; r++)
			if (want[c][r] < INT32_MIN || want[c][r] > INT32_MAX)
				fits[c] = 0;
	}
	/* the values the issue names are really in the file */
	cr_assert_eq(want[OBS_DONOR][0], (int64_t)1 << 31);
	cr_assert_eq(want[OBS_DONOR][1], ((int64_t)1 << 40) + 5);
	cr_assert_eq(want[OBS_DONOR][2], -((int64_t)1 << 40));
	cr_assert_eq(want[OBS_PLATE][0], 3000000000LL);
	cr_assert_eq(want[OBS_FLAG][0], 1);
	cr_assert_eq(want[OBS_FLAG][1], 0);

	for (int strat = 0; strat < 2; strat++) {
		scf_options o = opts(strat ? SCF_STRATEGY_BLOCK_SHUFFLING : SCF_STRATEGY_STREAMING,
		                     strat ? SCF_OUTPUT_DENSE : SCF_OUTPUT_CSR);
		o.obs = names;
		o.n_obs = N_OBS_COLS;
		char err[2048] = "";
		scf_loader *l = NULL;
		cr_assert_eq(scf_open(&l, p, &o, err, sizeof(err)), 0, "obs of every dtype: %s", err);
		for (uint32_t c = 0; c < N_OBS_COLS; c++) {
			uint32_t kind = 99;
			cr_assert_eq(scf_obs_kind(l, c, &kind), 0, "scf_obs_kind(%s)", names[c]);
			cr_assert_eq(kind, kinds[c], "obs/%s: kind %u, expected %u", names[c], kind,
			             kinds[c]);
			const char *const *cats;
			uint64_t nc = 99;
			cr_assert_eq(scf_obs_categories(l, c, &cats, &nc), 0);
			if (kinds[c] == SCF_OBS_CATEGORICAL) {
				cr_assert_eq(nc, 3);
				cr_assert_str_eq(cats[want[c][0]], "b");
				cr_assert_str_eq(cats[want[c][1]], "a");
				cr_assert_str_eq(cats[want[c][2]], "c");
			} else {
				cr_assert_eq(nc, 0, "obs/%s: %lu categories for a plain column", names[c],
				             (unsigned long)nc);
			}
		}
		uint32_t kind;
		cr_assert_lt(scf_obs_kind(l, N_OBS_COLS, &kind), 0, "column past the last");
		uint64_t rows = 0;
		scf_batch *b;
		int rc;
		while ((rc = scf_next(l, &b)) == 0) {
			cr_assert_eq(b->n_obs, N_OBS_COLS);
			cr_assert_not_null(b->obs);
			cr_assert_not_null(b->obs_values);
			for (uint64_t j = 0; j < b->n_rows; j++) {
				uint64_t r = b->row_ids[j];
				for (int c = 0; c < N_OBS_COLS; c++) {
					int64_t got = b->obs_values[j * N_OBS_COLS + (uint64_t)c];
					int32_t got32 = b->obs[j * N_OBS_COLS + (uint64_t)c];
					if (kinds[c] == SCF_OBS_FLOAT) {
						double g, w;
						memcpy(&g, &got, 8);
						memcpy(&w, &want[c][r], 8);
						cr_assert(got == want[c][r] || (isnan(g) && isnan(w)),
						          "obs/%s row %lu: %.17g (bits %016llx), the file has %.17g "
						          "(bits %016llx)", names[c], (unsigned long)r, g,
						          (unsigned long long)got, w,
						          (unsigned long long)want[c][r]);
					} else {
						cr_assert_eq(got, want[c][r], "obs/%s row %lu: %lld, the file has "
						             "%lld", names[c], (unsigned long)r, (long long)got,
						             (long long)want[c][r]);
					}
					int32_t want32 = fits[c] ? (int32_t)want[c][r] : INT32_MIN;
					cr_assert_eq(got32, want32, "obs/%s row %lu: obs (int32) %d, expected %d",
					             names[c], (unsigned long)r, got32, want32);
				}
			}
			rows += b->n_rows;
			scf_release(l, b);
		}
		cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
		cr_assert_eq(rows, n);
		scf_close(l);
	}
	for (int c = 0; c < N_OBS_COLS; c++)
		free(want[c]);
	printf("hostile: obs of every dtype: int64 2^31, 2^40+5, -2^40, uint32 3e9, uint64 2^62, "
	       "floats and bools delivered without loss\n");
	free(p);
#endif
}

/* ======================================================================
 * 10. chunk-index entries pointing into other objects
 * ====================================================================== */

Test(hostile, chunk_entry_into_other_objects)
{
	fx_csr_spec s = base_spec(64, 10);
	char *base = write_csr("base.h5ad", s);
	fx_ref ref;
	load_ref(base, "X", &ref);
	uint64_t indptr0 = fx_chunk_info(base, "X/indptr", 0).addr;
	uint64_t codes = dset_offset(base, "obs/cell_type/codes");
	const char *obs[] = { "cell_type" };
	const struct { const char *dset, *what; uint64_t k, to; int with_obs; } v[] = {
		{ "X/data", "X/indptr's first chunk", 1, indptr0, 0 },
		{ "X/data", "X/indptr's first chunk + 8", 3, indptr0 + 8, 0 },
		{ "X/indices", "X/indptr's first chunk", 1, indptr0, 0 },
		{ "X/data", "the superblock (address 0)", 1, 0, 0 },
		{ "X/indices", "the superblock (address 0)", 0, 0, 0 },
		{ "X/data", "obs/cell_type/codes", 1, codes, 1 },
		{ "X/indices", "obs/cell_type/codes", 2, codes, 1 },
	};
	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		char *p = fx_copy(dir, base, "entry.h5ad"), label[200];
		fx_poke_u64(p, fx_index_entry(dir, base, v[k].dset, v[k].k, 1, NULL), v[k].to);
		snprintf(label, sizeof(label), "%s chunk %lu pointing at %s", v[k].dset,
		         (unsigned long)v[k].k, v[k].what);
		for (int strat = 0; strat < 2; strat++) {
			scf_options o = opts(strat ? SCF_STRATEGY_BLOCK_SHUFFLING
			                           : SCF_STRATEGY_STREAMING, SCF_OUTPUT_CSR);
			if (v[k].with_obs) {
				o.obs = obs;
				o.n_obs = 1;
			}
			int out = open_or_right(label, p, &o, &ref, v[k].dset);
			cr_assert_eq(out, OPEN_FAILED, "%s: must be refused at open", label);
		}
		free(p);
	}
	fx_ref_free(&ref);
	free(base);
}

/* ======================================================================
 * 11. matrix keys over 127 bytes; float indices
 * ====================================================================== */

static void copy_object(const char *from, const char *name, const char *to)
{
	hid_t a = H5Fopen(from, H5F_ACC_RDONLY, H5P_DEFAULT), b = fx_h5_open_rw(to);
	hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
	H5Pset_create_intermediate_group(lcpl, 1);
	cr_assert_geq(H5Ocopy(a, name, b, name, H5P_DEFAULT, lcpl), 0, "H5Ocopy %s", name);
	H5Pclose(lcpl);
	H5Fclose(a);
	H5Fclose(b);
}

Test(hostile, long_matrix_keys_never_open_another_matrix)
{
	char long_key[400], short_key[200], longer_key[400];
	memcpy(long_key, "layers/", 7);
	memset(long_key + 7, 'a', 150);
	long_key[157] = '\0';
	snprintf(short_key, 128, "%s", long_key); /* what a 128-byte buffer keeps: 127 bytes */
	memcpy(longer_key, "layers/", 7);
	memset(longer_key + 7, 'a', 300);
	longer_key[307] = '\0';

	/* the long layer and the layer of the truncated name hold different matrices */
	fx_csr_spec sl = base_spec(0, 111), ss = base_spec(0, 222);
	sl.matrix = long_key;
	ss.matrix = short_key;
	char *p = write_csr("long.h5ad", sl), *q = write_csr("short.h5ad", ss);
	copy_object(q, short_key, p);
	fx_ref ref_long;
	load_ref(p, long_key, &ref_long);
	const char *keys[] = { long_key, longer_key };
	for (int k = 0; k < 2; k++) {
		scf_options o = opts(SCF_STRATEGY_STREAMING, SCF_OUTPUT_CSR);
		o.matrix = keys[k];
		char label[100];
		snprintf(label, sizeof(label), "matrix key of %zu bytes%s", strlen(keys[k]),
		         k ? " (absent; its 127-byte prefix exists)" : "");
		char err[2048] = "";
		scf_loader *l = NULL;
		int rc = scf_open(&l, p, &o, err, sizeof(err));
		if (rc != 0) {
			check_refusal(label, p, rc, err, NULL, NULL);
			continue;
		}
		cr_assert_eq(k, 0, "%s: opened a matrix that is not in the file", label);
		/* opened: it must be the long layer's rows, not the truncated name's */
		printf("hostile: %s\n    -> opened\n", label);
		cr_assert_eq(stream_epoch(label, l, p, ref_long.n_rows, ref_long.n_cols, NULL,
		                          &ref_long, NULL), READ_ALL);
	}
	fx_ref_free(&ref_long);
	free(p);
	free(q);

	/* float indices: refused at open, naming X/indices */
	char *base = write_csr("base.h5ad", base_spec(0, 11));
	fx_ref ref;
	load_ref(base, "X", &ref);
	double *f = malloc(ref.nnz * sizeof(double));
	for (uint64_t i = 0; i < ref.nnz; i++)
		f[i] = (double)ref.indices[i] + (i % 2 ? 0.5 : 0.0);
	const hid_t ft[] = { H5T_IEEE_F32LE, H5T_IEEE_F64LE };
	for (int k = 0; k < 2; k++) {
		char *r = fx_copy(dir, base, "findices.h5ad"), label[64];
		hsize_t n = ref.nnz;
		fx_h5_replace(r, "X/indices", ft[k], H5T_NATIVE_DOUBLE, f, 1, &n);
		snprintf(label, sizeof(label), "X/indices as float%d", k ? 64 : 32);
		scf_options o = opts(SCF_STRATEGY_STREAMING, SCF_OUTPUT_CSR);
		cr_assert_eq(open_or_right(label, r, &o, &ref, "X/indices"), OPEN_FAILED,
		             "%s: must be refused", label);
		free(r);
	}
	free(f);
	fx_ref_free(&ref);
	free(base);
}

/* ======================================================================
 * 12. paths that are not regular files, or not there
 * ====================================================================== */

static void open_path_fails(const char *label, const char *path, const char *reason,
                            const char *alt)
{
	char err[2048] = "";
	scf_loader *l = NULL;
	double t0 = now_s();
	int rc = scf_open(&l, path, NULL, err, sizeof(err));
	double secs = now_s() - t0;

	if (rc == 0)
		scf_close(l);
	check_refusal(label, path, rc, err, NULL, NULL);
	cr_assert_lt(secs, OPEN_LIMIT, "%s: scf_open took %.1f s", label, secs);
	cr_assert(strstr(err, reason) || (alt && strstr(err, alt)),
	          "%s: the message does not give the reason (\"%s\"): %s", label, reason, err);
	cr_assert_null(strstr(err, "not an HDF5"), "%s: a wrong reason: %s", label, err);
}

Test(hostile, fifo_directory_missing_unreadable_symlink_loop, .timeout = 30)
{
	char *fifo = fx_path(dir, "pipe.h5ad"), *sub = fx_path(dir, "dir.h5ad");
	char *missing = fx_path(dir, "missing.h5ad"), *loop = fx_path(dir, "loop.h5ad");
	char *loop2 = fx_path(dir, "loop2.h5ad");
	cr_assert_eq(mkfifo(fifo, 0644), 0);
	cr_assert_eq(mkdir(sub, 0755), 0);
	cr_assert_eq(symlink(loop2, loop), 0);
	cr_assert_eq(symlink(loop, loop2), 0);

	open_path_fails("a FIFO", fifo, "FIFO", "not a regular file");
	open_path_fails("a directory", sub, "directory", "not a regular file");
	open_path_fails("a missing file", missing, "No such file or directory", NULL);
	open_path_fails("a symlink loop", loop, "Too many levels of symbolic links", NULL);
	open_path_fails("/dev/null", "/dev/null", "character device", "not a regular file");

	char *good = write_csr("good.h5ad", base_spec(0, 12));
	if (geteuid() != 0) {
		char *locked = fx_copy(dir, good, "locked.h5ad");
		cr_assert_eq(chmod(locked, 0), 0);
		open_path_fails("a file without read permission", locked, "Permission denied", NULL);
		free(locked);
	} else {
		printf("hostile: no-permission case skipped: root reads any file\n");
	}

	/* a FIFO in a collection: refused as quickly, naming it */
	const char *paths[2] = { good, fifo };
	char err[2048] = "";
	scf_loader *l = NULL;
	double t0 = now_s();
	int rc = scf_open_collection(&l, paths, 2, NULL, err, sizeof(err));
	double secs = now_s() - t0;
	if (rc == 0)
		scf_close(l);
	check_refusal("a collection of a file and a FIFO", fifo, rc, err, NULL, NULL);
	cr_assert_lt(secs, OPEN_LIMIT, "a FIFO in a collection: %.1f s", secs);
	free(good);
	free(fifo);
	free(sub);
	free(missing);
	free(loop);
	free(loop2);
}

/* ======================================================================
 * 13. collections of files with 40,000 categories each
 * ====================================================================== */

/* Replace obs/cell_type/categories by n names "<prefix><i>". */
static void write_categories(const char *path, const char *prefix, uint64_t n)
{
	char *text = malloc(n * 24);
	const char **ptr = malloc(n * sizeof(*ptr));
	for (uint64_t i = 0; i < n; i++) {
		ptr[i] = text + i * 24;
		snprintf(text + i * 24, 24, "%s%" PRIu64, prefix, i);
	}
	hid_t t = h5u_vlen_str();
	hsize_t dims = n;
	fx_h5_replace(path, "obs/cell_type/categories", t, t, ptr, 1, &dims);
	H5Tclose(t);
	free(ptr);
	free(text);
}

Test(hostile, collection_union_of_40000_categories)
{
	const uint64_t n_cat = 40000;
	fx_csr_spec s = { .n_rows = 2000, .n_cols = 50, .mean_nnz = 3, .index_type = FX_I32,
	                  .indptr_type = FX_I64, .n_labels = 40000, .seed = 13 };
	char *a = write_csr("a.h5ad", s);
	s.seed = 14;
	char *b = write_csr("b.h5ad", s);
	/* disjoint names but for every 4th, so the union has 70,000 */
	write_categories(a, "a", n_cat);
	char *text = malloc(n_cat * 24);
	const char **ptr = malloc(n_cat * sizeof(*ptr));
	for (uint64_t i = 0; i < n_cat; i++) {
		ptr[i] = text + i * 24;
		snprintf(text + i * 24, 24, i % 4 == 0 ? "a%" PRIu64 : "b%" PRIu64, i);
	}
	hid_t t = h5u_vlen_str();
	hsize_t dims = n_cat;
	fx_h5_replace(b, "obs/cell_type/categories", t, t, ptr, 1, &dims);
	H5Tclose(t);
	int32_t *ca = fx_read_codes(a, "obs/cell_type/codes", s.n_rows);
	int32_t *cb = fx_read_codes(b, "obs/cell_type/codes", s.n_rows);
	cr_assert(ca && cb);

	const char *paths[2] = { a, b }, *obs[] = { "cell_type" };
	scf_options o = opts(SCF_STRATEGY_BLOCK_SHUFFLING, SCF_OUTPUT_CSR);
	o.obs = obs;
	o.n_obs = 1;
	char err[2048] = "";
	scf_loader *l = NULL;
	meter m;
	double mb;
	meter_start(&m);
	int rc = scf_open_collection(&l, paths, 2, &o, err, sizeof(err));
	double secs = meter_stop(&m, &mb, "collection of two files of 40,000 categories");
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_lt(secs, OPEN_LIMIT, "the union of 2 x 40,000 categories took %.1f s", secs);
	const char *const *names;
	uint64_t n_names;
	cr_assert_eq(scf_obs_categories(l, 0, &names, &n_names), 0);
	cr_assert_eq(n_names, n_cat + n_cat * 3 / 4, "%lu categories in the union",
	             (unsigned long)n_names);
	/* every delivered code names the category the row's own file gives it */
	scf_batch *bt;
	uint64_t rows = 0;
	while ((rc = scf_next(l, &bt)) == 0) {
		for (uint64_t j = 0; j < bt->n_rows; j++) {
			uint32_t file;
			uint64_t fr;
			cr_assert_eq(scf_row_locate(l, bt->row_ids[j], &file, &fr), 0);
			int32_t own = file ? cb[fr] : ca[fr], code = bt->obs[j];
			char want[24];
			snprintf(want, sizeof(want), file && own % 4 ? "b%d" : "a%d", own);
			cr_assert(code >= 0 && (uint64_t)code < n_names, "code %d", code);
			cr_assert_str_eq(names[code], want, "file %u row %lu", file, (unsigned long)fr);
		}
		rows += bt->n_rows;
		scf_release(l, bt);
	}
	cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
	cr_assert_eq(rows, 2 * s.n_rows);
	scf_close(l);
	free(ca);
	free(cb);
	free(ptr);
	free(text);
	free(a);
	free(b);
}

/* ======================================================================
 * 14. declared but unbacked sizes: 2^25 categories, a 2^26-entry indptr
 * ====================================================================== */

/* Replace `name` by a chunked dataset of n elements (max unlimited) never written. */
static void unwritten_chunked(const char *path, const char *name, hid_t type, uint64_t n,
                              hsize_t chunk)
{
	hid_t f = fx_h5_open_rw(path), dcpl = H5Pcreate(H5P_DATASET_CREATE);
	hsize_t dims = n, mx = H5S_UNLIMITED;
	hid_t sp = H5Screate_simple(1, &dims, &mx);
	if (H5Lexists(f, name, H5P_DEFAULT) > 0)
		cr_assert_geq(H5Ldelete(f, name, H5P_DEFAULT), 0);
	H5Pset_chunk(dcpl, 1, &chunk);
	hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	cr_assert_geq(d, 0, "H5Dcreate %s", name);
	H5Dclose(d);
	H5Sclose(sp);
	H5Pclose(dcpl);
	H5Fclose(f);
}

static void cheap_refusal_or_open(const char *label, const char *path, const scf_options *o,
                                  const char *dset)
{
	char err[2048] = "";
	scf_loader *l = NULL;
	meter m;
	double mb;
	printf("hostile: %s: file of %lu bytes\n", label, (unsigned long)fx_file_len(path));
	meter_start(&m);
	int rc = scf_open(&l, path, o, err, sizeof(err));
	if (rc == 0)
		scf_close(l);
	double secs = meter_stop(&m, &mb, label);
	if (rc != 0)
		check_refusal(label, path, rc, err, dset, NULL);
	else
		printf("hostile: %s\n    -> opened\n", label);
	cr_assert_lt(secs, OPEN_LIMIT, "%s: open took %.1f s", label, secs);
	cr_assert_lt(mb, 200.0, "%s: open grew memory by %.0f MB", label, mb);
}

Test(hostile, declared_sizes_without_storage_cost_nothing)
{
	char *base = write_csr("base.h5ad", base_spec(0, 14));
	const char *obs[] = { "cell_type" };
	scf_options o = opts(SCF_STRATEGY_STREAMING, SCF_OUTPUT_CSR);
	o.obs = obs;
	o.n_obs = 1;

	/* the meter itself sees 64 MB */
	meter m;
	double mb;
	meter_start(&m);
	/* volatile: an optimising build would drop an allocation nobody reads */
	char *volatile big = malloc((size_t)64 << 20);
	for (size_t i = 0; big && i < ((size_t)64 << 20); i += 4096)
		((volatile char *)big)[i] = 1;
	free(big);
	meter_stop(&m, &mb, "the meter, 64 MB allocated and freed");
	cr_assert_geq(mb, 60.0, "the memory meter saw %.1f MB of 64", mb);

	/* 2^25 categories, variable-length strings and float64, no chunk written */
	hid_t t = h5u_vlen_str();
	char *p = fx_copy(dir, base, "cats.h5ad");
	unwritten_chunked(p, "obs/cell_type/categories", t, (uint64_t)1 << 25, 1024);
	cheap_refusal_or_open("2^25 unwritten string categories", p, &o, "obs/cell_type");
	free(p);
	H5Tclose(t);
	p = fx_copy(dir, base, "cats.h5ad");
	unwritten_chunked(p, "obs/cell_type/categories", H5T_IEEE_F64LE, (uint64_t)1 << 25, 1024);
	cheap_refusal_or_open("2^25 unwritten float64 categories", p, &o, "obs/cell_type");
	free(p);
	/* a contiguous declaration, never written, too */
	p = fx_copy(dir, base, "cats.h5ad");
	hsize_t n25 = (hsize_t)1 << 25;
	t = h5u_vlen_str();
	fx_h5_replace(p, "obs/cell_type/categories", t, t, NULL, 1, &n25);
	H5Tclose(t);
	cheap_refusal_or_open("2^25 unwritten contiguous categories", p, &o, "obs/cell_type");
	free(p);

	/* an indptr of 2^26 entries never written, the shape agreeing with it */
	const uint64_t rows = ((uint64_t)1 << 26) - 1;
	const int64_t shape[2] = { (int64_t)rows, 300 };
	scf_options plain = opts(SCF_STRATEGY_STREAMING, SCF_OUTPUT_CSR);
	for (int k = 0; k < 2; k++) {
		p = fx_copy(dir, base, "indptr.h5ad");
		if (k == 0) {
			unwritten_chunked(p, "X/indptr", H5T_STD_I64LE, rows + 1, 4096);
		} else {
			hsize_t n = rows + 1;
			fx_h5_replace(p, "X/indptr", H5T_STD_I64LE, H5T_NATIVE_INT64, NULL, 1, &n);
		}
		fx_h5_attr(p, "X", "shape", H5T_STD_I64LE, H5T_NATIVE_INT64, shape, 2);
		cheap_refusal_or_open(k ? "2^26-entry contiguous indptr never written"
		                        : "2^26-entry chunked indptr never written", p, &plain, NULL);
		free(p);
	}
	/* obs codes of 2^26 entries never written (the rows agreeing) */
	p = fx_copy(dir, base, "codes.h5ad");
	unwritten_chunked(p, "obs/cell_type/codes", H5T_STD_I8LE, (uint64_t)1 << 26, 4096);
	cheap_refusal_or_open("2^26 unwritten codes", p, &o, "obs/cell_type");
	free(p);
	free(base);
}

/* ======================================================================
 * 15. scf_release twice
 * ====================================================================== */

Test(hostile, double_release_does_not_corrupt_a_held_batch)
{
	char *p = write_csr("base.h5ad", base_spec(0, 15));
	fx_ref ref;
	load_ref(p, "X", &ref);
	scf_options o = opts(SCF_STRATEGY_STREAMING, SCF_OUTPUT_CSR);
	o.fetches_in_flight = 1;
	o.batch_size = 8;
	char err[2048] = "";
	scf_loader *l;
	cr_assert_eq(scf_open(&l, p, &o, err, sizeof(err)), 0, "%s", err);
	scf_batch *a, *b;
	cr_assert_eq(scf_next(l, &a), 0);
	cr_assert_eq(scf_next(l, &b), 0); /* same fetch: the same buffer */

	/* B's contents, before */
	uint64_t nb = b->n_rows, nnz = b->nnz;
	uint64_t *ids = malloc(nb * sizeof(uint64_t));
	int64_t *ip = malloc((nb + 1) * sizeof(int64_t));
	int32_t *ix = malloc((nnz + 1) * sizeof(int32_t));
	float *dx = malloc((nnz + 1) * sizeof(float));
	memcpy(ids, b->row_ids, nb * sizeof(uint64_t));
	memcpy(ip, b->indptr, (nb + 1) * sizeof(int64_t));
	memcpy(ix, b->indices, nnz * sizeof(int32_t));
	memcpy(dx, b->data, nnz * sizeof(float));

	cr_assert_eq(scf_release(l, a), 0);
	int rc = scf_release(l, a);
	printf("hostile: second scf_release of a batch\n    -> %d %s\n", rc, scf_errmsg(l));
	cr_assert_eq(rc, -EINVAL, "the second release returned %d", rc);
	cr_assert_not_null(strstr(scf_errmsg(l), "released twice"), "scf_errmsg: %s",
	                   scf_errmsg(l));
	/* a pointer that is no batch at all */
	scf_batch fake = *b;
	cr_assert_eq(scf_release(l, &fake), -EINVAL);

	/* stream on, past several fetches' worth of buffers, still holding B */
	scf_batch *c;
	int n = 0;
	while (n < 60 && (rc = scf_next(l, &c)) == 0) {
		cr_assert_neq(c, b, "B handed out again while held");
		for (uint64_t j = 0; j < c->n_rows; j++)
			check_row("after a double release", c, j, NULL, &ref, ref.n_cols);
		scf_release(l, c);
		n++;
	}
	printf("hostile: after the double release: %d more batches, then %d %s\n", n, rc,
	       rc < 0 ? scf_errmsg(l) : "");
	cr_assert(rc == 0 || rc == SCF_END_OF_EPOCH || rc == -EINVAL, "scf_next: %d %s", rc,
	          scf_errmsg(l));
	/* B unchanged, and still the file's rows */
	cr_assert_eq(b->n_rows, nb);
	cr_assert_eq(b->nnz, nnz);
	cr_assert_eq(memcmp(b->row_ids, ids, nb * sizeof(uint64_t)), 0, "B's row ids changed");
	cr_assert_eq(memcmp(b->indptr, ip, (nb + 1) * sizeof(int64_t)), 0, "B's indptr changed");
	cr_assert_eq(memcmp(b->indices, ix, nnz * sizeof(int32_t)), 0, "B's indices changed");
	cr_assert_eq(memcmp(b->data, dx, nnz * sizeof(float)), 0, "B's values changed");
	for (uint64_t j = 0; j < b->n_rows; j++)
		check_row("the held batch", b, j, NULL, &ref, ref.n_cols);
	cr_assert_eq(scf_release(l, b), 0);
	cr_assert_eq(scf_release(l, b), -EINVAL);
	scf_close(l);
	free(ids);
	free(ip);
	free(ix);
	free(dx);
	fx_ref_free(&ref);
	free(p);
}

/* ======================================================================
 * 16. messages: dense (n, 0), external storage, very long paths
 * ====================================================================== */

Test(hostile, dense_without_columns_refused_at_open)
{
	const uint64_t shapes[][2] = { { 40, 0 }, { 0, 30 } };
	for (int k = 0; k < 2; k++) {
		fx_dense_spec ds = { .n_rows = shapes[k][0], .n_cols = shapes[k][1], .seed = 16 };
		char *p = fx_path(dir, "empty.h5ad"), label[64];
		cr_assert_eq(fx_write_dense(p, &ds), 0);
		snprintf(label, sizeof(label), "dense X of shape (%lu, %lu)",
		         (unsigned long)shapes[k][0], (unsigned long)shapes[k][1]);
		for (int dense_out = 0; dense_out < 2; dense_out++) {
			scf_options o = opts(SCF_STRATEGY_STREAMING, dense_out ? SCF_OUTPUT_DENSE
			                                                        : SCF_OUTPUT_CSR);
			char err[2048] = "";
			scf_loader *l = NULL;
			int rc = scf_open(&l, p, &o, err, sizeof(err));
			if (k == 1 && rc == 0) { /* no rows: an empty epoch is right too */
				scf_batch *b;
				cr_assert_eq(scf_next(l, &b), SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
				scf_close(l);
				printf("hostile: %s\n    -> opened, an empty epoch\n", label);
				continue;
			}
			if (rc == 0)
				scf_close(l);
			cr_assert_neq(rc, 0, "%s: opened (it would fail only in scf_next)", label);
			check_refusal(label, p, rc, err, k ? NULL : "X", NULL);
		}
		free(p);
	}
}

Test(hostile, external_storage_is_named)
{
	char *base = write_csr("base.h5ad", base_spec(0, 17));
	fx_ref ref;
	load_ref(base, "X", &ref);
	char *ext = fx_path(dir, "ext.bin");
	/* CSR X/data, and a dense X, stored in an external file */
	for (int k = 0; k < 2; k++) {
		char *p = fx_copy(dir, base, "external.h5ad");
		const char *dset = k ? "X" : "X/data";
		hid_t f = fx_h5_open_rw(p), dcpl = H5Pcreate(H5P_DATASET_CREATE);
		hsize_t dims[2] = { k ? ref.n_rows : ref.nnz, ref.n_cols };
		int rank = k ? 2 : 1;
		hsize_t n = dims[0] * (k ? dims[1] : 1);
		cr_assert_geq(H5Ldelete(f, dset, H5P_DEFAULT), 0);
		cr_assert_geq(H5Pset_external(dcpl, ext, 0, n * sizeof(float)), 0);
		hid_t sp = H5Screate_simple(rank, dims, NULL);
		hid_t d = H5Dcreate2(f, dset, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
		cr_assert_geq(d, 0);
		float *v = calloc(n + 1, sizeof(float));
		if (k) {
			for (uint64_t r = 0; r < ref.n_rows; r++)
				for (int64_t e = ref.indptr[r]; e < ref.indptr[r + 1]; e++)
					v[r * ref.n_cols + (uint64_t)ref.indices[e]] = (float)ref.data[e];
			hid_t t = h5u_vlen_str(), s1 = H5Screate(H5S_SCALAR);
			const char *enc = "array";
			hid_t a = H5Acreate2(d, "encoding-type", t, s1, H5P_DEFAULT, H5P_DEFAULT);
			H5Awrite(a, t, &enc);
			H5Aclose(a);
			H5Sclose(s1);
			H5Tclose(t);
		} else {
			for (uint64_t i = 0; i < ref.nnz; i++)
				v[i] = (float)ref.data[i];
		}
		cr_assert_geq(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), 0);
		free(v);
		H5Dclose(d);
		H5Sclose(sp);
		H5Pclose(dcpl);
		H5Fclose(f);
		char label[64], err[2048] = "";
		snprintf(label, sizeof(label), "%s in external storage", dset);
		scf_options o = opts(SCF_STRATEGY_STREAMING, SCF_OUTPUT_CSR);
		scf_loader *l = NULL;
		int rc = scf_open(&l, p, &o, err, sizeof(err));
		if (rc == 0)
			scf_close(l);
		cr_assert_neq(rc, 0, "%s: opened", label);
		check_refusal(label, p, rc, err, dset, "external storage");
		cr_assert_null(strstr(err, "never written"), "%s: a wrong reason: %s", label, err);
		free(p);
	}
	free(ext);
	fx_ref_free(&ref);
	free(base);
}

Test(hostile, long_path_keeps_the_reason)
{
	/* nested directories of 200-byte names, to about 3,900 bytes */
	size_t cap = 4096;
	char *path = malloc(cap), comp[201];
	memset(comp, 'd', 200);
	comp[200] = '\0';
	snprintf(path, cap, "%s", dir);
	while (strlen(path) + 201 + 40 < 3950) {
		strcat(path, "/");
		strcat(path, comp);
		cr_assert_eq(mkdir(path, 0755), 0, "mkdir (%zu bytes): %s", strlen(path),
		             strerror(errno));
	}
	strcat(path, "/the-file-at-the-end.h5ad");
	char *good = write_csr("base.h5ad", base_spec(0, 18));
	size_t len;
	uint8_t *b = fx_slurp(good, &len);
	fx_spill(path, b, len);
	free(b);
	printf("hostile: a path of %zu bytes\n", strlen(path));

	const struct { const char *label, *matrix, *reason; } v[] = {
		{ "long path, missing matrix", "layers/nope", "no such matrix" },
		{ "long path, missing obs column", NULL, "no such column" },
	};
	const size_t bufs[] = { 512, 1024, 4200 };
	const char *obs[] = { "no_such_column" };
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < 3; i++) {
			scf_options o = opts(SCF_STRATEGY_STREAMING, SCF_OUTPUT_CSR);
			o.matrix = v[k].matrix;
			if (!v[k].matrix) {
				o.obs = obs;
				o.n_obs = 1;
			}
			char *err = calloc(1, bufs[i]), label[128];
			scf_loader *l = NULL;
			int rc = scf_open(&l, path, &o, err, bufs[i]);
			snprintf(label, sizeof(label), "%s, a %zu-byte message buffer", v[k].label,
			         bufs[i]);
			if (rc == 0)
				scf_close(l);
			check_refusal(label, NULL, rc, err, NULL, v[k].reason);
			cr_assert_lt(strlen(err), bufs[i]);
			cr_assert_not_null(strstr(err, "the-file-at-the-end.h5ad"),
			                   "%s: the file's name is lost: %s", label, err);
			free(err);
		}
	}
	/* a missing file down the same long path: the errno reason survives too */
	strcpy(strrchr(path, '/'), "/missing.h5ad");
	char err[512] = "";
	scf_loader *l = NULL;
	int rc = scf_open(&l, path, NULL, err, sizeof(err));
	check_refusal("long path, missing file, 512-byte buffer", NULL, rc, err, NULL,
	              "No such file or directory");
	free(good);
	free(path);
}
