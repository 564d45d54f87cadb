/*
 * formats/h5chunks.c — a dataset's chunk index (object header -> layout
 * message -> B-tree or array index) read with pread() in one pass into the
 * dense chunk map the planner uses.  Opening thread only; no HDF5 calls.
 * Here: what every index kind shares (checked metadata reads, the object
 * header walk, the dataspace and layout messages, the grid, the overlap
 * checks); each kind of index has its own file, formats/h5index_*.c.
 */
#include "formats/h5chunks_int.h"
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

/* Write the sentence that explains a failure and pass its code through. */
int scf__h5_fail(scf__h5r *r, int code, const char *fmt, ...)
{
	if (r->err && r->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(r->err, r->errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

#define SCF__ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

/* Jenkins lookup3 (hashlittle, initval 0): the checksum of HDF5 metadata. */
static uint32_t lookup3(const uint8_t *k, size_t len)
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
int scf__h5_sum(scf__h5r *r, const uint8_t *p, size_t len, const char *what,
                uint64_t addr)
{
	if (len < 4 || lookup3(p, len - 4) != scf__h5_le32(p + len - 4))
		return scf__h5_fail(r, SCF_E_CORRUPT,
		                    "the checksum of the %s at address %llu does not match",
		                    what, (unsigned long long)addr);
	return 0;
}

/* Absolute offset of [rel, rel+len) when it lies inside the file. */
int scf__h5_span(const scf__h5r *r, uint64_t rel, uint64_t len, uint64_t *abs)
{
	if (rel == r->undef || rel > r->eof - r->base)
		return 0;
	*abs = r->base + rel;
	return len <= r->eof - *abs;
}

/* Remember a metadata block's extent (absolute) for the overlap check. */
int scf__h5_meta(scf__h5r *r, uint64_t abs, uint64_t len, const char *what)
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
int scf__h5_read(scf__h5r *r, uint64_t rel, void *buf, size_t len,
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
int scf__h5_read_upto(scf__h5r *r, uint64_t rel, void *buf, size_t want,
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
uint8_t *scf__h5_alloc(scf__h5r *r, uint64_t len, int *rc)
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
static int keep(scf__h5r *r, scf__h5msg *m, const char *what,
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
static int cont(scf__h5r *r, scf__h5ohdr *h, const uint8_t *d, size_t len)
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
static int msg(scf__h5r *r, scf__h5ohdr *h, unsigned type, unsigned flags,
               const uint8_t *d, size_t len)
{
	switch (type) {
	case 0x01:
		return keep(r, &h->space, "dataspace", d, len, flags);
	case 0x08:
		return keep(r, &h->layout, "data layout", d, len, flags);
	case 0x10:
		return cont(r, h, d, len);
	default:
		return 0;
	}
}

/* The messages packed in one header block (v1: 8-byte prefixes, v2: 4 or 6). */
static int messages(scf__h5r *r, scf__h5ohdr *h, int v2, const uint8_t *p,
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
		rc = msg(r, h, type, flags, m + pre, size);
		if (rc < 0)
			return rc;
		off += pre + size;
	}
	return 0;
}

/* Size of a version-2 header prefix, or 0 when the buffer is too short. */
static size_t v2_prefix(const uint8_t *p, size_t got, uint64_t *chunk0)
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
static int ohdr_v2(scf__h5r *r, scf__h5ohdr *h, uint64_t addr,
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
	pre = v2_prefix(buf, got, &chunk0);
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
	rc = messages(r, h, 1, p + pre, (size_t)chunk0);
out:
	if (p != buf)
		free(p);
	return rc;
}

/* First block of a version-1 object header: 16-byte prefix, then messages. */
static int ohdr_v1(scf__h5r *r, scf__h5ohdr *h, uint64_t addr,
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
	rc = messages(r, h, 0, p, (size_t)size);
out:
	if (p != buf + 16)
		free(p);
	return rc;
}

/* One continuation block ("OCHK" and a checksum in version 2). */
static int ohdr_cont(scf__h5r *r, scf__h5ohdr *h, int v2, unsigned i)
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
		rc = v2 ? messages(r, h, 1, p + 4, (size_t)len - 8)
		        : messages(r, h, 0, p, (size_t)len);
out:
	free(p);
	return rc;
}

/* All messages of the dataset's object header, following continuations. */
static int ohdr(scf__h5r *r, scf__h5ohdr *h, uint64_t addr)
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
	rc = v2 ? ohdr_v2(r, h, addr, buf, got)
	        : ohdr_v1(r, h, addr, buf, got);
	for (unsigned i = 0; rc == 0 && i < h->ncont; i++)
		rc = ohdr_cont(r, h, v2, i);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Dataspace and layout messages                                            */

/* Current and maximum extents; they must agree with what HDF5 reported. */
static int dataspace(scf__h5r *r, const scf__h5msg *m)
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
static int index_info(scf__h5r *r, scf__h5layout *l, const uint8_t *p, size_t left)
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
static int layout_v4(scf__h5r *r, scf__h5layout *l, const uint8_t *d, size_t len)
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
	return index_info(r, l, d + off + 1, len - off - 1);
}

/* Layout version 3: 4-byte chunk dims and a version-1 B-tree address. */
static int layout_v3(scf__h5r *r, scf__h5layout *l, const uint8_t *d, size_t len)
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
static int layout(scf__h5r *r, const scf__h5msg *m, scf__h5layout *l)
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
	rc = l->version == 3 ? layout_v3(r, l, m->d, m->len)
	                     : layout_v4(r, l, m->d, m->len);
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
static int linear(scf__h5r *r, const scf__h5layout *l)
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
uint64_t scf__h5_lin_to_map(const scf__h5r *r, uint64_t li)
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

/* A non-zero filter mask goes to the map's short exception list. */
static int put_mask(scf__h5r *r, uint64_t idx, uint32_t mask)
{
	scf__chunk_map *m = r->map;

	if (m->n_exc == r->exc_cap) {
		uint64_t cap = r->exc_cap ? 2 * r->exc_cap : 16;
		scf__chunk_exc *q = cap <= SIZE_MAX / sizeof(*q) ? realloc(m->exc, cap * sizeof(*q))
		                                                 : NULL;
		if (!q)
			return scf__h5_fail(r, -ENOMEM, "out of memory for the chunk index");
		m->exc = q;
		r->exc_cap = cap;
	}
	m->exc[m->n_exc++] = (scf__chunk_exc){ idx, mask, 0 };
	return 0;
}

/* Record one chunk after checking that its extent lies inside the file. */
int scf__h5_put(scf__h5r *r, uint64_t idx, uint64_t rel, uint64_t size,
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
	/* each index lists a chunk once; a second entry would leave two masks */
	if (scf__chunk_addr(r->map, idx) != SCF__CHUNK_UNALLOCATED)
		return scf__h5_fail(r, SCF_E_CORRUPT, "the %s lists chunk %llu twice", what,
		                    (unsigned long long)idx);
	if (mask && put_mask(r, idx, mask) < 0)
		return -ENOMEM;
	r->map->rec[idx] = (scf__chunk_rec){ abs, (uint32_t)size };
	return 0;
}

static int exc_cmp(const void *a, const void *b)
{
	const scf__chunk_exc *x = a, *y = b;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* B-tree leaves come in any order; the mask lookup wants them sorted. */
static void sort_masks(scf__chunk_map *m)
{
	for (uint64_t i = 1; i < m->n_exc; i++) {
		if (m->exc[i].idx < m->exc[i - 1].idx) {
			qsort(m->exc, (size_t)m->n_exc, sizeof(*m->exc), exc_cmp);
			return;
		}
	}
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                             */

/* Check the caller's geometry and size the map; all chunks start unallocated. */
static int map_init(scf__h5r *r, scf__chunk_map *out)
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
	if (n > SIZE_MAX / sizeof(scf__chunk_rec))
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
	out->rec = malloc(n ? (size_t)n * sizeof(scf__chunk_rec) : 1);
	if (!out->rec)
		return scf__h5_fail(r, -ENOMEM, "out of memory for a map of %llu chunks",
		                    (unsigned long long)n);
	for (uint64_t i = 0; i < n; i++)
		out->rec[i] = (scf__chunk_rec){ SCF__CHUNK_UNALLOCATED, 0 };
	r->map = out;
	return 0;
}

/* Copy and validate the caller's arguments into the parse state. */
static int setup(scf__h5r *r, int fd, const scf__h5geom *g, unsigned rank,
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

static int ext_cmp(const void *a, const void *b)
{
	const scf__byte_range *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

void scf__extents_sort(scf__byte_range *r, size_t n)
{
	if (n > 1)
		qsort(r, n, sizeof(*r), ext_cmp);
}

scf__byte_range *scf__chunk_extents(const scf__chunk_map *m, size_t *n)
{
	scf__byte_range *e = malloc((m->n ? (size_t)m->n : 1) * sizeof(*e));
	size_t k = 0;
	int sorted = 1;

	if (!e)
		return NULL;
	for (uint64_t i = 0; i < m->n; i++) {
		uint64_t a = scf__chunk_addr(m, i);
		if (a == SCF__CHUNK_UNALLOCATED)
			continue;
		e[k] = (scf__byte_range){ a, scf__chunk_size(m, i), i };
		sorted &= k == 0 || e[k].addr >= e[k - 1].addr;
		k++;
	}
	if (!sorted)
		scf__extents_sort(e, k);
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
static int check_overlaps(scf__h5r *r)
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
		scf__extents_sort(r->meta, r->meta_n);
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
static int read_index(scf__h5r *r, const scf__h5layout *l)
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
	rc = setup(&r, fd, g, rank, dims, chunk_dims, elem_size);
	if (rc < 0)
		return rc;
	h = calloc(1, sizeof(*h));
	if (!h)
		return scf__h5_fail(&r, -ENOMEM, "out of memory");
	rc = ohdr(&r, h, ohdr_addr);
	if (rc < 0)
		goto free_header;
	rc = dataspace(&r, &h->space);
	if (rc < 0)
		goto free_header;
	rc = layout(&r, &h->layout, &l);
	if (rc < 0)
		goto free_header;
	rc = map_init(&r, out);
	if (rc < 0)
		goto free_header;
	rc = linear(&r, &l);
	if (rc < 0)
		goto free_map;
	rc = read_index(&r, &l);
	if (rc == 0)
		sort_masks(out);
	if (rc == 0)
		rc = check_overlaps(&r);
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
	if (!m->borrowed) {
		free(m->rec);
		free(m->exc);
	}
	free(m->meta);
	m->rec = NULL;
	m->exc = NULL;
	m->meta = NULL;
	m->n = m->n_exc = m->n_meta = 0;
	m->borrowed = 0;
}
