/*
 * engine/pipeline — the moving parts: one I/O thread plans fetches and keeps
 * their reads in flight on the ring; decode workers turn completed fetches
 * into batches; the consumer (loader.c) takes READY slots in sequence order.
 * Threads: io_main runs on the I/O thread, work_main on each decode worker.
 */
#include "engine/loader.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/faults.h" /* last: may wrap malloc in test builds */

void scf__set_error(scf_loader *l, uint64_t seq, int code, const char *msg)
{
	if (l->err && l->err_seq <= seq)
		return;
	l->err = code;
	l->err_seq = seq;
	snprintf(l->errmsg, sizeof(l->errmsg), "%s", msg);
	pthread_cond_broadcast(&l->cv_ready);
}

void scf__staging_put(scf_loader *l, scf__slot *s)
{
	if (!s->has_staging)
		return;
	s->has_staging = 0;
	l->stg[l->n_stg_free++] = (struct scf__staging){ s->staging, s->staging_cap };
	s->staging = NULL;
	s->staging_cap = 0;
}

static void fail_slot(scf_loader *l, scf__slot *s, int code, const char *msg)
{
	pthread_mutex_lock(&l->mu);
	scf__set_error(l, s->seq, code, msg);
	scf__staging_put(l, s);
	s->state = SLOT_FREE;
	pthread_mutex_unlock(&l->mu);
}

/* Grow a page-aligned staging buffer; contents need not survive. */
static int ensure_staging(scf__slot *s, size_t need)
{
	size_t cap;

	if (need <= s->staging_cap)
		return 0;
	cap = (need + need / 4 + 4095) / 4096 * 4096;
	scf__pages_free(s->staging, s->staging_cap);
	s->staging_cap = 0;
	s->staging = scf__pages_alloc(cap);
	if (!s->staging)
		return -ENOMEM;
	s->staging_cap = cap;
	return 0;
}

/* The next fetch of the stream, skipping fetches drop_last empties. */
static int next_order(scf_loader *l, scf__slot *s)
{
	for (;;) {
		if (l->prod_k == l->smp.my_count) {
			if (l->smp.my_count == 0)
				return 0;
			l->prod_epoch++;
			l->prod_k = 0;
			scf__sampler_epoch(&l->smp, l->prod_epoch);
		}
		scf__sampler_fetch(&l->smp, l->prod_k++, &s->ord);
		if (s->ord.n_deliver > 0)
			break;
	}
	s->epoch = l->prod_epoch;
	s->seq = l->prod_seq++;
	return 1;
}

/* Plan a fetch into a reserved slot and prepare its reads. */
static int plan_slot(scf_loader *l, scf__slot *s)
{
	char msg[600];
	int rc;

	rc = scf__plan_build_files(&s->plan, &l->files, &l->pcfg, s->ord.rows, s->ord.n);
	if (rc == 0)
		rc = ensure_staging(s, s->plan.staging_bytes);
	if (rc == 0 && s->plan.n_reads > s->req_cap) {
		free(s->req);
		s->req_cap = s->plan.n_reads * 2;
		s->req = malloc(s->req_cap * sizeof(*s->req));
		if (!s->req) {
			s->req_cap = 0;
			rc = -ENOMEM;
		}
	}
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "%s: %s: cannot plan a fetch of %llu rows: %s",
		         l->name, l->matrix_key, (unsigned long long)s->ord.n, scf_strerror(rc));
		fail_slot(l, s, rc, msg);
		return rc;
	}
	for (uint64_t i = 0; i < s->plan.n_reads; i++) {
		const scf__read *r = &s->plan.reads[i];
		s->req[i] = (scf__ioreq){ .file_off = r->file_off, .buf = s->staging + r->staging_off,
		                          .len = r->len, .need = r->need, .file = r->file,
		                          .owner = s };
	}
	s->n_req = s->plan.n_reads;
	s->next_req = 0;
	s->reads_left = s->n_req;
	s->io_error = 0;
	s->bad_req = NULL;
	pthread_mutex_lock(&l->mu);
	l->st.bytes_requested += s->plan.bytes_requested;
	l->st.bytes_to_decode += s->plan.bytes_decoded;
	for (uint64_t i = 0; i < s->n_req; i++)
		l->st.bytes_read += s->req[i].len;
	pthread_mutex_unlock(&l->mu);
	return 0;
}

/* Hand a fetch whose bytes are all in to the decode workers. */
static void queue_for_decode(scf_loader *l, scf__slot *s)
{
	char msg[700];

	if (s->io_error) {
		scf__ioreq *rq = s->bad_req;
		const char *path = l->mats[rq->file].path; /* the file the read went to */
		if (s->io_error == -ENODATA)
			snprintf(msg, sizeof(msg), "%s: %s: file truncated: the read at byte %llu "
			         "needed %u bytes and the file ended after %u", path, l->matrix_key,
			         (unsigned long long)rq->file_off, rq->need, rq->done);
		else
			snprintf(msg, sizeof(msg), "%s: %s: read of %u bytes at byte %llu failed: %s",
			         path, l->matrix_key, rq->len, (unsigned long long)rq->file_off,
			         strerror(-s->io_error));
		fail_slot(l, s, s->io_error == -ENODATA ? SCF_E_CORRUPT : s->io_error, msg);
		return;
	}
	pthread_mutex_lock(&l->mu);
	s->state = SLOT_QUEUED;
	s->next_work = NULL;
	if (l->work_tail)
		l->work_tail->next_work = s;
	else
		l->work_head = s;
	l->work_tail = s;
	pthread_cond_signal(&l->cv_work);
	pthread_mutex_unlock(&l->mu);
}

static void on_read_done(void *ctx, scf__ioreq *rq, int res)
{
	scf_loader *l = ctx;
	scf__slot *s = rq->owner;

	if (res < 0 && !s->io_error) {
		s->io_error = res;
		s->bad_req = rq;
	}
	if (--s->reads_left == 0)
		queue_for_decode(l, s);
}

/*
 * Reserve free slots for new fetches, each with a staging buffer from the
 * pool: at most fetches_in_flight fetches are between planning and the end
 * of their assembly.
 */
static unsigned reserve_slots(scf_loader *l, scf__slot **out)
{
	unsigned n = 0;

	pthread_mutex_lock(&l->mu);
	if (!l->stop && !l->err) {
		for (unsigned i = 0; i < l->n_slots && l->n_stg_free > 0; i++) {
			scf__slot *s = &l->slots[i];
			if (s->state != SLOT_FREE)
				continue;
			s->state = SLOT_RESERVED;
			l->n_stg_free--;
			s->staging = l->stg[l->n_stg_free].buf;
			s->staging_cap = l->stg[l->n_stg_free].cap;
			s->has_staging = 1;
			out[n++] = s;
		}
	}
	pthread_mutex_unlock(&l->mu);
	return n;
}

/* Put reserved slots back when the stream has no more fetches. */
static void unreserve(scf_loader *l, scf__slot **s, unsigned n)
{
	pthread_mutex_lock(&l->mu);
	for (unsigned i = 0; i < n; i++) {
		scf__staging_put(l, s[i]);
		s[i]->state = SLOT_FREE;
	}
	pthread_mutex_unlock(&l->mu);
}

/* Start what fetches we can, in sequence order. */
static void start_fetches(scf_loader *l, scf__slot **reading, unsigned *n_reading)
{
	scf__slot *res[64];
	unsigned n = reserve_slots(l, res), i;

	for (i = 0; i < n; i++) {
		if (!next_order(l, res[i]))
			break;
		if (plan_slot(l, res[i]) < 0)
			continue;
		pthread_mutex_lock(&l->mu);
		res[i]->state = SLOT_READING;
		pthread_mutex_unlock(&l->mu);
		if (res[i]->n_req == 0) {
			queue_for_decode(l, res[i]);
			continue;
		}
		reading[(*n_reading)++] = res[i];
	}
	if (i < n)
		unreserve(l, res + i, n - i);
}

/* Feed the ring from the oldest fetch first so batches come out in order. */
static void queue_reads(scf_loader *l, scf__slot **reading, unsigned *n_reading)
{
	unsigned keep = 0;

	for (unsigned i = 0; i < *n_reading; i++) {
		scf__slot *s = reading[i];
		while (s->next_req < s->n_req && scf__io_queue(&l->io, &s->req[s->next_req]) == 0)
			s->next_req++;
		if (s->next_req < s->n_req)
			reading[keep++] = s;
	}
	*n_reading = keep;
}

static void *io_main(void *arg)
{
	scf_loader *l = arg;
	scf__slot *reading[64];
	unsigned n_reading = 0;
	int stop = 0;

	while (!stop) {
		start_fetches(l, reading, &n_reading);
		queue_reads(l, reading, &n_reading);
		int rc = scf__io_submit(&l->io, 1);
		if (rc < 0 && rc != -EBUSY && rc != -ETIME) {
			char msg[300];
			snprintf(msg, sizeof(msg), "%s: submitting reads failed: %s", l->name,
			         strerror(-rc));
			pthread_mutex_lock(&l->mu);
			scf__set_error(l, l->prod_seq, rc, msg);
			pthread_mutex_unlock(&l->mu);
		}
		scf__io_reap(&l->io, on_read_done, l);
		pthread_mutex_lock(&l->mu);
		stop = l->stop;
		pthread_mutex_unlock(&l->mu);
	}
	/* The kernel still writes into staging: wait for every read to land. */
	while (l->io.inflight > 0) {
		if (scf__io_submit(&l->io, 1) < 0)
			break;
		scf__io_reap(&l->io, on_read_done, l);
	}
	return NULL;
}

/* Make the slot's arena big enough for its batches. */
static int ensure_arena(scf_loader *l, scf__slot *s, size_t need)
{
	size_t cap;

	if (need <= s->arena_cap)
		return 0;
	cap = (need + need / 4 + 4095) / 4096 * 4096;
	scf__pinned_free(&l->pin, s->arena, s->arena_cap);
	s->arena_cap = 0;
	s->arena = scf__pinned_alloc(&l->pin, cap);
	if (!s->arena)
		return -ENOMEM;
	s->arena_cap = cap;
	return 0;
}

static void decode_slot(scf_loader *l, scf__slot *s, scf__scratch *sc)
{
	size_t need = scf__assemble_bytes(&l->acfg, &s->plan, s->ord.n);
	char msg[700];
	int rc = ensure_arena(l, s, need);

	if (rc < 0) {
		snprintf(msg, sizeof(msg), "%s: %s: cannot allocate %zu bytes of output buffers",
		         l->name, l->matrix_key, need);
	} else {
		rc = scf__assemble(&l->acfg, &s->plan, &s->ord, s->staging, s->arena, s->batch,
		                   &s->n_batch, sc, msg, sizeof(msg));
	}
	pthread_mutex_lock(&l->mu);
	scf__staging_put(l, s);
	if (rc < 0) {
		scf__set_error(l, s->seq, rc, msg);
		s->state = SLOT_FREE;
	} else {
		for (uint32_t i = 0; i < s->n_batch; i++)
			s->batch[i].epoch = s->epoch;
		l->st.bytes_decoded += sc->decoded;
		sc->decoded = 0;
		s->handed = s->held = 0;
		s->state = SLOT_READY;
		l->st.fetches++;
		pthread_cond_broadcast(&l->cv_ready);
	}
	pthread_mutex_unlock(&l->mu);
	scf__io_wake(&l->io); /* a staging buffer is free: the next fetch can start */
}

static void *work_main(void *arg)
{
	scf_loader *l = arg;
	scf__scratch sc;
	int ok = scf__scratch_init(&sc, &l->files, scf__sampler_fetch_rows(&l->smp)) == 0;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		while (!l->stop && !l->work_head)
			pthread_cond_wait(&l->cv_work, &l->mu);
		if (l->stop)
			break;
		scf__slot *s = l->work_head;
		l->work_head = s->next_work;
		if (!l->work_head)
			l->work_tail = NULL;
		s->state = SLOT_ASSEMBLING;
		pthread_mutex_unlock(&l->mu);
		if (ok) {
			decode_slot(l, s, &sc);
		} else {
			pthread_mutex_lock(&l->mu);
			char msg[600];
			snprintf(msg, sizeof(msg), "%s: %s: a decode worker cannot allocate its "
			         "scratch buffers: out of memory", l->name, l->matrix_key);
			scf__set_error(l, s->seq, -ENOMEM, msg);
			scf__staging_put(l, s);
			s->state = SLOT_FREE;
			pthread_mutex_unlock(&l->mu);
		}
		pthread_mutex_lock(&l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	scf__scratch_free(&sc);
	return NULL;
}

int scf__pipeline_start(scf_loader *l)
{
	unsigned i;
	int rc;

	l->stop = 0;
	l->work_head = l->work_tail = NULL;
	scf__sampler_epoch(&l->smp, l->prod_epoch);
	rc = -pthread_create(&l->io_thread, NULL, io_main, l);
	if (rc < 0)
		return rc;
	for (i = 0; i < l->n_workers; i++) {
		rc = -pthread_create(&l->workers[i], NULL, work_main, l);
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		unsigned started = i;
		pthread_mutex_lock(&l->mu);
		l->stop = 1;
		pthread_cond_broadcast(&l->cv_work);
		pthread_mutex_unlock(&l->mu);
		scf__io_wake(&l->io);
		pthread_join(l->io_thread, NULL);
		for (i = 0; i < started; i++)
			pthread_join(l->workers[i], NULL);
		return rc;
	}
	l->running = 1;
	return 0;
}

void scf__pipeline_stop(scf_loader *l)
{
	if (!l->running)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = 1;
	pthread_cond_broadcast(&l->cv_work);
	pthread_mutex_unlock(&l->mu);
	scf__io_wake(&l->io);
	pthread_join(l->io_thread, NULL);
	for (unsigned i = 0; i < l->n_workers; i++)
		pthread_join(l->workers[i], NULL);
	l->running = 0;
}
