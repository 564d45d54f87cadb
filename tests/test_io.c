/*
 * tests/test_io — the read backends.  Both must deliver the same stream:
 * the same batches, row by row and value by value, as the H5Dread
 * reference; scf_io_backend() names the one in use and why.  (The whole
 * end-to-end suite also runs on the pread pool: ctest's *_pread tests.)
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scfetch.h"
#include "tests/fixtures.h"

static char *dir, *path;
static fx_ref ref;

static void setup(void)
{
	dir = fx_tmpdir();
	path = fx_path(dir, "io.h5ad");
	fx_csr_spec s = { .n_rows = 3000, .n_cols = 200, .mean_nnz = 15, .empty_every = 9,
	                  .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 700,
	                  .resizable = 1, .seed = 11 };
	cr_assert_eq(fx_write_csr(path, &s), 0);
	cr_assert_eq(fx_ref_load(path, "X", &ref), 0);
}

static void teardown(void)
{
	fx_ref_free(&ref);
	free(path);
	fx_rmdir(dir);
}

TestSuite(io, .init = setup, .fini = teardown, .timeout = 120);

/* One epoch: every row's id in delivery order, each row checked against the reference. */
static uint64_t *stream(uint32_t flags, uint32_t queue_depth, char *backend, size_t blen)
{
	scf_options o = { .size = sizeof(o), .batch_size = 32, .block_size = 8, .fetch_factor = 4,
	                  .seed = 17, .flags = flags, .queue_depth = queue_depth,
	                  .max_read = 4096 };
	uint64_t *order = calloc(ref.n_rows, sizeof(uint64_t)), k = 0;
	char err[512];
	scf_loader *l;
	scf_batch *b;
	int rc;

	cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
	snprintf(backend, blen, "%s", scf_io_backend(l));
	while ((rc = scf_next(l, &b)) == 0) {
		for (uint64_t j = 0; j < b->n_rows; j++) {
			uint64_t r = b->row_ids[j];
			int64_t n = ref.indptr[r + 1] - ref.indptr[r];
			cr_assert_eq(b->indptr[j + 1] - b->indptr[j], n, "row %lu", (unsigned long)r);
			for (int64_t e = 0; e < n; e++) {
				cr_assert_eq(b->indices[b->indptr[j] + e], ref.indices[ref.indptr[r] + e]);
				cr_assert_eq(b->data[b->indptr[j] + e], (float)ref.data[ref.indptr[r] + e]);
			}
			cr_assert_lt(k, ref.n_rows);
			order[k++] = r;
		}
		cr_assert_eq(scf_release(l, b), 0);
	}
	cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
	cr_assert_eq(k, ref.n_rows);
	scf_close(l);
	return order;
}

Test(io, both_backends_deliver_the_same_stream)
{
	char a[256], b[256];
	/* a shallow queue and 4 KiB reads keep many reads in flight and queued */
	for (uint32_t depth = 4; depth <= 128; depth *= 32) {
		uint64_t *x = stream(0, depth, a, sizeof(a));
		uint64_t *y = stream(SCF_F_PREAD, depth, b, sizeof(b));
		cr_assert_eq(memcmp(x, y, ref.n_rows * sizeof(uint64_t)), 0, "depth %u", depth);
		if (!getenv("SCFETCH_IO"))
			cr_assert(strcmp(a, "io_uring") == 0 || strstr(a, "io_uring refused"), "%s", a);
		cr_assert_not_null(strstr(b, "pread threads"), "%s", b);
		free(x);
		free(y);
	}
}

Test(io, double_release_is_refused_and_harmless)
{
	scf_options o = { .size = sizeof(o), .batch_size = 16, .fetch_factor = 4, .seed = 1 };
	char err[512];
	scf_loader *l;
	scf_batch *b1, *b2;

	cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(scf_next(l, &b1), 0);
	cr_assert_eq(scf_next(l, &b2), 0);
	uint64_t keep[16];
	memcpy(keep, b2->row_ids, b2->n_rows * sizeof(uint64_t));
	cr_assert_eq(scf_release(l, b1), 0);
	cr_assert_eq(scf_release(l, b1), -EINVAL);
	cr_assert_not_null(strstr(scf_errmsg(l), "not held"), "%s", scf_errmsg(l));
	cr_assert_eq(scf_release(l, (scf_batch *)keep), -EINVAL, "a pointer that is no batch");
	/* b2 is untouched and the stream goes on */
	cr_assert_eq(memcmp(keep, b2->row_ids, b2->n_rows * sizeof(uint64_t)), 0);
	cr_assert_eq(scf_release(l, b2), 0);
	uint64_t n = 0;
	while (scf_next(l, &b1) == 0) {
		n += b1->n_rows;
		scf_release(l, b1);
	}
	cr_assert_eq(n + 32, ref.n_rows);
	scf_close(l);
}
