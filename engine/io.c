/*
 * engine/io — backend choice and the retry rules every backend shares.
 * Thread: the loader's I/O thread, except scf__io_wake().
 */
#include "engine/io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/faults.h" /* last: may wrap malloc in test builds */

int scf__io_init(scf__io *io, const int *fds, unsigned n_fds, unsigned depth, int want_pread)
{
	const char *env = getenv("SCFETCH_IO");
	int rc = 0;

	memset(io, 0, sizeof(*io));
	io->fds = fds;
	io->n_fds = n_fds;
	io->depth = depth;
	if (env && strcmp(env, "pread") == 0)
		want_pread = 1;
	if (!want_pread) {
		io->ops = &scf__io_uring_ops;
		rc = io->ops->init(io);
		if (rc == 0) {
			snprintf(io->why, sizeof(io->why), "io_uring");
			return 0;
		}
		io->depth = depth;
	}
	io->ops = &scf__io_pread_ops;
	if (want_pread)
		snprintf(io->why, sizeof(io->why), "pread threads (asked for%s)",
		         env && strcmp(env, "pread") == 0 ? " by SCFETCH_IO=pread" : "");
	else
		snprintf(io->why, sizeof(io->why), "pread threads (io_uring refused: %s)",
		         strerror(-rc));
	return io->ops->init(io);
}

void scf__io_exit(scf__io *io)
{
	if (io->ops)
		io->ops->exit(io);
	io->ops = NULL;
}

unsigned scf__io_room(const scf__io *io)
{
	/* Reads in flight are bounded by the depth, so completions never overflow. */
	unsigned used = io->inflight + io->queued + 1;
	return used >= io->depth ? 0 : io->depth - used;
}

int scf__io_queue(scf__io *io, scf__ioreq *rq)
{
	int rc;

	if (scf__io_room(io) == 0)
		return -EBUSY;
	rc = io->ops->queue(io, rq);
	if (rc < 0)
		return rc;
	io->queued++;
	io->inflight++;
	__atomic_fetch_add(&io->reads_submitted, 1, __ATOMIC_RELAXED);
	return 0;
}

int scf__io_submit(scf__io *io, int wait)
{
	return io->ops->submit(io, wait);
}

int scf__io_reap(scf__io *io, scf__read_done_fn done, void *ctx)
{
	return io->ops->reap(io, done, ctx);
}

void scf__io_wake(scf__io *io)
{
	io->ops->wake(io);
}

void scf__io_completed(scf__io *io, scf__ioreq *rq, int res, scf__read_done_fn done,
                       void *ctx)
{
	io->inflight--;
	res = SCF__FAULT_READ(rq->file, rq->file_off + rq->done, rq->len - rq->done, res);
	if (res == -EAGAIN || res == -EINTR) {
		rq->requeued++;
		__atomic_fetch_add(&io->reads_requeued, 1, __ATOMIC_RELAXED);
		goto again;
	}
	if (res < 0) {
		done(ctx, rq, res);
		return;
	}
	rq->done += (uint32_t)res;
	if (rq->done >= rq->need || rq->done == rq->len) {
		done(ctx, rq, (int)rq->done);
		return;
	}
	if (res == 0) { /* end of file before the bytes we need: truncated */
		done(ctx, rq, -ENODATA);
		return;
	}
	rq->requeued++;
	__atomic_fetch_add(&io->reads_requeued, 1, __ATOMIC_RELAXED);
again:
	if (scf__io_queue(io, rq) < 0) {
		/* No slot right now: submit what is queued and try once more. */
		scf__io_submit(io, 0);
		if (scf__io_queue(io, rq) < 0)
			done(ctx, rq, -EBUSY);
	}
}
