/*
 * formats/h5index_farray.c — the fixed array chunk index (layout version 4,
 * no unlimited dimension): a header and one data block, paged when large.
 * Opening thread only; no HDF5 calls.
 */
#include "formats/h5chunks_int.h"
#include "scfetch.h"

#include <stdlib.h>
#include <string.h>
#include "common/faults.h" /* last: may wrap malloc in test builds */

/* The fixed array's data block: entries inline, or a bitmap and pages. */
static int fa_dblock(scf__h5r *r, const scf__h5arr *a, uint64_t addr,
                     uint64_t nelmts, unsigned page_bits)
{
	uint64_t page_n = UINT64_C(1) << page_bits, npages, bm, pre, len, abs;
	int paged = nelmts > page_n, rc = 0;
	uint8_t *p;

	npages = paged ? (nelmts + page_n - 1) / page_n : 0;
	bm = (npages + 7) / 8;
	pre = 6 + r->sa + bm + 4;
	if (__builtin_mul_overflow(nelmts, a->esize, &len) ||
	    __builtin_add_overflow(len, pre + 4 * npages, &len) ||
	    !scf__h5_span(r, addr, len, &abs))
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the fixed array data block at address %llu (%llu entries) "
		                    "lies past the end of the file", (unsigned long long)addr,
		                    (unsigned long long)nelmts);
	p = scf__h5_alloc(r, len, &rc);
	if (!p)
		return rc;
	rc = scf__h5_read(r, addr, p, (size_t)len, "fixed array data block");
	if (rc < 0)
		goto out;
	rc = scf__h5_block_prefix(r, a, p, "FADB", addr);
	if (rc < 0)
		goto out;
	rc = scf__h5_sum(r, p, (size_t)(paged ? pre : len), "fixed array data block", addr);
	if (rc < 0)
		goto out;
	rc = paged ? scf__h5_pages(r, a, p + pre, addr, p + 6 + r->sa, 0, nelmts, page_n, 0)
	           : scf__h5_elements(r, a, p + 6 + r->sa, 0, nelmts);
out:
	free(p);
	return rc;
}

/* Fixed array index ("FAHD" header, then its data block). */
int scf__h5_farray(scf__h5r *r, const scf__h5layout *l)
{
	scf__h5arr a = { .what = "fixed array", .hdr_addr = l->addr };
	size_t len = 12 + r->ss + r->sa;
	uint8_t h[40];
	uint64_t nelmts, dblk, want = 1;
	int rc;

	if (l->addr == r->undef)
		return 0;
	rc = scf__h5_read(r, l->addr, h, len, "fixed array header");
	if (rc == 0 && (memcmp(h, "FAHD", 4) != 0 || h[4] != 0))
		rc = scf__h5_fail(r, SCF_E_CORRUPT, "no fixed array header at address %llu",
		                  (unsigned long long)l->addr);
	if (rc == 0)
		rc = scf__h5_sum(r, h, len, "fixed array header", l->addr);
	if (rc == 0)
		rc = scf__h5_arr_format(r, &a, h[5], h[6]);
	if (rc < 0)
		return rc;
	nelmts = scf__h5_get(h + 8, r->ss);
	dblk = scf__h5_get(h + 8 + r->ss, r->sa);
	for (unsigned i = 0; i < r->rank; i++)
		if (__builtin_mul_overflow(want, r->maxgrid[i], &want))
			want = UINT64_MAX;
	if (h[7] != l->fa_page_bits || h[7] > 32 || nelmts != want)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the fixed array header (%llu entries, page bits %u) does "
		                    "not match the dataset (%llu chunks, page bits %u)",
		                    (unsigned long long)nelmts, h[7], (unsigned long long)want,
		                    l->fa_page_bits);
	if (dblk == r->undef)
		return 0;
	return fa_dblock(r, &a, dblk, nelmts, h[7]);
}
