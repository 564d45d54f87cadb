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
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "scfetch.h"
#include "formats/faults.h" /* last: may wrap malloc in test builds */

/* Every message names the file and the dataset; this keeps that uniform. */
static int fail(const scf__matrix *m, const char *dset, int code, char *err,
                size_t errlen, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s: %s: %s", m->path, dset ? dset : m->key, what);
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
	snprintf(err, errlen, "%s: %s", m->path, what);
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
	if (fd >= 0)
		close(fd);
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

const char *scf__filter_name(int id, char *buf, size_t len)
{
	switch (id) {
	case 1: return "deflate";
	case 2: return "shuffle";
	case 3: return "fletcher32";
	case 4: return "szip";
	case 5: return "nbit";
	case 6: return "scaleoffset";
	case 32000: return "lzf";
	case 32001: return "blosc";
	case 32015: return "zstd";
	}
	snprintf(buf, len, "filter %d", id);
	return buf;
}

/* Read a string attribute, fixed-length or variable-length, into buf. */
static int read_str_attr(hid_t obj, const char *name, char *buf, size_t len)
{
	hid_t a, t, mt;
	int rc = -1;

	buf[0] = '\0';
	if (H5Aexists(obj, name) <= 0)
		return -1;
	a = H5Aopen(obj, name, H5P_DEFAULT);
	if (a < 0)
		return -1;
	t = H5Aget_type(a);
	if (t >= 0 && H5Tget_class(t) == H5T_STRING) {
		if (H5Tis_variable_str(t) > 0) {
			char *s = NULL;
			mt = H5Tcopy(H5T_C_S1);
			H5Tset_size(mt, H5T_VARIABLE);
			H5Tset_cset(mt, H5Tget_cset(t));
			if (H5Aread(a, mt, &s) >= 0 && s) {
				snprintf(buf, len, "%s", s);
				H5free_memory(s);
				rc = 0;
			}
			H5Tclose(mt);
		} else {
			size_t n = H5Tget_size(t);
			char *tmp = calloc(1, n + 1);
			if (tmp && H5Aread(a, t, tmp) >= 0) {
				snprintf(buf, len, "%s", tmp);
				rc = 0;
			}
			free(tmp);
		}
	}
	if (t >= 0)
		H5Tclose(t);
	H5Aclose(a);
	return rc;
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
		uint64_t cdims[2];
		scf__h5geom g;
		H5O_info_t oi;
		char why[400];

		ds->storage = SCF__CHUNKED;
		if (H5Pget_chunk(dcpl, 2, cd) != (int)ds->rank || file_geom(file, fd, &g) < 0 ||
		    H5Oget_info2(d, &oi, H5O_INFO_BASIC) < 0) {
			rc = fail(m, ds->name, SCF_E_CORRUPT, err, errlen,
			          "cannot read the chunk layout");
			goto out;
		}
		cdims[0] = cd[0];
		cdims[1] = cd[1];
		why[0] = '\0';
		rc = scf__h5chunks_read(fd, &g, oi.addr, ds->rank, ds->dims, cdims,
		                        ds->type.size, &ds->chunks, why, sizeof(why));
		if (rc < 0) {
			fail(m, ds->name, rc, err, errlen, "chunk index: %s",
			     why[0] ? why : scf_strerror(rc));
			goto out;
		}
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
	hid_t d, sp, t;
	hsize_t dims[2] = { 0, 0 };
	int rank, rc = 0;

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
	sp = H5Dget_space(d);
	rank = H5Sget_simple_extent_ndims(sp);
	if (rank != (int)want_rank) {
		rc = fail(m, name, SCF_E_CORRUPT, err, errlen,
		          "has %d dimensions, expected %u", rank, want_rank);
		goto out;
	}
	H5Sget_simple_extent_dims(sp, dims, NULL);
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
	rc = resolve_storage(m, file, fd, d, ds, err, errlen);
out:
	H5Sclose(sp);
	H5Dclose(d);
	return rc;
}

/* Load indptr whole and check it describes rows inside data/indices. */
int scf__h5ad_check_indptr(scf__matrix *m, char *err, size_t errlen)
{
	const char *name = m->indptr_ds.name;

	for (uint64_t r = 0; r < m->n_rows; r++) {
		if (m->indptr[r] < 0 || m->indptr[r + 1] < m->indptr[r])
			return fail(m, name, SCF_E_CORRUPT, err, errlen,
			            "not monotonic at row %llu (%lld then %lld)",
			            (unsigned long long)r, (long long)m->indptr[r],
			            (long long)m->indptr[r + 1]);
	}
	if ((uint64_t)m->indptr[m->n_rows] > m->data.dims[0] ||
	    m->data.dims[0] != m->indices.dims[0])
		return fail(m, name, SCF_E_CORRUPT, err, errlen,
		            "ends at %lld but data has %llu and indices %llu entries",
		            (long long)m->indptr[m->n_rows], (unsigned long long)m->data.dims[0],
		            (unsigned long long)m->indices.dims[0]);
	m->nnz = (uint64_t)(m->indptr[m->n_rows] - m->indptr[0]);
	return 0;
}

/* True when some filter of ds is one this HDF5 library cannot apply. */
static int needs_plugin(const scf__dset *ds)
{
	for (unsigned i = 0; i < ds->n_filters; i++)
		if (H5Zfilter_avail((H5Z_filter_t)ds->filter[i].id) <= 0)
			return 1;
	return 0;
}

/*
 * Load indptr whole with H5Dread.  When HDF5 lacks one of its filters (lzf
 * or zstd without plugins), leave it to the engine's own decoders: indptr
 * stays NULL and indptr_ds describes where it lies.
 */
static int load_indptr(scf__matrix *m, hid_t file, int fd, const char *name, char *err,
                       size_t errlen)
{
	scf__dset *ds = &m->indptr_ds;
	hid_t d;
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
	m->nnz = m->data.dims[0]; /* until indptr says exactly */
	if (needs_plugin(ds))
		return 0;
	m->indptr = malloc((m->n_rows + 1) * sizeof(int64_t));
	if (!m->indptr)
		return fail(m, name, -ENOMEM, err, errlen, "cannot allocate %llu entries",
		            (unsigned long long)m->n_rows + 1);
	d = H5Dopen2(file, name, H5P_DEFAULT);
	rc = d >= 0 && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, m->indptr) >= 0;
	if (d >= 0)
		H5Dclose(d);
	if (!rc)
		return fail(m, name, SCF_E_CORRUPT, err, errlen, "cannot be read");
	return scf__h5ad_check_indptr(m, err, errlen);
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

/*
 * data and indices must not share bytes: the chunk-index reader checks each
 * dataset's chunks against each other, and this checks the two datasets
 * against each other (a damaged index could point data at indices' bytes,
 * which raw chunks would deliver as values).  Both lists are sorted and each
 * is free of overlaps, so one merge walk suffices.
 */
static int check_disjoint(const scf__matrix *m, char *err, size_t errlen)
{
	size_t na, nb, i, j;
	scf__byte_range *a = dset_extents(&m->data, &na);
	scf__byte_range *b = a ? dset_extents(&m->indices, &nb) : NULL;
	int rc = 0;

	if (!a || !b)
		rc = fail(m, NULL, -ENOMEM, err, errlen, "out of memory checking chunk extents");
	else if (scf__extents_meet(a, na, b, nb, &i, &j))
		rc = fail(m, m->data.name, SCF_E_CORRUPT, err, errlen,
		          "stored bytes at %llu (%llu bytes) overlap %s's at %llu (%llu "
		          "bytes): the chunk index points into the other dataset",
		          (unsigned long long)a[i].addr, (unsigned long long)a[i].len,
		          m->indices.name, (unsigned long long)b[j].addr,
		          (unsigned long long)b[j].len);
	free(a);
	free(b);
	return rc;
}

/* A CSR group: attributes, then data, indices, indptr. */
static int open_csr(scf__matrix *m, hid_t file, int fd, hid_t grp, char *err,
                    size_t errlen)
{
	char name[256];
	int64_t shape[2] = { -1, -1 };
	hid_t a;
	int rc;

	if (H5Aexists(grp, "shape") <= 0 || (a = H5Aopen(grp, "shape", H5P_DEFAULT)) < 0)
		return fail(m, NULL, SCF_E_CORRUPT, err, errlen, "attribute `shape` missing");
	hid_t sp = H5Aget_space(a);
	hssize_t npts = H5Sget_simple_extent_npoints(sp);
	H5Sclose(sp);
	rc = npts == 2 ? H5Aread(a, H5T_NATIVE_INT64, shape) : -1;
	H5Aclose(a);
	if (rc < 0 || shape[0] < 0 || shape[1] < 0 || shape[1] > INT32_MAX)
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
	if ((rc = check_disjoint(m, err, errlen)) < 0)
		return rc;
	snprintf(name, sizeof(name), "%s/indptr", m->key);
	return load_indptr(m, file, fd, name, err, errlen);
}

/* Find the matrix: a CSR group, or a dense 2-D dataset. */
static int open_matrix(scf__matrix *m, hid_t file, int fd, char *err, size_t errlen)
{
	H5O_info_t oi;
	char enc[64];
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
		return rc;
	}
	if (oi.type != H5O_TYPE_GROUP)
		return fail(m, NULL, SCF_E_NOT_H5AD, err, errlen, "neither a group nor a dataset");
	g = H5Gopen2(file, m->key, H5P_DEFAULT);
	if (g < 0)
		return fail(m, NULL, SCF_E_NOT_H5AD, err, errlen, "cannot open the group");
	read_str_attr(g, "encoding-type", enc, sizeof(enc));
	if (strcmp(enc, "csr_matrix") == 0) {
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

int scf__h5ad_open(scf__matrix *m, const char *path, const char *key,
                   char *err, size_t errlen)
{
	H5E_auto2_t old_fn;
	void *old_data;
	hid_t fapl, file;
	int fd, rc;

	memset(m, 0, sizeof(*m));
	snprintf(m->path, sizeof(m->path), "%s", path);
	snprintf(m->key, sizeof(m->key), "%s", key);

	/* HDF5 prints its error stack by default; we report our own sentence. */
	H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

	if (H5Fis_hdf5(path) <= 0) {
		rc = fail_file(m, SCF_E_NOT_H5AD, err, errlen, "not an HDF5 file");
		goto restore;
	}
	fapl = H5Pcreate(H5P_FILE_ACCESS);
	H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
	file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
	H5Pclose(fapl);
	if (file < 0) {
		rc = why_unopenable(m, err, errlen);
		goto restore;
	}
	/* The chunk-index reader's own descriptor: small unaligned preads, cached. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = fail(m, NULL, -errno, err, errlen, "cannot open: %s", strerror(errno));
		H5Fclose(file);
		goto restore;
	}
	rc = open_matrix(m, file, fd, err, errlen);
	close(fd);
	H5Fclose(file);
	if (rc < 0)
		scf__h5ad_free(m);
restore:
	H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
	return rc;
}

void scf__h5ad_free(scf__matrix *m)
{
	free(m->indptr);
	m->indptr = NULL;
	scf__chunk_map_free(&m->data.chunks);
	scf__chunk_map_free(&m->indices.chunks);
	scf__chunk_map_free(&m->indptr_ds.chunks);
}
