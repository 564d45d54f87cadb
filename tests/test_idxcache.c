/*
 * tests/test_idxcache — the persistent index cache: reused when valid and
 * then delivering the rows H5Dread reads; rebuilt, never trusted, when the
 * file was replaced, appended to, truncated or touched, or the cache was
 * cut short, had bytes flipped, or carries numbers that pass its checksum
 * but not the bounds the parser enforces; built by several processes at
 * once; written elsewhere when its directory cannot be; and every
 * allocation of a building or reusing open made to fail in turn.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scfetch.h"
#include "common/faults.h"
#include "formats/idxcache.h"
#include "tests/fixtures.h"

static char *dir;

static void setup(void)
{
	dir = fx_tmpdir();
	cr_assert_not_null(dir);
	/* never the tester's own ~/.cache */
	char *xdg = fx_path(dir, "xdg");
	setenv("XDG_CACHE_HOME", xdg, 1);
	unsetenv("SCFETCH_INDEX_DIR");
	free(xdg);
}

static void teardown(void)
{
	fx_rmdir(dir);
}

TestSuite(idxcache, .init = setup, .fini = teardown, .timeout = 60);

static scf_options opts(const char *index_dir, uint32_t flags)
{
	return (scf_options){ .size = sizeof(scf_options), .strategy = SCF_STRATEGY_STREAMING,
	                      .batch_size = 128, .fetch_factor = 4, .threads = 2,
	                      .index_dir = index_dir, .flags = flags };
}

static char *write_csr(const char *name, uint64_t seed, int deflate)
{
	char *p = fx_path(dir, name);
	fx_csr_spec s = { .n_rows = 3000, .n_cols = 400, .mean_nnz = 20, .empty_every = 9,
	                  .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 64,
	                  .resizable = 1, .deflate = deflate, .seed = seed };

	cr_assert_eq(fx_write_csr(p, &s), 0, "fixture %s", name);
	return p;
}

/* One delivered row against the reference (CSR or dense output); 0 when equal. */
static int row_matches(const fx_ref *ref, const scf_batch *b, uint64_t j)
{
	uint64_t r = b->row_ids[j];
	int64_t lo = ref->indptr[r], hi = ref->indptr[r + 1];

	if (b->output == SCF_OUTPUT_DENSE) {
		const float *row = b->data + j * ref->n_cols;
		uint64_t nz = 0;
		for (uint64_t c = 0; c < ref->n_cols; c++)
			nz += row[c] != 0;
		for (int64_t k = lo; k < hi; k++)
			if (row[ref->indices[k]] != (float)ref->data[k])
				return -1;
		return nz == (uint64_t)(hi - lo) ? 0 : -1;
	}
	if (b->indptr[j + 1] - b->indptr[j] != hi - lo)
		return -1;
	for (int64_t k = 0; k < hi - lo; k++)
		if (b->indices[b->indptr[j] + k] != ref->indices[lo + k] ||
		    b->data[b->indptr[j] + k] != (float)ref->data[lo + k])
			return -1;
	return 0;
}

/*
 * Stream one epoch in file order and compare every row with H5Dread's;
 * 0 when all match, else -1, or the open's error code when fail_nth (the
 * allocation of the open made to fail, 0: none; *failed: whether one did)
 * made it fail.  No
 * Criterion asserts: forked children use it too.  note (when not NULL)
 * receives scf_index_note().
 */
static int stream_checked(const char *path, scf_options o, char *note, size_t nlen,
                          scf_info *info, uint64_t fail_nth, uint64_t *failed)
{
	char err[1024];
	scf_loader *l;
	scf_batch *b;
	fx_ref ref;
	uint64_t next = 0;
	int rc, bad = 0;

	if (fx_ref_load(path, o.matrix ? o.matrix : "X", &ref) != 0)
		return -1;
	scf__fault_alloc_after(fail_nth);
	rc = scf_open(&l, path, &o, err, sizeof(err));
	if (failed)
		*failed = scf__fault_alloc_failed();
	scf__fault_alloc_after(0);
	if (rc < 0) {
		if (!fail_nth)
			fprintf(stderr, "scf_open: %s\n", err);
		fx_ref_free(&ref);
		return fail_nth ? rc : -1;
	}
	if (note)
		snprintf(note, nlen, "%s", scf_index_note(l, 0));
	if (info) {
		info->size = sizeof(*info);
		scf_info_get(l, info);
	}
	while ((rc = scf_next(l, &b)) == 0) {
		for (uint64_t j = 0; j < b->n_rows; j++)
			bad |= b->row_ids[j] != next++ || row_matches(&ref, b, j) != 0;
		scf_release(l, b);
	}
	/* the I/O thread starts inside scf_open(): the allocation made to fail
	 * may be its first fetch's, which then ends the stream with -ENOMEM */
	if (fail_nth && rc == -ENOMEM && !bad) {
		scf_close(l);
		fx_ref_free(&ref);
		return rc;
	}
	bad |= rc != SCF_END_OF_EPOCH || next != ref.n_rows;
	scf_close(l);
	fx_ref_free(&ref);
	return bad ? -1 : 0;
}

static int stream_matches(const char *path, scf_options o, char *note, size_t nlen,
                          scf_info *info)
{
	return stream_checked(path, o, note, nlen, info, 0, NULL);
}

/* Open and compare; the note must start with `want`. */
static void expect(const char *path, scf_options o, const char *want, const char *why)
{
	char note[8192];
	scf_info info;

	cr_assert_eq(stream_matches(path, o, note, sizeof(note), &info), 0,
	             "%s: rows differ from H5Dread's (note: %s)", why, note);
	cr_assert_eq(strncmp(note, want, strlen(want)), 0, "%s: note \"%s\", expected \"%s...\"",
	             why, note, want);
	if (strcmp(want, "reused") == 0)
		cr_assert_eq(info.index_cached, 1, "%s", why);
	if (strncmp(want, "built", 5) == 0 || strncmp(want, "rebuilt", 7) == 0)
		cr_assert_eq(info.index_built, 1, "%s", why);
}

Test(idxcache, reused_and_equal_to_h5dread)
{
	char *p = write_csr("a.h5ad", 1, 0), *cache = fx_path(dir, "a.h5ad.scfidx");
	char *idx = fx_path(dir, "idx"), where[4200], err[512];
	struct stat st;

	/* beside the file by default */
	expect(p, opts(NULL, 0), "built", "first open");
	cr_assert_eq(stat(cache, &st), 0, "no cache beside the file");
	expect(p, opts(NULL, 0), "reused", "second open");
	expect(p, opts(NULL, SCF_F_NO_INDEX_CACHE), "not used", "cache disabled");
	/* in a directory of one's own */
	expect(p, opts(idx, 0), "built", "index_dir");
	expect(p, opts(idx, 0), "reused", "index_dir again");
	scf_options o = opts(idx, 0);
	cr_assert_eq(scf_index_build(p, &o, where, sizeof(where), err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(strncmp(where, idx, strlen(idx)), 0, "cache at %s", where);
	cr_assert_eq(unlink(where), 0);
	cr_assert_eq(scf_index_build(p, &o, where, sizeof(where), err, sizeof(err)), 0, "%s", err);
	o.flags = SCF_F_NO_INDEX_CACHE;
	cr_assert_eq(scf_index_build(p, &o, NULL, 0, err, sizeof(err)), -EINVAL);
	cr_assert_lt(scf_index_build(cache, NULL, NULL, 0, err, sizeof(err)), 0,
	             "a cache file is no .h5ad");
	free(idx);
	free(cache);
	free(p);
}

Test(idxcache, filtered_dense_layers_and_collections)
{
	char *z = write_csr("z.h5ad", 2, 4), *d = fx_path(dir, "d.h5ad");
	char *c = write_csr("c.h5ad", 3, 0);
	fx_dense_spec ds = { .n_rows = 500, .n_cols = 70, .data_type = FX_F32, .chunk_rows = 16,
	                     .chunk_cols = 32, .density = 0.2, .seed = 4 };
	const char *both[2] = { z, c };
	scf_options o = opts(NULL, 0);
	char err[1024];
	scf_info info = { .size = sizeof(info) };
	scf_loader *l;

	expect(z, o, "built", "deflate");
	expect(z, o, "reused", "deflate again");
	cr_assert_eq(fx_write_dense(d, &ds), 0);
	o.output = SCF_OUTPUT_DENSE;
	expect(d, o, "built", "dense");
	expect(d, o, "reused", "dense again");
	o.output = SCF_OUTPUT_CSR;
	/* another matrix key: a cache of its own, beside X's */
	fx_csr_spec ls = { .matrix = "layers/counts", .n_rows = 700, .n_cols = 400,
	                   .mean_nnz = 10, .index_type = FX_I32, .indptr_type = FX_I64,
	                   .chunk = 32, .resizable = 1, .seed = 12 };
	char *lp = fx_path(dir, "l.h5ad");
	cr_assert_eq(fx_write_csr(lp, &ls), 0);
	o.matrix = "layers/counts";
	expect(lp, o, "built", "layers/counts");
	expect(lp, o, "reused", "layers/counts again");
	char note[8192];
	cr_assert_eq(stream_matches(lp, o, note, sizeof(note), NULL), 0);
	cr_assert_not_null(strstr(note, "l.h5ad.layers_counts-"), "%s", note);
	o.matrix = NULL;
	free(lp);
	cr_assert_eq(scf_open_collection(&l, both, 2, &o, err, sizeof(err)), 0, "%s", err);
	scf_info_get(l, &info);
	cr_assert_eq(info.index_cached, 1, "z.h5ad's cache is reused");
	cr_assert_eq(info.index_built, 1, "c.h5ad's is built");
	cr_assert_eq(strncmp(scf_index_note(l, 1), "built", 5), 0, "%s", scf_index_note(l, 1));
	cr_assert_str_empty(scf_index_note(l, 2));
	scf_close(l);
	free(z);
	free(d);
	free(c);
}

/* A copy of the file made a moment later: another mtime. */
static void rewrite_in_place(const char *p)
{
	size_t len;
	uint8_t *b = fx_slurp(p, &len);

	usleep(20000); /* past the filesystem's timestamp granularity */
	fx_spill(p, b, len);
	free(b);
}

Test(idxcache, file_changed_is_never_trusted)
{
	char *p = write_csr("f.h5ad", 5, 0), *other = write_csr("g.h5ad", 6, 0);
	struct timespec t[2] = { { 0, UTIME_OMIT }, { 1000000000, 123 } };
	int fd;

	expect(p, opts(NULL, 0), "built", "first");
	/* touched: the bytes are the same, the mtime is not */
	cr_assert_eq(utimensat(AT_FDCWD, p, t, 0), 0);
	expect(p, opts(NULL, 0), "rebuilt", "touched");
	expect(p, opts(NULL, 0), "reused", "after touch");
	/* rewritten in place: same inode and size, new mtime */
	rewrite_in_place(p);
	expect(p, opts(NULL, 0), "rebuilt", "rewritten");
	/* replaced by another matrix (rename: another inode) */
	cr_assert_eq(rename(other, p), 0);
	expect(p, opts(NULL, 0), "rebuilt", "replaced");
	/* appended to: HDF5 reads a longer file; its size says it changed */
	fd = open(p, O_WRONLY | O_APPEND);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "appended", 8), 8);
	close(fd);
	expect(p, opts(NULL, 0), "rebuilt", "appended");
	/* truncated: the open must fail, not take the old index */
	cr_assert_eq(truncate(p, (off_t)(fx_file_len(p) / 2)), 0);
	char err[1024];
	scf_options o = opts(NULL, 0);
	scf_loader *l = NULL;
	cr_assert_lt(scf_open(&l, p, &o, err, sizeof(err)), 0, "a truncated file opened");
	free(p);
	free(other);
}

Test(idxcache, damaged_cache_is_rebuilt)
{
	char *p = write_csr("h.h5ad", 7, 1), *cache = fx_path(dir, "h.h5ad.scfidx");
	size_t len;
	uint8_t *good;
	uint64_t state = 0x9e3779b97f4a7c15ULL;

	expect(p, opts(NULL, 0), "built", "first");
	good = fx_slurp(cache, &len);
	cr_assert_gt(len, sizeof(scf__idx_hdr));
	/* cut short at several lengths */
	const size_t cuts[] = { 0, 1, 8, sizeof(scf__idx_hdr) - 1, sizeof(scf__idx_hdr),
	                        sizeof(scf__idx_hdr) + 64, len / 2, len - 64, len - 1 };
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		char why[64];
		snprintf(why, sizeof(why), "cut at %zu of %zu", cuts[i], len);
		fx_spill(cache, good, cuts[i]);
		expect(p, opts(NULL, 0), "rebuilt", why);
	}
	/* a byte flipped anywhere: header, payload or padding */
	for (int i = 0; i < 24; i++) {
		char why[64];
		state = state * 6364136223846793005ULL + 1442695040888963407ULL;
		size_t at = (size_t)(state >> 33) % len;
		uint8_t *b = malloc(len);
		memcpy(b, good, len);
		b[at] ^= (uint8_t)(1u << (state >> 29 & 7));
		fx_spill(cache, b, len);
		free(b);
		snprintf(why, sizeof(why), "bit flipped at byte %zu", at);
		expect(p, opts(NULL, 0), "rebuilt", why);
	}
	/* and the good one is still good */
	fx_spill(cache, good, len);
	expect(p, opts(NULL, 0), "reused", "restored");
	free(good);
	free(cache);
	free(p);
}

/* Edit the cache, reseal its checksums: only the bound checks stand in the way. */
static void resealed_edit(const char *p, const char *cache, uint64_t off, const void *v,
                          size_t n, const char *why)
{
	size_t len;
	uint8_t *good = fx_slurp(cache, &len);

	fx_poke(cache, off, v, n);
	cr_assert_eq(scf__idx_reseal(cache), 0);
	expect(p, opts(NULL, 0), "rebuilt", why);
	fx_spill(cache, good, len);
	expect(p, opts(NULL, 0), "reused", "restored");
	free(good);
}

Test(idxcache, numbers_are_checked_beyond_the_checksum)
{
	char *p = write_csr("n.h5ad", 8, 0), *cache = fx_path(dir, "n.h5ad.scfidx");
	scf__idx_hdr h;
	size_t len;
	uint8_t *b;

	expect(p, opts(NULL, 0), "built", "first");
	b = fx_slurp(cache, &len);
	memcpy(&h, b, sizeof(h));
	free(b);
	uint64_t eof = fx_file_len(p), rec = h.ds[0].rec_off, rec1 = h.ds[1].rec_off;
	uint64_t past = eof - 100, zero = 0, big = 1ull << 62;
	uint8_t unwritten[12];
	int64_t down = -1, huge = INT64_MAX;
	uint32_t size0 = 0;

	memset(unwritten, 0xff, 8);
	memset(unwritten + 8, 0, 4);
	resealed_edit(p, cache, rec + 12 * 5, &past, 8, "chunk running past the end");
	resealed_edit(p, cache, rec + 12 * (h.ds[0].n - 1), &past, 8, "last chunk past the end");
	resealed_edit(p, cache, rec + 12 * 5 + 8, &size0, 4, "chunk of 0 bytes");
	resealed_edit(p, cache, rec1 + 12 * 7, &big, 8, "chunk address past the end");
	resealed_edit(p, cache, rec1 + 12 * 7, &zero, 8, "chunk inside the superblock");
	resealed_edit(p, cache, rec + 12 * 3, unwritten, 12, "a chunk holding entries unwritten");
	resealed_edit(p, cache, h.indptr_off + 8 * 100, &down, 8, "indptr decreasing");
	resealed_edit(p, cache, h.indptr_off, &down, 8, "indptr negative");
	resealed_edit(p, cache, h.indptr_off + 8 * h.n_rows, &huge, 8, "indptr past data");
	free(cache);
	free(p);
}

Test(idxcache, processes_building_at_once)
{
	char *p = write_csr("m.h5ad", 9, 0), *idx = fx_path(dir, "shared");
	pid_t pid[4];

	for (int i = 0; i < 4; i++) {
		pid[i] = fork();
		cr_assert_geq(pid[i], 0);
		if (pid[i] == 0)
			_exit(stream_matches(p, opts(idx, 0), NULL, 0, NULL) == 0 ? 0 : 1);
	}
	for (int i = 0; i < 4; i++) {
		int status = 0;
		cr_assert_eq(waitpid(pid[i], &status, 0), pid[i]);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		          "process %d delivered wrong rows or failed", i);
	}
	expect(p, opts(idx, 0), "reused", "after the race");
	/* no temporary file left behind */
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls %s | grep -v '\\.scfidx$')\"", idx);
	cr_assert_eq(system(cmd), 0, "temporary files left in %s", idx);
	free(idx);
	free(p);
}

Test(idxcache, unwritable_directory_falls_back)
{
	char *p = write_csr("r.h5ad", 10, 0), *file = fx_path(dir, "plain");
	char *bad = fx_path(file, "sub"), *xdg = fx_path(dir, "xdg"), note[8192];
	scf_info info;

	/* a directory below a regular file cannot be made, even by root */
	fx_spill(file, "x", 1);
	cr_assert_eq(stream_matches(p, opts(bad, 0), note, sizeof(note), &info), 0);
	cr_assert_eq(strncmp(note, "built ", 6), 0, "%s", note);
	cr_assert_eq(strncmp(note + 6, xdg, strlen(xdg)), 0, "not in $XDG_CACHE_HOME: %s", note);
	cr_assert_not_null(strstr(note, "cannot write"), "%s", note);
	expect(p, opts(bad, 0), "reused", "fallback again");
	/* nowhere to write: the open still works */
	setenv("XDG_CACHE_HOME", bad, 1);
	setenv("HOME", bad, 1);
	cr_assert_eq(stream_matches(p, opts(bad, 0), note, sizeof(note), &info), 0);
	cr_assert_eq(strncmp(note, "not cached", 10), 0, "%s", note);
	cr_assert_eq(info.index_built + info.index_cached, 0);
	free(xdg);
	free(bad);
	free(file);
	free(p);
}

/*
 * Every allocation of an open that builds the cache, and of one that
 * reuses it, made to fail in turn: the open fails with -ENOMEM or works
 * (a cache it could not write or read is not needed) and then delivers
 * the right rows.
 */
Test(idxcache, every_allocation_may_fail)
{
	char *p = write_csr("o.h5ad", 11, 0), *cache = fx_path(dir, "o.h5ad.scfidx");
	uint64_t tried[2] = { 0, 0 }, survived[2] = { 0, 0 };

	for (int reuse = 0; reuse < 2; reuse++) {
		for (uint64_t n = 1; n < 20000; n++) {
			if (!reuse)
				unlink(cache);
			else
				cr_assert_eq(stream_matches(p, opts(NULL, 0), NULL, 0, NULL), 0);
			uint64_t failed = 0;
			int rc = stream_checked(p, opts(NULL, 0), NULL, 0, NULL, n, &failed);
			tried[reuse]++;
			cr_assert(rc == 0 || rc == -ENOMEM, "n %lu: rc %d", n, rc);
			survived[reuse] += failed && rc == 0;
			if (!failed)
				break;
		}
		cr_assert_gt(tried[reuse], 10, "the injector reached only %lu allocations",
		             tried[reuse]);
	}
	cr_log_info("allocations failed one by one: %lu building, %lu reusing; the open "
	            "worked anyway after %lu and %lu of them", tried[0], tried[1], survived[0],
	            survived[1]);
	free(cache);
	free(p);
}
