/*
 * fuzz/fuzz_h5chunks — libFuzzer target for formats/h5chunks, the one-pass
 * chunk-index reader: the input is a dataset's geometry as the HDF5 API
 * would report it and a whole file image (fuzz/fuzz.h), laid in a memfd and
 * read with pread as the real file is.  The reader runs with the given
 * geometry and with two near misses (one chunk more in dimension 0, the
 * other element size), as a file that disagrees with HDF5 would present.
 * Failures must leave a sentence and no map; every chunk of a map it
 * returns must lie inside the file.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/h5chunks.h"
#include "fuzz/fuzz.h"
#include "scfetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The map is dense over the declared grid: geometries far larger than any
 * file these seeds produce only measure malloc.  (formats/h5ad.c takes the
 * grid from the dataspace; fuzz_open covers that path.)
 */
#define MAX_GRID (UINT64_C(1) << 20)

static int fd = -1;
static int verbose = -1; /* SCF_FUZZ_VERBOSE=1: say what each input did (checking seeds) */

static unsigned width(uint8_t v)
{
	return v == 2 || v == 4 ? v : 8;
}

static void check_map(const scf__chunk_map *m, uint64_t eof)
{
	for (uint64_t i = 0; i < m->n; i++) {
		const scf__chunk cv = scf__chunk_at(m, i), *c = &cv;
		if (c->addr == SCF__CHUNK_UNALLOCATED)
			continue;
		if (c->size == 0 || c->addr > eof || c->size > eof - c->addr) {
			fprintf(stderr, "fuzz_h5chunks: chunk %llu at %llu (%u bytes) outside a "
			        "file of %llu bytes\n", (unsigned long long)i,
			        (unsigned long long)c->addr, c->size, (unsigned long long)eof);
			abort();
		}
	}
}

static void run(const scf__h5geom *g, const fz_h5c_hdr *h, unsigned rank,
                const uint64_t *dims, const uint64_t *chunk, size_t elem)
{
	scf__chunk_map m;
	char err[512];
	uint64_t grid = 1;

	for (unsigned i = 0; i < rank; i++) {
		if (chunk[i] == 0)
			return;
		uint64_t n = dims[i] ? (dims[i] - 1) / chunk[i] + 1 : 0;
		if (__builtin_mul_overflow(grid, n, &grid) || grid > MAX_GRID)
			return;
	}
	err[0] = '\0';
	int rc = scf__h5chunks_read(fd, g, h->ohdr_addr, rank, dims, chunk, elem, &m, err,
	                            sizeof(err));
	if (verbose)
		fprintf(stderr, "fuzz_h5chunks: %d %s%s\n", rc, err, rc == 0 ? "map read" : "");
	if (rc < 0) {
		if (!err[0] || m.rec) {
			fprintf(stderr, "fuzz_h5chunks: code %d, message \"%s\", map %p\n", rc, err,
			        (void *)m.rec);
			abort();
		}
		return;
	}
	check_map(&m, g->eof);
	scf__chunk_map_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_h5c_hdr h;

	if (size < FZ_H5C_HDR_LEN)
		return 0;
	if (fd < 0 && (fd = memfd_create("fuzz_h5chunks", MFD_CLOEXEC)) < 0)
		abort();
	if (verbose < 0)
		verbose = getenv("SCF_FUZZ_VERBOSE") != NULL;
	fz_h5c_unpack(data, &h);
	size_t len = size - FZ_H5C_HDR_LEN;
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data + FZ_H5C_HDR_LEN, len, 0) != (ssize_t)len)
		abort();
	scf__h5geom g = { width(h.sizeof_addr), width(h.sizeof_size), h.base_addr, len };
	unsigned rank = h.rank == 1 || h.rank == 2 ? h.rank : 1u + (h.rank & 1u);
	uint64_t dims[2] = { h.dims[0], h.dims[1] }, chunk[2] = { h.chunk[0], h.chunk[1] };
	size_t elem = h.elem_size ? h.elem_size : 4;

	run(&g, &h, rank, dims, chunk, elem);
	dims[0] += chunk[0];
	run(&g, &h, rank, dims, chunk, elem);
	dims[0] -= chunk[0];
	run(&g, &h, rank, dims, chunk, elem == 4 ? 8 : 4);
	return 0;
}
