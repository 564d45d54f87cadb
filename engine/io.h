/*
 * engine/io — the read backends, as a table in the manner of fio's engines:
 * io_uring (engine/uring.c), and a portable pool of pread() threads
 * (engine/preadpool.c) for machines that refuse io_uring (container seccomp
 * profiles, kernel.io_uring_disabled, old kernels).  The backend is chosen
 * at open: io_uring unless SCF_F_PREAD or SCFETCH_IO=pread asks otherwise
 * or io_uring cannot be set up; scf_io_backend() says which and why.
 *
 * A backend only moves bytes: it reads what a request still lacks and hands
 * back (request, result).  The rules of what a result means (short reads
 * continue, -EAGAIN/-EINTR resubmit, end of file before the needed bytes is
 * an error) live here, once, for both.
 * Thread: the loader's I/O thread only (scf__io_wake: any thread).
 */
#ifndef SCF_ENGINE_IO_H
#define SCF_ENGINE_IO_H

#include <stdint.h>

/* One read in flight.  The owner embeds it; `done` grows with short reads. */
typedef struct scf__ioreq {
	uint64_t file_off;
	uint8_t *buf;
	uint32_t len;    /* bytes asked for */
	uint32_t need;   /* bytes that must arrive (rest may lie past EOF) */
	uint32_t done;   /* bytes arrived so far */
	uint32_t requeued;
	uint32_t file;   /* index into the backend's files */
	uint32_t _pad;
	void *owner;     /* the fetch it belongs to */
} scf__ioreq;

/* Completed read (res >= 0 bytes, all `need` present) or failed one. */
typedef void (*scf__read_done_fn)(void *ctx, scf__ioreq *rq, int res);

typedef struct scf__io scf__io;

/* What a backend implements.  queue/submit/reap/wake as in scf__io_*. */
typedef struct scf__io_ops {
	const char *name;
	int (*init)(scf__io *io);
	void (*exit)(scf__io *io);
	/* Send a read of rq's remaining bytes (room was checked). */
	int (*queue)(scf__io *io, scf__ioreq *rq);
	int (*submit)(scf__io *io, int wait);
	/* Report each finished read to scf__io_completed(); returns wake-ups seen. */
	int (*reap)(scf__io *io, scf__read_done_fn done, void *ctx);
	void (*wake)(scf__io *io);
} scf__io_ops;

extern const scf__io_ops scf__io_uring_ops;
extern const scf__io_ops scf__io_pread_ops;

struct scf__io {
	const scf__io_ops *ops;
	const int *fds;     /* the files (the caller's array, outlives the backend) */
	unsigned n_fds;
	unsigned depth;     /* reads (plus the wake-up) the backend holds at once */
	unsigned inflight;  /* reads sent and not finished */
	unsigned queued;    /* reads prepared and not yet submitted */
	uint64_t reads_submitted, reads_requeued; /* atomics: read by scf_stats_get */
	void *impl;         /* the backend's own state */
	char why[200];      /* which backend, and why: for scf_io_backend() */
};

/*
 * Set up a backend reading fds[0..n_fds): io_uring unless want_pread, and
 * the pread pool when io_uring cannot be set up.  0 or a negative errno.
 */
int scf__io_init(scf__io *io, const int *fds, unsigned n_fds, unsigned depth, int want_pread);
void scf__io_exit(scf__io *io);

/* Free slots for reads (one is kept for the wake-up). */
unsigned scf__io_room(const scf__io *io);
/* Queue a read of rq's remaining bytes; 0 or -EBUSY when full. */
int scf__io_queue(scf__io *io, scf__ioreq *rq);
/* Submit queued reads; wait for at least one event when `wait`. */
int scf__io_submit(scf__io *io, int wait);
/*
 * Handle every event available: calls done(ctx, rq, res) once a read is
 * finished (res = bytes, or a negative errno).  Returns the wake-ups seen.
 */
int scf__io_reap(scf__io *io, scf__read_done_fn done, void *ctx);
/* Wake the I/O thread from another thread. */
void scf__io_wake(scf__io *io);

/* For backends: one raw result of a read of rq; applies the retry rules. */
void scf__io_completed(scf__io *io, scf__ioreq *rq, int res, scf__read_done_fn done,
                       void *ctx);

#endif
