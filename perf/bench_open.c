/*
 * perf/bench_open — what scf_open() costs on a large file: its wall time
 * and the opener's memory (/proc/self/smaps_rollup) without an index cache
 * (SCF_F_NO_INDEX_CACHE), on the open that builds one, and on opens that
 * map it; with the page cache warm, or dropped first (--cold, as root); for
 * 1 or more processes opening at once (fork, started together by a pipe).
 * Only the public API: linked to the shared library.
 *
 * usage: bench_open FILE [--procs 1,4,8] [--modes nocache,build,cached]
 *                        [--runs N] [--cold] [--matrix KEY]
 *   The caches go to a private directory under /var/tmp (index_dir),
 *   removed at the end.  Prints one markdown table row per point.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "scfetch.h"

#define MAX_PROCS 64

/* What a child measured: crosses a pipe to the parent. */
typedef struct sample {
	int rc;
	uint32_t cached, built;
	double open_s;
	double rss_mb, private_mb, anon_mb;       /* after open */
	double peak_mb;                           /* VmHWM: the most resident during open */
	char note[200];
} sample;

typedef struct bench {
	const char *path, *matrix;
	char dir[256];
	unsigned procs[8], n_procs, runs;
	int cold;
	int modes;                                /* bit 0 nocache, 1 build, 2 cached */
} bench;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The peak resident set (VmHWM) of this process, in MB. */
static double peak(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	double kb = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %lf kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb / 1024;
}

/* Rss, Private_Clean + Private_Dirty and Anonymous of this process, in MB. */
static void memory(double *rss, double *priv, double *anon)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	double kb, pc = 0, pd = 0;

	*rss = *priv = *anon = 0;
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Rss: %lf kB", &kb) == 1)
			*rss = kb / 1024;
		else if (sscanf(line, "Private_Clean: %lf kB", &kb) == 1)
			pc = kb;
		else if (sscanf(line, "Private_Dirty: %lf kB", &kb) == 1)
			pd = kb;
		else if (sscanf(line, "Anonymous: %lf kB", &kb) == 1)
			*anon = kb / 1024;
	}
	*priv = (pc + pd) / 1024;
	if (f)
		fclose(f);
}

static scf_options options(const bench *b, int nocache)
{
	return (scf_options){ .size = sizeof(scf_options), .matrix = b->matrix,
	                      .index_dir = b->dir, .threads = 2,
	                      .flags = nocache ? SCF_F_NO_INDEX_CACHE : 0 };
}

/* One child: wait for the start, open, measure, report, close. */
static void child(const bench *b, int nocache, int go, int out)
{
	scf_options o = options(b, nocache);
	scf_info info = { .size = sizeof(info) };
	sample s = { 0 };
	char err[512], c;
	scf_loader *l = NULL;
	double t0;

	if (read(go, &c, 1) != 1)
		_exit(2);
	t0 = now_s();
	s.rc = scf_open(&l, b->path, &o, err, sizeof(err));
	s.open_s = now_s() - t0;
	memory(&s.rss_mb, &s.private_mb, &s.anon_mb);
	s.peak_mb = peak();
	if (s.rc == 0) {
		scf_info_get(l, &info);
		s.cached = info.index_cached;
		s.built = info.index_built;
		snprintf(s.note, sizeof(s.note), "%s", scf_index_note(l, 0));
	} else {
		snprintf(s.note, sizeof(s.note), "%s", err);
	}
	if (write(out, &s, sizeof(s)) != (ssize_t)sizeof(s))
		_exit(3);
	scf_close(l);
	_exit(0);
}

/* Remove every file in the cache directory: the next open builds. */
static void clear_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[600];

	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
}

static int drop_caches(void)
{
	int fd;

	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0)
		return -1;
	int ok = write(fd, "3", 1) == 1;
	close(fd);
	return ok ? 0 : -1;
}

/* An untimed open without the cache: the file's index pages into the page cache. */
static void warm_up(const bench *b)
{
	pid_t pid = fork();

	if (pid == 0) {
		scf_options o = options(b, 1);
		scf_loader *l = NULL;
		char err[512];
		if (scf_open(&l, b->path, &o, err, sizeof(err)) == 0)
			scf_close(l);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
}

/* The cache built (in a child, so that this process loads nothing). */
static void ensure_cache(const bench *b)
{
	pid_t pid = fork();

	if (pid == 0) {
		scf_options o = options(b, 0);
		char err[512];
		int rc = scf_index_build(b->path, &o, NULL, 0, err, sizeof(err));
		if (rc < 0)
			fprintf(stderr, "bench_open: %s\n", err);
		_exit(rc < 0);
	}
	waitpid(pid, NULL, 0);
}

/* n processes open at once; their samples into s. */
static int run_point(const bench *b, int nocache, unsigned n, sample *s)
{
	int go[2], res[2];
	pid_t pid[MAX_PROCS];

	if (pipe(go) < 0 || pipe(res) < 0)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			close(go[1]);
			close(res[0]);
			child(b, nocache, go[0], res[1]);
		}
	}
	close(go[0]);
	close(res[1]);
	usleep(200000); /* every child forked and measured its baseline */
	for (unsigned i = 0; i < n; i++)
		if (write(go[1], "g", 1) != 1)
			return -1;
	for (unsigned i = 0; i < n; i++)
		if (read(res[0], &s[i], sizeof(s[i])) != (ssize_t)sizeof(s[i]))
			s[i].rc = -EIO;
	for (unsigned i = 0; i < n; i++)
		waitpid(pid[i], NULL, 0);
	close(go[1]);
	close(res[0]);
	return 0;
}

static const char *mode_name(int m)
{
	return m == 0 ? "no cache" : m == 1 ? "first open, builds the cache" : "cached";
}

static void report(const bench *b, int mode, unsigned n, int cold, const sample *s)
{
	double mean = 0, max = 0, rss = 0, priv = 0, anon = 0, hwm = 0;
	unsigned ok = 0, built = 0, cached = 0;

	for (unsigned i = 0; i < n; i++) {
		if (s[i].rc < 0) {
			fprintf(stderr, "bench_open: open failed: %s\n", s[i].note);
			continue;
		}
		ok++;
		mean += s[i].open_s;
		max = s[i].open_s > max ? s[i].open_s : max;
		rss += s[i].rss_mb;
		priv += s[i].private_mb;
		anon += s[i].anon_mb;
		hwm += s[i].peak_mb;
		built += s[i].built;
		cached += s[i].cached;
	}
	if (!ok)
		return;
	printf("| %s | %s | %u | %.3f | %.3f | %.0f | %.0f | %.0f | %.0f | %u/%u |\n",
	       mode_name(mode), cold ? "cold" : "warm", n, mean / ok, max, rss / ok, priv / ok,
	       anon / ok, hwm / ok, built, cached);
	fflush(stdout);
}

static void bench_mode(const bench *b, int mode)
{
	sample s[MAX_PROCS];

	for (unsigned p = 0; p < b->n_procs; p++) {
		for (int cold = 0; cold <= b->cold; cold++) {
			for (unsigned r = 0; r < b->runs; r++) {
				if (mode < 2 && !cold)
					warm_up(b);
				if (mode == 1)
					clear_dir(b->dir);
				if (mode == 2)
					ensure_cache(b);
				if (cold && drop_caches() < 0) {
					fprintf(stderr, "bench_open: cannot drop caches (root?)\n");
					return;
				}
				if (run_point(b, mode == 0, b->procs[p], s) == 0)
					report(b, mode, b->procs[p], cold, s);
			}
		}
	}
}

static int parse(bench *b, int argc, char **argv)
{
	b->matrix = "X";
	b->runs = 1;
	b->modes = 7;
	b->procs[0] = 1;
	b->n_procs = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--cold") == 0) {
			b->cold = 1;
		} else if (strcmp(a, "--runs") == 0 && v) {
			b->runs = (unsigned)atoi(v);
			i++;
		} else if (strcmp(a, "--matrix") == 0 && v) {
			b->matrix = v;
			i++;
		} else if (strcmp(a, "--procs") == 0 && v) {
			char *end;
			b->n_procs = 0;
			for (const char *p = v; *p && b->n_procs < 8; p = *end ? end + 1 : end) {
				unsigned long k = strtoul(p, &end, 10);
				if (k == 0 || k > MAX_PROCS || end == p)
					return -1;
				b->procs[b->n_procs++] = (unsigned)k;
			}
			i++;
		} else if (strcmp(a, "--modes") == 0 && v) {
			b->modes = (strstr(v, "nocache") ? 1 : 0) | (strstr(v, "build") ? 2 : 0) |
			           (strstr(v, "cached") ? 4 : 0);
			i++;
		} else if (a[0] != '-' && !b->path) {
			b->path = a;
		} else {
			return -1;
		}
	}
	return b->path && b->runs ? 0 : -1;
}

int main(int argc, char **argv)
{
	bench b = { 0 };

	if (parse(&b, argc, argv) < 0) {
		fprintf(stderr, "usage: bench_open FILE [--procs 1,4,8] [--modes nocache,build,"
		        "cached] [--runs N] [--cold] [--matrix KEY]\n");
		return 2;
	}
	snprintf(b.dir, sizeof(b.dir), "/var/tmp/bench_open.XXXXXX");
	if (!mkdtemp(b.dir)) {
		perror("bench_open: mkdtemp");
		return 1;
	}
	printf("%s (%s)\n\n", b.path, b.matrix);
	printf("| open | page cache | processes | open s (mean) | open s (max) | Rss MB | "
	       "private MB | anonymous MB | peak RSS MB | built/cached |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|\n");
	for (int mode = 0; mode < 3; mode++)
		if (b.modes & (1 << mode))
			bench_mode(&b, mode);
	clear_dir(b.dir);
	rmdir(b.dir);
	return 0;
}
