/*
 * formats/h5index_earray.c — the extensible array chunk index (layout
 * version 4, one unlimited dimension): header, index block, super blocks
 * and data blocks, each checksummed.  Opening thread only; no HDF5 calls.
 */
#include "formats/h5chunks_int.h"
#include "scfetch.h"

#include <stdlib.h>
#include <string.h>
#include "common/faults.h" /* last: may wrap malloc in test builds */

/* Extensible array geometry derived from its creation parameters. */
typedef struct scf__h5ea {
	scf__h5arr a;
	unsigned max_bits, idx_elmts, min_elmts, min_ptrs, page_bits;
	unsigned nsblks, iblock_nsblks, ndblk_addrs, nsblk_addrs, arr_off;
} scf__h5ea;

/* Entries in every data block of extensible-array super block s. */
static uint64_t ea_dblk_n(const scf__h5ea *e, unsigned s)
{
	return (uint64_t)e->min_elmts << ((s + 1) / 2);
}

/* Array index (after the index block's entries) of super block s's first entry. */
static uint64_t ea_sblk_start(const scf__h5ea *e, unsigned s)
{
	return (uint64_t)e->min_elmts * ((UINT64_C(1) << s) - 1);
}

/*
 * One extensible-array data block; bitmap is NULL when it is not paged.  off
 * is its first entry; alt is the other value HDF5 1.10 writes in the block
 * offset field of blocks listed in the index block (their super block's start
 * plus the block's position among all index-block data blocks times its size).
 */
static int ea_dblock(scf__h5r *r, const scf__h5ea *e, uint64_t addr,
                     uint64_t nelmts, uint64_t off, uint64_t alt,
                     const uint8_t *bitmap, uint64_t bit0)
{
	uint64_t said;
	uint64_t page_n = UINT64_C(1) << e->page_bits, pre = 6 + r->sa + e->arr_off;
	uint64_t len = pre + nelmts * e->a.esize + 4, abs;
	int rc = 0;
	uint8_t *p;

	if (bitmap)
		len += 4 * (nelmts / page_n);
	if (!scf__h5_span(r, addr, len, &abs))
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the extensible array data block at address %llu lies "
		                    "past the end of the file", (unsigned long long)addr);
	p = scf__h5_alloc(r, len, &rc);
	if (!p)
		return rc;
	rc = scf__h5_read(r, addr, p, (size_t)len, "extensible array data block");
	if (rc < 0)
		goto out;
	rc = scf__h5_block_prefix(r, &e->a, p, "EADB", addr);
	if (rc < 0)
		goto out;
	said = scf__h5_get(p + 6 + r->sa, e->arr_off);
	if (said != off && said != alt) {
		rc = scf__h5_fail(r, SCF_E_CORRUPT,
		                  "extensible array data block %llu says it starts at entry "
		                  "%llu, expected %llu", (unsigned long long)addr,
		                  (unsigned long long)said, (unsigned long long)off);
		goto out;
	}
	rc = scf__h5_sum(r, p, (size_t)(bitmap ? pre + 4 : len),
	                 "extensible array data block", addr);
	if (rc < 0)
		goto out;
	rc = bitmap ? scf__h5_pages(r, &e->a, p + pre + 4, addr, bitmap, bit0, nelmts,
	                            page_n, e->idx_elmts + off)
	            : scf__h5_elements(r, &e->a, p + pre, e->idx_elmts + off, nelmts);
out:
	free(p);
	return rc;
}

/* Super block s: its data block addresses and their page bitmaps. */
static int ea_sblock(scf__h5r *r, const scf__h5ea *e, unsigned s, uint64_t addr)
{
	uint64_t ndblks = UINT64_C(1) << (s / 2), dn = ea_dblk_n(e, s);
	uint64_t page_n = UINT64_C(1) << e->page_bits, start = ea_sblk_start(e, s);
	uint64_t bm = dn > page_n ? (dn / page_n + 7) / 8 : 0, pre = 6 + r->sa + e->arr_off;
	uint64_t len = pre + ndblks * (bm + r->sa) + 4;
	int rc = 0;
	uint8_t *p = scf__h5_alloc(r, len, &rc);

	if (!p)
		return rc;
	rc = scf__h5_read(r, addr, p, (size_t)len, "extensible array super block");
	if (rc < 0)
		goto out;
	rc = scf__h5_block_prefix(r, &e->a, p, "EASB", addr);
	if (rc < 0)
		goto out;
	if (scf__h5_get(p + 6 + r->sa, e->arr_off) != start) {
		rc = scf__h5_fail(r, SCF_E_CORRUPT,
		                  "extensible array super block %llu has the wrong offset",
		                  (unsigned long long)addr);
		goto out;
	}
	rc = scf__h5_sum(r, p, (size_t)len, "extensible array super block", addr);
	for (uint64_t d = 0; rc == 0 && d < ndblks; d++) {
		uint64_t off = start + d * dn;
		uint64_t da = scf__h5_get(p + pre + ndblks * bm + d * r->sa, r->sa);
		if (e->idx_elmts + off >= r->n_lin)
			break;
		if (da != r->undef)
			rc = ea_dblock(r, e, da, dn, off, off, bm ? p + pre : NULL,
			               d * (dn / page_n));
	}
out:
	free(p);
	return rc;
}

/* Everything the index block reaches: its own entries, data and super blocks. */
static int ea_iblock_walk(scf__h5r *r, const scf__h5ea *e, const uint8_t *p)
{
	const uint8_t *dptr = p + 6 + r->sa + (size_t)e->idx_elmts * e->a.esize;
	const uint8_t *sptr = dptr + (size_t)e->ndblk_addrs * r->sa;
	uint64_t page_n = UINT64_C(1) << e->page_bits;
	unsigned d = 0;
	int rc = scf__h5_elements(r, &e->a, p + 6 + r->sa, 0, e->idx_elmts);

	for (unsigned s = 0; rc == 0 && s < e->nsblks; s++) {
		uint64_t start = ea_sblk_start(e, s), dn = ea_dblk_n(e, s);
		if (e->idx_elmts + start >= r->n_lin)
			break;
		if (s >= e->iblock_nsblks) {
			uint64_t sa = scf__h5_get(sptr + (size_t)(s - e->iblock_nsblks) * r->sa, r->sa);
			if (sa != r->undef)
				rc = ea_sblock(r, e, s, sa);
			continue;
		}
		if (dn > page_n)
			return scf__h5_fail(r, SCF_E_UNSUPPORTED,
			                    "paged extensible array data blocks in the index block");
		for (uint64_t k = 0; rc == 0 && k < (UINT64_C(1) << (s / 2)); k++, d++) {
			uint64_t da = scf__h5_get(dptr + (size_t)d * r->sa, r->sa);
			if (da != r->undef)
				rc = ea_dblock(r, e, da, dn, start + k * dn,
				               start + d * dn, NULL, 0);
		}
	}
	return rc;
}

/* The extensible array's index block, read in one piece. */
static int ea_iblock(scf__h5r *r, const scf__h5ea *e, uint64_t addr)
{
	uint64_t len = 6 + r->sa + (uint64_t)e->idx_elmts * e->a.esize +
	               ((uint64_t)e->ndblk_addrs + e->nsblk_addrs) * r->sa + 4;
	int rc = 0;
	uint8_t *p = scf__h5_alloc(r, len, &rc);

	if (!p)
		return rc;
	rc = scf__h5_read(r, addr, p, (size_t)len, "extensible array index block");
	if (rc < 0)
		goto out;
	rc = scf__h5_block_prefix(r, &e->a, p, "EAIB", addr);
	if (rc < 0)
		goto out;
	rc = scf__h5_sum(r, p, (size_t)len, "extensible array index block", addr);
	if (rc < 0)
		goto out;
	rc = ea_iblock_walk(r, e, p);
out:
	free(p);
	return rc;
}

/* log2 of a power of two, or -1. */
static int log2_exact(unsigned v)
{
	return v && !(v & (v - 1)) ? __builtin_ctz(v) : -1;
}

/* Super block counts and sizes that follow from the creation parameters. */
static int ea_geometry(scf__h5r *r, scf__h5ea *e, const uint8_t *h,
                       const scf__h5layout *l)
{
	int lmin = log2_exact(h[9]), lptr = log2_exact(h[10]);

	e->max_bits = h[7];
	e->idx_elmts = h[8];
	e->min_elmts = h[9];
	e->min_ptrs = h[10];
	e->page_bits = h[11];
	if (memcmp(l->ea, (const uint8_t[]){ h[7], h[8], h[10], h[9], h[11] }, 5) != 0)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the extensible array header disagrees with the layout message");
	if (lmin < 0 || lptr < 0 || e->max_bits > 48 || e->max_bits < (unsigned)lmin ||
	    e->page_bits > 32)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "impossible extensible array parameters (%u bits, %u, %u)",
		                    e->max_bits, e->min_elmts, e->min_ptrs);
	e->nsblks = 1 + e->max_bits - (unsigned)lmin;
	e->iblock_nsblks = 2 * (unsigned)lptr;
	e->ndblk_addrs = 2 * (e->min_ptrs - 1);
	if (e->iblock_nsblks > e->nsblks)
		return scf__h5_fail(r, SCF_E_CORRUPT, "impossible extensible array parameters");
	e->nsblk_addrs = e->nsblks - e->iblock_nsblks;
	e->arr_off = (e->max_bits + 7) / 8;
	if (r->n_lin > (UINT64_C(1) << e->max_bits))
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the extensible array holds at most 2^%u entries, the "
		                    "dataset needs %llu", e->max_bits,
		                    (unsigned long long)r->n_lin);
	return 0;
}

/* Extensible array index ("EAHD" header, index block, super and data blocks). */
int scf__h5_earray(scf__h5r *r, const scf__h5layout *l)
{
	scf__h5ea e = { .a = { .what = "extensible array", .hdr_addr = l->addr } };
	size_t len = 12 + 6 * (size_t)r->ss + r->sa + 4;
	uint8_t h[80];
	uint64_t iblock;
	int rc;

	if (l->addr == r->undef)
		return 0;
	rc = scf__h5_read(r, l->addr, h, len, "extensible array header");
	if (rc == 0 && (memcmp(h, "EAHD", 4) != 0 || h[4] != 0))
		rc = scf__h5_fail(r, SCF_E_CORRUPT, "no extensible array header at address %llu",
		                  (unsigned long long)l->addr);
	if (rc == 0)
		rc = scf__h5_sum(r, h, len, "extensible array header", l->addr);
	if (rc == 0)
		rc = scf__h5_arr_format(r, &e.a, h[5], h[6]);
	if (rc == 0)
		rc = ea_geometry(r, &e, h, l);
	if (rc < 0)
		return rc;
	iblock = scf__h5_get(h + 12 + 6 * (size_t)r->ss, r->sa);
	if (iblock == r->undef)
		return 0;
	return ea_iblock(r, &e, iblock);
}
