/*
 * engine/uring — the io_uring scheduler: one ring per loader, serving every
 * file of a collection, registered as fixed files (index = file number), a wake-up eventfd polled on the same
 * ring so that one wait covers both completions and consumer events, and
 * the retry rules (short reads continue, -EAGAIN/-EINTR resubmit, end of
 * file before the needed bytes is an error).
 * Thread: the loader's I/O thread only (scf__uring_wake: any thread).
 */
#ifndef SCF_ENGINE_URING_H
#define SCF_ENGINE_URING_H

#include <liburing.h>
#include <stdint.h>

/* One read in flight.  The owner embeds it; `done` grows with short reads. */
typedef struct scf__ioreq {
	uint64_t file_off;
	uint8_t *buf;
	uint32_t len;    /* bytes asked for */
	uint32_t need;   /* bytes that must arrive (rest may lie past EOF) */
	uint32_t done;   /* bytes arrived so far */
	uint32_t requeued;
	uint32_t file;   /* index into the ring's files */
	uint32_t _pad;
	void *owner;     /* the fetch it belongs to */
} scf__ioreq;

typedef struct scf__uring {
	struct io_uring ring;
	const int *fds;   /* the files (the caller's array, outlives the ring) */
	unsigned n_fds;
	int fixed;        /* 1 if registered as fixed files */
	int wake_fd;      /* eventfd written by other threads */
	uint64_t wake_buf;
	unsigned depth;   /* SQ entries */
	unsigned inflight;/* reads submitted and not completed */
	unsigned queued;  /* SQEs prepared and not yet submitted */
	uint64_t reads_submitted, reads_requeued;
} scf__uring;

/* Completed read (res >= 0 bytes, all `need` present) or failed one. */
typedef void (*scf__read_done_fn)(void *ctx, scf__ioreq *rq, int res);

/* A ring reading fds[0..n_fds); fds must stay valid until scf__uring_exit. */
int scf__uring_init(scf__uring *u, const int *fds, unsigned n_fds, unsigned depth);
void scf__uring_exit(scf__uring *u);

/* Free submission slots for reads (one is kept for the wake-up poll). */
unsigned scf__uring_room(const scf__uring *u);

/* Prepare a read of rq's remaining bytes; 0 or -EBUSY when the SQ is full. */
int scf__uring_queue(scf__uring *u, scf__ioreq *rq);

/* Submit prepared reads; wait for at least one event when `wait`. */
int scf__uring_submit(scf__uring *u, int wait);

/*
 * Handle every completion available: requeues short reads and -EAGAIN,
 * calls done(ctx, rq, res) with res = bytes or a negative errno once a read
 * is finished.  Returns the number of wake-ups seen (>0: a consumer event)
 * or a negative errno from the ring itself.
 */
int scf__uring_reap(scf__uring *u, scf__read_done_fn done, void *ctx);

/* Wake the I/O thread from another thread. */
void scf__uring_wake(scf__uring *u);

#endif
