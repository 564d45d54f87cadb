/*
 * tests/test_filters — engine/filters against the real writers: every chunk
 * of files written by the HDF5 C API (deflate, shuffle, fletcher32), by h5py
 * (lzf, gzip, shuffle) and by HDF5 direct chunk writes of libzstd frames is
 * pread raw, decoded, and compared with H5Dread (or the source data where
 * Debian's HDF5 cannot read the filter); then corrupt, truncated and
 * unsupported input must fail with a sentence and never crash (run it under
 * ASan: -DSCF_ASAN=ON).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libdeflate.h>
#include <zstd.h>

#include "common/codecs.h"
#include "scfetch.h"
#include "tests/fixtures.h"

extern char **environ;

#define ZSTD_ID 32015
#define LZF_ID 32000
#define NO_H5PY 3 /* exit status of write_filtered.py without h5py */

static char *dir;

static void setup(void) { dir = fx_tmpdir(); cr_assert_not_null(dir); }
static void teardown(void) { fx_rmdir(dir); }

TestSuite(filters, .init = setup, .fini = teardown, .timeout = 240);

/* ---- source data: what single-cell chunks look like ---- */

enum el { T_F32, T_I32, T_I64, T_U16, T_U8 };

static uint64_t rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return *s >> 33;
}

static size_t el_size(int t)
{
	static const size_t sz[] = { 4, 4, 8, 2, 1 };
	return sz[t];
}

static hid_t el_h5type(int t)
{
	switch (t) {
	case T_F32: return H5T_NATIVE_FLOAT;
	case T_I32: return H5T_NATIVE_INT32;
	case T_I64: return H5T_NATIVE_INT64;
	case T_U16: return H5T_NATIVE_UINT16;
	default:    return H5T_NATIVE_UINT8;
	}
}

/* Counts as floats, sorted column indices, small unsigned values. */
static void *make_data(int t, size_t n, uint64_t seed)
{
	uint8_t *buf = malloc(n * el_size(t) + 1);
	int64_t col = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t r = rnd(&seed);
		if (i % 500 == 0)
			col = 0; /* a new cell: its indices start over */
		col += 1 + (int64_t)(r % 40);
		switch (t) {
		case T_F32: ((float *)buf)[i] = r % 10 < 7 ? 1.0f + (float)(r % 2) : (float)(r % 97); break;
		case T_I32: ((int32_t *)buf)[i] = (int32_t)col; break;
		case T_I64: ((int64_t *)buf)[i] = col + ((int64_t)1 << 33); break;
		case T_U16: ((uint16_t *)buf)[i] = (uint16_t)(r % 300); break;
		default:    buf[i] = (uint8_t)(r % 7 ? r % 5 : r); break;
		}
	}
	return buf;
}

/* ---- fixtures from the HDF5 C API ---- */

typedef struct dspec {
	const char *name;
	int type;            /* enum el */
	size_t n, chunk;
	const char *filters; /* pipeline order: "shuffle deflate:9 fletcher32" */
} dspec;

/* Add the filters named in f to dcpl, in the order given. */
static void set_filters(hid_t dcpl, const char *f)
{
	char buf[128], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", f);
	for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		if (!strncmp(w, "deflate:", 8))
			cr_assert_geq(H5Pset_deflate(dcpl, (unsigned)atoi(w + 8)), 0);
		else if (!strcmp(w, "shuffle"))
			cr_assert_geq(H5Pset_shuffle(dcpl), 0);
		else if (!strcmp(w, "fletcher32"))
			cr_assert_geq(H5Pset_fletcher32(dcpl), 0);
		else
			cr_assert_fail("unknown filter word %s", w);
	}
}

/* Write each spec as a chunked 1-D dataset through the ordinary H5Dwrite path. */
static char *write_hdf5(const char *file, const dspec *d, size_t nd)
{
	char *path = fx_path(dir, file);
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);

	cr_assert_geq(f, 0);
	for (size_t i = 0; i < nd; i++) {
		hsize_t n = d[i].n, c = d[i].chunk;
		hid_t sp = H5Screate_simple(1, &n, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
		cr_assert_geq(H5Pset_chunk(dcpl, 1, &c), 0);
		set_filters(dcpl, d[i].filters);
		hid_t ds = H5Dcreate2(f, d[i].name, el_h5type(d[i].type), sp, H5P_DEFAULT, dcpl,
		                      H5P_DEFAULT);
		cr_assert_geq(ds, 0, "create %s", d[i].name);
		void *data = make_data(d[i].type, d[i].n, 1000 + i);
		cr_assert_geq(H5Dwrite(ds, el_h5type(d[i].type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
		free(data);
		H5Dclose(ds);
		H5Pclose(dcpl);
		H5Sclose(sp);
	}
	H5Fclose(f);
	return path;
}

/* ---- reading chunks back raw ---- */

/* One dataset opened for chunk-by-chunk checking. */
typedef struct dset {
	hid_t f, d, mtype, space;
	int fd;
	uint64_t n, chunk;
	size_t esize;
	unsigned nf;
	scf__filter pl[SCF__MAX_FILTERS];
	hsize_t nchunks;
} dset;

/* The pipeline as the engine gets it: H5Pget_filter2, entry by entry. */
static void load_pipeline(dset *s)
{
	hid_t dcpl = H5Dget_create_plist(s->d);
	int nf = H5Pget_nfilters(dcpl);
	hsize_t c = 0;

	cr_assert(nf >= 0 && nf <= SCF__MAX_FILTERS);
	s->nf = (unsigned)nf;
	for (unsigned i = 0; i < s->nf; i++) {
		scf__filter *f = &s->pl[i];
		char name[64];
		f->n_cd = 8;
		f->id = H5Pget_filter2(dcpl, i, &f->flags, &f->n_cd, f->cd, sizeof(name), name, NULL);
		cr_assert_geq(f->id, 0);
	}
	cr_assert_eq(H5Pget_chunk(dcpl, 1, &c), 1);
	s->chunk = c;
	H5Pclose(dcpl);
}

static void dset_open(dset *s, const char *path, const char *name)
{
	hsize_t n = 0;

	memset(s, 0, sizeof(*s));
	s->f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	cr_assert_geq(s->f, 0);
	s->d = H5Dopen2(s->f, name, H5P_DEFAULT);
	cr_assert_geq(s->d, 0, "open %s", name);
	hid_t ft = H5Dget_type(s->d), sp = H5Dget_space(s->d);
	s->space = H5Dget_space(s->d);
	s->mtype = H5Tget_native_type(ft, H5T_DIR_DEFAULT);
	s->esize = H5Tget_size(ft);
	H5Sget_simple_extent_dims(sp, &n, NULL);
	s->n = n;
	H5Tclose(ft);
	H5Sclose(sp);
	load_pipeline(s);
	sp = H5Dget_space(s->d);
	cr_assert_geq(H5Dget_num_chunks(s->d, sp, &s->nchunks), 0);
	H5Sclose(sp);
	s->fd = open(path, O_RDONLY);
	cr_assert_geq(s->fd, 0);
}

static void dset_close(dset *s)
{
	close(s->fd);
	H5Sclose(s->space);
	H5Tclose(s->mtype);
	H5Dclose(s->d);
	H5Fclose(s->f);
}

/* Chunk i as stored: its bytes (malloc'd), first element and filter mask. */
static uint8_t *raw_chunk(const dset *s, hsize_t i, size_t *len, uint64_t *first,
                          uint32_t *mask)
{
	hsize_t off = 0, size = 0;
	haddr_t addr = 0;
	unsigned m = 0;

	cr_assert_geq(H5Dget_chunk_info(s->d, s->space, i, &off, &m, &addr, &size), 0);
	uint8_t *b = malloc(size + 1);
	cr_assert_eq(pread(s->fd, b, size, (off_t)addr), (ssize_t)size);
	*len = size;
	*first = off;
	*mask = m;
	return b;
}

/* Elements [first, first+count) through H5Dread: the independent reference. */
static uint8_t *h5_range(const dset *s, uint64_t first, uint64_t count)
{
	hsize_t st = first, cnt = count;
	hid_t fs = H5Dget_space(s->d), ms = H5Screate_simple(1, &cnt, NULL);
	uint8_t *b = malloc(count * s->esize + 1);

	cr_assert_geq(H5Sselect_hyperslab(fs, H5S_SELECT_SET, &st, NULL, &cnt, NULL), 0);
	cr_assert_geq(H5Dread(s->d, s->mtype, ms, fs, H5P_DEFAULT, b), 0);
	H5Sclose(ms);
	H5Sclose(fs);
	return b;
}

/* Offset of the first differing byte, or -1. */
static long first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return (long)i;
	return -1;
}

/*
 * Decode every chunk of `name` and compare its valid prefix with `ref`
 * (the whole dataset's bytes) or, when ref is NULL, with H5Dread.
 * Returns how many chunks had a non-zero filter mask.
 */
static unsigned check_dataset(const char *path, const char *name, const uint8_t *ref)
{
	scf__filter_ctx *c = scf__filter_ctx_new();
	unsigned masked = 0;
	dset s;
	char err[300];

	cr_assert_not_null(c);
	dset_open(&s, path, name);
	cr_assert_gt(s.nchunks, 0);
	size_t out_len = s.chunk * s.esize;
	uint8_t *out = malloc(out_len);
	for (hsize_t i = 0; i < s.nchunks; i++) {
		size_t len;
		uint64_t first;
		uint32_t mask;
		uint8_t *raw = raw_chunk(&s, i, &len, &first, &mask);
		err[0] = '\0';
		int rc = scf__filter_decode(c, s.pl, s.nf, mask, s.esize, raw, len, out, out_len,
		                            err, sizeof(err));
		cr_assert_eq(rc, 0, "%s chunk %llu: %s", name, (unsigned long long)i, err);
		uint64_t valid = s.n - first < s.chunk ? s.n - first : s.chunk;
		uint8_t *want = ref ? NULL : h5_range(&s, first, valid);
		const uint8_t *w = ref ? ref + first * s.esize : want;
		long at = first_diff(out, w, valid * s.esize);
		cr_assert_eq(at, -1, "%s chunk %llu differs at byte %ld", name,
		             (unsigned long long)i, at);
		masked += mask != 0;
		free(want);
		free(raw);
	}
	free(out);
	dset_close(&s);
	scf__filter_ctx_free(c);
	return masked;
}

static void check_all(const char *path, const dspec *d, size_t nd)
{
	for (size_t i = 0; i < nd; i++) {
		cr_assert_neq(d[i].n % d[i].chunk, 0, "%s: want a partial last chunk", d[i].name);
		check_dataset(path, d[i].name, NULL);
	}
}

/* ---- (a) the HDF5 C API ---- */

Test(filters, hdf5_deflate_levels_types_and_chunk_sizes)
{
	static const dspec d[] = {
		{ "f32_l1", T_F32, 10000, 1000 + 7, "deflate:1" },
		{ "f32_l9", T_F32, 70000, 16384, "deflate:9" },
		{ "i32_l1", T_I32, 9999, 4096, "deflate:1" },
		{ "i32_l9", T_I32, 12345, 777, "deflate:9" },
		{ "i64_l1", T_I64, 5000, 999, "deflate:1" },
		{ "i64_l9", T_I64, 20001, 4000, "deflate:9" },
		{ "u16_l1", T_U16, 3333, 100, "deflate:1" },
		{ "u16_l9", T_U16, 65537, 65536, "deflate:9" },
	};
	char *p = write_hdf5("deflate.h5", d, sizeof(d) / sizeof(d[0]));
	check_all(p, d, sizeof(d) / sizeof(d[0]));
	free(p);
}

Test(filters, hdf5_shuffle_then_deflate)
{
	static const dspec d[] = {
		{ "f32", T_F32, 30000, 4096, "shuffle deflate:4" },
		{ "i32", T_I32, 10001, 1000, "shuffle deflate:1" },
		{ "i64", T_I64, 9000, 1234, "shuffle deflate:9" },
		{ "u16", T_U16, 5000, 333, "shuffle deflate:6" },
		{ "shuffle_only_i64", T_I64, 3001, 500, "shuffle" },
	};
	char *p = write_hdf5("shuffle.h5", d, sizeof(d) / sizeof(d[0]));
	check_all(p, d, sizeof(d) / sizeof(d[0]));
	free(p);
}

Test(filters, hdf5_fletcher32_alone_and_with_deflate)
{
	static const dspec d[] = {
		{ "f32_alone", T_F32, 10000, 999, "fletcher32" },
		{ "u8_odd_length", T_U8, 5000, 777, "fletcher32" },
		{ "u16_alone", T_U16, 4001, 1000, "fletcher32" },
		{ "i32_deflate_then_fletcher", T_I32, 20000, 3000, "deflate:6 fletcher32" },
		{ "i64_fletcher_then_deflate", T_I64, 7000, 1500, "fletcher32 deflate:1" },
		{ "f32_all_three", T_F32, 9000, 2000, "shuffle deflate:4 fletcher32" },
		{ "u8_deflate_fletcher", T_U8, 9999, 1001, "deflate:9 fletcher32" },
	};
	char *p = write_hdf5("fletcher.h5", d, sizeof(d) / sizeof(d[0]));
	check_all(p, d, sizeof(d) / sizeof(d[0]));
	free(p);
}

/* ---- (b) h5py ---- */

/* Run tests/write_filtered.py; 1 when h5py is missing, so the caller skips. */
static int run_h5py_writer(const char *h5, const char *refdir)
{
	char *argv[] = { SCF_TEST_PYTHON, SCF_SOURCE_DIR "/tests/write_filtered.py",
	                 (char *)h5, (char *)refdir, NULL };
	pid_t pid;
	int status;

	if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0)
		return 1;
	while (waitpid(pid, &status, 0) < 0)
		cr_assert_eq(errno, EINTR);
	if (WIFEXITED(status) && WEXITSTATUS(status) == NO_H5PY)
		return 1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The source bytes write_filtered.py saved beside the file. */
static uint8_t *load_ref(const char *name, size_t *len)
{
	char file[128];
	snprintf(file, sizeof(file), "%s.bin", name);
	char *p = fx_path(dir, file);
	FILE *f = fopen(p, "rb");

	cr_assert_not_null(f, "%s", p);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	rewind(f);
	uint8_t *b = malloc(*len + 1);
	cr_assert_eq(fread(b, 1, *len, f), *len);
	fclose(f);
	free(p);
	return b;
}

/* The h5py file, written once per test that needs it; NULL after a skip. */
static char *h5py_file(void)
{
	char *p = fx_path(dir, "h5py.h5");
	int rc = run_h5py_writer(p, dir);

	if (rc == 1) {
		free(p);
		cr_skip_test("h5py is not installed for /usr/bin/python3 (Debian: python3-h5py)");
		return NULL;
	}
	cr_assert_eq(rc, 0, "write_filtered.py failed");
	return p;
}

Test(filters, h5py_lzf_gzip_shuffle)
{
	static const char *lzf[] = { "lzf_f32", "lzf_i32", "lzf_shuffle_f32",
	                             "lzf_shuffle_fletcher_i64", "mixed_lzf" };
	static const char *gz[] = { "gzip_f32", "gzip_i64", "shuffle_gzip_f32", "shuffle_gzip_u16" };
	char *p = h5py_file();
	size_t n;

	for (size_t i = 0; i < sizeof(lzf) / sizeof(lzf[0]); i++) {
		uint8_t *ref = load_ref(lzf[i], &n);
		unsigned masked = check_dataset(p, lzf[i], ref);
		if (!strcmp(lzf[i], "mixed_lzf"))
			cr_assert_gt(masked, 0, "random chunks should be stored raw, lzf bit set");
		free(ref);
	}
	for (size_t i = 0; i < sizeof(gz) / sizeof(gz[0]); i++) {
		uint8_t *ref = load_ref(gz[i], &n);
		check_dataset(p, gz[i], ref);
		check_dataset(p, gz[i], NULL);
		free(ref);
	}
	free(p);
}

/* ---- (c) zstd through direct chunk writes ---- */

/* HDF5's shuffle, for building chunks the library would have built. */
static void shuffle_bytes(uint8_t *dst, const uint8_t *src, size_t len, size_t k)
{
	size_t n = len / k;

	for (size_t b = 0; b < k; b++)
		for (size_t e = 0; e < n; e++)
			dst[b * n + e] = src[e * k + b];
	memcpy(dst + n * k, src + n * k, len - n * k);
}

/* One zstd frame; with_size 0 leaves the content size out of the header. */
static uint8_t *zstd_frame(const uint8_t *src, size_t len, int level, int with_size,
                           int checksum, size_t *out_len)
{
	ZSTD_CCtx *z = ZSTD_createCCtx();
	size_t cap = ZSTD_compressBound(len);
	uint8_t *dst = malloc(cap);

	ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, with_size);
	ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, checksum);
	if (with_size) {
		*out_len = ZSTD_compress2(z, dst, cap, src, len);
	} else {
		ZSTD_inBuffer in = { src, len, 0 };
		ZSTD_outBuffer out = { dst, cap, 0 };
		cr_assert_eq(ZSTD_compressStream2(z, &out, &in, ZSTD_e_end), 0);
		*out_len = out.pos;
	}
	cr_assert(!ZSTD_isError(*out_len));
	ZSTD_freeCCtx(z);
	return dst;
}

/*
 * Chunk k of a zstd dataset as stored: frames for most chunks, one frame
 * without a content size, and one chunk left raw with zstd's mask bit set.
 */
static uint8_t *zstd_chunk(const uint8_t *chunk, size_t bytes, size_t esize, int shuffle,
                           hsize_t k, size_t *len, uint32_t *mask)
{
	uint8_t *tmp = malloc(bytes);
	unsigned zbit = shuffle ? 2 : 1;

	if (shuffle)
		shuffle_bytes(tmp, chunk, bytes, esize);
	else
		memcpy(tmp, chunk, bytes);
	*mask = 0;
	if (k == 1) {
		*mask = zbit;
		*len = bytes;
		return tmp;
	}
	uint8_t *f = zstd_frame(tmp, bytes, k % 3 ? 3 : 19, k != 2, 0, len);
	free(tmp);
	return f;
}

/* A zstd-filtered dataset built chunk by chunk; returns the padded source. */
static uint8_t *write_zstd_dataset(hid_t f, const char *name, int type, size_t n, size_t chunk,
                                   int shuffle)
{
	size_t es = el_size(type), nch = (n + chunk - 1) / chunk;
	hsize_t dn = n, dc = chunk;
	hid_t sp = H5Screate_simple(1, &dn, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
	uint8_t *src = calloc(nch * chunk, es);
	uint8_t *data = make_data(type, n, 77);

	memcpy(src, data, n * es);
	free(data);
	cr_assert_geq(H5Pset_chunk(dcpl, 1, &dc), 0);
	if (shuffle)
		cr_assert_geq(H5Pset_shuffle(dcpl), 0);
	cr_assert_geq(H5Pset_filter(dcpl, ZSTD_ID, H5Z_FLAG_OPTIONAL, 0, NULL), 0);
	hid_t ds = H5Dcreate2(f, name, el_h5type(type), sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	cr_assert_geq(ds, 0);
	for (hsize_t k = 0; k < nch; k++) {
		size_t len;
		uint32_t mask;
		hsize_t off = k * chunk;
		uint8_t *z = zstd_chunk(src + off * es, chunk * es, es, shuffle, k, &len, &mask);
		cr_assert_geq(H5Dwrite_chunk(ds, H5P_DEFAULT, mask, &off, len, z), 0);
		free(z);
	}
	H5Dclose(ds);
	H5Pclose(dcpl);
	H5Sclose(sp);
	return src;
}

Test(filters, zstd_direct_chunk_writes)
{
	static const struct { const char *name; int type; size_t n, chunk; int shuffle; } d[] = {
		{ "zstd_f32", T_F32, 100000, 16384, 0 },
		{ "zstd_i32", T_I32, 20000, 3000, 0 },
		{ "zstd_i64", T_I64, 9999, 1000, 0 },
		{ "zstd_u16", T_U16, 5000, 777, 0 },
		{ "shuffle_zstd_f32", T_F32, 30000, 4096, 1 },
		{ "shuffle_zstd_i64", T_I64, 7777, 1000, 1 },
	};
	enum { ND = sizeof(d) / sizeof(d[0]) };
	char *p = fx_path(dir, "zstd.h5");
	hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	uint8_t *src[ND];

	cr_assert_geq(f, 0);
	for (int i = 0; i < ND; i++)
		src[i] = write_zstd_dataset(f, d[i].name, d[i].type, d[i].n, d[i].chunk, d[i].shuffle);
	H5Fclose(f);
	for (int i = 0; i < ND; i++) {
		unsigned masked = check_dataset(p, d[i].name, src[i]);
		cr_assert_eq(masked, 1, "%s: chunk 1 was written raw", d[i].name);
		free(src[i]);
	}
	free(p);
}

/* ---- shuffle details ---- */

/* HDF5 semantics on lengths that are not a multiple of the element size. */
Test(filters, shuffle_widths_and_tail_bytes)
{
	static const size_t width[] = { 2, 3, 4, 5, 8, 16 };
	static const size_t lens[] = { 0, 1, 7, 8, 9, 31, 64, 257, 1000, 4099, 65539 };
	scf__filter_ctx *c = scf__filter_ctx_new();
	uint64_t seed = 5;
	char err[256];

	for (size_t w = 0; w < sizeof(width) / sizeof(width[0]); w++) {
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			size_t k = width[w], len = lens[l];
			uint8_t *orig = malloc(len + 1), *sh = malloc(len + 1), *out = malloc(len + 1);
			for (size_t i = 0; i < len; i++)
				orig[i] = (uint8_t)rnd(&seed);
			shuffle_bytes(sh, orig, len, k);
			/* cd[0] as HDF5 records it; elem_size is deliberately wrong */
			scf__filter pl = { .id = 2, .n_cd = 1, .cd = { (unsigned)k } };
			err[0] = '\0';
			cr_assert_eq(scf__filter_decode(c, &pl, 1, 0, 1, sh, len, out, len, err,
			                                sizeof(err)), 0, "%s", err);
			cr_assert_eq(first_diff(out, orig, len), -1, "width %zu len %zu", k, len);
			/* no cd_values: the element size comes from the caller */
			scf__filter bare = { .id = 2 };
			cr_assert_eq(scf__filter_decode(c, &bare, 1, 0, k, sh, len, out, len, err,
			                                sizeof(err)), 0, "%s", err);
			cr_assert_eq(first_diff(out, orig, len), -1, "width %zu len %zu (elem_size)", k, len);
			free(orig);
			free(sh);
			free(out);
		}
	}
	scf__filter_ctx_free(c);
}

/* ---- corruption and refusals ---- */

static uint8_t *deflate_stream(const uint8_t *src, size_t len, int level, size_t *out_len)
{
	struct libdeflate_compressor *z = libdeflate_alloc_compressor(level);
	size_t cap = libdeflate_zlib_compress_bound(z, len);
	uint8_t *dst = malloc(cap);

	*out_len = libdeflate_zlib_compress(z, src, len, dst, cap);
	cr_assert_gt(*out_len, 0);
	libdeflate_free_compressor(z);
	return dst;
}

/* Decode into an exact-size heap buffer, so ASan sees any overrun; result may be NULL. */
static int try_decode(scf__filter_ctx *c, const scf__filter *pl, unsigned nf, uint32_t mask,
                      const uint8_t *in, size_t len, size_t out_len, uint8_t *result,
                      char *err, size_t errlen)
{
	uint8_t *copy = malloc(len ? len : 1), *out = malloc(out_len ? out_len : 1);
	memcpy(copy, in, len);
	err[0] = '\0';
	int rc = scf__filter_decode(c, pl, nf, mask, 4, copy, len, out, out_len, err, errlen);
	if (result)
		memcpy(result, out, out_len);
	free(copy);
	free(out);
	return rc;
}

/* What one-bit flips of a stream did. */
typedef struct harm {
	size_t refused; /* SCF_E_CORRUPT with a sentence */
	size_t wrong;   /* accepted, output differs from the original */
} harm;

/*
 * Every one-bit flip and every truncation of `stream`: never a crash, a
 * failure is always SCF_E_CORRUPT with a sentence, a truncation is always
 * refused.  Accepted flips are counted as wrong when their output differs
 * from orig (a checksum makes that rare, never impossible: Adler-32 misses
 * some multi-byte changes a flipped code produces).
 */
static harm damage(const scf__filter *pl, unsigned nf, const uint8_t *stream, size_t len,
                   const uint8_t *orig, size_t out_len)
{
	scf__filter_ctx *c = scf__filter_ctx_new();
	uint8_t *bad = malloc(len), *got = malloc(out_len);
	harm h = { 0, 0 };
	char err[300];

	for (size_t i = 0; i < len; i++) {
		memcpy(bad, stream, len);
		bad[i] ^= (uint8_t)(1u << (i % 8)); /* one bit, never none */
		int rc = try_decode(c, pl, nf, 0, bad, len, out_len, got, err, sizeof(err));
		cr_assert(rc == 0 || rc == SCF_E_CORRUPT, "flip at %zu: rc %d", i, rc);
		if (rc < 0)
			cr_assert_neq(err[0], '\0', "flip at %zu: no message", i);
		h.refused += rc < 0;
		h.wrong += rc == 0 && orig && memcmp(got, orig, out_len) != 0;
	}
	for (size_t t = 0; t < len; t++) {
		int rc = try_decode(c, pl, nf, 0, stream, t, out_len, NULL, err, sizeof(err));
		cr_assert_eq(rc, SCF_E_CORRUPT, "truncated to %zu of %zu bytes went unnoticed", t, len);
		cr_assert_neq(err[0], '\0');
	}
	free(got);
	free(bad);
	scf__filter_ctx_free(c);
	return h;
}

/* A checksummed format refuses nearly every flip and almost never lets one through. */
static void assert_checked(harm h, size_t len, const char *what)
{
	cr_assert_geq(h.refused, len * 99 / 100, "%s: only %zu of %zu flips refused", what,
	              h.refused, len);
	cr_assert_leq(h.wrong, len / 1000, "%s: %zu flips gave wrong data", what, h.wrong);
}

Test(filters, corrupt_deflate)
{
	size_t n = 4096 * 4, len, len2;
	uint8_t *src = make_data(T_F32, 4096, 9), *sh = malloc(n);
	uint8_t *z = deflate_stream(src, n, 4, &len);
	scf__filter pl[2] = { { .id = 2, .n_cd = 1, .cd = { 4 } }, { .id = 1, .n_cd = 1, .cd = { 4 } } };

	assert_checked(damage(&pl[1], 1, z, len, src, n), len, "deflate");
	shuffle_bytes(sh, src, n, 4);
	uint8_t *z2 = deflate_stream(sh, n, 4, &len2);
	assert_checked(damage(pl, 2, z2, len2, src, n), len2, "shuffle+deflate");
	free(z2);
	free(z);
	free(sh);
	free(src);
}

Test(filters, corrupt_zstd)
{
	size_t n = 8192 * 4, len;
	uint8_t *src = make_data(T_I32, 8192, 10);
	uint8_t *z = zstd_frame(src, n, 3, 1, 1, &len);
	scf__filter pl = { .id = ZSTD_ID };

	assert_checked(damage(&pl, 1, z, len, src, n), len, "zstd with checksum");
	free(z);
	/* without the checksum, flips inside raw literals cannot be seen */
	z = zstd_frame(src, n, 3, 1, 0, &len);
	harm h = damage(&pl, 1, z, len, src, n);
	cr_assert_gt(h.refused, len / 20, "only %zu of %zu flips refused", h.refused, len);
	free(z);
	free(src);
}

/* Hand-made LZF streams that break one bounds rule each. */
Test(filters, lzf_bounds)
{
	static const struct { const char *why; uint8_t s[8]; size_t len, out; } bad[] = {
		{ "literal past input", { 4, 'a', 'b' }, 3, 5 },
		{ "literal past output", { 4, 'a', 'b', 'c', 'd', 'e' }, 6, 4 },
		{ "reference before start", { 0, 'a', 0x20, 1 }, 4, 4 },
		{ "reference past output", { 0, 'a', 0xe0, 200, 0 }, 5, 100 },
		{ "missing offset byte", { 0, 'a', 0x20 }, 3, 4 },
		{ "missing length byte", { 0, 'a', 0xe0 }, 3, 20 },
		{ "short output", { 1, 'a', 'b' }, 3, 3 },
		{ "empty stream", { 0 }, 0, 3 },
	};
	scf__filter_ctx *c = scf__filter_ctx_new();
	scf__filter pl = { .id = LZF_ID, .n_cd = 3, .cd = { 4, 1, 0 } };
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = try_decode(c, &pl, 1, 0, bad[i].s, bad[i].len, bad[i].out, NULL, err,
		                    sizeof(err));
		cr_assert_eq(rc, SCF_E_CORRUPT, "%s: rc %d", bad[i].why, rc);
		cr_assert(strstr(err, "lzf"), "%s: message '%s' should name lzf", bad[i].why, err);
	}
	/* and good ones: overlapping run, long reference, literal only */
	static const uint8_t ok[] = { 1, 'a', 'b', 0xe0, 2, 1, 0x20, 0 };
	uint8_t out[16];
	cr_assert_eq(scf__filter_decode(c, &pl, 1, 0, 1, ok, sizeof(ok), out, 16, err,
	                                sizeof(err)), 0, "%s", err);
	cr_assert_eq(memcmp(out, "ababababababa" "aaa", 16), 0);
	scf__filter_ctx_free(c);
}

/* Random bytes as an LZF stream: refused or decoded, never out of bounds. */
Test(filters, lzf_random_garbage)
{
	scf__filter_ctx *c = scf__filter_ctx_new();
	scf__filter pl = { .id = LZF_ID };
	uint8_t in[512];
	uint64_t seed = 11;
	char err[256];

	for (int t = 0; t < 20000; t++) {
		size_t len = rnd(&seed) % sizeof(in), out_len = rnd(&seed) % 3000;
		for (size_t i = 0; i < len; i++)
			in[i] = (uint8_t)rnd(&seed);
		if (t % 2 && len > 40)
			in[0] = 31; /* 32 literals first, so references have somewhere to point */
		int rc = try_decode(c, &pl, 1, 0, in, len, out_len, NULL, err, sizeof(err));
		cr_assert(rc == 0 || rc == SCF_E_CORRUPT, "rc %d", rc);
	}
	scf__filter_ctx_free(c);
}

/* Flips and truncations of a chunk h5py compressed with lzf. */
Test(filters, corrupt_lzf_from_h5py)
{
	char *p = h5py_file();
	dset s;
	size_t len;
	uint64_t first;
	uint32_t mask;

	dset_open(&s, p, "lzf_f32");
	uint8_t *raw = raw_chunk(&s, 0, &len, &first, &mask);
	cr_assert_eq(mask, 0);
	harm h = damage(s.pl, s.nf, raw, len, NULL, s.chunk * s.esize);
	cr_assert_gt(h.refused, len / 10, "lzf has no checksum, but many flips break it");
	free(raw);
	dset_close(&s);
	free(p);
}

/* A checksum that does not match: named, refused; HDF5's swapped form accepted. */
Test(filters, wrong_fletcher32)
{
	static const dspec d[] = { { "f", T_F32, 3000, 1000, "deflate:4 fletcher32" },
	                           { "g", T_I32, 3000, 1000, "fletcher32" } };
	char *p = write_hdf5("fl.h5", d, 2);
	scf__filter_ctx *c = scf__filter_ctx_new();
	char err[300];

	for (int k = 0; k < 2; k++) {
		dset s;
		size_t len;
		uint64_t first;
		uint32_t mask;
		dset_open(&s, p, d[k].name);
		uint8_t *raw = raw_chunk(&s, 1, &len, &first, &mask);
		size_t out_len = s.chunk * s.esize;
		for (size_t at = 0; at < len; at += len / 7 + 1) {
			raw[at] ^= 0x10;
			int rc = try_decode(c, s.pl, s.nf, mask, raw, len, out_len, NULL, err,
			                    sizeof(err));
			cr_assert_eq(rc, SCF_E_CORRUPT, "%s: flip at %zu", d[k].name, at);
			cr_assert(strstr(err, "fletcher32 checksum mismatch"), "message: %s", err);
			raw[at] ^= 0x10;
		}
		uint8_t *t = raw + len - 4, b;
		b = t[0], t[0] = t[1], t[1] = b;
		b = t[2], t[2] = t[3], t[3] = b;
		cr_assert_eq(try_decode(c, s.pl, s.nf, mask, raw, len, out_len, NULL, err,
		                        sizeof(err)), 0,
		             "pre-1.6.3 byte order should be accepted: %s", err);
		cr_assert_eq(try_decode(c, s.pl, s.nf, mask, raw, 3, out_len, NULL, err, sizeof(err)),
		             SCF_E_CORRUPT);
		free(raw);
		dset_close(&s);
	}
	scf__filter_ctx_free(c);
	free(p);
}

Test(filters, unknown_and_stacked_filters)
{
	scf__filter_ctx *c = scf__filter_ctx_new();
	uint8_t in[64] = { 0 }, out[64];
	char err[300];
	scf__filter unk = { .id = 307 }, szip = { .id = 4 };

	cr_assert_eq(scf__filter_decode(c, &unk, 1, 0, 4, in, 64, out, 64, err, sizeof(err)),
	             SCF_E_UNSUPPORTED);
	cr_assert(strstr(err, "filter 307"), "message: %s", err);
	cr_assert_eq(scf__filter_decode(c, &szip, 1, 0, 4, in, 64, out, 64, err, sizeof(err)),
	             SCF_E_UNSUPPORTED);
	cr_assert(strstr(err, "szip"), "message: %s", err);
	/* skipped by the mask: the chunk is stored as is */
	in[5] = 9;
	cr_assert_eq(scf__filter_decode(c, &unk, 1, 1, 4, in, 64, out, 64, err, sizeof(err)), 0,
	             "%s", err);
	cr_assert_eq(out[5], 9);
	scf__filter two[2] = { { .id = 1 }, { .id = ZSTD_ID } };
	cr_assert_eq(scf__filter_decode(c, two, 2, 0, 4, in, 64, out, 64, err, sizeof(err)),
	             SCF_E_UNSUPPORTED);
	cr_assert_eq(scf__filter_decode(c, two, 2, 2, 4, in, 64, out, 64, err, sizeof(err)),
	             SCF_E_CORRUPT, "zeros are not a zlib stream");
	scf__filter_ctx_free(c);
}

/* Streams that are fine but of the wrong size for the chunk. */
Test(filters, size_mismatch)
{
	scf__filter_ctx *c = scf__filter_ctx_new();
	uint8_t *src = make_data(T_F32, 1000, 3), *out = malloc(4004);
	size_t len;
	char err[300];
	scf__filter dfl = { .id = 1 }, zs = { .id = ZSTD_ID }, none = { .id = 2 };

	uint8_t *z = deflate_stream(src, 4000, 6, &len);
	cr_assert_eq(scf__filter_decode(c, &dfl, 1, 0, 4, z, len, out, 4004, err, sizeof(err)),
	             SCF_E_CORRUPT);
	cr_assert(strstr(err, "4000") && strstr(err, "4004"), "message: %s", err);
	cr_assert_eq(scf__filter_decode(c, &dfl, 1, 0, 4, z, len, out, 3996, err, sizeof(err)),
	             SCF_E_CORRUPT);
	free(z);
	z = zstd_frame(src, 4000, 3, 1, 0, &len);
	cr_assert_eq(scf__filter_decode(c, &zs, 1, 0, 4, z, len, out, 4004, err, sizeof(err)),
	             SCF_E_CORRUPT);
	cr_assert(strstr(err, "declares"), "message: %s", err);
	free(z);
	z = zstd_frame(src, 4000, 3, 0, 0, &len);
	cr_assert_eq(scf__filter_decode(c, &zs, 1, 0, 4, z, len, out, 4004, err, sizeof(err)),
	             SCF_E_CORRUPT);
	free(z);
	/* nothing active: stored bytes must already be the chunk */
	cr_assert_eq(scf__filter_decode(c, &none, 1, 1, 4, src, 4000, out, 4004, err, sizeof(err)),
	             SCF_E_CORRUPT);
	cr_assert_eq(scf__filter_decode(c, NULL, 0, 0, 4, src, 4000, out, 4000, err, sizeof(err)), 0);
	cr_assert_eq(memcmp(out, src, 4000), 0);
	free(out);
	free(src);
	scf__filter_ctx_free(c);
}

/*
 * The prefix decode behind partial inflate: a deflate-only chunk yields
 * exactly its first `want` bytes (the oracle is the source the stream was
 * compressed from, by libdeflate's compressor); a truncated or
 * damaged stream is an error with a message; any other pipeline, or a want
 * of the whole chunk, is decoded whole.
 */
Test(filters, prefix_decode)
{
	scf__filter_ctx *c = scf__filter_ctx_new();
	uint8_t *src = make_data(T_F32, 20000, 5), *out = malloc(80000);
	size_t len, made;
	char err[300];
	scf__filter dfl = { .id = 1 }, pair[2] = { { .id = 2, .n_cd = 1, .cd = { 4 } }, { .id = 1 } };

	uint8_t *z = deflate_stream(src, 80000, 6, &len);
	const size_t wants[] = { 1, 4, 4096, 39999, 79999 };
	for (size_t i = 0; i < sizeof(wants) / sizeof(wants[0]); i++) {
		memset(out, 0xee, 80000);
		cr_assert_eq(scf__filter_decode_prefix(c, &dfl, 1, 0, 4, z, len, out, 80000, wants[i],
		                                       &made, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(made, wants[i]);
		cr_assert_eq(memcmp(out, src, wants[i]), 0, "prefix of %zu bytes", wants[i]);
	}
	cr_assert_eq(scf__filter_decode_prefix(c, &dfl, 1, 0, 4, z, len, out, 80000, 80000, &made,
	                                       err, sizeof(err)), 0);
	cr_assert_eq(made, 80000, "the whole chunk: the checked path");
	/* cut the stream before the bytes asked for */
	cr_assert_eq(scf__filter_decode_prefix(c, &dfl, 1, 0, 4, z, len / 4, out, 80000, 79000,
	                                       &made, err, sizeof(err)), SCF_E_CORRUPT);
	cr_assert(strstr(err, "deflate"), "message: %s", err);
	/* a damaged zlib header */
	z[0] ^= 0xff;
	cr_assert_eq(scf__filter_decode_prefix(c, &dfl, 1, 0, 4, z, len, out, 80000, 100, &made,
	                                       err, sizeof(err)), SCF_E_CORRUPT);
	free(z);
	/* shuffle + deflate: the prefix needs the whole chunk */
	uint8_t *sh = malloc(80000);
	for (size_t i = 0; i < 20000; i++)
		for (size_t b = 0; b < 4; b++)
			sh[b * 20000 + i] = src[i * 4 + b];
	z = deflate_stream(sh, 80000, 6, &len);
	cr_assert_eq(scf__filter_decode_prefix(c, pair, 2, 0, 4, z, len, out, 80000, 100, &made,
	                                       err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(made, 80000);
	cr_assert_eq(memcmp(out, src, 80000), 0);
	free(z);
	free(sh);
	free(out);
	free(src);
	scf__filter_ctx_free(c);
}
