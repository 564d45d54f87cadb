/*
 * engine/zcache — decoded filtered chunks kept across fetches, within a
 * memory budget, shared by the I/O thread and every decode worker.
 *
 * A fetch that needs a chunk some earlier fetch decoded (blocks straddling
 * a chunk boundary, scattered rows landing in the same chunk) takes it from
 * here: the plan neither reads nor decodes it.  An entry is pinned while a
 * fetch uses it and evicted, least recently used first, only when unpinned.
 * Entries become visible when their decode is complete (publish), so a
 * reader never sees a half-written chunk.
 * Threads: any; one lock.
 */
#ifndef SCF_ENGINE_ZCACHE_H
#define SCF_ENGINE_ZCACHE_H

#include <pthread.h>
#include <stdint.h>

typedef struct scf__zentry scf__zentry;

typedef struct scf__zcache {
	pthread_mutex_t mu;
	uint64_t budget;        /* bytes of decoded chunks at most */
	uint64_t used;          /* bytes held by entries, pinned or not */
	scf__zentry **bucket;   /* hash chains by (file, dataset, chunk) */
	uint64_t n_bucket;      /* a power of two */
	scf__zentry *lru_head;  /* unpinned published entries, oldest first */
	scf__zentry *lru_tail;
	int on;                 /* 0: every call misses (budget 0 or no filtered data) */
} scf__zcache;

/*
 * A cache of `budget` bytes for chunks of at least min_chunk bytes (sizes
 * the hash).  budget 0 makes a cache that holds nothing.  0 or -ENOMEM.
 */
int scf__zcache_init(scf__zcache *c, uint64_t budget, uint64_t min_chunk);

/* Frees every entry, pinned or not: call after every thread has stopped. */
void scf__zcache_free(scf__zcache *c);

/*
 * The published chunk (file, ds, id) holding at least `need` decoded bytes,
 * pinned for the caller, or NULL.
 */
scf__zentry *scf__zcache_get(scf__zcache *c, uint32_t file, uint32_t ds, uint64_t id,
                             uint64_t need);

/*
 * A new entry of `bytes` for (file, ds, id), pinned and not yet visible,
 * evicting unpinned entries to make room; NULL when the chunk is there
 * already (or being decoded) or the budget is all pinned.
 */
scf__zentry *scf__zcache_reserve(scf__zcache *c, uint32_t file, uint32_t ds, uint64_t id,
                                 uint64_t bytes);

/* Where a reserved entry's bytes go (and a pinned entry's are read from). */
uint8_t *scf__zentry_bytes(const scf__zentry *e);

/* Decoded bytes an entry holds. */
uint64_t scf__zentry_valid(const scf__zentry *e);

/* A reserved entry now holds `valid` decoded bytes: visible to scf__zcache_get. */
void scf__zcache_publish(scf__zcache *c, scf__zentry *e, uint64_t valid);

/* Unpin; a reserved entry that was never published is dropped. */
void scf__zcache_put(scf__zcache *c, scf__zentry *e);

#endif
