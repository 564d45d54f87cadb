/*
 * engine/loader — the loader's state: what the public API (loader.c, the
 * consumer's thread) resolved at open, read-only once the threads run, and
 * the parts the pipeline (pipeline.c: the I/O thread and the decode
 * workers) moves: the read backend, the producer position and the ring
 * (ring.c), which holds everything shared between threads under its lock.
 */
#ifndef SCF_ENGINE_LOADER_H
#define SCF_ENGINE_LOADER_H

#include <pthread.h>
#include <stdint.h>

#include "engine/assemble.h"
#include "engine/collection.h"
#include "engine/pinned.h"
#include "engine/plan.h"
#include "engine/sampler.h"
#include "engine/io.h"
#include "engine/ring.h"
#include "engine/zcache.h"
#include "formats/h5ad.h"
#include "scfetch.h"

struct scf_loader {
	scf_options o;             /* resolved options (defaults filled in) */
	char matrix_key[128];
	/* The files, one index space: file f holds global rows [row0[f], row0[f+1]). */
	scf__collection coll;      /* the files, one index space */
	char name[4200];           /* the file, or "first (and N more files)": for messages */
	scf__obs_col *obs;         /* n_obs requested obs columns */
	uint32_t n_obs;
	uint64_t *subset;          /* sorted rows to sample from, or NULL */
	double *weights;           /* per subset row (or row), weighted strategies */
	int weights_counted;       /* the caller's options carry n_weights */
	int32_t *col_map;          /* column selection: n_cols entries, -1 = dropped */
	scf__asm_cfg acfg;
	scf__sampler smp;          /* I/O thread */
	scf__plan_cfg pcfg;
	scf__io io;                /* the read backend: I/O thread */
	scf__pinned pin;
	scf__zcache zc;            /* decoded chunks kept across fetches */

	pthread_t io_thread;
	pthread_t *workers;
	unsigned n_workers;
	int running;               /* threads started */
	scf__ring ring;            /* slots, staging, consumer position, errors, stats */

	/* producer position (I/O thread while running) */
	uint32_t prod_epoch;
	uint64_t prod_k, prod_seq;
	uint64_t batches_per_epoch, rows_per_epoch;
};

/* pipeline.c */
int scf__pipeline_start(scf_loader *l);
void scf__pipeline_stop(scf_loader *l);
/* Frees an output arena (ctx: the loader's scf__pinned). */
void scf__arena_free(void *ctx, void *p, size_t n);

#endif
