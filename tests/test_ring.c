/*
 * tests/test_ring — engine/ring on its own: slots and the staging pool they
 * borrow, delivery in sequence order whatever order fetches become ready,
 * the sticky error (earliest fetch wins, earlier fetches still deliver),
 * release rules (not held, twice, a pointer that is no batch), the
 * all-held stall, restart and orphans, and the whole cycle under threads.
 * The oracle is the sequence numbers and batch counts the test assigns.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/ring.h"

TestSuite(ring, .timeout = 60);

static void noop_free(void *ctx, void *p, size_t n) { (void)ctx; (void)p; (void)n; }

static scf__ring *ring_new(unsigned slots, unsigned staging, uint32_t ff, uint64_t bpe)
{
	scf__ring *r = calloc(1, sizeof(*r));
	cr_assert_eq(scf__ring_init(r, slots, staging, 64, ff), 0);
	r->batches_per_epoch = bpe;
	return r;
}

static void ring_del(scf__ring *r)
{
	scf__ring_free(r, noop_free, NULL);
	free(r);
}

/* A reserved slot through the whole producer side: it is READY with n batches. */
static void produce(scf__ring *r, scf__slot *s, uint64_t seq, uint32_t n)
{
	s->seq = seq;
	s->epoch = 0;
	s->n_batch = n;
	for (uint32_t k = 0; k < n; k++)
		s->batch[k].n_rows = 10 * seq + k; /* marks the batch for the consumer */
	scf__ring_reading(r, s, 100, 0, 4096);
	scf__ring_queue_work(r, s);
	scf__slot *w = scf__ring_take_work(r);
	cr_assert_eq(w, s, "the decode queue is FIFO");
	cr_assert_eq(w->state, SLOT_ASSEMBLING);
	scf_stats work = { .bytes_decoded = 0 };
	scf__ring_ready(r, w, &work);
}

Test(ring, reserve_is_bounded_by_staging)
{
	scf__ring *r = ring_new(4, 2, 2, 100);
	scf__slot *s[4];

	cr_assert_eq(scf__ring_reserve(r, s, 4), 2, "2 staging buffers: 2 fetches at once");
	cr_assert_eq(s[0]->state, SLOT_RESERVED);
	cr_assert_eq(s[0]->has_staging, 1);
	cr_assert_neq(s[0], s[1]);
	cr_assert_eq(scf__ring_reserve(r, s + 2, 4), 0);
	scf__ring_unreserve(r, s + 1, 1);
	cr_assert_eq(s[1]->state, SLOT_FREE);
	cr_assert_eq(s[1]->has_staging, 0);
	cr_assert_eq(scf__ring_reserve(r, s + 2, 4), 1);
	/* assembly hands the staging back: another fetch may start */
	produce(r, s[0], 0, 2);
	cr_assert_eq(s[0]->has_staging, 0);
	cr_assert_eq(scf__ring_reserve(r, s + 3, 4), 1);
	ring_del(r);
}

Test(ring, batches_come_in_sequence_order)
{
	scf__ring *r = ring_new(4, 3, 2, 6);
	scf__slot *s[3];
	scf_batch *b;

	cr_assert_eq(scf__ring_reserve(r, s, 3), 3);
	/* fetches become ready out of order: 2, 0, 1 */
	produce(r, s[2], 2, 2);
	produce(r, s[0], 0, 2);
	produce(r, s[1], 1, 2);
	for (uint64_t i = 0; i < 6; i++) {
		cr_assert_eq(scf__ring_next(r, &b, "f", "X"), 0, "%s", r->errmsg);
		cr_assert_eq(b->index, i);
		cr_assert_eq(b->n_rows, 10 * (i / 2) + i % 2, "batch %lu from the wrong fetch", i);
		int wake;
		cr_assert_eq(scf__ring_release(r, b, &wake), 0);
		cr_assert_eq(wake, (int)(i % 2), "a slot frees when its last batch is released");
	}
	cr_assert_eq(scf__ring_next(r, &b, "f", "X"), SCF_END_OF_EPOCH);
	cr_assert_null(b);
	cr_assert_eq(r->cons_epoch, 1);
	scf_stats st;
	scf__ring_stats(r, &st);
	cr_assert_eq(st.batches, 6);
	cr_assert_eq(st.fetches, 3);
	cr_assert_eq(st.bytes_read, 3 * 4096);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(s[i]->state, SLOT_FREE);
	ring_del(r);
}

Test(ring, error_is_sticky_and_earliest_wins)
{
	scf__ring *r = ring_new(4, 3, 1, 10);
	scf__slot *s[3];
	scf_batch *b;
	int wake;

	cr_assert_eq(scf__ring_reserve(r, s, 3), 3);
	s[1]->seq = 1;
	scf__ring_error(r, 3, -EIO, "error of fetch 3");
	scf__ring_fail(r, s[1], SCF_E_CORRUPT, "error of fetch 1");
	cr_assert_eq(s[1]->state, SLOT_FREE, "a failed fetch frees its slot");
	cr_assert_eq(s[1]->has_staging, 0);
	scf__ring_error(r, 2, -EIO, "error of fetch 2");
	cr_assert_str_eq(r->errmsg, "error of fetch 1");
	/* fetch 0 comes before the error: still delivered */
	produce(r, s[0], 0, 1);
	cr_assert_eq(scf__ring_next(r, &b, "f", "X"), 0);
	cr_assert_eq(b->n_rows, 0);
	cr_assert_eq(scf__ring_release(r, b, &wake), 0);
	cr_assert_eq(scf__ring_next(r, &b, "f", "X"), SCF_E_CORRUPT);
	cr_assert_eq(scf__ring_next(r, &b, "f", "X"), SCF_E_CORRUPT, "the error is sticky");
	/* and no new fetch starts */
	cr_assert_eq(scf__ring_reserve(r, s, 3), 0);
	ring_del(r);
}

Test(ring, release_refuses_what_is_not_held)
{
	scf__ring *r = ring_new(3, 3, 2, 100);
	scf__slot *s[1];
	scf_batch *b, stray;
	int wake;

	cr_assert_eq(scf__ring_reserve(r, s, 1), 1);
	produce(r, s[0], 0, 2);
	cr_assert_eq(scf__ring_release(r, &s[0]->batch[1], &wake), -EINVAL,
	             "batch 1 was never handed out");
	cr_assert_eq(scf__ring_release(r, &stray, &wake), -EINVAL, "not a ring batch");
	cr_assert_eq(scf__ring_next(r, &b, "f", "X"), 0);
	cr_assert_eq(b, &s[0]->batch[0]);
	cr_assert_eq(scf__ring_release(r, b, &wake), 0);
	cr_assert_eq(wake, 0, "batch 1 is still to be handed out");
	cr_assert_eq(scf__ring_release(r, b, &wake), -EINVAL, "released twice");
	cr_assert_eq(s[0]->state, SLOT_READY);
	ring_del(r);
}

/*
 * A pointer inside a batch (not at its start) is not a batch: refused, and
 * the batch it points into stays held.  (An earlier check subtracted the
 * misaligned pointer, which is undefined; gcc folded it away and released
 * batch 0.)
 */
Test(ring, release_refuses_a_pointer_inside_a_batch)
{
	scf__ring *r = ring_new(3, 3, 2, 100);
	scf__slot *s[1];
	scf_batch *b;
	int wake;

	cr_assert_eq(scf__ring_reserve(r, s, 1), 1);
	produce(r, s[0], 0, 2);
	cr_assert_eq(scf__ring_next(r, &b, "f", "X"), 0);
	scf_batch *inside = (scf_batch *)((char *)b + 8);
	cr_assert_eq(scf__ring_release(r, inside, &wake), -EINVAL, "inside a batch");
	cr_assert_eq(s[0]->held, 1, "batch 0 still held");
	cr_assert_eq(scf__ring_release(r, b, &wake), 0);
	ring_del(r);
}

Test(ring, all_held_stalls_with_a_message)
{
	scf__ring *r = ring_new(3, 3, 1, 100);
	scf__slot *s[3];
	scf_batch *b[3], *x;
	int wake;

	cr_assert_eq(scf__ring_reserve(r, s, 3), 3);
	for (int i = 0; i < 3; i++)
		produce(r, s[i], (uint64_t)i, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(scf__ring_next(r, &b[i], "file.h5ad", "X"), 0);
	cr_assert_eq(scf__ring_next(r, &x, "file.h5ad", "X"), SCF_E_BUFFERS_HELD);
	cr_assert(strstr(r->errmsg, "file.h5ad") && strstr(r->errmsg, "all 3"), "%s", r->errmsg);
	cr_assert_eq(scf__ring_release(r, b[1], &wake), 0);
	cr_assert_eq(wake, 1);
	cr_assert_eq(s[1]->state, SLOT_FREE);
	ring_del(r);
}

Test(ring, restart_orphans_held_slots)
{
	scf__ring *r = ring_new(3, 3, 2, 100);
	scf__slot *s[2];
	scf_batch *b, *first;
	int wake;

	cr_assert_eq(scf__ring_reserve(r, s, 2), 2);
	produce(r, s[0], 0, 2);
	produce(r, s[1], 1, 2);
	cr_assert_eq(scf__ring_next(r, &first, "f", "X"), 0);
	scf__ring_restart(r, 4, 7, 20, 1);
	cr_assert_eq(s[0]->state, SLOT_ORPHAN, "a batch of it is held");
	cr_assert_eq(s[1]->state, SLOT_FREE);
	cr_assert_eq(r->cons_epoch, 4);
	/* the fetch after the restart: its first batch was consumed before */
	cr_assert_eq(scf__ring_reserve(r, s + 1, 1), 1);
	produce(r, s[1], 20, 2);
	cr_assert_eq(scf__ring_next(r, &b, "f", "X"), 0);
	cr_assert_eq(b, &s[1]->batch[1], "skip_batches = 1");
	cr_assert_eq(b->index, 7);
	cr_assert_eq(scf__ring_release(r, first, &wake), 0);
	cr_assert_eq(wake, 1);
	cr_assert_eq(s[0]->state, SLOT_FREE, "the orphan frees on its last release");
	ring_del(r);
}

/* ---- the whole cycle under threads ---- */

#define N_FETCH 400
#define FF 3

typedef struct run {
	scf__ring *r;
	int bad;
} run;

static void *producer(void *arg)
{
	run *x = arg;
	uint64_t seq = 0;

	while (seq < N_FETCH) {
		scf__slot *s[4];
		unsigned n = scf__ring_reserve(x->r, s, 4);
		if (n == 0) {
			if (scf__ring_stopping(x->r))
				break;
			usleep(50);
			continue;
		}
		for (unsigned i = 0; i < n; i++) {
			if (seq == N_FETCH) {
				scf__ring_unreserve(x->r, s + i, 1);
				continue;
			}
			s[i]->seq = seq;
			s[i]->n_batch = FF;
			for (uint32_t k = 0; k < FF; k++)
				s[i]->batch[k].n_rows = seq * FF + k;
			scf__ring_reading(x->r, s[i], 1, 0, 1);
			scf__ring_queue_work(x->r, s[i]);
			seq++;
		}
	}
	return NULL;
}

static void *worker(void *arg)
{
	run *x = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	scf__slot *s;

	while ((s = scf__ring_take_work(x->r)) != NULL) {
		if (rand_r(&seed) % 3 == 0)
			usleep(rand_r(&seed) % 200); /* workers finish out of order */
		if (s->state != SLOT_ASSEMBLING)
			x->bad = 1;
		scf_stats work = { .bytes_decoded = 1 };
		scf__ring_ready(x->r, s, &work);
	}
	return NULL;
}

Test(ring, threads_deliver_every_batch_in_order)
{
	scf__ring *r = ring_new(5, 3, FF, N_FETCH * FF);
	run x = { .r = r };
	pthread_t p, w[3];
	scf_batch *held[2] = { NULL, NULL };
	int wake;

	cr_assert_eq(pthread_create(&p, NULL, producer, &x), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(pthread_create(&w[i], NULL, worker, &x), 0);
	for (uint64_t i = 0; i < N_FETCH * FF; i++) {
		scf_batch *b;
		int rc = scf__ring_next(r, &b, "f", "X");
		cr_assert_eq(rc, 0, "batch %lu: %d %s", i, rc, r->errmsg);
		cr_assert_eq(b->index, i);
		cr_assert_eq(b->n_rows, i, "batch %lu delivered out of order (got %lu)", i, b->n_rows);
		/* hold up to two batches a while, as a training loop does */
		if (held[i % 2])
			cr_assert_eq(scf__ring_release(r, held[i % 2], &wake), 0);
		held[i % 2] = b;
	}
	for (int i = 0; i < 2; i++)
		cr_assert_eq(scf__ring_release(r, held[i], &wake), 0);
	scf_batch *b;
	cr_assert_eq(scf__ring_next(r, &b, "f", "X"), SCF_END_OF_EPOCH);
	scf__ring_run(r, 0);
	pthread_join(p, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(w[i], NULL);
	cr_assert_eq(x.bad, 0, "a worker got a slot that was not ASSEMBLING");
	scf_stats st;
	scf__ring_stats(r, &st);
	cr_assert_eq(st.fetches, N_FETCH);
	cr_assert_eq(st.bytes_decoded, N_FETCH);
	ring_del(r);
}
