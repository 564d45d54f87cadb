/*
 * engine/zcache — a budgeted, pinned LRU of decoded chunks.
 * Threads: any; every function takes the lock (entries' bytes are written
 * only by the worker that reserved them, before publish).
 */
#include "engine/zcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/faults.h" /* last: may wrap malloc in test builds */

struct scf__zentry {
	uint64_t id;
	uint32_t file, ds;
	uint8_t *buf;
	uint64_t cap, valid;
	uint32_t refs;
	int published;
	scf__zentry *hnext;       /* hash chain */
	scf__zentry *prev, *next; /* LRU, while unpinned and published */
};

int scf__zcache_init(scf__zcache *c, uint64_t budget, uint64_t min_chunk)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	if (budget == 0 || min_chunk == 0)
		return 0;
	/* about two chains per entry the budget can hold, within sane bounds */
	uint64_t want = budget / min_chunk * 2, n = 1024;
	while (n < want && n < (1u << 20))
		n *= 2;
	c->bucket = calloc(n, sizeof(*c->bucket));
	if (!c->bucket)
		return -ENOMEM;
	c->n_bucket = n;
	c->budget = budget;
	c->on = 1;
	return 0;
}

static void entry_free(scf__zentry *e)
{
	free(e->buf);
	free(e);
}

void scf__zcache_free(scf__zcache *c)
{
	for (uint64_t b = 0; b < c->n_bucket; b++) {
		scf__zentry *e = c->bucket[b], *nx;
		for (; e; e = nx) {
			nx = e->hnext;
			entry_free(e);
		}
	}
	free(c->bucket);
	pthread_mutex_destroy(&c->mu);
	memset(c, 0, sizeof(*c));
}

static uint64_t slot_of(const scf__zcache *c, uint32_t file, uint32_t ds, uint64_t id)
{
	uint64_t h = (id * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)file << 33) ^ ((uint64_t)ds << 1);
	h ^= h >> 29;
	return h & (c->n_bucket - 1);
}

static scf__zentry *find(const scf__zcache *c, uint32_t file, uint32_t ds, uint64_t id)
{
	scf__zentry *e = c->bucket[slot_of(c, file, ds, id)];
	while (e && (e->id != id || e->file != file || e->ds != ds))
		e = e->hnext;
	return e;
}

static void lru_unlink(scf__zcache *c, scf__zentry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_append(scf__zcache *c, scf__zentry *e)
{
	e->prev = c->lru_tail;
	e->next = NULL;
	if (c->lru_tail)
		c->lru_tail->next = e;
	else
		c->lru_head = e;
	c->lru_tail = e;
}

/* Take e out of the hash (it must be unpinned or never published). */
static void unhash(scf__zcache *c, scf__zentry *e)
{
	scf__zentry **pp = &c->bucket[slot_of(c, e->file, e->ds, e->id)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	c->used -= e->cap;
}

static void pin(scf__zcache *c, scf__zentry *e)
{
	if (e->refs++ == 0 && e->published)
		lru_unlink(c, e);
}

scf__zentry *scf__zcache_get(scf__zcache *c, uint32_t file, uint32_t ds, uint64_t id,
                             uint64_t need)
{
	scf__zentry *e = NULL;

	if (!c->on)
		return NULL;
	pthread_mutex_lock(&c->mu);
	e = find(c, file, ds, id);
	if (e && (!e->published || e->valid < need))
		e = NULL;
	if (e)
		pin(c, e);
	pthread_mutex_unlock(&c->mu);
	return e;
}

/*
 * Evict least recently used entries until `bytes` more fit; returns a
 * buffer of exactly `bytes` from an evicted entry when one had that size
 * (chunks of one dataset all do), so steady state allocates nothing.
 */
static uint8_t *make_room(scf__zcache *c, uint64_t bytes)
{
	uint8_t *keep = NULL;

	while (c->used + bytes > c->budget && c->lru_head) {
		scf__zentry *v = c->lru_head;
		lru_unlink(c, v);
		unhash(c, v);
		if (!keep && v->cap == bytes) {
			keep = v->buf;
			v->buf = NULL;
		}
		entry_free(v);
	}
	return keep;
}

scf__zentry *scf__zcache_reserve(scf__zcache *c, uint32_t file, uint32_t ds, uint64_t id,
                                 uint64_t bytes)
{
	scf__zentry *e;
	uint8_t *buf;

	if (!c->on || bytes > c->budget)
		return NULL;
	pthread_mutex_lock(&c->mu);
	e = find(c, file, ds, id);
	if (e && e->published && e->refs == 0) {
		/* a shorter prefix nobody uses: make way for the longer decode */
		lru_unlink(c, e);
		unhash(c, e);
		entry_free(e);
	} else if (e) {
		pthread_mutex_unlock(&c->mu);
		return NULL;
	}
	buf = make_room(c, bytes);
	if (c->used + bytes > c->budget) {
		pthread_mutex_unlock(&c->mu);
		free(buf);
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (e && !buf)
		buf = malloc(bytes);
	if (!e || !buf) {
		pthread_mutex_unlock(&c->mu);
		free(e);
		free(buf);
		return NULL; /* no memory: the caller decodes into its own buffer */
	}
	*e = (scf__zentry){ .id = id, .file = file, .ds = ds, .buf = buf, .cap = bytes,
	                    .refs = 1 };
	uint64_t b = slot_of(c, file, ds, id);
	e->hnext = c->bucket[b];
	c->bucket[b] = e;
	c->used += bytes;
	pthread_mutex_unlock(&c->mu);
	return e;
}

uint8_t *scf__zentry_bytes(const scf__zentry *e)
{
	return e->buf;
}

uint64_t scf__zentry_valid(const scf__zentry *e)
{
	return e->valid;
}

void scf__zcache_publish(scf__zcache *c, scf__zentry *e, uint64_t valid)
{
	pthread_mutex_lock(&c->mu);
	e->valid = valid;
	e->published = 1;
	pthread_mutex_unlock(&c->mu);
}

void scf__zcache_put(scf__zcache *c, scf__zentry *e)
{
	pthread_mutex_lock(&c->mu);
	if (--e->refs == 0) {
		if (e->published) {
			lru_append(c, e);
		} else {
			unhash(c, e);
			entry_free(e);
		}
	}
	pthread_mutex_unlock(&c->mu);
}
