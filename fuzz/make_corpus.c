/*
 * fuzz/make_corpus — writes the seed corpora of the libFuzzer targets:
 *   fuzz_open/     small .h5ad files of every layout the engine reads
 *                  (contiguous, v1 B-tree, fixed and extensible arrays, dense,
 *                  deflate+shuffle, fletcher32, zstd and lzf by direct chunk
 *                  writes, so indptr goes through the engine's decoders too),
 *                  each with the obs columns fuzz_open requests (categorical,
 *                  int64 beyond int32, float32, bool); and hostile-* files
 *                  with the parts hostile files get wrong (array attributes,
 *                  2-D categories, wide integers, duplicate ids, fill values)
 *   fuzz_h5chunks/ geometry header + file image of one chunked dataset, for
 *                  every chunk index HDF5 1.10 writes
 *   fuzz_filters/  one stored chunk per pipeline of fuzz/fuzz.h
 * Deterministic but for the modification times HDF5 stores in object
 * headers.  Run by fuzz/make-corpus.sh.  Usage: make_corpus DIR
 */
#include <errno.h>
#include <hdf5.h>
#include <libdeflate.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "fuzz/fuzz.h"
#include "tests/fixtures.h"
#include "tools/h5util.h"

static const char *out_dir;

static void die(const char *what)
{
	fprintf(stderr, "make_corpus: %s\n", what);
	exit(1);
}

static char *path_in(const char *sub, const char *name)
{
	static char p[4096];
	snprintf(p, sizeof(p), "%s/%s/%s", out_dir, sub, name);
	return p;
}

static void spill(const char *path, const void *a, size_t alen, const void *b, size_t blen)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen) ||
	    fclose(f) != 0)
		die(path);
}

/* ---- an LZF compressor (greedy, naive search; seeds are small) ---- */

static size_t lzf_flush(uint8_t *out, size_t o, const uint8_t *lit, size_t n)
{
	while (n) {
		size_t k = n > 32 ? 32 : n;
		out[o++] = (uint8_t)(k - 1);
		memcpy(out + o, lit, k);
		o += k;
		lit += k;
		n -= k;
	}
	return o;
}

/* Raw LZF as h5py's filter stores it; out needs in_len + in_len / 32 + 8 bytes. */
static size_t lzf_compress(const uint8_t *in, size_t n, uint8_t *out)
{
	size_t i = 0, o = 0, lit = 0;

	while (i < n) {
		size_t best = 0, dist = 0;
		for (size_t d = 1; d <= 8192 && d <= i; d++) {
			size_t l = 0;
			while (i + l < n && l < 264 && in[i + l - d] == in[i + l])
				l++;
			if (l > best) {
				best = l;
				dist = d;
			}
		}
		if (best < 3) {
			i++;
			continue;
		}
		o = lzf_flush(out, o, in + lit, i - lit);
		size_t L = best - 2, D = dist - 1;
		if (L < 7) {
			out[o++] = (uint8_t)(L << 5 | D >> 8);
		} else {
			out[o++] = (uint8_t)(7 << 5 | D >> 8);
			out[o++] = (uint8_t)(L - 7);
		}
		out[o++] = (uint8_t)(D & 0xff);
		i += best;
		lit = i;
	}
	return lzf_flush(out, o, in + lit, n - lit);
}

/* ---- filters, forward, as HDF5 applies them ---- */

/*
 * HDF5's own fletcher32 filter makes the checksum: buf is written as the one
 * chunk of a dataset in a memory-only file and the stored chunk read back,
 * so the seeds carry the checksum the real writer computes, not ours.
 */
static uint32_t fletcher32(const uint8_t *p, size_t n)
{
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), dcpl = H5Pcreate(H5P_DATASET_CREATE);
	hsize_t dim = n, off = 0;
	uint32_t mask = 0, sum;
	hsize_t stored = 0;
	uint8_t *chunk = malloc(n + 4);
	char name[64];

	snprintf(name, sizeof(name), "fletcher32-%d.h5", (int)getpid());
	if (!chunk || n == 0 || H5Pset_fapl_core(fapl, 1 << 16, 0) < 0 ||
	    H5Pset_chunk(dcpl, 1, &dim) < 0 || H5Pset_fletcher32(dcpl) < 0)
		die("fletcher32 set-up");
	hid_t f = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
	hid_t sp = H5Screate_simple(1, &dim, NULL);
	hid_t d = H5Dcreate2(f, "d", H5T_NATIVE_UCHAR, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	if (d < 0 || H5Dwrite(d, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, p) < 0 ||
	    H5Dget_chunk_storage_size(d, &off, &stored) < 0 || stored != n + 4 ||
	    H5Dread_chunk(d, H5P_DEFAULT, &off, &mask, chunk) < 0)
		die("fletcher32 through HDF5");
	memcpy(&sum, chunk + n, 4); /* little-endian, as HDF5 stores it */
	H5Dclose(d);
	H5Sclose(sp);
	H5Fclose(f);
	H5Pclose(dcpl);
	H5Pclose(fapl);
	free(chunk);
	return sum;
}

/* Apply one filter to buf[0..*len) in place (buf has room to grow). */
static void apply(int id, uint8_t *buf, size_t *len, size_t cap, size_t elem)
{
	uint8_t *tmp = malloc(cap);
	size_t n = *len;

	if (!tmp)
		die("out of memory");
	if (id == FZ_DEFLATE) {
		struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
		n = libdeflate_zlib_compress(c, buf, *len, tmp, cap);
		libdeflate_free_compressor(c);
		if (!n)
			die("deflate");
	} else if (id == FZ_ZSTD) {
		n = ZSTD_compress(tmp, cap, buf, *len, 3);
		if (ZSTD_isError(n))
			die("zstd");
	} else if (id == FZ_LZF) {
		n = lzf_compress(buf, *len, tmp);
	} else if (id == FZ_SHUFFLE) {
		size_t ne = *len / elem;
		memcpy(tmp, buf, *len);
		for (size_t b = 0; ne > 1 && elem > 1 && b < elem; b++)
			for (size_t e = 0; e < ne; e++)
				tmp[b * ne + e] = buf[e * elem + b];
	} else if (id == FZ_FLETCHER) {
		uint32_t s = fletcher32(buf, *len);
		memcpy(tmp, buf, *len);
		memcpy(tmp + *len, &s, 4);
		n = *len + 4;
	} else {
		memcpy(tmp, buf, *len);
	}
	memcpy(buf, tmp, n);
	*len = n;
	free(tmp);
}

/* Elements that look like a CSR chunk: small ints, or floats k/8 with zeros. */
static void sample(uint8_t *buf, size_t n_elem, size_t elem, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;

	memset(buf, 0, n_elem * elem);
	for (size_t i = 0; i < n_elem; i++) {
		x = x * 1664525u + 1013904223u;
		if (elem == 4 && seed % 2) {
			float v = (x >> 28) ? (float)((x >> 16) % 4000 * 2 + 1) / 8.0f : 0.0f;
			memcpy(buf + i * 4, &v, 4);
		} else {
			uint64_t v = (i * 7 + (x >> 27)) % 300;
			memcpy(buf + i * elem, &v, elem);
		}
	}
}

static void filter_seeds(void)
{
	for (unsigned k = 0; k < FZ_N_PIPELINES; k++) {
		const fz_pipeline *p = &fz_pipelines[k];
		for (unsigned e = 0; e < 4; e += (k < 10 ? 1 : 4)) {
			size_t elem = (size_t)1 << e, n_elem = e == 0 ? 700 : 400 / (e + 1) * 2;
			size_t cap = n_elem * elem * 2 + 1024, len = n_elem * elem;
			uint8_t hdr[FZ_FLT_HDR_LEN] = { (uint8_t)k, (uint8_t)e, 0, 0,
			                               (uint8_t)(n_elem & 0xff), (uint8_t)(n_elem >> 8) };
			uint8_t *buf = malloc(cap);
			char name[64];
			if (!buf)
				die("out of memory");
			sample(buf, n_elem, elem, k + e);
			for (unsigned i = 0; i < p->n; i++)
				apply(p->id[i], buf, &len, cap, elem);
			snprintf(name, sizeof(name), "pipeline%02u-elem%zu", k, elem);
			spill(path_in("fuzz_filters", name), hdr, sizeof(hdr), buf, len);
			free(buf);
		}
	}
}

/* ---- fuzz_h5chunks: one chunked dataset "d" per file ---- */

typedef struct h5c_spec {
	const char *name;
	int latest, small_sizes, deflate, early;
	hsize_t userblock;
	int rank;
	hsize_t dims[2], maxdims[2], chunk[2];
	hid_t type;
	unsigned hole_every; /* chunk c unwritten when c % hole_every == hole_every - 1 */
} h5c_spec;

static void write_h5c(const char *path, const h5c_spec *s)
{
	hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	hsize_t maxd[2] = { s->maxdims[0] ? s->maxdims[0] : s->dims[0],
	                    s->maxdims[1] ? s->maxdims[1] : s->dims[1] };

	if (s->userblock)
		H5Pset_userblock(fcpl, s->userblock);
	if (s->small_sizes)
		H5Pset_sizes(fcpl, 4, 4);
	if (s->latest)
		H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
	H5Pset_chunk(dcpl, s->rank, s->chunk);
	if (s->deflate)
		H5Pset_deflate(dcpl, 4);
	if (s->early)
		H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
	hid_t sp = H5Screate_simple(s->rank, s->dims, maxd);
	hid_t d = H5Dcreate2(f, "d", s->type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	if (f < 0 || d < 0)
		die(path);
	hsize_t n = s->dims[0] * (s->rank == 2 ? s->dims[1] : 1);
	int32_t *v = malloc(n * sizeof(int32_t) + 4);
	for (hsize_t i = 0; i < n; i++)
		v[i] = (int32_t)(i % 97);
	if (!s->hole_every) {
		H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
	} else {
		/* write chunk by chunk (1-D), skipping every hole_every-th */
		hsize_t nch = (s->dims[0] + s->chunk[0] - 1) / s->chunk[0];
		for (hsize_t c = 0; c < nch; c++) {
			if (c % s->hole_every == s->hole_every - 1)
				continue;
			hsize_t start = c * s->chunk[0], cnt = s->chunk[0];
			if (start + cnt > s->dims[0])
				cnt = s->dims[0] - start;
			hid_t fs = H5Dget_space(d), ms = H5Screate_simple(1, &cnt, NULL);
			H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &cnt, NULL);
			H5Dwrite(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, v + start);
			H5Sclose(ms);
			H5Sclose(fs);
		}
	}
	free(v);
	H5Dclose(d);
	H5Sclose(sp);
	H5Fclose(f);
	H5Pclose(dcpl);
	H5Pclose(fapl);
	H5Pclose(fcpl);
}

/* The header the HDF5 API gives for d, then the file's bytes. */
static void h5c_seed(const h5c_spec *s)
{
	char tmp[4096];
	size_t len;
	fz_h5c_hdr h = { 0 };
	uint8_t hb[FZ_H5C_HDR_LEN];
	hsize_t dims[2] = { 0, 0 }, cd[2] = { 0, 0 }, ub = 0;
	size_t sa = 0, ss = 0;
	H5O_info_t oi;

	snprintf(tmp, sizeof(tmp), "%s/.tmp.h5", out_dir);
	write_h5c(tmp, s);
	hid_t f = H5Fopen(tmp, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "d", H5P_DEFAULT);
	if (d < 0)
		die(s->name);
	hid_t fcpl = H5Fget_create_plist(f), dcpl = H5Dget_create_plist(d);
	hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
	H5Oget_info2(d, &oi, H5O_INFO_BASIC);
	H5Pget_sizes(fcpl, &sa, &ss);
	H5Pget_userblock(fcpl, &ub);
	h.rank = (uint8_t)H5Sget_simple_extent_dims(sp, dims, NULL);
	H5Pget_chunk(dcpl, 2, cd);
	h.ohdr_addr = oi.addr;
	h.dims[0] = (uint32_t)dims[0];
	h.dims[1] = (uint32_t)dims[1];
	h.chunk[0] = (uint32_t)cd[0];
	h.chunk[1] = (uint32_t)cd[1];
	h.elem_size = (uint8_t)H5Tget_size(t);
	h.sizeof_addr = (uint8_t)sa;
	h.sizeof_size = (uint8_t)ss;
	h.base_addr = (uint32_t)ub;
	H5Tclose(t);
	H5Sclose(sp);
	H5Pclose(dcpl);
	H5Pclose(fcpl);
	H5Dclose(d);
	H5Fclose(f);
	fz_h5c_pack(&h, hb);
	uint8_t *b = fx_slurp(tmp, &len);
	spill(path_in("fuzz_h5chunks", s->name), hb, sizeof(hb), b, len);
	free(b);
	remove(tmp);
}

static void h5chunks_seeds(void)
{
	const hsize_t U = H5S_UNLIMITED;
	const h5c_spec s[] = {
		{ .name = "btree-1d", .rank = 1, .dims = { 200 }, .maxdims = { U }, .chunk = { 8 },
		  .type = H5T_STD_I32LE, .hole_every = 5 },
		{ .name = "btree-2level", .rank = 1, .dims = { 300 }, .maxdims = { U },
		  .chunk = { 2 }, .type = H5T_STD_I8LE },
		{ .name = "btree-deflate", .rank = 1, .dims = { 400 }, .maxdims = { U },
		  .chunk = { 50 }, .type = H5T_STD_I32LE, .deflate = 1 },
		{ .name = "btree-2d", .rank = 2, .dims = { 20, 12 }, .maxdims = { U, 12 },
		  .chunk = { 6, 5 }, .type = H5T_STD_I16LE },
		{ .name = "btree-userblock", .rank = 1, .dims = { 64 }, .maxdims = { U },
		  .chunk = { 16 }, .type = H5T_STD_I32LE, .userblock = 512 },
		{ .name = "btree-4byte-addr", .rank = 1, .dims = { 64 }, .maxdims = { U },
		  .chunk = { 16 }, .type = H5T_STD_I32LE, .small_sizes = 1 },
		{ .name = "single", .latest = 1, .rank = 1, .dims = { 40 }, .chunk = { 40 },
		  .type = H5T_STD_I32LE },
		{ .name = "single-deflate", .latest = 1, .rank = 1, .dims = { 40 }, .chunk = { 40 },
		  .type = H5T_STD_I32LE, .deflate = 1 },
		{ .name = "implicit", .latest = 1, .rank = 1, .dims = { 60 }, .chunk = { 8 },
		  .type = H5T_STD_I32LE, .early = 1 },
		{ .name = "farray", .latest = 1, .rank = 1, .dims = { 100 }, .chunk = { 8 },
		  .type = H5T_STD_I32LE, .hole_every = 4 },
		{ .name = "farray-paged", .latest = 1, .rank = 1, .dims = { 1100 }, .chunk = { 1 },
		  .type = H5T_STD_I8LE, .hole_every = 300 },
		{ .name = "farray-deflate", .latest = 1, .rank = 1, .dims = { 200 }, .chunk = { 25 },
		  .type = H5T_STD_I32LE, .deflate = 1 },
		{ .name = "farray-2d", .latest = 1, .rank = 2, .dims = { 14, 9 }, .chunk = { 4, 4 },
		  .type = H5T_STD_I16LE },
		{ .name = "earray", .latest = 1, .rank = 1, .dims = { 120 }, .maxdims = { U },
		  .chunk = { 4 }, .type = H5T_STD_I32LE, .hole_every = 7 },
		{ .name = "earray-superblocks", .latest = 1, .rank = 1, .dims = { 300 },
		  .maxdims = { U }, .chunk = { 1 }, .type = H5T_STD_I8LE },
		{ .name = "earray-deflate", .latest = 1, .rank = 1, .dims = { 300 },
		  .maxdims = { U }, .chunk = { 10 }, .type = H5T_STD_I32LE, .deflate = 1 },
		{ .name = "earray-2d", .latest = 1, .rank = 2, .dims = { 30, 8 },
		  .maxdims = { U, 8 }, .chunk = { 4, 4 }, .type = H5T_STD_I16LE },
		{ .name = "farray-4byte-addr", .latest = 1, .rank = 1, .dims = { 64 },
		  .chunk = { 4 }, .type = H5T_STD_I32LE, .small_sizes = 1 },
	};
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		h5c_seed(&s[i]);
}

/* ---- fuzz_open: .h5ad files ---- */

/*
 * A dataset of an unregistered optional filter (lzf or zstd), written by
 * direct chunk writes: HDF5 cannot read it back, the engine must.
 */
static void direct_dataset(hid_t g, const char *name, int filter, hid_t ftype, size_t elem,
                           const void *src, hsize_t n, hsize_t chunk)
{
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	hsize_t mx = H5S_UNLIMITED, nch = (n + chunk - 1) / chunk;
	hid_t sp = H5Screate_simple(1, &n, &mx);
	size_t cb = chunk * elem;
	uint8_t *raw = malloc(cb), *z = malloc(2 * cb + 1024);

	H5Pset_chunk(dcpl, 1, &chunk);
	if (H5Pset_filter(dcpl, (H5Z_filter_t)filter, H5Z_FLAG_OPTIONAL, 0, NULL) < 0)
		die("H5Pset_filter");
	hid_t d = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	if (d < 0 || !raw || !z)
		die(name);
	for (hsize_t k = 0; k < nch; k++) {
		size_t len = cb, have = (k + 1) * chunk <= n ? cb : (n - k * chunk) * elem;
		memset(raw, 0, cb);
		memcpy(raw, (const uint8_t *)src + k * cb, have);
		memcpy(z, raw, cb);
		apply(filter, z, &len, 2 * cb + 1024, elem);
		hsize_t off = k * chunk;
		if (H5Dwrite_chunk(d, H5P_DEFAULT, 0, &off, len, z) < 0)
			die("H5Dwrite_chunk");
	}
	free(raw);
	free(z);
	H5Dclose(d);
	H5Sclose(sp);
	H5Pclose(dcpl);
}

/* A CSR X whose data, indices and indptr all carry lzf or zstd. */
static void write_direct_csr(const char *path, int filter, uint64_t seed)
{
	fx_csr_spec s = { .n_rows = 40, .n_cols = 30, .mean_nnz = 4, .empty_every = 7,
	                  .index_type = FX_I32, .indptr_type = FX_I64, .seed = seed };
	char tmp[4096];
	fx_ref m;

	snprintf(tmp, sizeof(tmp), "%s/.ref.h5", out_dir);
	if (fx_write_csr(tmp, &s) < 0 || fx_ref_load(tmp, "X", &m) < 0)
		die("reference matrix");
	remove(tmp);
	float *data = malloc((m.nnz + 1) * 4);
	int32_t *idx = malloc((m.nnz + 1) * 4);
	for (uint64_t i = 0; i < m.nnz; i++) {
		data[i] = (float)m.data[i];
		idx[i] = (int32_t)m.indices[i];
	}
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	hid_t g = H5Gcreate2(f, "X", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	int64_t shape[2] = { (int64_t)m.n_rows, (int64_t)m.n_cols };
	if (h5u_attr_array(g, "shape", H5T_STD_I64LE, H5T_NATIVE_INT64, shape, 2) < 0 ||
	    h5u_attr_encoding(g, "csr_matrix", "0.1.0") < 0)
		die("X attributes");
	direct_dataset(g, "data", filter, H5T_IEEE_F32LE, 4, data, m.nnz, 32);
	direct_dataset(g, "indices", filter, H5T_STD_I32LE, 4, idx, m.nnz, 32);
	direct_dataset(g, "indptr", filter, H5T_STD_I64LE, 8, m.indptr, m.n_rows + 1, 16);
	H5Gclose(g);
	H5Fclose(f);
	free(data);
	free(idx);
	fx_ref_free(&m);
}

/*
 * Rewrite X's encoding attributes as fixed-length strings (h5py writes
 * those too).  A variable-length string lives in the global heap, and HDF5
 * 1.10.8 hangs reading some damaged global heaps: seeds that avoid it let
 * fuzz_open spend its time on scfetch; one seed keeps the anndata form.
 */
static void fixed_length_attrs(const char *path)
{
	const char *names[] = { "encoding-type", "encoding-version" };
	hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
	hid_t o = f >= 0 ? H5Oopen(f, "X", H5P_DEFAULT) : -1;

	if (o < 0)
		die(path);
	for (int i = 0; i < 2; i++) {
		char value[64] = "";
		hid_t a = H5Aopen(o, names[i], H5P_DEFAULT), t = H5Tcopy(H5T_C_S1);
		char *v = NULL;
		H5Tset_size(t, H5T_VARIABLE);
		H5Tset_cset(t, H5T_CSET_UTF8);
		if (a < 0 || H5Aread(a, t, &v) < 0 || !v)
			die("encoding attribute");
		snprintf(value, sizeof(value), "%s", v);
		H5free_memory(v);
		H5Aclose(a);
		H5Adelete(o, names[i]);
		H5Tclose(t);
		t = H5Tcopy(H5T_C_S1);
		H5Tset_size(t, strlen(value));
		hid_t sp = H5Screate(H5S_SCALAR);
		a = H5Acreate2(o, names[i], t, sp, H5P_DEFAULT, H5P_DEFAULT);
		if (a < 0 || H5Awrite(a, t, value) < 0)
			die("fixed-length attribute");
		H5Aclose(a);
		H5Sclose(sp);
		H5Tclose(t);
	}
	H5Oclose(o);
	H5Fclose(f);
}

/* A scalar fixed-length string attribute: no global heap for the fuzzer to hang HDF5 on. */
static void attr_fixed(hid_t obj, const char *name, const char *value)
{
	hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
	H5Tset_size(t, strlen(value) ? strlen(value) : 1);
	if (H5Aexists(obj, name) > 0)
		H5Adelete(obj, name);
	hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
	if (a < 0 || H5Awrite(a, t, value) < 0)
		die(name);
	H5Aclose(a);
	H5Sclose(sp);
	H5Tclose(t);
}

/* A 1-D dataset of n values (contiguous), with anndata's array markers. */
static void array_dataset(hid_t g, const char *name, hid_t ftype, hid_t mtype, const void *v,
                          hsize_t n)
{
	hid_t sp = H5Screate_simple(1, &n, NULL);
	if (H5Lexists(g, name, H5P_DEFAULT) > 0)
		H5Ldelete(g, name, H5P_DEFAULT);
	hid_t d = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	if (d < 0 || (n && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0))
		die(name);
	attr_fixed(d, "encoding-type", "array");
	attr_fixed(d, "encoding-version", "0.2.0");
	H5Dclose(d);
	H5Sclose(sp);
}

/*
 * The obs columns fuzz_open requests: cell_type (categorical, int8 codes
 * with missing -1, fixed-length names), donor (int64 beyond int32), score
 * (float32) and flag (an int8 enum, as h5py writes numpy bool).
 */
static void add_obs(const char *path)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
	hid_t obs = f >= 0 ? H5Gopen2(f, "obs", H5P_DEFAULT) : -1;
	hid_t idx = obs >= 0 ? H5Dopen2(obs, "_index", H5P_DEFAULT) : -1;
	hid_t sp = idx >= 0 ? H5Dget_space(idx) : -1;
	hsize_t n = 0;

	if (sp < 0 || H5Sget_simple_extent_dims(sp, &n, NULL) != 1)
		die("obs/_index");
	H5Sclose(sp);
	H5Dclose(idx);
	int8_t *codes = malloc(n + 1), *flag = malloc(n + 1);
	int64_t *donor = malloc((n + 1) * sizeof(int64_t));
	float *score = malloc((n + 1) * sizeof(float));
	const int64_t wide[5] = { (int64_t)1 << 31, ((int64_t)1 << 40) + 5, -((int64_t)1 << 40),
	                          7, -3 };
	for (hsize_t r = 0; r < n; r++) {
		codes[r] = (int8_t)(r % 11 == 10 ? -1 : (int)(r % 3));
		donor[r] = wide[r % 5];
		score[r] = (float)r * 0.25f;
		flag[r] = (int8_t)(r % 2);
	}
	if (H5Lexists(obs, "cell_type", H5P_DEFAULT) > 0)
		H5Ldelete(obs, "cell_type", H5P_DEFAULT);
	hid_t g = H5Gcreate2(obs, "cell_type", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	attr_fixed(g, "encoding-type", "categorical");
	attr_fixed(g, "encoding-version", "0.2.0");
	array_dataset(g, "codes", H5T_STD_I8LE, H5T_NATIVE_INT8, codes, n);
	hid_t st = H5Tcopy(H5T_C_S1);
	H5Tset_size(st, 3);
	array_dataset(g, "categories", st, st, "T0\0T1\0T2", 3);
	H5Tclose(st);
	H5Gclose(g);
	array_dataset(obs, "donor", H5T_STD_I64LE, H5T_NATIVE_INT64, donor, n);
	array_dataset(obs, "score", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, score, n);
	signed char no = 0, yes = 1;
	hid_t bt = H5Tenum_create(H5T_NATIVE_SCHAR);
	H5Tenum_insert(bt, "FALSE", &no);
	H5Tenum_insert(bt, "TRUE", &yes);
	array_dataset(obs, "flag", bt, bt, flag, n);
	H5Tclose(bt);
	H5Gclose(obs);
	H5Fclose(f);
	free(codes);
	free(flag);
	free(donor);
	free(score);
}

/* Open `path` read-write, or die. */
static hid_t rw(const char *path)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
	if (f < 0)
		die(path);
	return f;
}

/* Replace dataset `name` by a contiguous one of `rank` dims holding buf (converted from mtype). */
static void replace(const char *path, const char *name, hid_t ftype, hid_t mtype,
                    const void *buf, int rank, const hsize_t *dims)
{
	hid_t f = rw(path), sp = H5Screate_simple(rank, dims, NULL);
	H5Ldelete(f, name, H5P_DEFAULT);
	hid_t d = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	if (d < 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
		die(name);
	H5Dclose(d);
	H5Sclose(sp);
	H5Fclose(f);
}

/* Replace attribute `name` of `obj` by n values of ftype (n < 0: a scalar). */
static void replace_attr(const char *path, const char *obj, const char *name, hid_t ftype,
                         hid_t mtype, const void *buf, hssize_t n)
{
	hid_t f = rw(path), o = H5Oopen(f, obj, H5P_DEFAULT);
	hsize_t dims = (hsize_t)n;
	hid_t sp = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, NULL);
	if (H5Aexists(o, name) > 0)
		H5Adelete(o, name);
	hid_t a = H5Acreate2(o, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
	if (a < 0 || H5Awrite(a, mtype, buf) < 0)
		die(name);
	H5Aclose(a);
	H5Sclose(sp);
	H5Oclose(o);
	H5Fclose(f);
}

/* A dense chunked X whose fill value (2.5) is all that unwritten chunks hold. */
static void dense_fill_seed(const char *path)
{
	fx_dense_spec ds = { .n_rows = 30, .n_cols = 12, .density = 0.3, .seed = 21 };
	if (fx_write_dense(path, &ds) < 0)
		die(path);
	hid_t f = rw(path), dcpl = H5Pcreate(H5P_DATASET_CREATE);
	hsize_t dims[2] = { 30, 12 }, ch[2] = { 8, 5 };
	double fill = 2.5, v[8 * 5];
	H5Ldelete(f, "X", H5P_DEFAULT);
	H5Pset_chunk(dcpl, 2, ch);
	H5Pset_fill_value(dcpl, H5T_NATIVE_DOUBLE, &fill);
	hid_t sp = H5Screate_simple(2, dims, NULL);
	hid_t d = H5Dcreate2(f, "X", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	if (d < 0)
		die("dense X");
	for (int i = 0; i < 40; i++)
		v[i] = i % 3 ? 0.0 : (double)i / 8.0;
	for (hsize_t a = 0; a < 4; a++) {
		for (hsize_t b = 0; b < 3; b++) {
			if ((a + b) % 2)
				continue; /* a checkerboard of chunks never written */
			hsize_t start[2] = { a * 8, b * 5 };
			hsize_t cnt[2] = { start[0] + 8 > 30 ? 30 - start[0] : 8,
			                   start[1] + 5 > 12 ? 12 - start[1] : 5 };
			hid_t fs = H5Dget_space(d), ms = H5Screate_simple(2, cnt, NULL);
			H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
			H5Dwrite(d, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, v);
			H5Sclose(ms);
			H5Sclose(fs);
		}
	}
	attr_fixed(d, "encoding-type", "array");
	attr_fixed(d, "encoding-version", "0.2.0");
	H5Dclose(d);
	H5Sclose(sp);
	H5Pclose(dcpl);
	H5Fclose(f);
}

/* A CSR of 40 x 6 whose rows repeat column ids, one with more entries than columns. */
static void duplicates_seed(const char *path)
{
	fx_csr_spec s = { .n_rows = 40, .n_cols = 6, .mean_nnz = 2, .index_type = FX_I32,
	                  .indptr_type = FX_I64, .seed = 22 };
	int64_t indptr[41], indices[200];
	double data[200];
	hsize_t nnz = 0;
	if (fx_write_csr(path, &s) < 0)
		die(path);
	for (int r = 0; r < 40; r++) {
		indptr[r] = (int64_t)nnz;
		int len = r == 7 ? 14 : r % 4;
		for (int k = 0; k < len; k++) {
			indices[nnz] = r % 3 == 0 && k % 2 ? indices[nnz - 1] : (r + k) % 6;
			data[nnz++] = (double)(r * 3 + k) / 4.0 + 0.125;
		}
	}
	indptr[40] = (int64_t)nnz;
	hsize_t np = 41;
	replace(path, "X/indptr", H5T_STD_I64LE, H5T_NATIVE_INT64, indptr, 1, &np);
	replace(path, "X/indices", H5T_STD_I32LE, H5T_NATIVE_INT64, indices, 1, &nnz);
	replace(path, "X/data", H5T_IEEE_F32LE, H5T_NATIVE_DOUBLE, data, 1, &nnz);
}

/*
 * Files with the parts hostile files get wrong, each otherwise whole, so
 * that mutations start from them: an array `encoding-type` and var
 * `_index`, a shape of three int32, 2-D categories, uint32 and uint64 obs
 * integers beyond int32, duplicate ids, a fill value.
 */
static void hostile_seeds(void)
{
	const fx_csr_spec base = { .n_rows = 40, .n_cols = 30, .mean_nnz = 4, .empty_every = 7,
	                           .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 16,
	                           .resizable = 1, .seed = 20 };
	const char *names[] = { "hostile-encoding-array.h5ad", "hostile-var-index-array.h5ad",
	                        "hostile-shape-int32x3.h5ad", "hostile-categories-2d.h5ad",
	                        "hostile-obs-unsigned.h5ad" };
	hid_t st = H5Tcopy(H5T_C_S1);
	H5Tset_size(st, 10);
	for (int k = 0; k < 5; k++) {
		const char *p = path_in("fuzz_open", names[k]);
		if (fx_write_csr(p, &base) < 0)
			die(p);
		fixed_length_attrs(p);
		add_obs(p);
		if (k == 0) {
			replace_attr(p, "X", "encoding-type", st, st,
			             "csr_matrixcsr_matrixcsr_matrix", 3);
		} else if (k == 1) {
			replace_attr(p, "var", "_index", st, st, "_index\0\0\0\0_index\0\0\0\0", 2);
		} else if (k == 2) {
			const int32_t shape[3] = { 40, 30, 1 };
			replace_attr(p, "X", "shape", H5T_STD_I32LE, H5T_NATIVE_INT32, shape, 3);
		} else if (k == 3) {
			const double cats[6] = { 0, 1, 2, 3, 4, 5 };
			hsize_t d2[2] = { 3, 2 };
			replace(p, "obs/cell_type/categories", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, cats,
			        2, d2);
		} else {
			uint32_t u[40];
			uint64_t w[40];
			hsize_t n = 40;
			for (int r = 0; r < 40; r++) {
				u[r] = r % 2 ? 3000000000u : (uint32_t)r;
				w[r] = r % 3 ? (uint64_t)1 << 62 : (uint64_t)r;
			}
			replace(p, "obs/donor", H5T_STD_U32LE, H5T_NATIVE_UINT32, u, 1, &n);
			replace(p, "obs/score", H5T_STD_U64LE, H5T_NATIVE_UINT64, w, 1, &n);
		}
	}
	H5Tclose(st);
	duplicates_seed(path_in("fuzz_open", "hostile-duplicates.h5ad"));
	fixed_length_attrs(path_in("fuzz_open", "hostile-duplicates.h5ad"));
	add_obs(path_in("fuzz_open", "hostile-duplicates.h5ad"));
	dense_fill_seed(path_in("fuzz_open", "hostile-dense-fill.h5ad"));
	add_obs(path_in("fuzz_open", "hostile-dense-fill.h5ad"));
}

static void open_seeds(void)
{
	const struct { const char *name; fx_csr_spec s; } csr[] = {
		{ "csr-contiguous.h5ad", { .n_rows = 40, .n_cols = 30, .mean_nnz = 4,
		  .empty_every = 7, .index_type = FX_I32, .indptr_type = FX_I64, .seed = 1 } },
		{ "csr-btree.h5ad", { .n_rows = 40, .n_cols = 30, .mean_nnz = 4, .index_type = FX_I32,
		  .indptr_type = FX_I32, .chunk = 16, .resizable = 1, .seed = 2 } },
		{ "csr-deflate-shuffle.h5ad", { .n_rows = 40, .n_cols = 30, .mean_nnz = 4,
		  .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 32, .resizable = 1,
		  .deflate = 4, .shuffle = 1, .seed = 3 } },
		{ "csr-fletcher32.h5ad", { .n_rows = 40, .n_cols = 30, .mean_nnz = 4,
		  .data_type = FX_F64, .index_type = FX_I64, .indptr_type = FX_I64, .chunk = 32,
		  .resizable = 1, .deflate = 1, .fletcher32 = 1, .seed = 4 } },
		{ "csr-earray.h5ad", { .n_rows = 40, .n_cols = 30, .mean_nnz = 4,
		  .data_type = FX_I32, .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 8,
		  .resizable = 1, .libver_latest = 1, .seed = 5 } },
		{ "csr-farray.h5ad", { .n_rows = 40, .n_cols = 30, .mean_nnz = 4,
		  .data_type = FX_U16, .index_type = FX_I32, .indptr_type = FX_I64, .chunk = 8,
		  .libver_latest = 1, .seed = 6 } },
		{ "csr-int8.h5ad", { .n_rows = 24, .n_cols = 20, .mean_nnz = 3,
		  .data_type = FX_I8, .index_type = FX_I32, .indptr_type = FX_I32, .seed = 7 } },
	};
	for (size_t i = 0; i < sizeof(csr) / sizeof(csr[0]); i++) {
		if (fx_write_csr(path_in("fuzz_open", csr[i].name), &csr[i].s) < 0)
			die(csr[i].name);
		if (i > 0)
			fixed_length_attrs(path_in("fuzz_open", csr[i].name));
		add_obs(path_in("fuzz_open", csr[i].name));
	}
	const struct { const char *name; fx_dense_spec s; } dense[] = {
		{ "dense-contiguous.h5ad", { .n_rows = 30, .n_cols = 12, .density = 0.3, .seed = 8 } },
		{ "dense-chunked.h5ad", { .n_rows = 30, .n_cols = 12, .chunk_rows = 8,
		  .chunk_cols = 5, .density = 0.3, .data_type = FX_F64, .seed = 9 } },
	};
	for (size_t i = 0; i < sizeof(dense) / sizeof(dense[0]); i++) {
		if (fx_write_dense(path_in("fuzz_open", dense[i].name), &dense[i].s) < 0)
			die(dense[i].name);
		add_obs(path_in("fuzz_open", dense[i].name));
	}
	write_direct_csr(path_in("fuzz_open", "csr-zstd.h5ad"), FZ_ZSTD, 10);
	write_direct_csr(path_in("fuzz_open", "csr-lzf.h5ad"), FZ_LZF, 11);
	fixed_length_attrs(path_in("fuzz_open", "csr-zstd.h5ad"));
	fixed_length_attrs(path_in("fuzz_open", "csr-lzf.h5ad"));
	hostile_seeds();
}

int main(int argc, char **argv)
{
	const char *subs[] = { "fuzz_open", "fuzz_h5chunks", "fuzz_filters" };
	char p[4096];

	if (argc != 2) {
		fprintf(stderr, "usage: make_corpus DIR\n");
		return 2;
	}
	out_dir = argv[1];
	mkdir(out_dir, 0755);
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", out_dir, subs[i]);
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			die(p);
	}
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	filter_seeds();
	h5chunks_seeds();
	open_seeds();
	return 0;
}
