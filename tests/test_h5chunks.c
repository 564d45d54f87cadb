/*
 * tests/test_h5chunks — the one-pass chunk-index reader against HDF5's own
 * per-chunk answers, on datasets written here with the HDF5 C API: every
 * index HDF5 1.10 writes for one unlimited dimension or none, filtered and
 * partly written data, 2-D grids, a userblock, and corrupt or truncated files.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/h5chunks.h"
#include "scfetch.h"

enum { T_F32, T_I32, T_I64 };

/* One dataset "d" alone in its own file. */
typedef struct fx {
	const char *file;
	int latest;              /* H5F_LIBVER_LATEST: layout version 4 indexes */
	hsize_t userblock;
	unsigned rank;
	hsize_t dims[2], maxdims[2]; /* maxdims {0,0}: same as dims */
	hsize_t chunk[2];
	int type, deflate, early;
	unsigned hole_every;     /* chunk c unwritten when c % hole_every == hole_every - 1 */
	uint64_t gap_lo, gap_hi; /* chunks [gap_lo, gap_hi) unwritten */
	const char *index;       /* expected: btree1, single, implicit, farray, earray, btree2 */
	int coord_bug;           /* HDF5 1.10.8 chunk-info calls misplace these chunks */
	unsigned attrs;          /* attributes that push the header into continuation blocks */
	int small_sizes;         /* 4-byte file addresses and lengths (H5Pset_sizes) */
} fx;

/* What HDF5 says about the dataset: the reader's inputs. */
typedef struct probe {
	uint64_t ohdr;
	scf__h5geom g;
	unsigned rank;
	uint64_t dims[2], chunk[2];
	size_t esize;
} probe;

static char g_dir[64];

static void dir_setup(void)
{
	snprintf(g_dir, sizeof(g_dir), "/var/tmp/scf_h5c_XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir), "mkdtemp: %s", strerror(errno));
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void dir_teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
	if (g_dir[0] && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", g_dir);
}

TestSuite(h5chunks, .init = dir_setup, .fini = dir_teardown, .timeout = 240);

static char *path_of(const char *name)
{
	static char buf[8][256];
	static int k;
	char *p = buf[k++ % 8];
	snprintf(p, 256, "%s/%s", g_dir, name);
	return p;
}

static hid_t native(int t)
{
	return t == T_F32 ? H5T_NATIVE_FLOAT : t == T_I32 ? H5T_NATIVE_INT : H5T_NATIVE_LLONG;
}

static hid_t filetype(int t)
{
	return t == T_F32 ? H5T_IEEE_F32LE : t == T_I32 ? H5T_STD_I32LE : H5T_STD_I64LE;
}

static size_t tsize(int t)
{
	return t == T_I64 ? 8 : 4;
}

static uint64_t grid_of(const fx *f, unsigned i)
{
	if (i >= f->rank)
		return 1;
	return f->dims[i] ? (f->dims[i] - 1) / f->chunk[i] + 1 : 0;
}

static int written(const fx *f, uint64_t c)
{
	if (f->hole_every && c % f->hole_every == f->hole_every - 1)
		return 0;
	return !(c >= f->gap_lo && c < f->gap_hi);
}

/* Values distinct from chunk to chunk, in runs whose length varies (so do
 * deflated sizes). */
static void fill_values(const fx *f, void *buf, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t v = i - i % (1 + (i / 61) % 50);
		if (f->type == T_F32)
			((float *)buf)[i] = (float)v * 0.5f;
		else if (f->type == T_I32)
			((int32_t *)buf)[i] = (int32_t)v - 7;
		else
			((int64_t *)buf)[i] = (int64_t)v * 1000003 - 11;
	}
}

/* Write the elements of chunks [c0, c1) of the grid (row-major). */
static void write_chunks(const fx *f, hid_t d, hid_t mem, hid_t fsp, const void *buf,
                         uint64_t c0, uint64_t c1)
{
	hsize_t start[2], count[2];
	uint64_t g1 = grid_of(f, 1);

	if (f->rank == 1) {
		start[0] = c0 * f->chunk[0];
		count[0] = (c1 * f->chunk[0] < f->dims[0] ? c1 * f->chunk[0] : f->dims[0]) - start[0];
	} else {
		cr_assert_eq(c1, c0 + 1);
		for (unsigned i = 0; i < 2; i++) {
			uint64_t pos = i == 0 ? c0 / g1 : c0 % g1;
			start[i] = pos * f->chunk[i];
			count[i] = f->dims[i] - start[i] < f->chunk[i] ? f->dims[i] - start[i] : f->chunk[i];
		}
	}
	cr_assert(H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
	cr_assert(H5Sselect_hyperslab(mem, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
	cr_assert(H5Dwrite(d, native(f->type), mem, fsp, H5P_DEFAULT, buf) >= 0);
}

/* Write what f says is written: the whole array at once, or run by run. */
static void write_data(const fx *f, hid_t d)
{
	uint64_t n = f->dims[0] * (f->rank == 2 ? f->dims[1] : 1);
	uint64_t nch = grid_of(f, 0) * grid_of(f, 1);
	void *buf = malloc(n * tsize(f->type) + 1);
	hid_t mem = H5Screate_simple((int)f->rank, f->dims, NULL), fsp = H5Dget_space(d);

	fill_values(f, buf, n);
	if (!f->hole_every && f->gap_lo == f->gap_hi) {
		cr_assert(H5Dwrite(d, native(f->type), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
	} else {
		for (uint64_t c = 0; c < nch;) {
			uint64_t e = c;
			while (e < nch && written(f, e) && (f->rank == 1 || e == c))
				e++;
			if (e > c)
				write_chunks(f, d, mem, fsp, buf, c, e);
			c = e > c ? e : c + 1;
		}
	}
	H5Sclose(mem);
	H5Sclose(fsp);
	free(buf);
}

/* Attributes of 300 bytes, kept in the object header (compact, ordered). */
static void add_attributes(hid_t d, unsigned n)
{
	char name[32], val[300];
	hsize_t len[1] = { sizeof(val) };
	hid_t sp = H5Screate_simple(1, len, NULL);

	memset(val, 'x', sizeof(val));
	for (unsigned i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "attribute_%u", i);
		hid_t a = H5Acreate2(d, name, H5T_NATIVE_CHAR, sp, H5P_DEFAULT, H5P_DEFAULT);
		cr_assert(a >= 0);
		cr_assert(H5Awrite(a, H5T_NATIVE_CHAR, val) >= 0);
		H5Aclose(a);
	}
	H5Sclose(sp);
}

static void write_fixture(const fx *f)
{
	hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), file, space, d;
	hsize_t maxd[2] = { f->maxdims[0] ? f->maxdims[0] : f->dims[0],
	                    f->maxdims[1] ? f->maxdims[1] : f->dims[1] };

	if (f->userblock)
		cr_assert(H5Pset_userblock(fcpl, f->userblock) >= 0);
	if (f->small_sizes)
		cr_assert(H5Pset_sizes(fcpl, 4, 4) >= 0);
	if (f->latest)
		cr_assert(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST) >= 0);
	file = H5Fcreate(path_of(f->file), H5F_ACC_TRUNC, fcpl, fapl);
	cr_assert(file >= 0, "cannot create %s", f->file);
	space = H5Screate_simple((int)f->rank, f->dims, maxd);
	cr_assert(H5Pset_chunk(dcpl, (int)f->rank, f->chunk) >= 0);
	if (f->deflate)
		cr_assert(H5Pset_deflate(dcpl, (unsigned)f->deflate) >= 0);
	if (f->early)
		cr_assert(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) >= 0);
	if (f->attrs && f->latest) {
		cr_assert(H5Pset_attr_phase_change(dcpl, 1000, 0) >= 0);
		cr_assert(H5Pset_attr_creation_order(dcpl, H5P_CRT_ORDER_TRACKED) >= 0);
	}
	d = H5Dcreate2(file, "d", filetype(f->type), space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	cr_assert(d >= 0, "cannot create the dataset of %s", f->file);
	if (grid_of(f, 0) * grid_of(f, 1) != 0)
		write_data(f, d);
	add_attributes(d, f->attrs);
	H5Dclose(d);
	H5Sclose(space);
	H5Pclose(dcpl);
	H5Pclose(fapl);
	H5Pclose(fcpl);
	cr_assert(H5Fclose(file) >= 0);
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/* The reader's inputs, from the HDF5 API as formats/h5ad.c gathers them. */
static probe probe_file(const char *path)
{
	probe p = { 0 };
	hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	hid_t d = H5Dopen2(file, "d", H5P_DEFAULT), fcpl, dcpl, sp, t;
	hsize_t dims[2] = { 0, 0 }, cd[2] = { 0, 0 }, ub = 0;
	size_t sa = 0, ss = 0;
	H5O_info_t oi;

	cr_assert(file >= 0 && d >= 0, "cannot open %s", path);
	cr_assert(H5Oget_info2(d, &oi, H5O_INFO_BASIC) >= 0);
	fcpl = H5Fget_create_plist(file);
	H5Pget_sizes(fcpl, &sa, &ss);
	H5Pget_userblock(fcpl, &ub);
	sp = H5Dget_space(d);
	dcpl = H5Dget_create_plist(d);
	t = H5Dget_type(d);
	p.rank = (unsigned)H5Sget_simple_extent_dims(sp, dims, NULL);
	cr_assert_eq(H5Pget_chunk(dcpl, 2, cd), (int)p.rank);
	p.ohdr = oi.addr;
	p.g = (scf__h5geom){ (unsigned)sa, (unsigned)ss, ub, file_size(path) };
	for (unsigned i = 0; i < p.rank; i++) {
		p.dims[i] = dims[i];
		p.chunk[i] = cd[i];
	}
	p.esize = H5Tget_size(t);
	H5Tclose(t);
	H5Pclose(dcpl);
	H5Sclose(sp);
	H5Pclose(fcpl);
	H5Dclose(d);
	H5Fclose(file);
	return p;
}

/* Run the reader on path (perhaps a damaged copy) with a probe's inputs. */
static int read_map(const char *path, const probe *p, scf__chunk_map *m, char *err,
                    size_t errlen)
{
	int fd = open(path, O_RDONLY), rc;
	scf__h5geom g = p->g;

	cr_assert(fd >= 0);
	g.eof = file_size(path);
	rc = scf__h5chunks_read(fd, &g, p->ohdr, p->rank, p->dims, p->chunk, p->esize, m,
	                        err, errlen);
	close(fd);
	return rc;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *b;

	cr_assert_not_null(fp);
	*len = (size_t)file_size(path);
	b = malloc(*len + 1);
	cr_assert_eq(fread(b, 1, *len, fp), *len);
	fclose(fp);
	return b;
}

static void spill(const char *path, const uint8_t *b, size_t len)
{
	FILE *fp = fopen(path, "wb");
	cr_assert_not_null(fp);
	cr_assert_eq(fwrite(b, 1, len, fp), len);
	fclose(fp);
}

/* Which index HDF5 wrote, told by the signatures of its blocks. */
static const char *index_in_file(const char *path, uint64_t nchunks)
{
	size_t len;
	uint8_t *b = slurp(path, &len);
	const char *kind = memmem(b, len, "FAHD", 4)       ? "farray"
	                 : memmem(b, len, "EAHD", 4)       ? "earray"
	                 : memmem(b, len, "BTHD", 4)       ? "btree2"
	                 : memmem(b, len, "TREE\001", 5)   ? "btree1"
	                 : nchunks > 1                     ? "implicit"
	                 : nchunks == 1                    ? "single" : "none";
	free(b);
	return kind;
}

/* Chunk positions to compare: all of them, or ~500 spread over the grid. */
static uint64_t sample_at(uint64_t n, uint64_t k, uint64_t *count)
{
	*count = n <= 16000 ? n : 500;
	return n <= 16000 ? k : k * (n - 1) / 499;
}

/* One chunk against H5Dget_chunk_info_by_coord. */
static void compare_chunk(const fx *f, hid_t d, const probe *p, const scf__chunk_map *m,
                          uint64_t idx)
{
	hsize_t off[2] = { (idx / m->grid[1]) * m->chunk_dims[0],
	                   (idx % m->grid[1]) * m->chunk_dims[1] };
	unsigned mask = 0;
	haddr_t addr = 0;
	hsize_t size = 0;
	const scf__chunk cv = scf__chunk_at(m, idx), *c = &cv;

	cr_assert(H5Dget_chunk_info_by_coord(d, off, &mask, &addr, &size) >= 0,
	          "%s: HDF5 cannot describe chunk %llu", f->file, (unsigned long long)idx);
	if (addr == HADDR_UNDEF) {
		cr_assert_eq(c->addr, SCF__CHUNK_UNALLOCATED, "%s: chunk %llu should be unallocated",
		             f->file, (unsigned long long)idx);
	} else {
		cr_assert_eq(c->addr, addr + p->g.base_addr, "%s: chunk %llu at %llu, HDF5 says %llu",
		             f->file, (unsigned long long)idx, (unsigned long long)c->addr,
		             (unsigned long long)(addr + p->g.base_addr));
		cr_assert_eq(c->size, size, "%s: chunk %llu size", f->file, (unsigned long long)idx);
		cr_assert_eq(c->filter_mask, mask, "%s: chunk %llu mask", f->file,
		             (unsigned long long)idx);
	}
	cr_assert_eq(c->addr != SCF__CHUNK_UNALLOCATED, f->early || written(f, idx),
	             "%s: chunk %llu allocation", f->file, (unsigned long long)idx);
}

/* An unfiltered chunk's bytes at the reported address equal H5Dread's. */
static void compare_bytes(const fx *f, hid_t d, const scf__chunk_map *m, uint64_t idx,
                          const char *path)
{
	const scf__chunk cv = scf__chunk_at(m, idx), *c = &cv;
	hsize_t start[2], count[2] = { 1, 1 };
	size_t es = tsize(f->type);
	uint8_t *disk = malloc(c->size), *ref;
	int fd = open(path, O_RDONLY);

	cr_assert_eq(pread(fd, disk, c->size, (off_t)c->addr), (ssize_t)c->size);
	close(fd);
	for (unsigned i = 0; i < f->rank; i++) {
		uint64_t pos = i == 0 ? idx / m->grid[1] : idx % m->grid[1];
		start[i] = pos * f->chunk[i];
		count[i] = f->dims[i] - start[i] < f->chunk[i] ? f->dims[i] - start[i] : f->chunk[i];
	}
	ref = malloc(count[0] * count[1] * es);
	hid_t mem = H5Screate_simple((int)f->rank, count, NULL), fsp = H5Dget_space(d);
	cr_assert(H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
	cr_assert(H5Dread(d, native(f->type), mem, fsp, H5P_DEFAULT, ref) >= 0);
	for (hsize_t r = 0; r < count[0]; r++) {
		hsize_t w = f->rank == 2 ? count[1] : count[0];
		hsize_t rowlen = f->rank == 2 ? f->chunk[1] : 0;
		if (f->rank == 1 && r > 0)
			break;
		cr_assert_eq(memcmp(disk + r * rowlen * es, ref + r * w * es, w * es), 0,
		             "%s: chunk %llu bytes differ from H5Dread", f->file,
		             (unsigned long long)idx);
	}
	H5Sclose(mem);
	H5Sclose(fsp);
	free(ref);
	free(disk);
}

/* Totals, sample, bytes of a few unfiltered chunks, size variety when filtered. */
static void compare_all(const fx *f, const probe *p, const scf__chunk_map *m)
{
	hid_t file = H5Fopen(path_of(f->file), H5F_ACC_RDONLY, H5P_DEFAULT);
	hid_t d = H5Dopen2(file, "d", H5P_DEFAULT), sp = H5Dget_space(d);
	uint64_t count, alloc = 0, expect = 0, first = UINT64_MAX, last = 0;
	hsize_t nchunks = 0;
	uint32_t size0 = 0;
	int sizes_vary = 0;

	for (uint64_t i = 0; i < m->n; i++) {
		const scf__chunk cv = scf__chunk_at(m, i), *c = &cv;
		expect += f->early || written(f, i);
		if (c->addr == SCF__CHUNK_UNALLOCATED)
			continue;
		alloc++;
		first = first < i ? first : i;
		last = i;
		sizes_vary |= size0 && c->size != size0;
		size0 = c->size;
	}
	cr_assert_eq(alloc, expect, "%s: %llu chunks allocated, expected %llu", f->file,
	             (unsigned long long)alloc, (unsigned long long)expect);
	cr_assert(H5Dget_num_chunks(d, sp, &nchunks) >= 0);
	cr_assert_eq(nchunks, alloc, "%s: HDF5 counts %llu chunks", f->file,
	             (unsigned long long)nchunks);
	sample_at(m->n, 0, &count);
	for (uint64_t k = 0; k < count && !f->coord_bug; k++)
		compare_chunk(f, d, p, m, sample_at(m->n, k, &count));
	for (uint64_t k = 0; alloc && !f->deflate && k <= 64; k++) {
		uint64_t i = first + (last - first) * k / 64;
		while (scf__chunk_addr(m, i) == SCF__CHUNK_UNALLOCATED)
			i++;
		compare_bytes(f, d, m, i, path_of(f->file));
	}
	if (f->deflate && alloc > 2)
		cr_assert(sizes_vary, "%s: deflated chunks should differ in size", f->file);
	H5Sclose(sp);
	H5Dclose(d);
	H5Fclose(file);
}

/* Write, check the index kind, read with the parser, compare with HDF5. */
static void run_fixture(const fx *f)
{
	scf__chunk_map m;
	char err[400] = "";
	probe p;
	int rc;

	write_fixture(f);
	p = probe_file(path_of(f->file));
	cr_assert_str_eq(index_in_file(path_of(f->file), grid_of(f, 0) * grid_of(f, 1)),
	                 f->index, "%s: HDF5 wrote an unexpected index", f->file);
	rc = read_map(path_of(f->file), &p, &m, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s: scf__h5chunks_read returned %d: %s", f->file, rc, err);
	cr_assert_eq(m.rank, f->rank);
	cr_assert_eq(m.grid[0], grid_of(f, 0));
	cr_assert_eq(m.grid[1], grid_of(f, 1));
	cr_assert_eq(m.n, grid_of(f, 0) * grid_of(f, 1));
	cr_assert_eq(m.chunk_dims[0], f->chunk[0]);
	compare_all(f, &p, &m);
	scf__chunk_map_free(&m);
	cr_assert_null(m.rec);
	unlink(path_of(f->file));
}

/* ---- default file format: version-1 B-tree -------------------------------- */

Test(h5chunks, btree_one_chunk_f32)
{
	fx f = { .file = "b1.h5", .rank = 1, .dims = { 1000 }, .chunk = { 1000 },
	         .type = T_F32, .index = "btree1" };
	run_fixture(&f);
}

Test(h5chunks, btree_seven_chunks_ragged_i32)
{
	fx f = { .file = "b7.h5", .rank = 1, .dims = { 650 }, .chunk = { 100 },
	         .type = T_I32, .index = "btree1" };
	run_fixture(&f);
}

Test(h5chunks, btree_1000_unlimited_holes_i64)
{
	fx f = { .file = "b1000.h5", .rank = 1, .dims = { 9995 }, .maxdims = { H5S_UNLIMITED },
	         .chunk = { 10 }, .type = T_I64, .hole_every = 7, .index = "btree1" };
	run_fixture(&f);
}

Test(h5chunks, btree_100000_chunks)
{
	fx f = { .file = "b100k.h5", .rank = 1, .dims = { 399997 },
	         .maxdims = { H5S_UNLIMITED }, .chunk = { 4 }, .type = T_F32,
	         .index = "btree1" };
	run_fixture(&f);
}

Test(h5chunks, btree_deflate_with_gap)
{
	fx f = { .file = "bdefl.h5", .rank = 1, .dims = { 64000 }, .maxdims = { H5S_UNLIMITED },
	         .chunk = { 64 }, .type = T_F32, .deflate = 6, .gap_lo = 100, .gap_hi = 150,
	         .index = "btree1" };
	run_fixture(&f);
}

Test(h5chunks, btree_2d_holes)
{
	fx f = { .file = "b2d.h5", .rank = 2, .dims = { 300, 70 }, .chunk = { 32, 16 },
	         .type = T_I32, .hole_every = 3, .index = "btree1" };
	run_fixture(&f);
}

Test(h5chunks, btree_userblock)
{
	fx f = { .file = "bub.h5", .userblock = 512, .rank = 1, .dims = { 5000 },
	         .maxdims = { H5S_UNLIMITED }, .chunk = { 50 }, .type = T_I32,
	         .hole_every = 5, .index = "btree1" };
	run_fixture(&f);
}

Test(h5chunks, btree_empty)
{
	fx f = { .file = "bempty.h5", .rank = 1, .dims = { 0 }, .maxdims = { H5S_UNLIMITED },
	         .chunk = { 16 }, .type = T_I32, .index = "none" };
	run_fixture(&f);
}

Test(h5chunks, btree_header_with_continuations)
{
	fx f = { .file = "bcont.h5", .rank = 1, .dims = { 5000 }, .maxdims = { H5S_UNLIMITED },
	         .chunk = { 50 }, .type = T_F32, .hole_every = 4, .attrs = 40,
	         .index = "btree1" };
	run_fixture(&f);
}

Test(h5chunks, btree_4_byte_addresses)
{
	fx f = { .file = "bsmall.h5", .small_sizes = 1, .rank = 2, .dims = { 300, 70 },
	         .maxdims = { H5S_UNLIMITED, 70 }, .chunk = { 8, 16 }, .type = T_I64,
	         .hole_every = 6, .index = "btree1" };
	run_fixture(&f);
}

/* ---- libver latest: layout version 4 ------------------------------------ */

Test(h5chunks, single_chunk)
{
	fx f = { .file = "s1.h5", .latest = 1, .rank = 1, .dims = { 1000 }, .chunk = { 1000 },
	         .type = T_F32, .index = "single" };
	run_fixture(&f);
}

Test(h5chunks, single_chunk_deflate)
{
	fx f = { .file = "s1d.h5", .latest = 1, .rank = 1, .dims = { 1000 }, .chunk = { 1000 },
	         .type = T_F32, .deflate = 4, .index = "single" };
	run_fixture(&f);
}

Test(h5chunks, single_chunk_2d)
{
	fx f = { .file = "s2d.h5", .latest = 1, .rank = 2, .dims = { 20, 30 },
	         .chunk = { 20, 30 }, .type = T_I64, .index = "single" };
	run_fixture(&f);
}

Test(h5chunks, implicit_early_allocation)
{
	fx f = { .file = "imp.h5", .latest = 1, .rank = 1, .dims = { 650 }, .chunk = { 100 },
	         .type = T_I32, .early = 1, .hole_every = 3, .index = "implicit" };
	run_fixture(&f);
}

Test(h5chunks, implicit_2d_below_max)
{
	fx f = { .file = "imp2.h5", .latest = 1, .rank = 2, .dims = { 100, 30 },
	         .maxdims = { 200, 50 }, .chunk = { 16, 8 }, .type = T_F32, .early = 1,
	         .index = "implicit" };
	run_fixture(&f);
}

Test(h5chunks, farray_seven)
{
	fx f = { .file = "fa7.h5", .latest = 1, .rank = 1, .dims = { 650 }, .chunk = { 100 },
	         .type = T_I32, .index = "farray" };
	run_fixture(&f);
}

Test(h5chunks, farray_paged_with_unwritten_pages)
{
	fx f = { .file = "fapg.h5", .latest = 1, .rank = 1, .dims = { 5000 * 8 - 3 },
	         .chunk = { 8 }, .type = T_I64, .hole_every = 11, .gap_lo = 1024,
	         .gap_hi = 3072, .index = "farray" };
	run_fixture(&f);
}

Test(h5chunks, farray_deflate)
{
	fx f = { .file = "fadef.h5", .latest = 1, .rank = 1, .dims = { 64000 },
	         .chunk = { 64 }, .type = T_F32, .deflate = 6, .hole_every = 5,
	         .index = "farray" };
	run_fixture(&f);
}

Test(h5chunks, farray_deflate_paged)
{
	fx f = { .file = "fadefp.h5", .latest = 1, .rank = 1, .dims = { 3000 * 16 },
	         .chunk = { 16 }, .type = T_I32, .deflate = 1, .gap_lo = 1100,
	         .gap_hi = 2100, .index = "farray" };
	run_fixture(&f);
}

Test(h5chunks, farray_below_max)
{
	fx f = { .file = "famax.h5", .latest = 1, .rank = 1, .dims = { 500 },
	         .maxdims = { 2000 }, .chunk = { 10 }, .type = T_I32, .hole_every = 4,
	         .index = "farray" };
	run_fixture(&f);
}

Test(h5chunks, farray_2d_below_max)
{
	fx f = { .file = "fa2d.h5", .latest = 1, .rank = 2, .dims = { 100, 30 },
	         .maxdims = { 200, 50 }, .chunk = { 16, 8 }, .type = T_I64, .hole_every = 3,
	         .index = "farray" };
	run_fixture(&f);
}

Test(h5chunks, earray_1000_holes)
{
	fx f = { .file = "ea1k.h5", .latest = 1, .rank = 1, .dims = { 9995 },
	         .maxdims = { H5S_UNLIMITED }, .chunk = { 10 }, .type = T_I64,
	         .hole_every = 9, .index = "earray" };
	run_fixture(&f);
}

Test(h5chunks, earray_100000_chunks)
{
	fx f = { .file = "ea100k.h5", .latest = 1, .rank = 1, .dims = { 399997 },
	         .maxdims = { H5S_UNLIMITED }, .chunk = { 4 }, .type = T_F32,
	         .index = "earray" };
	run_fixture(&f);
}

Test(h5chunks, earray_paged_data_blocks)
{
	fx f = { .file = "eapg.h5", .latest = 1, .rank = 1, .dims = { 200000 },
	         .maxdims = { H5S_UNLIMITED }, .chunk = { 1 }, .type = T_I32,
	         .gap_lo = 140000, .gap_hi = 199000, .index = "earray" };
	run_fixture(&f);
}

Test(h5chunks, earray_deflate)
{
	fx f = { .file = "eadef.h5", .latest = 1, .rank = 1, .dims = { 64000 },
	         .maxdims = { H5S_UNLIMITED }, .chunk = { 64 }, .type = T_F32, .deflate = 6,
	         .hole_every = 6, .index = "earray" };
	run_fixture(&f);
}

Test(h5chunks, earray_2d_unlimited_rows)
{
	fx f = { .file = "ea2r.h5", .latest = 1, .rank = 2, .dims = { 300, 70 },
	         .maxdims = { H5S_UNLIMITED, 70 }, .chunk = { 32, 16 }, .type = T_I32,
	         .hole_every = 4, .index = "earray" };
	run_fixture(&f);
}

Test(h5chunks, earray_2d_unlimited_columns)
{
	fx f = { .file = "ea2c.h5", .latest = 1, .rank = 2, .dims = { 70, 300 },
	         .maxdims = { 100, H5S_UNLIMITED }, .chunk = { 16, 32 }, .type = T_F32,
	         .hole_every = 5, .index = "earray", .coord_bug = 1 };

	/* H5Dget_chunk_info(_by_coord) of HDF5 1.10.8 do not swap the unlimited
	 * dimension back when it is not the first: they report chunk (1,0) as
	 * (0,1).  H5Dread places data correctly, so bytes are the reference. */
	run_fixture(&f);
}

Test(h5chunks, earray_userblock)
{
	fx f = { .file = "eaub.h5", .latest = 1, .userblock = 512, .rank = 1,
	         .dims = { 9990 }, .maxdims = { H5S_UNLIMITED }, .chunk = { 10 },
	         .type = T_I32, .hole_every = 8, .index = "earray" };
	run_fixture(&f);
}

Test(h5chunks, earray_header_with_continuations)
{
	fx f = { .file = "eacont.h5", .latest = 1, .rank = 1, .dims = { 5000 },
	         .maxdims = { H5S_UNLIMITED }, .chunk = { 50 }, .type = T_I32,
	         .hole_every = 4, .attrs = 40, .index = "earray" };
	size_t len;
	uint8_t *b;

	write_fixture(&f);
	b = slurp(path_of(f.file), &len);
	cr_assert_not_null(memmem(b, len, "OCHK", 4), "expected continuation blocks");
	free(b);
	run_fixture(&f);
}

/* (HDF5 1.10.8 cannot reopen an extensible-array dataset written with 4-byte
 * lengths: the unlimited maximum no longer reads as unlimited.) */
Test(h5chunks, farray_4_byte_addresses)
{
	fx fa = { .file = "fasmall.h5", .latest = 1, .small_sizes = 1, .rank = 1,
	          .dims = { 50000 }, .chunk = { 10 }, .type = T_I32, .gap_lo = 1500,
	          .gap_hi = 3000, .index = "farray" };
	fx fd = { .file = "fdsmall.h5", .latest = 1, .small_sizes = 1, .rank = 1,
	          .dims = { 50000 }, .chunk = { 10 }, .type = T_I32, .deflate = 3,
	          .hole_every = 7, .index = "farray" };
	run_fixture(&fa);
	run_fixture(&fd);
}

Test(h5chunks, earray_empty)
{
	fx f = { .file = "eaempty.h5", .latest = 1, .rank = 1, .dims = { 0 },
	         .maxdims = { H5S_UNLIMITED }, .chunk = { 16 }, .type = T_I64,
	         .index = "none" };
	run_fixture(&f);
}

Test(h5chunks, btree2_is_unsupported)
{
	fx f = { .file = "bt2.h5", .latest = 1, .rank = 2, .dims = { 40, 40 },
	         .maxdims = { H5S_UNLIMITED, H5S_UNLIMITED }, .chunk = { 8, 8 },
	         .type = T_I32, .index = "btree2" };
	scf__chunk_map m;
	char err[400] = "";
	probe p;

	write_fixture(&f);
	p = probe_file(path_of(f.file));
	cr_assert_str_eq(index_in_file(path_of(f.file), 25), "btree2");
	cr_assert_eq(read_map(path_of(f.file), &p, &m, err, sizeof(err)), SCF_E_UNSUPPORTED);
	cr_assert(strstr(err, "version-2 B-tree") != NULL, "message: %s", err);
	cr_assert_null(m.rec);
}

/* ---- inconsistent arguments and damaged files --------------------------- */

/* A fixture written once for the damage tests, and its probe. */
static probe damage_base(const fx *f)
{
	write_fixture(f);
	return probe_file(path_of(f->file));
}

/* The reader must fail on this copy, saying why, without crashing. */
static void expect_failure(const char *name, const uint8_t *b, size_t len, const probe *p,
                           const char *what)
{
	scf__chunk_map m;
	char err[400] = "";
	int rc;

	spill(path_of(name), b, len);
	rc = read_map(path_of(name), p, &m, err, sizeof(err));
	cr_assert_lt(rc, 0, "%s: damaged file accepted", what);
	cr_assert_neq(err[0], '\0', "%s: no message", what);
	cr_assert_null(m.rec, "%s: map left allocated", what);
	unlink(path_of(name));
}

/* Offsets of B-tree nodes of chunk type ("TREE", type 1) in a file image. */
static size_t find_nodes(const uint8_t *b, size_t len, size_t *at, size_t max, int level)
{
	size_t n = 0;
	for (size_t i = 0; i + 8 < len && n < max; i++)
		if (memcmp(b + i, "TREE\001", 5) == 0 && (level < 0 || b[i + 5] == level))
			at[n++] = i;
	return n;
}

static const fx damage_btree = { .file = "dmg_b.h5", .rank = 1, .dims = { 40000 },
                                 .maxdims = { H5S_UNLIMITED }, .chunk = { 10 },
                                 .type = T_I32, .index = "btree1" };

Test(h5chunks, wrong_arguments)
{
	probe p = damage_base(&damage_btree), q;
	scf__chunk_map m;
	char err[400];

	q = p;
	q.chunk[0] = 20;
	cr_assert_eq(read_map(path_of(damage_btree.file), &q, &m, err, sizeof(err)), SCF_E_CORRUPT);
	cr_assert(strstr(err, "chunk dimension") != NULL, "%s", err);
	q = p;
	q.esize = 8;
	cr_assert_eq(read_map(path_of(damage_btree.file), &q, &m, err, sizeof(err)), SCF_E_CORRUPT);
	cr_assert(strstr(err, "element size") != NULL, "%s", err);
	q = p;
	q.dims[0] = 40001;
	cr_assert_eq(read_map(path_of(damage_btree.file), &q, &m, err, sizeof(err)), SCF_E_CORRUPT);
	q = p;
	q.rank = 3;
	cr_assert_eq(read_map(path_of(damage_btree.file), &q, &m, err, sizeof(err)), -EINVAL);
	q = p;
	q.ohdr = p.g.eof + 4096;
	cr_assert_eq(read_map(path_of(damage_btree.file), &q, &m, err, sizeof(err)), SCF_E_CORRUPT);
	q = p;
	q.ohdr = 0; /* the superblock, not an object header */
	cr_assert_lt(read_map(path_of(damage_btree.file), &q, &m, err, sizeof(err)), 0);
	cr_assert_neq(err[0], '\0');
	cr_assert_eq(scf__h5chunks_read(-1, &p.g, p.ohdr, 1, p.dims, p.chunk, 4, &m, err,
	                                sizeof(err)), -EBADF);
	scf__chunk_map_free(NULL);
}

Test(h5chunks, btree_node_overwritten)
{
	probe p = damage_base(&damage_btree);
	size_t len, at[64], n;
	uint8_t *orig = slurp(path_of(damage_btree.file), &len), *b = malloc(len);

	n = find_nodes(orig, len, at, 64, -1);
	cr_assert_gt(n, 3, "expected several B-tree nodes");
	for (size_t k = 0; k < n; k++) {
		memcpy(b, orig, len);
		memset(b + at[k] + 24, 0xa5, 200);
		expect_failure("dmg.h5", b, len, &p, "garbage in a B-tree node");
		memcpy(b, orig, len);
		memset(b + at[k], 0, 4);
		expect_failure("dmg.h5", b, len, &p, "B-tree signature wiped");
	}
	free(b);
	free(orig);
}

Test(h5chunks, btree_keys_and_children_damaged)
{
	probe p = damage_base(&damage_btree);
	size_t len, leaf[4], root[4], key = 8 + 16, hdr = 24;
	uint8_t *orig = slurp(path_of(damage_btree.file), &len), *b = malloc(len);
	uint64_t v;

	cr_assert_eq(find_nodes(orig, len, leaf, 1, 0), 1);
	cr_assert_eq(find_nodes(orig, len, root, 1, 1), 1, "expected a two-level tree");
	/* a key off a chunk boundary */
	memcpy(b, orig, len);
	v = 3;
	memcpy(b + leaf[0] + hdr + 8, &v, 8);
	expect_failure("dmg.h5", b, len, &p, "key off a chunk boundary");
	/* a key beyond the grid */
	memcpy(b, orig, len);
	v = 40000;
	memcpy(b + leaf[0] + hdr + 8, &v, 8);
	expect_failure("dmg.h5", b, len, &p, "key beyond the grid");
	/* a duplicate key */
	memcpy(b, orig, len);
	memcpy(b + leaf[0] + hdr + (key + 8) + 8, b + leaf[0] + hdr + 8, 8);
	expect_failure("dmg.h5", b, len, &p, "duplicate key");
	/* a chunk address past the end of the file */
	memcpy(b, orig, len);
	v = len + 100;
	memcpy(b + leaf[0] + hdr + key, &v, 8);
	expect_failure("dmg.h5", b, len, &p, "chunk past EOF");
	/* a child address past the end of the file */
	memcpy(b, orig, len);
	memcpy(b + root[0] + hdr + key, &v, 8);
	expect_failure("dmg.h5", b, len, &p, "child past EOF");
	/* two children of the root pointing at one node */
	memcpy(b, orig, len);
	memcpy(b + root[0] + hdr + 2 * key + 8, b + root[0] + hdr + key, 8);
	expect_failure("dmg.h5", b, len, &p, "node reached twice");
	/* the root pointing at itself */
	memcpy(b, orig, len);
	v = root[0];
	memcpy(b + root[0] + hdr + key, &v, 8);
	expect_failure("dmg.h5", b, len, &p, "loop to the root");
	/* an absurd entry count */
	memcpy(b, orig, len);
	b[root[0] + 6] = 0xff;
	b[root[0] + 7] = 0xff;
	expect_failure("dmg.h5", b, len, &p, "entry count");
	free(b);
	free(orig);
}

Test(h5chunks, truncated_files)
{
	probe p = damage_base(&damage_btree);
	size_t len;
	uint8_t *orig = slurp(path_of(damage_btree.file), &len);

	for (int pct = 95; pct > 0; pct -= 15)
		expect_failure("trunc.h5", orig, len * (size_t)pct / 100, &p, "truncated file");
	free(orig);
}

static const fx damage_fa = { .file = "dmg_fa.h5", .latest = 1, .rank = 1,
                              .dims = { 4000 * 4 }, .chunk = { 4 }, .type = T_I32,
                              .gap_lo = 1024, .gap_hi = 2048, .index = "farray" };
static const fx damage_ea = { .file = "dmg_ea.h5", .latest = 1, .rank = 1,
                              .dims = { 4000 * 4 }, .maxdims = { H5S_UNLIMITED },
                              .chunk = { 4 }, .type = T_I32, .deflate = 1,
                              .index = "earray" };

/* Flip one byte after each occurrence of a signature; each must be caught. */
static void flip_after(const fx *f, const char *sig, size_t off_in_block)
{
	probe p = damage_base(f);
	size_t len, hits = 0;
	uint8_t *orig = slurp(path_of(f->file), &len), *b = malloc(len);

	for (size_t i = 0; i + 64 < len; i++) {
		if (memcmp(orig + i, sig, 4) != 0)
			continue;
		memcpy(b, orig, len);
		b[i + off_in_block] ^= 0x40;
		expect_failure("flip.h5", b, len, &p, sig);
		hits++;
	}
	cr_assert_gt(hits, 0, "no %s block found", sig);
	free(b);
	free(orig);
}

Test(h5chunks, checksums_caught)
{
	flip_after(&damage_fa, "FAHD", 9);
	flip_after(&damage_fa, "FADB", 40);
	flip_after(&damage_ea, "EAHD", 13);
	flip_after(&damage_ea, "EAIB", 20);
	flip_after(&damage_ea, "EADB", 30);
}

Test(h5chunks, object_header_damage)
{
	probe p = damage_base(&damage_ea), q = damage_base(&damage_btree);
	size_t len;
	uint8_t *orig = slurp(path_of(damage_ea.file), &len), *b = malloc(len);

	memcpy(b, orig, len);
	b[p.ohdr + p.g.base_addr + 7] ^= 0x10;
	expect_failure("oh.h5", b, len, &p, "version-2 object header checksum");
	free(b);
	free(orig);
	orig = slurp(path_of(damage_btree.file), &len);
	b = malloc(len);
	memcpy(b, orig, len);
	memset(b + q.ohdr + q.g.base_addr + 8, 0xee, 4);
	expect_failure("oh.h5", b, len, &q, "version-1 object header size");
	memcpy(b, orig, len);
	memset(b + q.ohdr + q.g.base_addr + 16, 0x5a, 64);
	expect_failure("oh.h5", b, len, &q, "version-1 object header messages");
	free(b);
	free(orig);
}

/* Cut the file just after an index header: the blocks it points to are gone. */
static void cut_after(const fx *f, const char *sig)
{
	probe p = damage_base(f);
	size_t len;
	uint8_t *orig = slurp(path_of(f->file), &len);
	uint8_t *at = memmem(orig, len, sig, strlen(sig));
	scf__chunk_map m;
	char err[400] = "";

	cr_assert_not_null(at);
	spill(path_of("cut.h5"), orig, (size_t)(at - orig) + 64);
	cr_assert_eq(read_map(path_of("cut.h5"), &p, &m, err, sizeof(err)), SCF_E_CORRUPT);
	/* either a block lies past the end, or the grid is larger than the rest can hold */
	cr_assert(strstr(err, "past the end of the file") != NULL ||
	          strstr(err, "more than a file of") != NULL, "%s: %s", sig, err);
	cr_assert_null(m.rec);
	free(orig);
}

Test(h5chunks, index_blocks_past_eof)
{
	cut_after(&damage_fa, "FAHD");
	cut_after(&damage_ea, "EAHD");
	cut_after(&damage_btree, "TREE\001");
}

/* Random single-byte damage in and around index blocks: never a crash. */
static void fuzz(const fx *f, unsigned rounds)
{
	probe p = damage_base(f);
	size_t len, sites[256], ns = 0;
	uint8_t *orig = slurp(path_of(f->file), &len), *b = malloc(len);
	const char *sigs[] = { "TREE", "FAHD", "FADB", "EAHD", "EAIB", "EASB", "EADB", "OHDR" };
	uint64_t x = 88172645463325252ull;
	scf__chunk_map m;
	char err[400];

	for (size_t i = 0; i + 512 < len && ns < 256; i++)
		for (unsigned s = 0; s < 8; s++)
			if (memcmp(orig + i, sigs[s], 4) == 0)
				sites[ns++] = i;
	sites[ns++] = p.ohdr + p.g.base_addr;
	for (unsigned k = 0; k < rounds; k++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t at = sites[x % ns] + (x >> 20) % 512;
		memcpy(b, orig, len);
		b[at] ^= (uint8_t)(1u << ((x >> 40) % 8));
		spill(path_of("fuzz.h5"), b, len);
		int rc = read_map(path_of("fuzz.h5"), &p, &m, err, sizeof(err));
		if (rc < 0)
			cr_assert_neq(err[0], '\0');
		scf__chunk_map_free(&m);
	}
	unlink(path_of("fuzz.h5"));
	free(b);
	free(orig);
}

Test(h5chunks, fuzz_damaged_indexes)
{
	fuzz(&damage_btree, 300);
	fuzz(&damage_fa, 300);
	fuzz(&damage_ea, 300);
}
