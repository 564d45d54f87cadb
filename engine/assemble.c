/*
 * engine/assemble — dtype conversion and row placement into output arenas.
 * Thread: a decode worker.
 */
#include "engine/assemble.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int scf__scratch_init(scf__scratch *s, uint64_t n_cols)
{
	uint64_t n = n_cols ? n_cols : 1;

	s->vals = malloc(n * sizeof(float));
	s->idx = malloc(n * sizeof(int32_t));
	s->cap = n;
	if (!s->vals || !s->idx) {
		scf__scratch_free(s);
		return -ENOMEM;
	}
	return 0;
}

void scf__scratch_free(scf__scratch *s)
{
	free(s->vals);
	free(s->idx);
	s->vals = NULL;
	s->idx = NULL;
}

/* Load one element of any stored type as a double (unaligned-safe). */
#define LOAD(T, src, i) ({ T l_; memcpy(&l_, (src) + (size_t)(i) * sizeof(T), sizeof(T)); l_; })

/* Values to float32, whatever the file stored. */
static void to_f32(float *dst, const uint8_t *src, uint64_t n, scf__dtype t)
{
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
 * Column ids to int32; returns the position of the first id outside
 * [0, n_cols), or n when all are valid.  The check folds into the copy
 * loop, so it costs next to nothing on the hot path.
 */
static uint64_t to_i32(int32_t *dst, const uint8_t *src, uint64_t n, scf__dtype t,
                       uint64_t n_cols)
{
	uint64_t bad = 0;
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
	default: return 0;
	}
#undef CONV
	if (!bad)
		return n;
	for (uint64_t i = 0; i < n; i++)
		if ((uint64_t)(int64_t)dst[i] >= n_cols || dst[i] < 0)
			return i;
	return 0; /* an int64 id truncated into range: still out of range */
}

/* Copy a row's pieces of one dataset out of staging, converting. */
static uint64_t gather_vals(float *dst, const scf__piece *pc, uint64_t np,
                            const uint8_t *staging, scf__dtype t)
{
	uint64_t k = 0;

	for (uint64_t i = 0; i < np; i++) {
		uint64_t n = pc[i].nbytes / t.size;
		if (pc[i].file_off == SCF__NO_FILE)
			memset(dst + k, 0, n * sizeof(float));
		else
			to_f32(dst + k, staging + pc[i].staging_off, n, t);
		k += n;
	}
	return k;
}

static int gather_idx(int32_t *dst, const scf__piece *pc, uint64_t np,
                      const uint8_t *staging, scf__dtype t, uint64_t n_cols)
{
	uint64_t k = 0;

	for (uint64_t i = 0; i < np; i++) {
		uint64_t n = pc[i].nbytes / t.size;
		if (pc[i].file_off == SCF__NO_FILE ||
		    to_i32(dst + k, staging + pc[i].staging_off, n, t, n_cols) != n)
			return -1;
		k += n;
	}
	return 0;
}

/* Arena layout, shared by the size computation and the assembly. */
typedef struct layout {
	size_t row_ids, indptr, indices, data, total;
} layout;

static layout plan_layout(const scf__matrix *m, const scf__plan *p, uint64_t n,
                          uint32_t bs, int output)
{
	uint64_t nb = (n + bs - 1) / bs;
	uint64_t nnz = m->encoding == SCF__DENSE ? n * m->n_cols : p->nnz;
	layout L;

	L.row_ids = 0;
	L.indptr = L.row_ids + n * sizeof(uint64_t);
	if (output == SCF_OUTPUT_DENSE) {
		L.indices = L.indptr;
		L.data = L.indptr;
		L.total = L.data + n * m->n_cols * sizeof(float);
	} else {
		L.indices = L.indptr + (n + nb) * sizeof(int64_t);
		L.data = L.indices + (nnz * sizeof(int32_t) + 63) / 64 * 64;
		L.total = L.data + nnz * sizeof(float);
	}
	L.total = (L.total + 4095) / 4096 * 4096;
	return L;
}

size_t scf__assemble_bytes(const scf__matrix *m, const scf__plan *p, uint64_t n_rows,
                           uint32_t batch_size, int output)
{
	return plan_layout(m, p, n_rows, batch_size, output).total;
}

/* One row into a CSR batch; returns entries written or -1 on a bad index. */
static int64_t row_csr(const scf__matrix *m, const scf__plan *p, uint64_t k,
                       const uint8_t *staging, int32_t *idx, float *val,
                       scf__scratch *sc)
{
	const scf__piece *dp = p->dpiece + p->drow[k];
	uint64_t ndp = p->drow[k + 1] - p->drow[k];

	if (m->encoding == SCF__DENSE) {
		uint64_t n = gather_vals(sc->vals, dp, ndp, staging, m->data.type), w = 0;
		for (uint64_t c = 0; c < n; c++) {
			if (sc->vals[c] != 0.0f) {
				idx[w] = (int32_t)c;
				val[w++] = sc->vals[c];
			}
		}
		return (int64_t)w;
	}
	const scf__piece *ip = p->ipiece + p->irow[k];
	if (gather_idx(idx, ip, p->irow[k + 1] - p->irow[k], staging, m->indices.type,
	               m->n_cols) < 0)
		return -1;
	return (int64_t)gather_vals(val, dp, ndp, staging, m->data.type);
}

/* One row into a dense batch row of n_cols floats. */
static int row_dense(const scf__matrix *m, const scf__plan *p, uint64_t k,
                     const uint8_t *staging, float *out, scf__scratch *sc)
{
	const scf__piece *dp = p->dpiece + p->drow[k];
	uint64_t ndp = p->drow[k + 1] - p->drow[k];

	if (m->encoding == SCF__DENSE) {
		gather_vals(out, dp, ndp, staging, m->data.type);
		return 0;
	}
	const scf__piece *ip = p->ipiece + p->irow[k];
	uint64_t nnz = gather_vals(sc->vals, dp, ndp, staging, m->data.type);
	if (gather_idx(sc->idx, ip, p->irow[k + 1] - p->irow[k], staging, m->indices.type,
	               m->n_cols) < 0)
		return -1;
	memset(out, 0, m->n_cols * sizeof(float));
	for (uint64_t i = 0; i < nnz; i++)
		out[sc->idx[i]] = sc->vals[i];
	return 0;
}

int scf__assemble(const scf__matrix *m, const scf__plan *p, const scf__fetch_order *o,
                  const uint8_t *staging, uint32_t bs, int output,
                  uint8_t *arena, scf_batch *batch, uint32_t *n_batch,
                  scf__scratch *sc, char *err, size_t errlen)
{
	layout L = plan_layout(m, p, o->n, bs, output);
	uint64_t *row_ids = (uint64_t *)(arena + L.row_ids);
	int64_t *indptr = (int64_t *)(arena + L.indptr);
	int32_t *indices = (int32_t *)(arena + L.indices);
	float *data = (float *)(arena + L.data);
	uint64_t pos = 0, nb = 0, cursor = 0;

	while (pos < o->n_deliver) {
		scf_batch *b = &batch[nb];
		uint64_t n = o->n_deliver - pos < bs ? o->n_deliver - pos : bs;
		memset(b, 0, sizeof(*b));
		b->n_rows = n;
		b->n_cols = m->n_cols;
		b->output = (uint32_t)output;
		b->row_ids = row_ids + pos;
		if (output == SCF_OUTPUT_DENSE) {
			b->data = data + pos * m->n_cols;
		} else {
			b->indptr = indptr + pos + nb;
			b->indices = indices + cursor;
			b->data = data + cursor;
			b->indptr[0] = 0;
		}
		for (uint64_t j = 0; j < n; j++) {
			uint64_t k = o->perm[pos + j];
			int64_t w = 0;
			b->row_ids[j] = o->rows[k];
			if (output == SCF_OUTPUT_DENSE)
				w = row_dense(m, p, k, staging, b->data + j * m->n_cols, sc);
			else
				w = row_csr(m, p, k, staging, b->indices + b->indptr[j],
				            b->data + b->indptr[j], sc);
			if (w < 0) {
				snprintf(err, errlen, "%s: %s: row %llu has a column index outside "
				         "[0, %llu)", m->path, m->indices.name,
				         (unsigned long long)o->rows[k], (unsigned long long)m->n_cols);
				return SCF_E_CORRUPT;
			}
			if (output != SCF_OUTPUT_DENSE)
				b->indptr[j + 1] = b->indptr[j] + w;
		}
		if (output != SCF_OUTPUT_DENSE) {
			b->nnz = (uint64_t)b->indptr[n];
			cursor += b->nnz;
		} else {
			b->nnz = n * m->n_cols;
		}
		pos += n;
		nb++;
	}
	*n_batch = (uint32_t)nb;
	return 0;
}
