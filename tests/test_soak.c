/*
 * tests/test_soak — 50 epochs over a small file with loaders closed and
 * reopened at random points: every epoch complete, resident memory flat,
 * no file descriptor left behind.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scfetch.h"
#include "tests/fixtures.h"

static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	long n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

static long rss_kib(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

Test(soak, fifty_epochs_with_reopens, .timeout = 300)
{
	char *dir = fx_tmpdir(), *path = fx_path(dir, "soak.h5ad"), err[512];
	fx_csr_spec s = { .n_rows = 4000, .n_cols = 1000, .mean_nnz = 60, .index_type = FX_I32,
	                  .indptr_type = FX_I64, .chunk = 4096, .resizable = 1, .deflate = 1,
	                  .seed = 12 };
	scf_options o = { .size = sizeof(o), .batch_size = 64, .block_size = 8, .fetch_factor = 4,
	                  .seed = 1 };
	uint8_t *seen = malloc(4000);
	long fds0 = 0, rss_warm = 0;
	unsigned seed = 7;
	scf_loader *l;

	cr_assert_eq(fx_write_csr(path, &s), 0);
	cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
	for (uint32_t e = 0; e < 50; e++) {
		scf_batch *b;
		uint64_t rows = 0;
		int rc;
		memset(seen, 0, 4000);
		cr_assert_eq(scf_set_epoch(l, e), 0);
		while ((rc = scf_next(l, &b)) == 0) {
			for (uint64_t j = 0; j < b->n_rows; j++) {
				cr_assert_eq(seen[b->row_ids[j]], 0);
				seen[b->row_ids[j]] = 1;
			}
			rows += b->n_rows;
			scf_release(l, b);
			if (rand_r(&seed) % 200 == 0) { /* a job restarting mid-epoch */
				scf_close(l);
				cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
				memset(seen, 0, 4000);
				rows = 0;
				cr_assert_eq(scf_set_epoch(l, e), 0);
			}
		}
		cr_assert_eq(rc, SCF_END_OF_EPOCH, "%s", scf_errmsg(l));
		cr_assert_eq(rows, 4000, "epoch %u incomplete", e);
		if (e == 4) { /* warmed up: buffers at their final size */
			fds0 = open_fds();
			rss_warm = rss_kib();
		}
	}
	scf_close(l);
	cr_assert_eq(scf_open(&l, path, &o, err, sizeof(err)), 0, "%s", err);
	long fds = open_fds(), rss = rss_kib();
	scf_close(l);
	cr_assert_leq(fds, fds0, "file descriptors leak: %ld after, %ld at epoch 4", fds, fds0);
#ifndef __SANITIZE_ADDRESS__
	/* (ASan keeps freed memory in quarantine: RSS means nothing there) */
	cr_assert_lt(rss, rss_warm + 16 * 1024, "RSS grew from %ld KiB to %ld KiB", rss_warm, rss);
#endif
	cr_log_info("soak: RSS %ld KiB at epoch 4, %ld KiB after 50; fds %ld -> %ld", rss_warm,
	            rss, fds0, fds);
	free(seen);
	free(path);
	fx_rmdir(dir);
}
