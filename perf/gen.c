/*
 * perf/gen — datasets for the performance suite at scale, with Tahoe-100M's
 * statistics by default: 62,710 genes, log-normal non-zeros per cell
 * (median 2,000), negative-binomial counts, cells sorted by plate then cell
 * line (obs categoricals), CSR chunked as anndata (h5py) chunks it.  The
 * model and the streaming writer are tools/synth.c's; this wraps it with
 * sizes, h5py's chunk choice, other dtypes (a streaming transcode pass) and
 * compression (deflate in the writer, zstd/deflate row chunks via repack).
 * Memory stays bounded whatever the size.  Thread: main only (HDF5).
 *
 *   scf_gen OUT.h5ad [--cells N | --size GB] [--genes N] [--median-nnz X]
 *           [--sigma X] [--labels N] [--plates N] [--chunk N|auto]
 *           [--data-dtype T] [--indices-dtype T] [--deflate L] [--shuffle]
 *           [--repack zstd|deflate] [--chunk-rows N] [--seed N]
 */
#include <getopt.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tools/repack.h"
#include "tools/synth.h"

#define SLICE_ELEMS (4u << 20) /* elements per transcode step: 32 MiB at 8 bytes */

typedef struct gen_opts {
	scf_synth_opts s;
	double size_gb;          /* > 0: choose n_cells for this file size */
	int auto_chunk;
	const char *data_dtype, *indices_dtype;
	int shuffle;
	int repack;              /* 0, or SCF_CODEC_ZSTD / SCF_CODEC_DEFLATE + 1 */
	uint32_t chunk_rows;
} gen_opts;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
	fprintf(f,
	"usage: scf_gen OUT.h5ad [options]\n"
	"  --cells N            cells (1,000,000)\n"
	"  --size GB            instead of --cells: cells for a file of about GB gigabytes\n"
	"  --genes N            genes (62,710)\n"
	"  --median-nnz X       median non-zeros per cell, log-normal (2,000)\n"
	"  --sigma X            log-normal sigma of non-zeros per cell (0.5)\n"
	"  --labels N           cell lines, obs/cell_line (50)\n"
	"  --plates N           plates, obs/plate; cells sorted by plate, then cell line (14)\n"
	"  --chunk N|auto       elements per chunk of X/data and X/indices; auto = h5py's\n"
	"                       guess for the whole dataset, as anndata writes it (auto)\n"
	"  --data-dtype T       float32 (default), float64, int32, int64, uint16, uint32, ...\n"
	"  --indices-dtype T    int32 (default) or int64\n"
	"  --deflate L          gzip level 1-9 on X/data and X/indices (0: none)\n"
	"  --shuffle            byte shuffle before deflate (implies a transcode pass)\n"
	"  --repack CODEC       then rewrite X with row-sized chunks: zstd or deflate\n"
	"  --chunk-rows N       rows per chunk for --repack (4)\n"
	"  --seed N             (1)\n");
}

/* HDF5 file type of a numpy-style name. */
static hid_t type_of(const char *name)
{
	static const struct { const char *n; hid_t *t; } tab[] = {
		{ "float32", &H5T_IEEE_F32LE_g }, { "float64", &H5T_IEEE_F64LE_g },
		{ "int8", &H5T_STD_I8LE_g }, { "int16", &H5T_STD_I16LE_g },
		{ "int32", &H5T_STD_I32LE_g }, { "int64", &H5T_STD_I64LE_g },
		{ "uint8", &H5T_STD_U8LE_g }, { "uint16", &H5T_STD_U16LE_g },
		{ "uint32", &H5T_STD_U32LE_g }, { "uint64", &H5T_STD_U64LE_g } };

	H5open();
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strcmp(name, tab[i].n) == 0)
			return *tab[i].t;
	return -1;
}

/*
 * h5py's guess_chunk() for a 1-D dataset of n elements: a target of 16 KiB x
 * 2^log10(MiB), clamped to [8 KiB, 1 MiB], reached by halving the extent.
 * anndata creates X/data and X/indices with maxshape=(None,), so h5py
 * chunks them this way from their full size.
 */
static uint64_t h5py_chunk(uint64_t n, size_t typesize)
{
	double size = (double)n * typesize;
	double target = 16384.0 * pow(2.0, log10(size / (1024.0 * 1024.0)));
	double c = (double)(n ? n : 1024);

	if (target > 1048576.0)
		target = 1048576.0;
	else if (target < 8192.0)
		target = 8192.0;
	for (;;) {
		double bytes = c * typesize;
		if ((bytes < target || fabs(bytes - target) / target < 0.5) && bytes < 1048576.0)
			break;
		if (c <= 1)
			break;
		c = ceil(c / 2.0);
	}
	return (uint64_t)c;
}

/* Mean of the log-normal non-zeros per cell (ignoring the floor and the gene cap). */
static double mean_nnz(const scf_synth_opts *s)
{
	double m = s->median_nnz * exp(s->sigma_nnz * s->sigma_nnz / 2.0);
	return m < (double)s->n_genes ? m : (double)s->n_genes;
}

static int parse(int argc, char **argv, gen_opts *g, const char **out)
{
	static const struct option lo[] = {
		{ "cells", 1, 0, 'c' }, { "size", 1, 0, 'z' }, { "genes", 1, 0, 'g' },
		{ "median-nnz", 1, 0, 'm' }, { "sigma", 1, 0, 's' }, { "labels", 1, 0, 'l' },
		{ "plates", 1, 0, 'p' }, { "chunk", 1, 0, 'k' }, { "data-dtype", 1, 0, 'd' },
		{ "indices-dtype", 1, 0, 'i' }, { "deflate", 1, 0, 'D' }, { "shuffle", 0, 0, 'S' },
		{ "repack", 1, 0, 'r' }, { "chunk-rows", 1, 0, 'R' }, { "seed", 1, 0, 'e' },
		{ "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
	int opt;

	*g = (gen_opts){ .s = { .n_cells = 1000000, .n_genes = 62710, .median_nnz = 2000,
	                        .sigma_nnz = 0.5, .n_labels = 50, .n_plates = 14, .seed = 1 },
	                 .auto_chunk = 1, .data_dtype = "float32", .indices_dtype = "int32",
	                 .chunk_rows = 4 };
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'c': g->s.n_cells = strtoull(optarg, NULL, 10); break;
		case 'z': g->size_gb = atof(optarg); break;
		case 'g': g->s.n_genes = strtoull(optarg, NULL, 10); break;
		case 'm': g->s.median_nnz = atof(optarg); break;
		case 's': g->s.sigma_nnz = atof(optarg); break;
		case 'l': g->s.n_labels = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'p': g->s.n_plates = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'k':
			g->auto_chunk = strcmp(optarg, "auto") == 0;
			g->s.chunk = g->auto_chunk ? 0 : strtoull(optarg, NULL, 10);
			break;
		case 'd': g->data_dtype = optarg; break;
		case 'i': g->indices_dtype = optarg; break;
		case 'D': g->s.deflate = atoi(optarg); break;
		case 'S': g->shuffle = 1; break;
		case 'r':
			g->repack = strcmp(optarg, "zstd") == 0 ? SCF_CODEC_ZSTD + 1
			            : strcmp(optarg, "deflate") == 0 ? SCF_CODEC_DEFLATE + 1 : -1;
			break;
		case 'R': g->chunk_rows = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'e': g->s.seed = strtoull(optarg, NULL, 10); break;
		case 'h': usage(stdout); exit(0);
		default: return -1;
		}
	}
	if (optind + 1 != argc || g->repack < 0 || type_of(g->data_dtype) < 0 ||
	    (strcmp(g->indices_dtype, "int32") != 0 && strcmp(g->indices_dtype, "int64") != 0))
		return -1;
	*out = argv[optind];
	size_t dsz = H5Tget_size(type_of(g->data_dtype));
	size_t isz = H5Tget_size(type_of(g->indices_dtype));
	if (g->size_gb > 0)
		g->s.n_cells = (uint64_t)(g->size_gb * 1e9 / (mean_nnz(&g->s) * (dsz + isz) + 8));
	if (g->auto_chunk)
		g->s.chunk = h5py_chunk((uint64_t)(mean_nnz(&g->s) * g->s.n_cells), 4);
	return 0;
}

/* ---- transcode: X/data and X/indices to other dtypes, everything else copied ---- */

static herr_t copy_attr(hid_t loc, const char *name, const H5A_info_t *info, void *op)
{
	hid_t dst = *(hid_t *)op, a = H5Aopen(loc, name, H5P_DEFAULT);
	hid_t t = a >= 0 ? H5Aget_type(a) : -1, sp = a >= 0 ? H5Aget_space(a) : -1, b = -1;
	hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
	void *buf = n >= 0 && t >= 0 ? calloc((size_t)(n ? n : 1), H5Tget_size(t)) : NULL;
	herr_t rc = -1;

	(void)info;
	if (buf && H5Aread(a, t, buf) >= 0) {
		b = H5Acreate2(dst, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
		if (b >= 0 && H5Awrite(b, t, buf) >= 0)
			rc = 0;
		if (H5Tdetect_class(t, H5T_VLEN) > 0 ||
		    (H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0))
			H5Dvlen_reclaim(t, sp, H5P_DEFAULT, buf);
	}
	free(buf);
	if (b >= 0)
		H5Aclose(b);
	if (sp >= 0)
		H5Sclose(sp);
	if (t >= 0)
		H5Tclose(t);
	if (a >= 0)
		H5Aclose(a);
	return rc;
}

static int copy_attrs(hid_t src, hid_t dst)
{
	return H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_attr, &dst) < 0 ? -1 : 0;
}

typedef struct copy_ctx {
	hid_t dst;
	const char *skip;
} copy_ctx;

static herr_t copy_member(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
	copy_ctx *c = op;
	(void)info;
	if (c->skip && strcmp(name, c->skip) == 0)
		return 0;
	return H5Ocopy(g, name, c->dst, name, H5P_DEFAULT, H5P_DEFAULT) < 0 ? -1 : 0;
}

/* A resizable chunked dataset as anndata creates it, filled slice by slice from src. */
static int transcode(hid_t src_g, hid_t dst_g, const char *name, hid_t ftype, uint64_t chunk,
                     const gen_opts *g)
{
	hid_t s = H5Dopen2(src_g, name, H5P_DEFAULT), fs = s >= 0 ? H5Dget_space(s) : -1;
	hsize_t n = 0, maxd = H5S_UNLIMITED;
	int rc = -1;

	if (fs < 0 || H5Sget_simple_extent_dims(fs, &n, NULL) != 1)
		goto out0;
	hsize_t cd = chunk < n ? chunk : (n ? n : 1);
	hid_t sp = H5Screate_simple(1, &n, &maxd), dcpl = H5Pcreate(H5P_DATASET_CREATE);
	H5Pset_chunk(dcpl, 1, &cd);
	if (g->shuffle)
		H5Pset_shuffle(dcpl);
	if (g->s.deflate)
		H5Pset_deflate(dcpl, (unsigned)g->s.deflate);
	hid_t d = H5Dcreate2(dst_g, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	hid_t mt = H5Tget_native_type(ftype, H5T_DIR_ASCEND);
	size_t esz = H5Tget_size(mt);
	/* Whole chunks per step, so each chunk is compressed once. */
	hsize_t step = (SLICE_ELEMS + cd - 1) / cd * cd;
	void *buf = malloc(step * esz);
	hid_t dfs = d >= 0 ? H5Dget_space(d) : -1;
	rc = d >= 0 && buf ? 0 : -1;
	for (hsize_t at = 0; rc == 0 && at < n; at += step) {
		hsize_t cnt = n - at < step ? n - at : step;
		hid_t ms = H5Screate_simple(1, &cnt, NULL);
		/* HDF5 converts the values (float counts to integers, int32 to int64). */
		if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, &at, NULL, &cnt, NULL) < 0 ||
		    H5Dread(s, mt, ms, fs, H5P_DEFAULT, buf) < 0 ||
		    H5Sselect_hyperslab(dfs, H5S_SELECT_SET, &at, NULL, &cnt, NULL) < 0 ||
		    H5Dwrite(d, mt, ms, dfs, H5P_DEFAULT, buf) < 0)
			rc = -1;
		H5Sclose(ms);
	}
	free(buf);
	if (dfs >= 0)
		H5Sclose(dfs);
	H5Tclose(mt);
	if (d >= 0)
		H5Dclose(d);
	H5Pclose(dcpl);
	H5Sclose(sp);
out0:
	if (fs >= 0)
		H5Sclose(fs);
	if (s >= 0)
		H5Dclose(s);
	return rc;
}

static int transcode_file(const char *src, const char *dst, const gen_opts *g, uint64_t nnz)
{
	hid_t fi = H5Fopen(src, H5F_ACC_RDONLY, H5P_DEFAULT);
	hid_t fo = fi >= 0 ? H5Fcreate(dst, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT) : -1;
	hid_t xi = fo >= 0 ? H5Gopen2(fi, "X", H5P_DEFAULT) : -1;
	hid_t xo = xi >= 0 ? H5Gcreate2(fo, "X", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
	hid_t dt = type_of(g->data_dtype), it = type_of(g->indices_dtype);
	copy_ctx root = { .dst = fo, .skip = "X" };
	int rc = -1;

	if (xo >= 0 && copy_attrs(fi, fo) == 0 && copy_attrs(xi, xo) == 0 &&
	    H5Literate(fi, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_member, &root) >= 0 &&
	    H5Ocopy(xi, "indptr", xo, "indptr", H5P_DEFAULT, H5P_DEFAULT) >= 0) {
		uint64_t cd = g->auto_chunk ? h5py_chunk(nnz, H5Tget_size(dt)) : g->s.chunk;
		uint64_t ci = g->auto_chunk ? h5py_chunk(nnz, H5Tget_size(it)) : g->s.chunk;
		rc = transcode(xi, xo, "data", dt, cd, g) == 0 &&
		     transcode(xi, xo, "indices", it, ci, g) == 0 ? 0 : -1;
	}
	if (xo >= 0)
		H5Gclose(xo);
	if (xi >= 0)
		H5Gclose(xi);
	if (fo >= 0 && H5Fclose(fo) < 0)
		rc = -1;
	if (fi >= 0)
		H5Fclose(fi);
	return rc;
}

static uint64_t file_nnz(const char *path)
{
	hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	hid_t d = f >= 0 ? H5Dopen2(f, "X/data", H5P_DEFAULT) : -1;
	hid_t s = d >= 0 ? H5Dget_space(d) : -1;
	hsize_t n = 0;

	if (s >= 0)
		H5Sget_simple_extent_dims(s, &n, NULL);
	if (s >= 0)
		H5Sclose(s);
	if (d >= 0)
		H5Dclose(d);
	if (f >= 0)
		H5Fclose(f);
	return n;
}

int main(int argc, char **argv)
{
	gen_opts g;
	const char *out;
	char err[1024], tmp[4200], tmp2[4200];
	struct stat st;

	if (parse(argc, argv, &g, &out) < 0) {
		usage(stderr);
		return 2;
	}
	int convert = strcmp(g.data_dtype, "float32") != 0 ||
	              strcmp(g.indices_dtype, "int32") != 0 || g.shuffle;
	snprintf(tmp, sizeof(tmp), "%s.synth.tmp", out);
	snprintf(tmp2, sizeof(tmp2), "%s.transcode.tmp", out);
	const char *first = convert || g.repack ? tmp : out;
	printf("writing %s: %llu cells x %llu genes, median %.0f non-zeros per cell (sigma %.2f), "
	       "%u plates x %u cell lines, chunk %llu elements%s%s\n",
	       out, (unsigned long long)g.s.n_cells, (unsigned long long)g.s.n_genes,
	       g.s.median_nnz, g.s.sigma_nnz, g.s.n_plates, g.s.n_labels,
	       (unsigned long long)g.s.chunk, g.auto_chunk ? " (h5py's choice)" : "",
	       g.s.deflate ? ", deflate" : "");
	double t0 = now_s();
	if (scf_synth_write(first, &g.s, stdout, err, sizeof(err)) < 0) {
		fprintf(stderr, "scf_gen: %s\n", err);
		return 1;
	}
	if (convert) {
		const char *dst = g.repack ? tmp2 : out;
		printf("transcoding to data %s, indices %s%s\n", g.data_dtype, g.indices_dtype,
		       g.shuffle ? ", shuffle" : "");
		H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
		if (transcode_file(tmp, dst, &g, file_nnz(tmp)) < 0) {
			fprintf(stderr, "scf_gen: %s: transcoding failed\n", dst);
			unlink(dst);
			unlink(tmp);
			return 1;
		}
		unlink(tmp);
		first = dst;
	}
	if (g.repack) {
		scf_repack_opts ro = { .matrix = "X", .chunk_rows = g.chunk_rows,
		                       .codec = g.repack - 1 };
		printf("repacking X with %u-row chunks\n", g.chunk_rows);
		int rc = scf_repack(first, out, &ro, stdout, err, sizeof(err));
		unlink(first);
		if (rc < 0) {
			fprintf(stderr, "scf_gen: %s\n", err);
			return 1;
		}
	}
	if (stat(out, &st) == 0)
		printf("%s: %.2f GB in %.1f s\n", out, st.st_size / 1e9, now_s() - t0);
	return 0;
}
