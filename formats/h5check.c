/*
 * formats/h5check — checked reads of HDF5 attributes, dataspaces and
 * declared sizes.  Thread: the caller of scf_open().
 */
#include "formats/h5check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scfetch.h"
#include "common/faults.h" /* last: may wrap malloc in test builds */

/* deflate's best ratio is about 1032:1; anything declaring more is a lie. */
#define SCF__MAX_RATIO 1100u

void scf__h5_quiet(scf__h5quiet *q)
{
	H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void scf__h5_loud(const scf__h5quiet *q)
{
	H5Eset_auto2(H5E_DEFAULT, q->fn, q->data);
}

static const char *file_kind(mode_t m)
{
	return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO (named pipe)"
	       : S_ISSOCK(m) ? "a socket" : S_ISCHR(m) ? "a character device"
	       : S_ISBLK(m) ? "a block device" : "not a regular file";
}

int scf__file_check(const char *path, char *why, size_t wlen)
{
	struct stat st;
	int fd;

	if (stat(path, &st) < 0) {
		int e = errno;
		snprintf(why, wlen, "cannot open: %s", strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, wlen, "cannot open: it is %s, not a regular file",
		         file_kind(st.st_mode));
		return S_ISDIR(st.st_mode) ? -EISDIR : SCF_E_NOT_H5AD;
	}
	/* O_NONBLOCK: should the path turn into a FIFO after stat, open() still returns */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		snprintf(why, wlen, "cannot open: %s", strerror(e));
		return -e;
	}
	close(fd);
	return 0;
}

/* Elements of an attribute's dataspace; -1 when unreadable. */
static hssize_t attr_points(hid_t a)
{
	hid_t sp = H5Aget_space(a);
	hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;

	if (sp >= 0)
		H5Sclose(sp);
	return n;
}

int scf__h5_attr_string(hid_t obj, const char *name, char *buf, size_t len, char *why,
                        size_t wlen)
{
	hid_t a, t;
	int rc = SCF_E_CORRUPT;

	buf[0] = '\0';
	if (H5Aexists(obj, name) <= 0)
		return 0;
	if ((a = H5Aopen(obj, name, H5P_DEFAULT)) < 0) {
		snprintf(why, wlen, "attribute `%s` cannot be read", name);
		return SCF_E_CORRUPT;
	}
	t = H5Aget_type(a);
	hssize_t n = attr_points(a);
	if (t < 0 || H5Tget_class(t) != H5T_STRING || n != 1) {
		snprintf(why, wlen, "attribute `%s` must be one string, found %s", name,
		         t >= 0 && H5Tget_class(t) == H5T_STRING ? "an array of strings"
		                                                  : "another type");
		goto out;
	}
	hid_t mt = H5Tcopy(H5T_C_S1);
	H5Tset_cset(mt, H5Tget_cset(t));
	if (H5Tis_variable_str(t) > 0) {
		char *s = NULL;
		H5Tset_size(mt, H5T_VARIABLE);
		if (H5Aread(a, mt, &s) >= 0 && s) {
			if (strlen(s) < len) {
				memcpy(buf, s, strlen(s) + 1);
				rc = 1;
			}
			H5free_memory(s);
		}
	} else {
		size_t fixed = H5Tget_size(t);
		/* read into buf itself, with room for the terminator HDF5 adds */
		if (fixed > 0 && fixed < len) {
			H5Tset_size(mt, fixed + 1);
			if (H5Aread(a, mt, buf) >= 0) {
				buf[fixed] = '\0';
				rc = 1;
			}
		}
	}
	H5Tclose(mt);
	if (rc != 1)
		snprintf(why, wlen, "attribute `%s` cannot be read as a string of at most %zu "
		         "bytes", name, len - 1);
out:
	if (t >= 0)
		H5Tclose(t);
	H5Aclose(a);
	return rc;
}

int scf__h5_attr_ints(hid_t obj, const char *name, int64_t *out, size_t n, char *why,
                      size_t wlen)
{
	hid_t a, t;
	int rc = SCF_E_CORRUPT;

	if (H5Aexists(obj, name) <= 0)
		return 0;
	if ((a = H5Aopen(obj, name, H5P_DEFAULT)) < 0) {
		snprintf(why, wlen, "attribute `%s` cannot be read", name);
		return SCF_E_CORRUPT;
	}
	t = H5Aget_type(a);
	hssize_t got = attr_points(a);
	if (t >= 0 && H5Tget_class(t) == H5T_INTEGER && got == (hssize_t)n &&
	    H5Aread(a, H5T_NATIVE_INT64, out) >= 0)
		rc = 1;
	else
		snprintf(why, wlen, "attribute `%s` must be %zu integers, found %lld %s", name, n,
		         (long long)got, t >= 0 && H5Tget_class(t) == H5T_INTEGER ? "integers"
		                                                                  : "values of another type");
	if (t >= 0)
		H5Tclose(t);
	H5Aclose(a);
	return rc;
}

int scf__h5_dset_shape(hid_t d, unsigned want_rank, uint64_t *dims, char *why, size_t wlen)
{
	hid_t sp = H5Dget_space(d);
	int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
	hsize_t h[2] = { 0, 0 };

	if (rank != (int)want_rank || want_rank < 1 || want_rank > 2) {
		if (sp >= 0)
			H5Sclose(sp);
		snprintf(why, wlen, "has %d dimensions, expected %u", rank, want_rank);
		return SCF_E_CORRUPT;
	}
	H5Sget_simple_extent_dims(sp, h, NULL);
	H5Sclose(sp);
	for (unsigned i = 0; i < want_rank; i++)
		dims[i] = h[i];
	return 0;
}

/* Whether every element of d is stored: every chunk written, or contiguous storage placed. */
static int fully_written(hid_t d, uint64_t *stored, uint64_t *needed)
{
	hid_t dcpl = H5Dget_create_plist(d), sp = H5Dget_space(d);
	int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1, ok = 0;
	hsize_t dims[H5S_MAX_RANK], cd[H5S_MAX_RANK], n = 0;

	*stored = *needed = 0;
	if (dcpl < 0 || rank < 0 || rank > H5S_MAX_RANK)
		goto out;
	H5Sget_simple_extent_dims(sp, dims, NULL);
	switch (H5Pget_layout(dcpl)) {
	case H5D_COMPACT:
		ok = 1;
		break;
	case H5D_CONTIGUOUS:
		*needed = 1;
		*stored = H5Dget_offset(d) != HADDR_UNDEF || H5Pget_external_count(dcpl) > 0;
		ok = *stored == 1;
		break;
	case H5D_CHUNKED:
		if (H5Pget_chunk(dcpl, rank, cd) != rank || H5Dget_num_chunks(d, sp, &n) < 0)
			break;
		*needed = 1;
		for (int i = 0; i < rank; i++)
			*needed *= cd[i] ? (dims[i] + cd[i] - 1) / cd[i] : 0;
		*stored = n;
		ok = n >= *needed;
		break;
	default:
		break;
	}
out:
	if (sp >= 0)
		H5Sclose(sp);
	if (dcpl >= 0)
		H5Pclose(dcpl);
	return ok;
}

int scf__h5_check_backed(hid_t d, uint64_t n_elem, char *why, size_t wlen)
{
	hid_t t = H5Dget_type(d), f = H5Iget_file_id(d);
	size_t esize = t >= 0 ? H5Tget_size(t) : 0;
	uint64_t bytes, stored, needed;
	hsize_t fsize = 0;

	if (t >= 0)
		H5Tclose(t);
	if (f >= 0) {
		H5Fget_filesize(f, &fsize);
		H5Fclose(f);
	}
	if (n_elem == 0)
		return 0;
	if (__builtin_mul_overflow(n_elem, esize ? esize : 1, &bytes) ||
	    bytes / SCF__MAX_RATIO > (uint64_t)fsize) {
		snprintf(why, wlen, "declares %llu entries of %zu bytes, more than a file of "
		         "%llu bytes can hold", (unsigned long long)n_elem, esize,
		         (unsigned long long)fsize);
		return SCF_E_CORRUPT;
	}
	if (!fully_written(d, &stored, &needed)) {
		snprintf(why, wlen, "declares %llu entries but its storage was never written "
		         "(%llu of %llu chunks)", (unsigned long long)n_elem,
		         (unsigned long long)stored, (unsigned long long)needed);
		return SCF_E_CORRUPT;
	}
	return 0;
}
