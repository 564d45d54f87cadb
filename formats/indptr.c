/*
 * formats/indptr — a CSR matrix's indptr, read whole at open by scfetch's
 * own code (pread, and the codecs for chunked filtered storage), never by
 * H5Dread: HDF5's read of a damaged filtered dataset is one of the bugs of
 * its own that the fuzzers found, and with this every byte of a matrix
 * passes through checked code.  Thread: the caller of scf_open().
 */
#include "formats/h5ad.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scfetch.h"
#include "common/checked.h"
#include "common/codecs.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

/* Stored integers per slice of a contiguous indptr read. */
#define SLICE (1u << 20)

/* pread all of it, or fail: short reads continue, end of file is an error. */
static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	for (size_t done = 0; done < len;) {
		ssize_t r = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : SCF_E_CORRUPT;
		done += (size_t)r;
	}
	return 0;
}

/* Integers of any stored width to int64 (uint64 above INT64_MAX stays negative: refused later). */
static void ints_to_i64(int64_t *dst, const uint8_t *src, uint64_t n, scf__dtype t)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t u = 0;
		memcpy(&u, src + i * t.size, t.size);
		if (t.cls == SCF__T_INT && t.size < 8 && (u >> (t.size * 8 - 1)))
			u |= ~0ULL << (t.size * 8); /* sign-extend */
		dst[i] = (int64_t)u;
	}
}

static int read_contiguous(const scf__dset *ds, int fd, uint64_t n, int64_t *out, char *why,
                           size_t wlen)
{
	uint8_t *buf = scf__alloc_array(n < SLICE ? n : SLICE, ds->type.size);
	int rc = buf ? 0 : -ENOMEM;

	for (uint64_t at = 0; rc == 0 && at < n; at += SLICE) {
		uint64_t k = n - at < SLICE ? n - at : SLICE;
		rc = pread_full(fd, buf, k * ds->type.size, ds->offset + at * ds->type.size);
		if (rc < 0)
			snprintf(why, wlen, "cannot be read at byte %llu: %s",
			         (unsigned long long)(ds->offset + at * ds->type.size),
			         rc == SCF_E_CORRUPT ? "the file ends first" : scf_strerror(rc));
		else
			ints_to_i64(out + at, buf, k, ds->type);
	}
	free(buf);
	return rc;
}

static int read_chunked(const scf__dset *ds, int fd, uint64_t n, int64_t *out, char *why,
                        size_t wlen)
{
	uint64_t cd = ds->chunks.chunk_dims[0], chunk_bytes = cd * ds->type.size;
	uint8_t *in = NULL, *dec = scf__alloc_array(chunk_bytes, 1);
	scf__filter_ctx *fx = ds->n_filters ? scf__filter_ctx_new() : NULL;
	size_t in_cap = 0;
	int rc = dec && (fx || !ds->n_filters) ? 0 : -ENOMEM;

	for (uint64_t c = 0; rc == 0 && c * cd < n; c++) {
		scf__chunk ch = scf__chunk_at(&ds->chunks, c);
		uint64_t k = (c + 1) * cd < n ? cd : n - c * cd;
		if (ch.addr == SCF__CHUNK_UNALLOCATED) {
			snprintf(why, wlen, "chunk %llu was never written", (unsigned long long)c);
			rc = SCF_E_CORRUPT;
			break;
		}
		if (ch.size > in_cap) {
			uint8_t *q = realloc(in, ch.size);
			if (!q) {
				rc = -ENOMEM;
				break;
			}
			in = q;
			in_cap = ch.size;
		}
		rc = pread_full(fd, in, ch.size, ch.addr);
		if (rc < 0) {
			snprintf(why, wlen, "chunk %llu cannot be read: %s", (unsigned long long)c,
			         rc == SCF_E_CORRUPT ? "the file ends first" : scf_strerror(rc));
			break;
		}
		if (ds->n_filters) {
			rc = scf__filter_decode(fx, ds->filter, ds->n_filters, ch.filter_mask,
			                        ds->type.size, in, ch.size, dec, chunk_bytes, why, wlen);
		} else if (ch.size < k * ds->type.size) {
			snprintf(why, wlen, "chunk %llu holds %u bytes, fewer than its %llu entries",
			         (unsigned long long)c, ch.size, (unsigned long long)k);
			rc = SCF_E_CORRUPT;
		} else {
			memcpy(dec, in, k * ds->type.size);
		}
		if (rc == 0)
			ints_to_i64(out + c * cd, dec, k, ds->type);
	}
	if (rc == -ENOMEM)
		snprintf(why, wlen, "out of memory");
	scf__filter_ctx_free(fx);
	free(in);
	free(dec);
	return rc;
}

int scf__indptr_read(const scf__dset *ds, int fd, uint64_t n, int64_t *out, char *why,
                     size_t wlen)
{
	for (unsigned f = 0; f < ds->n_filters; f++) {
		char name[32];
		if (!scf__filter_supported(ds->filter[f].id)) {
			snprintf(why, wlen, "uses %s (HDF5 filter id %d), which scfetch cannot decode",
			         scf__filter_name(ds->filter[f].id, name, sizeof(name)),
			         ds->filter[f].id);
			return SCF_E_UNSUPPORTED;
		}
	}
	if (n == 0)
		return 0;
	if (ds->storage == SCF__CHUNKED)
		return read_chunked(ds, fd, n, out, why, wlen);
	return read_contiguous(ds, fd, n, out, why, wlen);
}
