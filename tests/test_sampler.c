/*
 * tests/test_sampler — the scDataset sampling semantics: each epoch covers
 * every row once, blocks stay contiguous, fetches are sorted and shuffled
 * inside, seeds and epochs change the order reproducibly, ranks and workers
 * partition the epoch.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"

typedef struct epoch_rows {
	uint64_t n;          /* rows delivered */
	uint64_t *rows;      /* in delivery order */
	uint64_t n_fetch;
	uint64_t *fetch_id;  /* global id of each fetch */
	uint64_t *fetch_n;   /* rows each fetch read */
} epoch_rows;

/* Run one epoch of one rank/worker, concatenating delivered rows. */
static epoch_rows run_epoch(scf__sampler_cfg c, uint32_t epoch)
{
	scf__sampler s;
	epoch_rows e = { 0 };

	cr_assert_eq(scf__sampler_init(&s, &c), 0);
	scf__sampler_epoch(&s, epoch);
	uint64_t fs = scf__sampler_fetch_rows(&s);
	scf__fetch_order o = { .rows = malloc(fs * 8), .perm = malloc(fs * 4) };
	e.rows = malloc((c.n_rows + 1) * 8);
	e.fetch_id = malloc((s.my_count + 1) * 8);
	e.fetch_n = malloc((s.my_count + 1) * 8);
	for (uint64_t k = 0; k < s.my_count; k++) {
		scf__sampler_fetch(&s, k, &o);
		for (uint64_t i = 1; i < o.n; i++)
			cr_assert_lt(o.rows[i - 1], o.rows[i], "fetch rows must be sorted and unique");
		/* perm is a permutation of 0..n-1 */
		uint8_t *seen = calloc(o.n + 1, 1);
		for (uint64_t i = 0; i < o.n; i++) {
			cr_assert_lt(o.perm[i], o.n);
			cr_assert_eq(seen[o.perm[i]], 0);
			seen[o.perm[i]] = 1;
		}
		free(seen);
		for (uint64_t i = 0; i < o.n_deliver; i++)
			e.rows[e.n++] = o.rows[o.perm[i]];
		e.fetch_id[e.n_fetch] = o.global_id;
		e.fetch_n[e.n_fetch++] = o.n;
	}
	uint64_t nb, nr;
	scf__sampler_counts(&s, &nb, &nr);
	cr_assert_eq(nr, e.n, "counts() must agree with the fetches");
	free(o.rows);
	free(o.perm);
	scf__sampler_free(&s);
	return e;
}

static void free_epoch(epoch_rows *e)
{
	free(e->rows);
	free(e->fetch_id);
	free(e->fetch_n);
}

static scf__sampler_cfg cfg(uint64_t n, uint32_t bs, uint32_t block, uint32_t ff)
{
	return (scf__sampler_cfg){ .n_rows = n, .batch_size = bs, .block_size = block,
	                           .fetch_factor = ff, .fetch_shuffle = 1, .seed = 7,
	                           .world_size = 1, .num_workers = 1 };
}

static void assert_each_once(const epoch_rows *e, uint64_t n)
{
	uint8_t *seen = calloc(n, 1);
	cr_assert_eq(e->n, n, "epoch delivered %lu rows, expected %lu", e->n, n);
	for (uint64_t i = 0; i < e->n; i++) {
		cr_assert_lt(e->rows[i], n);
		cr_assert_eq(seen[e->rows[i]], 0, "row %lu delivered twice", e->rows[i]);
		seen[e->rows[i]] = 1;
	}
	free(seen);
}

Test(sampler, every_row_once_across_configs)
{
	const uint64_t ns[] = { 1, 7, 64, 1000, 4099 };
	const uint32_t blocks[] = { 1, 3, 16, 256, 5000 };
	const uint32_t ffs[] = { 1, 4, 16 };

	for (size_t a = 0; a < 5; a++)
		for (size_t b = 0; b < 5; b++)
			for (size_t f = 0; f < 3; f++) {
				epoch_rows e = run_epoch(cfg(ns[a], 8, blocks[b], ffs[f]), 0);
				assert_each_once(&e, ns[a]);
				free_epoch(&e);
			}
}

/*
 * With fetches a whole number of blocks and no tail, each fetch holds whole
 * blocks (a tail block shifts later blocks across fetch boundaries).
 */
Test(sampler, fetches_hold_whole_blocks)
{
	scf__sampler_cfg c = cfg(9600, 16, 32, 8); /* fetch 128 rows = 4 blocks */
	epoch_rows e = run_epoch(c, 3);
	uint64_t pos = 0;

	for (uint64_t f = 0; f < e.n_fetch; f++) {
		uint64_t *r = malloc(e.fetch_n[f] * 8);
		memcpy(r, e.rows + pos, e.fetch_n[f] * 8);
		/* count rows per block inside this fetch */
		for (uint64_t i = 0; i < e.fetch_n[f]; i++) {
			uint64_t blk = r[i] / 32, cnt = 0;
			for (uint64_t j = 0; j < e.fetch_n[f]; j++)
				cnt += r[j] / 32 == blk;
			cr_assert_eq(cnt, 32, "block %lu split across fetches", blk);
		}
		free(r);
		pos += e.fetch_n[f];
	}
	free_epoch(&e);
}

/* The within-fetch shuffle must actually move rows; streaming keeps order. */
Test(sampler, shuffle_inside_fetch_and_streaming_order)
{
	scf__sampler_cfg c = cfg(5000, 32, 4, 16);
	epoch_rows e = run_epoch(c, 0);
	uint64_t inversions = 0;
	for (uint64_t i = 1; i < e.n; i++)
		inversions += e.rows[i] < e.rows[i - 1];
	cr_assert_gt(inversions, e.n / 4, "block shuffling delivered rows nearly sorted");
	free_epoch(&e);

	c.streaming = 1;
	c.fetch_shuffle = 0;
	e = run_epoch(c, 0);
	for (uint64_t i = 0; i < e.n; i++)
		cr_assert_eq(e.rows[i], i, "streaming must deliver rows in order");
	free_epoch(&e);

	/* Streaming with shuffle: each fetch is the next range, shuffled inside. */
	c.fetch_shuffle = 1;
	e = run_epoch(c, 0);
	assert_each_once(&e, 5000);
	for (uint64_t i = 0; i < e.n; i++)
		cr_assert_eq(e.rows[i] / 512, i / 512, "row left its fetch range");
	cr_assert_neq(e.rows[0] + e.rows[1] * 7, 0 + 1 * 7);
	free_epoch(&e);
}

Test(sampler, seeds_and_epochs_reproduce_and_differ)
{
	scf__sampler_cfg c = cfg(3000, 16, 8, 4);
	epoch_rows a = run_epoch(c, 0), b = run_epoch(c, 0), d = run_epoch(c, 1);
	c.seed = 8;
	epoch_rows s = run_epoch(c, 0);

	cr_assert_eq(memcmp(a.rows, b.rows, a.n * 8), 0, "same seed and epoch must repeat");
	cr_assert_neq(memcmp(a.rows, d.rows, a.n * 8), 0, "epochs must differ");
	cr_assert_neq(memcmp(a.rows, s.rows, a.n * 8), 0, "seeds must differ");
	/* seed + 1000*epoch: (seed 7, epoch 1) equals (seed 1007, epoch 0) */
	c.seed = 1007;
	epoch_rows t = run_epoch(c, 0);
	cr_assert_eq(memcmp(d.rows, t.rows, d.n * 8), 0, "epoch seed must be seed + 1000*epoch");
	free_epoch(&a); free_epoch(&b); free_epoch(&d); free_epoch(&s); free_epoch(&t);
}

/* Ranks take fetches round-robin; workers split a rank's fetches in order. */
Test(sampler, ranks_and_workers_partition_the_epoch)
{
	const uint64_t n = 7777;
	for (uint32_t world = 1; world <= 5; world++) {
		for (uint32_t workers = 1; workers <= 3; workers++) {
			uint8_t *seen = calloc(n, 1);
			uint64_t total = 0;
			for (uint32_t r = 0; r < world; r++) {
				uint64_t prev_id = 0;
				int first = 1;
				for (uint32_t w = 0; w < workers; w++) {
					scf__sampler_cfg c = cfg(n, 10, 5, 3);
					c.rank = r;
					c.world_size = world;
					c.worker = w;
					c.num_workers = workers;
					epoch_rows e = run_epoch(c, 2);
					for (uint64_t f = 0; f < e.n_fetch; f++) {
						cr_assert_eq(e.fetch_id[f] % world, r, "fetch not round-robin");
						cr_assert(first || e.fetch_id[f] == prev_id + world,
						          "worker ranges must be contiguous");
						prev_id = e.fetch_id[f];
						first = 0;
					}
					for (uint64_t i = 0; i < e.n; i++) {
						cr_assert_eq(seen[e.rows[i]], 0, "row on two ranks/workers");
						seen[e.rows[i]] = 1;
					}
					total += e.n;
					free_epoch(&e);
				}
			}
			cr_assert_eq(total, n, "world %u workers %u lost rows", world, workers);
			free(seen);
		}
	}
}

/*
 * drop_last leaves out a random remainder (3 of 1003 rows) and any short
 * last batch; the blocks are cut from the rows kept, so a fetch's rows are
 * whole runs of those, each row at most once.
 */
Test(sampler, drop_last)
{
	scf__sampler_cfg c = cfg(1003, 10, 8, 4);
	c.drop_last = 1;
	uint8_t *seen = calloc(1003, 1);
	for (uint32_t ep = 0; ep < 3; ep++) {
		epoch_rows e = run_epoch(c, ep);
		cr_assert_eq(e.n % 10, 0, "a short batch survived drop_last");
		cr_assert_eq(e.n, 1000, "rows %lu: 125 whole blocks of 8 expected", e.n);
		memset(seen, 0, 1003);
		for (uint64_t i = 0; i < e.n; i++) {
			cr_assert_lt(e.rows[i], 1003);
			cr_assert_eq(seen[e.rows[i]], 0, "row %lu twice", e.rows[i]);
			seen[e.rows[i]] = 1;
		}
		free_epoch(&e);
	}
	/* a remainder far larger than Floyd's range: selection sampling */
	c = cfg(50000, 10, 9000, 1);
	c.drop_last = 1; /* 50000 = 5 * 9000 + 5000 left out */
	epoch_rows e = run_epoch(c, 1);
	cr_assert_eq(e.n, 45000);
	free(seen);
	seen = calloc(50000, 1);
	for (uint64_t i = 0; i < e.n; i++) {
		cr_assert_eq(seen[e.rows[i]], 0);
		seen[e.rows[i]] = 1;
	}
	free_epoch(&e);
	free(seen);
}

/* block_size 1 is true random sampling: consecutive rows rarely adjacent. */
Test(sampler, block_one_is_random)
{
	scf__sampler_cfg c = cfg(20000, 64, 1, 1);
	c.fetch_shuffle = 0;
	epoch_rows e = run_epoch(c, 0);
	/* in one sorted fetch of 64 random rows of 20000, gaps average ~300 */
	uint64_t adjacent = 0;
	for (uint64_t i = 1; i < 64; i++)
		adjacent += e.rows[i] == e.rows[i - 1] + 1;
	cr_assert_lt(adjacent, 8);
	free_epoch(&e);
}
