"""tests/write_filtered.py — filtered 1-D datasets written by h5py itself, so
tests/test_filters.c decodes what the real writer produces (lzf comes only
with h5py; Debian's C HDF5 has no lzf plugin to read it back).

    write_filtered.py H5PATH REFDIR

Writes H5PATH with the datasets below and, for each, REFDIR/<name>.bin: the
source array's bytes (little-endian), the reference for every chunk.
`mixed_lzf` alternates compressible and random chunks, so some of its chunks
are stored raw with the lzf bit set in their filter mask (lzf is optional).
Exits with status 3 when h5py or numpy cannot be imported (the test skips).
"""
import os
import sys

NO_H5PY = 3


def counts(np, rng, n):
    """Small integer counts as float32, mostly ones and twos."""
    v = rng.geometric(0.55, size=n).astype(np.float32)
    v[rng.random(n) < 0.03] = rng.integers(20, 500, size=1)[0]
    return v


def sorted_indices(np, rng, n, n_cols=30000, per_row=700):
    """CSR column indices: sorted runs, one per cell."""
    out = np.empty(n, dtype=np.int32)
    at = 0
    while at < n:
        k = min(per_row, n - at)
        out[at:at + k] = np.sort(rng.choice(n_cols, size=k, replace=False))
        at += k
    return out


def mixed(np, rng, n, chunk):
    """Every other chunk random bits, which lzf cannot shrink."""
    v = counts(np, rng, n)
    for start in range(chunk, n, 2 * chunk):
        stop = min(start + chunk, n)
        v[start:stop] = rng.integers(0, 2**32, size=stop - start,
                                     dtype=np.uint32).view(np.float32)
    return v


def datasets(np, rng):
    """(name, array, chunk, h5py filter keywords)."""
    f32 = counts(np, rng, 50000)
    i32 = sorted_indices(np, rng, 40000)
    i64 = sorted_indices(np, rng, 30000).astype(np.int64)
    u16 = rng.integers(0, 300, size=33333, dtype=np.uint16)
    return [
        ("lzf_f32", f32, 4096, dict(compression="lzf")),
        ("lzf_i32", i32, 3000, dict(compression="lzf")),
        ("lzf_shuffle_f32", f32, 5000, dict(compression="lzf", shuffle=True)),
        ("lzf_shuffle_fletcher_i64", i64, 2500,
         dict(compression="lzf", shuffle=True, fletcher32=True)),
        ("mixed_lzf", mixed(np, rng, 20000, 2048), 2048, dict(compression="lzf")),
        ("gzip_f32", f32, 4096, dict(compression="gzip")),
        ("gzip_i64", i64, 1111, dict(compression="gzip", compression_opts=9)),
        ("shuffle_gzip_f32", f32, 7000, dict(compression="gzip", shuffle=True)),
        ("shuffle_gzip_u16", u16, 1000, dict(compression="gzip", shuffle=True)),
    ]


def main(argv):
    try:
        import h5py
        import numpy as np
    except ImportError as e:
        print("write_filtered.py: %s" % e, file=sys.stderr)
        return NO_H5PY
    path, refdir = argv[1], argv[2]
    rng = np.random.default_rng(20240601)
    with h5py.File(path, "w") as f:
        for name, arr, chunk, kw in datasets(np, rng):
            f.create_dataset(name, data=arr, chunks=(chunk,), **kw)
            with open(os.path.join(refdir, name + ".bin"), "wb") as out:
                out.write(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
