/*
 * engine/sampler — the epoch's index sequence, cut into fetches.
 * Thread: the loader's I/O thread (one sampler per loader, never shared).
 */
#include "engine/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "common/checked.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

/* splitmix64: turns any seed into well-mixed state words. */
static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* xoshiro256**: fast, good enough for shuffles, reproducible everywhere. */
typedef struct rng { uint64_t s[4]; } rng;

static void rng_seed(rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
	s[2] ^= t; s[3] = rotl(s[3], 45);
	return out;
}

/* Uniform in [0, bound) without modulo bias (Lemire's method). */
static uint64_t rng_below(rng *r, uint64_t bound)
{
	__uint128_t m = (__uint128_t)rng_next(r) * bound;
	uint64_t lo = (uint64_t)m;
	if (lo < bound) {
		uint64_t thresh = -bound % bound;
		while (lo < thresh) {
			m = (__uint128_t)rng_next(r) * bound;
			lo = (uint64_t)m;
		}
	}
	return (uint64_t)(m >> 64);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static uint64_t epoch_seed(const scf__sampler *s)
{
	return s->c.seed + 1000ULL * s->epoch;
}

/* Cumulative weights for draws with replacement; -EINVAL if none is positive. */
static int build_cumulative(scf__sampler *s, uint64_t n)
{
	double total = 0;

	s->cum = scf__alloc_array(n, sizeof(double));
	if (!s->cum)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		double w = s->c.weights[i];
		if (!(w >= 0) || w == __builtin_inf())
			return -EINVAL; /* negative, NaN or infinite */
		total += w;
		s->cum[i] = total;
	}
	return total > 0 ? 0 : -EINVAL;
}

static int init_weighted(scf__sampler *s, uint64_t n)
{
	uint64_t positive = 0;

	s->n_pop = s->c.total_size ? s->c.total_size : n;
	s->drawn = scf__alloc_array(s->n_pop, sizeof(uint64_t));
	if (!s->drawn)
		return -ENOMEM;
	if (s->c.replace)
		return build_cumulative(s, n);
	for (uint64_t i = 0; i < n; i++) {
		double w = s->c.weights[i];
		if (!(w >= 0) || w == __builtin_inf())
			return -EINVAL;
		positive += w > 0;
	}
	if (positive == 0)
		return -EINVAL;
	s->positive = positive; /* more draws than this: rounds, as scDataset's sampling_size */
	s->keys = scf__alloc_array(n, sizeof(double));
	s->idx = scf__alloc_array(n, sizeof(uint64_t));
	return s->keys && s->idx ? 0 : -ENOMEM;
}

int scf__sampler_init(scf__sampler *s, const scf__sampler_cfg *c)
{
	uint64_t n = c->subset ? c->n_subset : c->n_rows;
	int rc;

	memset(s, 0, sizeof(*s));
	if (c->batch_size == 0 || c->block_size == 0 || c->fetch_factor == 0 ||
	    c->world_size == 0 || c->rank >= c->world_size || c->num_workers == 0 ||
	    c->worker >= c->num_workers)
		return -EINVAL;
	s->c = *c;
	s->n_pop = n;
	if (c->weights && (rc = init_weighted(s, n)) < 0) {
		scf__sampler_free(s);
		return rc;
	}
	if (!c->streaming) {
		uint64_t nb = s->n_pop / c->block_size + (s->n_pop % c->block_size != 0);
		if (nb > UINT32_MAX) {
			scf__sampler_free(s);
			return -EOVERFLOW;
		}
		s->block_order = scf__alloc_array(nb, sizeof(uint32_t));
		uint64_t tail = s->n_pop % c->block_size;
		if (c->drop_last && tail)
			s->removed = scf__alloc_array(tail, sizeof(uint64_t));
		if (!s->block_order || (c->drop_last && tail && !s->removed)) {
			scf__sampler_free(s);
			return -ENOMEM;
		}
	}
	s->epoch = UINT32_MAX;
	return 0;
}

void scf__sampler_free(scf__sampler *s)
{
	free(s->block_order);
	free(s->drawn);
	free(s->cum);
	free(s->keys);
	free(s->idx);
	free(s->removed);
	s->block_order = NULL;
	s->removed = NULL;
	s->drawn = s->idx = NULL;
	s->cum = s->keys = NULL;
}

/*
 * Ranks deal fetches round-robin; a rank's share is split among workers.
 * Even ranks: whole rounds of full fetches are dealt as usual; what is left
 * (the last round, short of a fetch per rank) is cut into world_size equal
 * runs of whole batches, one more fetch per rank, so every rank gets
 * floor(rows / (world_size * batch_size)) batches and fewer than
 * world_size * batch_size rows are dropped.
 */
static void assign_fetches(scf__sampler *s)
{
	const scf__sampler_cfg *c = &s->c;
	uint64_t f = s->n_fetches, fs = scf__sampler_fetch_rows(s);

	s->rounds = 0;
	s->tail_share = 0;
	if (c->even_ranks) {
		uint64_t w = c->world_size;
		s->rounds = s->seq_len / fs / w;
		uint64_t left = s->seq_len - s->rounds * w * fs;
		s->tail_share = left / (w * c->batch_size) * c->batch_size;
		f = s->rounds * w; /* the tail share is counted per rank below */
	}
	uint64_t mine = f > c->rank ? (f - c->rank + c->world_size - 1) / c->world_size : 0;
	mine += s->tail_share > 0;
	uint64_t lo = mine * c->worker / c->num_workers;
	uint64_t hi = mine * (c->worker + 1) / c->num_workers;

	s->my_first = lo;
	s->my_count = hi - lo;
}

/*
 * drop_last: `t` distinct population entries out of n, uniformly at random,
 * sorted into s->removed.  Floyd's algorithm for a few (the usual case: t <
 * block_size), selection sampling over all entries for many.
 */
static void pick_removed(scf__sampler *s, uint64_t n, uint64_t t, rng *r)
{
	uint64_t *out = s->removed, k = 0;

	if (t <= 4096) {
		for (uint64_t j = n - t; j < n; j++) {
			uint64_t v = rng_below(r, j + 1), lo = 0, hi = k;
			while (lo < hi) { /* is v taken already? the array stays sorted */
				uint64_t mid = lo + (hi - lo) / 2;
				if (out[mid] < v)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo < k && out[lo] == v) {
				v = j; /* j is larger than everything taken: append */
				lo = k;
			}
			memmove(out + lo + 1, out + lo, (k - lo) * sizeof(*out));
			out[lo] = v;
			k++;
		}
	} else {
		for (uint64_t i = 0; i < n && k < t; i++)
			if (rng_below(r, n - i) < t - k)
				out[k++] = i;
	}
	s->n_removed = t;
}

/* Population entry of the q-th entry kept after drop_last's removal. */
static uint64_t kept_entry(const scf__sampler *s, uint64_t q)
{
	/* removed[i] - i never decreases: the first i with removed[i] - i > q */
	uint64_t lo = 0, hi = s->n_removed;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (s->removed[mid] - mid > q)
			hi = mid;
		else
			lo = mid + 1;
	}
	return q + lo;
}

/*
 * Shuffle the order of blocks; the tail block lands at a random slot.
 * drop_last (as scDataset): a random remainder of the population is left
 * out this epoch, and the blocks are cut from the rest.
 */
static void build_block_order(scf__sampler *s)
{
	const scf__sampler_cfg *c = &s->c;
	uint64_t full = s->n_pop / c->block_size;
	uint64_t tail = s->n_pop % c->block_size;
	rng r;

	s->n_removed = 0;
	if (c->drop_last && tail) {
		rng_seed(&r, epoch_seed(s) ^ 0x2545f4914f6cdd1dULL);
		pick_removed(s, s->n_pop, tail, &r);
	}

	s->n_blocks = full + (tail && !c->drop_last);
	s->tail_len = c->drop_last ? 0 : tail;
	for (uint64_t i = 0; i < s->n_blocks; i++)
		s->block_order[i] = (uint32_t)i;
	rng_seed(&r, epoch_seed(s));
	for (uint64_t i = s->n_blocks; i > 1; i--) {
		uint64_t j = rng_below(&r, i);
		uint32_t t = s->block_order[i - 1];
		s->block_order[i - 1] = s->block_order[j];
		s->block_order[j] = t;
	}
	s->tail_slot = s->n_blocks; /* no tail: past the end */
	if (s->tail_len) {
		for (uint64_t i = 0; i < s->n_blocks; i++) {
			if (s->block_order[i] == full) {
				s->tail_slot = i;
				break;
			}
		}
	}
	s->seq_len = full * c->block_size + s->tail_len;
}

/* Row id of population entry i (of the entries kept, after drop_last's removal). */
static uint64_t pop_row(const scf__sampler *s, uint64_t i)
{
	if (s->n_removed)
		i = kept_entry(s, i);
	if (s->drawn)
		return s->drawn[i];
	return s->c.subset ? s->c.subset[i] : i;
}

static int cmp_key_desc(const void *a, const void *b, void *keys_p)
{
	const double *keys = keys_p;
	double x = keys[*(const uint64_t *)a], y = keys[*(const uint64_t *)b];
	return (x < y) - (x > y);
}

/*
 * This epoch's weighted draw, sorted so blocks stay contiguous on disk.
 * With replacement: inverse-CDF draws.  Without: the k largest keys
 * log(u)/w (Efraimidis-Spirakis), which is weighted sampling without
 * replacement.
 */
static void draw_weighted(scf__sampler *s)
{
	uint64_t n = s->c.subset ? s->c.n_subset : s->c.n_rows;
	rng r;

	rng_seed(&r, epoch_seed(s) ^ 0x5851f42d4c957f2dULL);
	if (s->c.replace) {
		double total = s->cum[n - 1];
		for (uint64_t k = 0; k < s->n_pop; k++) {
			double u = (double)(rng_next(&r) >> 11) * 0x1.0p-53 * total;
			uint64_t lo = 0, hi = n - 1;
			while (lo < hi) { /* first i with cum[i] > u */
				uint64_t mid = lo + (hi - lo) / 2;
				if (s->cum[mid] > u)
					hi = mid;
				else
					lo = mid + 1;
			}
			s->drawn[k] = s->c.subset ? s->c.subset[lo] : lo;
		}
	} else {
		/* Rounds of at most `positive` draws, each without replacement (rows
		 * repeat only across rounds), as scDataset's sampling_size. */
		for (uint64_t k = 0; k < s->n_pop;) {
			for (uint64_t i = 0; i < n; i++) {
				double u = ((double)(rng_next(&r) >> 11) + 0.5) * 0x1.0p-53;
				double w = s->c.weights[i];
				s->keys[i] = w > 0 ? log(u) / w : -__builtin_inf();
				s->idx[i] = i;
			}
			qsort_r(s->idx, n, sizeof(uint64_t), cmp_key_desc, s->keys);
			uint64_t take = s->n_pop - k < s->positive ? s->n_pop - k : s->positive;
			for (uint64_t j = 0; j < take; j++, k++)
				s->drawn[k] = s->c.subset ? s->c.subset[s->idx[j]] : s->idx[j];
		}
	}
	qsort(s->drawn, s->n_pop, sizeof(uint64_t), cmp_u64);
}

int scf__sampler_epoch(scf__sampler *s, uint32_t epoch)
{
	uint64_t fs = scf__sampler_fetch_rows(s);

	if (s->epoch == epoch)
		return 0;
	s->epoch = epoch;
	if (s->drawn)
		draw_weighted(s);
	if (s->c.streaming)
		s->seq_len = s->n_pop;
	else
		build_block_order(s);
	s->n_fetches = (s->seq_len + fs - 1) / fs;
	assign_fetches(s);
	return 0;
}

uint64_t scf__sampler_fetch_rows(const scf__sampler *s)
{
	return (uint64_t)s->c.batch_size * s->c.fetch_factor;
}

/* Row at position p of the epoch's sequence. */
static uint64_t row_at(const scf__sampler *s, uint64_t p)
{
	uint64_t bs = s->c.block_size, slot, off;

	if (s->c.streaming)
		return pop_row(s, p);
	if (p < s->tail_slot * bs) {
		slot = p / bs;
		off = p % bs;
	} else if (p < s->tail_slot * bs + s->tail_len) {
		slot = s->tail_slot;
		off = p - s->tail_slot * bs;
	} else {
		uint64_t q = p - (s->tail_slot * bs + s->tail_len);
		slot = s->tail_slot + 1 + q / bs;
		off = q % bs;
	}
	return pop_row(s, (uint64_t)s->block_order[slot] * bs + off);
}

/* Rows of a fetch come as runs of consecutive ids: sort only if needed. */
static void sort_rows(uint64_t *rows, uint64_t n)
{
	for (uint64_t i = 1; i < n; i++) {
		if (rows[i] < rows[i - 1]) {
			qsort(rows, n, sizeof(*rows), cmp_u64);
			return;
		}
	}
}

/* Fetch number f (among all ranks) and the positions of this rank's j-th fetch. */
static void rank_fetch(const scf__sampler *s, uint64_t j, uint64_t *f, uint64_t *p0,
                       uint64_t *n)
{
	const scf__sampler_cfg *c = &s->c;
	uint64_t fs = scf__sampler_fetch_rows(s), w = c->world_size;

	if (c->even_ranks && j == s->rounds) { /* this rank's run of the last round */
		*f = s->rounds * w + c->rank;
		*p0 = s->rounds * w * fs + c->rank * s->tail_share;
		*n = s->tail_share;
		return;
	}
	*f = c->rank + w * j;
	*p0 = *f * fs;
	*n = *p0 + fs < s->seq_len ? fs : s->seq_len - *p0;
}

void scf__sampler_fetch(const scf__sampler *s, uint64_t k, scf__fetch_order *o)
{
	const scf__sampler_cfg *c = &s->c;
	uint64_t f, p0;

	rank_fetch(s, s->my_first + k, &f, &p0, &o->n);
	o->global_id = f;
	for (uint64_t i = 0; i < o->n; i++)
		o->rows[i] = row_at(s, p0 + i);
	sort_rows(o->rows, o->n);
	for (uint64_t i = 0; i < o->n; i++)
		o->perm[i] = (uint32_t)i;
	if (c->fetch_shuffle) {
		/* Seeded by (epoch, fetch): the same on every rank and worker. */
		rng r;
		rng_seed(&r, epoch_seed(s) ^ (0xd1b54a32d192ed03ULL * (f + 1)));
		for (uint64_t i = o->n; i > 1; i--) {
			uint64_t j = rng_below(&r, i);
			uint32_t t = o->perm[i - 1];
			o->perm[i - 1] = o->perm[j];
			o->perm[j] = t;
		}
	}
	o->n_deliver = o->n;
	if (c->drop_last)
		o->n_deliver -= o->n % c->batch_size;
}

void scf__sampler_counts(const scf__sampler *s, uint64_t *batches, uint64_t *rows)
{
	uint64_t b = 0, r = 0, f, p0, n;
	uint64_t bs = s->c.batch_size;

	for (uint64_t k = 0; k < s->my_count; k++) {
		rank_fetch(s, s->my_first + k, &f, &p0, &n);
		if (s->c.drop_last)
			n -= n % bs;
		b += (n + bs - 1) / bs;
		r += n;
	}
	*batches = b;
	*rows = r;
}

void scf__shuffle_ids(uint64_t *ids, uint64_t n, uint64_t seed)
{
	rng r;

	rng_seed(&r, seed);
	for (uint64_t i = 0; i < n; i++)
		ids[i] = i;
	for (uint64_t i = n; i > 1; i--) {
		uint64_t j = rng_below(&r, i);
		uint64_t t = ids[i - 1];
		ids[i - 1] = ids[j];
		ids[j] = t;
	}
}
