/*
 * formats/h5index_array.c — what the fixed and extensible array indexes
 * share: the element format (address, and size and filter mask when
 * filtered), the block prefix, and paged data blocks checked page by page.
 * Opening thread only; no HDF5 calls.
 */
#include "formats/h5chunks_int.h"
#include "scfetch.h"

#include <string.h>
#include "common/faults.h" /* last: may wrap malloc in test builds */

/* Element width rules: an address, plus size and mask when filtered. */
int scf__h5_arr_format(scf__h5r *r, scf__h5arr *a, unsigned client, unsigned esize)
{
	a->client = client;
	a->esize = esize;
	a->csize = 0;
	if (client == 0 && esize == r->sa)
		return 0;
	if (client == 1 && esize > r->sa + 4 && esize <= r->sa + 12) {
		a->csize = esize - r->sa - 4;
		return 0;
	}
	return scf__h5_fail(r, SCF_E_CORRUPT, "%s entries of %u bytes (client %u)",
	                    a->what, esize, client);
}

/* Entries [0, count) of a block, which start at array index li0. */
int scf__h5_elements(scf__h5r *r, const scf__h5arr *a, const uint8_t *p,
                     uint64_t li0, uint64_t count)
{
	for (uint64_t k = 0; k < count && li0 + k < r->n_lin; k++, p += a->esize) {
		uint64_t addr = scf__h5_get(p, r->sa), idx;
		int rc;

		if (addr == r->undef)
			continue;
		idx = scf__h5_lin_to_map(r, li0 + k);
		if (idx == SCF__H5_NONE)
			continue;
		rc = a->client ? scf__h5_put(r, idx, addr, scf__h5_get(p + r->sa, a->csize),
		                             scf__h5_le32(p + r->sa + a->csize), a->what)
		               : scf__h5_put(r, idx, addr, r->chunk_bytes, 0, a->what);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Common prefix of array blocks: signature, version 0, client, header address. */
int scf__h5_block_prefix(scf__h5r *r, const scf__h5arr *a, const uint8_t *p,
                         const char *sig, uint64_t addr)
{
	if (memcmp(p, sig, 4) != 0 || p[4] != 0 || p[5] != a->client ||
	    scf__h5_get(p + 6, r->sa) != a->hdr_addr)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "no valid %s block (\"%s\") at address %llu", a->what, sig,
		                    (unsigned long long)addr);
	return 0;
}

/* Bit i of an HDF5 page bitmap (most significant bit first). */
static int page_bit(const uint8_t *map, uint64_t i)
{
	return (map[i / 8] >> (7 - i % 8)) & 1;
}

/*
 * Pages of a data block that the bitmap marks initialised, checksum each.
 * bit0 is the block's first page in the bitmap: an extensible-array super
 * block numbers the pages of all its data blocks in one run of bits.
 */
int scf__h5_pages(scf__h5r *r, const scf__h5arr *a, const uint8_t *pages,
                  uint64_t addr, const uint8_t *bitmap, uint64_t bit0,
                  uint64_t nelmts, uint64_t page_n, uint64_t li0)
{
	uint64_t npages = (nelmts + page_n - 1) / page_n;

	for (uint64_t pg = 0; pg < npages && li0 + pg * page_n < r->n_lin; pg++) {
		uint64_t cnt = nelmts - pg * page_n < page_n ? nelmts - pg * page_n : page_n;
		const uint8_t *p = pages + pg * (page_n * a->esize + 4);
		int rc;

		if (!page_bit(bitmap, bit0 + pg))
			continue;
		rc = scf__h5_sum(r, p, (size_t)(cnt * a->esize + 4), "data block page", addr);
		if (rc == 0)
			rc = scf__h5_elements(r, a, p, li0 + pg * page_n, cnt);
		if (rc < 0)
			return rc;
	}
	return 0;
}
