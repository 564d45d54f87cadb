/*
 * engine/collection — a list of .h5ad files opened as one index space: each
 * file's descriptor (O_DIRECT where the filesystem allows it) and matrix
 * (indptr loaded, chunk maps resolved), the check that every file shares one
 * gene axis, and obs columns concatenated across files.  Global row ids
 * follow the order of the list.  Thread: the caller of scf_open_collection().
 */
#include "engine/collection.h"
#include "scfetch.h"
#include "formats/var.h"
#include "common/checked.h"
#include "formats/h5check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/faults.h" /* last: may wrap malloc in test builds */

/* Open for O_DIRECT unless told otherwise or the filesystem refuses it. */
static int open_file(const char *path, int want_direct, int *fd, int *direct, char *errbuf,
                     size_t errlen)
{
	char why[300];
	int rc = scf__file_check(path, why, sizeof(why));

	*direct = 0;
	*fd = -1;
	if (rc < 0) {
		if (errbuf)
			scf__path_msg(errbuf, errlen, path, why);
		return rc;
	}
	*fd = open(path, O_RDONLY | O_CLOEXEC | (want_direct ? O_DIRECT : 0));
	if (*fd < 0 && want_direct && errno == EINVAL)
		*fd = open(path, O_RDONLY | O_CLOEXEC);
	else
		*direct = want_direct;
	if (*fd < 0) {
		int e = errno;
		snprintf(why, sizeof(why), "cannot open: %s", strerror(e));
		if (errbuf)
			scf__path_msg(errbuf, errlen, path, why);
		return -e;
	}
	return 0;
}

/* Every file of a collection has the width of the first: one gene axis. */
static int check_width(const scf__collection *c, uint32_t f, char *errbuf, size_t errlen)
{
	const scf__matrix *a = &c->mats[0], *b = &c->mats[f];

	if (a->n_cols == b->n_cols)
		return 0;
	snprintf(errbuf, errlen, "%s: %s has %llu genes (columns) but %s: %s has %llu; the "
	         "files of a collection must share one gene axis", b->path, b->key,
	         (unsigned long long)b->n_cols, a->path, a->key, (unsigned long long)a->n_cols);
	return -EINVAL;
}

/*
 * Same width is not the same genes: where every file has a var index,
 * their hashes must agree too.  Files without one are trusted on width.
 */
static int check_gene_names(const scf__collection *c, char *errbuf, size_t errlen)
{
	uint64_t h0 = 0, n0 = 0;
	int rc = scf__var_hash(c->mats[0].path, c->key, &h0, &n0);

	for (uint32_t f = 1; rc == 1 && f < c->n_files; f++) {
		uint64_t h = 0, n = 0;
		rc = scf__var_hash(c->mats[f].path, c->key, &h, &n);
		if (rc == 1 && (h != h0 || n != n0)) {
			snprintf(errbuf, errlen, "%s: its var index (gene names) differs from that of "
			         "%s; the files of a collection must share one gene axis",
			         c->mats[f].path, c->mats[0].path);
			return -EINVAL;
		}
	}
	return rc < 0 ? rc : 0;
}

/* One file: its descriptor, its matrix described and checked. */
static int open_one(scf__collection *c, uint32_t f, const char *path, char *errbuf, size_t errlen)
{
	scf__matrix *m = &c->mats[f];
	int direct, rc;

	if (!path) {
		snprintf(errbuf, errlen, "invalid arguments: paths[%u] is NULL", f);
		return -EINVAL;
	}
	rc = open_file(path, c->want_direct, &c->fds[f], &direct, errbuf, errlen);
	if (rc < 0)
		return rc;
	c->direct &= direct;
	c->any_direct |= direct;
	rc = scf__h5ad_open_cached(m, path, c->key, &c->ix, errbuf, errlen);
	if (rc == 0 && f > 0)
		rc = check_width(c, f, errbuf, errlen);
	return rc;
}

int scf__coll_open(scf__collection *c, const char *const *paths, uint32_t n, const char *key,
                   int want_direct, const scf__idxcfg *ix, char *errbuf, size_t errlen)
{
	int rc = 0;

	memset(c, 0, sizeof(*c));
	snprintf(c->key, sizeof(c->key), "%s", key);
	c->want_direct = want_direct;
	if (ix)
		c->ix = *ix;
	c->mats = calloc(n, sizeof(*c->mats));
	c->fds = malloc(n * sizeof(int));
	c->row0 = calloc(n + 1, sizeof(uint64_t));
	if (!c->mats || !c->fds || !c->row0)
		return -ENOMEM;
	c->n_files = n;
	c->direct = 1;
	for (uint32_t f = 0; f < n; f++)
		c->fds[f] = -1;
	for (uint32_t f = 0; f < n && rc == 0; f++) {
		rc = open_one(c, f, paths[f], errbuf, errlen);
		if (rc == 0) {
			c->row0[f + 1] = c->row0[f] + c->mats[f].n_rows;
			c->nnz += c->mats[f].nnz;
		}
	}
	if (rc == 0 && n > 1)
		rc = check_gene_names(c, errbuf, errlen);
	if (rc < 0)
		return rc;
	c->n_rows = c->row0[n];
	c->n_cols = c->mats[0].n_cols;
	c->files = (scf__files){ .m = c->mats, .row0 = c->row0, .n = n };
	return 0;
}

void scf__coll_close(scf__collection *c)
{
	for (uint32_t f = 0; f < c->n_files; f++) {
		scf__h5ad_free(&c->mats[f]);
		if (c->fds[f] >= 0)
			close(c->fds[f]);
	}
	free(c->mats);
	free(c->fds);
	free(c->row0);
	c->mats = NULL;
	c->fds = NULL;
	c->row0 = NULL;
	c->n_files = 0;
}

/*
 * The union of the files' category lists, in order of first appearance:
 * names in c->categories, found again through an open-addressing hash of
 * their indices, so merging k files of n categories costs O(k n).
 */
typedef struct cat_union {
	scf__obs_col *c;
	uint64_t cap;      /* entries c->categories can hold */
	uint32_t *slot;    /* hash table: index + 1, 0 empty */
	uint64_t n_slot;   /* a power of two, at least twice the names */
} cat_union;

static uint64_t name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	return h;
}

static int union_grow(cat_union *u)
{
	uint64_t n = u->n_slot ? u->n_slot * 2 : 64;
	uint32_t *t = scf__calloc_array(n, sizeof(uint32_t));

	if (!t)
		return -ENOMEM;
	for (uint64_t i = 0; i < u->c->n_categories; i++) {
		uint64_t h = name_hash(u->c->categories[i]) & (n - 1);
		while (t[h])
			h = (h + 1) & (n - 1);
		t[h] = (uint32_t)i + 1;
	}
	free(u->slot);
	u->slot = t;
	u->n_slot = n;
	return 0;
}

/* Index of `name` in the union, appended when new; -ENOMEM. */
static int64_t union_index(cat_union *u, const char *name)
{
	scf__obs_col *c = u->c;
	uint64_t h;

	if ((c->n_categories + 1) * 2 > u->n_slot && union_grow(u) < 0)
		return -ENOMEM;
	for (h = name_hash(name) & (u->n_slot - 1); u->slot[h]; h = (h + 1) & (u->n_slot - 1))
		if (strcmp(c->categories[u->slot[h] - 1], name) == 0)
			return (int64_t)u->slot[h] - 1;
	if (c->n_categories >= INT32_MAX)
		return -ENOMEM;
	if (c->n_categories == u->cap) {
		char **q = realloc(c->categories, (u->cap * 2 + 8) * sizeof(char *));
		if (!q)
			return -ENOMEM;
		c->categories = q;
		u->cap = u->cap * 2 + 8;
	}
	if (!(c->categories[c->n_categories] = strdup(name)))
		return -ENOMEM;
	u->slot[h] = (uint32_t)c->n_categories + 1;
	return (int64_t)c->n_categories++;
}

/* One file's column into rows [row0, row0 + n) of c, codes renumbered to the union. */
static int merge_column(cat_union *u, const scf__obs_col *one, uint64_t row0, uint64_t n)
{
	scf__obs_col *c = u->c;
	int32_t *map = NULL;

	if (one->kind == SCF__OBS_INT) {
		memcpy(c->ints + row0, one->ints, n * sizeof(int64_t));
		c->fits_i32 &= one->fits_i32;
		return 0;
	}
	if (one->kind == SCF__OBS_FLOAT) {
		memcpy(c->floats + row0, one->floats, n * sizeof(double));
		return 0;
	}
	map = scf__alloc_array(one->n_categories, sizeof(int32_t));
	if (!map)
		return -ENOMEM;
	for (uint64_t i = 0; i < one->n_categories; i++) {
		int64_t k = union_index(u, one->categories[i]);
		if (k < 0) {
			free(map);
			return -ENOMEM;
		}
		map[i] = (int32_t)k;
	}
	for (uint64_t r = 0; r < n; r++)
		c->codes[row0 + r] = one->codes[r] < 0 ? -1 : map[one->codes[r]];
	free(map);
	return 0;
}

static const char *kind_name(int kind)
{
	return kind == SCF__OBS_CATEGORICAL ? "categorical" : kind == SCF__OBS_INT
	       ? "an integer column" : "a float column";
}

/* The whole column's arrays, of the first file's kind. */
static int union_start(cat_union *u, uint64_t n_rows, const scf__obs_col *first)
{
	scf__obs_col *c = u->c;

	c->kind = first->kind;
	c->fits_i32 = 1;
	if (c->kind == SCF__OBS_CATEGORICAL)
		return (c->codes = scf__alloc_array(n_rows, sizeof(int32_t))) ? 0 : -ENOMEM;
	if (c->kind == SCF__OBS_INT)
		return (c->ints = scf__alloc_array(n_rows, sizeof(int64_t))) ? 0 : -ENOMEM;
	return (c->floats = scf__alloc_array(n_rows, sizeof(double))) ? 0 : -ENOMEM;
}

/* One file's column, checked to be of the kind the first file's is. */
static int load_part(const scf__collection *c, uint32_t f, cat_union *u, const char *name,
                     char *errbuf, size_t errlen)
{
	scf__obs_col one;
	int rc = scf__obs_load(&one, c->mats[f].path, name, c->mats[f].n_rows, errbuf, errlen);

	if (rc < 0)
		return rc;
	rc = scf__obs_check_storage(c->mats[f].path, name, &c->mats[f], errbuf, errlen);
	if (rc == 0 && f == 0)
		rc = union_start(u, c->n_rows, &one);
	if (rc == 0 && one.kind != u->c->kind) {
		snprintf(errbuf, errlen, "%s: obs/%s is %s but in %s it is %s", c->mats[f].path,
		         name, kind_name(one.kind), c->mats[0].path, kind_name(u->c->kind));
		rc = SCF_E_UNSUPPORTED;
	}
	if (rc == 0)
		rc = merge_column(u, &one, c->row0[f], c->mats[f].n_rows);
	if (rc == -ENOMEM)
		snprintf(errbuf, errlen, "%s: obs/%s: out of memory", c->mats[f].path, name);
	scf__obs_free(&one);
	return rc;
}

int scf__coll_obs_load(const scf__collection *c, scf__obs_col *col, const char *name,
                       char *errbuf, size_t errlen)
{
	cat_union u = { .c = col };
	int rc = 0;

	if (c->n_files == 1) {
		rc = scf__obs_load(col, c->mats[0].path, name, c->n_rows, errbuf, errlen);
		if (rc == 0)
			rc = scf__obs_check_storage(c->mats[0].path, name, &c->mats[0], errbuf, errlen);
		if (rc < 0)
			scf__obs_free(col);
		return rc;
	}
	memset(col, 0, sizeof(*col));
	snprintf(col->name, sizeof(col->name), "%s", name);
	for (uint32_t f = 0; f < c->n_files && rc == 0; f++)
		rc = load_part(c, f, &u, name, errbuf, errlen);
	free(u.slot);
	if (rc < 0)
		scf__obs_free(col);
	return rc;
}
