/*
 * formats/h5index_single.c — the two layout-version-4 indexes that need no
 * index blocks: a single chunk whose extent the layout message holds, and
 * implicit chunks stored back to back.  Opening thread only; no HDF5 calls.
 */
#include "formats/h5chunks_int.h"
#include "scfetch.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

/* A dataset of exactly one chunk: the layout message holds its extent. */
int scf__h5_single(scf__h5r *r, const scf__h5layout *l)
{
	if (r->map->n == 0 || l->addr == r->undef)
		return 0;
	if (r->map->n != 1)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "a single-chunk index on a dataset of %llu chunks",
		                    (unsigned long long)r->map->n);
	if (l->flags & 2)
		return scf__h5_put(r, 0, l->addr, l->single_size, l->single_mask,
		                   "single-chunk index");
	return scf__h5_put(r, 0, l->addr, r->chunk_bytes, 0, "single-chunk index");
}

/* Chunks stored back to back in array order, all allocated up front. */
int scf__h5_implicit(scf__h5r *r, const scf__h5layout *l)
{
	uint64_t total, abs;

	if (l->addr == r->undef || r->n_lin == 0)
		return 0;
	if (__builtin_mul_overflow(r->n_lin, r->chunk_bytes, &total) ||
	    !scf__h5_span(r, l->addr, total, &abs))
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "implicitly indexed chunks at address %llu run past the "
		                    "end of the file", (unsigned long long)l->addr);
	for (uint64_t li = 0; li < r->n_lin; li++) {
		uint64_t idx = scf__h5_lin_to_map(r, li);
		if (idx == SCF__H5_NONE)
			continue;
		r->map->rec[idx] = (scf__chunk_rec){ abs + li * r->chunk_bytes,
		                                     (uint32_t)r->chunk_bytes };
	}
	return 0;
}
