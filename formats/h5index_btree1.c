/*
 * formats/h5index_btree1.c — the version-1 B-tree chunk index (layout
 * version 3): walked depth first, one node buffer per level, a node reached
 * twice refused as a loop, each inner node's children asked of the kernel
 * together when the file is not cached.  Opening thread only; no HDF5 calls.
 */
#include "formats/h5chunks_int.h"
#include "scfetch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <string.h>
#include "common/faults.h" /* last: may wrap malloc in test builds */

#define SCF__H5_SLOT(v, cap) ((size_t)((v) * 0x9e3779b97f4a7c15ull >> 20) & ((cap) - 1))

/* Double the visited-node set, rehashing what it holds. */
static int seen_grow(scf__h5r *r)
{
	size_t cap = r->seen_cap ? 2 * r->seen_cap : 1024;
	uint64_t *s = malloc(cap * sizeof(*s));

	if (!s)
		return scf__h5_fail(r, -ENOMEM, "out of memory walking the B-tree");
	memset(s, 0xff, cap * sizeof(*s));
	for (size_t i = 0; i < r->seen_cap; i++) {
		size_t j = SCF__H5_SLOT(r->seen[i], cap);
		if (r->seen[i] == UINT64_MAX)
			continue;
		while (s[j] != UINT64_MAX)
			j = (j + 1) & (cap - 1);
		s[j] = r->seen[i];
	}
	free(r->seen);
	r->seen = s;
	r->seen_cap = cap;
	return 0;
}

/* Remember a node address: reaching one twice means a loop (or shared subtree). */
static int visit(scf__h5r *r, uint64_t addr)
{
	size_t j;
	int rc;

	if (2 * (r->seen_n + 1) > r->seen_cap && (rc = seen_grow(r)) < 0)
		return rc;
	for (j = SCF__H5_SLOT(addr, r->seen_cap); r->seen[j] != UINT64_MAX;
	     j = (j + 1) & (r->seen_cap - 1))
		if (r->seen[j] == addr)
			return scf__h5_fail(r, SCF_E_CORRUPT,
			                    "B-tree node %llu is reached twice (a loop)",
			                    (unsigned long long)addr);
	r->seen[j] = addr;
	r->seen_n++;
	return 0;
}

/* Read one node into the buffer of its depth: one pread, two if it is large. */
static int node_read(scf__h5r *r, unsigned depth, uint64_t addr, size_t key)
{
	size_t hdr = 8 + 2 * (size_t)r->sa, got = 0, need;
	unsigned n;
	int rc;

	if (r->node_cap[depth] < r->node_guess) {
		free(r->node[depth]);
		r->node[depth] = malloc(r->node_guess);
		r->node_cap[depth] = r->node[depth] ? r->node_guess : 0;
		if (!r->node[depth])
			return scf__h5_fail(r, -ENOMEM, "out of memory for a B-tree node");
	}
	rc = scf__h5_read_upto(r, addr, r->node[depth], r->node_cap[depth], &got, "B-tree node");
	if (rc < 0)
		return rc;
	if (got < hdr || memcmp(r->node[depth], "TREE", 4) != 0)
		return scf__h5_fail(r, SCF_E_CORRUPT, "no B-tree node signature at address %llu",
		                    (unsigned long long)addr);
	n = (unsigned)scf__h5_get(r->node[depth] + 6, 2);
	need = hdr + (size_t)n * (key + r->sa) + key;
	if (need > got) {
		if (need > r->node_guess)
			r->node_guess = need;
		if (r->node_cap[depth] < need) {
			uint8_t *p = realloc(r->node[depth], need);
			if (!p)
				return scf__h5_fail(r, -ENOMEM, "out of memory for a B-tree node");
			r->node[depth] = p;
			r->node_cap[depth] = need;
		}
		return scf__h5_read(r, addr, r->node[depth], need, "B-tree node");
	}
	return scf__h5_meta(r, r->base + addr, need, "B-tree node");
}

/* One leaf entry: element offsets in the key become a grid position. */
static int leaf_entry(scf__h5r *r, const uint8_t *k, uint64_t child)
{
	const scf__chunk_map *m = r->map;
	uint64_t pos[2] = { 0, 0 }, idx;

	for (unsigned i = 0; i <= r->rank; i++) {
		uint64_t off = scf__h5_get(k + 8 + 8 * (size_t)i, 8);
		if (i == r->rank ? off != 0
		                 : off % r->cdims[i] != 0 || off / r->cdims[i] >= m->grid[i])
			return scf__h5_fail(r, SCF_E_CORRUPT,
			                    "a B-tree key gives offset %llu in dimension %u, not a "
			                    "chunk boundary inside the dataset",
			                    (unsigned long long)off, i);
		if (i < r->rank)
			pos[i] = off / r->cdims[i];
	}
	idx = pos[0] * m->grid[1] + pos[1];
	if (scf__chunk_addr(m, idx) != SCF__CHUNK_UNALLOCATED)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the B-tree lists chunk %llu twice", (unsigned long long)idx);
	if (child == r->undef)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the B-tree gives chunk %llu no address", (unsigned long long)idx);
	return scf__h5_put(r, idx, child, scf__h5_le32(k), scf__h5_le32(k + 4), "B-tree");
}

static int btree_node(scf__h5r *r, uint64_t addr, int level, unsigned depth);

/* Whether the byte at abs is in the page cache (a read that cannot wait). */
static int cached(const scf__h5r *r, uint64_t abs)
{
	uint8_t b;
	struct iovec v = { &b, 1 };

	return preadv2(r->fd, &v, 1, (off_t)abs, RWF_NOWAIT) == 1;
}

/*
 * Ask the kernel for all children of an inner node at once before the walk
 * reads them one by one: on a cold file the reads are then in flight
 * together (at the queue depth of the node's fan-out) instead of one
 * synchronous read per node, which more than halves a cold open.  Skipped
 * when the first and last children are cached already (a warm file), where
 * the hints would only cost system calls.  Only a hint: every address is
 * checked when its node is read.
 */
static void prefetch_children(const scf__h5r *r, const uint8_t *node, unsigned n, size_t key)
{
	size_t hdr = 8 + 2 * (size_t)r->sa, step = key + r->sa;
	uint64_t first, last;

	if (n == 0 || !scf__h5_span(r, scf__h5_get(node + hdr + key, r->sa), 1, &first) ||
	    !scf__h5_span(r, scf__h5_get(node + hdr + (n - 1) * step + key, r->sa), 1, &last) ||
	    (cached(r, first) && cached(r, last)))
		return;
	for (unsigned i = 0; i < n; i++) {
		uint64_t child = scf__h5_get(node + hdr + (size_t)i * step + key, r->sa), abs;
		if (scf__h5_span(r, child, 1, &abs))
			posix_fadvise(r->fd, (off_t)abs, (off_t)r->node_guess, POSIX_FADV_WILLNEED);
	}
}

/* Walk the children (or chunks) of one node already in its depth's buffer. */
static int node_entries(scf__h5r *r, unsigned depth, unsigned level,
                        unsigned n, size_t key)
{
	size_t hdr = 8 + 2 * (size_t)r->sa;

	if (level > 0)
		prefetch_children(r, r->node[depth], n, key);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *k = r->node[depth] + hdr + (size_t)i * (key + r->sa);
		uint64_t child = scf__h5_get(k + key, r->sa);
		int rc = level == 0 ? leaf_entry(r, k, child)
		                    : btree_node(r, child, (int)level - 1, depth + 1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* One node at the expected level (-1: the root, any level). */
static int btree_node(scf__h5r *r, uint64_t addr, int level, unsigned depth)
{
	size_t key = 8 + 8 * ((size_t)r->rank + 1);
	unsigned n, lv;
	int rc;

	if (depth >= SCF__H5_MAX_DEPTH)
		return scf__h5_fail(r, SCF_E_CORRUPT, "the B-tree is deeper than %d levels",
		                    SCF__H5_MAX_DEPTH);
	rc = visit(r, addr);
	if (rc == 0)
		rc = node_read(r, depth, addr, key);
	if (rc < 0)
		return rc;
	lv = r->node[depth][5];
	n = (unsigned)scf__h5_get(r->node[depth] + 6, 2);
	if (r->node[depth][4] != 1)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "B-tree node %llu has type %u, not raw data chunks",
		                    (unsigned long long)addr, r->node[depth][4]);
	if ((level >= 0 && lv != (unsigned)level) || (level < 0 && lv >= SCF__H5_MAX_DEPTH))
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "B-tree node %llu is at level %u, expected %d",
		                    (unsigned long long)addr, lv, level);
	if (n == 0 && level >= 0)
		return scf__h5_fail(r, SCF_E_CORRUPT, "B-tree node %llu is empty",
		                    (unsigned long long)addr);
	return node_entries(r, depth, lv, n, key);
}

/* The whole version-1 B-tree; an undefined root means nothing was written. */
int scf__h5_btree1(scf__h5r *r, const scf__h5layout *l)
{
	int rc;

	if (l->addr == r->undef)
		return 0;
	r->node_guess = 4096;
	rc = btree_node(r, l->addr, -1, 0);
	for (unsigned i = 0; i < SCF__H5_MAX_DEPTH; i++) {
		free(r->node[i]);
		r->node[i] = NULL;
	}
	free(r->seen);
	r->seen = NULL;
	return rc;
}
