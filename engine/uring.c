/*
 * engine/uring — reads through io_uring with retries and a wake-up channel.
 * Thread: the loader's I/O thread, except scf__uring_wake().
 */
#include "engine/uring.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#ifdef SCF_SANITIZE_ADDRESS
#include <sanitizer/asan_interface.h>
#endif

#include "formats/faults.h" /* last: may wrap malloc in test builds */

#define WAKE_TAG ((void *)&scf__uring_wake)

/* Arm a one-shot poll on the eventfd; re-armed each time it fires. */
static int arm_wake(scf__uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, u->wake_fd, POLLIN);
	io_uring_sqe_set_data(sqe, WAKE_TAG);
	u->queued++;
	return 0;
}

int scf__uring_init(scf__uring *u, const int *fds, unsigned n_fds, unsigned depth)
{
	struct io_uring_params p;
	int rc;

	memset(u, 0, sizeof(*u));
	memset(&p, 0, sizeof(p));
	/* CQ twice the SQ: completions can never outnumber what we submit. */
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = depth * 2;
	u->depth = depth;
	u->fds = fds;
	u->n_fds = n_fds;
	u->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->wake_fd < 0)
		return -errno;
	rc = io_uring_queue_init_params(depth, &u->ring, &p);
	if (rc < 0)
		goto fail_efd;
	u->depth = p.sq_entries;
	/* Registered files save a reference count per read; plain fds still work. */
	if (io_uring_register_files(&u->ring, fds, n_fds) == 0)
		u->fixed = 1;
	rc = arm_wake(u);
	if (rc < 0)
		goto fail_ring;
	return 0;
fail_ring:
	io_uring_queue_exit(&u->ring);
fail_efd:
	close(u->wake_fd);
	return rc;
}

void scf__uring_exit(scf__uring *u)
{
	io_uring_queue_exit(&u->ring);
	close(u->wake_fd);
}

unsigned scf__uring_room(const scf__uring *u)
{
	/* Reads in flight are bounded by the SQ size so the CQ never overflows. */
	unsigned used = u->inflight + u->queued + 1;
	return used >= u->depth ? 0 : u->depth - used;
}

int scf__uring_queue(scf__uring *u, scf__ioreq *rq)
{
	struct io_uring_sqe *sqe;

	if (scf__uring_room(u) == 0 || !(sqe = io_uring_get_sqe(&u->ring)))
		return -EBUSY;
#ifdef SCF_SANITIZE_ADDRESS
	/* The kernel's writes bypass ASan: check the target before it goes out. */
	if (__asan_region_is_poisoned(rq->buf + rq->done, rq->len - rq->done))
		__builtin_trap();
#endif
	io_uring_prep_read(sqe, u->fixed ? (int)rq->file : u->fds[rq->file], rq->buf + rq->done,
	                   rq->len - rq->done, rq->file_off + rq->done);
	if (u->fixed)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, rq);
	u->queued++;
	u->inflight++;
	__atomic_fetch_add(&u->reads_submitted, 1, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Submit, then sleep in poll() on the ring until a completion is there.
 * One io_uring_enter that both submits and waits would save a syscall per
 * wait, but poll is a wait every tool understands: valgrind 3.19 takes
 * io_uring_enter for a call that never blocks and keeps its global lock
 * through it, so the decode workers could never run under it.
 */
int scf__uring_submit(scf__uring *u, int wait)
{
	struct pollfd pfd = { .fd = u->ring.ring_fd, .events = POLLIN };
	int rc;

	do {
		rc = io_uring_submit(&u->ring);
	} while (rc == -EINTR);
	if (rc < 0)
		return rc;
	u->queued = 0;
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

/* Decide what a completion means for its read. */
static void complete_read(scf__uring *u, scf__ioreq *rq, int res,
                          scf__read_done_fn done, void *ctx)
{
	u->inflight--;
	res = SCF__FAULT_READ(rq->file, rq->file_off + rq->done, rq->len - rq->done, res);
	if (res == -EAGAIN || res == -EINTR) {
		rq->requeued++;
		__atomic_fetch_add(&u->reads_requeued, 1, __ATOMIC_RELAXED);
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
	__atomic_fetch_add(&u->reads_requeued, 1, __ATOMIC_RELAXED);
again:
	if (scf__uring_queue(u, rq) < 0) {
		/* No SQE right now: submit what is queued and try once more. */
		scf__uring_submit(u, 0);
		if (scf__uring_queue(u, rq) < 0)
			done(ctx, rq, -EBUSY);
	}
}

int scf__uring_reap(scf__uring *u, scf__read_done_fn done, void *ctx)
{
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
				arm_wake(u);
				continue;
			}
			complete_read(u, batch[i].data, batch[i].res, done, ctx);
		}
	} while (nb == 64);
	return wakes;
}

void scf__uring_wake(scf__uring *u)
{
	uint64_t one = 1;
	ssize_t r = write(u->wake_fd, &one, sizeof(one));
	(void)r;
}
