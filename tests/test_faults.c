/*
 * tests/test_faults — faults injected under the engine (test build only):
 * reads that fail with EIO, come back short, return -EAGAIN or stall, and
 * allocation failures at every allocation site during open and during an
 * epoch.  The loader retries what is retryable, reports the rest through
 * scf_next with a sentence naming the file, never delivers a wrong row, and
 * scf_close after an error frees everything (ASan/LSan build).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/faults.h"
#include "scfetch.h"
#include "tests/fixtures.h"

static char *dir, *path;
static fx_ref ref;

static void setup(void)
{
	dir = fx_tmpdir();
	path = fx_path(dir, "f.h5ad");
	fx_csr_spec s = { .n_rows = 3000, .n_cols = 2000, .mean_nnz = 150, .empty_every = 11,
	                  .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 8192,
	                  .resizable = 1, .deflate = 1, .n_labels = 3, .seed = 8 };
	cr_assert_eq(fx_write_csr(path, &s), 0);
	cr_assert_eq(fx_ref_load(path, "X", &ref), 0);
}

static void teardown(void)
{
	scf__fault_read_hook(NULL, NULL);
	scf__fault_alloc_after(0);
	fx_ref_free(&ref);
	free(path);
	fx_rmdir(dir);
}

TestSuite(faults, .init = setup, .fini = teardown, .timeout = 240);

static void check_row(const scf_batch *b, uint64_t j)
{
	uint64_t r = b->row_ids[j];
	int64_t lo = ref.indptr[r], n = ref.indptr[r + 1] - lo;
	cr_assert_eq(b->indptr[j + 1] - b->indptr[j], n, "row %lu length", r);
	for (int64_t k = 0; k < n; k++) {
		cr_assert_eq(b->indices[b->indptr[j] + k], ref.indices[lo + k], "row %lu", r);
		cr_assert_eq(b->data[b->indptr[j] + k], (float)ref.data[lo + k], "row %lu", r);
	}
}

/* Stream one epoch; every delivered row must be right.  Returns scf_next's last code. */
static int stream(scf_options o, uint64_t *rows, scf_stats *st, char *msg, size_t mlen)
{
	char err[512];
	scf_loader *l;
	scf_batch *b;
	int rc = scf_open(&l, path, &o, err, sizeof(err));

	*rows = 0;
	if (rc < 0) {
		snprintf(msg, mlen, "%s", err);
		return rc;
	}
	while ((rc = scf_next(l, &b)) == 0) {
		for (uint64_t j = 0; j < b->n_rows; j++)
			check_row(b, j);
		*rows += b->n_rows;
		scf_release(l, b);
	}
	snprintf(msg, mlen, "%s", scf_errmsg(l));
	if (st)
		scf_stats_get(l, st);
	scf_close(l);
	return rc;
}

static scf_options opts(void)
{
	return (scf_options){ .size = sizeof(scf_options), .batch_size = 32, .block_size = 4,
	                      .fetch_factor = 4, .queue_depth = 16, .max_read = 65536,
	                      .seed = 2 };
}

/* ---- read faults ---- */

static atomic_int calls;

static int eio_at_50(void *ctx, uint32_t file, uint64_t off, uint32_t len, int res)
{
	return atomic_fetch_add(&calls, 1) == 50 ? -EIO : res;
}

Test(faults, eio_surfaces_through_next)
{
	char msg[512];
	uint64_t rows;
	atomic_store(&calls, 0);
	scf__fault_read_hook(eio_at_50, NULL);
	int rc = stream(opts(), &rows, NULL, msg, sizeof(msg));
	cr_assert_eq(rc, -EIO, "rc %d: %s", rc, msg);
	cr_assert_not_null(strstr(msg, path), "%s", msg);
	cr_assert_not_null(strstr(msg, "Input/output error"), "%s", msg);
	cr_assert_lt(rows, ref.n_rows);
}

/* Short completions: keep 4 KiB-aligned prefixes so O_DIRECT can continue. */
static int short_reads(void *ctx, uint32_t file, uint64_t off, uint32_t len, int res)
{
	if (res > 8192 && atomic_fetch_add(&calls, 1) % 2 == 0)
		return res / 2 / 4096 * 4096;
	return res;
}

static int eagain_some(void *ctx, uint32_t file, uint64_t off, uint32_t len, int res)
{
	return atomic_fetch_add(&calls, 1) % 3 == 0 ? -EAGAIN : res;
}

static int stall_some(void *ctx, uint32_t file, uint64_t off, uint32_t len, int res)
{
	if (atomic_fetch_add(&calls, 1) % 40 == 0)
		usleep(20000);
	return res;
}

Test(faults, retryable_faults_are_retried)
{
	scf__read_fault_fn hooks[] = { short_reads, eagain_some, stall_some };
	for (int h = 0; h < 3; h++) {
		char msg[512];
		uint64_t rows;
		scf_stats st = { .size = sizeof(scf_stats) };
		atomic_store(&calls, 0);
		scf__fault_read_hook(hooks[h], NULL);
		int rc = stream(opts(), &rows, &st, msg, sizeof(msg));
		cr_assert_eq(rc, SCF_END_OF_EPOCH, "hook %d: rc %d: %s", h, rc, msg);
		cr_assert_eq(rows, ref.n_rows, "hook %d", h);
		if (h < 2)
			cr_assert_gt(st.reads_requeued, 0, "hook %d: nothing was retried", h);
	}
}

/* ---- allocation failures at every site ---- */

Test(faults, every_allocation_may_fail)
{
	scf_options o = opts();
	const char *cols[] = { "cell_type" };
	uint64_t tried = 0, open_fail = 0, next_fail = 0;

	o.obs = cols;
	o.n_obs = 1;
	for (uint64_t n = 1; n < 5000; n++) {
		char msg[512];
		uint64_t rows;
		scf__fault_alloc_after(n);
		int rc = stream(o, &rows, NULL, msg, sizeof(msg));
		uint64_t failed = scf__fault_alloc_failed();
		scf__fault_alloc_after(0);
		tried++;
		if (!failed) {
			cr_assert_eq(rc, SCF_END_OF_EPOCH, "n %lu: %s", n, msg);
			cr_assert_eq(rows, ref.n_rows);
			break;
		}
		if (rc == SCF_END_OF_EPOCH) /* the failure hit a path with a fallback */
			continue;
		cr_assert_lt(rc, 0, "n %lu", n);
		cr_assert_neq(msg[0], '\0', "n %lu: no message for rc %d", n, rc);
		cr_assert_not_null(strstr(msg, path), "n %lu: %s", n, msg);
		if (rows == 0 && strstr(msg, "invalid") == NULL)
			open_fail++;
		else
			next_fail++;
	}
	cr_assert_gt(tried, 20, "the injector reached only %lu allocations", tried);
	cr_log_info("allocation sites failed one by one: %lu (open or first fetch %lu, later %lu)",
	            tried, open_fail, next_fail);
}
