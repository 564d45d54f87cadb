/*
 * engine/loader — the loader's state, shared by the public API (loader.c,
 * the consumer's thread) and the pipeline (pipeline.c: the I/O thread and
 * the decode workers).  Everything marked "mu" is guarded by l->mu; a slot's
 * internals belong to whichever stage its state names.
 */
#ifndef SCF_ENGINE_LOADER_H
#define SCF_ENGINE_LOADER_H

#include <pthread.h>
#include <stdint.h>

#include "engine/assemble.h"
#include "engine/pinned.h"
#include "engine/plan.h"
#include "engine/sampler.h"
#include "engine/io.h"
#include "formats/h5ad.h"
#include "scfetch.h"

/* A fetch slot moves FREE -> RESERVED -> READING -> QUEUED -> ASSEMBLING -> READY -> FREE. */
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
	uint64_t seq;              /* position in the loader's stream of fetches */
	uint32_t epoch;
	scf__fetch_order ord;      /* rows (sorted) and delivery order */
	scf__plan plan;
	uint8_t *staging;          /* borrowed from the loader's pool while planned .. assembled */
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

struct scf_loader {
	scf_options o;             /* resolved options (defaults filled in) */
	char matrix_key[128];
	/* The files, one index space: file f holds global rows [row0[f], row0[f+1]). */
	uint32_t n_files;
	scf__matrix *mats;         /* n_files */
	int *fds;                  /* n_files; -1: not open */
	uint64_t *row0;            /* n_files + 1 */
	scf__files files;          /* the view plan and assembly use */
	uint64_t n_rows, n_cols, nnz; /* of the whole collection */
	int direct;                /* 1 if every file is read with O_DIRECT */
	int any_direct;            /* 1 if some file is: reads must be aligned */
	char name[4200];           /* the file, or "first (and N more files)": for messages */
	scf__obs_col *obs;         /* n_obs requested obs columns */
	uint32_t n_obs;
	uint64_t *subset;          /* sorted rows to sample from, or NULL */
	double *weights;           /* per subset row (or row), weighted strategies */
	int weights_counted;       /* the caller's options carry n_weights */
	int32_t *col_map;          /* column selection: n_cols entries, -1 = dropped */
	uint64_t skip_batches;     /* mu: batches of the first fetch to skip after a restart */
	scf__asm_cfg acfg;
	scf__sampler smp;          /* I/O thread */
	scf__plan_cfg pcfg;
	scf__io io;                /* the read backend: I/O thread */
	scf__pinned pin;

	pthread_mutex_t mu;
	pthread_cond_t cv_ready;   /* consumer waits: a slot became READY, or error */
	pthread_cond_t cv_work;    /* workers wait: decode queue */
	pthread_t io_thread;
	pthread_t *workers;
	unsigned n_workers;
	int running;               /* threads started */
	int stop;                  /* mu */

	scf__slot *slots;
	unsigned n_slots;
	/* Staging is needed only from planning to the end of assembly, so a
	 * pool of fetches_in_flight buffers serves every slot; a fetch starts
	 * only when one is free.  stg[0..n_stg_free) are free (mu). */
	struct scf__staging { uint8_t *buf; size_t cap; } *stg;
	unsigned n_stg_free;
	scf__slot *work_head, *work_tail; /* mu */

	/* producer position (I/O thread while running) */
	uint32_t prod_epoch;
	uint64_t prod_k, prod_seq;
	/* consumer position (mu) */
	uint32_t cons_epoch;
	uint64_t cons_seq, cons_batch;
	uint64_t batches_per_epoch, rows_per_epoch;

	int err;                   /* mu: sticky first error */
	uint64_t err_seq;          /* mu: fetch it belongs to; earlier ones still deliver */
	char errmsg[1024];         /* mu */

	scf_stats st;              /* mu */
};

/* collection.c: open every file (O_DIRECT where it can), describe its
 * matrix and check that all share one gene axis.  0 or a code + sentence. */
int scf__coll_open(scf_loader *l, const char *const *paths, uint32_t n, char *errbuf,
                   size_t errlen);
void scf__coll_close(scf_loader *l);
/* obs column `name` of every file, concatenated; categories mapped to the
 * union of the files' category lists. */
int scf__coll_obs_load(const scf_loader *l, scf__obs_col *c, const char *name, char *errbuf,
                       size_t errlen);

/* pipeline.c */
int scf__pipeline_start(scf_loader *l);
void scf__pipeline_stop(scf_loader *l);
/* Record an error for fetch `seq` (first one wins). Caller holds mu. */
void scf__set_error(scf_loader *l, uint64_t seq, int code, const char *msg);
/* Give a slot's borrowed staging back to the pool. Caller holds mu. */
void scf__staging_put(scf_loader *l, scf__slot *s);

#endif
