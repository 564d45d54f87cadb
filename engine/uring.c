/*
 * engine/uring — the io_uring backend: one ring per loader, serving every
 * file of a collection, registered as fixed files (index = file number),
 * and a wake-up eventfd polled on the same ring so that one wait covers
 * both completions and consumer events.
 * Thread: the loader's I/O thread, except uring_wake().
 */
#include "engine/io.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#ifdef SCF_SANITIZE_ADDRESS
#include <sanitizer/asan_interface.h>
#endif

#include "common/faults.h" /* last: may wrap malloc in test builds */

typedef struct uring {
	struct io_uring ring;
	int fixed;        /* 1 if the files are registered */
	int wake_fd;      /* eventfd written by other threads */
	uint64_t wake_buf;
} uring;

#define WAKE_TAG ((void *)&scf__io_uring_ops)

/* Arm a one-shot poll on the eventfd; re-armed each time it fires. */
static int arm_wake(uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, u->wake_fd, POLLIN);
	io_uring_sqe_set_data(sqe, WAKE_TAG);
	return 0;
}

static int uring_init(scf__io *io)
{
	struct io_uring_params p;
	uring *u = calloc(1, sizeof(*u));
	int rc;

	if (!u)
		return -ENOMEM;
	memset(&p, 0, sizeof(p));
	/* CQ twice the SQ: completions can never outnumber what we submit. */
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = io->depth * 2;
	u->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->wake_fd < 0) {
		rc = -errno;
		free(u);
		return rc;
	}
	rc = io_uring_queue_init_params(io->depth, &u->ring, &p);
	if (rc < 0)
		goto fail_efd;
	io->depth = p.sq_entries;
	/* Registered files save a reference count per read; plain fds still work. */
	if (io_uring_register_files(&u->ring, io->fds, io->n_fds) == 0)
		u->fixed = 1;
	rc = arm_wake(u);
	if (rc < 0)
		goto fail_ring;
	io->impl = u;
	io->queued = 1; /* the poll */
	return 0;
fail_ring:
	io_uring_queue_exit(&u->ring);
fail_efd:
	close(u->wake_fd);
	free(u);
	return rc;
}

static void uring_exit(scf__io *io)
{
	uring *u = io->impl;

	if (!u)
		return;
	io_uring_queue_exit(&u->ring);
	close(u->wake_fd);
	free(u);
	io->impl = NULL;
}

static int uring_queue(scf__io *io, scf__ioreq *rq)
{
	uring *u = io->impl;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe)
		return -EBUSY;
#ifdef SCF_SANITIZE_ADDRESS
	/* The kernel's writes bypass ASan: check the target before it goes out. */
	if (__asan_region_is_poisoned(rq->buf + rq->done, rq->len - rq->done))
		__builtin_trap();
#endif
	io_uring_prep_read(sqe, u->fixed ? (int)rq->file : io->fds[rq->file], rq->buf + rq->done,
	                   rq->len - rq->done, rq->file_off + rq->done);
	if (u->fixed)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, rq);
	return 0;
}

/*
 * Submit, then sleep in poll() on the ring until a completion is there.
 * One io_uring_enter that both submits and waits would save a syscall per
 * wait, but poll is a wait every tool understands: valgrind 3.19 takes
 * io_uring_enter for a call that never blocks and keeps its global lock
 * through it, so the decode workers could never run under it.
 */
static int uring_submit(scf__io *io, int wait)
{
	uring *u = io->impl;
	struct pollfd pfd = { .fd = u->ring.ring_fd, .events = POLLIN };
	int rc;

	do {
		rc = io_uring_submit(&u->ring);
	} while (rc == -EINTR);
	if (rc < 0)
		return rc;
	io->queued = 0;
	while (wait && io_uring_cq_ready(&u->ring) == 0) {
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			return -errno;
		if (pfd.revents & (POLLERR | POLLNVAL))
			return -EIO;
		if (pfd.revents & POLLIN)
			break;
	}
	return 0;
}

static int uring_reap(scf__io *io, scf__read_done_fn done, void *ctx)
{
	uring *u = io->impl;
	struct io_uring_cqe *cqe;
	unsigned head;
	int wakes = 0;
	struct { void *data; int res; } batch[64];
	unsigned nb;

	do {
		nb = 0;
		io_uring_for_each_cqe(&u->ring, head, cqe) {
			batch[nb].data = io_uring_cqe_get_data(cqe);
			batch[nb].res = cqe->res;
			if (++nb == 64)
				break;
		}
		io_uring_cq_advance(&u->ring, nb);
		for (unsigned i = 0; i < nb; i++) {
			if (batch[i].data == WAKE_TAG) {
				ssize_t r = read(u->wake_fd, &u->wake_buf, sizeof(u->wake_buf));
				(void)r;
				wakes++;
				if (arm_wake(u) == 0)
					io->queued++;
				continue;
			}
			scf__io_completed(io, batch[i].data, batch[i].res, done, ctx);
		}
	} while (nb == 64);
	return wakes;
}

static void uring_wake(scf__io *io)
{
	uring *u = io->impl;
	uint64_t one = 1;
	ssize_t r = write(u->wake_fd, &one, sizeof(one));
	(void)r;
}

const scf__io_ops scf__io_uring_ops = {
	.name = "io_uring",
	.init = uring_init,
	.exit = uring_exit,
	.queue = uring_queue,
	.submit = uring_submit,
	.reap = uring_reap,
	.wake = uring_wake,
};
