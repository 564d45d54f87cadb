"""Fixtures for the binding's tests: .h5ad files written by anndata itself
into a temporary directory, once per session (writing takes a second)."""
import warnings

import numpy as np
import pytest

N_ROWS, N_COLS = 3000, 500
LABELS = ["B", "NK", "T", "mono", "plasma"]


def _random_csr(rng, dtype, values):
    import scipy.sparse as sp

    m = sp.random(N_ROWS, N_COLS, density=0.04, format="csr", random_state=rng,
                  data_rvs=values, dtype=np.float64)
    m = sp.csr_matrix(m, dtype=dtype)
    m.data[m.data == 0] = 1  # keep every stored entry stored
    m.sort_indices()
    return m


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    """Paths and the in-memory matrices they hold."""
    anndata = pytest.importorskip("anndata", reason="anndata writes the fixtures")
    import pandas as pd

    rng = np.random.default_rng(7)
    import scipy.sparse as sp

    x = _random_csr(rng, np.float32, lambda k: rng.integers(1, 4000, size=k) / 8.0)
    keep = np.ones(N_ROWS, np.float32)
    keep[::13] = 0  # some empty rows
    x = sp.csr_matrix(sp.diags(keep) @ x, dtype=np.float32)
    x.eliminate_zeros()
    # The product leaves each row's column ids in reverse: legal in .h5ad,
    # kept for one small file, sorted (as writers usually leave them) for X.
    unsorted = x[:200].copy()
    assert not unsorted.has_sorted_indices
    x.sort_indices()
    counts = _random_csr(rng, np.int32, lambda k: rng.integers(1, 100, size=k))
    # Sorted by label, as atlases are: a streamed batch would hold one type.
    codes = np.arange(N_ROWS) * len(LABELS) // N_ROWS
    obs = pd.DataFrame({"cell_type": pd.Categorical.from_codes(codes, LABELS)},
                       index=[f"c{i}" for i in range(N_ROWS)])
    var = pd.DataFrame(index=[f"g{i}" for i in range(N_COLS)])
    d = tmp_path_factory.mktemp("h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = anndata.AnnData(X=x, obs=obs, var=var)
        a.layers["counts"] = counts
        pca = np.random.default_rng(8).standard_normal((N_ROWS, 6)).astype(np.float32)
        a.obsm["X_pca"] = pca
        a.write_h5ad(d / "sparse.h5ad")
        anndata.AnnData(X=unsorted, obs=obs.iloc[:200], var=var).write_h5ad(d / "unsorted.h5ad")
        dense = x[:800].toarray()
        anndata.AnnData(X=dense, obs=obs.iloc[:800], var=var).write_h5ad(d / "dense.h5ad")
    return {"sparse": str(d / "sparse.h5ad"), "dense": str(d / "dense.h5ad"),
            "unsorted": str(d / "unsorted.h5ad"), "unsorted_x": unsorted, "x": x,
            "counts": counts, "pca": pca, "dense_x": dense, "codes": codes, "labels": LABELS}
