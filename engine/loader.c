/*
 * engine/loader — the public API: options, open, next/release, epochs,
 * statistics, close.  Thread: the consumer's (any one thread at a time per
 * loader); it meets the pipeline only through the ring (ring.c).
 */
#include "engine/loader.h"
#include "common/codecs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "common/checked.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

unsigned scf_version(void)
{
	return SCF_VERSION_NUMBER;
}

static int bad_option(char *errbuf, size_t errlen, const char *path, const char *fmt, ...)
{
	char what[300], full[340];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "invalid options: %s", what);
	if (errbuf)
		scf__path_msg(errbuf, errlen, path, full);
	return -EINVAL;
}

#define DEFAULT(field, value) do { if (!o->field) o->field = (value); } while (0)
static int outside(uint64_t v, uint64_t lo, uint64_t hi)
{
	return v < lo || v > hi;
}

#define BOUND(field, lo, hi) do { \
	if (outside(o->field, (lo), (hi))) \
		return bad_option(errbuf, errlen, path, #field " = %llu outside [%llu, %llu]", \
		                  (unsigned long long)o->field, (unsigned long long)(lo), \
		                  (unsigned long long)(hi)); \
	} while (0)

/* Fill defaults, then check every field against its documented bounds. */
static int resolve_options(scf_options *o, const scf_options *in, const char *path,
                           int *counted, char *errbuf, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	/* a caller that knows n_weights must set it; older ones are trusted */
	*counted = in && in->size >= offsetof(scf_options, n_weights) + sizeof(in->n_weights);
	if (in) {
		/* the first version's struct ended after `allocator` */
		if (in->size < offsetof(scf_options, allocator) + sizeof(scf_allocator) ||
		    in->size > sizeof(*in))
			return bad_option(errbuf, errlen, path,
			                  "size = %u; set it to sizeof(scf_options)", in->size);
		memcpy(o, in, in->size);
		for (size_t i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
			if (o->reserved[i])
				return bad_option(errbuf, errlen, path, "reserved[%zu] is not 0", i);
	}
	if (o->flags & ~SCF_F__ALL)
		return bad_option(errbuf, errlen, path, "unknown flags 0x%x", o->flags & ~SCF_F__ALL);
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	DEFAULT(matrix, "X");
	DEFAULT(strategy, SCF_STRATEGY_BLOCK_SHUFFLING);
	DEFAULT(batch_size, 64);
	DEFAULT(block_size, 16);
	DEFAULT(fetch_factor, 16);
	DEFAULT(world_size, 1);
	DEFAULT(num_workers, 1);
	DEFAULT(fetches_in_flight, 3);
	DEFAULT(queue_depth, 128);
	DEFAULT(max_read, 1u << 20);
	DEFAULT(coalesce_gap, 32u << 10);
	DEFAULT(threads, cores > 0 ? (uint32_t)cores : 1);
	BOUND(strategy, 1, 4);
	BOUND(fetch_shuffle, 0, 2);
	BOUND(output, 0, 1);
	BOUND(batch_size, 1, 1u << 20);
	BOUND(block_size, 1, 1u << 30);
	BOUND(fetch_factor, 1, 1u << 16);
	BOUND(rank, 0, o->world_size - 1);
	BOUND(worker, 0, o->num_workers - 1);
	BOUND(fetches_in_flight, 1, 64);
	BOUND(queue_depth, 4, 4096);
	BOUND(max_read, 4096, 64u << 20);
	BOUND(threads, 1, 256);
	BOUND(n_obs, 0, 64);
	BOUND(total_size, 0, SCF_MAX_TOTAL_SIZE);
	if (!(o->normalize_total >= 0) || o->normalize_total > 1e30)
		return bad_option(errbuf, errlen, path, "normalize_total = %g; a target sum "
		                  "> 0 (or 0 for none)", o->normalize_total);
	if (strlen(o->matrix) >= sizeof(((scf_loader *)0)->matrix_key))
		return bad_option(errbuf, errlen, path, "matrix key of %zu bytes, longer than "
		                  "the %zu this library accepts", strlen(o->matrix),
		                  sizeof(((scf_loader *)0)->matrix_key) - 1);
	if (o->n_weights && !o->weights)
		return bad_option(errbuf, errlen, path, "n_weights = %llu but weights is NULL",
		                  (unsigned long long)o->n_weights);
	if (o->strategy == SCF_STRATEGY_BLOCK_WEIGHTED && !o->weights)
		return bad_option(errbuf, errlen, path, "BLOCK_WEIGHTED needs weights");
	if (o->strategy == SCF_STRATEGY_CLASS_BALANCED && !o->balance_obs)
		return bad_option(errbuf, errlen, path, "CLASS_BALANCED needs balance_obs");
	if (o->weights && o->strategy != SCF_STRATEGY_BLOCK_WEIGHTED)
		return bad_option(errbuf, errlen, path, "weights are for BLOCK_WEIGHTED only");
	if (o->n_indices && !o->indices)
		return bad_option(errbuf, errlen, path, "n_indices = %llu but indices is NULL",
		                  (unsigned long long)o->n_indices);
	if (o->n_columns && !o->columns)
		return bad_option(errbuf, errlen, path, "n_columns = %u but columns is NULL",
		                  o->n_columns);
	if (o->n_obs && !o->obs)
		return bad_option(errbuf, errlen, path, "n_obs = %u but obs is NULL", o->n_obs);
	if ((uint64_t)o->batch_size * o->fetch_factor > UINT32_MAX)
		return bad_option(errbuf, errlen, path, "batch_size * fetch_factor exceeds 2^32");
	if (o->max_read % 4096)
		return bad_option(errbuf, errlen, path, "max_read must be a multiple of 4096");
	if (!o->fetch_shuffle)
		o->fetch_shuffle = o->strategy == SCF_STRATEGY_STREAMING ? SCF_FETCH_SHUFFLE_OFF
		                                                          : SCF_FETCH_SHUFFLE_ON;
	if ((o->allocator.alloc == NULL) != (o->allocator.free == NULL))
		return bad_option(errbuf, errlen, path, "allocator needs both alloc and free");
	return 0;
}

/* Requested obs columns, read whole at open. */
static int load_obs(scf_loader *l, const char *path, char *errbuf, size_t errlen)
{
	l->obs = calloc(l->o.n_obs ? l->o.n_obs : 1, sizeof(*l->obs));
	if (!l->obs)
		return -ENOMEM;
	for (uint32_t i = 0; i < l->o.n_obs; i++) {
		int rc;
		if (!l->o.obs[i]) {
			snprintf(errbuf, errlen, "%s: invalid options: obs[%u] is NULL", path, i);
			return -EINVAL;
		}
		rc = scf__coll_obs_load(&l->coll, &l->obs[i], l->o.obs[i], errbuf, errlen);
		if (rc < 0)
			return rc;
		l->n_obs = i + 1;
	}
	return 0;
}

static void free_obs(scf_loader *l)
{
	for (uint32_t i = 0; l->obs && i < l->n_obs; i++)
		scf__obs_free(&l->obs[i]);
	free(l->obs);
	l->obs = NULL;
}

int scf_obs_categories(const scf_loader *l, uint32_t column, const char *const **names,
                       uint64_t *n)
{
	if (!l || column >= l->n_obs || !names || !n)
		return -EINVAL;
	if (l->obs[column].kind != SCF__OBS_CATEGORICAL) {
		*names = NULL;
		*n = 0;
		return 0;
	}
	*names = (const char *const *)l->obs[column].categories;
	*n = l->obs[column].n_categories;
	return 0;
}

int scf_obs_kind(const scf_loader *l, uint32_t column, uint32_t *kind)
{
	if (!l || column >= l->n_obs || !kind)
		return -EINVAL;
	*kind = (uint32_t)l->obs[column].kind;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* The rows to sample from, sorted for I/O, each valid and given once. */
static int prepare_subset(scf_loader *l, const char *path, char *errbuf, size_t errlen)
{
	uint64_t n = l->o.n_indices;

	if (n > l->coll.n_rows) {
		snprintf(errbuf, errlen, "%s: invalid options: n_indices = %llu, more than the "
		         "%llu rows", path, (unsigned long long)n, (unsigned long long)l->coll.n_rows);
		return -EINVAL;
	}
	l->subset = scf__alloc_array(n, sizeof(uint64_t));
	if (!l->subset)
		return -ENOMEM;
	memcpy(l->subset, l->o.indices, n * sizeof(uint64_t));
	qsort(l->subset, n, sizeof(uint64_t), cmp_u64);
	for (uint64_t i = 0; i < n; i++) {
		if (l->subset[i] >= l->coll.n_rows || (i && l->subset[i] == l->subset[i - 1])) {
			snprintf(errbuf, errlen, "%s: invalid options: indices holds row %llu %s",
			         path, (unsigned long long)l->subset[i],
			         l->subset[i] >= l->coll.n_rows ? "past the last row" : "twice");
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * Per-row weights in subset order.  With indices, the caller's weights are
 * either one per entry of indices (permuted with the sort) or, as scDataset
 * allows, one per row of the matrix (n_weights = rows; picked by the subset).
 */
static int prepare_weights(scf_loader *l, const char *path, char *errbuf, size_t errlen)
{
	uint64_t n = l->o.indices ? l->o.n_indices : l->coll.n_rows;
	/* per entry of indices wins when both counts agree (a permutation of all rows) */
	int per_row = l->o.indices && l->weights_counted && l->o.n_weights != n &&
	              l->o.n_weights == l->coll.n_rows;

	if (l->weights_counted && l->o.n_weights != n && !per_row) {
		if (l->o.indices)
			snprintf(errbuf, errlen, "%s: invalid options: n_weights = %llu but there are "
			         "%llu entries in indices and %llu rows (weights are one per entry of "
			         "indices, or one per row)", path, (unsigned long long)l->o.n_weights,
			         (unsigned long long)n, (unsigned long long)l->coll.n_rows);
		else
			snprintf(errbuf, errlen, "%s: invalid options: n_weights = %llu but there are "
			         "%llu rows", path, (unsigned long long)l->o.n_weights,
			         (unsigned long long)n);
		return -EINVAL;
	}
	l->weights = scf__alloc_array(n, sizeof(double));
	if (!l->weights)
		return -ENOMEM;
	if (!l->o.indices) {
		memcpy(l->weights, l->o.weights, n * sizeof(double));
		return 0;
	}
	if (per_row) {
		for (uint64_t i = 0; i < n; i++)
			l->weights[i] = l->o.weights[l->subset[i]];
		return 0;
	}
	uint64_t *order = scf__alloc_array(n, 2 * sizeof(uint64_t));
	if (!order)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) { /* (row, position) pairs sorted by row */
		order[2 * i] = l->o.indices[i];
		order[2 * i + 1] = i;
	}
	qsort(order, n, 2 * sizeof(uint64_t), cmp_u64);
	for (uint64_t i = 0; i < n; i++)
		l->weights[i] = l->o.weights[order[2 * i + 1]];
	free(order);
	return 0;
}

/* Sorted copy of the class of every row to sample, for counting. */
static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Rows of class v among the sorted classes: two binary searches. */
static uint64_t class_size(const int64_t *sorted, uint64_t n, int64_t v)
{
	uint64_t lo = 0, hi = n, first;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (sorted[mid] < v) lo = mid + 1; else hi = mid;
	}
	first = lo;
	hi = n;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (sorted[mid] <= v) lo = mid + 1; else hi = mid;
	}
	return lo - first;
}

/*
 * Class-balanced weights: 1 / (rows of the class in the whole column), as
 * scDataset counts them, or among the rows sampled with
 * SCF_F_BALANCE_SUBSET.  A categorical column's classes are its codes, and
 * code -1 (missing) gets weight 0; an integer column's classes are its
 * values, whatever they are (sorting, not a table indexed by value:
 * INT64_MIN and 2^40 cost nothing).
 */
static int balance_weights(scf_loader *l, const char *path, char *errbuf, size_t errlen)
{
	uint64_t n = l->subset ? l->o.n_indices : l->coll.n_rows;
	int whole = l->subset && !(l->o.flags & SCF_F_BALANCE_SUBSET);
	uint64_t n_count = whole ? l->coll.n_rows : n;
	scf__obs_col col;
	int64_t *sorted;
	int rc = scf__coll_obs_load(&l->coll, &col, l->o.balance_obs, errbuf, errlen);

	if (rc < 0)
		return rc;
	if (col.kind == SCF__OBS_FLOAT) {
		snprintf(errbuf, errlen, "%s: obs/%s: a float column cannot name classes for "
		         "CLASS_BALANCED; use a categorical or integer column", path, col.name);
		scf__obs_free(&col);
		return -EINVAL;
	}
	sorted = scf__alloc_array(n_count, sizeof(int64_t));
	l->weights = scf__alloc_array(n, sizeof(double));
	if (!sorted || !l->weights) {
		free(sorted);
		scf__obs_free(&col);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < n_count; i++)
		sorted[i] = scf__obs_word(&col, l->subset && !whole ? l->subset[i] : i);
	qsort(sorted, n_count, sizeof(int64_t), cmp_i64);
	for (uint64_t i = 0; i < n; i++) {
		int64_t c = scf__obs_word(&col, l->subset ? l->subset[i] : i);
		int missing = col.kind == SCF__OBS_CATEGORICAL && c < 0;
		l->weights[i] = missing ? 0.0 : 1.0 / (double)class_size(sorted, n_count, c);
	}
	free(sorted);
	scf__obs_free(&col);
	return 0;
}

/* Column selection: old column -> new column, -1 for dropped columns. */
static int prepare_columns(scf_loader *l, const char *path, char *errbuf, size_t errlen)
{
	l->col_map = scf__alloc_array(l->coll.n_cols, sizeof(int32_t));
	if (!l->col_map)
		return -ENOMEM;
	memset(l->col_map, 0xff, l->coll.n_cols * sizeof(int32_t));
	for (uint32_t i = 0; i < l->o.n_columns; i++) {
		int32_t c = l->o.columns[i];
		if (c < 0 || (uint64_t)c >= l->coll.n_cols || l->col_map[c] >= 0) {
			snprintf(errbuf, errlen, "%s: invalid options: columns[%u] = %d is %s", path,
			         i, c, c < 0 || (uint64_t)c >= l->coll.n_cols ? "outside the matrix"
			                                               : "given twice");
			return -EINVAL;
		}
		l->col_map[c] = (int32_t)i;
	}
	return 0;
}

/* Subsets, weights and column selections, checked and copied at open. */
static int prepare_selection(scf_loader *l, const char *path, char *errbuf, size_t errlen)
{
	int rc = 0;

	if (l->o.indices)
		rc = prepare_subset(l, path, errbuf, errlen);
	if (rc == 0 && l->o.weights)
		rc = prepare_weights(l, path, errbuf, errlen);
	if (rc == 0 && l->o.strategy == SCF_STRATEGY_CLASS_BALANCED)
		rc = balance_weights(l, path, errbuf, errlen);
	if (rc == 0 && l->o.columns)
		rc = prepare_columns(l, path, errbuf, errlen);
	return rc;
}

static void free_selection(scf_loader *l)
{
	free(l->subset);
	free(l->weights);
	free(l->col_map);
	l->subset = NULL;
	l->weights = NULL;
	l->col_map = NULL;
}

/*
 * Output buffers: the fetches being read and assembled, plus the one the
 * consumer holds; three at least so a consumer holding two fetches' batches
 * does not stop a pipeline of one fetch in flight.  Staging: one buffer per
 * fetch in flight.
 */
static int init_ring(scf_loader *l)
{
	unsigned n = l->o.fetches_in_flight + 1 < 3 ? 3 : l->o.fetches_in_flight + 1;
	int rc = scf__ring_init(&l->ring, n, l->o.fetches_in_flight,
	                        scf__sampler_fetch_rows(&l->smp), l->o.fetch_factor);

	l->ring.batches_per_epoch = l->batches_per_epoch;
	l->ring.cons_epoch = l->o.epoch;
	return rc;
}

static int init_sampler(scf_loader *l)
{
	scf__sampler_cfg c = {
		.n_rows = l->coll.n_rows,
		.subset = l->subset,
		.n_subset = l->o.n_indices,
		.weights = l->weights,
		.total_size = l->o.total_size,
		.replace = !(l->o.flags & SCF_F_NO_REPLACEMENT),
		.streaming = l->o.strategy == SCF_STRATEGY_STREAMING,
		.fetch_shuffle = l->o.fetch_shuffle == SCF_FETCH_SHUFFLE_ON,
		.drop_last = !!(l->o.flags & SCF_F_DROP_LAST),
		.even_ranks = !!(l->o.flags & SCF_F_EVEN_RANKS),
		.batch_size = l->o.batch_size,
		.block_size = l->o.block_size,
		.fetch_factor = l->o.fetch_factor,
		.seed = l->o.seed,
		.rank = l->o.rank, .world_size = l->o.world_size,
		.worker = l->o.worker, .num_workers = l->o.num_workers,
	};
	int rc = scf__sampler_init(&l->smp, &c);

	if (rc < 0)
		return rc;
	/* The caller's arrays need not outlive scf_open. */
	l->o.indices = NULL;
	l->o.weights = NULL;
	l->o.columns = NULL;
	l->o.balance_obs = NULL;
	scf__sampler_epoch(&l->smp, l->o.epoch);
	scf__sampler_counts(&l->smp, &l->batches_per_epoch, &l->rows_per_epoch);
	l->prod_epoch = l->o.epoch;
	return 0;
}

/* The name messages give the loader: its file, or the first of its files. */
static int name_loader(scf_loader *l, const char *const *paths, uint32_t n, char *errbuf,
                       size_t errlen)
{
	if (!paths || n == 0 || !paths[0]) {
		snprintf(errbuf, errlen, "invalid arguments: %s", !paths || n == 0 ?
		         "no files given" : "paths[0] is NULL");
		return -EINVAL;
	}
	if (n == 1)
		snprintf(l->name, sizeof(l->name), "%s", paths[0]);
	else
		snprintf(l->name, sizeof(l->name), "%s (and %u more files)", paths[0], n - 1);
	return 0;
}

/* Options, files, obs and selections: everything that can be wrong with the input. */
static int open_input(scf_loader *l, const char *const *paths, uint32_t n,
                      const scf_options *opts, char *errbuf, size_t errlen)
{
	const char *path = l->name;
	int rc = resolve_options(&l->o, opts, path, &l->weights_counted, errbuf, errlen);

	if (rc < 0)
		return rc;
	snprintf(l->matrix_key, sizeof(l->matrix_key), "%s", l->o.matrix);
	l->o.matrix = l->matrix_key;
	scf__idxcfg ix = { .use = !(l->o.flags & SCF_F_NO_INDEX_CACHE), .dir = l->o.index_dir };
	rc = scf__coll_open(&l->coll, paths, n, l->matrix_key, !(l->o.flags & SCF_F_BUFFERED),
	                    &ix, errbuf, errlen);
	if (rc == 0)
		rc = load_obs(l, path, errbuf, errlen);
	if (rc < 0)
		return rc;
	l->o.obs = NULL; /* the caller's array need not outlive scf_open */
	return prepare_selection(l, path, errbuf, errlen);
}

/* Default memory for decoded chunks kept across fetches. */
#define CHUNK_CACHE_DEFAULT (256ull << 20)

/*
 * The decoded-chunk cache, sized for the smallest filtered chunk of any file.
 * When the budget holds every decoded chunk of the collection, each chunk is
 * decoded once in the whole run: partial inflate would only make prefixes
 * that later fetches must decode again, so it is turned off.
 */
static int init_zcache(scf_loader *l)
{
	uint64_t budget = l->o.chunk_cache_bytes ? l->o.chunk_cache_bytes : CHUNK_CACHE_DEFAULT;
	uint64_t min_chunk = 0, all = 0;

	if (l->o.flags & SCF_F_NO_CHUNK_CACHE)
		budget = 0;
	for (uint32_t f = 0; f < l->coll.n_files; f++) {
		const scf__matrix *m = &l->coll.mats[f];
		const scf__dset *ds[2] = { &m->data, m->encoding == SCF__CSR ? &m->indices : NULL };
		for (int k = 0; k < 2; k++) {
			if (!ds[k] || ds[k]->storage != SCF__CHUNKED || ds[k]->n_filters == 0)
				continue;
			uint64_t b = scf__chunk_bytes(ds[k]);
			if (!min_chunk || b < min_chunk)
				min_chunk = b;
			uint64_t add; /* saturate: the sum is only compared with the budget */
			if (scf__mul_overflows(b, ds[k]->chunks.n, &add) ||
			    scf__add_overflows(all, add, &all))
				all = UINT64_MAX;
		}
	}
	if (budget && all && budget >= all)
		l->acfg.partial_inflate = 0;
	return scf__zcache_init(&l->zc, budget, min_chunk);
}

/* The engine proper: sampler, buffers, ring and threads. */
static int start_engine(scf_loader *l, char *errbuf, size_t errlen)
{
	const char *path = l->name;
	int rc;

	l->acfg = (scf__asm_cfg){ .fs = &l->coll.files, .obs = l->obs, .n_obs = l->n_obs,
	                          .batch_size = l->o.batch_size, .output = (int)l->o.output,
	                          .col_map = l->col_map, .n_cols = l->coll.n_cols,
	                          .n_out_cols = l->col_map ? l->o.n_columns : l->coll.n_cols,
	                          .target_sum = l->o.normalize_total,
	                          .log1p = !!(l->o.flags & SCF_F_LOG1P),
	                          .partial_inflate = !!(l->o.flags & SCF_F_PARTIAL_INFLATE) };
	rc = init_sampler(l);
	if (rc < 0) {
		snprintf(errbuf, errlen, "%s: %s: %s", path, l->matrix_key,
		         rc == -EOVERFLOW ? "too many blocks (more than 2^32)"
		         : rc == -EINVAL ? "weights must be finite, >= 0, and not all 0"
		         : scf_strerror(rc));
		return rc;
	}
	/* aligned reads suit buffered files too; unaligned ones fail on O_DIRECT files */
	l->pcfg.align = l->coll.any_direct ? 4096 : 1;
	l->pcfg.max_read = l->o.max_read;
	l->pcfg.gap = l->o.coalesce_gap == UINT32_MAX ? 0 : l->o.coalesce_gap;
	scf__pinned_init(&l->pin, &l->o.allocator, !(l->o.flags & SCF_F_NO_PIN));
	rc = init_zcache(l);
	if (rc < 0)
		goto fail_zcache;
	rc = init_ring(l);
	if (rc < 0)
		goto fail_slots;
	l->n_workers = l->o.threads;
	l->workers = calloc(l->n_workers, sizeof(pthread_t));
	if (!l->workers) {
		rc = -ENOMEM;
		goto fail_slots;
	}
	rc = scf__io_init(&l->io, l->coll.fds, l->coll.n_files, l->o.queue_depth,
	                  !!(l->o.flags & SCF_F_PREAD));
	if (rc < 0) {
		snprintf(errbuf, errlen, "%s: cannot set up reads (%s): %s", path, l->io.why,
		         strerror(-rc));
		goto fail_workers;
	}
	rc = scf__pipeline_start(l);
	if (rc < 0) {
		snprintf(errbuf, errlen, "%s: cannot start threads: %s", path, strerror(-rc));
		goto fail_io;
	}
	return 0;

fail_io:
	scf__io_exit(&l->io);
fail_workers:
	free(l->workers);
fail_slots:
	scf__ring_free(&l->ring, scf__arena_free, &l->pin);
	scf__zcache_free(&l->zc);
fail_zcache:
	scf__sampler_free(&l->smp);
	return rc;
}

int scf_open_collection(scf_loader **out, const char *const *paths, uint32_t n_paths,
                        const scf_options *opts, char *errbuf, size_t errlen)
{
	char scratch[8];
	scf_loader *l;
	int rc;

	if (!errbuf) {
		errbuf = scratch;
		errlen = sizeof(scratch);
	}
	errbuf[0] = '\0';
	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(errbuf, errlen, "%s: out of memory", paths && n_paths && paths[0] ? paths[0] : "");
		return -ENOMEM;
	}
	rc = name_loader(l, paths, n_paths, errbuf, errlen);
	if (rc == 0)
		rc = open_input(l, paths, n_paths, opts, errbuf, errlen);
	if (rc == 0)
		rc = start_engine(l, errbuf, errlen);
	if (rc == 0) {
		*out = l;
		return 0;
	}
	if (!errbuf[0])
		snprintf(errbuf, errlen, "%s: %s", l->name, scf_strerror(rc));
	free_selection(l);
	free_obs(l);
	scf__coll_close(&l->coll);
	free(l);
	return rc;
}

int scf_open(scf_loader **out, const char *path, const scf_options *opts,
             char *errbuf, size_t errlen)
{
	return scf_open_collection(out, &path, 1, opts, errbuf, errlen);
}

int scf_row_locate(const scf_loader *l, uint64_t row, uint32_t *file, uint64_t *file_row)
{
	if (!l || row >= l->coll.n_rows)
		return -EINVAL;
	uint32_t f = scf__files_find(&l->coll.files, row);
	if (file)
		*file = f;
	if (file_row)
		*file_row = row - l->coll.row0[f];
	return 0;
}

uint32_t scf_file_count(const scf_loader *l)
{
	return l ? l->coll.n_files : 0;
}

int scf_file_info(const scf_loader *l, uint32_t file, const char **path, uint64_t *first_row,
                  uint64_t *n_rows)
{
	if (!l || file >= l->coll.n_files)
		return -EINVAL;
	if (path)
		*path = l->coll.mats[file].path;
	if (first_row)
		*first_row = l->coll.row0[file];
	if (n_rows)
		*n_rows = l->coll.mats[file].n_rows;
	return 0;
}

int scf_next(scf_loader *l, scf_batch **out)
{
	return scf__ring_next(&l->ring, out, l->name, l->matrix_key);
}

int scf_release(scf_loader *l, scf_batch *b)
{
	int wake, rc;

	if (!b)
		return 0;
	rc = scf__ring_release(&l->ring, b, &wake);
	if (rc < 0) {
		char msg[600];
		snprintf(msg, sizeof(msg), "%s: %s: scf_release of a batch that is not held "
		         "(released twice, or not from this loader): ignored", l->name,
		         l->matrix_key);
		scf__ring_message(&l->ring, msg);
	}
	if (wake)
		scf__io_wake(&l->io);
	return rc;
}

/*
 * Stop the pipeline and start it again at batch `batch` of `epoch`.  Held
 * batches stay valid: their slots wait for release as orphans.
 */
static int restart_at(scf_loader *l, uint32_t epoch, uint64_t batch)
{
	uint32_t ff = l->o.fetch_factor, prod_epoch = epoch;
	uint64_t prod_batch = batch;
	int rc;

	if (batch >= l->batches_per_epoch && l->batches_per_epoch) {
		/* saved after an epoch's last batch: the consumer sees the end of
		 * that epoch first, the producer already works on the next one */
		prod_epoch = epoch + 1;
		prod_batch = 0;
	}
	scf__pipeline_stop(l);
	l->prod_epoch = prod_epoch;
	l->prod_k = prod_batch / ff;  /* every fetch but an epoch's last has ff batches */
	scf__ring_restart(&l->ring, epoch, batch, l->prod_seq, prod_batch % ff);
	rc = scf__pipeline_start(l);
	if (rc < 0) {
		char msg[600];
		snprintf(msg, sizeof(msg), "%s: cannot restart threads: %s", l->name, strerror(-rc));
		scf__ring_error(&l->ring, 0, rc, msg);
	}
	return rc;
}

int scf_set_epoch(scf_loader *l, uint32_t epoch)
{
	pthread_mutex_lock(&l->ring.mu);
	int at_start = l->ring.cons_epoch == epoch && l->ring.cons_batch == 0 && l->ring.err == 0;
	pthread_mutex_unlock(&l->ring.mu);
	return at_start ? 0 : restart_at(l, epoch, 0);
}

/* FNV-1a over what decides the order of batches: a state fits only its own stream. */
static uint64_t config_hash(const scf_loader *l)
{
	uint64_t v[] = { l->coll.n_rows, l->coll.nnz, l->o.strategy, l->o.fetch_shuffle, l->o.flags &
	                 (SCF_F_DROP_LAST | SCF_F_NO_REPLACEMENT | SCF_F_EVEN_RANKS),
	                 l->o.batch_size,
	                 l->o.block_size, l->o.fetch_factor, l->o.seed, l->o.rank,
	                 l->o.world_size, l->o.worker, l->o.num_workers, l->o.n_indices,
	                 l->o.total_size, l->batches_per_epoch };
	uint64_t h = 0xcbf29ce484222325ULL;
	const uint8_t *p = (const uint8_t *)v;

	for (size_t i = 0; i < sizeof(v); i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	for (uint64_t i = 0; l->subset && i < l->o.n_indices; i++)
		h = (h ^ l->subset[i]) * 0x100000001b3ULL;
	/* a collection's position fits only the same files in the same order */
	for (uint32_t f = 0; l->coll.n_files > 1 && f <= l->coll.n_files; f++)
		h = (h ^ l->coll.row0[f]) * 0x100000001b3ULL;
	return h;
}

int scf_state_save(scf_loader *l, scf_state *out)
{
	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->size = sizeof(*out);
	out->version = 1;
	out->config_hash = config_hash(l);
	out->seed = l->o.seed;
	pthread_mutex_lock(&l->ring.mu);
	out->epoch = l->ring.cons_epoch;
	out->batch = l->ring.cons_batch;
	pthread_mutex_unlock(&l->ring.mu);
	return 0;
}

int scf_state_load(scf_loader *l, const scf_state *st)
{
	if (!st || st->size != sizeof(*st) || st->version != 1 ||
	    st->config_hash != config_hash(l) || st->batch > l->batches_per_epoch) {
		char msg[600];
		snprintf(msg, sizeof(msg), "%s: %s: saved state does not fit this loader (other "
		         "files, options or version)", l->name, l->matrix_key);
		scf__ring_message(&l->ring, msg);
		return -EINVAL;
	}
	return restart_at(l, st->epoch, st->batch);
}

int scf_split(uint64_t n, uint64_t seed, const double *fractions, uint32_t n_parts,
              uint32_t *part_of_row)
{
	double sum = 0;
	uint64_t *perm, at = 0;

	if (!fractions || !part_of_row || n_parts == 0)
		return -EINVAL;
	for (uint32_t i = 0; i < n_parts; i++) {
		if (!(fractions[i] >= 0))
			return -EINVAL;
		sum += fractions[i];
	}
	if (sum < 0.999999 || sum > 1.000001)
		return -EINVAL;
	perm = malloc((n ? n : 1) * sizeof(uint64_t));
	if (!perm)
		return -ENOMEM;
	scf__shuffle_ids(perm, n, seed);
	double acc = 0;
	for (uint32_t p = 0; p < n_parts; p++) {
		acc += fractions[p];
		uint64_t end = p + 1 == n_parts ? n : (uint64_t)(acc * (double)n + 0.5);
		for (; at < end && at < n; at++)
			part_of_row[perm[at]] = p;
	}
	free(perm);
	return 0;
}

/* Callers built against an older header pass a smaller struct, newer ones a
 * larger (zeroed) one; below the two leading fields it is no struct of ours. */
static int copy_sized(void *out, const void *full, size_t ours)
{
	uint32_t want;
	memcpy(&want, out, sizeof(want));
	if (want < 2 * sizeof(uint32_t))
		return -EINVAL;
	scf__copy_sized(out, full, ours);
	return 0;
}

int scf_info_get(const scf_loader *l, scf_info *out)
{
	if (!l || !out)
		return -EINVAL;
	scf_info i;
	memset(&i, 0, sizeof(i));
	i.size = sizeof(i);
	i.n_rows = l->coll.n_rows;
	i.n_cols = l->coll.n_cols;
	i.nnz = l->coll.nnz;
	i.dense = l->coll.mats[0].encoding == SCF__DENSE;
	i.batches_per_epoch = l->batches_per_epoch;
	i.rows_per_epoch = l->rows_per_epoch;
	i.output_buffers = l->ring.n_slots;
	i.batches_per_buffer = l->o.fetch_factor;
	i.n_cols_out = l->acfg.n_out_cols;
	for (uint32_t f = 0; f < l->coll.n_files; f++) {
		i.index_cached += l->coll.mats[f].idx.state == SCF__IDX_REUSED;
		i.index_built += l->coll.mats[f].idx.state == SCF__IDX_BUILT;
	}
	return copy_sized(out, &i, sizeof(i));
}

int scf_stats_get(scf_loader *l, scf_stats *out)
{
	if (!l || !out)
		return -EINVAL;
	scf_stats s;
	scf__ring_stats(&l->ring, &s);
	s.size = sizeof(s);
	s.reads_submitted = __atomic_load_n(&l->io.reads_submitted, __ATOMIC_RELAXED);
	s.reads_requeued = __atomic_load_n(&l->io.reads_requeued, __ATOMIC_RELAXED);
	s.pinned = (uint32_t)__atomic_load_n(&l->pin.all_locked, __ATOMIC_RELAXED);
	s.direct = (uint32_t)l->coll.direct;
	return copy_sized(out, &s, sizeof(s));
}

const char *scf_io_backend(const scf_loader *l)
{
	return l ? l->io.why : "";
}

const char *scf_errmsg(const scf_loader *l)
{
	return l ? l->ring.errmsg : "";
}

void scf_close(scf_loader *l)
{
	if (!l)
		return;
	scf__pipeline_stop(l);
	scf__io_exit(&l->io);
	free(l->workers);
	scf__ring_free(&l->ring, scf__arena_free, &l->pin);
	scf__zcache_free(&l->zc);
	scf__sampler_free(&l->smp);
	free_selection(l);
	free_obs(l);
	scf__coll_close(&l->coll);
	free(l);
}

const char *scf_index_note(const scf_loader *l, uint32_t file)
{
	const scf__matrix *m;

	if (!l || file >= l->coll.n_files)
		return "";
	m = &l->coll.mats[file];
	if (l->o.flags & SCF_F_NO_INDEX_CACHE)
		return "not used (SCF_F_NO_INDEX_CACHE)";
	return m->idx.note ? m->idx.note : "";
}

/*
 * The options scf_index_build() reads, matrix and index_dir, checked as
 * scf_open() checks them (sizes of older callers included).
 */
static int index_build_options(const scf_options *opts, scf_options *o, scf__idxcfg *ix,
                               char *errbuf, size_t errlen, const char *path)
{
	int counted;
	int rc = resolve_options(o, opts, path, &counted, errbuf, errlen);

	if (rc < 0)
		return rc;
	if (o->flags & SCF_F_NO_INDEX_CACHE)
		return bad_option(errbuf, errlen, path, "SCF_F_NO_INDEX_CACHE asks for no index "
		                  "cache, and scf_index_build() writes one");
	*ix = (scf__idxcfg){ .use = 1, .dir = o->index_dir };
	return 0;
}

int scf_index_build(const char *path, const scf_options *opts, char *where, size_t wlen,
                    char *errbuf, size_t errlen)
{
	char scratch[8];
	const char *key;
	scf_options o;
	scf__idxcfg ix;
	scf__matrix *m;
	int rc;

	if (!errbuf) {
		errbuf = scratch;
		errlen = sizeof(scratch);
	}
	errbuf[0] = '\0';
	if (where && wlen)
		where[0] = '\0';
	if (!path) {
		snprintf(errbuf, errlen, "invalid arguments: path is NULL");
		return -EINVAL;
	}
	rc = index_build_options(opts, &o, &ix, errbuf, errlen, path);
	if (rc < 0)
		return rc;
	key = o.matrix;
	if (!(m = malloc(sizeof(*m)))) {
		snprintf(errbuf, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	rc = scf__h5ad_open_cached(m, path, key, &ix, errbuf, errlen);
	if (rc < 0) {
		free(m);
		return rc;
	}
	if (where && wlen && m->idx.file)
		snprintf(where, wlen, "%s", m->idx.file);
	rc = m->idx.state == SCF__IDX_REUSED ? 1 : m->idx.state == SCF__IDX_BUILT ? 0
	     : m->idx.err < 0 ? m->idx.err : -EIO;
	if (rc < 0)
		snprintf(errbuf, errlen, "%s: %s: %s", path, key,
		         m->idx.note ? m->idx.note : "not written");
	scf__h5ad_free(m);
	free(m);
	return rc;
}
