/*
 * engine/pipeline — the moving parts: one I/O thread plans fetches and keeps
 * their reads in flight through the read backend; decode workers turn
 * completed fetches into batches; the consumer (loader.c) takes them from
 * the ring (ring.c) in sequence order.
 * Threads: io_main runs on the I/O thread, work_main on each decode worker.
 */
#include "engine/loader.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/faults.h" /* last: may wrap malloc in test builds */

/* Grow a buffer to `need` bytes with a quarter of headroom; contents need not survive. */
static int ensure_buffer(uint8_t **buf, size_t *cap, size_t need,
                         void *(*alloc)(void *ctx, size_t n),
                         void (*release)(void *ctx, void *p, size_t n), void *ctx)
{
	size_t want;

	if (need <= *cap)
		return 0;
	want = (need + need / 4 + 4095) / 4096 * 4096;
	if (*buf)
		release(ctx, *buf, *cap);
	*cap = 0;
	*buf = alloc(ctx, want);
	if (!*buf)
		return -ENOMEM;
	*cap = want;
	return 0;
}

static void *pages_alloc(void *ctx, size_t n) { (void)ctx; return scf__pages_alloc(n); }
static void pages_free(void *ctx, void *p, size_t n) { (void)ctx; scf__pages_free(p, n); }
static void *arena_alloc(void *ctx, size_t n) { return scf__pinned_alloc(ctx, n); }
void scf__arena_free(void *ctx, void *p, size_t n) { scf__pinned_free(ctx, p, n); }

/* The next fetch of the stream, skipping fetches drop_last empties. */
static int next_order(scf_loader *l, scf__slot *s)
{
	/* drop_last may leave an epoch nothing to deliver: then there is no fetch
	 * at all (looping over empty epochs would never let the thread stop) */
	if (l->batches_per_epoch == 0)
		return 0;
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

/* The plan's lookup: a chunk an earlier fetch left decoded, pinned for this one. */
static void *cached_chunk(void *ctx, const scf__zchunk *z)
{
	scf_loader *l = ctx;
	return scf__zcache_get(&l->zc, z->x.file, z->ds, z->id, scf__zchunk_want(&l->acfg, z));
}

/* Unpin the cache entries a slot's plan holds (its fetch is assembled or dropped). */
static void release_holds(scf_loader *l, scf__plan *p)
{
	for (uint64_t i = 0; i < p->n_zhold; i++) {
		if (p->zhold[i])
			scf__zcache_put(&l->zc, p->zhold[i]);
		p->zhold[i] = NULL;
	}
	p->n_zhold = 0;
}

/* Plan a fetch into a reserved slot and prepare its reads. */
static int plan_slot(scf_loader *l, scf__slot *s)
{
	char msg[600];
	uint64_t to_read = 0;
	int rc;

	release_holds(l, &s->plan); /* left by a fetch dropped before its assembly */

	rc = scf__plan_build_files(&s->plan, &l->coll.files, &l->pcfg, s->ord.rows, s->ord.n);
	if (rc == 0)
		rc = ensure_buffer(&s->staging, &s->staging_cap, s->plan.staging_bytes,
		                   pages_alloc, pages_free, NULL);
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
		scf__ring_fail(&l->ring, s, rc, msg);
		return rc;
	}
	for (uint64_t i = 0; i < s->plan.n_reads; i++) {
		const scf__read *r = &s->plan.reads[i];
		s->req[i] = (scf__ioreq){ .file_off = r->file_off, .buf = s->staging + r->staging_off,
		                          .len = r->len, .need = r->need, .file = r->file,
		                          .owner = s };
		to_read += r->len;
	}
	s->n_req = s->plan.n_reads;
	s->next_req = 0;
	s->reads_left = s->n_req;
	s->io_error = 0;
	s->bad_req = NULL;
	scf__ring_reading(&l->ring, s, s->plan.bytes_requested, s->plan.bytes_decoded, to_read);
	return 0;
}

/* Hand a fetch whose bytes are all in to the decode workers. */
static void queue_for_decode(scf_loader *l, scf__slot *s)
{
	char msg[700];

	if (s->io_error) {
		scf__ioreq *rq = s->bad_req;
		const char *path = l->coll.mats[rq->file].path; /* the file the read went to */
		if (s->io_error == -ENODATA)
			snprintf(msg, sizeof(msg), "%s: %s: file truncated: the read at byte %llu "
			         "needed %u bytes and the file ended after %u", path, l->matrix_key,
			         (unsigned long long)rq->file_off, rq->need, rq->done);
		else
			snprintf(msg, sizeof(msg), "%s: %s: read of %u bytes at byte %llu failed: %s",
			         path, l->matrix_key, rq->len, (unsigned long long)rq->file_off,
			         strerror(-s->io_error));
		scf__ring_fail(&l->ring, s, s->io_error == -ENODATA ? SCF_E_CORRUPT : s->io_error,
		               msg);
		return;
	}
	scf__ring_queue_work(&l->ring, s);
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

/* Start what fetches we can, in sequence order. */
static void start_fetches(scf_loader *l, scf__slot **reading, unsigned *n_reading)
{
	scf__slot *res[64];
	unsigned n = scf__ring_reserve(&l->ring, res, 64), i;

	for (i = 0; i < n; i++) {
		if (!next_order(l, res[i]))
			break;
		if (plan_slot(l, res[i]) < 0)
			continue;
		if (res[i]->n_req == 0) {
			queue_for_decode(l, res[i]);
			continue;
		}
		reading[(*n_reading)++] = res[i];
	}
	if (i < n)
		scf__ring_unreserve(&l->ring, res + i, n - i);
}

/* Feed the backend from the oldest fetch first so batches come out in order. */
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

	while (!scf__ring_stopping(&l->ring)) {
		start_fetches(l, reading, &n_reading);
		queue_reads(l, reading, &n_reading);
		int rc = scf__io_submit(&l->io, 1);
		if (rc < 0 && rc != -EBUSY && rc != -ETIME) {
			char msg[300];
			snprintf(msg, sizeof(msg), "%s: submitting reads failed: %s", l->name,
			         strerror(-rc));
			scf__ring_error(&l->ring, l->prod_seq, rc, msg);
		}
		scf__io_reap(&l->io, on_read_done, l);
	}
	/* The kernel (or a reader thread) still writes into staging: wait for every read. */
	while (l->io.inflight > 0) {
		if (scf__io_submit(&l->io, 1) < 0)
			break;
		scf__io_reap(&l->io, on_read_done, l);
	}
	return NULL;
}

static void decode_slot(scf_loader *l, scf__slot *s, scf__scratch *sc)
{
	size_t need = scf__assemble_bytes(&l->acfg, &s->plan, s->ord.n);
	char msg[700];
	int rc = ensure_buffer(&s->arena, &s->arena_cap, need, arena_alloc, scf__arena_free,
	                       &l->pin);

	if (rc < 0) {
		snprintf(msg, sizeof(msg), "%s: %s: cannot allocate %zu bytes of output buffers",
		         l->name, l->matrix_key, need);
	} else {
		rc = scf__assemble(&l->acfg, &s->plan, &s->ord, s->staging, s->arena, s->batch,
		                   &s->n_batch, sc, msg, sizeof(msg));
	}
	release_holds(l, &s->plan);
	if (rc < 0) {
		scf__ring_fail(&l->ring, s, rc, msg);
	} else {
		scf__ring_ready(&l->ring, s, &sc->work);
		memset(&sc->work, 0, sizeof(sc->work));
	}
	scf__io_wake(&l->io); /* a staging buffer is free: the next fetch can start */
}

static void *work_main(void *arg)
{
	scf_loader *l = arg;
	scf__scratch sc;
	int ok = scf__scratch_init(&sc, &l->coll.files, scf__sampler_fetch_rows(&l->smp)) == 0;
	scf__slot *s;

	while ((s = scf__ring_take_work(&l->ring)) != NULL) {
		if (ok) {
			decode_slot(l, s, &sc);
			continue;
		}
		char msg[600];
		snprintf(msg, sizeof(msg), "%s: %s: a decode worker cannot allocate its "
		         "scratch buffers: out of memory", l->name, l->matrix_key);
		scf__ring_fail(&l->ring, s, -ENOMEM, msg);
	}
	scf__scratch_free(&sc);
	return NULL;
}

/* Ask every thread to end, wake them, and join the first n_workers workers. */
static void stop_threads(scf_loader *l, unsigned n_workers)
{
	scf__ring_run(&l->ring, 0);
	scf__io_wake(&l->io);
	pthread_join(l->io_thread, NULL);
	for (unsigned i = 0; i < n_workers; i++)
		pthread_join(l->workers[i], NULL);
}

int scf__pipeline_start(scf_loader *l)
{
	unsigned i;
	int rc;

	scf__ring_run(&l->ring, 1);
	scf__sampler_epoch(&l->smp, l->prod_epoch);
	if (l->zc.on) {
		l->pcfg.lookup = cached_chunk;
		l->pcfg.lookup_ctx = l;
		l->acfg.zc = &l->zc;
	}
	rc = -pthread_create(&l->io_thread, NULL, io_main, l);
	if (rc < 0)
		return rc;
	for (i = 0; i < l->n_workers; i++) {
		rc = -pthread_create(&l->workers[i], NULL, work_main, l);
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		stop_threads(l, i);
		return rc;
	}
	l->running = 1;
	return 0;
}

void scf__pipeline_stop(scf_loader *l)
{
	if (!l->running)
		return;
	stop_threads(l, l->n_workers);
	l->running = 0;
}
