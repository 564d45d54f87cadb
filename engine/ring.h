/*
 * engine/ring — the batch ring: the fetch slots that carry a fetch from its
 * plan to the consumer, the pool of staging buffers they borrow, the decode
 * queue, the consumer's position in the stream, the sticky error record and
 * the statistics, all under one lock.  Every change of a slot's state goes
 * through a function here, so the life of a batch reads in one file:
 *
 *   FREE -> RESERVED (I/O thread: ring_reserve, with a staging buffer)
 *        -> READING  (I/O thread: reads in flight)
 *        -> QUEUED   (ring_queue_work) -> ASSEMBLING (a worker: ring_take_work)
 *        -> READY    (ring_ready; staging back to the pool)
 *        -> FREE     (the consumer released every batch: ring_release)
 *   any -> ORPHAN    (a restart while batches are held; FREE on last release)
 *
 * A slot's other fields belong to whichever stage its state names.
 * Threads: the consumer (next, release, restart), the I/O thread, workers.
 */
#ifndef SCF_ENGINE_RING_H
#define SCF_ENGINE_RING_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/io.h"
#include "engine/plan.h"
#include "engine/sampler.h"
#include "scfetch.h"

enum scf__slot_state {
	SLOT_FREE = 0,
	SLOT_RESERVED,   /* the I/O thread is planning it */
	SLOT_READING,    /* reads in flight (I/O thread owns it) */
	SLOT_QUEUED,     /* waiting for a decode worker */
	SLOT_ASSEMBLING, /* a worker owns it */
	SLOT_READY,      /* batches can be handed out (consumer) */
	SLOT_ORPHAN      /* left from before a restart; freed on last release */
};

typedef struct scf__slot {
	int state;                 /* mu */
	uint64_t seq;              /* position in the stream of fetches */
	uint32_t epoch;
	scf__fetch_order ord;      /* rows (sorted) and delivery order */
	scf__plan plan;
	uint8_t *staging;          /* borrowed from the pool while planned .. assembled */
	size_t staging_cap;
	int has_staging;           /* mu */
	scf__ioreq *req;
	uint64_t req_cap, n_req, next_req, reads_left;
	int io_error;              /* first failed read (I/O thread) */
	scf__ioreq *bad_req;
	uint8_t *arena;
	size_t arena_cap;
	scf_batch *batch;          /* fetch_factor entries */
	uint32_t n_batch;
	uint32_t handed, held;     /* mu */
	uint8_t *out;              /* mu: fetch_factor flags, batch k handed out and held */
	struct scf__slot *next_work; /* mu: decode queue link */
} scf__slot;

typedef struct scf__ring {
	pthread_mutex_t mu;
	pthread_cond_t cv_ready;   /* consumer waits: a slot became READY, or an error */
	pthread_cond_t cv_work;    /* workers wait: decode queue */
	scf__slot *slots;
	unsigned n_slots;
	uint32_t fetch_factor;
	/* Staging is needed only from planning to the end of assembly, so a
	 * pool of fetches_in_flight buffers serves every slot; a fetch starts
	 * only when one is free.  stg[0..n_stg_free) are free. */
	struct scf__staging { uint8_t *buf; size_t cap; } *stg;
	unsigned n_stg, n_stg_free;
	scf__slot *work_head, *work_tail;
	int stop;                  /* threads are asked to end */
	/* consumer position */
	uint32_t cons_epoch;
	uint64_t cons_seq, cons_batch;
	uint64_t skip_batches;     /* batches of the first fetch to skip after a restart */
	uint64_t batches_per_epoch;
	int err;                   /* sticky first error */
	uint64_t err_seq;          /* fetch it belongs to; earlier ones still deliver */
	char errmsg[1024];
	scf_stats st;
} scf__ring;

/* Slots, their batch arrays and the staging pool's bookkeeping.  0 or -ENOMEM. */
int scf__ring_init(scf__ring *r, unsigned n_slots, unsigned n_staging, uint64_t fetch_rows,
                   uint32_t fetch_factor);
/* Frees every slot's buffers (arenas through free_arena). */
void scf__ring_free(scf__ring *r, void (*free_arena)(void *ctx, void *p, size_t n),
                    void *ctx);

/* --- threads --- */
/* Ask the threads to end (0) or let them run (1); wakes every waiter. */
void scf__ring_run(scf__ring *r, int run);
int scf__ring_stopping(scf__ring *r);

/* --- I/O thread --- */
/* Free slots for new fetches, each with a staging buffer; at most max. */
unsigned scf__ring_reserve(scf__ring *r, scf__slot **out, unsigned max);
/* Reserved slots the stream had no fetch for. */
void scf__ring_unreserve(scf__ring *r, scf__slot **s, unsigned n);
/* A planned fetch: its reads go out now; bytes counted in the statistics. */
void scf__ring_reading(scf__ring *r, scf__slot *s, uint64_t requested, uint64_t to_decode,
                       uint64_t to_read);
/* All of a fetch's bytes are in: to the decode workers. */
void scf__ring_queue_work(scf__ring *r, scf__slot *s);
/* A fetch failed (I/O thread or worker): record the error, free the slot. */
void scf__ring_fail(scf__ring *r, scf__slot *s, int code, const char *msg);
/* Record an error for fetch `seq` (first one wins) without a slot. */
void scf__ring_error(scf__ring *r, uint64_t seq, int code, const char *msg);

/* --- decode workers --- */
/* The next fetch to assemble, or NULL when the threads must end. */
scf__slot *scf__ring_take_work(scf__ring *r);
/* Its batches are in the arena: ready for the consumer. */
/* `work`: the decode counters of the assembly (bytes_decoded, decode_ns, ...). */
void scf__ring_ready(scf__ring *r, scf__slot *s, const scf_stats *work);

/* --- consumer --- */
/* The next batch in sequence, SCF_END_OF_EPOCH, or a negative code (see errmsg). */
int scf__ring_next(scf__ring *r, scf_batch **out, const char *name, const char *key);
/* 0, or -EINVAL for a batch that is not held; *wake when a slot became free. */
int scf__ring_release(scf__ring *r, scf_batch *b, int *wake);
/*
 * With the threads stopped: held slots become orphans, the others free; the
 * consumer restarts at batch `batch` of `epoch`, the next fetch to come is
 * `seq` and its first `skip` batches were consumed before.
 */
void scf__ring_restart(scf__ring *r, uint32_t epoch, uint64_t batch, uint64_t seq,
                       uint64_t skip);
/* A note in the error record that is no error (e.g. a refused release). */
void scf__ring_message(scf__ring *r, const char *msg);
/* A copy of the statistics. */
void scf__ring_stats(scf__ring *r, scf_stats *out);

#endif
