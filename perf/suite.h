/*
 * perf/suite — scfetch and its alternatives on one file and one fetch
 * sequence: the shared configuration, the figures each runner returns, and
 * the runners themselves (perf/runners.c).  Every runner runs in a child
 * process of its own so that its peak RSS and CPU time are its alone.
 * Thread: each runner's child process (scfetch's pipeline threads aside).
 */
#ifndef SCF_PERF_SUITE_H
#define SCF_PERF_SUITE_H

#include <stddef.h>
#include <stdint.h>

/* One point of a sweep: the loader's options and the run's bounds. */
typedef struct suite_cfg {
	const char *path;
	const char *matrix;     /* "X" */
	const char *obs_col;    /* label whose per-batch entropy is measured */
	int stream;             /* Streaming instead of BlockShuffling */
	uint32_t batch, block, fetch;
	uint32_t inflight, qd, threads;
	uint32_t max_read, gap; /* bytes */
	uint32_t flags;         /* scfetch: extra SCF_F_* (--partial-inflate) */
	uint64_t chunk_cache;   /* scfetch: decoded-chunk cache bytes (0: default) */
	uint64_t seed;
	uint64_t max_cells;     /* rounded up to whole fetches, capped by the epoch */
	double time_limit;      /* seconds; pread/hdf5/anndata stop at the next fetch boundary */
	uint64_t warmup_cells;  /* scfetch: cells consumed before the clock starts */
	double pace_interval;   /* paced consumer: seconds between requests (0: as fast as possible) */
	int hdf5_indptr_each_fetch; /* anndata 0.8 reloads indptr on every X[idx] */
	const char *out_dir;    /* wait-time quantiles go here when set */
	const char *tag;        /* names those files */
	const char *iolog;      /* the plan writes its reads here for fio (when set) */
	const char *rows;       /* the plan writes its row sequence here (when set): per
	                           fetch u64 n, u64 n_deliver, n sorted rows; the hdf5 and
	                           anndata runners read it */
} suite_cfg;

#define SUITE_BINS 40

/* What a runner measured.  Plain data: crosses the pipe to the parent. */
typedef struct run_res {
	int ok;
	char err[400];
	double secs;              /* wall time of the measured loop */
	uint64_t cells, batches, fetches;
	uint64_t bytes_delivered; /* bytes the rows occupy in the file's dtypes */
	uint64_t bytes_read;      /* bytes the runner asked the kernel for */
	uint64_t dev_read_bytes;  /* /proc/self/io read_bytes: what the block layer fetched */
	uint64_t reads;           /* read requests */
	double amp;               /* bytes read / bytes delivered */
	double cpu_s;             /* user + system CPU of the measured loop (all threads) */
	double wait_p50, wait_p99, wait_p999, wait_max, first_wait; /* seconds */
	double steady_p99, steady_p999, steady_max; /* after the first in-flight fetches */
	double entropy;           /* mean per-batch Shannon entropy (nats) of obs_col */
	uint64_t first_fetch_hash;/* FNV-1a of the first fetch's rows in delivery order */
	uint32_t direct, pinned, cache_dropped;
	/* plan runner only */
	double entropy_random;    /* same, for truly random batches of the same size */
	double read_mean, read_median;
	double reads_per_fetch;
	uint64_t fetch_bytes_max, fetch_bytes_mean; /* delivered bytes per fetch */
	uint64_t staging_max;     /* largest fetch's staging (bytes read) */
	uint64_t arena_max;       /* largest fetch's output buffers (CSR float32/int32/int64) */
	uint64_t indptr_bytes;
	uint64_t n_rows;
	uint32_t depth_used;      /* reads the engine can keep in flight at this point */
	uint32_t n_bins;
	uint64_t bin_size[SUITE_BINS], bin_count[SUITE_BINS];
} run_res;

/*
 * Runners: fill *r (r->ok = 1 on success, else r->err).  These two use the
 * public API and the HDF5 library only (perf/runners.c); the plan and pread
 * runners need the engine's sampler and planner and live in their own
 * program, scf_baselines (perf/internal/baselines.c), which scf_suite runs.
 */
void run_scfetch(const suite_cfg *c, run_res *r);
void run_hdf5(const suite_cfg *c, run_res *r);

/* Helpers shared by the runners (perf/common.c). */
double suite_now(void);
double suite_cpu(void);
void suite_proc_io(uint64_t *rchar, uint64_t *syscr, uint64_t *read_bytes);
int suite_cmp_double(const void *a, const void *b);
/* Nearest-rank percentile of a sorted array. */
double suite_pct(const double *w, uint64_t n, double p);
/* Sort waits (seconds) and set the percentiles; writes quantiles when out_dir is set. */
void suite_waits(const suite_cfg *c, const char *runner, double *w, uint64_t n, run_res *r);
/* Waits of a synchronous loader: the first batch of a fetch waits for all of it. */
void suite_fetch_waits(double *w, uint64_t *nw, uint64_t cap, double fetch_secs,
                       uint64_t rows, uint32_t batch);
/* FNV-1a over the first fetch's row ids, in delivery order. */
#define SUITE_FNV_INIT 0xcbf29ce484222325ULL
uint64_t suite_fnv_u64(uint64_t h, uint64_t v);
/* Write all n bytes (a runner's figures down a pipe); 0 or -1. */
int suite_write_all(int fd, const void *p, size_t n);
/* Shannon entropy (nats) of one batch's labels, -1 (missing) skipped; sorts codes. */
double suite_batch_entropy(int32_t *codes, uint64_t n);

/*
 * The configuration as scf_baselines' argv: MODE PATH MATRIX OBS OUT_DIR TAG
 * IOLOG ROWS NUMS (NULL strings as ""); nums is the buffer of the last one.
 */
#define SUITE_CFG_ARGC 9
int suite_cfg_argv(const suite_cfg *c, const char *mode, char *nums, size_t nlen,
                   const char *argv[SUITE_CFG_ARGC + 1]);
int suite_cfg_parse(int argc, char **argv, suite_cfg *c);

#endif
