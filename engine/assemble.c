/*
 * engine/assemble — chunk decoding, dtype conversion and row placement into
 * output arenas.  Thread: a decode worker.
 */
#include "engine/assemble.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/checked.h"
#include "common/clock.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

#define NOT_DELIVERED UINT32_MAX

/* Widen the cache's shape to hold the filtered chunks of ds. */
static void cache_fit(scf__chunk_cache *c, const scf__dset *ds)
{
	uint32_t ways;

	if (ds->storage != SCF__CHUNKED || ds->n_filters == 0)
		return;
	/* A dense row crosses every chunk column: keep a whole band decoded. */
	ways = ds->rank == 2 ? (uint32_t)ds->chunks.grid[1] : 1;
	if (ways > 64)
		ways = 64;
	if (ways > c->ways)
		c->ways = ways;
	if (scf__chunk_bytes(ds) > c->chunk_bytes)
		c->chunk_bytes = scf__chunk_bytes(ds);
}

/* Cache `which` (0: data, 1: indices) sized for every file's chunks. */
static int cache_init(scf__chunk_cache *c, const scf__files *fs, int which)
{
	memset(c, 0, sizeof(*c));
	for (uint32_t f = 0; f < fs->n; f++) {
		const scf__matrix *m = &fs->m[f];
		if (which == 0 || m->encoding == SCF__CSR)
			cache_fit(c, which ? &m->indices : &m->data);
	}
	if (!c->ways)
		return 0;
	c->buf = malloc(c->ways * c->chunk_bytes);
	c->ids = malloc(c->ways * sizeof(uint64_t));
	c->valid = malloc(c->ways * sizeof(uint64_t));
	c->files = malloc(c->ways * sizeof(uint32_t));
	if (!c->buf || !c->ids || !c->valid || !c->files)
		return -ENOMEM;
	memset(c->ids, 0xff, c->ways * sizeof(uint64_t));
	return 0;
}

int scf__scratch_init(scf__scratch *s, const scf__files *fs, uint64_t fetch_rows)
{
	/* one row: every column of a dense row, every stored entry of a CSR row
	 * (more than the columns when ids repeat) */
	uint64_t n = fs->m[0].n_cols;

	for (uint32_t f = 0; f < fs->n; f++)
		n = fs->m[f].max_row_nnz > n ? fs->m[f].max_row_nnz : n;
	memset(s, 0, sizeof(*s));
	s->vals = scf__alloc_array(n, sizeof(float));
	s->idx = scf__alloc_array(n, sizeof(int32_t));
	s->pos_of = malloc(fetch_rows * sizeof(uint32_t));
	s->out_off = malloc((fetch_rows + 1) * sizeof(uint64_t));
	s->row_len = malloc((fetch_rows + 1) * sizeof(uint64_t));
	if (!s->vals || !s->idx || !s->pos_of || !s->out_off || !s->row_len)
		goto fail;
	if (cache_init(&s->cache[0], fs, 0) < 0 || cache_init(&s->cache[1], fs, 1) < 0)
		goto fail;
	if (s->cache[0].ways || s->cache[1].ways) {
		s->fctx = scf__filter_ctx_new();
		if (!s->fctx)
			goto fail;
	}
	return 0;
fail:
	scf__scratch_free(s);
	return -ENOMEM;
}

void scf__scratch_free(scf__scratch *s)
{
	free(s->vals);
	free(s->idx);
	free(s->pos_of);
	free(s->out_off);
	free(s->row_len);
	for (int i = 0; i < 2; i++) {
		free(s->cache[i].buf);
		free(s->cache[i].ids);
		free(s->cache[i].valid);
		free(s->cache[i].files);
	}
	scf__filter_ctx_free(s->fctx);
	memset(s, 0, sizeof(*s));
}

/* Load one element of any stored type (unaligned-safe). */
#define LOAD(T, src, i) ({ T l_; memcpy(&l_, (src) + (size_t)(i) * sizeof(T), sizeof(T)); l_; })

/* Values to float32, whatever the file stored; NULL src: never written, the fill value. */
static void to_f32(float *dst, const uint8_t *src, uint64_t n, scf__dtype t, float fill)
{
	if (!src) {
		for (uint64_t i = 0; i < n; i++)
			dst[i] = fill;
		return;
	}
	if (t.cls == SCF__T_FLOAT && t.size == 4) {
		memcpy(dst, src, n * 4);
		return;
	}
#define CONV(T) for (uint64_t i = 0; i < n; i++) dst[i] = (float)LOAD(T, src, i); return
	switch (t.cls * 16 + t.size) {
	case SCF__T_FLOAT * 16 + 8: CONV(double);
	case SCF__T_INT * 16 + 1: CONV(int8_t);
	case SCF__T_INT * 16 + 2: CONV(int16_t);
	case SCF__T_INT * 16 + 4: CONV(int32_t);
	case SCF__T_INT * 16 + 8: CONV(int64_t);
	case SCF__T_UINT * 16 + 1: CONV(uint8_t);
	case SCF__T_UINT * 16 + 2: CONV(uint16_t);
	case SCF__T_UINT * 16 + 4: CONV(uint32_t);
	case SCF__T_UINT * 16 + 8: CONV(uint64_t);
	}
#undef CONV
}

/*
 * Column ids to int32; 0 when all lie in [0, n_cols), -1 otherwise.  The
 * check folds into the copy loop, so it costs next to nothing.
 */
static int to_i32(int32_t *dst, const uint8_t *src, uint64_t n, scf__dtype t,
                  uint64_t n_cols)
{
	uint64_t bad = 0;

	if (!src)
		return -1; /* stored entries in a chunk never written */
	if (t.size == 4) {
		/* The common case: copy, then a compare loop the compiler vectorises. */
		uint32_t lim = (uint32_t)n_cols, acc = 0;
		for (uint64_t i = 0; i < n; i++) {
			uint32_t v;
			memcpy(&v, src + 4 * i, 4);
			dst[i] = (int32_t)v;
			acc |= v >= lim;
		}
		return acc ? -1 : 0;
	}
#define CONV(T) for (uint64_t i = 0; i < n; i++) { T v_ = LOAD(T, src, i); \
		bad |= (uint64_t)v_ >= n_cols; dst[i] = (int32_t)v_; } break
	switch (t.cls * 16 + t.size) {
	case SCF__T_INT * 16 + 1: CONV(int8_t);
	case SCF__T_INT * 16 + 2: CONV(int16_t);
	case SCF__T_INT * 16 + 4: CONV(int32_t);
	case SCF__T_INT * 16 + 8: CONV(int64_t);
	case SCF__T_UINT * 16 + 1: CONV(uint8_t);
	case SCF__T_UINT * 16 + 2: CONV(uint16_t);
	case SCF__T_UINT * 16 + 4: CONV(uint32_t);
	case SCF__T_UINT * 16 + 8: CONV(uint64_t);
	default: return -1;
	}
#undef CONV
	return bad ? -1 : 0;
}

/* What one fetch's assembly needs at hand. */
typedef struct asm_ctx {
	const scf__asm_cfg *cfg;
	const scf__files *fs;
	const scf__plan *p;
	const uint8_t *staging;
	scf__scratch *sc;
	char *err;
	size_t errlen;
} asm_ctx;

static const scf__dset *zchunk_dset(const scf__files *fs, const scf__zchunk *z)
{
	const scf__matrix *m = &fs->m[z->x.file];
	return z->ds ? &m->indices : &m->data;
}

uint64_t scf__zchunk_want(const scf__asm_cfg *cfg, const scf__zchunk *z)
{
	uint64_t full = scf__chunk_bytes(zchunk_dset(cfg->fs, z));
	return cfg->partial_inflate && z->need < full ? z->need : full;
}

/* A cache entry for the fetch's chunk zc: pinned until the fetch is assembled. */
static void hold(asm_ctx *a, uint32_t zc, scf__zentry *e)
{
	if (a->p->zhold[zc])
		scf__zcache_put(a->cfg->zc, a->p->zhold[zc]);
	a->p->zhold[zc] = e;
}

/*
 * The bytes of a decoded filtered chunk, decoding it on first use: all of
 * it, or with partial_inflate the part up to the last byte the fetch uses.
 * Found in order: held by the fetch (the plan found it in the shared cache),
 * in this worker's last decodes, published in the shared cache since the
 * plan; else decoded into a new shared entry, or this worker's buffer when
 * the shared cache has no room.
 */
static const uint8_t *decoded_chunk(asm_ctx *a, uint32_t zc)
{
	const scf__zchunk *z = &a->p->zchunk[zc];
	const scf__matrix *m = &a->fs->m[z->x.file];
	const scf__dset *ds = zchunk_dset(a->fs, z);
	scf__chunk_cache *c = &a->sc->cache[z->ds];
	uint64_t way = z->id % c->ways, full = scf__chunk_bytes(ds);
	uint64_t want = scf__zchunk_want(a->cfg, z);
	scf__zentry *e = a->p->zhold[zc];
	uint8_t *out = c->buf + way * c->chunk_bytes;
	size_t made = 0;
	char why[300];

	if (e && scf__zentry_valid(e) >= want)
		return scf__zentry_bytes(e);
	if (c->ids[way] == z->id && c->files[way] == z->x.file && c->valid[way] >= want)
		return out;
	if (a->cfg->zc && (e = scf__zcache_get(a->cfg->zc, z->x.file, z->ds, z->id, want))) {
		hold(a, zc, e);
		a->sc->work.chunk_cache_hits++;
		return scf__zentry_bytes(e);
	}
	/* Rows come once per epoch: a chunk this fetch uses whole (streaming, long
	 * blocks) is not needed again soon, and is not worth a place in the cache. */
	e = a->cfg->zc && z->used < full
	        ? scf__zcache_reserve(a->cfg->zc, z->x.file, z->ds, z->id, full) : NULL;
	if (e)
		out = scf__zentry_bytes(e);
	else
		c->ids[way] = UINT64_MAX;
	why[0] = '\0';
	uint64_t t0 = scf__now_ns();
	if (scf__filter_decode_prefix(a->sc->fctx, ds->filter, ds->n_filters, z->filter_mask,
	                              ds->type.size, a->staging + z->x.staging_off, z->x.nbytes,
	                              out, full, want, &made, why, sizeof(why)) < 0) {
		if (e)
			scf__zcache_put(a->cfg->zc, e); /* never published: dropped */
		snprintf(a->err, a->errlen, "%s: %s: chunk %llu (%llu bytes at byte %llu): %s",
		         m->path, ds->name, (unsigned long long)z->id,
		         (unsigned long long)z->x.nbytes, (unsigned long long)z->x.file_off, why);
		return NULL;
	}
	a->sc->work.decode_ns += scf__now_ns() - t0;
	a->sc->work.bytes_decoded += made;
	a->sc->work.bytes_decode_skipped += full - made;
	a->sc->work.chunks_decoded++;
	if (e) {
		scf__zcache_publish(a->cfg->zc, e, made);
		hold(a, zc, e);
		return out;
	}
	c->ids[way] = z->id;
	c->files[way] = z->x.file;
	c->valid[way] = made;
	return out;
}

/* Source bytes of a piece; *zero set when it reads as zeros; NULL on error. */
static const uint8_t *piece_bytes(asm_ctx *a, const scf__piece *pc, int *zero)
{
	*zero = 0;
	if (pc->zchunk != SCF__RAW) {
		const uint8_t *c = decoded_chunk(a, pc->zchunk);
		return c ? c + pc->x.staging_off : NULL;
	}
	if (pc->x.file_off == SCF__NO_FILE) {
		*zero = 1;
		return NULL;
	}
	return a->staging + pc->x.staging_off;
}

/* A row's values, converted, into dst; returns count or -1 on error. */
static int64_t gather_vals(asm_ctx *a, uint64_t k, float *dst)
{
	const scf__plan *p = a->p;
	const scf__dset *ds = &a->fs->m[p->rfile[k]].data;
	scf__dtype t = ds->type;
	uint64_t w = 0;

	for (uint64_t i = p->drow[k]; i < p->drow[k + 1]; i++) {
		int zero;
		const uint8_t *src = piece_bytes(a, &p->dpiece[i], &zero);
		if (!src && !zero)
			return -1;
		to_f32(dst + w, src, p->dpiece[i].x.nbytes / t.size, t, ds->fill);
		w += p->dpiece[i].x.nbytes / t.size;
	}
	return (int64_t)w;
}

/* A row's column ids, converted and checked, into dst (`row`: global id). */
static int gather_idx(asm_ctx *a, uint64_t k, int32_t *dst, uint64_t row)
{
	const scf__plan *p = a->p;
	const scf__matrix *m = &a->fs->m[p->rfile[k]];
	scf__dtype t = m->indices.type;
	uint64_t w = 0;

	for (uint64_t i = p->irow[k]; i < p->irow[k + 1]; i++) {
		int zero;
		const uint8_t *src = piece_bytes(a, &p->ipiece[i], &zero);
		if (!src && !zero)
			return -1;
		if (to_i32(dst + w, src, p->ipiece[i].x.nbytes / t.size, t, m->n_cols) < 0) {
			snprintf(a->err, a->errlen, "%s: %s: row %llu has a column index outside "
			         "[0, %llu)", m->path, m->indices.name,
			         (unsigned long long)(row - a->fs->row0[p->rfile[k]]),
			         (unsigned long long)m->n_cols);
			return -1;
		}
		w += p->ipiece[i].x.nbytes / t.size;
	}
	return 0;
}

/* Arena layout, shared by the size computation and the assembly. */
typedef struct layout {
	size_t row_ids, obs, obs_values, indptr, indices, data, total;
} layout;

/*
 * Entries a fetch may hold before compaction: the stored entries of its rows
 * of CSR files, and every cell of the delivered columns for rows of dense ones.
 */
static uint64_t entry_bound(const scf__asm_cfg *cfg, const scf__plan *p, uint64_t n)
{
	return p->nnz + p->dense_rows * cfg->n_out_cols;
}

static layout plan_layout(const scf__asm_cfg *cfg, const scf__plan *p, uint64_t n)
{
	uint64_t bs = cfg->batch_size, nb = (n + bs - 1) / bs;
	uint64_t nnz = entry_bound(cfg, p, n);
	layout L;

	L.row_ids = 0;
	L.obs = L.row_ids + n * sizeof(uint64_t);
	L.obs_values = L.obs + (n * cfg->n_obs * sizeof(int32_t) + 7) / 8 * 8;
	L.indptr = L.obs_values + n * cfg->n_obs * sizeof(int64_t);
	if (cfg->output == SCF_OUTPUT_DENSE) {
		L.indices = L.indptr;
		L.data = L.indptr;
		L.total = L.data + n * cfg->n_out_cols * sizeof(float);
	} else {
		L.indices = L.indptr + (n + nb) * sizeof(int64_t);
		L.data = L.indices + (nnz * sizeof(int32_t) + 63) / 64 * 64;
		L.total = L.data + nnz * sizeof(float);
	}
	L.total = (L.total + 4095) / 4096 * 4096;
	return L;
}

size_t scf__assemble_bytes(const scf__asm_cfg *cfg, const scf__plan *p, uint64_t n_rows)
{
	return plan_layout(cfg, p, n_rows).total;
}

/*
 * Where each delivered row goes: its delivery position, and the start of
 * its slot in the fetch-wide indices/data arrays (CSR output): exact for a
 * CSR file without column selection, an upper bound otherwise (then rows
 * are compacted after the scatter).
 */
static void place_rows(const scf__asm_cfg *cfg, const scf__plan *p,
                       const scf__fetch_order *o, scf__scratch *sc)
{
	for (uint64_t k = 0; k < o->n; k++)
		sc->pos_of[k] = NOT_DELIVERED;
	for (uint64_t i = 0; i < o->n_deliver; i++)
		sc->pos_of[o->perm[i]] = (uint32_t)i;
	sc->out_off[0] = 0;
	for (uint64_t i = 0; i < o->n_deliver; i++) {
		uint32_t f = p->rfile[o->perm[i]];
		const scf__matrix *m = &cfg->fs->m[f];
		uint64_t r = o->rows[o->perm[i]] - cfg->fs->row0[f];
		uint64_t len = m->encoding == SCF__CSR ? (uint64_t)(m->indptr[r + 1] - m->indptr[r])
		                                       : cfg->n_out_cols;
		sc->out_off[i + 1] = sc->out_off[i] + len;
		sc->row_len[i] = len;
	}
}

/*
 * The value transforms a model would apply on its side: library-size
 * normalisation (the row's factor, from all its stored values, before column
 * selection) and log1p.  Done here, in the decode threads, the row is hot in
 * cache and the consumer's thread does nothing.
 */
static float row_factor(const scf__asm_cfg *cfg, const float *v, uint64_t n)
{
	double sum = 0;

	if (!(cfg->target_sum > 0))
		return 1.0f;
	for (uint64_t i = 0; i < n; i++)
		sum += v[i];
	return sum != 0 ? (float)(cfg->target_sum / sum) : 1.0f;
}

static void transform(const scf__asm_cfg *cfg, float *v, uint64_t n, float factor)
{
	if (factor != 1.0f)
		for (uint64_t i = 0; i < n; i++)
			v[i] *= factor;
	if (cfg->log1p)
		for (uint64_t i = 0; i < n; i++)
			v[i] = log1pf(v[i]);
}

static int transforming(const scf__asm_cfg *cfg)
{
	return cfg->target_sum > 0 || cfg->log1p;
}

/* Keep the selected columns of a CSR row, renumbered; returns entries kept. */
static uint64_t select_entries(const int32_t *map, int32_t *idx, float *val, uint64_t n)
{
	uint64_t w = 0;

	for (uint64_t i = 0; i < n; i++) {
		int32_t c = map[idx[i]];
		if (c >= 0) {
			idx[w] = c;
			val[w++] = val[i];
		}
	}
	return w;
}

/* Slide rows down so they follow each other; their slots never overlap ahead. */
static void compact_rows(uint64_t n, uint64_t *out_off, const uint64_t *row_len,
                         int32_t *indices, float *data)
{
	uint64_t w = 0;

	for (uint64_t i = 0; i < n; i++) {
		if (out_off[i] != w) {
			memmove(indices + w, indices + out_off[i], row_len[i] * sizeof(int32_t));
			memmove(data + w, data + out_off[i], row_len[i] * sizeof(float));
		}
		out_off[i] = w;
		w += row_len[i];
	}
	out_off[n] = w;
}

/* A dense row (n_cols values in sc->vals) as CSR entries of the delivered columns. */
static uint64_t dense_to_csr(const scf__asm_cfg *cfg, const float *vals, int32_t *idx,
                             float *val)
{
	uint64_t w = 0;

	for (uint64_t c = 0; c < cfg->n_cols; c++) {
		int32_t to = cfg->col_map ? cfg->col_map[c] : (int32_t)c;
		if (to >= 0 && vals[c] != 0.0f) {
			idx[w] = to;
			val[w++] = vals[c];
		}
	}
	return w;
}

/* One row of a CSR file into its dense output row; repeated ids add up, as
 * scipy's toarray() and anndata's dense views make them. */
static int csr_row_to_dense(asm_ctx *a, const scf__asm_cfg *cfg, uint64_t k, uint64_t row,
                            float *out)
{
	scf__scratch *sc = a->sc;
	int64_t n = gather_vals(a, k, sc->vals);

	if (n < 0 || gather_idx(a, k, sc->idx, row) < 0)
		return -1;
	float f = row_factor(cfg, sc->vals, (uint64_t)n);
	memset(out, 0, cfg->n_out_cols * sizeof(float));
	for (int64_t i = 0; i < n; i++) {
		int32_t to = cfg->col_map ? cfg->col_map[sc->idx[i]] : sc->idx[i];
		if (to >= 0)
			out[to] += sc->vals[i];
	}
	if (transforming(cfg))
		transform(cfg, out, cfg->n_out_cols, f);
	return 0;
}

/* One row of a dense file into its dense output row. */
static int dense_row_to_dense(asm_ctx *a, const scf__asm_cfg *cfg, uint64_t k, float *out)
{
	if (!cfg->col_map) {
		if (gather_vals(a, k, out) < 0)
			return -1;
		if (transforming(cfg))
			transform(cfg, out, cfg->n_cols, row_factor(cfg, out, cfg->n_cols));
		return 0;
	}
	if (gather_vals(a, k, a->sc->vals) < 0)
		return -1;
	for (uint64_t c = 0; c < cfg->n_cols; c++)
		if (cfg->col_map[c] >= 0)
			out[cfg->col_map[c]] = a->sc->vals[c];
	if (transforming(cfg))
		transform(cfg, out, cfg->n_out_cols, row_factor(cfg, a->sc->vals, cfg->n_cols));
	return 0;
}

/* Visit rows in file order and write each into its place. */
static int scatter_rows(asm_ctx *a, const scf__asm_cfg *cfg, const scf__fetch_order *o,
                        int32_t *indices, float *data)
{
	scf__scratch *sc = a->sc;

	for (uint64_t k = 0; k < o->n; k++) {
		uint32_t pos = sc->pos_of[k];
		if (pos == NOT_DELIVERED)
			continue; /* cut by drop_last: read for its neighbours, never placed */
		uint64_t off = sc->out_off[pos];
		int dense_file = cfg->fs->m[a->p->rfile[k]].encoding == SCF__DENSE;
		if (cfg->output == SCF_OUTPUT_DENSE) {
			float *row = data + (uint64_t)pos * cfg->n_out_cols;
			if ((dense_file ? dense_row_to_dense(a, cfg, k, row)
			                : csr_row_to_dense(a, cfg, k, o->rows[k], row)) < 0)
				return -1;
		} else if (dense_file) {
			if (gather_vals(a, k, sc->vals) < 0)
				return -1;
			float f = row_factor(cfg, sc->vals, cfg->n_cols);
			sc->row_len[pos] = dense_to_csr(cfg, sc->vals, indices + off, data + off);
			if (transforming(cfg))
				transform(cfg, data + off, sc->row_len[pos], f);
		} else {
			if (gather_idx(a, k, indices + off, o->rows[k]) < 0 ||
			    gather_vals(a, k, data + off) < 0)
				return -1;
			float f = row_factor(cfg, data + off, sc->row_len[pos]);
			if (cfg->col_map)
				sc->row_len[pos] = select_entries(cfg->col_map, indices + off, data + off,
				                                  sc->row_len[pos]);
			if (transforming(cfg))
				transform(cfg, data + off, sc->row_len[pos], f);
		}
	}
	return 0;
}

/* The requested obs values of each delivered row, row-major, in both forms. */
static void fill_obs(const scf__asm_cfg *cfg, const scf__fetch_order *o, int32_t *obs,
                     int64_t *words)
{
	for (uint64_t i = 0; i < o->n_deliver; i++) {
		uint64_t r = o->rows[o->perm[i]];
		for (uint32_t c = 0; c < cfg->n_obs; c++) {
			obs[i * cfg->n_obs + c] = scf__obs_i32(&cfg->obs[c], r);
			words[i * cfg->n_obs + c] = scf__obs_word(&cfg->obs[c], r);
		}
	}
}

/* Point the batches into the arena. */
static uint32_t fill_batches(const scf__asm_cfg *cfg, const scf__fetch_order *o,
                             const layout *L, uint8_t *arena, const uint64_t *out_off,
                             scf_batch *batch)
{
	uint64_t bs = cfg->batch_size;
	int output = cfg->output;
	uint64_t *row_ids = (uint64_t *)(arena + L->row_ids);
	int32_t *obs = (int32_t *)(arena + L->obs);
	int64_t *words = (int64_t *)(arena + L->obs_values);
	int64_t *indptr = (int64_t *)(arena + L->indptr);
	int32_t *indices = (int32_t *)(arena + L->indices);
	float *data = (float *)(arena + L->data);
	uint32_t nb = 0;

	for (uint64_t pos = 0; pos < o->n_deliver; pos += bs, nb++) {
		scf_batch *b = &batch[nb];
		uint64_t n = o->n_deliver - pos < bs ? o->n_deliver - pos : bs;
		memset(b, 0, sizeof(*b));
		b->n_rows = n;
		b->n_cols = cfg->n_out_cols;
		b->output = (uint32_t)output;
		b->row_ids = row_ids + pos;
		b->n_obs = cfg->n_obs;
		b->obs = cfg->n_obs ? obs + pos * cfg->n_obs : NULL;
		b->obs_values = cfg->n_obs ? words + pos * cfg->n_obs : NULL;
		for (uint64_t j = 0; j < n; j++)
			b->row_ids[j] = o->rows[o->perm[pos + j]];
		if (output == SCF_OUTPUT_DENSE) {
			b->data = data + pos * cfg->n_out_cols;
			b->nnz = n * cfg->n_out_cols;
			continue;
		}
		b->indptr = indptr + pos + nb;
		b->indices = indices + out_off[pos];
		b->data = data + out_off[pos];
		for (uint64_t j = 0; j <= n; j++)
			b->indptr[j] = (int64_t)(out_off[pos + j] - out_off[pos]);
		b->nnz = (uint64_t)b->indptr[n];
	}
	return nb;
}

int scf__assemble(const scf__asm_cfg *cfg, const scf__plan *p, const scf__fetch_order *o,
                  const uint8_t *staging, uint8_t *arena, scf_batch *batch,
                  uint32_t *n_batch, scf__scratch *sc, char *err, size_t errlen)
{
	const scf__matrix *m = &cfg->fs->m[0];
	int output = cfg->output;
	layout L = plan_layout(cfg, p, o->n);
	int32_t *indices = (int32_t *)(arena + L.indices);
	float *data = (float *)(arena + L.data);
	asm_ctx a = { .cfg = cfg, .fs = cfg->fs, .p = p, .staging = staging, .sc = sc, .err = err,
	              .errlen = errlen };

	uint64_t t0 = scf__now_ns(), d0 = sc->work.decode_ns;
	sc->work.chunk_cache_hits += p->n_cached;
	err[0] = '\0';
	place_rows(cfg, p, o, sc);
	if (scatter_rows(&a, cfg, o, indices, data) < 0) {
		if (!err[0])
			snprintf(err, errlen, "%s: %s: cannot assemble a fetch", m->path, m->key);
		return SCF_E_CORRUPT;
	}
	if (output == SCF_OUTPUT_CSR && (p->dense_rows || cfg->col_map))
		compact_rows(o->n_deliver, sc->out_off, sc->row_len, indices, data);
	fill_obs(cfg, o, (int32_t *)(arena + L.obs), (int64_t *)(arena + L.obs_values));
	*n_batch = fill_batches(cfg, o, &L, arena, sc->out_off, batch);
	sc->work.assemble_ns += scf__now_ns() - t0 - (sc->work.decode_ns - d0);
	return 0;
}
