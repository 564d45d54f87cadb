/*
 * engine/plan — from a fetch's sorted rows to the reads that bring their
 * bytes in.  Each row becomes pieces (contiguous byte runs of one dataset
 * inside one storage unit: the contiguous extent or one chunk); pieces of
 * both datasets are sorted by file offset, widened to the O_DIRECT
 * alignment, merged when closer than the gap threshold, laid out back to
 * back in one staging buffer, and cut into reads of at most max_read bytes.
 * Pure computation, no I/O.  Thread: the loader's I/O thread.
 */
#ifndef SCF_ENGINE_PLAN_H
#define SCF_ENGINE_PLAN_H

#include <stdint.h>

#include "formats/h5ad.h"

#define SCF__NO_FILE UINT64_MAX /* piece of an unallocated chunk: zeros */

typedef struct scf__piece {
	uint64_t file_off;    /* absolute offset, or SCF__NO_FILE */
	uint64_t staging_off; /* where its bytes land in the staging buffer */
	uint64_t nbytes;
} scf__piece;

typedef struct scf__read {
	uint64_t file_off;
	uint64_t staging_off;
	uint32_t len;  /* bytes asked for (aligned) */
	uint32_t need; /* bytes that must arrive: the rest is alignment past a
	                  piece's end, which may lie beyond the end of the file */
} scf__read;

typedef struct scf__plan_cfg {
	uint32_t align;       /* 4096 with O_DIRECT, 1 otherwise */
	uint32_t max_read;    /* multiple of align */
	uint32_t gap;         /* merge runs closer than this */
} scf__plan_cfg;

typedef struct scf__plan {
	uint64_t n_rows;
	/* Row i's data pieces are dpiece[drow[i] .. drow[i+1]), likewise indices. */
	uint64_t *drow, *irow;
	scf__piece *dpiece, *ipiece;
	uint64_t n_dpiece, n_ipiece, cap_dpiece, cap_ipiece;
	scf__read *reads;
	uint64_t n_reads, cap_reads;
	uint64_t staging_bytes;   /* bytes of staging the reads fill */
	uint64_t bytes_requested; /* bytes of the pieces themselves */
	uint64_t nnz;             /* elements the fetch delivers (CSR) */
	/* scratch for sorting pieces by offset */
	scf__piece **order;
	uint64_t cap_order;
	uint64_t cap_rows;
} scf__plan;

void scf__plan_init(scf__plan *p);
void scf__plan_free(scf__plan *p);

/* Build the plan of `n` sorted rows of m.  0 or -ENOMEM / SCF_E_CORRUPT. */
int scf__plan_build(scf__plan *p, const scf__matrix *m, const scf__plan_cfg *cfg,
                    const uint64_t *rows, uint64_t n);

#endif
