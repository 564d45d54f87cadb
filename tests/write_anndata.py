"""tests/write_anndata.py — an .h5ad fixture written by anndata itself, so the
C tests also read what the real writer produces (chunked, resizable datasets).
Run by fx_write_anndata() in tests/fixtures.c:

    write_anndata.py PATH N_ROWS N_COLS DENSITY SEED COMPRESSION

X is a scipy CSR float32 matrix (values k/8, exact in float32, some rows
empty), layers["counts"] an int32 CSR matrix, obs["cell_type"] a categorical
with rows sorted by label.  COMPRESSION is "none" or an h5py filter ("gzip").
Exits with status 3 when anndata cannot be imported (the test skips).
"""
import sys
import warnings

NO_ANNDATA = 3


def random_csr(sp, np, rng, n_rows, n_cols, density, values, dtype):
    """Random CSR with sorted indices and every 11th row empty."""
    m = sp.random(n_rows, n_cols, density=density, format="csr",
                  random_state=rng, data_rvs=values)
    keep = np.ones(n_rows)
    keep[::11] = 0
    m = sp.csr_matrix(sp.diags(keep) @ m, dtype=dtype)
    m.eliminate_zeros()
    m.sort_indices()
    return m


def main(argv):
    try:
        import anndata
        import numpy as np
        import pandas as pd
        import scipy.sparse as sp
    except ImportError as e:
        print(f"write_anndata.py: {e}", file=sys.stderr)
        return NO_ANNDATA
    if len(argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    path, n_rows, n_cols = argv[1], int(argv[2]), int(argv[3])
    density, seed, compression = float(argv[4]), int(argv[5]), argv[6]
    rng = np.random.default_rng(seed)

    x = random_csr(sp, np, rng, n_rows, n_cols, density,
                   lambda k: (2 * rng.integers(0, 4000, size=k) + 1) / 8.0, np.float32)
    counts = random_csr(sp, np, rng, n_rows, n_cols, density,
                        lambda k: rng.integers(1, 100, size=k), np.int32)
    n_labels = max(1, min(5, n_rows))
    codes = np.arange(n_rows) * n_labels // max(n_rows, 1)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical.from_codes(codes, [f"type{i}" for i in range(n_labels)])},
        index=[f"cell{i}" for i in range(n_rows)])
    var = pd.DataFrame(index=[f"gene{i}" for i in range(n_cols)])

    warnings.simplefilter("ignore")
    adata = anndata.AnnData(X=x, obs=obs, var=var)
    adata.layers["counts"] = counts
    adata.write_h5ad(path, compression=None if compression in ("", "none") else compression)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
