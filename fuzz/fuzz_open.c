/*
 * fuzz/fuzz_open — libFuzzer target for the whole open path through the
 * public API: the input is a whole .h5ad file (seeds: small valid files of
 * every layout, fuzz/corpus/fuzz_open), written to one file in
 * $SCF_FUZZ_TMPDIR or /dev/shm (HDF5 resolves a memfd's /proc/self/fd link
 * to a name it cannot open, so a real path it is); scf_open, then a few batches of Streaming and of
 * BlockShuffling with scf_next, then scf_close.  Every refusal must carry a
 * sentence naming the file; every delivered batch must be well formed
 * (indptr from 0, non-decreasing, column ids inside the matrix).
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

static int fd = -1;
static char path[128];
static int verbose; /* SCF_FUZZ_VERBOSE=1: say what each input did (checking seeds) */

static void remove_file(void)
{
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

/* What any batch must look like, whatever the file held. */
static void check_batch(const scf_batch *b, const scf_info *info)
{
	if (b->n_rows == 0 || b->n_cols != info->n_cols_out)
		die("batch shape", "");
	for (uint64_t j = 0; j < b->n_rows; j++)
		if (b->row_ids[j] >= info->n_rows)
			die("row id past the last row", "");
	if (b->output != SCF_OUTPUT_CSR)
		return;
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

static void stream(uint32_t strategy)
{
	scf_options o = { .size = sizeof(o), .strategy = strategy, .batch_size = 8,
	                  .block_size = 2, .fetch_factor = 2, .fetches_in_flight = 1,
	                  .queue_depth = 8, .threads = 1, .seed = 3,
	                  .flags = SCF_F_BUFFERED | SCF_F_NO_PIN };
	char err[1024];
	scf_loader *l;
	scf_info info;
	int rc;

	err[0] = '\0';
	rc = scf_open(&l, path, &o, err, sizeof(err));
	if (rc < 0) {
		if (!err[0] || !strstr(err, path))
			die("open refused without naming the file", err);
		if (verbose)
			fprintf(stderr, "fuzz_open: open: %d %s\n", rc, err);
		return;
	}
	if (rc > 0)
		die("scf_open returned a positive code", "");
	scf_info_get(l, &info);
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
		check_batch(b, &info);
		scf_release(l, b);
	}
	if (verbose)
		fprintf(stderr, "fuzz_open: %llu x %llu, %d batches, then %d %s\n",
		        (unsigned long long)info.n_rows, (unsigned long long)info.n_cols, n, rc,
		        rc < 0 ? scf_errmsg(l) : "");
	scf_close(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	stream(SCF_STRATEGY_STREAMING);
	stream(SCF_STRATEGY_BLOCK_SHUFFLING);
	return 0;
}
