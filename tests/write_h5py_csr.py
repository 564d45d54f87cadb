"""tests/write_h5py_csr.py — a CSR matrix written by h5py with HDF5 filters,
the way h5py users compress .h5ad files, for the engine's decode tests.
Run by fx_write_h5py_csr() in tests/fixtures.c:

    write_h5py_csr.py PATH N_ROWS N_COLS SEED FILTERS

FILTERS: gzip1 | gzip9 | lzf | shuffle-gzip | shuffle-lzf | gzip-fletcher.
X/{data,indices,indptr} carry the filters (chunked, 1000 entries per chunk so
rows span chunks); `ref` holds the same matrix uncompressed, because HDF5's C
library on Debian has no lzf plugin to serve as the reference.
Exits with status 3 when h5py or numpy cannot be imported (the test skips).
"""
import sys

MISSING = 3


def main(argv):
    try:
        import h5py
        import numpy as np
    except ImportError as e:
        print(f"write_h5py_csr.py: {e}", file=sys.stderr)
        return MISSING
    path, n_rows, n_cols, seed, filters = argv[1], int(argv[2]), int(argv[3]), int(argv[4]), argv[5]
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 2 * 40, size=n_rows)
    lengths[::13] = 0
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.concatenate([np.sort(rng.choice(n_cols, size=k, replace=False))
                              for k in lengths] or [np.zeros(0)]).astype(np.int32)
    data = ((2 * rng.integers(0, 4000, size=int(indptr[-1])) + 1) / 8.0).astype(np.float32)

    opts = {"chunks": (1000,)}
    if "shuffle" in filters:
        opts["shuffle"] = True
    if "fletcher" in filters:
        opts["fletcher32"] = True
    if "lzf" in filters:
        opts["compression"] = "lzf"
    elif "gzip" in filters:
        opts["compression"] = "gzip"
        opts["compression_opts"] = 9 if "gzip9" in filters else (1 if "gzip1" in filters else 4)
    with h5py.File(path, "w") as f:
        for name, kw in (("X", opts), ("ref", {})):
            g = f.create_group(name)
            g.attrs["encoding-type"] = "csr_matrix"
            g.attrs["encoding-version"] = "0.1.0"
            g.attrs["shape"] = np.array([n_rows, n_cols], dtype=np.int64)
            for dname, arr in (("data", data), ("indices", indices), ("indptr", indptr)):
                g.create_dataset(dname, data=arr, maxshape=(None,), **kw) if kw else \
                    g.create_dataset(dname, data=arr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
