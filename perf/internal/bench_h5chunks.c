/*
 * perf/internal/bench_h5chunks — how long the one-pass chunk-index reader takes on
 * datasets of 1,000,000 chunks (version-1 B-tree, extensible array, fixed
 * array), beside HDF5's own H5Dget_chunk_info on the first 4,000 chunks.
 *
 * usage: bench_h5chunks [dir]   files are kept (and reused) in dir when given,
 *                               else written to a temporary directory under
 *                               /var/tmp and removed at the end.
 */
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "formats/h5chunks.h"
#include "scfetch.h"

#define N_CHUNKS   1000000ull
#define CHUNK      16ull
#define HDF5_FIRST 4000ull
#define RUNS       5

typedef struct bench_file {
	const char *name, *what;
	int latest, unlimited;
} bench_file;

static const bench_file files[] = {
	{ "bench_default_unlimited.h5", "default format, unlimited (v1 B-tree)", 0, 1 },
	{ "bench_latest_unlimited.h5", "libver latest, unlimited (extensible array)", 1, 1 },
	{ "bench_latest_fixed.h5", "libver latest, fixed (fixed array)", 1, 0 },
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* An existing file with the expected dataset is reused as it is. */
static int usable(const char *path)
{
	hid_t f, d, sp;
	hsize_t dims[1] = { 0 };
	struct stat st;

	if (stat(path, &st) != 0)
		return 0;
	f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (f < 0)
		return 0;
	d = H5Dopen2(f, "d", H5P_DEFAULT);
	if (d >= 0) {
		sp = H5Dget_space(d);
		H5Sget_simple_extent_dims(sp, dims, NULL);
		H5Sclose(sp);
		H5Dclose(d);
	}
	H5Fclose(f);
	return dims[0] == N_CHUNKS * CHUNK;
}

/* 16,000,000 int32 in chunks of 16, written with one H5Dwrite. */
static int write_file(const char *path, const bench_file *b)
{
	hsize_t dims[1] = { N_CHUNKS * CHUNK }, maxd[1] = { H5S_UNLIMITED }, ch[1] = { CHUNK };
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), dcpl = H5Pcreate(H5P_DATASET_CREATE);
	hid_t f, sp, d;
	int32_t *buf = malloc(dims[0] * sizeof(int32_t));
	double t0 = now_ms();
	herr_t e;

	if (!buf)
		return -1;
	for (hsize_t i = 0; i < dims[0]; i++)
		buf[i] = (int32_t)i;
	if (b->latest)
		H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
	H5Pset_chunk(dcpl, 1, ch);
	f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
	sp = H5Screate_simple(1, dims, b->unlimited ? maxd : dims);
	d = H5Dcreate2(f, "d", H5T_STD_I32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	e = d >= 0 ? H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : -1;
	H5Dclose(d);
	H5Sclose(sp);
	H5Fclose(f);
	H5Pclose(dcpl);
	H5Pclose(fapl);
	free(buf);
	printf("  wrote %s in %.0f ms\n", path, now_ms() - t0);
	return e < 0 ? -1 : 0;
}

/* The reader's inputs, from the HDF5 API. */
static int probe(hid_t f, hid_t d, const char *path, scf__h5geom *g, uint64_t *ohdr)
{
	hid_t fcpl = H5Fget_create_plist(f);
	size_t sa = 0, ss = 0;
	hsize_t ub = 0;
	H5O_info_t oi;
	struct stat st;

	H5Pget_sizes(fcpl, &sa, &ss);
	H5Pget_userblock(fcpl, &ub);
	H5Pclose(fcpl);
	if (H5Oget_info2(d, &oi, H5O_INFO_BASIC) < 0 || stat(path, &st) != 0)
		return -1;
	*g = (scf__h5geom){ (unsigned)sa, (unsigned)ss, ub, (uint64_t)st.st_size };
	*ohdr = oi.addr;
	return 0;
}

/* RUNS timed reads of the whole index; the map of the last one is kept. */
static int time_reader(const char *path, const scf__h5geom *g, uint64_t ohdr,
                       scf__chunk_map *m)
{
	uint64_t dims[1] = { N_CHUNKS * CHUNK }, cd[1] = { CHUNK };
	double best = 1e30, first = 0;
	char err[400];
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -1;
	/* the first run starts from a cold page cache for this file */
	fsync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	for (int r = 0; r < RUNS; r++) {
		double t0 = now_ms(), dt;
		int rc = scf__h5chunks_read(fd, g, ohdr, 1, dims, cd, 4, m, err, sizeof(err));
		dt = now_ms() - t0;
		if (rc < 0) {
			printf("  scf__h5chunks_read failed (%d): %s\n", rc, err);
			close(fd);
			return -1;
		}
		if (r < RUNS - 1)
			scf__chunk_map_free(m);
		if (r == 0)
			first = dt;
		else if (dt < best)
			best = dt;
	}
	close(fd);
	printf("  scf__h5chunks_read: %llu chunks, cold cache %.1f ms, warm best of %d "
	       "%.1f ms (%.1f M chunks/s)\n", (unsigned long long)m->n, first, RUNS - 1,
	       best, m->n / best / 1e3);
	return 0;
}

/* Chunks spread over the whole map hold the values written (element i = i). */
static void check_data(const char *path, const scf__chunk_map *m)
{
	uint64_t bad = 0, alloc = 0;
	int fd = open(path, O_RDONLY);

	for (uint64_t i = 0; i < m->n; i++)
		alloc += scf__chunk_addr(m, i) != SCF__CHUNK_UNALLOCATED;
	for (uint64_t k = 0; k < 1000 && fd >= 0; k++) {
		uint64_t c = k * (m->n - 1) / 999;
		int32_t v[CHUNK];
		if (pread(fd, v, sizeof(v), (off_t)scf__chunk_addr(m, c)) != (ssize_t)sizeof(v)) {
			bad++;
			continue;
		}
		for (uint64_t j = 0; j < CHUNK; j++)
			bad += v[j] != (int32_t)(c * CHUNK + j);
	}
	if (fd >= 0)
		close(fd);
	printf("  %llu chunks allocated; 1000 chunks spread over the map read back %s\n",
	       (unsigned long long)alloc, bad || fd < 0 ? "WRONG" : "correctly");
}

/* HDF5's own enumeration of the first chunks, checked against the map. */
static void time_hdf5(hid_t d, const scf__h5geom *g, const scf__chunk_map *m)
{
	hid_t sp = H5Dget_space(d);
	uint64_t agree = 0;
	double t0 = now_ms(), dt;

	for (hsize_t k = 0; k < HDF5_FIRST; k++) {
		hsize_t off[1];
		unsigned mask;
		haddr_t addr;
		hsize_t size;
		if (H5Dget_chunk_info(d, sp, k, off, &mask, &addr, &size) < 0)
			break;
		agree += off[0] / CHUNK < m->n && scf__chunk_addr(m, off[0] / CHUNK) == addr + g->base_addr;
	}
	dt = now_ms() - t0;
	H5Sclose(sp);
	printf("  H5Dget_chunk_info, first %llu chunks: %.1f ms (%.0f chunks/s); "
	       "%llu of them agree with the map\n", HDF5_FIRST, dt, HDF5_FIRST / dt * 1e3,
	       (unsigned long long)agree);
}

static int bench_one(const char *dir, const bench_file *b)
{
	char path[512];
	scf__chunk_map m = { 0 };
	scf__h5geom g;
	uint64_t ohdr;
	hid_t f, d;
	int rc = -1;

	snprintf(path, sizeof(path), "%s/%s", dir, b->name);
	printf("%s\n", b->what);
	if (!usable(path) && write_file(path, b) < 0)
		return -1;
	f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	d = f >= 0 ? H5Dopen2(f, "d", H5P_DEFAULT) : -1;
	if (d >= 0 && probe(f, d, path, &g, &ohdr) == 0 && time_reader(path, &g, ohdr, &m) == 0) {
		check_data(path, &m);
		time_hdf5(d, &g, &m);
		rc = 0;
	}
	scf__chunk_map_free(&m);
	if (d >= 0)
		H5Dclose(d);
	if (f >= 0)
		H5Fclose(f);
	return rc;
}

int main(int argc, char **argv)
{
	char tmp[] = "/var/tmp/scf_bench_h5c_XXXXXX";
	const char *dir = argc > 1 ? argv[1] : mkdtemp(tmp);
	int rc = 0;

	if (!dir) {
		perror("mkdtemp");
		return 1;
	}
	printf("%llu chunks of %llu int32 per dataset, files in %s\n",
	       (unsigned long long)N_CHUNKS, (unsigned long long)CHUNK, dir);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		rc |= bench_one(dir, &files[i]);
	if (argc <= 1) {
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			char path[512];
			snprintf(path, sizeof(path), "%s/%s", dir, files[i].name);
			unlink(path);
		}
		rmdir(dir);
	}
	return rc ? 1 : 0;
}
