"""A file open in h5py or in backed anndata in the same process (as users
keep `adata` beside the loader) opens and reads the same rows; one held open
for writing by another process gets a message that says so."""
import subprocess
import sys

import numpy as np
import pytest

import scfetch


@pytest.fixture
def small(tmp_path):
    anndata = pytest.importorskip("anndata")
    import scipy.sparse as sp

    x = sp.random(300, 40, density=0.2, format="csr", dtype=np.float32,
                  random_state=np.random.default_rng(3))
    path = str(tmp_path / "co.h5ad")
    anndata.AnnData(X=x).write_h5ad(path)
    return path, x.toarray()


def _rows(path):
    got = {}
    with scfetch.Loader(path, batch_size=32, output="dense", seed=5) as loader:
        for b in loader:
            for i, r in enumerate(b.row_ids):
                got[int(r)] = b.data[i].copy()
    return got


@pytest.mark.parametrize("mode", ["r", "r+", "a"])
def test_open_beside_h5py(small, mode):
    h5py = pytest.importorskip("h5py")
    path, dense = small
    with h5py.File(path, mode) as f:
        got = _rows(path)
        assert f["X"].attrs["encoding-type"] in ("csr_matrix", b"csr_matrix")
    assert sorted(got) == list(range(dense.shape[0]))
    for r, row in got.items():
        np.testing.assert_array_equal(row, dense[r])


@pytest.mark.parametrize("backed", ["r", "r+"])
def test_open_beside_backed_anndata(small, backed):
    anndata = pytest.importorskip("anndata")
    path, dense = small
    adata = anndata.read_h5ad(path, backed=backed)
    got = _rows(path)
    # the backed object still works after the loader closed its handle
    np.testing.assert_array_equal(adata.X[5:7].toarray(), dense[5:7])
    adata.file.close()
    assert len(got) == dense.shape[0]
    for r, row in got.items():
        np.testing.assert_array_equal(row, dense[r])


def test_writer_in_another_process_is_named(small):
    pytest.importorskip("h5py")
    path, _ = small
    code = ("import h5py, sys, time\n"
            "f = h5py.File(sys.argv[1], 'r+')\n"
            "print('open', flush=True)\n"
            "sys.stdin.readline()\n")
    p = subprocess.Popen([sys.executable, "-c", code, path], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "open"
        with pytest.raises(scfetch.Error) as e:
            scfetch.Loader(path)
        msg = str(e.value)
        assert "another process holds it open for writing" in msg, msg
        assert "damaged" not in msg
    finally:
        p.communicate("\n", timeout=30)
