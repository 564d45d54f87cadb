/*
 * formats/h5chunks.c — a dataset's chunk index (object header -> layout
 * message -> B-tree or array index) read with pread() in one pass into the
 * dense chunk map the planner uses.  Opening thread only; no HDF5 calls.
 */
#include "formats/h5chunks.h"
#include "scfetch.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/faults.h" /* last: may wrap malloc in test builds */

#define SCF__H5_MAX_BLOCK   (16u << 20) /* largest object header block we accept */
#define SCF__H5_MAX_CONT    256         /* continuation blocks per object header */
#define SCF__H5_MSG_CAP     1024        /* bytes kept of a dataspace/layout message */
#define SCF__H5_MAX_DEPTH   64          /* B-tree levels */
#define SCF__H5_NONE        UINT64_MAX

enum scf__h5_index {
	SCF__IDX_BTREE1 = 0, /* layout version 3 */
	SCF__IDX_SINGLE = 1,
	SCF__IDX_IMPLICIT = 2,
	SCF__IDX_FARRAY = 3,
	SCF__IDX_EARRAY = 4,
	SCF__IDX_BTREE2 = 5
};

/* One header message we need, copied out of its block. */
typedef struct scf__h5msg {
	int found;
	unsigned flags;
	size_t len;
	uint8_t d[SCF__H5_MSG_CAP];
} scf__h5msg;

/* What the object header walk collects. */
typedef struct scf__h5ohdr {
	scf__h5msg space, layout;
	uint64_t cont_addr[SCF__H5_MAX_CONT];
	uint64_t cont_len[SCF__H5_MAX_CONT];
	unsigned ncont;
	unsigned v2flags; /* version-2 header flags (creation order bit) */
} scf__h5ohdr;

/* The chunked layout message, decoded. */
typedef struct scf__h5layout {
	unsigned version, index, flags, ndims;
	uint64_t cdims[3];
	uint64_t addr;
	uint64_t single_size;  /* single chunk index, filtered */
	uint32_t single_mask;
	uint8_t fa_page_bits;
	uint8_t ea[5];         /* max bits, index elmts, min ptrs, min elmts, page bits */
} scf__h5layout;

/* One parse: the file, the dataset's geometry and the map being filled. */
typedef struct scf__h5r {
	int fd;
	unsigned sa, ss;       /* bytes per address / length */
	uint64_t undef;        /* the undefined address at width sa */
	uint64_t base, eof;
	char *err;
	size_t errlen;
	unsigned rank;
	uint64_t dims[2], maxdims[2], cdims[2];
	uint64_t elem_size, chunk_bytes;
	unsigned slow;         /* dimension that varies slowest in array indexes */
	uint64_t down;         /* array entries per step of the slow dimension */
	uint64_t maxgrid[2];   /* chunks per dimension at the maximum extent */
	uint64_t n_lin;        /* array entries that cover the current grid */
	scf__chunk_map *map;
	uint8_t *node[SCF__H5_MAX_DEPTH]; /* one B-tree node buffer per depth */
	size_t node_cap[SCF__H5_MAX_DEPTH];
	size_t node_guess;
	uint64_t *seen;        /* B-tree node addresses visited (open addressing) */
	size_t seen_cap, seen_n;
	/* Metadata blocks read (exact extents), which no chunk may overlap;
	 * meta[i].id indexes meta_what, the kind of block, for messages. */
	scf__byte_range *meta;
	const char **meta_what;
	size_t meta_n, meta_cap;
	int meta_off;          /* reads of a guessed length: not recorded */
} scf__h5r;

/* Element format shared by the fixed and extensible arrays. */
typedef struct scf__h5arr {
	const char *what;
	unsigned client;       /* 1: filtered chunks (address, size, mask) */
	unsigned esize, csize; /* bytes per element, bytes of its size field */
	uint64_t hdr_addr;
} scf__h5arr;

/* Extensible array geometry derived from its creation parameters. */
typedef struct scf__h5ea {
	scf__h5arr a;
	unsigned max_bits, idx_elmts, min_elmts, min_ptrs, page_bits;
	unsigned nsblks, iblock_nsblks, ndblk_addrs, nsblk_addrs, arr_off;
} scf__h5ea;

/* Write the sentence that explains a failure and pass its code through. */
__attribute__((format(printf, 3, 4)))
static int scf__h5_fail(scf__h5r *r, int code, const char *fmt, ...)
{
	if (r->err && r->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(r->err, r->errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Little-endian field of n (1..8) bytes; HDF5 metadata is little-endian. */
static uint64_t scf__h5_get(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = n; i-- > 0;)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t scf__h5_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

#define SCF__ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

/* Jenkins lookup3 (hashlittle, initval 0): the checksum of HDF5 metadata. */
static uint32_t scf__h5_lookup3(const uint8_t *k, size_t len)
{
	uint32_t a, b, c;
	uint8_t tail[12];

	a = b = c = 0xdeadbeefu + (uint32_t)len;
	while (len > 12) {
		a += scf__h5_le32(k);
		b += scf__h5_le32(k + 4);
		c += scf__h5_le32(k + 8);
		a -= c; a ^= SCF__ROT(c, 4);  c += b;
		b -= a; b ^= SCF__ROT(a, 6);  a += c;
		c -= b; c ^= SCF__ROT(b, 8);  b += a;
		a -= c; a ^= SCF__ROT(c, 16); c += b;
		b -= a; b ^= SCF__ROT(a, 19); a += c;
		c -= b; c ^= SCF__ROT(b, 4);  b += a;
		len -= 12;
		k += 12;
	}
	if (len == 0)
		return c;
	memset(tail, 0, sizeof(tail));
	memcpy(tail, k, len);
	a += scf__h5_le32(tail);
	b += scf__h5_le32(tail + 4);
	c += scf__h5_le32(tail + 8);
	c ^= b; c -= SCF__ROT(b, 14);
	a ^= c; a -= SCF__ROT(c, 11);
	b ^= a; b -= SCF__ROT(a, 25);
	c ^= b; c -= SCF__ROT(b, 16);
	a ^= c; a -= SCF__ROT(c, 4);
	b ^= a; b -= SCF__ROT(a, 14);
	c ^= b; c -= SCF__ROT(b, 24);
	return c;
}

/* A block whose last four bytes are the checksum of the rest. */
static int scf__h5_sum(scf__h5r *r, const uint8_t *p, size_t len, const char *what,
                       uint64_t addr)
{
	if (len < 4 || scf__h5_lookup3(p, len - 4) != scf__h5_le32(p + len - 4))
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the checksum of the %s at address %llu does not match",
		                    what, (unsigned long long)addr);
	return 0;
}

/* Absolute offset of [rel, rel+len) when it lies inside the file. */
static int scf__h5_span(const scf__h5r *r, uint64_t rel, uint64_t len, uint64_t *abs)
{
	if (rel == r->undef || rel > r->eof - r->base)
		return 0;
	*abs = r->base + rel;
	return len <= r->eof - *abs;
}

/* Remember a metadata block's extent (absolute) for the overlap check. */
static int scf__h5_meta(scf__h5r *r, uint64_t abs, uint64_t len, const char *what)
{
	if (len == 0)
		return 0;
	if (r->meta_n == r->meta_cap) {
		size_t cap = r->meta_cap ? 2 * r->meta_cap : 64;
		scf__byte_range *p = realloc(r->meta, cap * sizeof(*p));
		if (p)
			r->meta = p;
		const char **w = p ? realloc(r->meta_what, cap * sizeof(*w)) : NULL;
		if (!w)
			return scf__h5_fail(r, -ENOMEM, "out of memory for the chunk index");
		r->meta_what = w;
		r->meta_cap = cap;
	}
	r->meta_what[r->meta_n] = what;
	r->meta[r->meta_n] = (scf__byte_range){ abs, len, r->meta_n };
	r->meta_n++;
	return 0;
}

/* The whole of len bytes at relative address rel, or a reason why not. */
static int scf__h5_read(scf__h5r *r, uint64_t rel, void *buf, size_t len,
                        const char *what)
{
	uint64_t abs;
	size_t done = 0;

	if (!scf__h5_span(r, rel, len, &abs))
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the %s at address %llu (%zu bytes) lies past the end "
		                    "of the file (%llu bytes)", what,
		                    (unsigned long long)rel, len, (unsigned long long)r->eof);
	if (!r->meta_off && scf__h5_meta(r, abs, len, what) < 0)
		return -ENOMEM;
	while (done < len) {
		ssize_t k = pread(r->fd, (uint8_t *)buf + done, len - done,
		                  (off_t)(abs + done));
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return scf__h5_fail(r, -errno, "reading the %s at address %llu: %s",
			                    what, (unsigned long long)rel, strerror(errno));
		if (k == 0)
			return scf__h5_fail(r, SCF_E_CORRUPT,
			                    "the file ends inside the %s at address %llu",
			                    what, (unsigned long long)rel);
		done += (size_t)k;
	}
	return 0;
}

/* Up to want bytes at rel, fewer where the file ends first (headers, nodes). */
static int scf__h5_read_upto(scf__h5r *r, uint64_t rel, void *buf, size_t want,
                             size_t *got, const char *what)
{
	uint64_t abs;

	*got = 0;
	if (!scf__h5_span(r, rel, 1, &abs))
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the %s address %llu lies past the end of the file "
		                    "(%llu bytes)", what, (unsigned long long)rel,
		                    (unsigned long long)r->eof);
	*got = r->eof - abs < want ? (size_t)(r->eof - abs) : want;
	r->meta_off = 1; /* a guessed length may run past the block into its neighbours */
	int rc = scf__h5_read(r, rel, buf, *got, what);
	r->meta_off = 0;
	return rc;
}

/* A fresh buffer for a block read from the file. */
static uint8_t *scf__h5_alloc(scf__h5r *r, uint64_t len, int *rc)
{
	uint8_t *p = len <= SIZE_MAX ? malloc(len ? (size_t)len : 1) : NULL;
	if (!p)
		*rc = scf__h5_fail(r, -ENOMEM, "out of memory for %llu bytes of index",
		                   (unsigned long long)len);
	return p;
}

/* ------------------------------------------------------------------------ */
/* Object header                                                            */

/* Keep a copy of a dataspace or layout message. */
static int scf__h5_keep(scf__h5r *r, scf__h5msg *m, const char *what,
                        const uint8_t *d, size_t len, unsigned flags)
{
	if (m->found)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the object header holds two %s messages", what);
	m->found = 1;
	m->flags = flags;
	m->len = len < SCF__H5_MSG_CAP ? len : SCF__H5_MSG_CAP;
	memcpy(m->d, d, m->len);
	return 0;
}

/* Queue a continuation block, refusing loops and absurd sizes. */
static int scf__h5_cont(scf__h5r *r, scf__h5ohdr *h, const uint8_t *d, size_t len)
{
	uint64_t addr, blen;

	if (len < r->sa + r->ss)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "an object header continuation message is truncated");
	addr = scf__h5_get(d, r->sa);
	blen = scf__h5_get(d + r->sa, r->ss);
	if (blen == 0 || blen > SCF__H5_MAX_BLOCK)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "an object header continuation block claims %llu bytes",
		                    (unsigned long long)blen);
	for (unsigned i = 0; i < h->ncont; i++)
		if (h->cont_addr[i] == addr)
			return scf__h5_fail(r, SCF_E_CORRUPT,
			                    "object header continuation blocks form a loop "
			                    "at address %llu", (unsigned long long)addr);
	if (h->ncont == SCF__H5_MAX_CONT)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the object header has more than %d continuation blocks",
		                    SCF__H5_MAX_CONT);
	h->cont_addr[h->ncont] = addr;
	h->cont_len[h->ncont++] = blen;
	return 0;
}

/* Act on one message: keep the two we need, follow continuations. */
static int scf__h5_msg(scf__h5r *r, scf__h5ohdr *h, unsigned type, unsigned flags,
                       const uint8_t *d, size_t len)
{
	switch (type) {
	case 0x01:
		return scf__h5_keep(r, &h->space, "dataspace", d, len, flags);
	case 0x08:
		return scf__h5_keep(r, &h->layout, "data layout", d, len, flags);
	case 0x10:
		return scf__h5_cont(r, h, d, len);
	default:
		return 0;
	}
}

/* The messages packed in one header block (v1: 8-byte prefixes, v2: 4 or 6). */
static int scf__h5_messages(scf__h5r *r, scf__h5ohdr *h, int v2, const uint8_t *p,
                            size_t len)
{
	size_t pre = v2 ? 4u + ((h->v2flags & 0x04) ? 2u : 0u) : 8u, off = 0;

	while (len - off >= pre) {
		const uint8_t *m = p + off;
		unsigned type = v2 ? m[0] : (unsigned)scf__h5_get(m, 2);
		size_t size = (size_t)scf__h5_get(m + (v2 ? 1 : 2), 2);
		unsigned flags = v2 ? m[3] : m[4];
		int rc;

		if (size > len - off - pre)
			return scf__h5_fail(r, SCF_E_CORRUPT,
			                    "an object header message (type %u, %zu bytes) runs "
			                    "past the end of its block", type, size);
		rc = scf__h5_msg(r, h, type, flags, m + pre, size);
		if (rc < 0)
			return rc;
		off += pre + size;
	}
	return 0;
}

/* Size of a version-2 header prefix, or 0 when the buffer is too short. */
static size_t scf__h5_v2_prefix(const uint8_t *p, size_t got, uint64_t *chunk0)
{
	unsigned flags = p[5];
	size_t off = 6 + ((flags & 0x20) ? 16 : 0) + ((flags & 0x10) ? 4 : 0);
	unsigned w = 1u << (flags & 3);

	if (got < off + w)
		return 0;
	*chunk0 = scf__h5_get(p + off, w);
	return off + w;
}

/* First block of a version-2 object header ("OHDR"), checksum included. */
static int scf__h5_ohdr_v2(scf__h5r *r, scf__h5ohdr *h, uint64_t addr,
                           uint8_t *buf, size_t got)
{
	uint64_t chunk0, total;
	size_t pre;
	uint8_t *p = buf;
	int rc = 0;

	if (got < 6 || buf[4] != 2)
		return scf__h5_fail(r, SCF_E_UNSUPPORTED,
		                    "object header version %u is not supported",
		                    got > 4 ? buf[4] : 0);
	h->v2flags = buf[5];
	pre = scf__h5_v2_prefix(buf, got, &chunk0);
	if (pre == 0 || chunk0 > SCF__H5_MAX_BLOCK)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the object header at address %llu is truncated",
		                    (unsigned long long)addr);
	total = pre + chunk0 + 4;
	if (total > got) {
		p = scf__h5_alloc(r, total, &rc);
		if (!p)
			return rc;
		rc = scf__h5_read(r, addr, p, (size_t)total, "object header");
		if (rc < 0)
			goto out;
	}
	rc = scf__h5_sum(r, p, (size_t)total, "object header", addr);
	if (rc < 0)
		goto out;
	rc = scf__h5_messages(r, h, 1, p + pre, (size_t)chunk0);
out:
	if (p != buf)
		free(p);
	return rc;
}

/* First block of a version-1 object header: 16-byte prefix, then messages. */
static int scf__h5_ohdr_v1(scf__h5r *r, scf__h5ohdr *h, uint64_t addr,
                           uint8_t *buf, size_t got)
{
	uint64_t size;
	uint8_t *p = buf + 16;
	int rc = 0;

	if (got < 16)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the object header at address %llu is truncated",
		                    (unsigned long long)addr);
	size = scf__h5_le32(buf + 8);
	if (size > SCF__H5_MAX_BLOCK)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the object header at address %llu claims %llu bytes",
		                    (unsigned long long)addr, (unsigned long long)size);
	if (16 + size > got) {
		p = scf__h5_alloc(r, size, &rc);
		if (!p)
			return rc;
		rc = scf__h5_read(r, addr + 16, p, (size_t)size, "object header");
		if (rc < 0)
			goto out;
	}
	rc = scf__h5_messages(r, h, 0, p, (size_t)size);
out:
	if (p != buf + 16)
		free(p);
	return rc;
}

/* One continuation block ("OCHK" and a checksum in version 2). */
static int scf__h5_ohdr_cont(scf__h5r *r, scf__h5ohdr *h, int v2, unsigned i)
{
	uint64_t addr = h->cont_addr[i], len = h->cont_len[i];
	int rc = 0;
	uint8_t *p = scf__h5_alloc(r, len, &rc);

	if (!p)
		return rc;
	rc = scf__h5_read(r, addr, p, (size_t)len, "object header continuation block");
	if (rc < 0 || !v2)
		goto messages;
	if (len < 8 || memcmp(p, "OCHK", 4) != 0) {
		rc = scf__h5_fail(r, SCF_E_CORRUPT,
		                  "no continuation block signature at address %llu",
		                  (unsigned long long)addr);
		goto out;
	}
	rc = scf__h5_sum(r, p, (size_t)len, "object header continuation block", addr);
messages:
	if (rc == 0)
		rc = v2 ? scf__h5_messages(r, h, 1, p + 4, (size_t)len - 8)
		        : scf__h5_messages(r, h, 0, p, (size_t)len);
out:
	free(p);
	return rc;
}

/* All messages of the dataset's object header, following continuations. */
static int scf__h5_ohdr(scf__h5r *r, scf__h5ohdr *h, uint64_t addr)
{
	uint8_t buf[1024];
	size_t got = 0;
	int v2, rc = scf__h5_read_upto(r, addr, buf, sizeof(buf), &got, "object header");

	if (rc < 0)
		return rc;
	v2 = got >= 4 && memcmp(buf, "OHDR", 4) == 0;
	if (!v2 && got > 0 && buf[0] != 1)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "no object header at address %llu (version byte %u)",
		                    (unsigned long long)addr, buf[0]);
	rc = v2 ? scf__h5_ohdr_v2(r, h, addr, buf, got)
	        : scf__h5_ohdr_v1(r, h, addr, buf, got);
	for (unsigned i = 0; rc == 0 && i < h->ncont; i++)
		rc = scf__h5_ohdr_cont(r, h, v2, i);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Dataspace and layout messages                                            */

/* Current and maximum extents; they must agree with what HDF5 reported. */
static int scf__h5_dataspace(scf__h5r *r, const scf__h5msg *m)
{
	const uint8_t *d = m->d;
	size_t off, need;
	unsigned nd;

	if (!m->found)
		return scf__h5_fail(r, SCF_E_CORRUPT, "the object header has no dataspace message");
	if (m->flags & 0x02)
		return scf__h5_fail(r, SCF_E_UNSUPPORTED, "the dataspace message is shared");
	if (m->len < 4 || (d[0] != 1 && d[0] != 2))
		return scf__h5_fail(r, SCF_E_UNSUPPORTED, "dataspace message version %u",
		                    m->len ? d[0] : 0);
	nd = d[1];
	off = d[0] == 1 ? 8 : 4;
	need = off + (size_t)nd * r->ss * ((d[2] & 1) ? 2 : 1);
	if (nd != r->rank || m->len < need)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the dataspace message has rank %u (%zu bytes), expected "
		                    "rank %u", nd, m->len, r->rank);
	for (unsigned i = 0; i < nd; i++) {
		uint64_t cur = scf__h5_get(d + off + (size_t)i * r->ss, r->ss);
		uint64_t mx = (d[2] & 1) ? scf__h5_get(d + off + (size_t)(nd + i) * r->ss, r->ss)
		                         : cur;
		if (cur != r->dims[i])
			return scf__h5_fail(r, SCF_E_CORRUPT,
			                    "the dataspace message gives dimension %u as %llu, "
			                    "HDF5 reported %llu", i, (unsigned long long)cur,
			                    (unsigned long long)r->dims[i]);
		r->maxdims[i] = (r->ss < 8 && mx == (UINT64_C(1) << (8 * r->ss)) - 1) ? UINT64_MAX : mx;
	}
	return 0;
}

/* Bytes of the index-specific fields that precede the index address. */
static int scf__h5_index_info(scf__h5r *r, scf__h5layout *l, const uint8_t *p, size_t left)
{
	size_t need = l->index == SCF__IDX_SINGLE ? ((l->flags & 2) ? r->ss + 4u : 0u)
	            : l->index == SCF__IDX_IMPLICIT ? 0
	            : l->index == SCF__IDX_FARRAY ? 1
	            : l->index == SCF__IDX_EARRAY ? 5
	            : l->index == SCF__IDX_BTREE2 ? 6 : SIZE_MAX;

	if (need == SIZE_MAX)
		return scf__h5_fail(r, SCF_E_UNSUPPORTED, "chunk index type %u is unknown",
		                    l->index);
	if (left < need + r->sa)
		return scf__h5_fail(r, SCF_E_CORRUPT, "the data layout message is truncated");
	if (l->index == SCF__IDX_SINGLE && (l->flags & 2)) {
		l->single_size = scf__h5_get(p, r->ss);
		l->single_mask = scf__h5_le32(p + r->ss);
	}
	if (l->index == SCF__IDX_FARRAY)
		l->fa_page_bits = p[0];
	if (l->index == SCF__IDX_EARRAY)
		memcpy(l->ea, p, 5);
	l->addr = scf__h5_get(p + need, r->sa);
	return 0;
}

/* Layout version 4: variable-width chunk dims, then the index type. */
static int scf__h5_layout_v4(scf__h5r *r, scf__h5layout *l, const uint8_t *d, size_t len)
{
	unsigned w;
	size_t off;

	if (len < 6)
		return scf__h5_fail(r, SCF_E_CORRUPT, "the data layout message is truncated");
	l->flags = d[2];
	l->ndims = d[3];
	w = d[4];
	if (l->flags & ~3u)
		return scf__h5_fail(r, SCF_E_CORRUPT, "unknown chunked layout flags 0x%x", l->flags);
	if (w < 1 || w > 8 || l->ndims != r->rank + 1 ||
	    len < 5 + (size_t)l->ndims * w + 1)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the data layout message has %u chunk dimensions of %u "
		                    "bytes, expected %u", l->ndims, w, r->rank + 1);
	for (unsigned i = 0; i < l->ndims; i++)
		l->cdims[i] = scf__h5_get(d + 5 + (size_t)i * w, w);
	off = 5 + (size_t)l->ndims * w;
	l->index = d[off];
	return scf__h5_index_info(r, l, d + off + 1, len - off - 1);
}

/* Layout version 3: 4-byte chunk dims and a version-1 B-tree address. */
static int scf__h5_layout_v3(scf__h5r *r, scf__h5layout *l, const uint8_t *d, size_t len)
{
	if (len < 3)
		return scf__h5_fail(r, SCF_E_CORRUPT, "the data layout message is truncated");
	l->ndims = d[2];
	if (l->ndims != r->rank + 1 || len < 3 + r->sa + 4 * (size_t)l->ndims)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the data layout message has %u chunk dimensions, "
		                    "expected %u", l->ndims, r->rank + 1);
	l->index = SCF__IDX_BTREE1;
	l->addr = scf__h5_get(d + 3, r->sa);
	for (unsigned i = 0; i < l->ndims; i++)
		l->cdims[i] = scf__h5_le32(d + 3 + r->sa + 4 * i);
	return 0;
}

/* Decode the layout message and cross-check it with the caller's chunk shape. */
static int scf__h5_layout(scf__h5r *r, const scf__h5msg *m, scf__h5layout *l)
{
	int rc;

	if (!m->found)
		return scf__h5_fail(r, SCF_E_CORRUPT, "the object header has no data layout message");
	if (m->len < 2)
		return scf__h5_fail(r, SCF_E_CORRUPT, "the data layout message is truncated");
	l->version = m->d[0];
	if (l->version != 3 && l->version != 4)
		return scf__h5_fail(r, SCF_E_UNSUPPORTED,
		                    "data layout message version %u (only 3 and 4 are read)",
		                    l->version);
	if (m->d[1] != 2)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the data layout message says layout class %u, not chunked",
		                    m->d[1]);
	rc = l->version == 3 ? scf__h5_layout_v3(r, l, m->d, m->len)
	                     : scf__h5_layout_v4(r, l, m->d, m->len);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < r->rank; i++)
		if (l->cdims[i] != r->cdims[i])
			return scf__h5_fail(r, SCF_E_CORRUPT,
			                    "the layout message gives chunk dimension %u as %llu, "
			                    "HDF5 reported %llu", i, (unsigned long long)l->cdims[i],
			                    (unsigned long long)r->cdims[i]);
	if (l->cdims[r->rank] != r->elem_size)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the layout message gives an element size of %llu bytes, "
		                    "HDF5 reported %llu", (unsigned long long)l->cdims[r->rank],
		                    (unsigned long long)r->elem_size);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Grid and map                                                             */

/* How array indexes (fixed/extensible/implicit) linearise chunk positions. */
static int scf__h5_linear(scf__h5r *r, const scf__h5layout *l)
{
	const scf__chunk_map *m = r->map;
	unsigned nunlim = 0, fast;

	if (l->index != SCF__IDX_IMPLICIT && l->index != SCF__IDX_FARRAY &&
	    l->index != SCF__IDX_EARRAY)
		return 0;
	r->slow = 0;
	for (unsigned i = 0; i < r->rank; i++) {
		if (r->maxdims[i] == UINT64_MAX) {
			nunlim++;
			r->slow = i;
			r->maxgrid[i] = UINT64_MAX;
		} else {
			r->maxgrid[i] = r->maxdims[i] == 0 ? 0 : (r->maxdims[i] - 1) / r->cdims[i] + 1;
			if (r->maxdims[i] < r->dims[i])
				return scf__h5_fail(r, SCF_E_CORRUPT,
				                    "dimension %u is larger than its maximum", i);
		}
	}
	if (r->rank == 1)
		r->maxgrid[1] = 1;
	if ((l->index == SCF__IDX_EARRAY && nunlim > 1) ||
	    ((l->index == SCF__IDX_FARRAY || l->index == SCF__IDX_IMPLICIT) && nunlim))
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "chunk index type %u does not fit a dataset with %u "
		                    "unlimited dimensions", l->index, nunlim);
	fast = r->rank == 2 ? 1 - r->slow : 1;
	r->down = r->maxgrid[fast];
	r->n_lin = 0;
	if (m->n && (__builtin_mul_overflow(m->grid[r->slow] - 1, r->down, &r->n_lin) ||
	             __builtin_add_overflow(r->n_lin, m->grid[fast], &r->n_lin)))
		return scf__h5_fail(r, SCF_E_CORRUPT, "the chunk grid overflows 64 bits");
	return 0;
}

/* Map index of array entry li, or SCF__H5_NONE outside the current grid. */
static uint64_t scf__h5_lin_to_map(const scf__h5r *r, uint64_t li)
{
	const scf__chunk_map *m = r->map;
	uint64_t ps = r->down == 1 ? li : li / r->down;
	uint64_t pf = r->down == 1 ? 0 : li % r->down;

	if (r->rank == 1)
		return li < m->grid[0] ? li : SCF__H5_NONE;
	if (ps >= m->grid[r->slow] || pf >= m->grid[1 - r->slow])
		return SCF__H5_NONE;
	return r->slow == 0 ? ps * m->grid[1] + pf : pf * m->grid[1] + ps;
}

/* Record one chunk after checking that its extent lies inside the file. */
static int scf__h5_put(scf__h5r *r, uint64_t idx, uint64_t rel, uint64_t size,
                       uint32_t mask, const char *what)
{
	uint64_t abs;

	if (size == 0 || size > UINT32_MAX)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the %s gives chunk %llu a size of %llu bytes", what,
		                    (unsigned long long)idx, (unsigned long long)size);
	if (!scf__h5_span(r, rel, size, &abs))
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the %s puts chunk %llu at address %llu (%llu bytes), past "
		                    "the end of the file (%llu bytes)", what,
		                    (unsigned long long)idx, (unsigned long long)rel,
		                    (unsigned long long)size, (unsigned long long)r->eof);
	r->map->chunk[idx].addr = abs;
	r->map->chunk[idx].size = (uint32_t)size;
	r->map->chunk[idx].filter_mask = mask;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Version-1 B-tree                                                         */

#define SCF__H5_SLOT(v, cap) ((size_t)((v) * 0x9e3779b97f4a7c15ull >> 20) & ((cap) - 1))

/* Double the visited-node set, rehashing what it holds. */
static int scf__h5_seen_grow(scf__h5r *r)
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
static int scf__h5_visit(scf__h5r *r, uint64_t addr)
{
	size_t j;
	int rc;

	if (2 * (r->seen_n + 1) > r->seen_cap && (rc = scf__h5_seen_grow(r)) < 0)
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
static int scf__h5_node_read(scf__h5r *r, unsigned depth, uint64_t addr, size_t key)
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
static int scf__h5_leaf_entry(scf__h5r *r, const uint8_t *k, uint64_t child)
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
	if (m->chunk[idx].addr != SCF__CHUNK_UNALLOCATED)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the B-tree lists chunk %llu twice", (unsigned long long)idx);
	if (child == r->undef)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the B-tree gives chunk %llu no address", (unsigned long long)idx);
	return scf__h5_put(r, idx, child, scf__h5_le32(k), scf__h5_le32(k + 4), "B-tree");
}

static int scf__h5_btree_node(scf__h5r *r, uint64_t addr, int level, unsigned depth);

/* Walk the children (or chunks) of one node already in its depth's buffer. */
static int scf__h5_node_entries(scf__h5r *r, unsigned depth, unsigned level,
                                unsigned n, size_t key)
{
	size_t hdr = 8 + 2 * (size_t)r->sa;

	for (unsigned i = 0; i < n; i++) {
		const uint8_t *k = r->node[depth] + hdr + (size_t)i * (key + r->sa);
		uint64_t child = scf__h5_get(k + key, r->sa);
		int rc = level == 0 ? scf__h5_leaf_entry(r, k, child)
		                    : scf__h5_btree_node(r, child, (int)level - 1, depth + 1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* One node at the expected level (-1: the root, any level). */
static int scf__h5_btree_node(scf__h5r *r, uint64_t addr, int level, unsigned depth)
{
	size_t key = 8 + 8 * ((size_t)r->rank + 1);
	unsigned n, lv;
	int rc;

	if (depth >= SCF__H5_MAX_DEPTH)
		return scf__h5_fail(r, SCF_E_CORRUPT, "the B-tree is deeper than %d levels",
		                    SCF__H5_MAX_DEPTH);
	rc = scf__h5_visit(r, addr);
	if (rc == 0)
		rc = scf__h5_node_read(r, depth, addr, key);
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
	return scf__h5_node_entries(r, depth, lv, n, key);
}

/* The whole version-1 B-tree; an undefined root means nothing was written. */
static int scf__h5_btree1(scf__h5r *r, const scf__h5layout *l)
{
	int rc;

	if (l->addr == r->undef)
		return 0;
	r->node_guess = 4096;
	rc = scf__h5_btree_node(r, l->addr, -1, 0);
	for (unsigned i = 0; i < SCF__H5_MAX_DEPTH; i++) {
		free(r->node[i]);
		r->node[i] = NULL;
	}
	free(r->seen);
	r->seen = NULL;
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Single chunk and implicit indexes                                        */

/* A dataset of exactly one chunk: the layout message holds its extent. */
static int scf__h5_single(scf__h5r *r, const scf__h5layout *l)
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
static int scf__h5_implicit(scf__h5r *r, const scf__h5layout *l)
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
		r->map->chunk[idx].addr = abs + li * r->chunk_bytes;
		r->map->chunk[idx].size = (uint32_t)r->chunk_bytes;
		r->map->chunk[idx].filter_mask = 0;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Fixed and extensible arrays                                              */

/* Element width rules: an address, plus size and mask when filtered. */
static int scf__h5_arr_format(scf__h5r *r, scf__h5arr *a, unsigned client, unsigned esize)
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
static int scf__h5_elements(scf__h5r *r, const scf__h5arr *a, const uint8_t *p,
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
static int scf__h5_block_prefix(scf__h5r *r, const scf__h5arr *a, const uint8_t *p,
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
static int scf__h5_bit(const uint8_t *map, uint64_t i)
{
	return (map[i / 8] >> (7 - i % 8)) & 1;
}

/*
 * Pages of a data block that the bitmap marks initialised, checksum each.
 * bit0 is the block's first page in the bitmap: an extensible-array super
 * block numbers the pages of all its data blocks in one run of bits.
 */
static int scf__h5_pages(scf__h5r *r, const scf__h5arr *a, const uint8_t *pages,
                         uint64_t addr, const uint8_t *bitmap, uint64_t bit0,
                         uint64_t nelmts, uint64_t page_n, uint64_t li0)
{
	uint64_t npages = (nelmts + page_n - 1) / page_n;

	for (uint64_t pg = 0; pg < npages && li0 + pg * page_n < r->n_lin; pg++) {
		uint64_t cnt = nelmts - pg * page_n < page_n ? nelmts - pg * page_n : page_n;
		const uint8_t *p = pages + pg * (page_n * a->esize + 4);
		int rc;

		if (!scf__h5_bit(bitmap, bit0 + pg))
			continue;
		rc = scf__h5_sum(r, p, (size_t)(cnt * a->esize + 4), "data block page", addr);
		if (rc == 0)
			rc = scf__h5_elements(r, a, p, li0 + pg * page_n, cnt);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The fixed array's data block: entries inline, or a bitmap and pages. */
static int scf__h5_fa_dblock(scf__h5r *r, const scf__h5arr *a, uint64_t addr,
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
static int scf__h5_farray(scf__h5r *r, const scf__h5layout *l)
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
	return scf__h5_fa_dblock(r, &a, dblk, nelmts, h[7]);
}

/* Entries in every data block of extensible-array super block s. */
static uint64_t scf__h5_ea_dblk_n(const scf__h5ea *e, unsigned s)
{
	return (uint64_t)e->min_elmts << ((s + 1) / 2);
}

/* Array index (after the index block's entries) of super block s's first entry. */
static uint64_t scf__h5_ea_sblk_start(const scf__h5ea *e, unsigned s)
{
	return (uint64_t)e->min_elmts * ((UINT64_C(1) << s) - 1);
}

/*
 * One extensible-array data block; bitmap is NULL when it is not paged.  off
 * is its first entry; alt is the other value HDF5 1.10 writes in the block
 * offset field of blocks listed in the index block (their super block's start
 * plus the block's position among all index-block data blocks times its size).
 */
static int scf__h5_ea_dblock(scf__h5r *r, const scf__h5ea *e, uint64_t addr,
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
static int scf__h5_ea_sblock(scf__h5r *r, const scf__h5ea *e, unsigned s, uint64_t addr)
{
	uint64_t ndblks = UINT64_C(1) << (s / 2), dn = scf__h5_ea_dblk_n(e, s);
	uint64_t page_n = UINT64_C(1) << e->page_bits, start = scf__h5_ea_sblk_start(e, s);
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
			rc = scf__h5_ea_dblock(r, e, da, dn, off, off, bm ? p + pre : NULL,
			                       d * (dn / page_n));
	}
out:
	free(p);
	return rc;
}

/* Everything the index block reaches: its own entries, data and super blocks. */
static int scf__h5_ea_iblock_walk(scf__h5r *r, const scf__h5ea *e, const uint8_t *p)
{
	const uint8_t *dptr = p + 6 + r->sa + (size_t)e->idx_elmts * e->a.esize;
	const uint8_t *sptr = dptr + (size_t)e->ndblk_addrs * r->sa;
	uint64_t page_n = UINT64_C(1) << e->page_bits;
	unsigned d = 0;
	int rc = scf__h5_elements(r, &e->a, p + 6 + r->sa, 0, e->idx_elmts);

	for (unsigned s = 0; rc == 0 && s < e->nsblks; s++) {
		uint64_t start = scf__h5_ea_sblk_start(e, s), dn = scf__h5_ea_dblk_n(e, s);
		if (e->idx_elmts + start >= r->n_lin)
			break;
		if (s >= e->iblock_nsblks) {
			uint64_t sa = scf__h5_get(sptr + (size_t)(s - e->iblock_nsblks) * r->sa, r->sa);
			if (sa != r->undef)
				rc = scf__h5_ea_sblock(r, e, s, sa);
			continue;
		}
		if (dn > page_n)
			return scf__h5_fail(r, SCF_E_UNSUPPORTED,
			                    "paged extensible array data blocks in the index block");
		for (uint64_t k = 0; rc == 0 && k < (UINT64_C(1) << (s / 2)); k++, d++) {
			uint64_t da = scf__h5_get(dptr + (size_t)d * r->sa, r->sa);
			if (da != r->undef)
				rc = scf__h5_ea_dblock(r, e, da, dn, start + k * dn,
				                       start + d * dn, NULL, 0);
		}
	}
	return rc;
}

/* The extensible array's index block, read in one piece. */
static int scf__h5_ea_iblock(scf__h5r *r, const scf__h5ea *e, uint64_t addr)
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
	rc = scf__h5_ea_iblock_walk(r, e, p);
out:
	free(p);
	return rc;
}

/* log2 of a power of two, or -1. */
static int scf__h5_log2(unsigned v)
{
	return v && !(v & (v - 1)) ? __builtin_ctz(v) : -1;
}

/* Super block counts and sizes that follow from the creation parameters. */
static int scf__h5_ea_geometry(scf__h5r *r, scf__h5ea *e, const uint8_t *h,
                               const scf__h5layout *l)
{
	int lmin = scf__h5_log2(h[9]), lptr = scf__h5_log2(h[10]);

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
static int scf__h5_earray(scf__h5r *r, const scf__h5layout *l)
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
		rc = scf__h5_ea_geometry(r, &e, h, l);
	if (rc < 0)
		return rc;
	iblock = scf__h5_get(h + 12 + 6 * (size_t)r->ss, r->sa);
	if (iblock == r->undef)
		return 0;
	return scf__h5_ea_iblock(r, &e, iblock);
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                             */

/* Check the caller's geometry and size the map; all chunks start unallocated. */
static int scf__h5_map_init(scf__h5r *r, scf__chunk_map *out)
{
	uint64_t n = 1;

	memset(out, 0, sizeof(*out));
	out->rank = r->rank;
	for (unsigned i = 0; i < 2; i++) {
		out->dims[i] = r->dims[i];
		out->chunk_dims[i] = r->cdims[i];
		out->grid[i] = r->dims[i] == 0 ? 0 : (r->dims[i] - 1) / r->cdims[i] + 1;
		if (__builtin_mul_overflow(n, out->grid[i], &n))
			return scf__h5_fail(r, -ENOMEM, "the chunk grid is too large");
	}
	if (n > SIZE_MAX / sizeof(scf__chunk))
		return scf__h5_fail(r, -ENOMEM, "the chunk grid is too large");
	/* Every chunk written takes a byte of the file at least: a grid of more
	 * chunks than the file has bytes is a damaged dataspace, not data (and
	 * its map could need more memory than the machine has). */
	if (n > r->eof)
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the dataspace (%llu elements) makes %llu chunks of %llu, more "
		                    "than a file of %llu bytes can hold",
		                    (unsigned long long)r->dims[0] * r->dims[1], (unsigned long long)n,
		                    (unsigned long long)r->cdims[0] * r->cdims[1],
		                    (unsigned long long)r->eof);
	out->n = n;
	out->chunk = malloc(n ? (size_t)n * sizeof(scf__chunk) : 1);
	if (!out->chunk)
		return scf__h5_fail(r, -ENOMEM, "out of memory for a map of %llu chunks",
		                    (unsigned long long)n);
	for (uint64_t i = 0; i < n; i++)
		out->chunk[i] = (scf__chunk){ SCF__CHUNK_UNALLOCATED, 0, 0 };
	r->map = out;
	return 0;
}

/* Copy and validate the caller's arguments into the parse state. */
static int scf__h5_setup(scf__h5r *r, int fd, const scf__h5geom *g, unsigned rank,
                         const uint64_t *dims, const uint64_t *chunk_dims,
                         size_t elem_size)
{
	uint64_t bytes = elem_size;

	r->fd = fd;
	if (!g || !dims || !chunk_dims || (rank != 1 && rank != 2) || elem_size == 0)
		return scf__h5_fail(r, -EINVAL, "invalid arguments");
	if ((g->sizeof_addr != 2 && g->sizeof_addr != 4 && g->sizeof_addr != 8) ||
	    (g->sizeof_size != 2 && g->sizeof_size != 4 && g->sizeof_size != 8) ||
	    g->base_addr > g->eof)
		return scf__h5_fail(r, SCF_E_UNSUPPORTED,
		                    "file addresses of %u bytes, lengths of %u bytes",
		                    g->sizeof_addr, g->sizeof_size);
	r->sa = g->sizeof_addr;
	r->ss = g->sizeof_size;
	r->undef = r->sa == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * r->sa)) - 1;
	r->base = g->base_addr;
	r->eof = g->eof;
	r->rank = rank;
	for (unsigned i = 0; i < 2; i++) {
		r->dims[i] = i < rank ? dims[i] : 1;
		r->cdims[i] = i < rank ? chunk_dims[i] : 1;
		if (r->cdims[i] == 0 || __builtin_mul_overflow(bytes, r->cdims[i], &bytes))
			return scf__h5_fail(r, -EINVAL, "invalid chunk dimensions");
	}
	if (bytes > UINT32_MAX)
		return scf__h5_fail(r, SCF_E_UNSUPPORTED, "chunks of %llu bytes (over 4 GiB)",
		                    (unsigned long long)bytes);
	r->elem_size = elem_size;
	r->chunk_bytes = bytes;
	return 0;
}

static int scf__h5_ext_cmp(const void *a, const void *b)
{
	const scf__byte_range *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

scf__byte_range *scf__chunk_extents(const scf__chunk_map *m, size_t *n)
{
	scf__byte_range *e = malloc((m->n ? (size_t)m->n : 1) * sizeof(*e));
	size_t k = 0;
	int sorted = 1;

	if (!e)
		return NULL;
	for (uint64_t i = 0; i < m->n; i++) {
		if (m->chunk[i].addr == SCF__CHUNK_UNALLOCATED)
			continue;
		e[k] = (scf__byte_range){ m->chunk[i].addr, m->chunk[i].size, i };
		sorted &= k == 0 || e[k].addr >= e[k - 1].addr;
		k++;
	}
	if (!sorted)
		qsort(e, k, sizeof(*e), scf__h5_ext_cmp);
	*n = k;
	return e;
}

/*
 * Two pointers: step past whichever extent ends first.  Stepping past b[j]
 * is safe because the next a starts after a[i] ends (a has no overlaps);
 * stepping past a[i] is safe because b is sorted by start.
 */
int scf__extents_meet(const scf__byte_range *a, size_t na, const scf__byte_range *b, size_t nb,
                      size_t *ia, size_t *ib)
{
	size_t i = 0, j = 0;

	while (i < na && j < nb) {
		if (a[i].addr < b[j].addr + b[j].len && b[j].addr < a[i].addr + a[i].len) {
			*ia = i;
			*ib = j;
			return 1;
		}
		if (a[i].addr + a[i].len <= b[j].addr + b[j].len)
			i++;
		else
			j++;
	}
	return 0;
}

/*
 * No two chunks may share bytes, and no chunk may lie in the index or the
 * object header: such a file would deliver another chunk's (or metadata's)
 * bytes as cells.  Chunks in address order are checked against their
 * neighbours, then against the metadata blocks in one merge walk.
 */
static int scf__h5_check_overlaps(scf__h5r *r)
{
	size_t n, i, j;
	scf__byte_range *c = scf__chunk_extents(r->map, &n);
	int rc = 0;

	if (!c)
		return scf__h5_fail(r, -ENOMEM, "out of memory checking %llu chunks",
		                    (unsigned long long)r->map->n);
	for (i = 1; i < n && rc == 0; i++)
		if (c[i].addr < c[i - 1].addr + c[i - 1].len)
			rc = scf__h5_fail(r, SCF_E_CORRUPT, "chunk %llu at byte %llu (%llu bytes) "
			                  "overlaps chunk %llu at byte %llu: the index points into "
			                  "other data", (unsigned long long)c[i - 1].id,
			                  (unsigned long long)c[i - 1].addr,
			                  (unsigned long long)c[i - 1].len,
			                  (unsigned long long)c[i].id, (unsigned long long)c[i].addr);
	if (rc == 0 && r->meta_n > 1)
		qsort(r->meta, r->meta_n, sizeof(*r->meta), scf__h5_ext_cmp);
	if (rc == 0 && scf__extents_meet(c, n, r->meta, r->meta_n, &i, &j))
		rc = scf__h5_fail(r, SCF_E_CORRUPT, "chunk %llu at byte %llu (%llu bytes) overlaps "
		                  "the %s at byte %llu: the index points into other data",
		                  (unsigned long long)c[i].id, (unsigned long long)c[i].addr,
		                  (unsigned long long)c[i].len, r->meta_what[r->meta[j].id],
		                  (unsigned long long)r->meta[j].addr);
	free(c);
	return rc;
}

/* Dispatch on the index type the layout message names. */
static int scf__h5_index(scf__h5r *r, const scf__h5layout *l)
{
	switch (l->index) {
	case SCF__IDX_BTREE1:
		return scf__h5_btree1(r, l);
	case SCF__IDX_SINGLE:
		return scf__h5_single(r, l);
	case SCF__IDX_IMPLICIT:
		return scf__h5_implicit(r, l);
	case SCF__IDX_FARRAY:
		return scf__h5_farray(r, l);
	case SCF__IDX_EARRAY:
		return scf__h5_earray(r, l);
	default:
		return scf__h5_fail(r, SCF_E_UNSUPPORTED,
		                    "the chunk index is a version-2 B-tree (more than one "
		                    "unlimited dimension), which this reader does not parse; "
		                    "repack with at most one unlimited dimension");
	}
}

int scf__h5chunks_read(int fd, const scf__h5geom *g, uint64_t ohdr_addr,
                       unsigned rank, const uint64_t *dims,
                       const uint64_t *chunk_dims, size_t elem_size,
                       scf__chunk_map *out, char *err, size_t errlen)
{
	scf__h5r r = { .err = err, .errlen = errlen };
	scf__h5layout l = { 0 };
	scf__h5ohdr *h;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!out)
		return scf__h5_fail(&r, -EINVAL, "invalid arguments");
	memset(out, 0, sizeof(*out));
	rc = scf__h5_setup(&r, fd, g, rank, dims, chunk_dims, elem_size);
	if (rc < 0)
		return rc;
	h = calloc(1, sizeof(*h));
	if (!h)
		return scf__h5_fail(&r, -ENOMEM, "out of memory");
	rc = scf__h5_ohdr(&r, h, ohdr_addr);
	if (rc < 0)
		goto free_header;
	rc = scf__h5_dataspace(&r, &h->space);
	if (rc < 0)
		goto free_header;
	rc = scf__h5_layout(&r, &h->layout, &l);
	if (rc < 0)
		goto free_header;
	rc = scf__h5_map_init(&r, out);
	if (rc < 0)
		goto free_header;
	rc = scf__h5_linear(&r, &l);
	if (rc < 0)
		goto free_map;
	rc = scf__h5_index(&r, &l);
	if (rc == 0)
		rc = scf__h5_check_overlaps(&r);
	if (rc < 0)
		goto free_map;
	/* kept, sorted, for the caller's checks across datasets */
	out->meta = r.meta;
	out->n_meta = r.meta_n;
	free(r.meta_what);
	free(h);
	return 0;
free_map:
	scf__chunk_map_free(out);
free_header:
	free(r.meta);
	free(r.meta_what);
	free(h);
	return rc;
}

void scf__chunk_map_free(scf__chunk_map *m)
{
	if (!m)
		return;
	free(m->chunk);
	free(m->meta);
	m->chunk = NULL;
	m->meta = NULL;
	m->n = 0;
	m->n_meta = 0;
}
