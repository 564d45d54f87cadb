/*
 * tests/test_zcache — the decoded-chunk cache alone: visibility only after
 * publish, the budget, least-recently-used eviction that never takes a
 * pinned entry, prefixes replaced by longer decodes, and many threads at
 * once (run under TSan by .ci/test through the stress target's build).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "engine/zcache.h"

#define CHUNK 1000

static scf__zentry *fill(scf__zcache *c, uint32_t file, uint32_t ds, uint64_t id, uint64_t valid)
{
	scf__zentry *e = scf__zcache_reserve(c, file, ds, id, CHUNK);
	if (!e)
		return NULL;
	memset(scf__zentry_bytes(e), (int)(id & 0xff), valid);
	scf__zcache_publish(c, e, valid);
	return e;
}

Test(zcache, visible_only_once_published)
{
	scf__zcache c;
	cr_assert_eq(scf__zcache_init(&c, 10 * CHUNK, CHUNK), 0);
	scf__zentry *e = scf__zcache_reserve(&c, 0, 0, 7, CHUNK);
	cr_assert_not_null(e);
	cr_assert_null(scf__zcache_get(&c, 0, 0, 7, 1), "being decoded: not visible");
	cr_assert_null(scf__zcache_reserve(&c, 0, 0, 7, CHUNK), "one decode per chunk at a time");
	memset(scf__zentry_bytes(e), 7, CHUNK);
	scf__zcache_publish(&c, e, CHUNK);
	scf__zentry *g = scf__zcache_get(&c, 0, 0, 7, CHUNK);
	cr_assert_eq(g, e);
	cr_assert_eq(scf__zentry_bytes(g)[CHUNK - 1], 7);
	cr_assert_null(scf__zcache_get(&c, 1, 0, 7, 1), "another file");
	cr_assert_null(scf__zcache_get(&c, 0, 1, 7, 1), "another dataset");
	scf__zcache_put(&c, g);
	scf__zcache_put(&c, e);
	/* a reservation dropped before publish leaves nothing behind */
	e = scf__zcache_reserve(&c, 0, 0, 8, CHUNK);
	scf__zcache_put(&c, e);
	cr_assert_null(scf__zcache_get(&c, 0, 0, 8, 1));
	cr_assert_eq(c.used, CHUNK, "only chunk 7 is held");
	scf__zcache_free(&c);
}

Test(zcache, budget_lru_and_pins)
{
	scf__zcache c;
	cr_assert_eq(scf__zcache_init(&c, 3 * CHUNK, CHUNK), 0);
	scf__zentry *a = fill(&c, 0, 0, 1, CHUNK), *b = fill(&c, 0, 0, 2, CHUNK);
	scf__zentry *d = fill(&c, 0, 0, 3, CHUNK);
	cr_assert(a && b && d);
	scf__zcache_put(&c, a);
	scf__zcache_put(&c, b);
	/* 3 still pinned; 1 is the oldest unpinned: the fourth chunk evicts it */
	scf__zentry *e = fill(&c, 0, 0, 4, CHUNK);
	cr_assert_not_null(e);
	cr_assert_null(scf__zcache_get(&c, 0, 0, 1, 1), "least recently used went first");
	scf__zentry *g = scf__zcache_get(&c, 0, 0, 2, 1);
	cr_assert_not_null(g);
	cr_assert_eq(c.used, 3 * CHUNK);
	/* everything pinned now: no room, and nothing pinned is taken */
	cr_assert_null(scf__zcache_reserve(&c, 0, 0, 5, CHUNK));
	cr_assert_not_null(scf__zcache_get(&c, 0, 0, 3, 1));
	cr_assert_null(scf__zcache_reserve(&c, 0, 0, 6, 4 * CHUNK), "larger than the budget");
	scf__zcache_free(&c); /* frees pinned entries too */
}

Test(zcache, prefixes_serve_shorter_needs_and_give_way_to_longer)
{
	scf__zcache c;
	cr_assert_eq(scf__zcache_init(&c, 4 * CHUNK, CHUNK), 0);
	scf__zentry *e = fill(&c, 2, 1, 9, 300);
	cr_assert_not_null(e);
	scf__zcache_put(&c, e);
	scf__zentry *g = scf__zcache_get(&c, 2, 1, 9, 300);
	cr_assert_not_null(g, "a prefix serves a need it covers");
	cr_assert_null(scf__zcache_get(&c, 2, 1, 9, 301), "but not a longer one");
	cr_assert_null(scf__zcache_reserve(&c, 2, 1, 9, CHUNK), "pinned: cannot be replaced");
	scf__zcache_put(&c, g);
	e = fill(&c, 2, 1, 9, CHUNK);
	cr_assert_not_null(e, "unpinned prefix replaced by the whole chunk");
	scf__zcache_put(&c, e);
	g = scf__zcache_get(&c, 2, 1, 9, CHUNK);
	cr_assert_not_null(g);
	cr_assert_eq(scf__zentry_valid(g), CHUNK);
	scf__zcache_put(&c, g);
	cr_assert_eq(c.used, CHUNK);
	scf__zcache_free(&c);
}

Test(zcache, off_when_budget_is_zero)
{
	scf__zcache c;
	cr_assert_eq(scf__zcache_init(&c, 0, CHUNK), 0);
	cr_assert_null(scf__zcache_reserve(&c, 0, 0, 1, CHUNK));
	cr_assert_null(scf__zcache_get(&c, 0, 0, 1, 1));
	scf__zcache_free(&c);
}

typedef struct worker_arg {
	scf__zcache *c;
	unsigned seed;
	int bad;
} worker_arg;

/* Decode-or-take loops over a small key space: bytes read are always the key's. */
static void *worker(void *p)
{
	worker_arg *w = p;
	unsigned x = w->seed;
	for (int i = 0; i < 20000; i++) {
		x = x * 1103515245u + 12345u;
		uint64_t id = (x >> 8) % 64;
		scf__zentry *e = scf__zcache_get(w->c, 0, 0, id, CHUNK);
		if (!e)
			e = fill(w->c, 0, 0, id, CHUNK);
		if (!e)
			continue;
		const uint8_t *b = scf__zentry_bytes(e);
		if (b[0] != (uint8_t)id || b[CHUNK - 1] != (uint8_t)id)
			w->bad = 1;
		scf__zcache_put(w->c, e);
	}
	return NULL;
}

Test(zcache, threads_take_and_fill_at_once)
{
	scf__zcache c;
	pthread_t t[4];
	worker_arg w[4];
	cr_assert_eq(scf__zcache_init(&c, 16 * CHUNK, CHUNK), 0);
	for (int i = 0; i < 4; i++) {
		w[i] = (worker_arg){ .c = &c, .seed = 17u * (unsigned)i + 1 };
		pthread_create(&t[i], NULL, worker, &w[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].bad, 0, "thread %d read bytes of another chunk", i);
	}
	cr_assert_leq(c.used, 16 * CHUNK);
	scf__zcache_free(&c);
}
