"""A list of .h5ad files as one Loader: global row ids in list order, each
row equal to anndata's, locate() back to (file, row), and files that do not
share a gene axis refused with both named."""
import warnings

import numpy as np
import pytest

import scfetch

FAST = dict(batch_size=64, block_size=1, fetch_factor=4, threads=2)


def test_collection_epoch_equals_the_stacked_matrices(data):
    import scipy.sparse as sp

    paths = [data["sparse"], data["dense"], data["unsorted"]]
    parts = [data["x"], sp.csr_matrix(data["dense_x"]), data["unsorted_x"]]
    full = sp.vstack(parts, format="csr").toarray()
    firsts = np.cumsum([0] + [p.shape[0] for p in parts])
    with scfetch.Loader(paths, obs=["cell_type"], **FAST) as loader:
        assert loader.paths == tuple(paths)
        assert loader.info()["n_rows"] == full.shape[0]
        assert [(p, f, n) for p, f, n in loader.files] == [
            (p, int(firsts[i]), parts[i].shape[0]) for i, p in enumerate(paths)]
        assert loader.obs_categories == {"cell_type": data["labels"]}
        seen, mixed = [], 0
        for b in loader:
            ids = b.row_ids.astype(np.int64)
            assert np.array_equal(b.to_scipy().toarray(), full[ids])
            files = np.searchsorted(firsts, ids, side="right") - 1
            mixed += len(set(files)) > 1
            seen.append(ids)
        seen = np.concatenate(seen)
        assert np.array_equal(np.sort(seen), np.arange(full.shape[0]))
        assert mixed > 0  # fetches span files
        for g in (0, firsts[1] - 1, firsts[1], firsts[2], firsts[3] - 1):
            f = int(np.searchsorted(firsts, g, side="right") - 1)
            assert loader.locate(g) == (f, int(g - firsts[f]))
        with pytest.raises(IndexError):
            loader.locate(firsts[3])


def test_one_path_in_a_list_is_one_file(data):
    with scfetch.Loader([data["unsorted"]], **FAST) as loader:
        assert loader.path == data["unsorted"] and loader.locate(5) == (0, 5)


def test_other_gene_axis_is_refused(data, tmp_path):
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    x = data["x"][:50]
    other = tmp_path / "other_genes.h5ad"
    var = pd.DataFrame(index=[f"gene_{i}" for i in range(x.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        anndata.AnnData(X=x, var=var).write_h5ad(other)
    with pytest.raises(scfetch.Error) as e:
        scfetch.Loader([data["sparse"], str(other)])
    assert e.value.errno == 22
    assert str(other) in str(e.value) and data["sparse"] in str(e.value)
    narrow = tmp_path / "narrow.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        anndata.AnnData(X=x[:, :100]).write_h5ad(narrow)
    with pytest.raises(scfetch.Error) as e:
        scfetch.Loader([data["sparse"], str(narrow)])
    assert str(narrow) in str(e.value) and "100" in str(e.value)
