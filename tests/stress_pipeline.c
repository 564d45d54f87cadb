/*
 * tests/stress_pipeline — the threaded pipeline without Criterion, so that it
 * runs under ThreadSanitizer too (Criterion's fork-based runner cannot):
 * many small fetches, several workers, restarts with set_epoch, close with
 * fetches in flight and batches held; every cell checked against H5Dread.
 * Then the same on a deflate-compressed file, with the decoded-chunk cache
 * shared by the workers (a budget of a few chunks, so that entries are
 * evicted and refilled all the time) and partial inflate.
 * Exits non-zero on the first wrong cell, lost row or error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scfetch.h"
#include "tests/fixtures.h"

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, \
	__LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } } while (0)

static void check_batch(const fx_ref *ref, const scf_batch *b, uint8_t *seen)
{
	for (uint64_t j = 0; j < b->n_rows; j++) {
		uint64_t r = b->row_ids[j];
		CHECK(r < ref->n_rows && !seen[r], "row %lu out of range or twice", r);
		seen[r] = 1;
		int64_t lo = ref->indptr[r], n = ref->indptr[r + 1] - lo;
		CHECK(b->indptr[j + 1] - b->indptr[j] == n, "row %lu length", r);
		for (int64_t k = 0; k < n; k++) {
			CHECK(b->indices[b->indptr[j] + k] == ref->indices[lo + k], "row %lu col", r);
			CHECK(b->data[b->indptr[j] + k] == (float)ref->data[lo + k], "row %lu val", r);
		}
	}
}

/* Whole epochs with `threads` workers: complete and exact. */
static void epochs(const char *path, const fx_ref *ref, uint32_t threads, uint32_t inflight,
                   uint32_t flags, uint64_t cache)
{
	scf_options o = { .size = sizeof(o), .batch_size = 7, .block_size = 3, .fetch_factor = 5,
	                  .threads = threads, .fetches_in_flight = inflight, .queue_depth = 8,
	                  .max_read = 4096, .seed = threads, .flags = flags,
	                  .chunk_cache_bytes = cache };
	uint8_t *seen = malloc(ref->n_rows);
	char err[512];
	scf_loader *l;

	CHECK(scf_open(&l, path, &o, err, sizeof(err)) == 0, "%s", err);
	for (int e = 0; e < 3; e++) {
		scf_batch *b;
		uint64_t rows = 0;
		int rc;
		memset(seen, 0, ref->n_rows);
		while ((rc = scf_next(l, &b)) == 0) {
			check_batch(ref, b, seen);
			rows += b->n_rows;
			scf_release(l, b);
		}
		CHECK(rc == SCF_END_OF_EPOCH, "rc %d: %s", rc, scf_errmsg(l));
		CHECK(rows == ref->n_rows, "epoch %d: %lu rows", e, rows);
	}
	free(seen);
	scf_close(l);
}

/* Restart and close while reads and decodes are in flight. */
static void churn(const char *path, const fx_ref *ref)
{
	scf_options o = { .size = sizeof(o), .batch_size = 16, .block_size = 4, .fetch_factor = 4,
	                  .threads = 3, .fetches_in_flight = 6, .seed = 5 };
	uint8_t *seen = calloc(ref->n_rows, 1);
	char err[512];

	for (int i = 0; i < 30; i++) {
		scf_loader *l;
		scf_batch *held = NULL, *b;
		CHECK(scf_open(&l, path, &o, err, sizeof(err)) == 0, "%s", err);
		for (int k = 0; k < i % 5; k++) {
			CHECK(scf_next(l, &b) == 0, "%s", scf_errmsg(l));
			if (!held)
				held = b;
			else
				scf_release(l, b);
		}
		if (i % 3 == 0)
			CHECK(scf_set_epoch(l, (uint32_t)i) == 0, "set_epoch");
		if (i % 2 == 0 && scf_next(l, &b) == 0) {
			memset(seen, 0, ref->n_rows);
			check_batch(ref, b, seen);
			scf_release(l, b);
		}
		if (held && i % 4 == 0)
			scf_release(l, held);
		scf_close(l); /* with `held` possibly still out */
	}
	free(seen);
}

int main(void)
{
	char *dir = fx_tmpdir(), *path;
	fx_ref ref;

	CHECK(dir, "tmpdir");
	path = fx_path(dir, "stress.h5ad");
	fx_csr_spec s = { .n_rows = 3000, .n_cols = 400, .mean_nnz = 20, .empty_every = 9,
	                  .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 300,
	                  .resizable = 1, .seed = 99 };
	CHECK(fx_write_csr(path, &s) == 0, "fixture");
	CHECK(fx_ref_load(path, "X", &ref) == 0, "reference");
	for (uint32_t t = 1; t <= 4; t++)
		epochs(path, &ref, t, t * 2 - 1, 0, 0);
	churn(path, &ref);
	fx_ref_free(&ref);
	free(path);

	path = fx_path(dir, "stress-gzip.h5ad");
	s.deflate = 4;
	CHECK(fx_write_csr(path, &s) == 0, "fixture");
	CHECK(fx_ref_load(path, "X", &ref) == 0, "reference");
	for (uint32_t t = 1; t <= 4; t++) {
		epochs(path, &ref, t, t * 2 - 1, 0, 4 * 300 * 4);
		epochs(path, &ref, t, 3, SCF_F_PARTIAL_INFLATE, 4 * 300 * 4);
	}
	churn(path, &ref);
	fx_ref_free(&ref);
	free(path);
	fx_rmdir(dir);
	puts("stress_pipeline: ok");
	return 0;
}
