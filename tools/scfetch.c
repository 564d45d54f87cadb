/*
 * tools/scfetch — the command-line face of the library:
 *   scfetch info FILE... [--matrix KEY]  what the files hold and what the engine reads
 *   scfetch bench FILE... [options]       stream epochs, print throughput and I/O figures
 *                                         (several files: one collection, one index space)
 *   scfetch demo [--dir D] [--cells N]    write a realistic dataset if absent, then bench it
 *   scfetch repack IN OUT [options]       rewrite a matrix with row-sized chunks
 */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "formats/h5ad.h"
#include "formats/obs.h"
#include "scfetch.h"
#include "tools/repack.h"
#include "tools/synth.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds of the whole process (all threads), for cost per GB. */
static double cpu_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
	fprintf(f,
	"usage: scfetch info FILE... [--matrix KEY]\n"
	"       scfetch bench FILE... [options]   (several files are read as one collection)\n"
	"       scfetch demo [--dir DIR] [--cells N] [options]\n"
	"       scfetch repack IN OUT [--matrix KEY] [--chunk-rows N] [--codec zstd|deflate|none]\n"
	"                      [--level L] [--no-shuffle]\n"
	"bench options:\n"
	"  --matrix KEY        X (default), layers/NAME, raw/X\n"
	"  --strategy S        block (default), stream or balanced\n"
	"  --batch N           rows per minibatch (64)\n"
	"  --block LIST        block sizes, comma-separated: one run each (16)\n"
	"  --fetch LIST        fetch factors, comma-separated (16)\n"
	"  --epochs N          epochs per run (1)\n"
	"  --max-batches N     stop a run after N batches (0: whole epochs)\n"
	"  --inflight N        fetches in flight (3)\n"
	"  --qd N              io_uring queue depth (128)\n"
	"  --threads N         decode threads (online cores)\n"
	"  --max-read KIB      largest single read (1024)\n"
	"  --gap KIB           merge extents closer than this (32)\n"
	"  --buffered          page cache instead of O_DIRECT\n"
	"  --dense             dense output\n"
	"  --seed N            base seed (0)\n"
	"  --strategy balanced --balance-obs COL [--total-size N]   class-balanced epochs\n"
	"  --columns LIST      deliver only these genes (var indices)\n"
	"  --rank R --world-size W [--even-ranks]   one rank's share of the epoch\n"
	"       scfetch tune FILE [--label COL] [--min-entropy 0.98] [--batch N]\n"
	"                      (default label: the first categorical obs column)\n"
	"                      probe block_size x fetch_factor, propose the fastest setting\n"
	"                      whose batches keep the label entropy of random sampling\n");
}

/* A bad value of option `opt`: say which, not the whole usage. */
static int bad_value(const char *opt, const char *val, const char *want)
{
	fprintf(stderr, "scfetch: --%s %s: %s\n", opt, val, want);
	return 2;
}

/* A whole decimal number in [lo, hi]; -1 on anything else ("x", "8k", ""). */
static int parse_num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;

	if (!*s || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || *end || x < lo || x > hi)
		return -1;
	*out = x;
	return 0;
}

static const char *const strategy_names[] = {
	[SCF_STRATEGY_STREAMING] = "stream", [SCF_STRATEGY_BLOCK_SHUFFLING] = "block",
	[SCF_STRATEGY_CLASS_BALANCED] = "balanced" };

static const char *strategy_name(uint32_t s)
{
	return s < sizeof(strategy_names) / sizeof(*strategy_names) && strategy_names[s]
	       ? strategy_names[s] : "block";
}

/* A missing or unreadable file is named with the errno reason, before HDF5 sees it. */
static int readable(const char *path)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0) {
		fprintf(stderr, "scfetch: %s: %s\n", path, strerror(errno));
		return 0;
	}
	close(fd);
	return 1;
}

/* Does the file have this object (every link on the way included)? */
static int h5_has(hid_t f, const char *path)
{
	char part[512];

	for (const char *p = strchr(path, '/'); ; p = strchr(p + 1, '/')) {
		size_t n = p ? (size_t)(p - path) : strlen(path);
		if (n >= sizeof(part))
			return 0;
		memcpy(part, path, n);
		part[n] = 0;
		if (H5Lexists(f, part, H5P_DEFAULT) <= 0)
			return 0;
		if (!p)
			return 1;
	}
}

/* After a failed open: when KEY is not in the file, list the matrices that are. */
static void matrix_hint(const char *path, const char *key)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	char names[2048] = "";
	size_t len = 0;

	if (f < 0)
		return;
	if (!h5_has(f, key)) {
		if (h5_has(f, "X"))
			len += snprintf(names + len, sizeof(names) - len, "X");
		hid_t g = h5_has(f, "layers") ? H5Gopen2(f, "layers", H5P_DEFAULT) : -1;
		H5G_info_t gi;
		if (g >= 0 && H5Gget_info(g, &gi) >= 0) {
			for (hsize_t i = 0; i < gi.nlinks && len < sizeof(names) - 64; i++) {
				char n[256];
				if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, n,
				                       sizeof(n), H5P_DEFAULT) > 0)
					len += snprintf(names + len, sizeof(names) - len, "%slayers/%s",
					                len ? ", " : "", n);
			}
		}
		if (g >= 0)
			H5Gclose(g);
		if (h5_has(f, "raw/X") && len < sizeof(names) - 16)
			len += snprintf(names + len, sizeof(names) - len, "%sraw/X", len ? ", " : "");
		fprintf(stderr, "scfetch: %s has no matrix %s; its matrices: %s\n", path, key,
		        len ? names : "none");
	}
	H5Fclose(f);
}

/* `info`: shape, dtypes, layout, chunks, filters, and the verdict. */
static void print_dset(const scf__dset *d)
{
	char nb[32];

	printf("  %-16s %-8s %llu", d->name, scf__dtype_name(d->type),
	       (unsigned long long)d->dims[0]);
	if (d->rank == 2)
		printf(" x %llu", (unsigned long long)d->dims[1]);
	if (d->storage == SCF__CONTIGUOUS) {
		printf("  contiguous at byte %llu", (unsigned long long)d->offset);
	} else {
		printf("  chunked %llu", (unsigned long long)d->chunks.chunk_dims[0]);
		if (d->rank == 2)
			printf(" x %llu", (unsigned long long)d->chunks.chunk_dims[1]);
		printf(", %llu chunks", (unsigned long long)d->chunks.n);
	}
	for (unsigned i = 0; i < d->n_filters; i++)
		printf("%s%s", i ? "+" : ", filters ", scf__filter_name(d->filter[i].id, nb, sizeof(nb)));
	printf("\n");
}

/* Random access to a compressed chunk decodes all of it: say when that hurts. */
static void warn_chunking(const scf__matrix *m)
{
	const scf__dset *d = &m->data;

	if (m->encoding != SCF__CSR || d->storage != SCF__CHUNKED || !d->n_filters || !m->n_rows)
		return;
	double per_row = (double)m->nnz / (double)m->n_rows;
	double rows = per_row > 0 ? (double)d->chunks.chunk_dims[0] / per_row : 0;
	if (rows > 8)
		printf("  warning          each compressed chunk holds ~%.0f rows: reading one random "
		       "row decodes ~%.0fx what it delivers;\n                   `scfetch repack "
		       "--chunk-rows 4` makes random access cheap\n", rows, rows);
}

static int info_one(const char *path, const char *key)
{
	char err[1024];
	scf__matrix m;
	int rc;

	if (!readable(path))
		return 1;
	rc = scf__h5ad_open(&m, path, key, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "scfetch: %s\n", err);
		matrix_hint(path, key);
		return 1;
	}
	printf("%s: %s\n", path, key);
	printf("  encoding         %s\n", m.encoding == SCF__CSR ? "csr_matrix" : "dense");
	printf("  shape            %llu x %llu, %llu stored entries (%.2f%%)\n",
	       (unsigned long long)m.n_rows, (unsigned long long)m.n_cols,
	       (unsigned long long)m.nnz,
	       m.n_rows && m.n_cols ? 100.0 * m.nnz / ((double)m.n_rows * m.n_cols) : 0.0);
	if (m.encoding == SCF__CSR) {
		char name[256];
		snprintf(name, sizeof(name), "%s/indptr", key);
		printf("  %-16s %-8s loaded at open\n", name, scf__dtype_name(m.indptr_type));
		print_dset(&m.data);
		print_dset(&m.indices);
		warn_chunking(&m);
	} else {
		print_dset(&m.data);
	}
	scf__h5ad_free(&m);

	scf_loader *l;
	rc = scf_open(&l, path, &(scf_options){ .size = sizeof(scf_options), .matrix = key },
	              err, sizeof(err));
	printf("  engine           %s%s\n", rc == 0 ? "can read this matrix" : "cannot read: ",
	       rc == 0 ? "" : err);
	scf_close(l);
	return rc == 0 ? 0 : 2;
}

/* Each file, then, for several, what the engine makes of them as one collection. */
static int cmd_info(const char *const *paths, uint32_t n, const char *key)
{
	char err[1024];
	scf_loader *l;
	scf_info info;
	int rc = 0;

	for (uint32_t i = 0; i < n; i++) {
		int r = info_one(paths[i], key);
		rc = rc ? rc : r;
	}
	if (n < 2)
		return rc;
	if (scf_open_collection(&l, paths, n, &(scf_options){ .size = sizeof(scf_options),
	                        .matrix = key }, err, sizeof(err)) < 0) {
		printf("collection of %u files: cannot be read as one: %s\n", n, err);
		return 2;
	}
	scf_info_get(l, &info);
	printf("collection of %u files: %s\n", n, key);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t first, rows;
		scf_file_info(l, i, NULL, &first, &rows);
		printf("  file %-3u         rows %llu..%llu  %s\n", i, (unsigned long long)first,
		       (unsigned long long)(first + rows), paths[i]);
	}
	printf("  total            %llu x %llu, %llu stored entries\n",
	       (unsigned long long)info.n_rows, (unsigned long long)info.n_cols,
	       (unsigned long long)info.nnz);
	scf_close(l);
	return rc;
}

typedef struct bench_cfg {
	scf_options o;
	uint32_t epochs;
	uint64_t max_batches;
} bench_cfg;

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* One run: stream epochs, time each scf_next, print a line of figures. */
static int bench_one(const char *const *paths, uint32_t n_paths, const bench_cfg *c)
{
	char err[1024];
	scf_loader *l;
	scf_info info;
	scf_stats st;
	uint64_t rows = 0, nb = 0, cap = 1 << 16, *waits;
	double t0, t1;
	int rc;

	rc = scf_open_collection(&l, paths, n_paths, &c->o, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "scfetch: %s\n", err);
		for (uint32_t i = 0; i < n_paths; i++)
			matrix_hint(paths[i], c->o.matrix ? c->o.matrix : "X");
		return 1;
	}
	scf_info_get(l, &info);
	waits = malloc(cap * sizeof(*waits));
	/* Runs of several epochs say what they do, then how each epoch went. */
	if (c->epochs > 1)
		printf("%s block %u fetch %u batch %u: %u epochs of %llu batches (%llu cells)\n",
		       strategy_name(c->o.strategy), c->o.block_size, c->o.fetch_factor,
		       c->o.batch_size ? c->o.batch_size : 64, c->epochs,
		       (unsigned long long)info.batches_per_epoch,
		       (unsigned long long)info.rows_per_epoch);
	int tty = isatty(STDOUT_FILENO);
	double cpu0 = cpu_now_s();
	t0 = now_s();
	double last = t0, e0 = t0;
	uint64_t erows = 0;
	for (uint32_t e = 0; e < c->epochs && waits; e++) {
		if (e > 0) {
			double t = now_s();
			printf("%s  epoch %u/%u: %.0f cells/s, %.1f s\n", tty ? "\r\033[K" : "", e,
			       c->epochs, (rows - erows) / (t - e0), t - e0);
			fflush(stdout);
			e0 = t;
			erows = rows;
		}
		for (;;) {
			scf_batch *b;
			double w0 = now_s();
			rc = scf_next(l, &b);
			double w = now_s() - w0;
			if (rc != 0)
				break;
			if (nb == cap) {
				uint64_t *q = realloc(waits, 2 * cap * sizeof(*waits));
				if (!q)
					break;
				waits = q;
				cap *= 2;
			}
			waits[nb++] = (uint64_t)(w * 1e9);
			rows += b->n_rows;
			scf_release(l, b);
			if (tty && now_s() - last > 1.0) { /* progress, on a terminal only */
				last = now_s();
				printf("\r\033[K  epoch %u/%u: %llu cells, %.0f s", e + 1, c->epochs,
				       (unsigned long long)(rows - erows), last - t0);
				fflush(stdout);
			}
			if (c->max_batches && nb >= c->max_batches)
				break;
		}
		if (rc < 0 || (c->max_batches && nb >= c->max_batches))
			break;
	}
	t1 = now_s();
	if (c->epochs > 1 && rc >= 0)
		printf("%s  epoch %u/%u: %.0f cells/s, %.1f s\n", tty ? "\r\033[K" : "", c->epochs,
		       c->epochs, (rows - erows) / (t1 - e0), t1 - e0);
	else if (tty && t1 - t0 > 1.0)
		printf("\r\033[K");
	double cpu_s = cpu_now_s() - cpu0;
	scf_stats_get(l, &st);
	if (rc < 0) {
		fprintf(stderr, "scfetch: %s\n", scf_errmsg(l));
		scf_close(l);
		free(waits);
		return 1;
	}
	qsort(waits, nb, sizeof(*waits), cmp_u64);
	double secs = t1 - t0;
	printf("%-8s block %-5u fetch %-5u batch %-4u | %9.0f cells/s %8.1f MB/s delivered "
	       "%8.1f MB/s read | wait p50 %7.1f us p99 %8.1f us max %8.1f us | "
	       "amp %.2f decode x%.2f reads %llu (%.1f KiB avg) requeued %llu | cpu %.2f s/GB | %s%s\n",
	       strategy_name(c->o.strategy),
	       c->o.block_size, c->o.fetch_factor, c->o.batch_size ? c->o.batch_size : 64,
	       rows / secs, st.bytes_requested / secs / 1e6, st.bytes_read / secs / 1e6,
	       nb ? waits[nb / 2] / 1e3 : 0.0, nb ? waits[(nb * 99) / 100] / 1e3 : 0.0,
	       st.max_wait_ns / 1e3,
	       st.bytes_requested ? (double)st.bytes_read / st.bytes_requested : 0.0,
	       st.bytes_requested ? (double)st.bytes_decoded / st.bytes_requested : 0.0,
	       (unsigned long long)st.reads_submitted,
	       st.reads_submitted ? st.bytes_read / 1024.0 / st.reads_submitted : 0.0,
	       (unsigned long long)st.reads_requeued,
	       st.bytes_requested ? cpu_s / (st.bytes_requested / 1e9) : 0.0,
	       st.direct ? "O_DIRECT" : "buffered", st.pinned ? ", pinned" : ", not pinned");
	fflush(stdout);
	scf_close(l);
	free(waits);
	return 0;
}

/* Parse "0,5,7" into up to max values (zero allowed). */
static int parse_list_any(const char *s, uint32_t *v, int max)
{
	int n = 0;
	char *end;

	while (*s && n < max) {
		unsigned long x = strtoul(s, &end, 10);
		if (end == s || x > UINT32_MAX)
			return -1;
		v[n++] = (uint32_t)x;
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -1;
	}
	return n;
}

/* Parse "1,16,256" into up to 16 positive values. */
static int parse_list(const char *s, uint32_t *v, int max)
{
	int n = 0;
	char *end;

	while (*s && n < max) {
		unsigned long x = strtoul(s, &end, 10);
		if (end == s || x == 0 || x > UINT32_MAX)
			return -1;
		v[n++] = (uint32_t)x;
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -1;
	}
	return n;
}

static int cmd_bench(int argc, char **argv, const char *path_override)
{
	static const struct option lo[] = {
		{ "matrix", 1, 0, 'm' }, { "strategy", 1, 0, 's' }, { "batch", 1, 0, 'b' },
		{ "block", 1, 0, 'k' }, { "fetch", 1, 0, 'f' }, { "epochs", 1, 0, 'e' },
		{ "max-batches", 1, 0, 'x' }, { "inflight", 1, 0, 'i' }, { "qd", 1, 0, 'q' },
		{ "threads", 1, 0, 't' }, { "buffered", 0, 0, 'B' }, { "dense", 0, 0, 'D' },
		{ "seed", 1, 0, 'S' }, { "dir", 1, 0, 'd' }, { "cells", 1, 0, 'c' },
		{ "max-read", 1, 0, 'R' }, { "gap", 1, 0, 'G' },
		{ "balance-obs", 1, 0, 'O' }, { "total-size", 1, 0, 'T' },
		{ "columns", 1, 0, 'C' }, { "rank", 1, 0, 'r' }, { "world-size", 1, 0, 'w' },
		{ "even-ranks", 0, 0, 'E' },
		{ "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
	uint32_t blocks[16] = { 16 }, fetches[16] = { 16 };
	static int32_t cols[4096];
	int nblocks = 1, nfetch = 1, opt, li = 0, rc = 0;
	bench_cfg c = { .o = { .size = sizeof(scf_options) }, .epochs = 1 };

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", lo, &li)) != -1) {
		const char *name = opt == '?' || opt == 'h' ? "" : lo[li].name;
		uint64_t v = 0;
		/* the numeric options: name, bounds, where the value goes */
		switch (opt) {
		case 'b': case 'e': case 'i': case 'q': case 't': case 'r': case 'w':
		case 'R': case 'G':
			if (parse_num(optarg, opt == 'r' ? 0 : 1, UINT32_MAX >> (opt == 'R' || opt == 'G' ? 10 : 0), &v) < 0)
				return bad_value(name, optarg, opt == 'r' ? "expected a whole number"
				                 : "expected a positive whole number");
			break;
		case 'x': case 'S': case 'T':
			if (parse_num(optarg, 0, UINT64_MAX, &v) < 0)
				return bad_value(name, optarg, "expected a whole number");
			break;
		}
		switch (opt) {
		case 'm': c.o.matrix = optarg; break;
		case 's':
			if (strcmp(optarg, "stream") == 0)
				c.o.strategy = SCF_STRATEGY_STREAMING;
			else if (strcmp(optarg, "block") == 0)
				c.o.strategy = SCF_STRATEGY_BLOCK_SHUFFLING;
			else if (strcmp(optarg, "balanced") == 0)
				c.o.strategy = SCF_STRATEGY_CLASS_BALANCED;
			else
				return bad_value(name, optarg, "unknown strategy (stream, block or balanced)");
			break;
		case 'O': c.o.balance_obs = optarg; break;
		case 'T': c.o.total_size = v; break;
		case 'r': c.o.rank = (uint32_t)v; break;
		case 'w': c.o.world_size = (uint32_t)v; break;
		case 'E': c.o.flags |= SCF_F_EVEN_RANKS; break;
		case 'C': {
			uint32_t u[4096];
			int n = parse_list_any(optarg, u, 4096);
			if (n <= 0)
				return bad_value(name, optarg, "expected var indices, comma-separated");
			for (int i = 0; i < n; i++)
				cols[i] = (int32_t)u[i];
			c.o.columns = cols;
			c.o.n_columns = (uint32_t)n;
			break;
		}
		case 'b': c.o.batch_size = (uint32_t)v; break;
		case 'k':
			if ((nblocks = parse_list(optarg, blocks, 16)) <= 0)
				return bad_value(name, optarg, "expected positive whole numbers, "
				                 "comma-separated (at most 16)");
			break;
		case 'f':
			if ((nfetch = parse_list(optarg, fetches, 16)) <= 0)
				return bad_value(name, optarg, "expected positive whole numbers, "
				                 "comma-separated (at most 16)");
			break;
		case 'e': c.epochs = (uint32_t)v; break;
		case 'x': c.max_batches = v; break;
		case 'i': c.o.fetches_in_flight = (uint32_t)v; break;
		case 'q': c.o.queue_depth = (uint32_t)v; break;
		case 't': c.o.threads = (uint32_t)v; break;
		case 'B': c.o.flags |= SCF_F_BUFFERED; break;
		case 'D': c.o.output = SCF_OUTPUT_DENSE; break;
		case 'S': c.o.seed = v; break;
		case 'R': c.o.max_read = (uint32_t)v << 10; break;
		case 'G': c.o.coalesce_gap = (uint32_t)v << 10; break;
		case 'd': case 'c': break; /* demo's own, parsed there */
		case 'h': usage(stdout); return 0;
		default: return 2; /* getopt named the option */
		}
	}
	if (c.o.strategy == SCF_STRATEGY_CLASS_BALANCED && !c.o.balance_obs) {
		fprintf(stderr, "scfetch: --strategy balanced needs --balance-obs COLUMN\n");
		return 2;
	}
	/* every positional argument is a file; several make one collection */
	const char *const *paths = path_override ? &path_override
	                                         : (const char *const *)argv + optind;
	uint32_t n_paths = path_override ? 1 : optind < argc ? (uint32_t)(argc - optind) : 0;
	if (!n_paths || nblocks <= 0 || nfetch <= 0) {
		usage(stderr);
		return 2;
	}
	for (int i = 0; i < nblocks && rc == 0; i++) {
		for (int j = 0; j < nfetch && rc == 0; j++) {
			c.o.block_size = blocks[i];
			c.o.fetch_factor = fetches[j];
			rc = bench_one(paths, n_paths, &c);
		}
	}
	return rc;
}

/* `demo`: a realistic dataset (written once), then the main job on it. */
static int cmd_demo(int argc, char **argv)
{
	static const struct option lo[] = { { "dir", 1, 0, 'd' }, { "cells", 1, 0, 'c' },
	                                    { 0, 0, 0, 0 } };
	const char *dir = "demo-data";
	scf_synth_opts so = { .n_cells = 200000, .n_genes = 20000, .median_nnz = 2000,
	                      .n_labels = 50, .n_plates = 4, .seed = 42 };
	char path[4096], err[1024];
	struct stat st;
	int opt;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (opt == 'd')
			dir = optarg;
		else if (opt == 'c')
			so.n_cells = strtoull(optarg, NULL, 10);
	}
	opterr = 1;
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/synthetic-%llu.h5ad", dir, (unsigned long long)so.n_cells);
	if (stat(path, &st) != 0) {
		printf("writing %s: %llu cells x %llu genes, ~%.0f non-zeros per cell\n", path,
		       (unsigned long long)so.n_cells, (unsigned long long)so.n_genes, so.median_nnz);
		double t0 = now_s();
		if (scf_synth_write(path, &so, stdout, err, sizeof(err)) < 0) {
			fprintf(stderr, "scfetch: %s\n", err);
			unlink(path);
			return 1;
		}
		printf("written in %.1f s\n", now_s() - t0);
	}
	if (info_one(path, "X") != 0)
		return 1;
	printf("\nstreaming one epoch per setting (O_DIRECT, batch 64, fetch_factor 16):\n");
	char *args[] = { argv[0], "--strategy", "stream", NULL };
	int rc = cmd_bench(3, args, path);
	char *args2[] = { argv[0], "--block", "1,16,256", "--fetch", "16", NULL };
	return rc ? rc : cmd_bench(5, args2, path);
}

/* Shannon entropy (nats) of the labels of one batch. */
static double entropy(const int32_t *codes, uint64_t n, size_t stride, uint64_t *hist,
                      uint64_t ncat)
{
	double h = 0;

	memset(hist, 0, (ncat + 1) * sizeof(*hist));
	for (uint64_t i = 0; i < n; i++)
		hist[codes[i * stride] + 1]++; /* -1 (missing) counts as its own label */
	for (uint64_t c = 0; c <= ncat; c++) {
		if (hist[c]) {
			double p = (double)hist[c] / (double)n;
			h -= p * log(p);
		}
	}
	return h;
}

typedef struct tune_point {
	uint32_t block, fetch, inflight;
	double cells_s, entropy;
} tune_point;

/* Stream about `secs` seconds at one setting: cells/s and mean batch entropy. */
static int tune_run(const char *path, scf_options o, double secs, uint64_t ncat,
                    tune_point *pt)
{
	char err[1024];
	scf_loader *l;
	scf_batch *b;
	uint64_t *hist = malloc((ncat + 1) * sizeof(*hist)), rows = 0, nb = 0;
	double hsum = 0, t0;
	int rc;

	if (!hist || scf_open(&l, path, &o, err, sizeof(err)) < 0) {
		fprintf(stderr, "scfetch: %s\n", hist ? err : "out of memory");
		free(hist);
		return -1;
	}
	t0 = now_s();
	while (now_s() - t0 < secs && (rc = scf_next(l, &b)) >= 0) {
		if (rc == SCF_END_OF_EPOCH)
			continue;
		hsum += entropy(b->obs, b->n_rows, 1, hist, ncat);
		rows += b->n_rows;
		nb++;
		scf_release(l, b);
	}
	pt->cells_s = rows / (now_s() - t0);
	pt->entropy = nb ? hsum / nb : 0;
	scf_close(l);
	free(hist);
	return 0;
}

/*
 * tune's default label: the first obs column (in the file's order) that is
 * categorical; else name them all and fail.
 */
static int first_categorical(const char *path, uint64_t n_rows, char *out, size_t outlen)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	hid_t g = f >= 0 && h5_has(f, "obs") ? H5Gopen2(f, "obs", H5P_DEFAULT) : -1;
	char all[2048] = "", err[1024];
	size_t len = 0;
	H5G_info_t gi;
	int rc = -1;

	for (hsize_t i = 0; g >= 0 && H5Gget_info(g, &gi) >= 0 && i < gi.nlinks && rc < 0; i++) {
		char n[256];
		scf__obs_col col;
		if (H5Lget_name_by_idx(g, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, n, sizeof(n),
		                       H5P_DEFAULT) <= 0 &&
		    H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, n, sizeof(n),
		                       H5P_DEFAULT) <= 0)
			continue;
		if (strcmp(n, "__categories") == 0 || strcmp(n, "_index") == 0 ||
		    scf__obs_load(&col, path, n, n_rows, err, sizeof(err)) < 0)
			continue; /* the index, or not a column the engine delivers */
		if (col.kind == SCF__OBS_CATEGORICAL) {
			snprintf(out, outlen, "%s", n);
			rc = 0;
		} else if (len < sizeof(all) - 300) {
			len += snprintf(all + len, sizeof(all) - len, "%s%s", len ? ", " : "", n);
		}
		scf__obs_free(&col);
	}
	if (g >= 0)
		H5Gclose(g);
	if (f >= 0)
		H5Fclose(f);
	if (rc < 0)
		fprintf(stderr, "scfetch: tune: %s has no categorical obs column to measure batch "
		        "label entropy with (%s%s); name one with --label COL\n", path,
		        len ? "other obs columns: " : "no obs columns", all);
	return rc;
}

/*
 * `tune`: measure the block x fetch grid on this device and file, and
 * propose the fastest setting whose minibatches keep min_entropy of the
 * label entropy that true random sampling gives.
 */
static int cmd_tune(int argc, char **argv)
{
	static const struct option lo[] = { { "label", 1, 0, 'l' }, { "min-entropy", 1, 0, 'e' },
		{ "batch", 1, 0, 'b' }, { "seconds", 1, 0, 's' }, { "matrix", 1, 0, 'm' },
		{ 0, 0, 0, 0 } };
	static const uint32_t blocks[] = { 1, 4, 16, 64, 256, 1024 }, fetches[] = { 1, 4, 16, 64 };
	const char *label = NULL, *matrix = "X";
	char found[256];
	double min_entropy = 0.98, secs = 1.0;
	uint32_t batch = 64;
	char err[1024];
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'l': label = optarg; break;
		case 'e': min_entropy = atof(optarg); break;
		case 'b': batch = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 's': secs = atof(optarg); break;
		case 'm': matrix = optarg; break;
		default: usage(stderr); return 2;
		}
	}
	if (optind + 1 != argc || batch == 0) {
		usage(stderr);
		return 2;
	}
	const char *path = argv[optind];
	scf__matrix m;
	scf__obs_col col;
	if (!readable(path))
		return 1;
	if (scf__h5ad_open(&m, path, matrix, err, sizeof(err)) < 0) {
		fprintf(stderr, "scfetch: %s\n", err);
		matrix_hint(path, matrix);
		return 1;
	}
	if (!label) {
		if (first_categorical(path, m.n_rows, found, sizeof(found)) < 0) {
			scf__h5ad_free(&m);
			return 1;
		}
		label = found;
		printf("label: obs/%s, the first categorical obs column (--label COL for another)\n",
		       label);
	}
	if (scf__obs_load(&col, path, label, m.n_rows, err, sizeof(err)) < 0) {
		fprintf(stderr, "scfetch: %s\n", err);
		scf__h5ad_free(&m);
		return 1;
	}
	if (col.kind != SCF__OBS_CATEGORICAL) {
		fprintf(stderr, "scfetch: %s: obs/%s is not categorical; --label needs a "
		        "categorical column\n", path, label);
		scf__obs_free(&col);
		scf__h5ad_free(&m);
		return 1;
	}
	uint64_t n_rows = m.n_rows, ncat = col.n_categories;
	scf__h5ad_free(&m);
	for (uint64_t r = 0; r < n_rows; r++)
		ncat = (uint64_t)(col.codes[r] + 1) > ncat ? (uint64_t)col.codes[r] + 1 : ncat;

	/* true random sampling's entropy: random batches drawn from the labels */
	uint64_t *hist = malloc((ncat + 1) * sizeof(*hist)), x = 0x9e3779b97f4a7c15ULL;
	int32_t *tmp = malloc(batch * sizeof(int32_t));
	double href = 0;
	for (int k = 0; k < 2000 && hist && tmp && n_rows; k++) {
		for (uint32_t i = 0; i < batch; i++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			tmp[i] = col.codes[x % n_rows];
		}
		href += entropy(tmp, batch, 1, hist, ncat) / 2000;
	}
	free(tmp);
	free(hist);
	scf__obs_free(&col);
	printf("%s: %llu rows, label %s (%llu classes); random batches of %u: entropy %.3f nats\n",
	       path, (unsigned long long)n_rows, label, (unsigned long long)ncat, batch, href);
	printf("  block  fetch    cells/s  entropy  vs random\n");

	const char *obs[] = { label };
	scf_options o = { .size = sizeof(o), .matrix = matrix, .batch_size = batch, .obs = obs,
	                  .n_obs = 1, .strategy = SCF_STRATEGY_BLOCK_SHUFFLING };
	tune_point best = { 0 }, pt;
	for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
		for (size_t j = 0; j < sizeof(fetches) / sizeof(fetches[0]); j++) {
			o.block_size = blocks[i];
			o.fetch_factor = fetches[j];
			pt = (tune_point){ .block = blocks[i], .fetch = fetches[j] };
			if (tune_run(path, o, secs, ncat, &pt) < 0)
				return 1;
			double ratio = href > 0 ? pt.entropy / href : 1.0;
			printf("  %5u  %5u  %9.0f  %7.3f  %8.3f%s\n", pt.block, pt.fetch, pt.cells_s,
			       pt.entropy, ratio, ratio >= min_entropy ? "" : "  (below target)");
			if (ratio >= min_entropy && pt.cells_s > best.cells_s)
				best = pt;
		}
	}
	if (!best.cells_s) {
		printf("no setting reached %.2f of random sampling's entropy\n", min_entropy);
		return 1;
	}
	/* then the number of fetches in flight at the chosen point */
	o.block_size = best.block;
	o.fetch_factor = best.fetch;
	best.inflight = 3;
	for (uint32_t f = 1; f <= 8; f *= 2) {
		o.fetches_in_flight = f;
		pt = best;
		if (tune_run(path, o, secs, ncat, &pt) < 0)
			return 1;
		printf("  in flight %u: %.0f cells/s\n", f, pt.cells_s);
		if (pt.cells_s > best.cells_s * 1.03) {
			best.cells_s = pt.cells_s;
			best.inflight = f;
		}
	}
	printf("proposed: --block %u --fetch %u --inflight %u  (%.0f cells/s, %.1f%% of random "
	       "sampling's entropy)\n", best.block, best.fetch, best.inflight, best.cells_s,
	       href > 0 ? 100 * best.entropy / href : 100.0);
	return 0;
}

static int cmd_repack(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "matrix", 1, 0, 'm' }, { "chunk-rows", 1, 0, 'r' }, { "codec", 1, 0, 'c' },
		{ "level", 1, 0, 'l' }, { "no-shuffle", 0, 0, 's' }, { 0, 0, 0, 0 } };
	scf_repack_opts o = { .matrix = "X", .chunk_rows = 4, .codec = SCF_CODEC_ZSTD };
	char err[1024];
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'm': o.matrix = optarg; break;
		case 'r': o.chunk_rows = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'l': o.level = atoi(optarg); break;
		case 's': o.no_shuffle = 1; break;
		case 'c':
			if (strcmp(optarg, "zstd") == 0) o.codec = SCF_CODEC_ZSTD;
			else if (strcmp(optarg, "deflate") == 0 || strcmp(optarg, "gzip") == 0)
				o.codec = SCF_CODEC_DEFLATE;
			else if (strcmp(optarg, "none") == 0) o.codec = SCF_CODEC_NONE;
			else return bad_value("codec", optarg, "unknown codec (zstd, deflate or none)");
			break;
		default: usage(stderr); return 2;
		}
	}
	if (optind + 2 != argc) {
		usage(stderr);
		return 2;
	}
	if (!readable(argv[optind]))
		return 1;
	double t0 = now_s();
	if (scf_repack(argv[optind], argv[optind + 1], &o, stdout, err, sizeof(err)) < 0) {
		fprintf(stderr, "scfetch: %s\n", err);
		return 1;
	}
	printf("repacked in %.1f s\n", now_s() - t0);
	if (o.codec == SCF_CODEC_ZSTD)
		printf("note: zstd is HDF5 filter 32015, not built into HDF5: h5py and anndata read "
		       "this file only with the filter plugin loaded (`import hdf5plugin` from pip's "
		       "hdf5plugin; Debian 12's python3-hdf5plugin ships no filters); scfetch "
		       "decodes it itself.  --codec deflate is readable everywhere.\n");
	return 0;
}

int main(int argc, char **argv)
{
	/* Failures are reported in one sentence each, not as HDF5's error stack. */
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "info") == 0 && argc >= 3) {
		const char *key = "X";
		const char **files = calloc((size_t)argc, sizeof(char *));
		uint32_t n = 0;
		for (int i = 2; files && i < argc; i++) {
			if (strcmp(argv[i], "--matrix") == 0 && i + 1 < argc)
				key = argv[++i];
			else
				files[n++] = argv[i];
		}
		int rc = n ? cmd_info(files, n, key) : (usage(stderr), 2);
		free(files);
		return rc;
	}
	if (strcmp(argv[1], "bench") == 0)
		return cmd_bench(argc - 1, argv + 1, NULL);
	if (strcmp(argv[1], "demo") == 0)
		return cmd_demo(argc - 1, argv + 1);
	if (strcmp(argv[1], "repack") == 0)
		return cmd_repack(argc - 1, argv + 1);
	if (strcmp(argv[1], "tune") == 0)
		return cmd_tune(argc - 1, argv + 1);
	if (strcmp(argv[1], "--version") == 0) {
		unsigned v = scf_version();
		printf("scfetch %u.%u.%u\n", v / 10000, v / 100 % 100, v % 100);
		return 0;
	}
	usage(stderr);
	return 2;
}
