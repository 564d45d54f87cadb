/*
 * engine/preadpool — the portable backend: a few threads, each doing one
 * pread() at a time, for machines where io_uring is refused.  Requests go
 * through a queue under a mutex; results come back through another, and an
 * eventfd wakes the I/O thread for results and for consumer events alike,
 * so the pipeline above sleeps in one place whichever backend runs.
 * Threads: the loader's I/O thread (queue, submit, reap), the pool's
 * readers (reader_main), any thread (pool_wake).
 */
#include "engine/io.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/faults.h" /* last: may wrap malloc in test builds */

/* Readers: enough to keep a disk queue busy, few enough for a small machine. */
#define POOL_THREADS 8

typedef struct result {
	scf__ioreq *rq;
	int res;
} result;

typedef struct pool {
	const int *fds;
	pthread_mutex_t mu;
	pthread_cond_t cv;        /* readers wait for requests */
	scf__ioreq **todo;        /* ring of `cap` requests */
	result *done;             /* results not yet reaped */
	unsigned cap, todo_head, n_todo, n_done;
	int stop;
	unsigned n_threads;
	pthread_t threads[POOL_THREADS];
	int event_fd;             /* results and wake-ups */
	unsigned wakes;           /* mu: wake-ups not yet reported */
} pool;

static void signal_event(pool *p)
{
	uint64_t one = 1;
	ssize_t r = write(p->event_fd, &one, sizeof(one));
	(void)r;
}

static void *reader_main(void *arg)
{
	pool *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->n_todo == 0)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop)
			break;
		scf__ioreq *rq = p->todo[p->todo_head];
		p->todo_head = (p->todo_head + 1) % p->cap;
		p->n_todo--;
		pthread_mutex_unlock(&p->mu);
		ssize_t got = pread(p->fds[rq->file], rq->buf + rq->done, rq->len - rq->done,
		                    (off_t)(rq->file_off + rq->done));
		int res = got < 0 ? -errno : (int)got;
		pthread_mutex_lock(&p->mu);
		p->done[p->n_done++] = (result){ rq, res };
		signal_event(p);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void pool_stop(pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
}

static void pool_free(pool *p)
{
	free(p->todo);
	free(p->done);
	if (p->event_fd >= 0)
		close(p->event_fd);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

static int pool_init(scf__io *io)
{
	pool *p = calloc(1, sizeof(*p));
	int rc = 0;

	if (!p)
		return -ENOMEM;
	p->fds = io->fds;
	p->cap = io->depth;
	p->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->todo = calloc(p->cap, sizeof(*p->todo));
	p->done = calloc(p->cap, sizeof(*p->done));
	if (p->event_fd < 0 || !p->todo || !p->done)
		rc = p->event_fd < 0 ? -errno : -ENOMEM;
	unsigned want = io->depth - 1 < POOL_THREADS ? io->depth - 1 : POOL_THREADS;
	for (unsigned i = 0; rc == 0 && i < want; i++) {
		rc = -pthread_create(&p->threads[i], NULL, reader_main, p);
		if (rc == 0)
			p->n_threads++;
	}
	if (rc < 0) {
		pool_stop(p);
		pool_free(p);
		return rc;
	}
	io->impl = p;
	return 0;
}

static void pool_exit(scf__io *io)
{
	pool *p = io->impl;

	if (!p)
		return;
	pool_stop(p);
	pool_free(p);
	io->impl = NULL;
}

static int pool_queue(scf__io *io, scf__ioreq *rq)
{
	pool *p = io->impl;

	pthread_mutex_lock(&p->mu);
	/* room() keeps reads in flight below depth, so the ring cannot be full */
	p->todo[(p->todo_head + p->n_todo) % p->cap] = rq;
	p->n_todo++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

static int pool_submit(scf__io *io, int wait)
{
	pool *p = io->impl;
	struct pollfd pfd = { .fd = p->event_fd, .events = POLLIN };

	io->queued = 0; /* the readers took them as they came */
	while (wait) {
		pthread_mutex_lock(&p->mu);
		int ready = p->n_done > 0 || p->wakes > 0;
		pthread_mutex_unlock(&p->mu);
		if (ready)
			break;
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			return -errno;
		uint64_t v;
		ssize_t r = read(p->event_fd, &v, sizeof(v)); /* reset; state is under mu */
		(void)r;
	}
	return 0;
}

static int pool_reap(scf__io *io, scf__read_done_fn done, void *ctx)
{
	pool *p = io->impl;
	result batch[64];
	unsigned nb;
	int wakes;

	pthread_mutex_lock(&p->mu);
	wakes = (int)p->wakes;
	p->wakes = 0;
	pthread_mutex_unlock(&p->mu);
	do {
		pthread_mutex_lock(&p->mu);
		nb = p->n_done < 64 ? p->n_done : 64;
		p->n_done -= nb;
		memcpy(batch, p->done + p->n_done, nb * sizeof(*batch));
		pthread_mutex_unlock(&p->mu);
		for (unsigned i = 0; i < nb; i++)
			scf__io_completed(io, batch[i].rq, batch[i].res, done, ctx);
	} while (nb == 64);
	return wakes;
}

static void pool_wake(scf__io *io)
{
	pool *p = io->impl;

	pthread_mutex_lock(&p->mu);
	p->wakes++;
	pthread_mutex_unlock(&p->mu);
	signal_event(p);
}

const scf__io_ops scf__io_pread_ops = {
	.name = "pread threads",
	.init = pool_init,
	.exit = pool_exit,
	.queue = pool_queue,
	.submit = pool_submit,
	.reap = pool_reap,
	.wake = pool_wake,
};
