/*
 * engine/plan — rows to pieces to coalesced, aligned reads.
 * Thread: the loader's I/O thread; arrays grow once and are reused.
 */
#include "engine/plan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scfetch.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

void scf__plan_init(scf__plan *p)
{
	memset(p, 0, sizeof(*p));
}

void scf__plan_free(scf__plan *p)
{
	free(p->rfile);
	free(p->drow);
	free(p->irow);
	free(p->dpiece);
	free(p->ipiece);
	free(p->zchunk);
	free(p->zhold);
	free(p->reads);
	free(p->order);
	memset(p, 0, sizeof(*p));
}

uint32_t scf__files_find(const scf__files *fs, uint64_t row)
{
	uint32_t lo = 0, hi = fs->n - 1;

	while (lo < hi) { /* the last file whose first row is <= row */
		uint32_t mid = lo + (hi - lo + 1) / 2;
		if (fs->row0[mid] <= row)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

uint64_t scf__chunk_bytes(const scf__dset *ds)
{
	uint64_t n = ds->chunks.chunk_dims[0];

	if (ds->rank == 2)
		n *= ds->chunks.chunk_dims[1];
	return n * ds->type.size;
}

/* Grow an array to hold at least `need` elements; amortised doubling. */
static int grow(void **arr, uint64_t *cap, uint64_t need, size_t elem)
{
	uint64_t n = *cap ? *cap : 64;
	void *q;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	q = realloc(*arr, n * elem);
	if (!q)
		return -ENOMEM;
	*arr = q;
	*cap = n;
	return 0;
}

/* Where a dataset's pieces go while a plan is built. */
typedef struct sink {
	scf__plan *p;
	const scf__dset *ds;
	uint32_t which;       /* 0: data, 1: indices */
	uint32_t file;
	int filtered;
	scf__piece **arr;
	uint64_t *n, *cap;
} sink;

/* The plan's entry for filtered chunk `id`, added on first use. */
static int zchunk_of(sink *s, uint64_t id, uint32_t *out)
{
	scf__plan *p = s->p;
	const scf__chunk_map *cm = &s->ds->chunks;

	/* Rows are sorted, so a chunk seen before is almost always a recent one. */
	for (uint64_t i = p->n_zchunk, k = 0; i > 0 && k < 64; i--, k++) {
		const scf__zchunk *z = &p->zchunk[i - 1];
		if (z->id == id && z->ds == s->which && z->x.file == s->file) {
			*out = (uint32_t)(i - 1);
			return 0;
		}
	}
	if (grow((void **)&p->zchunk, &p->cap_zchunk, p->n_zchunk + 1, sizeof(*p->zchunk)) < 0)
		return -ENOMEM;
	p->zchunk[p->n_zchunk] = (scf__zchunk){
		.x = { .file_off = scf__chunk_addr(cm, id), .nbytes = scf__chunk_size(cm, id),
		       .file = s->file },
		.id = id, .filter_mask = scf__chunk_mask(cm, id), .ds = s->which };
	p->bytes_decoded += scf__chunk_bytes(s->ds);
	*out = (uint32_t)p->n_zchunk++;
	return 0;
}

/* Add the piece of `nbytes` at byte `in_chunk` of chunk `id` (or contiguous). */
static int push_piece(sink *s, uint64_t id, uint64_t in_chunk, uint64_t nbytes)
{
	scf__piece pc = { .x = { .nbytes = nbytes, .file = s->file }, .zchunk = SCF__RAW };
	const scf__dset *ds = s->ds;

	if (ds->storage == SCF__CONTIGUOUS) {
		pc.x.file_off = ds->offset + in_chunk;
	} else if (scf__chunk_addr(&ds->chunks, id) == SCF__CHUNK_UNALLOCATED) {
		pc.x.file_off = SCF__NO_FILE;
	} else if (s->filtered) {
		pc.x.file_off = SCF__NO_FILE;
		pc.x.staging_off = in_chunk;
		if (zchunk_of(s, id, &pc.zchunk) < 0)
			return -ENOMEM;
		scf__zchunk *z = &s->p->zchunk[pc.zchunk];
		if (in_chunk + nbytes > z->need)
			z->need = in_chunk + nbytes;
		z->used += nbytes;
	} else {
		pc.x.file_off = scf__chunk_addr(&ds->chunks, id) + in_chunk;
	}
	if (grow((void **)s->arr, s->cap, *s->n + 1, sizeof(**s->arr)) < 0)
		return -ENOMEM;
	(*s->arr)[(*s->n)++] = pc;
	s->p->bytes_requested += nbytes;
	return 0;
}

/* Elements [e0, e1) of a 1-D dataset, one piece per storage unit. */
static int pieces_1d(sink *s, uint64_t e0, uint64_t e1)
{
	uint64_t esz = s->ds->type.size;

	if (e0 == e1)
		return 0;
	if (s->ds->storage == SCF__CONTIGUOUS)
		return push_piece(s, 0, e0 * esz, (e1 - e0) * esz);
	uint64_t cd = s->ds->chunks.chunk_dims[0];
	for (uint64_t c = e0 / cd; e0 < e1; c++) {
		uint64_t end = (c + 1) * cd < e1 ? (c + 1) * cd : e1;
		if (push_piece(s, c, (e0 - c * cd) * esz, (end - e0) * esz) < 0)
			return -ENOMEM;
		e0 = end;
	}
	return 0;
}

/* One row of a dense 2-D dataset: one piece per chunk column. */
static int pieces_dense_row(sink *s, uint64_t r)
{
	const scf__dset *ds = s->ds;
	uint64_t esz = ds->type.size, ncols = ds->dims[1];

	if (ds->storage == SCF__CONTIGUOUS)
		return push_piece(s, 0, r * ncols * esz, ncols * esz);
	const scf__chunk_map *cm = &ds->chunks;
	uint64_t cr = cm->chunk_dims[0], cc = cm->chunk_dims[1], i = r / cr;
	for (uint64_t j = 0; j < cm->grid[1]; j++) {
		uint64_t w = (j + 1) * cc <= ncols ? cc : ncols - j * cc;
		if (push_piece(s, i * cm->grid[1] + j, (r - i * cr) * cc * esz, w * esz) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* By file, then offset: runs of one file follow each other. */
static int before(const scf__extent *a, const scf__extent *b)
{
	return a->file != b->file ? a->file < b->file : a->file_off < b->file_off;
}

static int cmp_extent(const void *a, const void *b)
{
	const scf__extent *x = *(scf__extent *const *)a, *y = *(scf__extent *const *)b;
	return before(x, y) ? -1 : before(y, x);
}

static void add_extent(scf__plan *p, uint64_t *n, scf__extent *x)
{
	if (x->file_off != SCF__NO_FILE)
		p->order[(*n)++] = x;
}

/* Sort pointers to everything with bytes on disk by offset; returns the count. */
static uint64_t order_extents(scf__plan *p)
{
	uint64_t n = 0;
	int sorted = 1;

	for (uint64_t i = 0; i < p->n_dpiece; i++)
		add_extent(p, &n, &p->dpiece[i].x);
	for (uint64_t i = 0; i < p->n_ipiece; i++)
		add_extent(p, &n, &p->ipiece[i].x);
	for (uint64_t i = 0; i < p->n_zchunk; i++)
		add_extent(p, &n, &p->zchunk[i].x);
	for (uint64_t i = 1; i < n && sorted; i++)
		sorted = !before(p->order[i], p->order[i - 1]);
	if (!sorted)
		qsort(p->order, n, sizeof(*p->order), cmp_extent);
	return n;
}

/*
 * Queue reads covering one run [start, end) placed at staging offset so;
 * bytes past data_end are alignment padding.
 */
static int emit_run(scf__plan *p, const scf__plan_cfg *cfg, uint32_t file, uint64_t start,
                    uint64_t end, uint64_t data_end, uint64_t so)
{
	while (start < end) {
		uint64_t len = end - start < cfg->max_read ? end - start : cfg->max_read;
		uint64_t need = data_end <= start ? 0
		                : data_end - start < len ? data_end - start : len;
		if (grow((void **)&p->reads, &p->cap_reads, p->n_reads + 1, sizeof(*p->reads)) < 0)
			return -ENOMEM;
		p->reads[p->n_reads++] = (scf__read){ .file_off = start, .staging_off = so,
		                                      .len = (uint32_t)len,
		                                      .need = (uint32_t)need, .file = file };
		start += len;
		so += len;
	}
	return 0;
}

/* Merge sorted extents into aligned runs; give each its staging offset. */
static int coalesce(scf__plan *p, const scf__plan_cfg *cfg, uint64_t n)
{
	uint64_t a = cfg->align, run_start = 0, run_end = 0, run_so = 0, so = 0;
	uint64_t data_end = 0;
	uint32_t file = 0;
	int open = 0;

	for (uint64_t i = 0; i < n; i++) {
		scf__extent *x = p->order[i];
		uint64_t s = x->file_off / a * a;
		uint64_t pe = x->file_off + x->nbytes, e = (pe + a - 1) / a * a;
		if (open && x->file == file && s <= run_end + (uint64_t)cfg->gap) {
			if (e > run_end)
				run_end = e;
		} else {
			if (open && emit_run(p, cfg, file, run_start, run_end, data_end, run_so) < 0)
				return -ENOMEM;
			so += open ? run_end - run_start : 0;
			run_start = s;
			run_end = e;
			run_so = so;
			data_end = 0;
			file = x->file;
			open = 1;
		}
		if (pe > data_end)
			data_end = pe;
		x->staging_off = run_so + (x->file_off - run_start);
	}
	if (open) {
		if (emit_run(p, cfg, file, run_start, run_end, data_end, run_so) < 0)
			return -ENOMEM;
		so += run_end - run_start;
	}
	p->staging_bytes = so;
	return 0;
}

static sink make_sink(scf__plan *p, const scf__dset *ds, uint32_t which, uint32_t file)
{
	sink s = { .p = p, .ds = ds, .which = which, .file = file,
	           .filtered = ds->n_filters > 0 };

	s.arr = which ? &p->ipiece : &p->dpiece;
	s.n = which ? &p->n_ipiece : &p->n_dpiece;
	s.cap = which ? &p->cap_ipiece : &p->cap_dpiece;
	return s;
}

/* Room for n rows' bookkeeping; grows, never shrinks. */
static int grow_rows(scf__plan *p, uint64_t n)
{
	uint64_t *d, *r;
	uint32_t *f;

	if (n + 1 <= p->cap_rows)
		return 0;
	if ((d = realloc(p->drow, (n + 1) * sizeof(uint64_t))) != NULL)
		p->drow = d;
	if ((r = realloc(p->irow, (n + 1) * sizeof(uint64_t))) != NULL)
		p->irow = r;
	if ((f = realloc(p->rfile, (n + 1) * sizeof(uint32_t))) != NULL)
		p->rfile = f;
	if (!d || !r || !f)
		return -ENOMEM;
	p->cap_rows = n + 1;
	return 0;
}

/* The pieces of one row (`r` local to its file, whose sinks are sd, si). */
static int row_pieces(scf__plan *p, const scf__matrix *m, sink *sd, sink *si, uint64_t r)
{
	int rc;

	if (m->encoding == SCF__DENSE) {
		p->dense_rows++;
		return pieces_dense_row(sd, r);
	}
	uint64_t e0 = (uint64_t)m->indptr[r], e1 = (uint64_t)m->indptr[r + 1];
	rc = pieces_1d(sd, e0, e1);
	if (rc == 0)
		rc = pieces_1d(si, e0, e1);
	p->nnz += e1 - e0;
	return rc;
}

/* Chunks an earlier fetch left decoded in the cache are not read again. */
static int take_cached(scf__plan *p, const scf__plan_cfg *cfg)
{
	p->n_cached = 0;
	if (grow((void **)&p->zhold, &p->cap_zhold, p->n_zchunk, sizeof(*p->zhold)) < 0)
		return -ENOMEM;
	for (uint64_t i = 0; i < p->n_zchunk; i++) {
		p->zhold[i] = cfg->lookup ? cfg->lookup(cfg->lookup_ctx, &p->zchunk[i]) : NULL;
		if (p->zhold[i]) {
			p->zchunk[i].x.file_off = SCF__NO_FILE;
			p->n_cached++;
		}
	}
	p->n_zhold = p->n_zchunk;
	return 0;
}

int scf__plan_build_files(scf__plan *p, const scf__files *fs, const scf__plan_cfg *cfg,
                          const uint64_t *rows, uint64_t n)
{
	uint32_t f = UINT32_MAX;
	sink sd = { 0 }, si = { 0 };

	if (grow_rows(p, n) < 0)
		return -ENOMEM;
	p->n_rows = n;
	p->n_dpiece = p->n_ipiece = p->n_zchunk = p->n_reads = 0;
	p->n_zhold = 0; /* the owner unpinned the last plan's entries */
	p->bytes_requested = p->bytes_decoded = p->nnz = p->dense_rows = 0;
	for (uint64_t i = 0; i < n; i++) {
		/* rows are sorted, so the file changes only a few times per fetch */
		if (f == UINT32_MAX || rows[i] < fs->row0[f] || rows[i] >= fs->row0[f + 1]) {
			f = scf__files_find(fs, rows[i]);
			sd = make_sink(p, &fs->m[f].data, 0, f);
			si = make_sink(p, &fs->m[f].indices, 1, f);
		}
		p->rfile[i] = f;
		p->drow[i] = p->n_dpiece;
		p->irow[i] = p->n_ipiece;
		if (row_pieces(p, &fs->m[f], &sd, &si, rows[i] - fs->row0[f]) < 0)
			return -ENOMEM;
	}
	p->drow[n] = p->n_dpiece;
	p->irow[n] = p->n_ipiece;
	if (take_cached(p, cfg) < 0)
		return -ENOMEM;
	if (grow((void **)&p->order, &p->cap_order, p->n_dpiece + p->n_ipiece + p->n_zchunk,
	         sizeof(*p->order)) < 0)
		return -ENOMEM;
	return coalesce(p, cfg, order_extents(p));
}

int scf__plan_build(scf__plan *p, const scf__matrix *m, const scf__plan_cfg *cfg,
                    const uint64_t *rows, uint64_t n)
{
	uint64_t row0[2] = { 0, m->n_rows };
	scf__files fs = { .m = m, .row0 = row0, .n = 1 };

	return scf__plan_build_files(p, &fs, cfg, rows, n);
}
