/*
 * engine/ring — slots, staging pool, decode queue, consumer position, error
 * record and statistics under one lock.  Thread: any; every function takes
 * the lock itself.
 */
#include "engine/ring.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "engine/pinned.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

int scf__ring_init(scf__ring *r, unsigned n_slots, unsigned n_staging, uint64_t fetch_rows,
                   uint32_t fetch_factor)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv_ready, NULL);
	pthread_cond_init(&r->cv_work, NULL);
	r->fetch_factor = fetch_factor;
	r->n_slots = n_slots;
	r->slots = calloc(n_slots, sizeof(*r->slots));
	r->n_stg = r->n_stg_free = n_staging;
	r->stg = calloc(n_staging, sizeof(*r->stg));
	if (!r->slots || !r->stg)
		return -ENOMEM;
	for (unsigned i = 0; i < n_slots; i++) {
		scf__slot *s = &r->slots[i];
		scf__plan_init(&s->plan);
		s->ord.rows = malloc(fetch_rows * sizeof(uint64_t));
		s->ord.perm = malloc(fetch_rows * sizeof(uint32_t));
		s->batch = calloc(fetch_factor, sizeof(scf_batch));
		s->out = calloc(fetch_factor, 1);
		if (!s->ord.rows || !s->ord.perm || !s->batch || !s->out)
			return -ENOMEM;
	}
	return 0;
}

void scf__ring_free(scf__ring *r, void (*free_arena)(void *ctx, void *p, size_t n),
                    void *ctx)
{
	for (unsigned i = 0; r->slots && i < r->n_slots; i++) {
		scf__slot *s = &r->slots[i];
		free(s->ord.rows);
		free(s->ord.perm);
		free(s->batch);
		free(s->out);
		free(s->req);
		scf__plan_free(&s->plan);
		scf__pages_free(s->staging, s->staging_cap); /* borrowed when a fetch failed */
		if (s->arena)
			free_arena(ctx, s->arena, s->arena_cap);
	}
	free(r->slots);
	r->slots = NULL;
	for (unsigned i = 0; r->stg && i < r->n_stg_free; i++)
		scf__pages_free(r->stg[i].buf, r->stg[i].cap);
	free(r->stg);
	r->stg = NULL;
	pthread_cond_destroy(&r->cv_work);
	pthread_cond_destroy(&r->cv_ready);
	pthread_mutex_destroy(&r->mu);
}

/* Give a slot's borrowed staging back to the pool.  Caller holds mu. */
static void staging_put(scf__ring *r, scf__slot *s)
{
	if (!s->has_staging)
		return;
	s->has_staging = 0;
	r->stg[r->n_stg_free++] = (struct scf__staging){ s->staging, s->staging_cap };
	s->staging = NULL;
	s->staging_cap = 0;
}

/* Record an error for fetch `seq`; the first (earliest fetch) wins.  Caller holds mu. */
static void set_error(scf__ring *r, uint64_t seq, int code, const char *msg)
{
	if (r->err && r->err_seq <= seq)
		return;
	r->err = code;
	r->err_seq = seq;
	snprintf(r->errmsg, sizeof(r->errmsg), "%s", msg);
	pthread_cond_broadcast(&r->cv_ready);
}

void scf__ring_run(scf__ring *r, int run)
{
	pthread_mutex_lock(&r->mu);
	r->stop = !run;
	if (run)
		r->work_head = r->work_tail = NULL;
	pthread_cond_broadcast(&r->cv_work);
	pthread_mutex_unlock(&r->mu);
}

int scf__ring_stopping(scf__ring *r)
{
	pthread_mutex_lock(&r->mu);
	int stop = r->stop;
	pthread_mutex_unlock(&r->mu);
	return stop;
}

unsigned scf__ring_reserve(scf__ring *r, scf__slot **out, unsigned max)
{
	unsigned n = 0;

	pthread_mutex_lock(&r->mu);
	if (!r->stop && !r->err) {
		for (unsigned i = 0; i < r->n_slots && r->n_stg_free > 0 && n < max; i++) {
			scf__slot *s = &r->slots[i];
			if (s->state != SLOT_FREE)
				continue;
			s->state = SLOT_RESERVED;
			r->n_stg_free--;
			s->staging = r->stg[r->n_stg_free].buf;
			s->staging_cap = r->stg[r->n_stg_free].cap;
			s->has_staging = 1;
			out[n++] = s;
		}
	}
	pthread_mutex_unlock(&r->mu);
	return n;
}

void scf__ring_unreserve(scf__ring *r, scf__slot **s, unsigned n)
{
	pthread_mutex_lock(&r->mu);
	for (unsigned i = 0; i < n; i++) {
		staging_put(r, s[i]);
		s[i]->state = SLOT_FREE;
	}
	pthread_mutex_unlock(&r->mu);
}

void scf__ring_reading(scf__ring *r, scf__slot *s, uint64_t requested, uint64_t to_decode,
                       uint64_t to_read)
{
	pthread_mutex_lock(&r->mu);
	r->st.bytes_requested += requested;
	r->st.bytes_to_decode += to_decode;
	r->st.bytes_read += to_read;
	s->state = SLOT_READING;
	pthread_mutex_unlock(&r->mu);
}

void scf__ring_queue_work(scf__ring *r, scf__slot *s)
{
	pthread_mutex_lock(&r->mu);
	s->state = SLOT_QUEUED;
	s->next_work = NULL;
	if (r->work_tail)
		r->work_tail->next_work = s;
	else
		r->work_head = s;
	r->work_tail = s;
	pthread_cond_signal(&r->cv_work);
	pthread_mutex_unlock(&r->mu);
}

void scf__ring_fail(scf__ring *r, scf__slot *s, int code, const char *msg)
{
	pthread_mutex_lock(&r->mu);
	set_error(r, s->seq, code, msg);
	staging_put(r, s);
	s->state = SLOT_FREE;
	pthread_mutex_unlock(&r->mu);
}

void scf__ring_error(scf__ring *r, uint64_t seq, int code, const char *msg)
{
	pthread_mutex_lock(&r->mu);
	set_error(r, seq, code, msg);
	pthread_mutex_unlock(&r->mu);
}

scf__slot *scf__ring_take_work(scf__ring *r)
{
	scf__slot *s = NULL;

	pthread_mutex_lock(&r->mu);
	while (!r->stop && !r->work_head)
		pthread_cond_wait(&r->cv_work, &r->mu);
	if (!r->stop) {
		s = r->work_head;
		r->work_head = s->next_work;
		if (!r->work_head)
			r->work_tail = NULL;
		s->state = SLOT_ASSEMBLING;
	}
	pthread_mutex_unlock(&r->mu);
	return s;
}

void scf__ring_ready(scf__ring *r, scf__slot *s, const scf_stats *work)
{
	pthread_mutex_lock(&r->mu);
	staging_put(r, s);
	for (uint32_t i = 0; i < s->n_batch; i++)
		s->batch[i].epoch = s->epoch;
	r->st.bytes_decoded += work->bytes_decoded;
	r->st.decode_ns += work->decode_ns;
	r->st.assemble_ns += work->assemble_ns;
	r->st.chunks_decoded += work->chunks_decoded;
	r->st.chunk_cache_hits += work->chunk_cache_hits;
	r->st.bytes_decode_skipped += work->bytes_decode_skipped;
	r->st.fetches++;
	s->handed = s->held = 0;
	s->state = SLOT_READY;
	pthread_cond_broadcast(&r->cv_ready);
	pthread_mutex_unlock(&r->mu);
}

static scf__slot *find_seq(scf__ring *r, uint64_t seq)
{
	for (unsigned i = 0; i < r->n_slots; i++) {
		scf__slot *s = &r->slots[i];
		if (s->state == SLOT_READY && s->seq == seq)
			return s;
	}
	return NULL;
}

/* True when every slot is ready but held: the pipeline cannot move. */
static int all_held(const scf__ring *r)
{
	for (unsigned i = 0; i < r->n_slots; i++) {
		const scf__slot *s = &r->slots[i];
		if (!((s->state == SLOT_READY && s->handed == s->n_batch) || s->state == SLOT_ORPHAN))
			return 0;
	}
	return 1;
}

/* Take the next batch of slot s.  Caller holds mu. */
static scf_batch *take_batch(scf__ring *r, scf__slot *s)
{
	scf_batch *b = &s->batch[s->handed];

	s->out[s->handed++] = 1;
	s->held++;
	b->index = r->cons_batch++;
	if (s->handed == s->n_batch)
		r->cons_seq++;
	r->st.batches++;
	r->st.rows += b->n_rows;
	return b;
}

int scf__ring_next(scf__ring *r, scf_batch **out, const char *name, const char *key)
{
	uint64_t t0 = 0;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		scf__slot *s;
		if (r->cons_batch == r->batches_per_epoch) {
			r->cons_epoch++;
			r->cons_batch = 0;
			rc = SCF_END_OF_EPOCH;
			break;
		}
		if ((s = find_seq(r, r->cons_seq)) != NULL && r->skip_batches) {
			/* resuming inside this fetch: its first batches were consumed before */
			s->handed = (uint32_t)r->skip_batches;
			r->skip_batches = 0;
			if (s->handed >= s->n_batch) {
				s->handed = s->n_batch;
				r->cons_seq++;
				if (!s->held)
					s->state = SLOT_FREE;
				continue;
			}
		}
		if (s) {
			*out = take_batch(r, s);
			rc = 0;
			break;
		}
		if (r->err && r->err_seq <= r->cons_seq) {
			rc = r->err;
			break;
		}
		if (all_held(r)) {
			snprintf(r->errmsg, sizeof(r->errmsg), "%s: %s: all %u output buffers are "
			         "held by the consumer; release batches before asking for more",
			         name, key, r->n_slots);
			rc = SCF_E_BUFFERS_HELD;
			break;
		}
		if (!t0)
			t0 = scf__now_ns();
		pthread_cond_wait(&r->cv_ready, &r->mu);
	}
	if (t0) {
		uint64_t w = scf__now_ns() - t0;
		r->st.wait_ns += w;
		if (w > r->st.max_wait_ns)
			r->st.max_wait_ns = w;
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

int scf__ring_release(scf__ring *r, scf_batch *b, int *wake)
{
	int rc = -EINVAL;

	*wake = 0;
	pthread_mutex_lock(&r->mu);
	for (unsigned i = 0; i < r->n_slots; i++) {
		scf__slot *s = &r->slots[i];
		/* Compare addresses as integers: a pointer into the middle of a batch
		 * is not a batch, and pointer subtraction on it would be undefined
		 * (compilers drop a check written that way). */
		uintptr_t at = (uintptr_t)b, lo = (uintptr_t)s->batch;
		if (at < lo || at >= lo + (uintptr_t)r->fetch_factor * sizeof(*b))
			continue;
		size_t k = (at - lo) / sizeof(*b);
		if ((at - lo) % sizeof(*b) || !s->out[k] || s->held == 0)
			break; /* inside the array but not a batch, or not held */
		s->out[k] = 0;
		rc = 0;
		if (--s->held == 0 && (s->state == SLOT_ORPHAN || s->handed == s->n_batch)) {
			s->state = SLOT_FREE;
			*wake = 1;
		}
		break;
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

void scf__ring_restart(scf__ring *r, uint32_t epoch, uint64_t batch, uint64_t seq,
                       uint64_t skip)
{
	/* other threads may still release batches: change slots under the lock */
	pthread_mutex_lock(&r->mu);
	for (unsigned i = 0; i < r->n_slots; i++) {
		scf__slot *s = &r->slots[i];
		staging_put(r, s);
		s->state = s->held ? SLOT_ORPHAN : SLOT_FREE;
		s->handed = s->n_batch = 0;
	}
	r->cons_epoch = epoch;
	r->skip_batches = skip;
	r->cons_seq = seq;
	r->cons_batch = batch;
	r->err = 0;
	r->errmsg[0] = '\0';
	pthread_mutex_unlock(&r->mu);
}

void scf__ring_stats(scf__ring *r, scf_stats *out)
{
	pthread_mutex_lock(&r->mu);
	*out = r->st;
	pthread_mutex_unlock(&r->mu);
}

void scf__ring_message(scf__ring *r, const char *msg)
{
	pthread_mutex_lock(&r->mu);
	snprintf(r->errmsg, sizeof(r->errmsg), "%s", msg);
	pthread_mutex_unlock(&r->mu);
}
