/*
 * formats/h5ad — resolve an AnnData matrix to file extents with the HDF5
 * library, once, at open.  Nothing here runs on the hot path.
 * Thread: the caller of scf_open(); HDF5 is not thread-safe in Debian's build.
 */
#include "formats/h5ad.h"

#include <errno.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "scfetch.h"
#include "common/checked.h"
#include "formats/h5check.h"
#include "formats/idxcache.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

/* Every message names the file and the dataset; this keeps that uniform. */
static int fail(const scf__matrix *m, const char *dset, int code, char *err,
                size_t errlen, const char *fmt, ...)
{
	char what[512], full[800];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "%s: %s", dset ? dset : m->key, what);
	scf__path_msg(err, errlen, m->path, full);
	return code;
}

/* A problem with the file as a whole: no dataset or matrix to name. */
__attribute__((format(printf, 5, 6)))
static int fail_file(const scf__matrix *m, int code, char *err, size_t errlen,
                     const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	scf__path_msg(err, errlen, m->path, what);
	return code;
}

/*
 * Why HDF5 refused a file that carries its signature: most often a copy or
 * download cut short, which the superblock's end-of-file address shows.
 * Signature at byte 0 only (user blocks are not used by h5ad writers).
 */
static int why_unopenable(const scf__matrix *m, char *err, size_t errlen)
{
	uint8_t sb[48];
	struct stat st;
	int fd = open(m->path, O_RDONLY | O_CLOEXEC);
	ssize_t got = fd >= 0 ? pread(fd, sb, sizeof(sb), 0) : -1;
	uint64_t eof = 0;
	size_t at = 0;

	if (fd >= 0 && fstat(fd, &st) == 0 && got == (ssize_t)sizeof(sb) &&
	    memcmp(sb, "\211HDF\r\n\032\n", 8) == 0) {
		/* end-of-file address: after base and free-space/extension addresses */
		if (sb[8] <= 1 && sb[13] == 8)
			at = sb[8] == 0 ? 40 : 44;
		else if ((sb[8] == 2 || sb[8] == 3) && sb[9] == 8)
			at = 28;
		for (unsigned i = 0; at && i < 8; i++)
			eof |= (uint64_t)sb[at + i] << (8 * i);
	}
	/* HDF5 takes a shared lock to read; a writer elsewhere holds it exclusively */
	int locked = fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	if (fd >= 0)
		close(fd);
	if (locked)
		return fail_file(m, -EBUSY, err, errlen, "HDF5 cannot open the file: another "
		                 "process holds it open for writing (HDF5's file lock; e.g. h5py "
		                 "or anndata in mode 'r+' or 'a'); open it read-only there, close "
		                 "it, or set HDF5_USE_FILE_LOCKING=FALSE if nothing writes it");
	if (fd >= 0 && got >= 0 && got < (ssize_t)sizeof(sb))
		return fail_file(m, SCF_E_NOT_H5AD, err, errlen, "not an HDF5 file: %zd bytes, "
		                 "shorter than a superblock", got);
	if (at && eof > (uint64_t)st.st_size)
		return fail_file(m, SCF_E_CORRUPT, err, errlen,
		                 "file truncated: %llu bytes, but its superblock says %llu "
		                 "(an interrupted copy or write?)",
		                 (unsigned long long)st.st_size, (unsigned long long)eof);
	return fail_file(m, SCF_E_CORRUPT, err, errlen, "HDF5 cannot open the file: its "
	                 "superblock or root group is damaged");
}

/*
 * H5Lexists for a path of several components, one component at a time:
 * HDF5 reports a missing intermediate group as an error, which must not be
 * mistaken for damage.  1 present, 0 missing, negative: links unreadable.
 */
static htri_t link_exists(hid_t file, const char *path)
{
	char part[256];
	htri_t r = 0;

	for (const char *p = path; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		if ((size_t)(p - path) >= sizeof(part))
			return -1;
		memcpy(part, path, (size_t)(p - path));
		part[p - path] = '\0';
		if (part[0] && (r = H5Lexists(file, part, H5P_DEFAULT)) <= 0)
			return r;
		if (*p == '\0')
			return r;
	}
}

const char *scf__dtype_name(scf__dtype t)
{
	static const char *const names[3][4] = {
		{ "int8", "int16", "int32", "int64" },
		{ "uint8", "uint16", "uint32", "uint64" },
		{ "float8?", "float16", "float32", "float64" },
	};
	int i = t.size == 1 ? 0 : t.size == 2 ? 1 : t.size == 4 ? 2 : 3;

	return t.cls <= SCF__T_FLOAT ? names[t.cls][i] : "unknown";
}

/* Map an HDF5 datatype to what the engine converts; little-endian only. */
static int classify_type(hid_t t, scf__dtype *out)
{
	H5T_class_t c = H5Tget_class(t);
	size_t size = H5Tget_size(t);

	if (H5Tget_order(t) != H5T_ORDER_LE)
		return -1;
	if (size != 1 && size != 2 && size != 4 && size != 8)
		return -1;
	if (c == H5T_INTEGER) {
		out->cls = H5Tget_sign(t) == H5T_SGN_NONE ? SCF__T_UINT : SCF__T_INT;
	} else if (c == H5T_FLOAT) {
		if (size != 4 && size != 8)
			return -1;
		out->cls = SCF__T_FLOAT;
	} else {
		return -1;
	}
	out->size = (uint8_t)size;
	return 0;
}

/* The superblock facts the chunk-index reader needs. */
static int file_geom(hid_t file, int fd, scf__h5geom *g)
{
	hid_t fcpl = H5Fget_create_plist(file);
	size_t sa = 0, ss = 0;
	hsize_t ub = 0;
	struct stat st;

	if (fcpl < 0)
		return -1;
	H5Pget_sizes(fcpl, &sa, &ss);
	H5Pget_userblock(fcpl, &ub);
	H5Pclose(fcpl);
	if (fstat(fd, &st) < 0)
		return -1;
	g->sizeof_addr = (unsigned)sa;
	g->sizeof_size = (unsigned)ss;
	g->base_addr = ub;
	g->eof = (uint64_t)st.st_size;
	return 0;
}

/*
 * The value of elements never written: what HDF5 (and so h5py and anndata)
 * reads for a chunk that was never stored.  0 unless the file sets another.
 */
static int read_fill(const scf__matrix *m, hid_t dcpl, scf__dset *ds, char *err,
                     size_t errlen)
{
	H5D_fill_value_t defined = H5D_FILL_VALUE_UNDEFINED;
	double v = 0;

	ds->fill = 0;
	if (H5Pfill_value_defined(dcpl, &defined) < 0)
		return fail(m, ds->name, SCF_E_CORRUPT, err, errlen, "cannot read its fill value");
	if (defined != H5D_FILL_VALUE_USER_DEFINED)
		return 0;
	if (H5Pget_fill_value(dcpl, H5T_NATIVE_DOUBLE, &v) < 0)
		return fail(m, ds->name, SCF_E_CORRUPT, err, errlen, "cannot read its fill value");
	ds->fill = (float)v;
	return 0;
}

/* Storage layout, filters and extents of one open dataset. */
static int resolve_storage(scf__matrix *m, hid_t file, int fd, hid_t d,
                           scf__dset *ds, char *err, size_t errlen)
{
	hid_t dcpl = H5Dget_create_plist(d);
	H5D_layout_t layout;
	int rc = 0;

	if (dcpl < 0)
		return fail(m, ds->name, SCF_E_CORRUPT, err, errlen,
		            "cannot read the dataset creation properties");
	layout = H5Pget_layout(dcpl);
	int nf = H5Pget_nfilters(dcpl);
	if (nf < 0 || nf > SCF__MAX_FILTERS) {
		rc = fail(m, ds->name, SCF_E_UNSUPPORTED, err, errlen,
		          "filter pipeline of %d filters", nf);
		goto out;
	}
	ds->n_filters = (unsigned)nf;
	for (int i = 0; i < nf; i++) {
		scf__filter *f = &ds->filter[i];
		f->n_cd = 8;
		f->id = H5Pget_filter2(dcpl, (unsigned)i, &f->flags, &f->n_cd, f->cd,
		                       0, NULL, NULL);
		if (f->n_cd > 8)
			f->n_cd = 8;
	}

	if (H5Pget_external_count(dcpl) > 0) {
		rc = fail(m, ds->name, SCF_E_UNSUPPORTED, err, errlen,
		          "external storage (its elements live in other files); rewrite the "
		          "file with contiguous or chunked storage");
		goto out;
	}
	rc = read_fill(m, dcpl, ds, err, errlen);
	if (rc < 0)
		goto out;
	if (layout == H5D_CONTIGUOUS) {
		haddr_t off = H5Dget_offset(d);
		ds->storage = SCF__CONTIGUOUS;
		if (off == HADDR_UNDEF) {
			uint64_t n = ds->dims[0] * (ds->rank == 2 ? ds->dims[1] : 1);
			if (n != 0) {
				rc = fail(m, ds->name, SCF_E_UNSUPPORTED, err, errlen,
				          "contiguous storage never written (no file offset)");
				goto out;
			}
			off = 0;
		}
		ds->offset = off;
		uint64_t end = ds->offset + scf__dtype_bytes(ds->type,
			ds->dims[0] * (ds->rank == 2 ? ds->dims[1] : 1));
		struct stat st;
		if (fstat(fd, &st) == 0 && end > (uint64_t)st.st_size) {
			rc = fail(m, ds->name, SCF_E_CORRUPT, err, errlen,
			          "contiguous data ends at byte %llu, past the end of the "
			          "file (%llu bytes): truncated?",
			          (unsigned long long)end, (unsigned long long)st.st_size);
			goto out;
		}
	} else if (layout == H5D_CHUNKED) {
		hsize_t cd[2] = { 0, 0 };

		/* the index itself is read later, from the file or an index cache */
		ds->storage = SCF__CHUNKED;
		if (H5Pget_chunk(dcpl, 2, cd) != (int)ds->rank) {
			rc = fail(m, ds->name, SCF_E_CORRUPT, err, errlen,
			          "cannot read the chunk layout");
			goto out;
		}
		ds->chunks.rank = ds->rank;
		ds->chunks.chunk_dims[0] = cd[0];
		ds->chunks.chunk_dims[1] = ds->rank == 2 ? cd[1] : 1;
	} else {
		rc = fail(m, ds->name, SCF_E_UNSUPPORTED, err, errlen,
		          "compact or virtual storage layout; rewrite the file with "
		          "contiguous or chunked storage");
	}
out:
	H5Pclose(dcpl);
	return rc;
}

/* Open one dataset of the matrix and describe it. */
static int describe_dset(scf__matrix *m, hid_t file, int fd, const char *name,
                         unsigned want_rank, scf__dset *ds, char *err, size_t errlen)
{
	hid_t d, t;
	uint64_t dims[2] = { 0, 1 };
	char why[200];
	int rc = 0;

	snprintf(ds->name, sizeof(ds->name), "%s", name);
	htri_t there = link_exists(file, name);
	if (there < 0)
		return fail(m, name, SCF_E_CORRUPT, err, errlen,
		            "cannot read the links leading to it: damaged group");
	if (there == 0)
		return fail(m, name, SCF_E_NOT_H5AD, err, errlen, "dataset missing");
	d = H5Dopen2(file, name, H5P_DEFAULT);
	if (d < 0)
		return fail(m, name, SCF_E_NOT_H5AD, err, errlen, "not a dataset");
	if ((rc = scf__h5_dset_shape(d, want_rank, dims, why, sizeof(why))) < 0) {
		fail(m, name, rc, err, errlen, "%s", why);
		goto out;
	}
	ds->rank = want_rank;
	ds->dims[0] = dims[0];
	ds->dims[1] = want_rank == 2 ? dims[1] : 1;
	t = H5Dget_type(d);
	if (classify_type(t, &ds->type) < 0) {
		rc = fail(m, name, SCF_E_UNSUPPORTED, err, errlen,
		          "element type is not a little-endian integer or float32/64");
		H5Tclose(t);
		goto out;
	}
	H5Tclose(t);
	H5O_info_t oi;
	if (H5Oget_info2(d, &oi, H5O_INFO_BASIC) < 0) {
		rc = fail(m, name, SCF_E_CORRUPT, err, errlen, "cannot read its object header");
		goto out;
	}
	ds->ohdr = m->sb_start + oi.addr;
	rc = resolve_storage(m, file, fd, d, ds, err, errlen);
out:
	H5Dclose(d);
	return rc;
}

/* Check a loaded indptr describes rows inside data/indices; set nnz and the widest row. */
static int check_indptr(scf__matrix *m, char *err, size_t errlen)
{
	const char *name = m->indptr_ds.name;
	uint64_t widest = 0;

	for (uint64_t r = 0; r < m->n_rows; r++) {
		if (m->indptr[r] < 0 || m->indptr[r + 1] < m->indptr[r])
			return fail(m, name, SCF_E_CORRUPT, err, errlen,
			            "not monotonic at row %llu (%lld then %lld)",
			            (unsigned long long)r, (long long)m->indptr[r],
			            (long long)m->indptr[r + 1]);
		uint64_t len = (uint64_t)(m->indptr[r + 1] - m->indptr[r]);
		widest = len > widest ? len : widest;
	}
	if (m->n_rows == 0 && m->indptr[0] < 0)
		return fail(m, name, SCF_E_CORRUPT, err, errlen, "starts at %lld",
		            (long long)m->indptr[0]);
	m->max_row_nnz = widest;
	if ((uint64_t)m->indptr[m->n_rows] > m->data.dims[0] ||
	    m->data.dims[0] != m->indices.dims[0])
		return fail(m, name, SCF_E_CORRUPT, err, errlen,
		            "ends at %lld but data has %llu and indices %llu entries",
		            (long long)m->indptr[m->n_rows], (unsigned long long)m->data.dims[0],
		            (unsigned long long)m->indices.dims[0]);
	m->nnz = (uint64_t)(m->indptr[m->n_rows] - m->indptr[0]);
	return 0;
}

/* indptr described: an integer dataset of n_rows + 1 entries.  Read later. */
static int describe_indptr(scf__matrix *m, hid_t file, int fd, const char *name, char *err,
                           size_t errlen)
{
	scf__dset *ds = &m->indptr_ds;
	int rc = describe_dset(m, file, fd, name, 1, ds, err, errlen);

	if (rc < 0)
		return rc;
	m->indptr_type = ds->type;
	if (ds->type.cls == SCF__T_FLOAT)
		return fail(m, name, SCF_E_CORRUPT, err, errlen, "must be an integer array");
	if (ds->dims[0] != m->n_rows + 1)
		return fail(m, name, SCF_E_CORRUPT, err, errlen,
		            "has %llu entries but shape says %llu rows (expected rows + 1)",
		            (unsigned long long)ds->dims[0], (unsigned long long)m->n_rows);
	return 0;
}

/*
 * Load indptr whole with scfetch's own reader (formats/indptr.c), after
 * checking it was written and fits the file, then check what it says.
 */
static int load_indptr(scf__matrix *m, hid_t file, int fd, char *err, size_t errlen)
{
	scf__dset *ds = &m->indptr_ds;
	const char *name = ds->name;
	char why[300];
	hid_t d;
	int rc;

	d = H5Dopen2(file, name, H5P_DEFAULT);
	if (d < 0)
		return fail(m, name, SCF_E_CORRUPT, err, errlen, "cannot be opened");
	rc = scf__h5_check_backed(d, m->n_rows + 1, why, sizeof(why));
	H5Dclose(d);
	if (rc < 0)
		return fail(m, name, rc, err, errlen, "%s", why);
	m->indptr = scf__alloc_array(m->n_rows + 1, sizeof(int64_t));
	if (!m->indptr)
		return fail(m, name, -ENOMEM, err, errlen, "cannot allocate %llu entries",
		            (unsigned long long)m->n_rows + 1);
	why[0] = '\0';
	rc = scf__indptr_read(ds, fd, m->n_rows + 1, m->indptr, why, sizeof(why));
	if (rc < 0)
		return fail(m, name, rc, err, errlen, "%s", why[0] ? why : scf_strerror(rc));
	return check_indptr(m, err, errlen);
}

/* What the engine cannot decode gets a clear refusal at open. */
static int check_decodable(const scf__matrix *m, char *err, size_t errlen)
{
	const scf__dset *ds[2] = { &m->data, m->encoding == SCF__CSR ? &m->indices : NULL };
	char name[32];

	for (int i = 0; i < 2 && ds[i]; i++)
		for (unsigned f = 0; f < ds[i]->n_filters; f++)
			if (!scf__filter_supported(ds[i]->filter[f].id))
				return fail(m, ds[i]->name, SCF_E_UNSUPPORTED, err, errlen,
				            "uses %s (HDF5 filter id %d), which the engine cannot "
				            "decode; supported: deflate, shuffle, fletcher32, lzf, zstd",
				            scf__filter_name(ds[i]->filter[f].id, name, sizeof(name)),
				            ds[i]->filter[f].id);
	return 0;
}

/* Every chunk holding part of a stored entry must exist. */
static int check_chunks_written(const scf__matrix *m, char *err, size_t errlen)
{
	const scf__dset *ds[2] = { &m->data, &m->indices };

	for (int i = 0; i < 2 && m->encoding == SCF__CSR; i++) {
		if (ds[i]->storage != SCF__CHUNKED)
			continue;
		const scf__chunk_map *cm = &ds[i]->chunks;
		uint64_t used = ((uint64_t)m->indptr[m->n_rows] + cm->chunk_dims[0] - 1) /
		                cm->chunk_dims[0];
		for (uint64_t c = (uint64_t)m->indptr[0] / cm->chunk_dims[0]; c < used && c < cm->n; c++)
			if (scf__chunk_addr(cm, c) == SCF__CHUNK_UNALLOCATED)
				return fail(m, ds[i]->name, SCF_E_CORRUPT, err, errlen, "chunk %llu "
				            "holds stored entries but was never written",
				            (unsigned long long)c);
	}
	return 0;
}

/* A dataset's stored extents in address order: one for contiguous storage. */
static scf__byte_range *dset_extents(const scf__dset *ds, size_t *n)
{
	uint64_t len = ds->dims[0] * ds->dims[1] * ds->type.size;
	scf__byte_range *e;

	if (ds->storage == SCF__CHUNKED)
		return scf__chunk_extents(&ds->chunks, n);
	if ((e = malloc(sizeof(*e))) == NULL)
		return NULL;
	*e = (scf__byte_range){ ds->offset, len, 0 };
	*n = len > 0; /* an empty dataset may have no address at all */
	return e;
}

/* Append src[0..n) to the list *dst of *dn entries; 0 or -ENOMEM. */
static int extents_add(scf__byte_range **dst, size_t *dn, const scf__byte_range *src, size_t n)
{
	scf__byte_range *q;

	if (n == 0)
		return 0;
	q = realloc(*dst, (*dn + n) * sizeof(*q));
	if (!q)
		return -ENOMEM;
	memcpy(q + *dn, src, n * sizeof(*q));
	*dst = q;
	*dn += n;
	return 0;
}

/* What a dataset puts in the file: its stored bytes (when asked), its
 * chunk-index blocks and the first bytes of its object header; each range's
 * id names the owner for messages. */
static int dset_objects(const scf__dset *ds, uint64_t owner, int with_storage,
                        scf__byte_range **out, size_t *n)
{
	scf__byte_range hdr = { ds->ohdr, 12, owner }; /* the shortest header prefix */
	size_t ns = 0, at = *n;
	int rc = extents_add(out, n, &hdr, 1);

	if (rc == 0 && ds->storage == SCF__CHUNKED)
		rc = extents_add(out, n, ds->chunks.meta, ds->chunks.n_meta);
	if (rc == 0 && with_storage) {
		scf__byte_range *e = dset_extents(ds, &ns);
		rc = e ? extents_add(out, n, e, ns) : -ENOMEM;
		free(e);
	}
	for (size_t i = at; rc == 0 && i < *n; i++)
		(*out)[i].id = owner;
	return rc;
}

/* a[0..na) and b[0..nb), both sorted, into one sorted list that replaces *a. */
static int extents_merge(scf__byte_range **a, size_t *na, const scf__byte_range *b, size_t nb)
{
	scf__byte_range *q = malloc((*na + nb ? *na + nb : 1) * sizeof(*q));
	size_t i = 0, j = 0, k = 0;

	if (!q)
		return -ENOMEM;
	while (i < *na || j < nb)
		q[k++] = j == nb || (i < *na && (*a)[i].addr <= b[j].addr) ? (*a)[i++] : b[j++];
	free(*a);
	*a = q;
	*na = k;
	return 0;
}

/*
 * The stored bytes of data and indices are delivered as cells, so they must
 * be nobody else's: not each other's, not indptr's, not an object header or
 * chunk-index block of the three datasets, not the superblock.  (A damaged
 * index could point a chunk at any of them; the chunk-index reader already
 * checks each dataset against its own index.)  Both sides are sorted; a
 * merge walk finds the first shared byte.  The others are sorted once and
 * indices' chunks merged in (in address order already), since sorting
 * millions of extents again was a third of the time of an open.
 */
static int check_disjoint(const scf__matrix *m, char *err, size_t errlen)
{
	const scf__dset *ds[3] = { &m->data, &m->indices, &m->indptr_ds };
	unsigned n_ds = m->encoding == SCF__CSR ? 3 : 1;
	scf__byte_range *other = NULL, sb = { m->sb_start, m->sb_len, 3 };
	size_t n_other = 0;
	int rc = extents_add(&other, &n_other, &sb, m->sb_len ? 1 : 0);

	/* indices is checked against all that, data against all that and indices */
	for (unsigned k = 0; rc == 0 && k < n_ds; k++)
		rc = dset_objects(ds[k], k, k == 2, &other, &n_other);
	if (rc == 0)
		scf__extents_sort(other, n_other);
	for (int k = n_ds > 1 ? 1 : 0; rc == 0 && k >= 0; k--) {
		size_t na = 0, i, j;
		scf__byte_range *a = dset_extents(ds[k], &na);
		if (!a) {
			rc = -ENOMEM;
			break;
		}
		if (k == 1) {
			for (size_t x = 0; x < na; x++)
				a[x].id = 1;
		}
		if (scf__extents_meet(a, na, other, n_other, &i, &j)) {
			uint64_t o = other[j].id;
			rc = fail(m, ds[k]->name, SCF_E_CORRUPT, err, errlen,
			          "stored bytes at %llu (%llu bytes) overlap %s%s at %llu (%llu "
			          "bytes): the chunk index or layout points into another object",
			          (unsigned long long)a[i].addr, (unsigned long long)a[i].len,
			          o == 3 ? "the superblock" : "the bytes of ", o == 3 ? "" : ds[o]->name,
			          (unsigned long long)other[j].addr, (unsigned long long)other[j].len);
		}
		/* data's turn next: indices' bytes are others to it */
		if (rc == 0 && k == 1)
			rc = extents_merge(&other, &n_other, a, na);
		free(a);
	}
	if (rc == -ENOMEM)
		fail(m, NULL, -ENOMEM, err, errlen, "out of memory checking chunk extents");
	free(other);
	return rc;
}

/* A CSR group: attributes, then data, indices, indptr. */
static int open_csr(scf__matrix *m, hid_t file, int fd, hid_t grp, char *err,
                    size_t errlen)
{
	char name[256], why[200];
	int64_t shape[2] = { -1, -1 };
	int rc;

	rc = scf__h5_attr_ints(grp, "shape", shape, 2, why, sizeof(why));
	if (rc == 0)
		return fail(m, NULL, SCF_E_CORRUPT, err, errlen, "attribute `shape` missing");
	if (rc < 0)
		return fail(m, NULL, SCF_E_CORRUPT, err, errlen, "%s", why);
	if (shape[0] < 0 || shape[1] < 0 || shape[1] > INT32_MAX)
		return fail(m, NULL, SCF_E_CORRUPT, err, errlen,
		            "attribute `shape` must be two sizes, columns < 2^31 (got %lld x %lld)",
		            (long long)shape[0], (long long)shape[1]);
	m->n_rows = (uint64_t)shape[0];
	m->n_cols = (uint64_t)shape[1];

	snprintf(name, sizeof(name), "%s/data", m->key);
	if ((rc = describe_dset(m, file, fd, name, 1, &m->data, err, errlen)) < 0)
		return rc;
	snprintf(name, sizeof(name), "%s/indices", m->key);
	if ((rc = describe_dset(m, file, fd, name, 1, &m->indices, err, errlen)) < 0)
		return rc;
	if (m->indices.type.cls == SCF__T_FLOAT)
		return fail(m, name, SCF_E_CORRUPT, err, errlen,
		            "column indices stored as %s", scf__dtype_name(m->indices.type));
	snprintf(name, sizeof(name), "%s/indptr", m->key);
	return describe_indptr(m, file, fd, name, err, errlen);
}

/* Find the matrix: a CSR group, or a dense 2-D dataset. */
static int open_matrix(scf__matrix *m, hid_t file, int fd, char *err, size_t errlen)
{
	H5O_info_t oi;
	char enc[64], why[200];
	hid_t g;
	int rc;

	htri_t there = link_exists(file, m->key);
	if (there == 0)
		return fail(m, NULL, SCF_E_NOT_H5AD, err, errlen, "no such matrix in the file");
	if (there > 0 && H5Oexists_by_name(file, m->key, H5P_DEFAULT) == 0)
		return fail(m, NULL, SCF_E_NOT_H5AD, err, errlen,
		            "the link points to nothing (a dangling soft link)");
	if (there < 0 || H5Oget_info_by_name2(file, m->key, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
		return fail(m, NULL, SCF_E_CORRUPT, err, errlen,
		            "cannot read its object header or the links leading to it: damaged file");
	if (oi.type == H5O_TYPE_DATASET) {
		m->encoding = SCF__DENSE;
		rc = describe_dset(m, file, fd, m->key, 2, &m->data, err, errlen);
		m->n_rows = m->data.dims[0];
		m->n_cols = m->data.dims[1];
		m->nnz = m->n_rows * m->n_cols;
		if (rc == 0 && m->n_cols > INT32_MAX)
			rc = fail(m, NULL, SCF_E_UNSUPPORTED, err, errlen, "more than 2^31 columns");
		if (rc == 0 && m->n_cols == 0 && m->n_rows > 0)
			rc = fail(m, NULL, SCF_E_UNSUPPORTED, err, errlen, "a dense matrix of %llu "
			          "rows and 0 columns: there is nothing to deliver",
			          (unsigned long long)m->n_rows);
		return rc;
	}
	if (oi.type != H5O_TYPE_GROUP)
		return fail(m, NULL, SCF_E_NOT_H5AD, err, errlen, "neither a group nor a dataset");
	g = H5Gopen2(file, m->key, H5P_DEFAULT);
	if (g < 0)
		return fail(m, NULL, SCF_E_NOT_H5AD, err, errlen, "cannot open the group");
	rc = scf__h5_attr_string(g, "encoding-type", enc, sizeof(enc), why, sizeof(why));
	if (rc < 0) {
		rc = fail(m, NULL, SCF_E_NOT_H5AD, err, errlen, "%s", why);
	} else if (strcmp(enc, "csr_matrix") == 0) {
		m->encoding = SCF__CSR;
		rc = open_csr(m, file, fd, g, err, errlen);
	} else if (strcmp(enc, "csc_matrix") == 0) {
		rc = fail(m, NULL, SCF_E_UNSUPPORTED, err, errlen,
		          "stored as csc_matrix (by gene); row access needs csr_matrix: "
		          "convert with adata.X = adata.X.tocsr() and write again");
	} else {
		rc = fail(m, NULL, SCF_E_NOT_H5AD, err, errlen,
		          "group has encoding-type \"%s\", expected csr_matrix", enc);
	}
	H5Gclose(g);
	return rc;
}

/* Where the superblock lies (after a user block, if any). */
static int superblock_extent(scf__matrix *m, hid_t file, char *err, size_t errlen)
{
	hid_t fcpl = H5Fget_create_plist(file);
	H5F_info2_t fi;
	hsize_t ub = 0;

	if (fcpl < 0 || H5Pget_userblock(fcpl, &ub) < 0 || H5Fget_info2(file, &fi) < 0) {
		if (fcpl >= 0)
			H5Pclose(fcpl);
		return fail_file(m, SCF_E_CORRUPT, err, errlen, "cannot read the superblock");
	}
	H5Pclose(fcpl);
	m->sb_start = ub;
	m->sb_len = fi.super.super_size;
	return 0;
}

/* One dataset's chunk index, parsed from the file (formats/h5chunks.c). */
static int parse_chunks(scf__matrix *m, int fd, const scf__h5geom *g, scf__dset *ds,
                        char *err, size_t errlen)
{
	uint64_t cdims[2] = { ds->chunks.chunk_dims[0], ds->chunks.chunk_dims[1] };
	char why[400];
	int rc;

	if (ds->storage != SCF__CHUNKED)
		return 0;
	why[0] = '\0';
	rc = scf__h5chunks_read(fd, g, ds->ohdr - m->sb_start, ds->rank, ds->dims, cdims,
	                        ds->type.size, &ds->chunks, why, sizeof(why));
	if (rc < 0)
		return fail(m, ds->name, rc, err, errlen, "chunk index: %s",
		            why[0] ? why : scf_strerror(rc));
	return 0;
}

/*
 * What an index cache saves: every chunk index parsed, indptr read, and
 * the checks that need them all.
 */
static int read_index(scf__matrix *m, hid_t file, int fd, const scf__h5geom *g, char *err,
                      size_t errlen)
{
	int csr = m->encoding == SCF__CSR;
	int rc = parse_chunks(m, fd, g, &m->data, err, errlen);

	if (rc == 0 && csr)
		rc = parse_chunks(m, fd, g, &m->indices, err, errlen);
	if (rc == 0 && csr)
		rc = parse_chunks(m, fd, g, &m->indptr_ds, err, errlen);
	if (rc == 0 && csr)
		rc = load_indptr(m, file, fd, err, errlen);
	if (rc == 0 && csr)
		rc = check_chunks_written(m, err, errlen);
	if (rc == 0)
		rc = check_disjoint(m, err, errlen);
	return rc;
}

/*
 * The index from a valid cache, else from the file (then written to a
 * cache for the next open when asked).  A cache that cannot be used or
 * written never fails the open: m->idx.note says why.
 */
static int resolve_index(scf__matrix *m, hid_t file, int fd, const scf__idxcfg *cfg,
                         char *err, size_t errlen)
{
	scf__h5geom g;
	struct stat st;
	int rc;

	if (file_geom(file, fd, &g) < 0 || fstat(fd, &st) < 0)
		return fail_file(m, SCF_E_CORRUPT, err, errlen, "cannot read the superblock");
	if (cfg && cfg->use && scf__idx_load(m, cfg, &st))
		return 0;
	rc = read_index(m, file, fd, &g, err, errlen);
	if (rc == 0 && cfg && cfg->use)
		scf__idx_save(m, cfg, &st, fd);
	return rc;
}

int scf__h5ad_open(scf__matrix *m, const char *path, const char *key,
                   char *err, size_t errlen)
{
	return scf__h5ad_open_cached(m, path, key, NULL, err, errlen);
}

int scf__h5ad_open_cached(scf__matrix *m, const char *path, const char *key,
                          const scf__idxcfg *cfg, char *err, size_t errlen)
{
	scf__h5quiet quiet;
	char why[300];
	hid_t fapl, file;
	int fd, rc;

	memset(m, 0, sizeof(*m));
	snprintf(m->path, sizeof(m->path), "%s", path);
	snprintf(m->key, sizeof(m->key), "%s", key);
	if (strlen(path) >= sizeof(m->path))
		return fail_file(m, -ENAMETOOLONG, err, errlen, "path longer than %zu bytes",
		                 sizeof(m->path) - 1);
	if (strlen(key) >= sizeof(m->key))
		return fail_file(m, -EINVAL, err, errlen, "matrix key of %zu bytes, longer than "
		                 "the %zu this library accepts", strlen(key), sizeof(m->key) - 1);
	if ((rc = scf__file_check(path, why, sizeof(why))) < 0)
		return fail_file(m, rc, err, errlen, "%s", why);

	scf__h5_quiet(&quiet);
	if (H5Fis_hdf5(path) <= 0) {
		rc = fail_file(m, SCF_E_NOT_H5AD, err, errlen, "not an HDF5 file");
		goto restore;
	}
	fapl = H5Pcreate(H5P_FILE_ACCESS);
	H5Pset_fclose_degree(fapl, H5F_CLOSE_DEFAULT);
	file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
	H5Pclose(fapl);
	if (file < 0) {
		rc = why_unopenable(m, err, errlen);
		goto restore;
	}
	/* H5F_CLOSE_DEFAULT: a file the process has open already (h5py, backed
	 * anndata) is shared, whatever close degree that open chose; every
	 * object opened here is closed before H5Fclose. */
	/* The chunk-index reader's own descriptor: small unaligned preads, cached. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = fail(m, NULL, -errno, err, errlen, "cannot open: %s", strerror(errno));
		H5Fclose(file);
		goto restore;
	}
	rc = superblock_extent(m, file, err, errlen);
	if (rc == 0)
		rc = open_matrix(m, file, fd, err, errlen);
	if (rc == 0)
		rc = check_decodable(m, err, errlen);
	if (rc == 0)
		rc = resolve_index(m, file, fd, cfg, err, errlen);
	close(fd);
	H5Fclose(file);
	if (rc < 0)
		scf__h5ad_free(m);
restore:
	scf__h5_loud(&quiet);
	return rc;
}

void scf__h5ad_free(scf__matrix *m)
{
	if (!m->indptr_borrowed)
		free(m->indptr);
	m->indptr = NULL;
	m->indptr_borrowed = 0;
	scf__chunk_map_free(&m->data.chunks);
	scf__chunk_map_free(&m->indices.chunks);
	scf__chunk_map_free(&m->indptr_ds.chunks);
	scf__idx_free(m);
}

/* Whether [a, a + len) meets one of r[0..n) (sorted by start; end[i]: the
 * furthest end among r[0..i], since r may overlap itself). */
static int meets_one(uint64_t a, uint64_t len, const scf__byte_range *r, const uint64_t *end,
                     size_t n)
{
	size_t lo = 0, hi = n;

	while (lo < hi) { /* the first range starting at or after a + len */
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].addr < a + len)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && end[lo - 1] > a;
}

/* A dataset's stored extents against r, chunk by chunk: nothing allocated
 * per chunk, so checking obs columns costs no memory on an atlas. */
static int dset_meets(const scf__dset *ds, const scf__byte_range *r, const uint64_t *end,
                      size_t n)
{
	const scf__chunk_map *cm = &ds->chunks;

	if (ds->storage != SCF__CHUNKED) {
		uint64_t len = ds->dims[0] * ds->dims[1] * ds->type.size;
		return len > 0 && meets_one(ds->offset, len, r, end, n);
	}
	for (uint64_t i = 0; i < cm->n; i++) {
		uint64_t a = scf__chunk_addr(cm, i);
		if (a != SCF__CHUNK_UNALLOCATED && meets_one(a, scf__chunk_size(cm, i), r, end, n))
			return 1;
	}
	return 0;
}

int scf__h5ad_meets(const scf__matrix *m, const scf__byte_range *r, size_t n,
                    const char **which)
{
	const scf__dset *ds[2] = { &m->data, m->encoding == SCF__CSR ? &m->indices : NULL };
	uint64_t *end = malloc((n ? n : 1) * sizeof(*end));
	int hit = 0;

	if (!end)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		uint64_t e = r[i].addr + r[i].len;
		end[i] = i && end[i - 1] > e ? end[i - 1] : e;
	}
	for (int k = 0; k < 2 && ds[k] && !hit; k++) {
		hit = dset_meets(ds[k], r, end, n);
		if (hit)
			*which = ds[k]->name;
	}
	free(end);
	return hit;
}
