/*
 * perf/suite — one point of the performance suite: scfetch and its
 * alternatives, back to back on the same file and the same fetch sequence,
 * each runner in a child process of its own (so that peak RSS and CPU time
 * are its alone), and fio at the request sizes and depth the planner issues.
 * Prints one JSON line per runner and a summary line of ratios on stdout;
 * progress on stderr.  perf/run-suite.sh sweeps it.
 *
 *   scf_suite FILE [--strategy block|stream] [--block N] [--fetch N] [--batch N]
 *             [--inflight N] [--qd N] [--threads N] [--max-read KIB] [--gap KIB]
 *             [--seed N] [--cells N] [--warmup N] [--time S] [--runners LIST] [--pace FRAC]
 *             [--capacity CELLS_PER_S] [--fio-time S] [--obs COL] [--matrix KEY]
 *             [--hdf5-indptr fetch|once] [--repeat N] [--out DIR] [--tag NAME]
 *
 * LIST: plan,scfetch,paced,pread,hdf5,anndata,fio-replay,fio-rand,fio-seq ("fio" =
 * the three fio jobs, "all" = everything).  plan always runs first.
 * This program uses the public API (and HDF5 for the hdf5 runner); plan and
 * pread need the engine's sampler and planner and run as scf_baselines
 * (perf/internal/baselines.c), found beside this program.
 * Thread: the main thread; runners in forked children.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "perf/suite.h"
#include "scfetch.h"

/*
 * Bit i is runner i, in the order they run.  The disk of a shared VM drifts by
 * tens of percent from one second to the next, so the runners whose ratios
 * matter repeat (--repeat N) in rounds: fio jobs, scfetch, pread; a last round
 * of fio closes the brackets, and each scfetch run is held against the mean
 * of the fio runs just before and just after it.  The slow runners (paced,
 * hdf5, anndata) run once, after the rounds.
 */
enum {
	R_PLAN = 1 << 0, R_FIO_REPLAY = 1 << 1, R_FIO_SEQ = 1 << 2, R_FIO_RAND = 1 << 3,
	R_SCFETCH = 1 << 4, R_PREAD = 1 << 5, R_PACED = 1 << 6, R_HDF5 = 1 << 7,
	R_ANNDATA = 1 << 8,
	R_FIO = R_FIO_REPLAY | R_FIO_RAND | R_FIO_SEQ, R_ALL = (1 << 9) - 1
};

#ifndef SCF_PERF_DIR
#define SCF_PERF_DIR "perf"
#endif

#define MAX_REPEAT 16

typedef struct opts {
	suite_cfg c;
	unsigned runners;
	double pace_frac, capacity, fio_time;
	double paced_interval;  /* what the paced run used */
	unsigned repeat;        /* rounds of the repeated runners */
	const char *iolog, *rows, *py_runner, *python;
} opts;

/* What the parent keeps of each runner: its figures and its rusage. */
typedef struct outcome {
	int ran;
	run_res r;
	double cpu_s, maxrss_mb;
} outcome;

static void usage(FILE *f)
{
	fprintf(f,
	"usage: scf_suite FILE [options]\n"
	"  --strategy block|stream   sampling (block)\n"
	"  --block N --fetch N       block_size, fetch_factor (16, 16)\n"
	"  --batch N                 rows per minibatch (64)\n"
	"  --inflight N --qd N       fetches in flight (3), io_uring queue depth (128)\n"
	"  --threads N               decode threads (2)\n"
	"  --max-read KIB --gap KIB  largest read (1024), coalescing gap (32)\n"
	"  --seed N                  base seed (0)\n"
	"  --cells N                 cells per run, rounded up to whole fetches (50000; 0: epoch)\n"
	"  --time S                  stop pread/hdf5/anndata at the next fetch after S seconds\n"
	"                            (10; scfetch: 12 x S)\n"
	"  --partial-inflate         scfetch: inflate deflate chunks only as far as used\n"
	"  --chunk-cache MIB         scfetch: memory for decoded chunks kept across fetches\n"
	"                            (256; 0: off)\n"
	"  --warmup N                scfetch: consume N cells before the clock starts (0), so\n"
	"                            that buffers are touched once (steady state)\n"
	"  --runners LIST            plan,scfetch,paced,pread,hdf5,anndata,fio-replay,fio-rand,\n"
	"                            fio-seq, fio, all (default: scfetch,fio)\n"
	"  --pace FRAC               paced consumer asks at FRAC of capacity (0.5)\n"
	"  --capacity CELLS_PER_S    capacity to pace against (default: scfetch's, measured here)\n"
	"  --fio-time S              seconds per time-based fio job (3)\n"
	"  --repeat N                rounds of fio, scfetch, pread (1; at most 16): medians\n"
	"  --obs COL                 label column for batch entropy (cell_line)\n"
	"  --matrix KEY              X (default), layers/NAME, raw/X\n"
	"  --hdf5-indptr fetch|once  reload indptr per fetch as anndata 0.8 does (fetch)\n"
	"  --out DIR                 write wait-time quantiles (waits-TAG-RUNNER.dat) here\n"
	"  --tag NAME                names this point in JSON and files\n"
	"  --py-runner PATH          perf/anndata_runner.py (the anndata runner)\n"
	"  --python PATH             its interpreter, with anndata and h5py (/usr/bin/python3)\n");
}

static unsigned parse_runners(const char *s)
{
	static const struct { const char *name; unsigned bit; } t[] = {
		{ "plan", R_PLAN }, { "scfetch", R_SCFETCH }, { "paced", R_PACED },
		{ "pread", R_PREAD }, { "hdf5", R_HDF5 }, { "anndata", R_ANNDATA },
		{ "fio-replay", R_FIO_REPLAY },
		{ "fio-rand", R_FIO_RAND }, { "fio-seq", R_FIO_SEQ }, { "fio", R_FIO },
		{ "all", R_ALL } };
	unsigned bits = 0;
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", s);
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned i;
		for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
			if (strcmp(tok, t[i].name) == 0)
				break;
		if (i == sizeof(t) / sizeof(t[0]))
			return 0;
		bits |= t[i].bit;
	}
	return bits | R_PLAN;
}

static int parse_opts(int argc, char **argv, opts *o)
{
	static const struct option lo[] = {
		{ "strategy", 1, 0, 's' }, { "block", 1, 0, 'k' }, { "fetch", 1, 0, 'f' },
		{ "batch", 1, 0, 'b' }, { "inflight", 1, 0, 'i' }, { "qd", 1, 0, 'q' },
		{ "threads", 1, 0, 't' }, { "max-read", 1, 0, 'R' }, { "gap", 1, 0, 'G' },
		{ "seed", 1, 0, 'S' }, { "cells", 1, 0, 'c' }, { "time", 1, 0, 'T' },
		{ "runners", 1, 0, 'r' }, { "pace", 1, 0, 'p' }, { "capacity", 1, 0, 'C' },
		{ "fio-time", 1, 0, 'F' }, { "obs", 1, 0, 'o' }, { "matrix", 1, 0, 'm' },
		{ "hdf5-indptr", 1, 0, 'I' }, { "out", 1, 0, 'O' }, { "tag", 1, 0, 'g' },
		{ "py-runner", 1, 0, 'P' }, { "python", 1, 0, 'Y' }, { "repeat", 1, 0, 'n' },
		{ "warmup", 1, 0, 'W' }, { "partial-inflate", 0, 0, 'Z' },
		{ "chunk-cache", 1, 0, 'K' },
		{ "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
	int opt;

	*o = (opts){ .c = { .matrix = "X", .obs_col = "cell_line", .batch = 64, .block = 16,
	                    .fetch = 16, .inflight = 3, .qd = 128, .threads = 2,
	                    .max_read = 1u << 20, .gap = 32u << 10, .max_cells = 50000,
	                    .time_limit = 10, .hdf5_indptr_each_fetch = 1, .tag = "point" },
	             .runners = R_PLAN | R_SCFETCH | R_FIO, .pace_frac = 0.5, .fio_time = 3,
	             .py_runner = SCF_PERF_DIR "/anndata_runner.py", .python = "/usr/bin/python3",
	             .repeat = 1 };
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 's': o->c.stream = strcmp(optarg, "stream") == 0; break;
		case 'k': o->c.block = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'f': o->c.fetch = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'b': o->c.batch = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'i': o->c.inflight = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'q': o->c.qd = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 't': o->c.threads = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'R': o->c.max_read = (uint32_t)strtoul(optarg, NULL, 10) << 10; break;
		case 'G': o->c.gap = (uint32_t)strtoul(optarg, NULL, 10) << 10; break;
		case 'S': o->c.seed = strtoull(optarg, NULL, 10); break;
		case 'c': o->c.max_cells = strtoull(optarg, NULL, 10); break;
		case 'T': o->c.time_limit = atof(optarg); break;
		case 'r': o->runners = parse_runners(optarg); break;
		case 'p': o->pace_frac = atof(optarg); break;
		case 'C': o->capacity = atof(optarg); break;
		case 'F': o->fio_time = atof(optarg); break;
		case 'o': o->c.obs_col = optarg; break;
		case 'm': o->c.matrix = optarg; break;
		case 'I': o->c.hdf5_indptr_each_fetch = strcmp(optarg, "once") != 0; break;
		case 'O': o->c.out_dir = optarg; break;
		case 'g': o->c.tag = optarg; break;
		case 'P': o->py_runner = optarg; break;
		case 'Y': o->python = optarg; break;
		case 'n': o->repeat = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'W': o->c.warmup_cells = strtoull(optarg, NULL, 10); break;
		case 'Z': o->c.flags |= SCF_F_PARTIAL_INFLATE; break;
		case 'K': /* MiB; 0 turns the cache off */
			o->c.chunk_cache = strtoull(optarg, NULL, 10) << 20;
			if (!o->c.chunk_cache)
				o->c.flags |= SCF_F_NO_CHUNK_CACHE;
			break;
		case 'h': usage(stdout); exit(0);
		default: return -1;
		}
	}
	if (optind + 1 != argc || !o->runners || !o->c.batch || !o->c.block || !o->c.fetch ||
	    !o->c.inflight || o->c.qd < 4 || !o->c.threads || !o->c.max_read ||
	    !(o->pace_frac > 0) || !o->repeat || o->repeat > MAX_REPEAT)
		return -1;
	o->c.path = argv[optind];
	return 0;
}

/* ---- children ---- */


static size_t read_all(int fd, void *p, size_t n)
{
	char *s = p;
	size_t got = 0;
	while (got < n) {
		ssize_t k = read(fd, s + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	return got;
}

static double tv_s(struct timeval t)
{
	return (double)t.tv_sec + t.tv_usec * 1e-6;
}

/*
 * Run fn in a fresh child, or, with argv, the program argv names with its
 * stdout on the pipe (the internal baselines); the figures come back through
 * the pipe, the rusage from wait4.
 */
static void fork_run(void (*fn)(const suite_cfg *, run_res *), char *const *argv,
                     const suite_cfg *c, outcome *out)
{
	int pfd[2], status = 0;
	struct rusage ru = { 0 };

	memset(out, 0, sizeof(*out));
	out->ran = 1;
	fflush(stdout);
	fflush(stderr);
	if (pipe(pfd) < 0) {
		snprintf(out->r.err, sizeof(out->r.err), "pipe: %s", strerror(errno));
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(out->r.err, sizeof(out->r.err), "fork: %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return;
	}
	if (pid == 0) {
		close(pfd[0]);
		if (argv) {
			dup2(pfd[1], STDOUT_FILENO);
			close(pfd[1]);
			execv(argv[0], argv);
			fprintf(stderr, "scf_suite: %s: %s\n", argv[0], strerror(errno));
			_exit(127);
		}
		run_res *r = calloc(1, sizeof(*r));
		if (!r)
			_exit(1);
		fn(c, r);
		_exit(suite_write_all(pfd[1], r, sizeof(*r)) < 0);
	}
	close(pfd[1]);
	size_t got = read_all(pfd[0], &out->r, sizeof(out->r));
	close(pfd[0]);
	while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
		;
	out->cpu_s = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
	out->maxrss_mb = ru.ru_maxrss / 1024.0;
	if (got != sizeof(out->r)) {
		out->r.ok = 0;
		snprintf(out->r.err, sizeof(out->r.err), "runner died (%s %d)",
		         WIFSIGNALED(status) ? "signal" : "exit",
		         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	}
}

/* scf_baselines, beside this program: the runners that need the engine's internals. */
static void run_baseline(const char *mode, const suite_cfg *c, outcome *out)
{
	char exe[4096], nums[512];
	const char *argv[SUITE_CFG_ARGC + 2];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 32);
	char *slash = n > 0 ? memrchr(exe, '/', (size_t)n) : NULL;

	if (!slash || suite_cfg_argv(c, mode, nums, sizeof(nums), argv + 1) < 0) {
		memset(out, 0, sizeof(*out));
		out->ran = 1;
		snprintf(out->r.err, sizeof(out->r.err), "cannot find scf_baselines");
		return;
	}
	strcpy(slash + 1, "scf_baselines");
	argv[0] = exe;
	fork_run(NULL, (char *const *)argv, c, out);
}

/* ---- fio ---- */

static double json_num(const char *s, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\" : ", key);
	const char *p = strstr(s, pat);
	return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* Run argv with stdout captured; its exit status and rusage.  NULL on failure. */
static char *exec_capture(char *const argv[], int *status, struct rusage *ru)
{
	int pfd[2];
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);

	*status = -1;
	if (!buf || pipe(pfd) < 0) {
		free(buf);
		return NULL;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		free(buf);
		return NULL;
	}
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		if (n + 1 == cap) {
			char *t = realloc(buf, cap * 2);
			if (!t)
				break;
			buf = t;
			cap *= 2;
		}
		ssize_t k = read(pfd[0], buf + n, cap - 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	buf[n] = 0;
	close(pfd[0]);
	while (wait4(pid, status, 0, ru) < 0 && errno == EINTR)
		;
	return buf;
}

/*
 * Run fio with argv and fill r from the read section of its JSON report.
 * fio writes nothing into the file (--readonly).
 */
static void run_fio(char *const argv[], outcome *out)
{
	int status;
	struct rusage ru;
	char *buf = exec_capture(argv, &status, &ru);

	memset(out, 0, sizeof(*out));
	out->ran = 1;
	const char *rd = buf ? strstr(buf, "\"read\" : {") : NULL;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !rd) {
		snprintf(out->r.err, sizeof(out->r.err), "fio failed (exit %d)",
		         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		free(buf);
		return;
	}
	double bytes = json_num(rd, "io_bytes"), ms = json_num(rd, "runtime");
	double ios = json_num(rd, "total_ios");
	out->r.bytes_read = (uint64_t)bytes;
	out->r.dev_read_bytes = (uint64_t)bytes;
	out->r.reads = (uint64_t)ios;
	out->r.secs = ms / 1e3;
	out->r.read_mean = ios > 0 ? bytes / ios : 0;
	out->r.direct = 1;
	out->r.ok = bytes > 0 && ms > 0;
	if (!out->r.ok)
		snprintf(out->r.err, sizeof(out->r.err), "fio reported no reads");
	free(buf);
}

/* The real anndata + h5py, in Debian's python3, on the plan's row sequence. */
static void run_anndata(const opts *o, outcome *out)
{
	char batch[32], limit[32], waits[4300];
	char *argv[] = { (char *)o->python, (char *)o->py_runner, (char *)o->c.path,
	                 (char *)o->rows, batch, limit, (char *)o->c.matrix, NULL, NULL };
	int status;
	struct rusage ru = { 0 };

	snprintf(batch, sizeof(batch), "%u", o->c.batch);
	snprintf(limit, sizeof(limit), "%g", o->c.time_limit);
	if (o->c.out_dir) {
		snprintf(waits, sizeof(waits), "%s/waits-%s-anndata.dat", o->c.out_dir, o->c.tag);
		argv[7] = waits;
	}
	memset(out, 0, sizeof(*out));
	out->ran = 1;
	char *buf = exec_capture(argv, &status, &ru);
	out->cpu_s = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
	out->maxrss_mb = ru.ru_maxrss / 1024.0;
	if (!buf || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || json_num(buf, "ok") != 1) {
		snprintf(out->r.err, sizeof(out->r.err), "%s %s failed (exit %d)", o->python,
		         o->py_runner, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		free(buf);
		return;
	}
	run_res *r = &out->r;
	r->secs = json_num(buf, "secs");
	r->cells = (uint64_t)json_num(buf, "cells");
	r->batches = (uint64_t)json_num(buf, "batches");
	r->fetches = (uint64_t)json_num(buf, "fetches");
	r->bytes_delivered = (uint64_t)json_num(buf, "bytes_delivered");
	r->bytes_read = (uint64_t)json_num(buf, "bytes_read");
	r->reads = (uint64_t)json_num(buf, "reads");
	r->dev_read_bytes = (uint64_t)json_num(buf, "dev_read_bytes");
	r->first_wait = json_num(buf, "first_wait");
	r->wait_p50 = json_num(buf, "wait_p50");
	r->wait_p99 = json_num(buf, "wait_p99");
	r->wait_p999 = json_num(buf, "wait_p999");
	r->wait_max = json_num(buf, "wait_max");
	r->cache_dropped = (uint32_t)json_num(buf, "cache_dropped");
	r->cpu_s = json_num(buf, "cpu_s");
	r->amp = r->bytes_delivered ? (double)r->dev_read_bytes / r->bytes_delivered : 0;
	r->read_mean = r->reads ? (double)r->bytes_read / r->reads : 0;
	r->entropy = NAN;
	r->ok = 1;
	free(buf);
}

static void fio_job(const opts *o, const run_res *plan, unsigned which, outcome *out)
{
	char name[64], file[4200], depth[32], bs[48], rt[32], log[4200];
	char *argv[24];
	int n = 0;
	uint64_t mean = ((uint64_t)plan->read_mean + 4095) / 4096 * 4096;

	snprintf(depth, sizeof(depth), "--iodepth=%u", plan->depth_used);
	snprintf(rt, sizeof(rt), "--runtime=%g", o->fio_time);
	snprintf(file, sizeof(file), "--filename=%s", o->c.path);
	argv[n++] = "fio";
	argv[n++] = "--ioengine=io_uring";
	argv[n++] = "--direct=1";
	argv[n++] = "--readonly";
	argv[n++] = "--output-format=json";
	argv[n++] = depth;
	if (which == R_FIO_REPLAY) {
		/* The planner's reads themselves: same offsets, sizes and order. */
		snprintf(name, sizeof(name), "--name=replay");
		snprintf(log, sizeof(log), "--read_iolog=%s", o->iolog);
		argv[n++] = name;
		argv[n++] = log;
		argv[n++] = "--replay_no_stall=1";
	} else {
		snprintf(name, sizeof(name), "--name=%s", which == R_FIO_RAND ? "rand" : "seq");
		if (which == R_FIO_RAND)
			snprintf(bs, sizeof(bs), "--bs=%llu", (unsigned long long)(mean ? mean : 4096));
		else
			snprintf(bs, sizeof(bs), "--bs=%u", o->c.max_read);
		argv[n++] = name;
		argv[n++] = file;
		argv[n++] = bs;
		argv[n++] = which == R_FIO_RAND ? "--rw=randread" : "--rw=read";
		argv[n++] = "--norandommap";
		argv[n++] = "--randrepeat=0";
		argv[n++] = "--time_based";
		argv[n++] = rt;
	}
	argv[n] = NULL;
	run_fio(argv, out);
}

/* ---- output ---- */

static void jnum(const char *k, double v)
{
	if (isfinite(v))
		printf(",\"%s\":%.6g", k, v);
	else
		printf(",\"%s\":null", k);
}

static void print_head(const opts *o, const char *runner, int rep)
{
	const suite_cfg *c = &o->c;
	printf("{\"point\":\"%s\",\"runner\":\"%s\",\"rep\":%d,\"file\":\"%s\",\"strategy\":\"%s\","
	       "\"block\":%u,\"fetch\":%u,\"batch\":%u,\"inflight\":%u,\"qd\":%u,\"threads\":%u,"
	       "\"max_read\":%u,\"gap\":%u,\"seed\":%llu,\"warmup\":%llu",
	       c->tag, runner, rep, c->path, c->stream ? "stream" : "block", c->block, c->fetch,
	       c->batch, c->inflight, c->qd, c->threads, c->max_read, c->gap,
	       (unsigned long long)c->seed, (unsigned long long)c->warmup_cells);
}

static double rate(double x, double secs)
{
	return secs > 0 ? x / secs : NAN;
}

/* MB/s of reads attributable to the cells delivered (read-ahead past the end excluded). */
static double read_mbs(const outcome *x)
{
	return rate((double)x->r.bytes_delivered * x->r.amp, x->r.secs) / 1e6;
}

static void print_outcome(const opts *o, const char *runner, int rep, const outcome *x,
                          const outcome *plan)
{
	const run_res *r = &x->r;

	print_head(o, runner, rep);
	printf(",\"ok\":%s", r->ok ? "true" : "false");
	if (!r->ok) {
		printf(",\"error\":\"");
		for (const char *s = r->err; *s; s++)
			printf(*s == '"' || *s == '\\' ? "\\%c" : "%c", *s);
		printf("\"}\n");
		fflush(stdout);
		return;
	}
	double ent = isfinite(r->entropy) ? r->entropy : plan->r.entropy;
	int is_fio = strncmp(runner, "fio", 3) == 0;
	jnum("cells", (double)r->cells);
	jnum("secs", r->secs);
	jnum("cells_per_s", is_fio ? NAN : rate((double)r->cells, r->secs));
	jnum("mb_s", is_fio ? NAN : rate((double)r->bytes_delivered, r->secs) / 1e6);
	jnum("mb_s_read", is_fio ? rate((double)r->bytes_read, r->secs) / 1e6 : read_mbs(x));
	jnum("mb_s_dev", rate((double)r->dev_read_bytes, r->secs) / 1e6);
	jnum("reads", (double)r->reads);
	jnum("read_mean_kib", r->read_mean / 1024);
	jnum("amp", is_fio ? NAN : r->amp);
	jnum("amp_dev", is_fio || !r->bytes_delivered ? NAN
	                : (double)r->dev_read_bytes / r->bytes_delivered);
	jnum("wait_first_ms", r->first_wait * 1e3);
	jnum("wait_p50_ms", r->wait_p50 * 1e3);
	jnum("wait_p99_ms", r->wait_p99 * 1e3);
	jnum("wait_p999_ms", r->wait_p999 * 1e3);
	jnum("wait_max_ms", r->wait_max * 1e3);
	jnum("steady_wait_p99_ms", r->steady_p99 * 1e3);
	jnum("steady_wait_p999_ms", r->steady_p999 * 1e3);
	jnum("steady_wait_max_ms", r->steady_max * 1e3);
	/* The loop's own CPU when the runner measured it, else the whole child's. */
	double cpu = r->cpu_s > 0 ? r->cpu_s : x->cpu_s;
	jnum("cpu_s", cpu);
	jnum("cpu_s_per_gb", is_fio || !r->bytes_delivered ? NAN : cpu / (r->bytes_delivered / 1e9));
	jnum("maxrss_mb", is_fio ? NAN : x->maxrss_mb);
	jnum("entropy", is_fio ? NAN : ent);
	jnum("entropy_random", plan->r.entropy_random);
	jnum("entropy_ratio", is_fio ? NAN : ent / plan->r.entropy_random);
	jnum("depth", is_fio || x == plan ? plan->r.depth_used : NAN);
	if (!is_fio)
		printf(",\"first_fetch_hash\":\"%016llx\"", (unsigned long long)r->first_fetch_hash);
	printf(",\"direct\":%u,\"pinned\":%u,\"cache_dropped\":%u", r->direct, r->pinned,
	       r->cache_dropped);
	if (x == plan) {
		jnum("reads_per_fetch", r->reads_per_fetch);
		jnum("read_median_kib", r->read_median / 1024);
		jnum("fetch_mb_max", r->fetch_bytes_max / 1e6);
		jnum("fetch_mb_mean", r->fetch_bytes_mean / 1e6);
		jnum("staging_mb_max", r->staging_max / 1e6);
		jnum("arena_mb_max", r->arena_max / 1e6);
		jnum("indptr_mb", r->indptr_bytes / 1e6);
		printf(",\"read_sizes\":[");
		for (uint32_t b = 0; b < r->n_bins; b++)
			printf("%s[%llu,%llu]", b ? "," : "", (unsigned long long)r->bin_size[b],
			       (unsigned long long)r->bin_count[b]);
		printf("]");
	}
	printf("}\n");
	fflush(stdout);
}

static double ratio(double a, double b)
{
	return a > 0 && b > 0 ? a / b : NAN;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median of the finite values; NAN when none. */
static double median(const double *v, unsigned n)
{
	double s[MAX_REPEAT + 1];
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++)
		if (isfinite(v[i]))
			s[k++] = v[i];
	if (!k)
		return NAN;
	qsort(s, k, sizeof(*s), cmp_dbl);
	return k % 2 ? s[k / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
}

static void jarr(const char *k, const double *v, unsigned n)
{
	printf(",\"%s\":[", k);
	for (unsigned i = 0; i < n; i++)
		printf(isfinite(v[i]) ? "%s%.4g" : "%snull", i ? "," : "", v[i]);
	printf("]");
}

/* Runner slots: index = bit position; rounds 0..repeat (the last: closing fio). */
enum { I_PLAN, I_REPLAY, I_SEQ, I_RAND, I_SCFETCH, I_PREAD, I_PACED, I_HDF5, I_ANNDATA, N_RUNNERS };

static outcome g_out[N_RUNNERS][MAX_REPEAT + 1];

static double cells_rate(const outcome *x)
{
	return x->ran && x->r.ok ? rate((double)x->r.cells, x->r.secs) : NAN;
}

static double fio_rate(const outcome *x)
{
	return x->ran && x->r.ok ? rate((double)x->r.bytes_read, x->r.secs) / 1e6 : NAN;
}

/* scfetch's read MB/s in round k over the mean of fio job i around it. */
static void bracket_ratios(const opts *o, int i, double *out)
{
	for (unsigned k = 0; k < o->repeat; k++) {
		const outcome *sf = &g_out[I_SCFETCH][k];
		double a = fio_rate(&g_out[i][k]), b = fio_rate(&g_out[i][k + 1]);
		double dev = isfinite(a) && isfinite(b) ? (a + b) / 2 : isfinite(a) ? a : b;
		out[k] = sf->ran && sf->r.ok ? ratio(read_mbs(sf), dev) : NAN;
	}
}

static void print_summary(const opts *o)
{
	const outcome *plan = &g_out[I_PLAN][0], *paced = &g_out[I_PACED][0];
	const outcome *h5 = &g_out[I_HDF5][0], *an = &g_out[I_ANNDATA][0];
	unsigned R = o->repeat;
	double cells[MAX_REPEAT], readmb[MAX_REPEAT], ent[MAX_REPEAT], xp[MAX_REPEAT];
	double fio[3][MAX_REPEAT + 1], rat[3][MAX_REPEAT], rss = NAN;
	static const char *const fio_key[3] = { "replay", "seq", "rand" };

	for (unsigned k = 0; k < R; k++) {
		const outcome *sf = &g_out[I_SCFETCH][k];
		cells[k] = cells_rate(sf);
		readmb[k] = sf->ran && sf->r.ok ? read_mbs(sf) : NAN;
		ent[k] = sf->ran && sf->r.ok ? sf->r.entropy : NAN;
		xp[k] = ratio(cells[k], cells_rate(&g_out[I_PREAD][k]));
		if (sf->ran && sf->r.ok && !(sf->maxrss_mb <= rss))
			rss = sf->maxrss_mb * 1.048576;
	}
	for (int j = 0; j < 3; j++) {
		for (unsigned k = 0; k <= R; k++)
			fio[j][k] = fio_rate(&g_out[I_REPLAY + j][k]);
		bracket_ratios(o, I_REPLAY + j, rat[j]);
	}
	double sf_cells = median(cells, R);

	print_head(o, "summary", -1);
	printf(",\"repeat\":%u", R);
	jnum("scfetch_cells_per_s", sf_cells);
	jnum("scfetch_mb_s_read", median(readmb, R));
	jarr("scfetch_cells_per_s_all", cells, R);
	jnum("entropy", median(ent, R));
	jnum("entropy_random", plan->r.entropy_random);
	jnum("entropy_ratio", median(ent, R) / plan->r.entropy_random);
	for (int j = 0; j < 3; j++) {
		char k1[40], k2[40], k3[40];
		snprintf(k1, sizeof(k1), "fio_%s_mb_s", fio_key[j]);
		snprintf(k2, sizeof(k2), "ratio_fio_%s", fio_key[j]);
		snprintf(k3, sizeof(k3), "ratio_fio_%s_all", fio_key[j]);
		jnum(k1, median(fio[j], R + 1));
		jnum(k2, median(rat[j], R));
		jarr(k3, rat[j], R);
	}
	jnum("x_pread", median(xp, R));
	jarr("x_pread_all", xp, R);
	jnum("x_hdf5", ratio(sf_cells, cells_rate(h5)));
	jnum("x_anndata", ratio(sf_cells, cells_rate(an)));
	jnum("paced_interval_ms", o->paced_interval * 1e3);
#define OKR(y, expr) ((y)->ran && (y)->r.ok ? (expr) : NAN)
	jnum("paced_wait_p50_ms", OKR(paced, paced->r.wait_p50 * 1e3));
	jnum("paced_wait_p99_ms", OKR(paced, paced->r.wait_p99 * 1e3));
	jnum("paced_wait_p999_ms", OKR(paced, paced->r.wait_p999 * 1e3));
	jnum("paced_wait_max_ms", OKR(paced, paced->r.wait_max * 1e3));
	jnum("paced_wait_first_ms", OKR(paced, paced->r.first_wait * 1e3));
	jnum("paced_steady_wait_p99_ms", OKR(paced, paced->r.steady_p99 * 1e3));
	jnum("paced_steady_wait_p999_ms", OKR(paced, paced->r.steady_p999 * 1e3));
	jnum("paced_steady_wait_max_ms", OKR(paced, paced->r.steady_max * 1e3));
	jnum("paced_batches", OKR(paced, (double)paced->r.batches));
#undef OKR
	/*
	 * Peak RSS target: indptr + 2 x (in-flight fetches x fetch bytes) + 64 MiB,
	 * with fetch bytes = the largest fetch's bytes read (its staging).
	 */
	double budget = (plan->r.indptr_bytes + 2.0 * o->c.inflight * plan->r.staging_max) / 1e6 +
	                67.108864;
	jnum("rss_mb", rss);
	jnum("rss_budget_mb", budget);
	jnum("rss_ratio", rss / budget);
	/* Every runner that finished its first fetch must have read the same rows. */
	int same = 1;
	for (int i = I_SCFETCH; i < N_RUNNERS; i++)
		for (unsigned k = 0; k <= R; k++) {
			const outcome *x = &g_out[i][k];
			if (x->ran && x->r.ok && x->r.fetches > 0 &&
			    x->r.first_fetch_hash != plan->r.first_fetch_hash)
				same = 0;
		}
	printf(",\"same_sequence\":%s}\n", same ? "true" : "false");
	fflush(stdout);
}

static const char *const g_names[N_RUNNERS] = { "plan", "fio-replay", "fio-seq", "fio-rand",
                                                "scfetch", "pread", "paced", "hdf5", "anndata" };

/* Run runner i into g_out[i][k] and print it. */
static void run_one(opts *o, int i, unsigned k)
{
	outcome *x = &g_out[i][k], *plan = &g_out[I_PLAN][0];

	int repeated = i >= I_REPLAY && i <= I_PREAD && o->repeat > 1;
	fprintf(stderr, "[%s] %s%s", o->c.tag, g_names[i], repeated ? "" : " ...\n");
	if (repeated)
		fprintf(stderr, " (round %u) ...\n", k + 1);
	o->c.pace_interval = i == I_PACED ? o->paced_interval : 0;
	if (i >= I_REPLAY && i <= I_RAND)
		fio_job(o, &plan->r, 1u << i, x);
	else if (i == I_ANNDATA) {
		run_anndata(o, x);
		/* It read the plan's own row file: the plan's sequence by construction. */
		x->r.first_fetch_hash = plan->r.first_fetch_hash;
	} else if (i == I_PLAN || i == I_PREAD) {
		run_baseline(i == I_PLAN ? "plan" : "pread", &o->c, x);
	} else if (i == I_HDF5) {
		fork_run(run_hdf5, NULL, &o->c, x);
		/* It replayed the plan's row file, as anndata does. */
		x->r.first_fetch_hash = plan->r.first_fetch_hash;
	} else {
		fork_run(run_scfetch, NULL, &o->c, x);
	}
	print_outcome(o, g_names[i], (int)k, x, plan);
	if (!x->r.ok)
		fprintf(stderr, "[%s] %s failed: %s\n", o->c.tag, g_names[i], x->r.err);
}

int main(int argc, char **argv)
{
	opts o;
	char iolog[4200], rows[4200];

	if (parse_opts(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	if (o.c.out_dir) {
		mkdir(o.c.out_dir, 0755);
		snprintf(iolog, sizeof(iolog), "%s/.iolog-%s-%d", o.c.out_dir, o.c.tag, (int)getpid());
		snprintf(rows, sizeof(rows), "%s/.rows-%s-%d", o.c.out_dir, o.c.tag, (int)getpid());
	} else {
		snprintf(iolog, sizeof(iolog), "/tmp/scf-suite-%d.iolog", (int)getpid());
		snprintf(rows, sizeof(rows), "/tmp/scf-suite-%d.rows", (int)getpid());
	}
	o.iolog = o.c.iolog = (o.runners & R_FIO_REPLAY) ? iolog : NULL;
	o.rows = o.c.rows = (o.runners & (R_HDF5 | R_ANNDATA)) ? rows : NULL;

	run_one(&o, I_PLAN, 0);
	int ok = g_out[I_PLAN][0].r.ok;
	for (unsigned k = 0; ok && k <= o.repeat; k++)
		for (int i = I_REPLAY; i <= I_PREAD; i++)
			if ((o.runners & (1u << i)) && (k < o.repeat || i <= I_RAND))
				run_one(&o, i, k);
	if (ok && (o.runners & R_PACED)) {
		double cap[MAX_REPEAT];
		for (unsigned k = 0; k < o.repeat; k++)
			cap[k] = cells_rate(&g_out[I_SCFETCH][k]);
		double c = o.capacity > 0 ? o.capacity : median(cap, o.repeat);
		if (!(c > 0)) {
			run_one(&o, I_SCFETCH, 0);
			c = cells_rate(&g_out[I_SCFETCH][0]);
		}
		if (c > 0) {
			o.paced_interval = o.c.batch / (o.pace_frac * c);
			run_one(&o, I_PACED, 0);
		}
	}
	for (int i = I_HDF5; ok && i <= I_ANNDATA; i++)
		if (o.runners & (1u << i))
			run_one(&o, i, 0);
	if (o.iolog)
		unlink(iolog);
	if (o.rows)
		unlink(rows);
	if (ok)
		print_summary(&o);
	return ok ? 0 : 1;
}
