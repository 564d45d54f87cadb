/*
 * tools/synth — writes a realistic synthetic .h5ad for demos and benchmarks:
 * cells sorted by label, log-normal non-zeros per cell, negative-binomial
 * counts, stored as anndata stores CSR (chunked, resizable), streaming with
 * bounded memory.  Uses the HDF5 library (a writer, not on any hot path).
 */
#ifndef SCF_TOOLS_SYNTH_H
#define SCF_TOOLS_SYNTH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct scf_synth_opts {
	uint64_t n_cells;      /* default 100,000 */
	uint64_t n_genes;      /* default 20,000 (Tahoe: 62,710) */
	double median_nnz;     /* median non-zeros per cell, default 2,000 */
	double sigma_nnz;      /* log-normal sigma of non-zeros per cell, default 0.5 */
	uint32_t n_labels;     /* cell lines (obs/cell_line), default 50 */
	uint32_t n_plates;     /* plates (obs/plate), default 1; sorted by plate then label */
	uint64_t chunk;        /* elements per chunk of X/data and X/indices, default 65,536 */
	int deflate;           /* gzip level, 0 = none */
	uint64_t seed;
} scf_synth_opts;

/* Write path; progress goes to `progress` when not NULL.  0 or -1 (+ err). */
int scf_synth_write(const char *path, const scf_synth_opts *o, FILE *progress,
                    char *err, size_t errlen);

#endif
