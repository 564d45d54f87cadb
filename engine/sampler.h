/*
 * engine/sampler — which rows each fetch reads, and in which order its
 * minibatches hand them out (the scDataset method):
 *   epoch seed = seed + 1000 * epoch;
 *   BlockShuffling: contiguous blocks of block_size rows in shuffled order,
 *   the short tail block among them at a random place; drop_last instead
 *   leaves out a random remainder of rows each epoch, then cuts the blocks;
 *   BlockWeighted: each epoch draws total_size rows with probability
 *   proportional to their weights (with replacement, or without in rounds
 *   of at most the rows of positive weight, rows repeating across rounds),
 *   sorts the draw and shuffles its blocks the same way;
 *   any strategy may be restricted to a sorted subset of rows;
 *   Streaming: rows in order;
 *   the sequence is cut into fetches of batch_size * fetch_factor rows,
 *   fetch f belongs to rank f % world_size, a rank's fetches are split into
 *   contiguous ranges among its workers; each fetch is read sorted, shuffled
 *   inside (unless plain Streaming), and split into minibatches.
 * Pure computation, no I/O.  Thread: the loader's I/O thread (and tests).
 */
#ifndef SCF_ENGINE_SAMPLER_H
#define SCF_ENGINE_SAMPLER_H

#include <stdint.h>

typedef struct scf__sampler_cfg {
	uint64_t n_rows;
	const uint64_t *subset; /* sorted, unique rows to sample from (NULL: all) */
	uint64_t n_subset;
	const double *weights;  /* weighted sampling: one weight per subset row (or row) */
	uint64_t total_size;    /* weighted: rows drawn per epoch */
	int replace;            /* weighted: draw with replacement */
	int streaming;         /* 1: Streaming, 0: BlockShuffling */
	int fetch_shuffle;     /* shuffle rows inside each fetch */
	int drop_last;         /* drop tail block and short last batch */
	int even_ranks;        /* deal only full fetches, the same number to every rank */
	uint32_t batch_size, block_size, fetch_factor;
	uint64_t seed;
	uint32_t rank, world_size, worker, num_workers;
} scf__sampler_cfg;

typedef struct scf__sampler {
	scf__sampler_cfg c;
	uint64_t n_pop;         /* rows the epoch's blocks are cut from */
	uint64_t *drawn;        /* weighted: this epoch's draw, sorted (n_pop entries) */
	double *cum;            /* weighted with replacement: cumulative weights */
	double *keys;           /* weighted without replacement: scratch */
	uint64_t *idx;          /* weighted without replacement: scratch */
	uint32_t epoch;         /* epoch whose order is built */
	uint32_t *block_order;  /* BlockShuffling: slot -> block id */
	uint64_t n_blocks;      /* blocks in block_order (tail included unless dropped) */
	uint64_t tail_len;      /* rows in the short tail block, 0 if none or dropped */
	uint64_t *removed;      /* drop_last: population entries left out this epoch
	                           (a random remainder, sorted), n_removed of them */
	uint64_t n_removed, cap_removed;
	uint64_t positive;      /* weighted without replacement: rows with weight > 0 */
	uint64_t tail_slot;     /* slot holding the tail block */
	uint64_t seq_len;       /* rows in the epoch's sequence (all ranks) */
	uint64_t n_fetches;     /* fetches in the epoch (all ranks) */
	uint64_t my_first;      /* index of this worker's first fetch among the rank's */
	uint64_t my_count;      /* fetches this rank/worker reads per epoch */
	uint64_t rounds;        /* even ranks: whole rounds of full fetches */
	uint64_t tail_share;    /* even ranks: rows of each rank's run of the rest */
} scf__sampler;

/* One fetch, as the planner and the assembly stage use it. */
typedef struct scf__fetch_order {
	uint64_t global_id;  /* fetch number within the epoch (all ranks) */
	uint64_t n;          /* rows in the fetch */
	uint64_t *rows;      /* n row ids, ascending (the read order) */
	uint32_t *perm;      /* n: delivery position -> index into rows */
	uint64_t n_deliver;  /* rows delivered (n, or fewer when drop_last cuts) */
} scf__fetch_order;

/* cfg's subset and weights must outlive the sampler. */
int scf__sampler_init(scf__sampler *s, const scf__sampler_cfg *c);
void scf__sampler_free(scf__sampler *s);

/* Build the order of `epoch` (allocates nothing after the first epoch). */
int scf__sampler_epoch(scf__sampler *s, uint32_t epoch);

/* Rows in one fetch at most: batch_size * fetch_factor. */
uint64_t scf__sampler_fetch_rows(const scf__sampler *s);

/*
 * Fill *o for this worker's k-th fetch of the current epoch (k < my_count).
 * o->rows and o->perm must hold scf__sampler_fetch_rows() entries.
 */
void scf__sampler_fetch(const scf__sampler *s, uint64_t k, scf__fetch_order *o);

/* ids[0..n) = a seeded random permutation of 0..n-1 (for scf_split). */
void scf__shuffle_ids(uint64_t *ids, uint64_t n, uint64_t seed);

/* Batches and rows this worker delivers per epoch. */
void scf__sampler_counts(const scf__sampler *s, uint64_t *batches, uint64_t *rows);

#endif
