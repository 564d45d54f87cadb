/*
 * tools/synth — a realistic synthetic .h5ad for demos and benchmarks, in the
 * layout anndata writes (CSR in chunked, resizable datasets; categorical obs),
 * generated and written in slices of cells so memory stays bounded.
 * Thread: the caller's; HDF5 is not thread-safe in Debian's build.
 */
#include "tools/synth.h"
#include "tools/h5util.h"

#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Model constants: a Zipf-like gene popularity, cell-line marker genes, NB counts. */
#define POP_EXPONENT 0.9     /* gene weight ~ 1 / (rank + POP_OFFSET)^POP_EXPONENT */
#define POP_OFFSET 8.0
#define MARKERS 100          /* genes favoured by each cell line */
#define MARKER_SHIFT 4       /* one draw in 2^4 goes to the cell line's markers */
#define MARKER_BOOST 3.0     /* and markers are expressed this much higher */
#define NB_THETA 2.0         /* negative-binomial size (gamma shape) */
#define MIN_NNZ 50
#define MAX_CODES INT16_MAX  /* categorical codes are int8 or int16 */
#define DATA_SLICE (8u << 20)  /* bytes buffered per X dataset before a write */
#define CELL_SLICE (1u << 20)  /* bytes buffered per per-cell dataset */
#define NAME_BLOCK 65536       /* strings per write of a string array */
#define CODE_CHUNK 65536       /* elements per chunk of obs codes */

/* ---- random numbers: one generator, owned by the writer, no global state ---- */

typedef struct rng {
	uint64_t s[4];
	double spare;
	int has_spare;
} rng;

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
	r->has_spare = 0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256**: a few ns per draw, which matters at 10^8 draws per file. */
static inline uint64_t rng_next(rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
	s[2] ^= t; s[3] = rotl(s[3], 45);
	return out;
}

/* Uniform in (0, 1]: safe to take the log of. */
static inline double rng_unit(rng *r)
{
	return (double)((rng_next(r) >> 11) + 1) * 0x1.0p-53;
}

static inline uint64_t rng_below(rng *r, uint64_t n)
{
	return rng_next(r) % n;
}

/* Standard normal (Marsaglia's polar method; keeps the second value). */
static double rng_normal(rng *r)
{
	double u, v, q;

	if (r->has_spare) {
		r->has_spare = 0;
		return r->spare;
	}
	do {
		u = 2.0 * rng_unit(r) - 1.0;
		v = 2.0 * rng_unit(r) - 1.0;
		q = u * u + v * v;
	} while (q >= 1.0 || q == 0.0);
	q = sqrt(-2.0 * log(q) / q);
	r->spare = v * q;
	r->has_spare = 1;
	return u * q;
}

/* Gamma(NB_THETA, 1) by Marsaglia and Tsang (shape >= 1). */
static double rng_gamma(rng *r)
{
	const double d = NB_THETA - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);

	for (;;) {
		double x = rng_normal(r), v = 1.0 + c * x, u;
		if (v <= 0.0)
			continue;
		v = v * v * v;
		u = rng_unit(r);
		if (u < 1.0 - 0.0331 * x * x * x * x ||
		    log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
			return d * v;
	}
}

/* Poisson: inversion for the small means that dominate, normal beyond. */
static uint32_t rng_poisson(rng *r, double lambda)
{
	if (lambda < 30.0) {
		double limit = exp(-lambda), p = rng_unit(r);
		uint32_t k = 0;
		while (p > limit) {
			p *= rng_unit(r);
			k++;
		}
		return k;
	}
	double x = lambda + sqrt(lambda) * rng_normal(r) + 0.5;
	return x < 0.0 ? 0 : (uint32_t)x;
}

/* ---- the expression model ---- */

typedef struct model {
	uint64_t n_genes, n_words;
	uint32_t *alias, *thresh; /* Vose alias table over gene popularity */
	float *mu;                /* mean count per gene, before cell scaling */
	uint32_t *markers;        /* n_labels x MARKERS */
	uint64_t *chosen;         /* bit set: genes of the current cell */
	uint64_t *is_marker;      /* bit set: markers of the current cell line */
	uint32_t *spare;          /* unchosen genes, for the rare very dense cell */
	const uint32_t *line_markers;
} model;

/* Vose's alias method: O(1) draws from the skewed popularity. */
static int build_alias(model *m, const double *w, double total)
{
	uint64_t n = m->n_genes, ns = 0, nl = 0;
	double *p = malloc(n * sizeof(double));
	uint32_t *small = malloc(n * sizeof(uint32_t)), *large = malloc(n * sizeof(uint32_t));

	if (!p || !small || !large) {
		free(p);
		free(small);
		free(large);
		return -1;
	}
	for (uint64_t i = 0; i < n; i++) {
		p[i] = w[i] * (double)n / total;
		if (p[i] < 1.0)
			small[ns++] = (uint32_t)i;
		else
			large[nl++] = (uint32_t)i;
	}
	while (ns && nl) {
		uint32_t s = small[--ns], l = large[--nl];
		m->thresh[s] = (uint32_t)fmin(p[s] * 0x1.0p32, (double)UINT32_MAX);
		m->alias[s] = l;
		p[l] -= 1.0 - p[s];
		if (p[l] < 1.0)
			small[ns++] = l;
		else
			large[nl++] = l;
	}
	while (ns || nl) {
		uint32_t i = ns ? small[--ns] : large[--nl];
		m->thresh[i] = UINT32_MAX;
		m->alias[i] = i;
	}
	free(p);
	free(small);
	free(large);
	return 0;
}

/*
 * Popularity: genes in a random order get Zipf-like weights, so a few are
 * in almost every cell and most are rare; popular genes also count higher.
 * Each cell line favours its own marker genes, which makes labels learnable.
 */
static int model_init(model *m, rng *r, uint64_t n_genes, uint32_t n_lines)
{
	uint32_t *order = malloc(n_genes * sizeof(uint32_t));
	double *w = malloc(n_genes * sizeof(double)), total = 0.0, top;
	int rc = -1;

	memset(m, 0, sizeof(*m));
	m->n_genes = n_genes;
	m->n_words = (n_genes + 63) / 64;
	m->alias = malloc(n_genes * sizeof(uint32_t));
	m->thresh = malloc(n_genes * sizeof(uint32_t));
	m->mu = malloc(n_genes * sizeof(float));
	m->markers = malloc((uint64_t)n_lines * MARKERS * sizeof(uint32_t));
	m->chosen = calloc(m->n_words, sizeof(uint64_t));
	m->is_marker = calloc(m->n_words, sizeof(uint64_t));
	m->spare = malloc(n_genes * sizeof(uint32_t));
	if (!order || !w || !m->alias || !m->thresh || !m->mu || !m->markers || !m->chosen ||
	    !m->is_marker || !m->spare)
		goto out;
	for (uint64_t i = 0; i < n_genes; i++)
		order[i] = (uint32_t)i;
	for (uint64_t i = n_genes - 1; i > 0; i--) {
		uint64_t j = rng_below(r, i + 1);
		uint32_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (uint64_t rank = 0; rank < n_genes; rank++) {
		w[order[rank]] = pow((double)rank + POP_OFFSET, -POP_EXPONENT);
		total += w[order[rank]];
	}
	top = pow(POP_OFFSET, -POP_EXPONENT);
	for (uint64_t g = 0; g < n_genes; g++)
		m->mu[g] = (float)(0.2 + 6.0 * sqrt(w[g] / top));
	for (uint64_t i = 0; i < (uint64_t)n_lines * MARKERS; i++)
		m->markers[i] = (uint32_t)rng_below(r, n_genes);
	rc = build_alias(m, w, total);
out:
	free(order);
	free(w);
	return rc;
}

static void model_free(model *m)
{
	free(m->alias);
	free(m->thresh);
	free(m->mu);
	free(m->markers);
	free(m->chosen);
	free(m->is_marker);
	free(m->spare);
	memset(m, 0, sizeof(*m));
}

static inline int bit_test(const uint64_t *b, uint32_t i) { return (int)(b[i >> 6] >> (i & 63)) & 1; }
static inline void bit_set(uint64_t *b, uint32_t i) { b[i >> 6] |= 1ULL << (i & 63); }

/* A new cell line: its markers replace the previous line's in the bit set. */
static void model_set_line(model *m, uint32_t line)
{
	if (m->line_markers)
		for (int i = 0; i < MARKERS; i++)
			m->is_marker[m->line_markers[i] >> 6] = 0;
	m->line_markers = m->markers + (uint64_t)line * MARKERS;
	for (int i = 0; i < MARKERS; i++)
		bit_set(m->is_marker, m->line_markers[i]);
}

/* One draw from the line-shifted popularity; independent bit fields of one word. */
static inline uint32_t draw_gene(const model *m, rng *r)
{
	uint64_t x = rng_next(r);

	if ((x & ((1u << MARKER_SHIFT) - 1)) == 0)
		return m->line_markers[(x >> 32) % MARKERS];
	uint32_t i = (uint32_t)(((x >> 36) * m->n_genes) >> 28);
	return (uint32_t)(x >> 4) < m->thresh[i] ? i : m->alias[i];
}

/*
 * The rare cell that wants most genes would spin on rejections: finish it
 * uniformly among the genes not yet chosen (O(n_genes), but rare).
 */
static void fill_uniform(model *m, rng *r, uint64_t need)
{
	uint64_t n = 0;

	for (uint32_t g = 0; g < m->n_genes; g++)
		if (!bit_test(m->chosen, g))
			m->spare[n++] = g;
	for (uint64_t i = 0; i < need; i++) {
		uint64_t j = i + rng_below(r, n - i);
		uint32_t g = m->spare[j];
		m->spare[j] = m->spare[i];
		bit_set(m->chosen, g);
	}
}

/*
 * k distinct genes, sorted, into out: rejection sampling into a bit set,
 * then one scan of the set's words yields them in order (no sort).
 */
static void choose_genes(model *m, rng *r, uint64_t k, int32_t *out)
{
	uint64_t have = 0, tries = 0, limit = 4 * k + 256;

	while (have < k && tries++ < limit) {
		uint32_t g = draw_gene(m, r);
		if (!bit_test(m->chosen, g)) {
			bit_set(m->chosen, g);
			have++;
		}
	}
	if (have < k)
		fill_uniform(m, r, k - have);
	for (uint64_t w = 0, j = 0; w < m->n_words; w++) {
		uint64_t bits = m->chosen[w];
		m->chosen[w] = 0;
		while (bits) {
			out[j++] = (int32_t)(w * 64 + (uint64_t)__builtin_ctzll(bits));
			bits &= bits - 1;
		}
	}
}

/* Counts: 1 + gamma-Poisson (NB) with the gene's mean, scaled by cell depth. */
static void draw_counts(const model *m, rng *r, const int32_t *genes, uint64_t k,
                        double depth, float *out)
{
	for (uint64_t i = 0; i < k; i++) {
		uint32_t g = (uint32_t)genes[i];
		double mean = m->mu[g] * depth * (bit_test(m->is_marker, g) ? MARKER_BOOST : 1.0);
		out[i] = (float)(1 + rng_poisson(r, rng_gamma(r) * mean / NB_THETA));
	}
}

/* ---- the writer ---- */

/* A 1-D chunked, resizable dataset, filled through a buffer and written in whole chunks. */
typedef struct appender {
	const char *name;
	hid_t dset, mtype;
	size_t esize;
	uint64_t chunk, slice, cap, n, written;
	char *buf;
} appender;

typedef struct synth {
	const char *path;
	char *err;
	size_t errlen;
	FILE *progress;
	scf_synth_opts o;
	rng r;
	model m;
	hid_t file;
	int created;
	appender data, indices, indptr, plate, line;
	double *plate_w, *line_w, total_w;
	double t0;
} synth;

/* The innermost HDF5 message, which is the specific one ("errno = 28, ..."). */
static herr_t first_message(unsigned n, const H5E_error2_t *e, void *buf)
{
	(void)n;
	snprintf(buf, 256, "%s", e->desc ? e->desc : "");
	return 1;
}

/* err = "path: what[ (HDF5: detail)]"; returns -1 for `return fail(...)`. */
static int fail(synth *s, const char *fmt, ...)
{
	char what[512], detail[256] = "";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_message, detail);
	if (detail[0])
		snprintf(s->err, s->errlen, "%s: %s (HDF5: %s)", s->path, what, detail);
	else
		snprintf(s->err, s->errlen, "%s: %s", s->path, what);
	H5Eclear2(H5E_DEFAULT);
	return -1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A group with anndata's encoding markers. */
static hid_t make_group(synth *s, hid_t parent, const char *name, const char *type,
                        const char *version)
{
	hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);

	if (g < 0 || h5u_attr_encoding(g, type, version) < 0) {
		h5u_put(g);
		fail(s, "cannot create group %s", name);
		return -1;
	}
	return g;
}

/*
 * Chunked with unlimited max shape, as anndata writes X; the chunk cache is
 * off because only whole chunks are ever written.
 */
static int app_open(synth *s, appender *a, hid_t grp, const char *name, hid_t ftype,
                    hid_t mtype, uint64_t chunk, size_t slice_bytes, uint64_t max_add, int deflate)
{
	hsize_t zero = 0, unlimited = H5S_UNLIMITED, dim = chunk;
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), dapl = H5Pcreate(H5P_DATASET_ACCESS);
	hid_t sp = H5Screate_simple(1, &zero, &unlimited);

	a->name = name;
	a->mtype = mtype;
	a->esize = H5Tget_size(mtype);
	a->chunk = chunk;
	a->slice = (slice_bytes / a->esize + chunk - 1) / chunk * chunk;
	a->cap = a->slice + chunk + max_add;
	a->n = a->written = 0;
	a->buf = malloc(a->cap * a->esize);
	a->dset = -1;
	if (a->buf && dcpl >= 0 && dapl >= 0 && sp >= 0 && H5Pset_chunk(dcpl, 1, &dim) >= 0 &&
	    (!deflate || H5Pset_deflate(dcpl, (unsigned)deflate) >= 0) &&
	    H5Pset_chunk_cache(dapl, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0, 1.0) >= 0)
		a->dset = H5Dcreate2(grp, name, ftype, sp, H5P_DEFAULT, dcpl, dapl);
	h5u_put(sp);
	h5u_put(dapl);
	h5u_put(dcpl);
	if (a->dset < 0)
		return fail(s, a->buf ? "cannot create dataset %s" : "out of memory for %s", name);
	return 0;
}

static inline void *app_tail(appender *a)
{
	return a->buf + a->n * a->esize;
}

/* Extend the dataset and write the buffered whole chunks (all of it when last). */
static int app_flush(synth *s, appender *a, int last)
{
	hsize_t start = a->written, count = last ? a->n : a->n / a->chunk * a->chunk;
	hsize_t size = start + count;
	hid_t fs = -1, ms = -1;
	int rc = -1;

	if (count == 0)
		return 0;
	if (H5Dset_extent(a->dset, &size) >= 0 && (fs = H5Dget_space(a->dset)) >= 0 &&
	    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL) >= 0 &&
	    (ms = H5Screate_simple(1, &count, NULL)) >= 0 &&
	    H5Dwrite(a->dset, a->mtype, ms, fs, H5P_DEFAULT, a->buf) >= 0)
		rc = 0;
	h5u_put(ms);
	h5u_put(fs);
	if (rc < 0)
		return fail(s, "cannot write %s at element %llu", a->name, (unsigned long long)start);
	memmove(a->buf, a->buf + count * a->esize, (a->n - count) * a->esize);
	a->n -= count;
	a->written += count;
	return 0;
}

/* Keeps room for the next cell: after this, n < slice, and cap >= slice + max_add. */
static inline int app_room(synth *s, appender *a)
{
	return a->n >= a->slice ? app_flush(s, a, 0) : 0;
}

static void app_close(appender *a)
{
	h5u_put(a->dset);
	a->dset = -1;
	free(a->buf);
	a->buf = NULL;
}

/* A string array, prefix + number, written in blocks so memory stays bounded. */
static int write_names(synth *s, hid_t grp, const char *name, const char *prefix, int digits,
                       uint64_t n)
{
	enum { WIDTH = 32 };
	hsize_t dims = n;
	char *text = malloc((size_t)NAME_BLOCK * WIDTH);
	const char **ptr = malloc(NAME_BLOCK * sizeof(*ptr));
	hid_t t = h5u_vlen_str(), fs = H5Screate_simple(1, &dims, NULL), d = -1;
	int rc = -1;

	if (text && ptr && t >= 0 && fs >= 0)
		d = H5Dcreate2(grp, name, t, fs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	if (d >= 0 && h5u_attr_encoding(d, "string-array", "0.2.0") >= 0)
		rc = 0;
	for (uint64_t i = 0; rc == 0 && i < n; i += NAME_BLOCK) {
		hsize_t start = i, count = n - i < NAME_BLOCK ? n - i : NAME_BLOCK;
		hid_t ms = H5Screate_simple(1, &count, NULL);
		for (uint64_t j = 0; j < count; j++) {
			ptr[j] = text + j * WIDTH;
			snprintf(text + j * WIDTH, WIDTH, "%s%0*" PRIu64, prefix, digits, i + j);
		}
		if (ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
		    H5Dwrite(d, t, ms, fs, H5P_DEFAULT, ptr) < 0)
			rc = -1;
		h5u_put(ms);
	}
	h5u_put(d);
	h5u_put(fs);
	h5u_put(t);
	free(ptr);
	free(text);
	return rc < 0 ? fail(s, "cannot write string array %s", name) : 0;
}

/* A categorical obs column: codes stream per cell, categories are written now. */
static int open_categorical(synth *s, hid_t obs, const char *name, appender *codes,
                            const char *prefix, int digits, uint32_t n)
{
	hid_t g = make_group(s, obs, name, "categorical", "0.2.0");
	hid_t ft = n <= INT8_MAX ? H5T_STD_I8LE : H5T_STD_I16LE;
	int rc = -1;

	if (g >= 0 && h5u_attr_false(g, "ordered") < 0)
		fail(s, "cannot write obs/%s attributes", name);
	else if (g >= 0 && write_names(s, g, "categories", prefix, digits, n) == 0 &&
	         app_open(s, codes, g, "codes", ft, H5T_NATIVE_INT16, CODE_CHUNK, CELL_SLICE, 1, 0) == 0)
		rc = h5u_attr_encoding(codes->dset, "array", "0.2.0") < 0
		         ? fail(s, "cannot write obs/%s/codes attributes", name) : 0;
	h5u_put(g);
	return rc;
}

/*
 * X as a csr_matrix group; data, indices and indptr stream as cells are made.
 * Deflate, when asked for, applies to X only: that is what benchmarks read.
 */
static int open_x(synth *s)
{
	int64_t shape[2] = { (int64_t)s->o.n_cells, (int64_t)s->o.n_genes };
	uint64_t chunk = s->o.chunk, g = s->o.n_genes;
	hid_t x = make_group(s, s->file, "X", "csr_matrix", "0.1.0");
	int rc = -1;

	if (x >= 0 && h5u_attr_array(x, "shape", H5T_STD_I64LE, H5T_NATIVE_INT64, shape, 2) < 0)
		fail(s, "cannot write X attributes");
	else if (x >= 0 &&
	         app_open(s, &s->data, x, "data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, chunk,
	                  DATA_SLICE, g, s->o.deflate) == 0 &&
	         app_open(s, &s->indices, x, "indices", H5T_STD_I32LE, H5T_NATIVE_INT32, chunk,
	                  DATA_SLICE, g, s->o.deflate) == 0 &&
	         app_open(s, &s->indptr, x, "indptr", H5T_STD_I64LE, H5T_NATIVE_INT64, chunk,
	                  CELL_SLICE, 1, s->o.deflate) == 0)
		rc = 0;
	h5u_put(x);
	return rc;
}

/* obs: a DataFrame with categorical `plate` and `cell_line`; its index comes last. */
static int open_obs(synth *s)
{
	static const char *const columns[] = { "plate", "cell_line" };
	hid_t t = h5u_vlen_str(), obs = make_group(s, s->file, "obs", "dataframe", "0.2.0");
	int rc = -1;

	if (obs >= 0 && (t < 0 || h5u_attr_str(obs, "_index", "_index") < 0 ||
	                 h5u_attr_array(obs, "column-order", t, t, columns, 2) < 0))
		fail(s, "cannot write obs attributes");
	else if (obs >= 0 &&
	         open_categorical(s, obs, "plate", &s->plate, "plate", 0, s->o.n_plates) == 0 &&
	         open_categorical(s, obs, "cell_line", &s->line, "line", 2, s->o.n_labels) == 0)
		rc = 0;
	h5u_put(obs);
	h5u_put(t);
	return rc;
}

/* The file, X and obs open; everything per cell can now stream. */
static int create_layout(synth *s)
{
	s->file = H5Fcreate(s->path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	if (s->file < 0)
		return fail(s, "cannot create the file");
	s->created = 1;
	if (h5u_attr_encoding(s->file, "anndata", "0.1.0") < 0)
		return fail(s, "cannot write the root attributes");
	return open_x(s) < 0 || open_obs(s) < 0 ? -1 : 0;
}

/* var (gene names, no columns), the obs index, and the empty dicts anndata writes. */
static int write_rest(synth *s)
{
	static const char *const dicts[] = { "layers", "obsm", "obsp", "varm", "varp", "uns" };
	hid_t obs = H5Gopen2(s->file, "obs", H5P_DEFAULT);
	hid_t var = make_group(s, s->file, "var", "dataframe", "0.2.0");
	int rc = -1;

	if (obs < 0 || var < 0)
		fail(s, "cannot open obs and var");
	else if (h5u_attr_str(var, "_index", "_index") < 0 ||
	         h5u_attr_array(var, "column-order", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, NULL, 0) < 0)
		fail(s, "cannot write var attributes");
	else if (write_names(s, obs, "_index", "cell", 0, s->o.n_cells) == 0 &&
	         write_names(s, var, "_index", "G", 5, s->o.n_genes) == 0)
		rc = 0;
	h5u_put(var);
	h5u_put(obs);
	for (size_t i = 0; rc == 0 && i < sizeof(dicts) / sizeof(dicts[0]); i++) {
		hid_t g = make_group(s, s->file, dicts[i], "dict", "0.1.0");
		rc = g < 0 ? -1 : 0;
		h5u_put(g);
	}
	return rc;
}

/* Group sizes: Zipf-like over cell lines, mildly uneven over plates. */
static int init_groups(synth *s)
{
	double pt = 0.0, lt = 0.0;

	s->plate_w = malloc(s->o.n_plates * sizeof(double));
	s->line_w = malloc(s->o.n_labels * sizeof(double));
	if (!s->plate_w || !s->line_w)
		return fail(s, "out of memory");
	for (uint32_t p = 0; p < s->o.n_plates; p++)
		pt += s->plate_w[p] = pow(p + 1.0, -0.3);
	for (uint32_t l = 0; l < s->o.n_labels; l++)
		lt += s->line_w[l] = pow(l + 1.0, -0.8);
	s->total_w = pt * lt;
	return 0;
}

/* Where cells sorted by (plate, cell_line) move on to the next group. */
typedef struct group_cursor {
	uint32_t plate, line;
	uint64_t end;  /* first cell past this group */
	double cum;    /* weight of the groups before this one */
} group_cursor;

static void group_end(const synth *s, group_cursor *c)
{
	double w = c->cum + s->plate_w[c->plate] * s->line_w[c->line];
	int last = c->plate + 1 == s->o.n_plates && c->line + 1 == s->o.n_labels;
	double e = (double)s->o.n_cells * w / s->total_w;

	c->end = last || e >= (double)s->o.n_cells ? s->o.n_cells : (uint64_t)llround(e);
}

static void group_next(synth *s, group_cursor *c)
{
	c->cum += s->plate_w[c->plate] * s->line_w[c->line];
	if (++c->line == s->o.n_labels) {
		c->line = 0;
		c->plate++;
	}
	model_set_line(&s->m, c->line);
	group_end(s, c);
}

/* Non-zeros of one cell: log-normal around the median, within [50, n_genes]. */
static uint64_t cell_nnz(synth *s)
{
	double k = s->o.median_nnz * exp(s->o.sigma_nnz * rng_normal(&s->r));
	uint64_t lo = s->o.n_genes < MIN_NNZ ? s->o.n_genes : MIN_NNZ;

	if (k < (double)lo)
		return lo;
	return k > (double)s->o.n_genes ? s->o.n_genes : (uint64_t)llround(k);
}

static void report(synth *s, uint64_t cells, uint64_t nnz)
{
	if (s->progress)
		fprintf(s->progress, "  %3.0f%%  %" PRIu64 " of %" PRIu64 " cells, %.1fM non-zeros, %.1f s\n",
		        100.0 * (double)cells / (double)s->o.n_cells, cells, s->o.n_cells,
		        (double)nnz / 1e6, now_s() - s->t0);
}

/* One cell appended to every per-cell dataset. */
static int write_cell(synth *s, const group_cursor *c, uint64_t *nnz)
{
	uint64_t k = cell_nnz(s);
	int32_t *genes = app_tail(&s->indices);

	choose_genes(&s->m, &s->r, k, genes);
	draw_counts(&s->m, &s->r, genes, k, sqrt((double)k / s->o.median_nnz), app_tail(&s->data));
	s->indices.n += k;
	s->data.n += k;
	*nnz += k;
	*(int64_t *)app_tail(&s->indptr) = (int64_t)*nnz;
	*(int16_t *)app_tail(&s->plate) = (int16_t)c->plate;
	*(int16_t *)app_tail(&s->line) = (int16_t)c->line;
	s->indptr.n++;
	s->plate.n++;
	s->line.n++;
	return app_room(s, &s->data) < 0 || app_room(s, &s->indices) < 0 ||
	       app_room(s, &s->indptr) < 0 || app_room(s, &s->plate) < 0 ||
	       app_room(s, &s->line) < 0 ? -1 : 0;
}

/* All cells, in (plate, cell_line) order, then the buffered tails. */
static int write_cells(synth *s)
{
	group_cursor c = { 0, 0, 0, 0.0 };
	uint64_t nnz = 0, step = s->o.n_cells / 10 ? s->o.n_cells / 10 : 1;

	*(int64_t *)app_tail(&s->indptr) = 0;
	s->indptr.n++;
	model_set_line(&s->m, 0);
	group_end(s, &c);
	for (uint64_t cell = 0; cell < s->o.n_cells; cell++) {
		while (cell >= c.end)
			group_next(s, &c);
		if (write_cell(s, &c, &nnz) < 0)
			return -1;
		if ((cell + 1) % step == 0)
			report(s, cell + 1, nnz);
	}
	return app_flush(s, &s->data, 1) < 0 || app_flush(s, &s->indices, 1) < 0 ||
	       app_flush(s, &s->indptr, 1) < 0 || app_flush(s, &s->plate, 1) < 0 ||
	       app_flush(s, &s->line, 1) < 0 ? -1 : 0;
}

/* Defaults for zero fields, and refusals for what the layout cannot hold. */
static int set_options(synth *s, const scf_synth_opts *o)
{
	scf_synth_opts d = o ? *o : (scf_synth_opts){ 0 };

	d.n_cells = d.n_cells ? d.n_cells : 100000;
	d.n_genes = d.n_genes ? d.n_genes : 20000;
	d.median_nnz = d.median_nnz != 0.0 ? d.median_nnz : 2000.0;
	d.sigma_nnz = d.sigma_nnz != 0.0 ? d.sigma_nnz : 0.5;
	d.n_labels = d.n_labels ? d.n_labels : 50;
	d.n_plates = d.n_plates ? d.n_plates : 1;
	d.chunk = d.chunk ? d.chunk : 65536;
	s->o = d;
	if (d.n_genes > INT32_MAX)
		return fail(s, "n_genes %" PRIu64 " does not fit int32 indices", d.n_genes);
	if (d.n_cells > INT64_MAX / 2 || d.chunk > (1ULL << 28))
		return fail(s, "n_cells or chunk out of range");
	if (!(d.median_nnz > 0.0) || !(d.sigma_nnz > 0.0) || !isfinite(d.median_nnz) ||
	    !isfinite(d.sigma_nnz))
		return fail(s, "median_nnz and sigma_nnz must be positive");
	if (d.n_labels > MAX_CODES || d.n_plates > MAX_CODES)
		return fail(s, "n_labels and n_plates must be at most %d", MAX_CODES);
	if (d.deflate < 0 || d.deflate > 9)
		return fail(s, "deflate level %d is not in 0..9", d.deflate);
	return 0;
}

/* Closes everything; a failed close (the final flush to disk) is an error. */
static int synth_close(synth *s, int rc)
{
	appender *apps[] = { &s->data, &s->indices, &s->indptr, &s->plate, &s->line };

	for (size_t i = 0; i < sizeof(apps) / sizeof(apps[0]); i++)
		app_close(apps[i]);
	if (s->file >= 0 && H5Fclose(s->file) < 0 && rc == 0)
		rc = fail(s, "cannot close the file");
	if (rc < 0 && s->created)
		unlink(s->path);
	model_free(&s->m);
	free(s->plate_w);
	free(s->line_w);
	return rc;
}

int scf_synth_write(const char *path, const scf_synth_opts *o, FILE *progress, char *err,
                    size_t errlen)
{
	synth s = { .path = path, .err = err, .errlen = errlen, .progress = progress, .file = -1,
	            .data.dset = -1, .indices.dset = -1, .indptr.dset = -1, .plate.dset = -1,
	            .line.dset = -1 };
	h5u_quiet quiet;
	int rc;

	h5u_quiet_on(&quiet);
	s.t0 = now_s();
	rc = set_options(&s, o);
	if (rc == 0) {
		rng_seed(&s.r, s.o.seed);
		if (model_init(&s.m, &s.r, s.o.n_genes, s.o.n_labels) < 0)
			rc = fail(&s, "out of memory for the model of %" PRIu64 " genes", s.o.n_genes);
	}
	if (rc == 0 && (init_groups(&s) < 0 || create_layout(&s) < 0 || write_cells(&s) < 0 ||
	                write_rest(&s) < 0))
		rc = -1;
	rc = synth_close(&s, rc);
	h5u_quiet_off(&quiet);
	return rc;
}
