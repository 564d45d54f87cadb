/*
 * fuzz/fuzz_open — libFuzzer target for the whole open path through the
 * public API: the input is a whole .h5ad file (seeds: small valid files of
 * every layout, with obs columns of every kind, and files with the parts
 * hostile files get wrong: array attributes, 2-D categories, duplicate
 * ids, fill values; fuzz/corpus/fuzz_open), written to one file in
 * $SCF_FUZZ_TMPDIR or /dev/shm (HDF5 resolves a memfd's /proc/self/fd link
 * to a name it cannot open, so a real path it is).  Three opens per input:
 * Streaming with the obs columns the seeds carry (categorical, int64,
 * float, bool), so their groups, attributes and dataspaces are read too;
 * BlockShuffling without obs, so a broken obs column does not hide the
 * matrix; and, for matrices of at most DENSE_MAX_COLS columns, dense output
 * with class balance over the int64 column.  A few batches each, then
 * scf_close.  Every refusal must carry a sentence naming the file; every
 * delivered batch must be well formed (indptr from 0, non-decreasing,
 * column ids inside the matrix, obs codes naming a category, obs and
 * obs_values agreeing), and every dense value is read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scfetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/*
 * HDF5 1.10.8 leaks metadata-cache buffers when it fails on some broken
 * files (tests/test_badinput.c shows it with HDF5 alone): memory HDF5
 * allocated itself is not this library's to free.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5\n"; }

#define MAX_BATCHES 64
/*
 * Dense output only below this width: a file may rightly declare 2^31
 * columns, and a dense batch of those is the caller's choice of memory,
 * not a bug for the fuzzer to find.
 */
#define DENSE_MAX_COLS 4096

/* The obs columns of the seeds (fuzz/make_corpus.c add_obs). */
static const char *const obs_cols[] = { "cell_type", "donor", "score", "flag" };
#define N_OBS_COLS 4

static int fd = -1;
static char path[128];
static int verbose; /* SCF_FUZZ_VERBOSE=1: say what each input did (checking seeds) */

static void remove_file(void)
{
	char cache[160];
	snprintf(cache, sizeof(cache), "%s.scfidx", path); /* X's index cache, beside it */
	unlink(cache);
	unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	verbose = getenv("SCF_FUZZ_VERBOSE") != NULL;
	const char *base = getenv("SCF_FUZZ_TMPDIR");
	if (!base || !*base)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(path, sizeof(path), "%s/scf-fuzz-open-%d.h5ad", base, (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	atexit(remove_file);
	return 0;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "fuzz_open: %s: \"%s\"\n", what, msg);
	abort();
}

/* Category counts and kinds of the loader's obs columns, for check_batch. */
typedef struct obs_facts {
	uint64_t n_cat[N_OBS_COLS];
	uint32_t kind[N_OBS_COLS];
} obs_facts;

static void obs_facts_get(scf_loader *l, uint32_t n_obs, obs_facts *f)
{
	for (uint32_t c = 0; c < n_obs; c++) {
		const char *const *names;
		if (scf_obs_kind(l, c, &f->kind[c]) < 0 || f->kind[c] > SCF_OBS_FLOAT)
			die("scf_obs_kind failed on an open loader", scf_errmsg(l));
		if (scf_obs_categories(l, c, &names, &f->n_cat[c]) < 0)
			die("scf_obs_categories failed on an open loader", scf_errmsg(l));
		if (f->kind[c] != SCF_OBS_CATEGORICAL && f->n_cat[c] != 0)
			die("categories for a plain obs column", "");
		for (uint64_t k = 0; k < f->n_cat[c]; k++)
			if (!names[k])
				die("a category without a name", "");
	}
}

/* obs and obs_values of row j agree with each other and with the column's kind. */
static void check_obs(const scf_batch *b, uint64_t j, const obs_facts *f)
{
	for (uint32_t c = 0; c < b->n_obs; c++) {
		int32_t o = b->obs[j * b->n_obs + c];
		int64_t v = b->obs_values[j * b->n_obs + c];
		if (f->kind[c] == SCF_OBS_CATEGORICAL) {
			if (v < -1 || v >= (int64_t)f->n_cat[c] || o != v)
				die("obs code outside its categories", "");
		} else if (f->kind[c] == SCF_OBS_INT) {
			/* INT32_MIN stands for "read obs_values" (some value of the column is wider) */
			if (o != INT32_MIN && o != v)
				die("obs and obs_values disagree", "");
		} else if (o != INT32_MIN) {
			die("a float obs column with an int32 value", "");
		}
	}
}

/* What any batch must look like, whatever the file held. */
static void check_batch(const scf_batch *b, const scf_info *info, uint32_t n_obs,
                        const obs_facts *f)
{
	if (b->n_rows == 0 || b->n_cols != info->n_cols_out)
		die("batch shape", "");
	for (uint64_t j = 0; j < b->n_rows; j++)
		if (b->row_ids[j] >= info->n_rows)
			die("row id past the last row", "");
	if (b->n_obs != n_obs || (n_obs && (!b->obs || !b->obs_values)))
		die("obs missing from a batch", "");
	for (uint64_t j = 0; n_obs && j < b->n_rows; j++)
		check_obs(b, j, f);
	if (b->output == SCF_OUTPUT_DENSE) {
		/* every cell is read: ASan sees a buffer shorter than rows x columns */
		volatile float sink = 0;
		for (uint64_t k = 0; k < b->n_rows * b->n_cols; k++)
			sink += b->data[k];
		(void)sink;
		return;
	}
	if (b->indptr[0] != 0)
		die("indptr[0] != 0", "");
	for (uint64_t j = 0; j < b->n_rows; j++)
		if (b->indptr[j + 1] < b->indptr[j])
			die("indptr decreasing", "");
	if ((uint64_t)b->indptr[b->n_rows] != b->nnz)
		die("indptr does not end at nnz", "");
	for (uint64_t k = 0; k < b->nnz; k++)
		if (b->indices[k] < 0 || (uint64_t)b->indices[k] >= b->n_cols)
			die("column id outside the matrix", "");
}

/*
 * One open and a few batches.  Returns the matrix's column count when it
 * opened, else -1.
 */
static int64_t stream(uint32_t strategy, uint32_t output, uint32_t n_obs, const char *balance,
                      int cached)
{
	scf_options o = { .size = sizeof(o), .strategy = strategy, .output = output,
	                  .batch_size = 8, .block_size = 2, .fetch_factor = 2,
	                  .fetches_in_flight = 1, .queue_depth = 8, .threads = 1, .seed = 3,
	                  .flags = SCF_F_BUFFERED | SCF_F_NO_PIN |
	                           (cached ? 0 : SCF_F_NO_INDEX_CACHE),
	                  .obs = n_obs ? obs_cols : NULL, .n_obs = n_obs,
	                  .balance_obs = balance };
	char err[1024];
	scf_loader *l;
	scf_info info = { .size = sizeof(scf_info) };
	obs_facts facts;
	int rc;

	err[0] = '\0';
	rc = scf_open(&l, path, &o, err, sizeof(err));
	if (rc < 0) {
		if (!err[0] || !strstr(err, path))
			die("open refused without naming the file", err);
		if (verbose)
			fprintf(stderr, "fuzz_open: open: %d %s\n", rc, err);
		return -1;
	}
	if (rc > 0)
		die("scf_open returned a positive code", "");
	scf_info_get(l, &info);
	obs_facts_get(l, n_obs, &facts);
	int n = 0;
	for (; n < MAX_BATCHES; n++) {
		scf_batch *b;
		rc = scf_next(l, &b);
		if (rc == SCF_END_OF_EPOCH)
			break;
		if (rc < 0) {
			if (!strstr(scf_errmsg(l), path))
				die("scf_next failed without naming the file", scf_errmsg(l));
			break;
		}
		check_batch(b, &info, n_obs, &facts);
		scf_release(l, b);
	}
	if (verbose)
		fprintf(stderr, "fuzz_open: %llu x %llu%s, %d batches, then %d %s\n",
		        (unsigned long long)info.n_rows, (unsigned long long)info.n_cols,
		        output == SCF_OUTPUT_DENSE ? " dense" : "", n, rc,
		        rc < 0 ? scf_errmsg(l) : "");
	scf_close(l);
	return (int64_t)info.n_cols;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	/* parsed without a cache; then the cache beside the input is built
	 * (the last input's is stale: size and mtime changed) and reused */
	stream(SCF_STRATEGY_STREAMING, SCF_OUTPUT_CSR, N_OBS_COLS, NULL, 0);
	int64_t cols = stream(SCF_STRATEGY_BLOCK_SHUFFLING, SCF_OUTPUT_CSR, 0, NULL, 1);
	if (cols >= 0 && cols <= DENSE_MAX_COLS)
		stream(SCF_STRATEGY_CLASS_BALANCED, SCF_OUTPUT_DENSE, 2, "donor", 1);
	return 0;
}
