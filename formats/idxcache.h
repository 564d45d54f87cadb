/*
 * formats/idxcache — the persistent index cache: what an open of a large
 * matrix spends its time on (every chunk index parsed, indptr read whole,
 * the overlap checks) saved once in a file and mapped read-only by every
 * later open, so that N processes on a node share one page-cache copy.
 * Thread: the caller of scf_open() (or scf_index_build()).
 *
 * One cache file per (.h5ad, matrix key):
 *   - opts->index_dir, else $SCFETCH_INDEX_DIR: <dir>/<name>.<h>[.<key>].scfidx
 *   - else beside the file: <file>[.<key>].scfidx
 *   - when that directory cannot be written (or holds no valid cache),
 *     $XDG_CACHE_HOME/scfetch (default ~/.cache/scfetch)/<name>.<h>[.<key>].scfidx
 * where <h> is a 64-bit hash of the file's absolute path and <key> is left
 * out for "X" (else the key with characters other than [A-Za-z0-9_-]
 * replaced by '_', and a hash of the key).
 *
 * A cache is used only when all of this holds, else it is rebuilt (and the
 * note says why):
 *   - its header: magic, version, byte order, length equal to the cache
 *     file's size, and a checksum of its own;
 *   - the .h5ad's size, mtime (ns), device and inode, and the matrix key;
 *   - every dataset's object-header address, storage, element size, dims and
 *     chunk shape, against what HDF5 reports at this open;
 *   - its sections lie back to back, in a fixed order, at the lengths the
 *     header's counts give, ending at the end of the file;
 *   - a checksum over the whole payload, read with pread (not through the
 *     mapping, which stays unpopulated until the engine touches it);
 *   - in the same pass, every number checked as the parser checks it: each
 *     written chunk inside the file after the superblock's start, a size of
 *     1..2^32-1 bytes; unwritten chunks of size 0 and none of them holding
 *     stored entries of a CSR matrix; filter-mask exceptions sorted, in the
 *     grid, non-zero; indptr starting >= 0, never decreasing, ending inside
 *     data (nnz and the widest row are recomputed here).
 * What is not checked again: that no two chunks share bytes and that none
 * overlaps an index block, object header or the superblock.  This library
 * writes a cache only after those checks passed on the file of that very
 * identity, and the checksum says the numbers are the ones it wrote; a cache
 * crafted to pass the checksum with overlapping chunks could make the
 * engine deliver another chunk's bytes as cells, but never read outside the
 * file: the threat is accidental damage (a cut copy, a bad disk, another
 * version), not a writer who can also rewrite the .h5ad beside it.
 *
 * Written atomically: a temporary file created with O_EXCL beside the
 * final name, written, fsync()ed and renamed over it, so a reader sees a
 * whole old cache or a whole new one; processes building at once each
 * write their own and the last rename wins (all are equal).  A cache file
 * is never modified or truncated in place, which is what makes mapping it
 * safe.  A cache that cannot be written anywhere never fails an open.
 */
#ifndef SCF_FORMATS_IDXCACHE_H
#define SCF_FORMATS_IDXCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "formats/h5ad.h"

/*
 * Take m's chunk maps and indptr from a valid cache of the file whose
 * descriptor's fstat() is st: 1 when done (m->idx_state SCF__IDX_REUSED,
 * arrays borrowed from the mapping), 0 when there is none usable (m's note
 * says why; the caller reads the file and calls scf__idx_save()).
 * m must be described (datasets, dims, object headers) but not yet indexed.
 */
int scf__idx_load(scf__matrix *m, const scf__idxcfg *cfg, const struct stat *st);

/*
 * Write the cache of an indexed m (fd: the .h5ad, whose fstat() was st
 * before its index was read), then use the written file's mapping in place
 * of m's own arrays.  Never fails: m->idx_state and the note say what
 * happened.
 */
void scf__idx_save(scf__matrix *m, const scf__idxcfg *cfg, const struct stat *st, int fd);

/* Unmap m's cache and free its note (the arrays borrowed from it must be gone). */
void scf__idx_free(scf__matrix *m);

/*
 * The cache file's path for path + key in directory dir (NULL: beside the
 * file), into out.  0, or -ENAMETOOLONG / -errno from realpath().
 */
int scf__idx_path(const char *path, const char *key, const char *dir, char *out, size_t len);

/*
 * The file: this header, then the sections, each starting at a multiple of
 * 64 bytes and zero-padded to one: indptr (CSR: n_rows + 1 int64), then
 * for data and indices when chunked, the chunk records (n x 12 bytes,
 * scf__chunk_rec) and the filter-mask exceptions (n_exc x scf__chunk_exc).
 * Every header field is 64-bit, so the struct has no padding and is
 * written as it is; values are in the host's byte order, which byte_order
 * records (a host of the other order sees a foreign cache and rebuilds).
 */
#define SCF__IDX_MAGIC "SCFIDX\r\n"
#define SCF__IDX_VERSION 1

typedef struct scf__idx_dset {
	uint64_t ohdr;           /* absolute address of its object header */
	uint64_t storage;        /* enum scf__storage, 0: absent */
	uint64_t type;           /* class << 8 | element bytes */
	uint64_t dims[2];
	uint64_t chunk_dims[2];  /* chunked only */
	uint64_t n, n_exc;       /* chunks, filter-mask exceptions */
	uint64_t rec_off, exc_off;
} scf__idx_dset;

typedef struct scf__idx_hdr {
	char magic[8];
	uint64_t version;
	uint64_t byte_order;     /* 0x0102030405060708 */
	uint64_t hdr_bytes;      /* sizeof(scf__idx_hdr) */
	uint64_t file_bytes;     /* the cache file's length */
	uint64_t payload_sum;    /* hash of bytes [hdr_bytes, file_bytes) */
	uint64_t hdr_sum;        /* hash of this header with hdr_sum 0 */
	uint64_t st_size, st_dev, st_ino, mtime_sec, mtime_nsec; /* the .h5ad's */
	char key[128];           /* the matrix, NUL-padded */
	uint64_t encoding, n_rows, n_cols, sb_start;
	uint64_t indptr_off;
	scf__idx_dset ds[3];     /* data, indices, indptr (identity only) */
	uint64_t reserved[14];   /* 0 */
} scf__idx_hdr;

/*
 * Recompute the checksums of the cache file at path after its numbers were
 * edited: for tests that check the bounds enforced beyond the checksum.
 * 0 or a negative errno.
 */
int scf__idx_reseal(const char *path);

#endif
