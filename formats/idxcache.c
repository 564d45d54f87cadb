/*
 * formats/idxcache.c — the persistent index cache (see formats/idxcache.h
 * for what it holds, where it lives and why it can be trusted): found and
 * checked at open, written after an open that had to read the file.
 * Thread: the caller of scf_open() or scf_index_build().
 */
#include "formats/idxcache.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "scfetch.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

#define IDX_ORDER 0x0102030405060708ULL
#define IDX_ALIGN 64
/* Validation reads: a multiple of 64 (hash stripes, sections) and of the
 * 8-, 12- and 16-byte entries, so no entry straddles two reads. */
#define IDX_BLOCK (96u * 8192u)
#define IDX_NAME 4352 /* a path of PATH_MAX and a file name */

_Static_assert(sizeof(scf__idx_hdr) % IDX_ALIGN == 0, "sections start aligned");

/* ------------------------------------------------------------------------ */
/* The checksum: XXH64's rounds over 32-byte stripes (every length hashed   */
/* here is a multiple of 64), with the length mixed in at the end.          */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL

typedef struct idx_hash {
	uint64_t v[4];
	uint64_t len;
} idx_hash;

static uint64_t rotl(uint64_t x, unsigned k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t round64(uint64_t acc, uint64_t in)
{
	return rotl(acc + in * P2, 31) * P1;
}

static void hash_init(idx_hash *h)
{
	h->v[0] = P1 + P2;
	h->v[1] = P2;
	h->v[2] = 0;
	h->v[3] = -P1;
	h->len = 0;
}

static void hash_update(idx_hash *h, const uint8_t *p, size_t len)
{
	for (size_t at = 0; at + 32 <= len; at += 32) {
		for (unsigned i = 0; i < 4; i++) {
			uint64_t w;
			memcpy(&w, p + at + 8 * i, 8);
			h->v[i] = round64(h->v[i], w);
		}
	}
	h->len += len;
}

static uint64_t hash_final(const idx_hash *h)
{
	uint64_t x = rotl(h->v[0], 1) + rotl(h->v[1], 7) + rotl(h->v[2], 12) + rotl(h->v[3], 18);

	for (unsigned i = 0; i < 4; i++)
		x = (x ^ round64(0, h->v[i])) * P1 + P4;
	x += h->len;
	x ^= x >> 33;
	x *= P2;
	x ^= x >> 29;
	x *= P3;
	return x ^ (x >> 32);
}

/* The header's own checksum: over its bytes with hdr_sum taken as 0. */
static uint64_t header_sum(const scf__idx_hdr *h)
{
	scf__idx_hdr c = *h;
	idx_hash s;

	c.hdr_sum = 0;
	hash_init(&s);
	hash_update(&s, (const uint8_t *)&c, sizeof(c));
	return hash_final(&s);
}

/* ------------------------------------------------------------------------ */
/* Layout                                                                   */

/* Room for count entries of size bytes at *at, padded; -1 on overflow. */
static int add_section(uint64_t *at, uint64_t count, uint64_t size, uint64_t *off)
{
	uint64_t bytes;

	*off = *at;
	if (__builtin_mul_overflow(count, size, &bytes) ||
	    __builtin_add_overflow(bytes, IDX_ALIGN - 1, &bytes) ||
	    __builtin_add_overflow(*at, bytes / IDX_ALIGN * IDX_ALIGN, at))
		return -1;
	return 0;
}

/* Section offsets and the file length that h's counts give; -1 when they overflow. */
static int layout(scf__idx_hdr *h)
{
	uint64_t at = sizeof(*h), n_ptr = h->n_rows + 1;
	int rc = 0;

	h->indptr_off = 0;
	if (h->encoding == SCF__CSR)
		rc |= n_ptr == 0 || add_section(&at, n_ptr, sizeof(int64_t), &h->indptr_off);
	for (unsigned k = 0; k < 2; k++) {
		scf__idx_dset *d = &h->ds[k];
		d->rec_off = d->exc_off = 0;
		if (d->storage != SCF__CHUNKED)
			continue;
		rc |= add_section(&at, d->n, sizeof(scf__chunk_rec), &d->rec_off);
		rc |= add_section(&at, d->n_exc, sizeof(scf__chunk_exc), &d->exc_off);
	}
	h->file_bytes = at;
	return rc ? -1 : 0;
}

/* Chunks in ds's grid; -1 when the count overflows. */
static int grid_of(const scf__dset *ds, uint64_t grid[2], uint64_t *n)
{
	*n = 1;
	for (unsigned i = 0; i < 2; i++) {
		uint64_t d = ds->dims[i], c = ds->chunks.chunk_dims[i];
		if (c == 0)
			return -1;
		grid[i] = d == 0 ? 0 : (d - 1) / c + 1;
		if (__builtin_mul_overflow(*n, grid[i], n))
			return -1;
	}
	return 0;
}

static void dset_identity(scf__idx_dset *d, const scf__dset *ds)
{
	memset(d, 0, sizeof(*d));
	d->ohdr = ds->ohdr;
	d->storage = (uint64_t)ds->storage;
	d->type = (uint64_t)ds->type.cls << 8 | ds->type.size;
	d->dims[0] = ds->dims[0];
	d->dims[1] = ds->dims[1];
	if (ds->storage == SCF__CHUNKED) {
		d->chunk_dims[0] = ds->chunks.chunk_dims[0];
		d->chunk_dims[1] = ds->chunks.chunk_dims[1];
	}
}

/* The header a cache of m (file identity st) carries, counts left 0. */
static void header_of(scf__idx_hdr *h, const scf__matrix *m, const struct stat *st)
{
	const scf__dset *ds[3] = { &m->data, &m->indices, &m->indptr_ds };

	memset(h, 0, sizeof(*h));
	memcpy(h->magic, SCF__IDX_MAGIC, sizeof(h->magic));
	h->version = SCF__IDX_VERSION;
	h->byte_order = IDX_ORDER;
	h->hdr_bytes = sizeof(*h);
	h->st_size = (uint64_t)st->st_size;
	h->st_dev = (uint64_t)st->st_dev;
	h->st_ino = (uint64_t)st->st_ino;
	h->mtime_sec = (uint64_t)st->st_mtim.tv_sec;
	h->mtime_nsec = (uint64_t)st->st_mtim.tv_nsec;
	memcpy(h->key, m->key, strlen(m->key));
	h->encoding = (uint64_t)m->encoding;
	h->n_rows = m->n_rows;
	h->n_cols = m->n_cols;
	h->sb_start = m->sb_start;
	for (unsigned k = 0; k < (m->encoding == SCF__CSR ? 3u : 1u); k++)
		dset_identity(&h->ds[k], ds[k]);
}

/* ------------------------------------------------------------------------ */
/* Names                                                                    */

static uint64_t fnv64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	return h;
}

/* "" for X, else ".<key, [A-Za-z0-9_-] kept, at most 40>-<hash of key>". */
static void key_tag(const char *key, char *out, size_t len)
{
	char clean[41];
	size_t i;

	if (strcmp(key, "X") == 0) {
		out[0] = '\0';
		return;
	}
	for (i = 0; key[i] && i < sizeof(clean) - 1; i++) {
		char c = key[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		         c == '_' || c == '-';
		clean[i] = ok ? c : '_';
	}
	clean[i] = '\0';
	snprintf(out, len, ".%s-%08llx", clean, (unsigned long long)(fnv64(key) & 0xffffffffu));
}

int scf__idx_path(const char *path, const char *key, const char *dir, char *out, size_t len)
{
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	char tag[64], abs[PATH_MAX];
	int n;

	key_tag(key, tag, sizeof(tag));
	if (!dir) {
		n = snprintf(out, len, "%s%s.scfidx", path, tag);
	} else {
		/* elsewhere, two files of one name must not share a cache */
		if (!realpath(path, abs))
			return -errno;
		n = snprintf(out, len, "%s/%s.%016llx%s.scfidx", dir, base,
		             (unsigned long long)fnv64(abs), tag);
	}
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* The user's cache directory, $XDG_CACHE_HOME/scfetch or ~/.cache/scfetch; 0 when none. */
static int user_dir(char *out, size_t len)
{
	const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	int n;

	if (x && x[0] == '/')
		n = snprintf(out, len, "%s/scfetch", x);
	else if (home && home[0] == '/')
		n = snprintf(out, len, "%s/.cache/scfetch", home);
	else
		return 0;
	return n > 0 && (size_t)n < len;
}

/* Where to look and write, in order: the directory asked for (or beside the
 * file), then the user's cache directory. */
typedef struct idx_places {
	char file[2][IDX_NAME];
	char dir[2][IDX_NAME];  /* "" beside the file */
	unsigned n;
} idx_places;

static void places_of(idx_places *p, const scf__matrix *m, const scf__idxcfg *cfg)
{
	const char *env = getenv("SCFETCH_INDEX_DIR");
	const char *dir = cfg->dir && cfg->dir[0] ? cfg->dir : env && env[0] ? env : NULL;
	char user[IDX_NAME];

	p->n = 0;
	if (scf__idx_path(m->path, m->key, dir, p->file[0], IDX_NAME) == 0) {
		snprintf(p->dir[0], IDX_NAME, "%s", dir ? dir : "");
		p->n++;
	}
	if (user_dir(user, sizeof(user)) && (!dir || strcmp(user, dir) != 0) &&
	    scf__idx_path(m->path, m->key, user, p->file[p->n], IDX_NAME) == 0) {
		snprintf(p->dir[p->n], IDX_NAME, "%s", user);
		p->n++;
	}
}

/* ------------------------------------------------------------------------ */
/* Notes                                                                    */

__attribute__((format(printf, 2, 3)))
static void note(scf__matrix *m, const char *fmt, ...)
{
	char buf[3 * IDX_NAME];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	free(m->idx.note);
	m->idx.note = strdup(buf); /* NULL when out of memory: the note reads "" */
}

static void set_file(scf__matrix *m, const char *file)
{
	free(m->idx.file);
	m->idx.file = strdup(file);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */

/* One validation pass over a cache: what it found, and the first problem. */
typedef struct idx_check {
	const scf__matrix *m;
	const scf__idx_hdr *h;
	uint64_t eof;            /* the .h5ad's size */
	unsigned k;              /* dataset of the section being read */
	uint64_t used[2];        /* CSR: chunks [used[0], used[1]) hold stored entries */
	int64_t first, prev;     /* indptr: the first and last values; exceptions:
	                            prev is the last idx */
	uint64_t widest;
	char *why;
	size_t wlen;
} idx_check;

typedef int (*idx_visit)(idx_check *c, const uint8_t *p, uint64_t first, uint64_t count);

/* Dataset k (0 data, 1 indices, 2 indptr) by name, for the note. */
static const char *ds_name(const scf__matrix *m, unsigned k)
{
	return k == 0 ? m->data.name : k == 1 ? m->indices.name : m->indptr_ds.name;
}

__attribute__((format(printf, 2, 3)))
static int bad(idx_check *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, c->wlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int visit_indptr(idx_check *c, const uint8_t *p, uint64_t first, uint64_t count)
{
	for (uint64_t i = 0; i < count; i++) {
		int64_t v;
		memcpy(&v, p + 8 * i, 8);
		if (first + i == 0) {
			if (v < 0)
				return bad(c, "%s starts at %lld", ds_name(c->m, 2), (long long)v);
			c->first = v;
		} else if (v < c->prev) {
			return bad(c, "%s is not monotonic at row %llu", ds_name(c->m, 2),
			           (unsigned long long)(first + i - 1));
		} else if ((uint64_t)(v - c->prev) > c->widest) {
			c->widest = (uint64_t)(v - c->prev);
		}
		c->prev = v;
	}
	return 0;
}

/* Each chunk as the parser's scf__h5_put() leaves it: in the file after the
 * superblock (what check_disjoint() asks of every chunk, at no cost here), or
 * unwritten. */
static int visit_rec(idx_check *c, const uint8_t *p, uint64_t first, uint64_t count)
{
	uint64_t lo = c->m->sb_start + c->m->sb_len, eof = c->eof;

	for (uint64_t i = 0; i < count; i++) {
		scf__chunk_rec r;
		uint64_t idx = first + i;
		memcpy(&r, p + sizeof(r) * i, sizeof(r));
		if (r.addr == SCF__CHUNK_UNALLOCATED) {
			if (r.size != 0 || (idx >= c->used[0] && idx < c->used[1]))
				return bad(c, "%s: chunk %llu is unwritten but holds entries",
				           ds_name(c->m, c->k), (unsigned long long)idx);
		} else if (r.size == 0 || r.addr < lo || r.addr > eof || r.size > eof - r.addr) {
			return bad(c, "%s: chunk %llu (%u bytes at %llu) lies outside the file "
			           "(%llu bytes) or in its superblock", ds_name(c->m, c->k),
			           (unsigned long long)idx, r.size, (unsigned long long)r.addr,
			           (unsigned long long)eof);
		}
	}
	return 0;
}

static int visit_exc(idx_check *c, const uint8_t *p, uint64_t first, uint64_t count)
{
	uint64_t n = c->h->ds[c->k].n;

	for (uint64_t i = 0; i < count; i++) {
		scf__chunk_exc e;
		memcpy(&e, p + sizeof(e) * i, sizeof(e));
		if (e.idx >= n || e.mask == 0 || e._pad ||
		    (first + i > 0 && e.idx <= (uint64_t)c->prev))
			return bad(c, "%s: filter mask entry %llu is invalid", ds_name(c->m, c->k),
			           (unsigned long long)(first + i));
		c->prev = (int64_t)e.idx;
	}
	return 0;
}

/* All of len bytes at off, or -1 (errno set; 0 when the file ends first). */
static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	for (size_t done = 0; done < len;) {
		ssize_t r = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = 0;
			return -1;
		}
		done += (size_t)r;
	}
	return 0;
}

/*
 * One section, count entries of size bytes at off: read in blocks through a
 * small buffer (the mapping stays untouched, so a process's private memory
 * does not grow with the cache), hashed with its padding, which must be
 * zero, and each block's whole entries handed to visit.
 */
static int scan_section(idx_check *c, int fd, idx_hash *hs, uint8_t *buf, uint64_t off,
                        uint64_t count, size_t size, idx_visit visit)
{
	uint64_t bytes = count * size, padded = (bytes + IDX_ALIGN - 1) / IDX_ALIGN * IDX_ALIGN;

	for (uint64_t done = 0; done < padded;) {
		size_t len = padded - done < IDX_BLOCK ? (size_t)(padded - done) : IDX_BLOCK;
		size_t data = done >= bytes ? 0 : bytes - done < len ? (size_t)(bytes - done) : len;
		if (pread_full(fd, buf, len, off + done) < 0)
			return bad(c, "cannot be read: %s", errno ? strerror(errno) : "it ends first");
		hash_update(hs, buf, len);
		for (size_t i = data; i < len; i++)
			if (buf[i])
				return bad(c, "padding at byte %llu is not zero",
				           (unsigned long long)(off + done + i));
		if (visit(c, buf, done / size, data / size) < 0)
			return -1;
		done += len;
	}
	return 0;
}

/* The chunks of dataset k that hold stored entries (CSR; none when dense). */
static void used_chunks(idx_check *c, unsigned k, const int64_t ends[2])
{
	const scf__dset *ds = k ? &c->m->indices : &c->m->data;
	uint64_t cd = ds->chunks.chunk_dims[0];

	c->used[0] = c->used[1] = 0;
	if (c->m->encoding != SCF__CSR || ends[1] <= ends[0])
		return;
	c->used[0] = (uint64_t)ends[0] / cd;
	c->used[1] = ((uint64_t)ends[1] - 1) / cd + 1;
}

/* indptr's last value against the datasets it points into. */
static int check_end(idx_check *c)
{
	const scf__matrix *m = c->m;

	if ((uint64_t)c->prev > m->data.dims[0] || m->data.dims[0] != m->indices.dims[0])
		return bad(c, "%s ends at %lld but data has %llu and indices %llu entries",
		           ds_name(m, 2), (long long)c->prev, (unsigned long long)m->data.dims[0],
		           (unsigned long long)m->indices.dims[0]);
	return 0;
}

/* Every section, in file order, checksummed and checked; widest/ends out. */
static int scan(idx_check *c, int fd, int64_t ends[2])
{
	const scf__idx_hdr *h = c->h;
	uint8_t *buf = malloc(IDX_BLOCK);
	idx_hash hs;
	int rc = 0;

	if (!buf)
		return bad(c, "out of memory");
	hash_init(&hs);
	ends[0] = ends[1] = 0;
	if (h->encoding == SCF__CSR) {
		rc = scan_section(c, fd, &hs, buf, h->indptr_off, h->n_rows + 1, 8, visit_indptr);
		if (rc == 0)
			rc = check_end(c);
		ends[0] = c->first;
		ends[1] = c->prev;
	}
	for (unsigned k = 0; rc == 0 && k < 2; k++) {
		const scf__idx_dset *d = &h->ds[k];
		if (d->storage != SCF__CHUNKED)
			continue;
		c->k = k;
		used_chunks(c, k, ends);
		rc = scan_section(c, fd, &hs, buf, d->rec_off, d->n, sizeof(scf__chunk_rec),
		                  visit_rec);
		c->prev = 0;
		if (rc == 0)
			rc = scan_section(c, fd, &hs, buf, d->exc_off, d->n_exc,
			                  sizeof(scf__chunk_exc), visit_exc);
	}
	free(buf);
	if (rc == 0 && hash_final(&hs) != h->payload_sum)
		rc = bad(c, "damaged (checksum mismatch)");
	return rc;
}

/* The header alone: this library's format, whole, and of this length. */
static int check_header(const scf__idx_hdr *h, uint64_t size, char *why, size_t wlen)
{
	scf__idx_hdr want = *h;

	if (memcmp(h->magic, SCF__IDX_MAGIC, sizeof(h->magic)) != 0)
		return snprintf(why, wlen, "not an index cache"), -1;
	if (h->version != SCF__IDX_VERSION || h->byte_order != IDX_ORDER ||
	    h->hdr_bytes != sizeof(*h))
		return snprintf(why, wlen, "written by another version (format %llu)",
		                (unsigned long long)h->version), -1;
	if (header_sum(h) != h->hdr_sum)
		return snprintf(why, wlen, "damaged (header checksum mismatch)"), -1;
	if (h->file_bytes != size)
		return snprintf(why, wlen, "truncated or extended: %llu bytes, its header says "
		                "%llu", (unsigned long long)size,
		                (unsigned long long)h->file_bytes), -1;
	/* sections back to back at the places the counts give, up to the end */
	if (layout(&want) < 0 || memcmp(&want, h, sizeof(want)) != 0)
		return snprintf(why, wlen, "damaged (its sections are misplaced)"), -1;
	return 0;
}

/* What the file is now against what the cache was made from. */
static int check_identity(const scf__idx_hdr *h, const scf__matrix *m, const struct stat *st,
                          char *why, size_t wlen)
{
	scf__idx_hdr now;
	const char *what = NULL;

	header_of(&now, m, st);
	if (h->st_dev != now.st_dev || h->st_ino != now.st_ino)
		what = "it was replaced (another device or inode)";
	else if (h->st_size != now.st_size)
		what = "its size changed";
	else if (h->mtime_sec != now.mtime_sec || h->mtime_nsec != now.mtime_nsec)
		what = "its mtime changed";
	else if (memcmp(h->key, now.key, sizeof(now.key)) != 0)
		what = "the cache is of another matrix";
	if (what)
		return snprintf(why, wlen, "the file changed: %s", what), -1;
	for (unsigned k = 0; k < 3; k++) {
		scf__idx_dset a = h->ds[k];
		a.n = a.n_exc = a.rec_off = a.exc_off = 0;
		if (memcmp(&a, &now.ds[k], sizeof(a)) != 0)
			return snprintf(why, wlen, "the file changed: %s moved or was reshaped",
			                ds_name(m, k)), -1;
	}
	if (h->encoding != now.encoding || h->n_rows != now.n_rows || h->n_cols != now.n_cols ||
	    h->sb_start != now.sb_start)
		return snprintf(why, wlen, "the file changed: the matrix's shape"), -1;
	return 0;
}

/* Each chunked dataset's count is its grid's, which the parser would size. */
static int check_counts(const scf__idx_hdr *h, const scf__matrix *m, char *why, size_t wlen)
{
	const scf__dset *ds[2] = { &m->data, &m->indices };

	for (unsigned k = 0; k < 2; k++) {
		uint64_t grid[2], n;
		if (h->ds[k].storage != SCF__CHUNKED)
			continue;
		if (grid_of(ds[k], grid, &n) < 0 || n != h->ds[k].n || n > h->st_size ||
		    h->ds[k].n_exc > n)
			return snprintf(why, wlen, "damaged (%s: %llu chunks)", ds_name(m, k),
			                (unsigned long long)h->ds[k].n), -1;
	}
	return 0;
}

/* Point a chunk map at its records in the mapping. */
static void attach_map(scf__dset *ds, const scf__idx_dset *d, uint8_t *base)
{
	scf__chunk_map *cm = &ds->chunks;

	cm->rank = ds->rank;
	cm->dims[0] = ds->dims[0];
	cm->dims[1] = ds->dims[1];
	grid_of(ds, cm->grid, &cm->n);
	cm->rec = (scf__chunk_rec *)(base + d->rec_off);
	cm->exc = d->n_exc ? (scf__chunk_exc *)(base + d->exc_off) : NULL;
	cm->n_exc = d->n_exc;
	cm->borrowed = 1;
}

/* m's arrays from a mapping of a cache known valid. */
static void attach(scf__matrix *m, const scf__idx_hdr *h, uint8_t *base, size_t len)
{
	scf__dset *ds[2] = { &m->data, &m->indices };

	m->idx.map = base;
	m->idx.map_len = len;
	if (h->encoding == SCF__CSR) {
		m->indptr = (int64_t *)(base + h->indptr_off);
		m->indptr_borrowed = 1;
	}
	for (unsigned k = 0; k < 2; k++)
		if (h->ds[k].storage == SCF__CHUNKED)
			attach_map(ds[k], &h->ds[k], base);
}

/* A cache file's header and every number in it; 0 valid, -1 with why. */
static int validate(scf__matrix *m, const struct stat *st, int fd, scf__idx_hdr *h,
                    char *why, size_t wlen)
{
	struct stat cst;
	idx_check c = { .m = m, .h = h, .eof = (uint64_t)st->st_size, .why = why, .wlen = wlen };
	int64_t ends[2] = { 0, 0 };

	if (fstat(fd, &cst) < 0 || !S_ISREG(cst.st_mode))
		return snprintf(why, wlen, "not a regular file"), -1;
	if ((uint64_t)cst.st_size < sizeof(*h) || pread_full(fd, h, sizeof(*h), 0) < 0)
		return snprintf(why, wlen, "truncated (%llu bytes)",
		                (unsigned long long)cst.st_size), -1;
	if (check_header(h, (uint64_t)cst.st_size, why, wlen) < 0 ||
	    check_identity(h, m, st, why, wlen) < 0 || check_counts(h, m, why, wlen) < 0 ||
	    scan(&c, fd, ends) < 0)
		return -1;
	if (m->encoding == SCF__CSR) {
		m->max_row_nnz = c.widest;
		m->nnz = (uint64_t)(ends[1] - ends[0]);
	}
	return 0;
}

/* One place: 1 used, 0 no cache there, -1 unusable (why says so). */
static int try_load(scf__matrix *m, const struct stat *st, const char *file, char *why,
                    size_t wlen)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	scf__idx_hdr h;
	void *map;

	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		snprintf(why, wlen, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (validate(m, st, fd, &h, why, wlen) < 0) {
		close(fd);
		return -1;
	}
	map = mmap(NULL, (size_t)h.file_bytes, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		snprintf(why, wlen, "cannot be mapped: %s", strerror(errno));
		return -1;
	}
	attach(m, &h, map, (size_t)h.file_bytes);
	return 1;
}

int scf__idx_load(scf__matrix *m, const scf__idxcfg *cfg, const struct stat *st)
{
	idx_places *p = malloc(sizeof(*p));
	char why[600];
	int found = 0;

	if (!p)
		return 0;
	places_of(p, m, cfg);
	for (unsigned i = 0; i < p->n; i++) {
		int rc = try_load(m, st, p->file[i], why, sizeof(why));
		if (rc == 1) {
			m->idx.state = SCF__IDX_REUSED;
			set_file(m, p->file[i]);
			note(m, "reused %s", p->file[i]);
			free(p);
			return 1;
		}
		/* the first damaged or stale one is the one to report */
		if (rc < 0 && !found++) {
			m->idx.stale = (int)i + 1;
			note(m, "%s", why);
		}
	}
	if (!found)
		note(m, "no index cache yet");
	free(p);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */

static int pwrite_full(int fd, const void *buf, uint64_t len, uint64_t off)
{
	for (uint64_t done = 0; done < len;) {
		size_t step = len - done < (1u << 30) ? (size_t)(len - done) : (1u << 30);
		ssize_t w = pwrite(fd, (const uint8_t *)buf + done, step, (off_t)(off + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		done += (uint64_t)w;
	}
	return 0;
}

/* len bytes of p at *at, then zeros up to a multiple of 64, hashed as written. */
static int put_section(int fd, idx_hash *hs, const void *p, uint64_t len, uint64_t *at)
{
	uint64_t whole = len / IDX_ALIGN * IDX_ALIGN;
	uint8_t tail[IDX_ALIGN] = { 0 };
	int rc;

	hash_update(hs, p, (size_t)whole);
	rc = pwrite_full(fd, p, whole, *at);
	*at += whole;
	if (rc < 0 || len == whole)
		return rc;
	memcpy(tail, (const uint8_t *)p + whole, (size_t)(len - whole));
	hash_update(hs, tail, sizeof(tail));
	rc = pwrite_full(fd, tail, sizeof(tail), *at);
	*at += sizeof(tail);
	return rc;
}

/* The header of an indexed m: identity, counts, layout; -1 on overflow. */
static int header_to_write(scf__idx_hdr *h, const scf__matrix *m, const struct stat *st)
{
	const scf__dset *ds[2] = { &m->data, &m->indices };

	header_of(h, m, st);
	for (unsigned k = 0; k < 2; k++) {
		if (h->ds[k].storage != SCF__CHUNKED)
			continue;
		h->ds[k].n = ds[k]->chunks.n;
		h->ds[k].n_exc = ds[k]->chunks.n_exc;
	}
	return layout(h);
}

/* Payload, then the header with both checksums. */
static int write_cache(int fd, scf__idx_hdr *h, const scf__matrix *m)
{
	const scf__dset *ds[2] = { &m->data, &m->indices };
	uint64_t at = sizeof(*h);
	idx_hash hs;
	int rc = 0;

	hash_init(&hs);
	if (h->encoding == SCF__CSR)
		rc = put_section(fd, &hs, m->indptr, (h->n_rows + 1) * sizeof(int64_t), &at);
	for (unsigned k = 0; rc == 0 && k < 2; k++) {
		const scf__chunk_map *cm = &ds[k]->chunks;
		if (h->ds[k].storage != SCF__CHUNKED)
			continue;
		rc = put_section(fd, &hs, cm->rec, cm->n * sizeof(scf__chunk_rec), &at);
		if (rc == 0)
			rc = put_section(fd, &hs, cm->exc, cm->n_exc * sizeof(scf__chunk_exc), &at);
	}
	if (rc < 0)
		return rc;
	if (at != h->file_bytes)
		return -EIO;
	h->payload_sum = hash_final(&hs);
	h->hdr_sum = header_sum(h);
	return pwrite_full(fd, h, sizeof(*h), 0);
}

/* mkdir -p, for the cache directories (never the .h5ad's own). */
static int make_dirs(const char *dir)
{
	char p[IDX_NAME];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(p))
		return -ENAMETOOLONG;
	memcpy(p, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		p[i] = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			return -errno;
		p[i] = i < n ? '/' : '\0';
	}
	return 0;
}

/* A fresh temporary file beside final: O_EXCL, so no two writers share one. */
static int open_temp(const char *final, char *tmp, size_t len)
{
	for (unsigned tries = 0; tries < 8; tries++) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int n = snprintf(tmp, len, "%s.%ld.%lx%x.tmp", final, (long)getpid(),
		                 (unsigned long)ts.tv_nsec, tries);
		if (n < 0 || (size_t)n >= len)
			return -ENAMETOOLONG;
		int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd >= 0 || errno != EEXIST)
			return fd >= 0 ? fd : -errno;
	}
	return -EEXIST;
}

/* The directory's entry made durable too (best effort: some filesystems refuse). */
static void sync_dir(const char *file)
{
	char d[IDX_NAME];
	const char *slash = strrchr(file, '/');
	int fd;

	snprintf(d, sizeof(d), "%.*s", slash ? (int)(slash - file) : 1, slash ? file : ".");
	fd = open(d[0] ? d : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Write the cache at final; its descriptor (read-write) on success, else -errno. */
static int write_at(const scf__matrix *m, scf__idx_hdr *h, const char *dir, const char *final)
{
	char tmp[IDX_NAME + 64];
	int rc = dir[0] ? make_dirs(dir) : 0;
	int fd = rc < 0 ? rc : open_temp(final, tmp, sizeof(tmp));

	if (fd < 0)
		return fd;
	rc = write_cache(fd, h, m);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, final) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		close(fd);
		return rc;
	}
	sync_dir(final);
	return fd;
}

/*
 * Swap m's own arrays for the mapping of the cache just written (the same
 * bytes): from now on the process shares them with every other opener.
 * When the mapping fails, m keeps its arrays.
 */
static void use_written(scf__matrix *m, const scf__idx_hdr *h, int fd)
{
	scf__dset *ds[2] = { &m->data, &m->indices };
	void *map = mmap(NULL, (size_t)h->file_bytes, PROT_READ, MAP_SHARED, fd, 0);

	if (map == MAP_FAILED)
		return;
	if (h->encoding == SCF__CSR)
		free(m->indptr);
	for (unsigned k = 0; k < 2; k++) {
		if (h->ds[k].storage == SCF__CHUNKED)
			scf__chunk_map_free(&ds[k]->chunks);
	}
	attach(m, h, map, (size_t)h->file_bytes);
#ifdef __GLIBC__
	/* glibc keeps freed heap (the maps and the checks' scratch, tens of MB
	 * on an atlas) for reuse; the engine will not ask for it again */
	malloc_trim(0);
#endif
}

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/*
 * Try each place in turn; the note says where it went, or why nowhere, and
 * why the load did not do (a stale cache elsewhere is named).
 */
static void save_to(scf__matrix *m, const idx_places *p, scf__idx_hdr *h, const char *why)
{
	char fails[2 * IDX_NAME] = "", prior[3 * IDX_NAME];
	int stale = m->idx.stale - 1;
	size_t k = 0;

	snprintf(prior, sizeof(prior), "%s%s%s", stale >= 0 ? p->file[stale] : "",
	         stale >= 0 ? ": " : "", why);
	for (unsigned i = 0; i < p->n; i++) {
		int fd = write_at(m, h, p->dir[i], p->file[i]);
		if (fd >= 0) {
			use_written(m, h, fd);
			close(fd);
			m->idx.state = SCF__IDX_BUILT;
			set_file(m, p->file[i]);
			note(m, "%s %s (%s%s)", stale >= 0 ? "rebuilt" : "built", p->file[i],
			     stale == (int)i ? why : prior, fails);
			return;
		}
		m->idx.err = fd;
		k += (size_t)snprintf(fails + k, sizeof(fails) - k, "; cannot write %s: %s",
		                      p->file[i], strerror(-fd));
		if (k >= sizeof(fails))
			k = sizeof(fails) - 1;
	}
	m->idx.state = SCF__IDX_UNCACHED;
	note(m, "not cached (%s%s)", prior, p->n ? fails : "; no directory to write in");
}

void scf__idx_save(scf__matrix *m, const scf__idxcfg *cfg, const struct stat *st, int fd)
{
	char *prior = m->idx.note;
	struct stat now;
	idx_places *p = NULL;
	scf__idx_hdr h;

	m->idx.note = NULL;
	m->idx.state = SCF__IDX_UNCACHED;
	m->idx.err = -ENOMEM;
	if (fstat(fd, &now) < 0 || !same_file(st, &now)) {
		m->idx.err = -ESTALE;
		note(m, "not cached (the file changed while its index was read)");
	} else if (header_to_write(&h, m, st) < 0) {
		m->idx.err = -EOVERFLOW;
		note(m, "not cached (the index is too large to describe)");
	} else if ((p = malloc(sizeof(*p))) != NULL) {
		places_of(p, m, cfg);
		save_to(m, p, &h, prior ? prior : "");
	}
	free(p);
	free(prior);
}

void scf__idx_free(scf__matrix *m)
{
	if (m->idx.map)
		munmap(m->idx.map, m->idx.map_len);
	free(m->idx.note);
	free(m->idx.file);
	memset(&m->idx, 0, sizeof(m->idx));
}

int scf__idx_reseal(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	int rc = fd < 0 ? -errno : 0;
	uint8_t *buf = malloc(IDX_BLOCK);
	scf__idx_hdr h;
	struct stat st;
	idx_hash hs;

	if (rc == 0 && !buf)
		rc = -ENOMEM;

	if (rc == 0 && (fstat(fd, &st) < 0 || pread_full(fd, &h, sizeof(h), 0) < 0))
		rc = -EIO;
	hash_init(&hs);
	for (uint64_t at = sizeof(h); rc == 0 && at < (uint64_t)st.st_size;) {
		size_t len = (uint64_t)st.st_size - at < IDX_BLOCK ? (size_t)(st.st_size - at)
		                                                     : IDX_BLOCK;
		rc = pread_full(fd, buf, len, at) < 0 ? -EIO : 0;
		hash_update(&hs, buf, len);
		at += len;
	}
	if (rc == 0) {
		h.payload_sum = hash_final(&hs);
		h.hdr_sum = header_sum(&h);
		rc = pwrite_full(fd, &h, sizeof(h), 0);
	}
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}
