/*
 * tools/h5util — HDF5 helpers shared by the writers, tests, fuzz corpus and
 * perf runners (see tools/h5util.h).  Thread: the caller's.
 */
#include "tools/h5util.h"

void h5u_quiet_on(h5u_quiet *q)
{
	H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5u_quiet_off(const h5u_quiet *q)
{
	H5Eset_auto2(H5E_DEFAULT, q->fn, q->data);
}

void h5u_put(hid_t id)
{
	if (id >= 0)
		H5Idec_ref(id);
}

hid_t h5u_vlen_str(void)
{
	hid_t t = H5Tcopy(H5T_C_S1);

	if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
		h5u_put(t);
		return -1;
	}
	return t;
}

int h5u_attr_str(hid_t obj, const char *name, const char *value)
{
	hid_t t = h5u_vlen_str(), sp = H5Screate(H5S_SCALAR), a = -1;
	int rc = -1;

	if (t >= 0 && sp >= 0)
		a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
	if (a >= 0 && H5Awrite(a, t, &value) >= 0)
		rc = 0;
	h5u_put(a);
	h5u_put(sp);
	h5u_put(t);
	return rc;
}

int h5u_attr_encoding(hid_t obj, const char *type, const char *version)
{
	return h5u_attr_str(obj, "encoding-type", type) < 0 ||
	       h5u_attr_str(obj, "encoding-version", version) < 0 ? -1 : 0;
}

int h5u_attr_array(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *buf,
                   hsize_t n)
{
	hid_t sp = H5Screate_simple(1, &n, NULL), a = -1;
	int rc = -1;

	if (sp >= 0)
		a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
	if (a >= 0 && (n == 0 || H5Awrite(a, mtype, buf) >= 0))
		rc = 0;
	h5u_put(a);
	h5u_put(sp);
	return rc;
}

int h5u_attr_false(hid_t obj, const char *name)
{
	signed char no = 0, yes = 1;
	hid_t t = H5Tenum_create(H5T_NATIVE_SCHAR), sp = H5Screate(H5S_SCALAR), a = -1;
	int rc = -1;

	if (t >= 0 && sp >= 0 && H5Tenum_insert(t, "FALSE", &no) >= 0 &&
	    H5Tenum_insert(t, "TRUE", &yes) >= 0)
		a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
	if (a >= 0 && H5Awrite(a, t, &no) >= 0)
		rc = 0;
	h5u_put(a);
	h5u_put(sp);
	h5u_put(t);
	return rc;
}
