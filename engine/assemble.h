/*
 * engine/assemble — from a fetch's staging bytes to its minibatches: rows
 * are taken in the fetch's shuffled delivery order, converted from the
 * file's dtypes (data to float32, indices to int32, checked against the
 * number of columns) and written into the fetch's output arena, which the
 * batches then point into without further copies.
 * Thread: a decode worker; one fetch per call, no shared state.
 */
#ifndef SCF_ENGINE_ASSEMBLE_H
#define SCF_ENGINE_ASSEMBLE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/plan.h"
#include "engine/sampler.h"
#include "formats/h5ad.h"
#include "scfetch.h"

/* Per-worker scratch, sized for one row. */
typedef struct scf__scratch {
	float *vals;
	int32_t *idx;
	uint64_t cap;
} scf__scratch;

int scf__scratch_init(scf__scratch *s, uint64_t n_cols);
void scf__scratch_free(scf__scratch *s);

/* Arena bytes a fetch needs for its batches. */
size_t scf__assemble_bytes(const scf__matrix *m, const scf__plan *p, uint64_t n_rows,
                           uint32_t batch_size, int output);

/*
 * Fill batch[0..*n_batch) from staging.  arena holds scf__assemble_bytes()
 * bytes.  Returns 0 or SCF_E_CORRUPT with a sentence in err (a column index
 * outside the matrix).
 */
int scf__assemble(const scf__matrix *m, const scf__plan *p, const scf__fetch_order *o,
                  const uint8_t *staging, uint32_t batch_size, int output,
                  uint8_t *arena, scf_batch *batch, uint32_t *n_batch,
                  scf__scratch *scratch, char *err, size_t errlen);

#endif
