/*
 * tools/cli — the command-line face of the library, installed as `scfetch`:
 *   scfetch info FILE... [--matrix KEY]  what the files hold and what the engine reads
 *   scfetch index FILE... [--matrix KEY] [--index-dir DIR]   build index caches ahead of a job
 *   scfetch bench FILE... [options]       stream epochs, print throughput and I/O figures
 *                                         (several files: one collection, one index space)
 *   scfetch demo [--dir D] [--cells N]    write a realistic dataset if absent, then bench it
 *   scfetch repack IN OUT [options]       rewrite a matrix with row-sized chunks
 * It links libscfetch.so and sees only include/scfetch.h: what it says about a
 * file comes from scf_describe(), as any user's program would get it.
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
	"       scfetch index FILE... [--matrix KEY] [--index-dir DIR]   build index caches\n"
	"       scfetch bench FILE... [options]   (several files are read as one collection)\n"
	"       scfetch demo [--dir DIR] [--cells N] [options]\n"
	"       scfetch repack IN OUT [--matrix KEY] [--chunk-rows N] [--codec zstd|deflate|none]\n"
	"                      [--level L] [--no-shuffle] [--threads N] [--verify] [--quiet]\n"
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
	"  --partial-inflate   inflate deflate chunks only up to the last byte used\n"
	"                      (faster for scattered rows; skips their Adler-32 check)\n"
	"  --chunk-cache MIB   memory for decoded chunks kept across fetches (256; 0: off)\n"
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
	int fd = open(path, O_RDONLY | O_NONBLOCK); /* a FIFO must not block */

	if (fd < 0) {
		fprintf(stderr, "scfetch: %s: %s\n", path, strerror(errno));
		return 0;
	}
	close(fd);
	return 1;
}

/* After a failed open: when KEY is not in the file, list the matrices that are. */
static void matrix_hint(const char *path, const char *key)
{
	scf_description d = { .size = sizeof(d) };
	char names[2048] = "";
	size_t len = 0;
	int found = 0;

	if (scf_describe(path, NULL, &d, NULL, 0) == 0) {
		for (uint32_t i = 0; i < d.n_matrices; i++) {
			found |= strcmp(d.matrices[i], key) == 0;
			if (len < sizeof(names) - 1)
				len += snprintf(names + len, sizeof(names) - len, "%s%s",
				                i ? ", " : "", d.matrices[i]);
		}
		/* none listed: not an .h5ad at all, which the error said already */
		if (!found && d.n_matrices)
			fprintf(stderr, "scfetch: %s has no matrix %s; its matrices: %s\n", path,
			        key, names);
	}
	scf_describe_free(&d);
}

/* `info`: shape, dtypes, layout, chunks, filters, and the verdict. */
static void print_dset(const scf_dataset_desc *d)
{
	printf("  %-16s %-8s %llu", d->name, d->dtype, (unsigned long long)d->dims[0]);
	if (d->rank == 2)
		printf(" x %llu", (unsigned long long)d->dims[1]);
	if (!d->chunked) {
		printf("  contiguous at byte %llu", (unsigned long long)d->offset);
	} else {
		printf("  chunked %llu", (unsigned long long)d->chunk_dims[0]);
		if (d->rank == 2)
			printf(" x %llu", (unsigned long long)d->chunk_dims[1]);
		printf(", %llu chunks", (unsigned long long)d->n_chunks);
	}
	if (d->filters[0])
		printf(", filters %s", d->filters);
	printf("\n");
}

/* Random access to a compressed chunk decodes all of it: say when that hurts. */
static void warn_chunking(const scf_description *m)
{
	const scf_dataset_desc *d = &m->dataset[0];

	if (m->dense || !d->chunked || !d->filters[0] || !m->n_rows)
		return;
	double per_row = (double)m->nnz / (double)m->n_rows;
	double rows = per_row > 0 ? (double)d->chunk_dims[0] / per_row : 0;
	if (rows > 8)
		printf("  warning          each compressed chunk holds ~%.0f rows: reading one random "
		       "row decodes ~%.0fx what it delivers;\n                   `scfetch repack "
		       "--chunk-rows 4` makes random access cheap\n", rows, rows);
}

static void print_matrix(const scf_description *m, const char *path, const char *key)
{
	printf("%s: %s\n", path, key);
	printf("  encoding         %s\n", m->dense ? "dense" : "csr_matrix");
	printf("  shape            %llu x %llu, %llu stored entries (%.2f%%)\n",
	       (unsigned long long)m->n_rows, (unsigned long long)m->n_cols,
	       (unsigned long long)m->nnz,
	       m->n_rows && m->n_cols ? 100.0 * m->nnz / ((double)m->n_rows * m->n_cols) : 0.0);
	if (!m->dense) {
		char name[256];
		snprintf(name, sizeof(name), "%s/indptr", key);
		printf("  %-16s %-8s loaded at open\n", name, m->indptr_dtype);
		print_dset(&m->dataset[0]);
		print_dset(&m->dataset[1]);
		warn_chunking(m);
	} else {
		print_dset(&m->dataset[0]);
	}
}

static int info_one(const char *path, const char *key)
{
	scf_description m = { .size = sizeof(m) };
	char err[1024];
	scf_loader *l;
	int rc;

	if (!readable(path))
		return 1;
	rc = scf_describe(path, key, &m, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "scfetch: %s\n", err);
		scf_describe_free(&m);
		matrix_hint(path, key);
		return 1;
	}
	print_matrix(&m, path, key);
	scf_describe_free(&m);

	rc = scf_open(&l, path, &(scf_options){ .size = sizeof(scf_options), .matrix = key },
	              err, sizeof(err));
	printf("  engine           %s%s\n", rc == 0 ? "can read this matrix" : "cannot read: ",
	       rc == 0 ? "" : err);
	if (rc == 0)
		printf("  %-16s %s\n", "index-cache", scf_index_note(l, 0));
	scf_close(l);
	return rc == 0 ? 0 : 2;
}

/* Each file, then, for several, what the engine makes of them as one collection. */
static int cmd_info(const char *const *paths, uint32_t n, const char *key)
{
	char err[1024];
	scf_loader *l;
	scf_info info = { .size = sizeof(scf_info) };
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
	scf_info info = { .size = sizeof(scf_info) };
	scf_stats st = { .size = sizeof(scf_stats) };
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
	       "amp %.2f decode x%.2f %.2f s (%llu chunks, %llu cached, %.1f MB skipped) "
	       "assemble %.2f s reads %llu (%.1f KiB avg) requeued %llu | cpu %.2f s/GB | %s%s\n",
	       strategy_name(c->o.strategy),
	       c->o.block_size, c->o.fetch_factor, c->o.batch_size ? c->o.batch_size : 64,
	       rows / secs, st.bytes_requested / secs / 1e6, st.bytes_read / secs / 1e6,
	       nb ? waits[nb / 2] / 1e3 : 0.0, nb ? waits[(nb * 99) / 100] / 1e3 : 0.0,
	       st.max_wait_ns / 1e3,
	       st.bytes_requested ? (double)st.bytes_read / st.bytes_requested : 0.0,
	       st.bytes_requested ? (double)st.bytes_decoded / st.bytes_requested : 0.0,
	       st.decode_ns / 1e9, (unsigned long long)st.chunks_decoded,
	       (unsigned long long)st.chunk_cache_hits, st.bytes_decode_skipped / 1e6,
	       st.assemble_ns / 1e9,
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

/* Parse "1,16,256" into at most max values, each >= min; -1 on anything else. */
static int parse_list(const char *s, uint32_t *v, int max, uint64_t min)
{
	int n = 0;

	while (*s) {
		const char *comma = strchr(s, ',');
		char item[32];
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		uint64_t x;
		if (n == max || len >= sizeof(item))
			return -1;
		memcpy(item, s, len);
		item[len] = '\0';
		if (parse_num(item, min, UINT32_MAX, &x) < 0)
			return -1;
		v[n++] = (uint32_t)x;
		s = comma ? comma + 1 : s + len;
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
		{ "even-ranks", 0, 0, 'E' }, { "partial-inflate", 0, 0, 'P' },
		{ "chunk-cache", 1, 0, 'K' },
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
			int n = parse_list(optarg, u, 4096, 0);
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
			if ((nblocks = parse_list(optarg, blocks, 16, 1)) <= 0)
				return bad_value(name, optarg, "expected positive whole numbers, "
				                 "comma-separated (at most 16)");
			break;
		case 'f':
			if ((nfetch = parse_list(optarg, fetches, 16, 1)) <= 0)
				return bad_value(name, optarg, "expected positive whole numbers, "
				                 "comma-separated (at most 16)");
			break;
		case 'e': c.epochs = (uint32_t)v; break;
		case 'x': c.max_batches = v; break;
		case 'i': c.o.fetches_in_flight = (uint32_t)v; break;
		case 'q': c.o.queue_depth = (uint32_t)v; break;
		case 't': c.o.threads = (uint32_t)v; break;
		case 'B': c.o.flags |= SCF_F_BUFFERED; break;
		case 'P': c.o.flags |= SCF_F_PARTIAL_INFLATE; break;
		case 'K': {
			uint64_t mib;
			if (parse_num(optarg, 0, 1ull << 30, &mib) < 0)
				return bad_value("chunk-cache", optarg, "expected MiB, a whole number (0: off)");
			if (mib)
				c.o.chunk_cache_bytes = mib << 20;
			else
				c.o.flags |= SCF_F_NO_CHUNK_CACHE;
			break;
		}
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

/*
 * Stream at one setting for `secs` seconds and at least min_batches batches
 * (or to the end of the epoch): cells/s and the mean batch label entropy.
 */
static int tune_run(const char *path, scf_options o, double secs, uint64_t min_batches,
                    tune_point *pt)
{
	const char *const *names;
	char err[1024];
	scf_loader *l;
	scf_batch *b;
	uint64_t *hist = NULL, rows = 0, nb = 0, ncat = 0;
	double hsum = 0, t0;
	int rc;

	if (scf_open(&l, path, &o, err, sizeof(err)) < 0) {
		fprintf(stderr, "scfetch: %s\n", err);
		return -1;
	}
	scf_obs_categories(l, 0, &names, &ncat);
	hist = malloc((ncat + 1) * sizeof(*hist));
	t0 = now_s();
	while (hist && (now_s() - t0 < secs || nb < min_batches) &&
	       (rc = scf_next(l, &b)) >= 0) {
		if (rc == SCF_END_OF_EPOCH)
			continue;
		hsum += entropy(b->obs, b->n_rows, b->n_obs, hist, ncat);
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
 * categorical; else name the others and fail.
 */
static int first_categorical(const char *path, const scf_description *d, char *out,
                             size_t outlen)
{
	char all[2048] = "";
	size_t len = 0;

	for (uint32_t i = 0; i < d->n_obs; i++) {
		if (d->obs[i].kind == SCF_OBS_CATEGORICAL) {
			snprintf(out, outlen, "%s", d->obs[i].name);
			return 0;
		}
		if (d->obs[i].kind >= 0 && len < sizeof(all) - 300)
			len += snprintf(all + len, sizeof(all) - len, "%s%s", len ? ", " : "",
			                d->obs[i].name);
	}
	fprintf(stderr, "scfetch: tune: %s has no categorical obs column to measure batch "
	        "label entropy with (%s%s); name one with --label COL\n", path,
	        len ? "other obs columns: " : "no obs columns", all);
	return -1;
}

/* The label column: the one named (which must be categorical when the file has it), or the first. */
static int tune_label(const char *path, const char *matrix, const char *label, char *out,
                      size_t outlen, uint64_t *n_rows)
{
	scf_description d = { .size = sizeof(d) };
	char err[1024];
	int rc = -1;

	if (!readable(path))
		return -1;
	if (scf_describe(path, matrix, &d, err, sizeof(err)) < 0) {
		fprintf(stderr, "scfetch: %s\n", err);
		scf_describe_free(&d);
		matrix_hint(path, matrix);
		return -1;
	}
	*n_rows = d.n_rows;
	if (!label) {
		rc = first_categorical(path, &d, out, outlen);
		if (rc == 0)
			printf("label: obs/%s, the first categorical obs column (--label COL for "
			       "another)\n", out);
	} else {
		/* a column the file lacks is named by scf_open, with its reason */
		rc = 0;
		snprintf(out, outlen, "%s", label);
		for (uint32_t i = 0; i < d.n_obs; i++)
			if (strcmp(d.obs[i].name, label) == 0 && d.obs[i].kind != SCF_OBS_CATEGORICAL)
				rc = -1;
		if (rc < 0)
			fprintf(stderr, "scfetch: %s: obs/%s is not categorical; --label needs a "
			        "categorical column\n", path, label);
	}
	scf_describe_free(&d);
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
	uint64_t n_rows = 0;
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
	if (tune_label(path, matrix, label, found, sizeof(found), &n_rows) < 0)
		return 1;
	label = found;

	/*
	 * True random sampling's entropy: blocks of one row, one batch per fetch,
	 * so every batch is a uniform draw of rows (at least 200 batches of it).
	 */
	const char *obs[] = { label };
	scf_options o = { .size = sizeof(o), .matrix = matrix, .batch_size = batch, .obs = obs,
	                  .n_obs = 1, .strategy = SCF_STRATEGY_BLOCK_SHUFFLING,
	                  .block_size = 1, .fetch_factor = 1 };
	tune_point ref = { 0 };
	if (tune_run(path, o, secs, 200, &ref) < 0)
		return 1;
	double href = ref.entropy;
	printf("%s: %llu rows, label %s; random batches of %u: entropy %.3f nats\n",
	       path, (unsigned long long)n_rows, label, batch, href);
	printf("  block  fetch    cells/s  entropy  vs random\n");

	tune_point best = { 0 }, pt;
	for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
		for (size_t j = 0; j < sizeof(fetches) / sizeof(fetches[0]); j++) {
			o.block_size = blocks[i];
			o.fetch_factor = fetches[j];
			pt = (tune_point){ .block = blocks[i], .fetch = fetches[j] };
			if (tune_run(path, o, secs, 0, &pt) < 0)
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
		if (tune_run(path, o, secs, 0, &pt) < 0)
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

/* `index`: build each file's index cache ahead of a job (e.g. on a login node). */
static int cmd_index(int argc, char **argv)
{
	static const struct option lo[] = { { "matrix", 1, 0, 'm' }, { "index-dir", 1, 0, 'd' },
	                                    { 0, 0, 0, 0 } };
	scf_options o = { .size = sizeof(o) };
	char where[4096], err[1024];
	int opt, rc = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'm': o.matrix = optarg; break;
		case 'd': o.index_dir = optarg; break;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	for (int i = optind; i < argc; i++) {
		if (!readable(argv[i])) {
			rc = 1;
			continue;
		}
		double t0 = now_s();
		where[0] = '\0';
		int r = scf_index_build(argv[i], &o, where, sizeof(where), err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "scfetch: %s\n", err);
			rc = 1;
			continue;
		}
		printf("%s: %s %s (%.2f s)\n", argv[i], r == 0 ? "built" : "valid, kept", where,
		       now_s() - t0);
		fflush(stdout);
	}
	return rc;
}

static int cmd_repack(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "matrix", 1, 0, 'm' }, { "chunk-rows", 1, 0, 'r' }, { "codec", 1, 0, 'c' },
		{ "level", 1, 0, 'l' }, { "no-shuffle", 0, 0, 's' }, { "threads", 1, 0, 't' },
		{ "verify", 0, 0, 'v' }, { "quiet", 0, 0, 'q' }, { 0, 0, 0, 0 } };
	scf_repack_opts o = { .matrix = "X", .chunk_rows = 4, .codec = SCF_CODEC_ZSTD,
	                      .progress = 1 };
	char err[1024];
	uint64_t n;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'm': o.matrix = optarg; break;
		case 'r': o.chunk_rows = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'l': o.level = atoi(optarg); break;
		case 's': o.no_shuffle = 1; break;
		case 'v': o.verify = 1; break;
		case 'q': o.progress = 0; break;
		case 't':
			if (parse_num(optarg, 1, 256, &n) < 0)
				return bad_value("threads", optarg, "expected a whole number 1..256");
			o.threads = (uint32_t)n;
			break;
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
	if (strcmp(argv[1], "index") == 0)
		return cmd_index(argc - 1, argv + 1);
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
