/*
 * engine/plan — from a fetch's sorted rows to the reads that bring their
 * bytes in.  Each row becomes pieces: contiguous byte runs of one dataset
 * inside one storage unit (the contiguous extent, or one chunk).  A piece of
 * an unfiltered dataset is read where it lies; a piece of a filtered
 * dataset points into its chunk, which is read whole, once per fetch, and
 * decoded by the assembly stage.  Everything to read is sorted by file
 * offset, widened to the O_DIRECT alignment, merged when closer than the gap
 * threshold, laid back to back in one staging buffer and cut into reads of
 * at most max_read bytes.
 * Pure computation, no I/O.  Thread: the loader's I/O thread.
 */
#ifndef SCF_ENGINE_PLAN_H
#define SCF_ENGINE_PLAN_H

#include <stdint.h>

#include "formats/h5ad.h"

#define SCF__NO_FILE UINT64_MAX  /* piece of an unallocated chunk: zeros */
#define SCF__RAW UINT32_MAX      /* piece not inside a filtered chunk */

/*
 * The files a loader reads as one index space (a collection; one file is
 * the n = 1 case): file f holds global rows [row0[f], row0[f + 1]).
 */
typedef struct scf__files {
	const scf__matrix *m; /* n matrices */
	const uint64_t *row0; /* n + 1 */
	uint32_t n;
} scf__files;

/* The file holding global row `row` (< row0[n]). */
uint32_t scf__files_find(const scf__files *fs, uint64_t row);

/* Bytes to bring from one file into staging. */
typedef struct scf__extent {
	uint64_t file_off;    /* absolute offset, or SCF__NO_FILE */
	uint64_t staging_off; /* where the bytes land in staging */
	uint64_t nbytes;
	uint32_t file;        /* index into the loader's files */
	uint32_t _pad;
} scf__extent;

typedef struct scf__piece {
	scf__extent x;        /* raw: the bytes themselves; filtered: file_off is
	                         SCF__NO_FILE and staging_off is the byte offset of
	                         the piece inside its decoded chunk */
	uint32_t zchunk;      /* index into the plan's chunk list, or SCF__RAW */
	uint32_t _pad;
} scf__piece;

/* A filtered chunk some rows of the fetch need: read whole, decoded once. */
typedef struct scf__zchunk {
	scf__extent x;        /* the chunk as stored */
	uint64_t id;          /* position in the dataset's chunk grid */
	uint64_t need;        /* decoded bytes the fetch uses: the end of its last piece */
	uint64_t used;        /* decoded bytes the fetch's pieces cover, in all */
	uint32_t filter_mask;
	uint32_t ds;          /* 0: data, 1: indices; of file x.file */
} scf__zchunk;

/* One read never spans files: runs are cut where the file changes. */
typedef struct scf__read {
	uint64_t file_off;
	uint64_t staging_off;
	uint32_t len;  /* bytes asked for (aligned) */
	uint32_t need; /* bytes that must arrive: the rest is alignment past a
	                  piece's end, which may lie beyond the end of the file */
	uint32_t file;
	uint32_t _pad;
} scf__read;

typedef struct scf__plan_cfg {
	uint32_t align;       /* 4096 with O_DIRECT, 1 otherwise */
	uint32_t max_read;    /* multiple of align */
	uint32_t gap;         /* merge runs closer than this */
	/* Decoded chunks kept from earlier fetches: returns a pinned entry that
	 * holds z's bytes (then z is neither read nor decoded), or NULL. */
	void *(*lookup)(void *ctx, const scf__zchunk *z);
	void *lookup_ctx;
} scf__plan_cfg;

typedef struct scf__plan {
	uint64_t n_rows;
	uint32_t *rfile;          /* row i lies in file rfile[i] */
	uint64_t dense_rows;      /* rows of dense files (their entries are not in nnz) */
	/* Row i's data pieces are dpiece[drow[i] .. drow[i+1]), likewise indices. */
	uint64_t *drow, *irow;
	scf__piece *dpiece, *ipiece;
	uint64_t n_dpiece, n_ipiece, cap_dpiece, cap_ipiece;
	scf__zchunk *zchunk;
	void **zhold;             /* per zchunk: a pinned cache entry holding its
	                             decoded bytes (from lookup, or published by the
	                             assembly), or NULL; the owner of the plan unpins */
	uint64_t n_zchunk, cap_zchunk, n_zhold, cap_zhold;
	uint64_t n_cached;        /* zchunks found in the cache at plan time */
	scf__read *reads;
	uint64_t n_reads, cap_reads;
	uint64_t staging_bytes;   /* bytes of staging the reads fill */
	uint64_t bytes_requested; /* bytes the rows occupy (decoded) */
	uint64_t bytes_decoded;   /* bytes of filtered chunks decoded */
	uint64_t nnz;             /* stored entries of the fetch's rows in CSR files */
	/* scratch for sorting extents by offset */
	scf__extent **order;
	uint64_t cap_order;
	uint64_t cap_rows;
} scf__plan;

void scf__plan_init(scf__plan *p);
void scf__plan_free(scf__plan *p);

/* Build the plan of `n` sorted global rows of the files.  0 or -ENOMEM. */
int scf__plan_build_files(scf__plan *p, const scf__files *fs, const scf__plan_cfg *cfg,
                          const uint64_t *rows, uint64_t n);

/* The same for the rows of one matrix. */
int scf__plan_build(scf__plan *p, const scf__matrix *m, const scf__plan_cfg *cfg,
                    const uint64_t *rows, uint64_t n);

/* Uncompressed bytes of one chunk of ds. */
uint64_t scf__chunk_bytes(const scf__dset *ds);

#endif
