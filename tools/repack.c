/*
 * tools/repack — stream a CSR matrix into a new file with row-sized chunks.
 * The chunk holds about chunk_rows mean rows, so a random row costs at most
 * two chunk decodes instead of tens.  zstd chunks are made with libzstd and
 * written with HDF5's direct chunk write (filter 32015, marked optional, so
 * readers without the plugin still open the rest of the file).
 * Thread: the caller's.
 */
#include "tools/repack.h"

#include <errno.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define SLICE_ELEMS (1u << 20)  /* elements moved per read */
#define ZSTD_FILTER 32015

typedef struct repack {
	const char *in_path, *out_path;
	const scf_repack_opts *o;
	hid_t in, out;
	char *err;
	size_t errlen;
	FILE *progress;
} repack;

static int fail(repack *r, const char *fmt, ...)
{
	char what[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(r->err, r->errlen, "repack %s -> %s: %s", r->in_path, r->out_path, what);
	return -1;
}

/* Copy every attribute of src onto dst (types and shapes as they are). */
static herr_t copy_attr(hid_t src, const char *name, const H5A_info_t *info, void *dst_p)
{
	hid_t dst = *(hid_t *)dst_p, a = H5Aopen(src, name, H5P_DEFAULT), t, s, b;
	herr_t rc = -1;

	if (a < 0)
		return -1;
	t = H5Aget_type(a);
	s = H5Aget_space(a);
	size_t bytes = H5Tget_size(t) * (size_t)H5Sget_simple_extent_npoints(s);
	void *buf = malloc(bytes ? bytes : 1);
	if (buf && H5Aread(a, t, buf) >= 0 &&
	    (b = H5Acreate2(dst, name, t, s, H5P_DEFAULT, H5P_DEFAULT)) >= 0) {
		rc = H5Awrite(b, t, buf);
		H5Aclose(b);
	}
	if (buf && H5Tis_variable_str(t) > 0)
		H5Dvlen_reclaim(t, s, H5P_DEFAULT, buf);
	free(buf);
	H5Sclose(s);
	H5Tclose(t);
	H5Aclose(a);
	return rc;
}

static int copy_attrs(hid_t src, hid_t dst)
{
	return H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_attr, &dst) < 0 ? -1 : 0;
}

/* Copy the tree under `path` except the matrix, which is written anew. */
typedef struct walk { repack *r; const char *skip; char prefix[512]; int rc; } walk;

static int copy_tree(repack *r, const char *path);

static herr_t copy_link(hid_t g, const char *name, const H5L_info_t *info, void *w_p)
{
	walk *w = w_p;
	repack *r = w->r;
	char full[768];

	snprintf(full, sizeof(full), "%s%s", w->prefix, name);
	if (strcmp(full, w->skip) == 0)
		return 0;
	size_t n = strlen(full);
	if (strncmp(w->skip, full, n) == 0 && w->skip[n] == '/') {
		/* an ancestor of the matrix: recreate it and descend */
		hid_t sg = H5Gopen2(r->in, full, H5P_DEFAULT);
		hid_t dg = H5Gcreate2(r->out, full, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
		int rc = sg >= 0 && dg >= 0 ? copy_attrs(sg, dg) : -1;
		if (sg >= 0) H5Gclose(sg);
		if (dg >= 0) H5Gclose(dg);
		if (rc == 0)
			rc = copy_tree(r, full);
		w->rc = rc;
		return rc < 0 ? -1 : 0;
	}
	if (H5Ocopy(r->in, full, r->out, full, H5P_DEFAULT, H5P_DEFAULT) < 0) {
		w->rc = fail(r, "cannot copy %s", full);
		return -1;
	}
	return 0;
}

static int copy_tree(repack *r, const char *path)
{
	walk w = { .r = r, .skip = r->o->matrix, .rc = 0 };
	hid_t g = H5Gopen2(r->in, path, H5P_DEFAULT);

	if (g < 0)
		return fail(r, "cannot open %s", path);
	snprintf(w.prefix, sizeof(w.prefix), "%s", strcmp(path, "/") ? path : "");
	if (w.prefix[0])
		strncat(w.prefix, "/", sizeof(w.prefix) - strlen(w.prefix) - 1);
	herr_t rc = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_link, &w);
	H5Gclose(g);
	return rc < 0 || w.rc < 0 ? (w.rc < 0 ? w.rc : fail(r, "cannot walk %s", path)) : 0;
}

/* Creation properties of a rewritten dataset: chunk size and codec. */
static hid_t make_dcpl(repack *r, hsize_t chunk)
{
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);

	H5Pset_chunk(dcpl, 1, &chunk);
	/* Byte shuffle groups the similar high bytes of counts and column ids:
	 * smaller chunks, and zstd decodes them about twice as fast. */
	if (r->o->codec != SCF_CODEC_NONE && !r->o->no_shuffle)
		H5Pset_shuffle(dcpl);
	if (r->o->codec == SCF_CODEC_DEFLATE) {
		H5Pset_deflate(dcpl, r->o->level ? (unsigned)r->o->level : 4);
	} else if (r->o->codec == SCF_CODEC_ZSTD) {
		unsigned level = r->o->level ? (unsigned)r->o->level : 3;
		H5Pset_filter(dcpl, ZSTD_FILTER, H5Z_FLAG_OPTIONAL, 1, &level);
	}
	return dcpl;
}

/* HDF5's shuffle filter, forward: byte b of element i goes to b * n + i. */
static void shuffle_bytes(uint8_t *dst, const uint8_t *src, size_t n, size_t esz)
{
	for (size_t b = 0; b < esz; b++)
		for (size_t i = 0; i < n; i++)
			dst[b * n + i] = src[i * esz + b];
}

/*
 * zstd chunks: shuffle (unless told not to) and compress each full
 * (zero-padded) chunk, then write it directly: the pipeline is shuffle, zstd.
 */
static int write_zstd_chunk(repack *r, hid_t d, hsize_t index, const uint8_t *buf,
                            size_t esz, size_t n, uint8_t *sbuf, void *zbuf, size_t zcap,
                            ZSTD_CCtx *cctx)
{
	const void *src = buf;
	size_t z;
	hsize_t off = index;

	if (!r->o->no_shuffle && esz > 1) {
		shuffle_bytes(sbuf, buf, n, esz);
		src = sbuf;
	}
	z = ZSTD_compressCCtx(cctx, zbuf, zcap, src, n * esz, r->o->level ? r->o->level : 3);

	if (ZSTD_isError(z))
		return fail(r, "zstd: %s", ZSTD_getErrorName(z));
	if (H5Dwrite_chunk(d, H5P_DEFAULT, 0, &off, z, zbuf) < 0)
		return fail(r, "cannot write a chunk");
	return 0;
}

/* Stream one 1-D dataset of the matrix into its new, rechunked twin. */
static int copy_dataset(repack *r, const char *name, hsize_t chunk)
{
	hid_t sd = H5Dopen2(r->in, name, H5P_DEFAULT), ssp, t, dd = -1, dcpl, dsp, msp;
	hsize_t n = 0;
	int rc = 0;

	if (sd < 0)
		return fail(r, "%s missing", name);
	ssp = H5Dget_space(sd);
	H5Sget_simple_extent_dims(ssp, &n, NULL);
	t = H5Dget_type(sd);
	size_t esz = H5Tget_size(t);
	if (chunk > n && n > 0)
		chunk = n;
	if (chunk == 0)
		chunk = 1;
	dcpl = make_dcpl(r, chunk);
	dsp = H5Screate_simple(1, &n, NULL);
	dd = H5Dcreate2(r->out, name, t, dsp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	/* slices are whole chunks so zstd chunks can be written as they fill */
	hsize_t slice = (SLICE_ELEMS / chunk + 1) * chunk;
	uint8_t *buf = malloc(slice * esz);
	size_t zcap = ZSTD_compressBound(chunk * esz);
	void *zbuf = r->o->codec == SCF_CODEC_ZSTD ? malloc(zcap) : NULL;
	uint8_t *sbuf = r->o->codec == SCF_CODEC_ZSTD ? malloc(chunk * esz) : NULL;
	ZSTD_CCtx *cctx = r->o->codec == SCF_CODEC_ZSTD ? ZSTD_createCCtx() : NULL;
	if (dd < 0 || !buf || (r->o->codec == SCF_CODEC_ZSTD && (!zbuf || !sbuf || !cctx))) {
		rc = fail(r, "cannot create %s", name);
		goto out;
	}
	for (hsize_t start = 0; start < n && rc == 0; start += slice) {
		hsize_t cnt = n - start < slice ? n - start : slice;
		msp = H5Screate_simple(1, &cnt, NULL);
		H5Sselect_hyperslab(ssp, H5S_SELECT_SET, &start, NULL, &cnt, NULL);
		if (H5Dread(sd, t, msp, ssp, H5P_DEFAULT, buf) < 0) {
			rc = fail(r, "cannot read %s", name);
		} else if (r->o->codec == SCF_CODEC_ZSTD) {
			memset(buf + cnt * esz, 0, (slice - cnt) * esz);
			for (hsize_t c = 0; c < cnt && rc == 0; c += chunk)
				rc = write_zstd_chunk(r, dd, start + c, buf + c * esz, esz, chunk,
				                      sbuf, zbuf, zcap, cctx);
		} else {
			H5Sselect_hyperslab(dsp, H5S_SELECT_SET, &start, NULL, &cnt, NULL);
			if (H5Dwrite(dd, t, msp, dsp, H5P_DEFAULT, buf) < 0)
				rc = fail(r, "cannot write %s", name);
		}
		H5Sclose(msp);
	}
	if (r->progress && rc == 0)
		fprintf(r->progress, "  %s: %llu entries in chunks of %llu\n", name,
		        (unsigned long long)n, (unsigned long long)chunk);
	if (rc == 0)
		rc = copy_attrs(sd, dd);
out:
	ZSTD_freeCCtx(cctx);
	free(zbuf);
	free(sbuf);
	free(buf);
	if (dd >= 0)
		H5Dclose(dd);
	H5Sclose(dsp);
	H5Pclose(dcpl);
	H5Tclose(t);
	H5Sclose(ssp);
	H5Dclose(sd);
	return rc;
}

/* The matrix group: its attributes, indptr as is, data and indices rechunked. */
static int write_matrix(repack *r)
{
	const char *key = r->o->matrix;
	char name[300];
	hid_t sg = H5Gopen2(r->in, key, H5P_DEFAULT), dg, ip;
	hsize_t nrows = 0, nnz = 0;

	if (sg < 0)
		return fail(r, "%s is not a group (repack handles CSR matrices)", key);
	dg = H5Gcreate2(r->out, key, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	int rc = dg >= 0 ? copy_attrs(sg, dg) : -1;
	H5Gclose(sg);
	if (dg >= 0)
		H5Gclose(dg);
	if (rc < 0)
		return fail(r, "cannot create %s", key);
	snprintf(name, sizeof(name), "%s/indptr", key);
	if (H5Ocopy(r->in, name, r->out, name, H5P_DEFAULT, H5P_DEFAULT) < 0)
		return fail(r, "cannot copy %s", name);
	ip = H5Dopen2(r->in, name, H5P_DEFAULT);
	hid_t sp = H5Dget_space(ip);
	H5Sget_simple_extent_dims(sp, &nrows, NULL);
	H5Sclose(sp);
	H5Dclose(ip);
	snprintf(name, sizeof(name), "%s/data", key);
	ip = H5Dopen2(r->in, name, H5P_DEFAULT);
	if (ip < 0)
		return fail(r, "%s missing", name);
	sp = H5Dget_space(ip);
	H5Sget_simple_extent_dims(sp, &nnz, NULL);
	H5Sclose(sp);
	H5Dclose(ip);
	double mean = nrows > 1 ? (double)nnz / (double)(nrows - 1) : 1.0;
	hsize_t chunk = (hsize_t)(mean * (r->o->chunk_rows ? r->o->chunk_rows : 4) + 0.5);
	if (chunk < 256)
		chunk = 256;
	if (r->progress)
		fprintf(r->progress, "  %.0f entries per row on average: chunks of %llu entries\n",
		        mean, (unsigned long long)chunk);
	if (copy_dataset(r, name, chunk) < 0)
		return -1;
	snprintf(name, sizeof(name), "%s/indices", key);
	return copy_dataset(r, name, chunk);
}

int scf_repack(const char *in, const char *out, const scf_repack_opts *o, FILE *progress,
               char *err, size_t errlen)
{
	scf_repack_opts def = *o;
	repack r = { .in_path = in, .out_path = out, .o = &def, .err = err, .errlen = errlen,
	             .progress = progress };
	int rc;

	if (!def.matrix)
		def.matrix = "X";
	r.in = H5Fopen(in, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (r.in < 0)
		return fail(&r, "cannot open the input as HDF5");
	r.out = H5Fcreate(out, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	if (r.out < 0) {
		H5Fclose(r.in);
		return fail(&r, "cannot create the output");
	}
	hid_t ir = H5Gopen2(r.in, "/", H5P_DEFAULT), orr = H5Gopen2(r.out, "/", H5P_DEFAULT);
	rc = copy_attrs(ir, orr);
	H5Gclose(ir);
	H5Gclose(orr);
	if (rc == 0)
		rc = copy_tree(&r, "/");
	if (rc == 0)
		rc = write_matrix(&r);
	H5Fclose(r.out);
	H5Fclose(r.in);
	return rc;
}
