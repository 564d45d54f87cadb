/*
 * engine/plan — rows to pieces to coalesced, aligned reads.
 * Thread: the loader's I/O thread; arrays grow once and are reused.
 */
#include "engine/plan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scfetch.h"

void scf__plan_init(scf__plan *p)
{
	memset(p, 0, sizeof(*p));
}

void scf__plan_free(scf__plan *p)
{
	free(p->drow);
	free(p->irow);
	free(p->dpiece);
	free(p->ipiece);
	free(p->reads);
	free(p->order);
	memset(p, 0, sizeof(*p));
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

static int push_piece(scf__piece **arr, uint64_t *n, uint64_t *cap,
                      uint64_t off, uint64_t nbytes)
{
	if (*n == *cap && grow((void **)arr, cap, *n + 1, sizeof(**arr)) < 0)
		return -ENOMEM;
	(*arr)[*n].file_off = off;
	(*arr)[*n].nbytes = nbytes;
	(*arr)[*n].staging_off = 0;
	(*n)++;
	return 0;
}

/* Elements [e0, e1) of a 1-D dataset, one piece per storage unit. */
static int pieces_1d(const scf__dset *ds, uint64_t e0, uint64_t e1,
                     scf__piece **arr, uint64_t *n, uint64_t *cap)
{
	uint64_t esz = ds->type.size;

	if (e0 == e1)
		return 0;
	if (ds->storage == SCF__CONTIGUOUS)
		return push_piece(arr, n, cap, ds->offset + e0 * esz, (e1 - e0) * esz);
	uint64_t cd = ds->chunks.chunk_dims[0];
	for (uint64_t c = e0 / cd; e0 < e1; c++) {
		uint64_t end = (c + 1) * cd < e1 ? (c + 1) * cd : e1;
		const scf__chunk *ch = &ds->chunks.chunk[c];
		uint64_t off = ch->addr == SCF__CHUNK_UNALLOCATED ? SCF__NO_FILE
		               : ch->addr + (e0 - c * cd) * esz;
		if (push_piece(arr, n, cap, off, (end - e0) * esz) < 0)
			return -ENOMEM;
		e0 = end;
	}
	return 0;
}

/* One row of a dense 2-D dataset: one piece per chunk column. */
static int pieces_dense_row(const scf__dset *ds, uint64_t r, scf__piece **arr,
                            uint64_t *n, uint64_t *cap)
{
	uint64_t esz = ds->type.size, ncols = ds->dims[1];

	if (ds->storage == SCF__CONTIGUOUS)
		return push_piece(arr, n, cap, ds->offset + r * ncols * esz, ncols * esz);
	const scf__chunk_map *cm = &ds->chunks;
	uint64_t cr = cm->chunk_dims[0], cc = cm->chunk_dims[1], i = r / cr;
	for (uint64_t j = 0; j < cm->grid[1]; j++) {
		const scf__chunk *ch = &cm->chunk[i * cm->grid[1] + j];
		uint64_t w = (j + 1) * cc <= ncols ? cc : ncols - j * cc;
		uint64_t off = ch->addr == SCF__CHUNK_UNALLOCATED ? SCF__NO_FILE
		               : ch->addr + (r - i * cr) * cc * esz;
		if (push_piece(arr, n, cap, off, w * esz) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int cmp_piece(const void *a, const void *b)
{
	uint64_t x = (*(scf__piece *const *)a)->file_off;
	uint64_t y = (*(scf__piece *const *)b)->file_off;
	return (x > y) - (x < y);
}

/* Sort pointers to every piece with bytes on disk by offset; returns their count. */
static uint64_t order_pieces(scf__plan *p)
{
	uint64_t n = 0;
	int sorted = 1;

	for (uint64_t i = 0; i < p->n_dpiece; i++)
		if (p->dpiece[i].file_off != SCF__NO_FILE)
			p->order[n++] = &p->dpiece[i];
	for (uint64_t i = 0; i < p->n_ipiece; i++)
		if (p->ipiece[i].file_off != SCF__NO_FILE)
			p->order[n++] = &p->ipiece[i];
	for (uint64_t i = 1; i < n && sorted; i++)
		sorted = p->order[i]->file_off >= p->order[i - 1]->file_off;
	if (!sorted)
		qsort(p->order, n, sizeof(*p->order), cmp_piece);
	return n;
}

/*
 * Queue reads covering one run [start, end) placed at staging offset so;
 * bytes past data_end are alignment padding.
 */
static int emit_run(scf__plan *p, const scf__plan_cfg *cfg, uint64_t start,
                    uint64_t end, uint64_t data_end, uint64_t so)
{
	while (start < end) {
		uint64_t len = end - start < cfg->max_read ? end - start : cfg->max_read;
		uint64_t need = data_end <= start ? 0
		                : data_end - start < len ? data_end - start : len;
		if (p->n_reads == p->cap_reads &&
		    grow((void **)&p->reads, &p->cap_reads, p->n_reads + 1, sizeof(*p->reads)) < 0)
			return -ENOMEM;
		p->reads[p->n_reads++] = (scf__read){ .file_off = start, .staging_off = so,
		                                      .len = (uint32_t)len,
		                                      .need = (uint32_t)need };
		start += len;
		so += len;
	}
	return 0;
}

/* Merge sorted pieces into aligned runs; give each piece its staging offset. */
static int coalesce(scf__plan *p, const scf__plan_cfg *cfg, uint64_t n)
{
	uint64_t a = cfg->align, run_start = 0, run_end = 0, run_so = 0, so = 0;
	uint64_t data_end = 0;
	int open = 0;

	for (uint64_t i = 0; i < n; i++) {
		scf__piece *pc = p->order[i];
		uint64_t s = pc->file_off / a * a;
		uint64_t pe = pc->file_off + pc->nbytes, e = (pe + a - 1) / a * a;
		if (open && s <= run_end + (uint64_t)cfg->gap) {
			if (e > run_end)
				run_end = e;
		} else {
			if (open && emit_run(p, cfg, run_start, run_end, data_end, run_so) < 0)
				return -ENOMEM;
			so += open ? run_end - run_start : 0;
			run_start = s;
			run_end = e;
			run_so = so;
			data_end = 0;
			open = 1;
		}
		if (pe > data_end)
			data_end = pe;
		pc->staging_off = run_so + (pc->file_off - run_start);
	}
	if (open) {
		if (emit_run(p, cfg, run_start, run_end, data_end, run_so) < 0)
			return -ENOMEM;
		so += run_end - run_start;
	}
	p->staging_bytes = so;
	return 0;
}

int scf__plan_build(scf__plan *p, const scf__matrix *m, const scf__plan_cfg *cfg,
                    const uint64_t *rows, uint64_t n)
{
	int dense = m->encoding == SCF__DENSE;
	uint64_t total;

	if (grow((void **)&p->drow, &p->cap_rows, n + 1, sizeof(uint64_t)) < 0)
		return -ENOMEM;
	p->irow = realloc(p->irow, p->cap_rows * sizeof(uint64_t));
	if (!p->irow)
		return -ENOMEM;
	p->n_rows = n;
	p->n_dpiece = p->n_ipiece = p->n_reads = 0;
	p->bytes_requested = p->nnz = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t r = rows[i];
		int rc;
		p->drow[i] = p->n_dpiece;
		p->irow[i] = p->n_ipiece;
		if (dense) {
			rc = pieces_dense_row(&m->data, r, &p->dpiece, &p->n_dpiece, &p->cap_dpiece);
		} else {
			uint64_t e0 = (uint64_t)m->indptr[r], e1 = (uint64_t)m->indptr[r + 1];
			rc = pieces_1d(&m->data, e0, e1, &p->dpiece, &p->n_dpiece, &p->cap_dpiece);
			if (rc == 0)
				rc = pieces_1d(&m->indices, e0, e1, &p->ipiece, &p->n_ipiece,
				               &p->cap_ipiece);
			p->nnz += e1 - e0;
		}
		if (rc < 0)
			return rc;
	}
	p->drow[n] = p->n_dpiece;
	p->irow[n] = p->n_ipiece;
	for (uint64_t i = 0; i < p->n_dpiece; i++)
		p->bytes_requested += p->dpiece[i].nbytes;
	for (uint64_t i = 0; i < p->n_ipiece; i++)
		p->bytes_requested += p->ipiece[i].nbytes;

	total = p->n_dpiece + p->n_ipiece;
	if (grow((void **)&p->order, &p->cap_order, total, sizeof(*p->order)) < 0)
		return -ENOMEM;
	return coalesce(p, cfg, order_pieces(p));
}
