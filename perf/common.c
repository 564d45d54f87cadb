/*
 * perf/common — what every runner measures with: clocks, this process's
 * I/O counters, wait percentiles, batch label entropy, the hash of the
 * first fetch's rows, and the configuration handed to the internal
 * baselines' process (perf/internal/baselines.c).  Compiled into scf_suite
 * and scf_baselines alike; public API and libc only.
 * Thread: the runner's process.
 */
#include "perf/suite.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* CPU seconds of this process, every thread (io_uring's workers included). */
double suite_cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

double suite_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/*
 * This process's I/O counters: rchar (bytes read() and friends returned),
 * syscr (read calls), read_bytes (what the block layer fetched, O_DIRECT and
 * buffered alike; io_uring's workers are threads of this process).
 */
void suite_proc_io(uint64_t *rchar, uint64_t *syscr, uint64_t *read_bytes)
{
	char line[256];
	unsigned long long v;
	FILE *f = fopen("/proc/self/io", "r");

	*rchar = *syscr = *read_bytes = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "rchar: %llu", &v) == 1)
			*rchar = v;
		else if (sscanf(line, "syscr: %llu", &v) == 1)
			*syscr = v;
		else if (sscanf(line, "read_bytes: %llu", &v) == 1)
			*read_bytes = v;
	}
	fclose(f);
}

int suite_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double suite_pct(const double *w, uint64_t n, double p)
{
	if (n == 0)
		return 0;
	uint64_t k = (uint64_t)ceil(p * (double)n);
	return w[k ? k - 1 : 0];
}

/*
 * The first wait is the pipeline's start (opening, the first fetch): kept
 * apart as first_wait; percentiles are over the waits after it.  The steady
 * figures also leave out the rest of the warm-up: the batches of the first
 * `inflight` fetches, which the loader reads back to back at the start.
 */
void suite_waits(const suite_cfg *c, const char *runner, double *w, uint64_t n, run_res *r)
{
	uint64_t skip = (uint64_t)c->inflight * c->fetch;

	if (n == 0)
		return;
	r->first_wait = w[0];
	if (n > skip + 1) {
		double *s = malloc((n - skip) * sizeof(*s));
		if (s) {
			memcpy(s, w + skip, (n - skip) * sizeof(*s));
			qsort(s, n - skip, sizeof(*s), suite_cmp_double);
			r->steady_p99 = suite_pct(s, n - skip, 0.99);
			r->steady_p999 = suite_pct(s, n - skip, 0.999);
			r->steady_max = s[n - skip - 1];
			free(s);
		}
	}
	qsort(w + 1, n - 1, sizeof(*w), suite_cmp_double);
	r->wait_p50 = suite_pct(w + 1, n - 1, 0.50);
	r->wait_p99 = suite_pct(w + 1, n - 1, 0.99);
	r->wait_p999 = suite_pct(w + 1, n - 1, 0.999);
	r->wait_max = n > 1 ? w[n - 1] : 0;
	if (!c->out_dir || n < 2)
		return;
	char path[4096];
	snprintf(path, sizeof(path), "%s/waits-%s-%s.dat", c->out_dir, c->tag ? c->tag : "run",
	         runner);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	/* 1000 quantiles keep the file small. */
	fprintf(f, "# wait_us cumulative_fraction (%llu batches after the first)\n",
	        (unsigned long long)(n - 1));
	for (int q = 1; q <= 1000; q++)
		fprintf(f, "%.3f %.4f\n", suite_pct(w + 1, n - 1, q / 1000.0) * 1e6, q / 1000.0);
	fclose(f);
}

/* Waits of a synchronous loader: the first batch of a fetch waits for all of it. */
void suite_fetch_waits(double *w, uint64_t *nw, uint64_t cap, double fetch_secs,
                       uint64_t rows, uint32_t batch)
{
	for (uint64_t j = 0; j < rows && *nw < cap; j += batch)
		w[(*nw)++] = j == 0 ? fetch_secs : 0.0;
}

uint64_t suite_fnv_u64(uint64_t h, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		h ^= (v >> (8 * i)) & 0xff;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

/* Shannon entropy (nats) of the labels of one batch; missing labels (-1) skipped. */
double suite_batch_entropy(int32_t *codes, uint64_t n)
{
	uint64_t total = 0, run = 0;
	double h = 0;

	qsort(codes, n, sizeof(*codes), cmp_i32);
	for (uint64_t i = 0; i < n; i++)
		total += codes[i] >= 0;
	for (uint64_t i = 0; i < n; i++) {
		if (codes[i] < 0)
			continue;
		run++;
		if (i + 1 == n || codes[i + 1] != codes[i]) {
			double p = (double)run / (double)total;
			h -= p * log(p);
			run = 0;
		}
	}
	return h;
}

int suite_write_all(int fd, const void *p, size_t n)
{
	const char *s = p;
	while (n) {
		ssize_t k = write(fd, s, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		s += k;
		n -= (size_t)k;
	}
	return 0;
}

/* ---- the configuration, across exec ---- */

#define CFG_NUMS "%d %u %u %u %u %u %u %u %u %llu %llu %la %llu %la %d"

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

static const char *or_null(const char *s)
{
	return *s ? s : NULL;
}

int suite_cfg_argv(const suite_cfg *c, const char *mode, char *nums, size_t nlen,
                   const char *argv[SUITE_CFG_ARGC + 1])
{
	int n = snprintf(nums, nlen, CFG_NUMS, c->stream, c->batch, c->block, c->fetch,
	                 c->inflight, c->qd, c->threads, c->max_read, c->gap,
	                 (unsigned long long)c->seed, (unsigned long long)c->max_cells,
	                 c->time_limit, (unsigned long long)c->warmup_cells, c->pace_interval,
	                 c->hdf5_indptr_each_fetch);
	const char *v[SUITE_CFG_ARGC] = { mode, c->path, or_empty(c->matrix), or_empty(c->obs_col),
	                                  or_empty(c->out_dir), or_empty(c->tag),
	                                  or_empty(c->iolog), or_empty(c->rows), nums };

	if (n < 0 || (size_t)n >= nlen)
		return -1;
	memcpy(argv, v, sizeof(v));
	argv[SUITE_CFG_ARGC] = NULL;
	return 0;
}

int suite_cfg_parse(int argc, char **argv, suite_cfg *c)
{
	unsigned long long seed, max_cells, warmup;

	if (argc != SUITE_CFG_ARGC)
		return -1;
	memset(c, 0, sizeof(*c));
	c->path = argv[1];
	c->matrix = argv[2];
	c->obs_col = or_null(argv[3]);
	c->out_dir = or_null(argv[4]);
	c->tag = or_null(argv[5]);
	c->iolog = or_null(argv[6]);
	c->rows = or_null(argv[7]);
	if (sscanf(argv[8], CFG_NUMS, &c->stream, &c->batch, &c->block, &c->fetch, &c->inflight,
	           &c->qd, &c->threads, &c->max_read, &c->gap, &seed, &max_cells,
	           &c->time_limit, &warmup, &c->pace_interval, &c->hdf5_indptr_each_fetch) != 15)
		return -1;
	c->seed = seed;
	c->max_cells = max_cells;
	c->warmup_cells = warmup;
	return 0;
}
