"""scfetch.torch.SCFetchDataset in DataLoader loops: in-process, with
workers, across two torch.distributed ranks."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="python3-torch is not installed")
from torch.utils.data import DataLoader  # noqa: E402

from scfetch.torch import SCFetchDataset  # noqa: E402

FAST = dict(batch_size=64, block_size=8, fetch_factor=4, threads=1)
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")


def ids_of(items):
    return np.concatenate([it["row_ids"].numpy() for it in items])


def epoch_of(ds):
    """(epochs seen, row ids) of one pass, copied: a kept tensor would hold
    its engine buffer, and the engine has only a few."""
    epochs, ids = set(), []
    for it in ds:
        epochs.add(it["epoch"])
        ids.append(it["row_ids"].numpy().copy())
    return epochs, np.concatenate(ids)


def test_in_process_zero_copy_epoch(data):
    x = data["x"]
    ds = SCFetchDataset(data["sparse"], obs=["cell_type"], **FAST)
    n = 0
    seen = []
    for item in DataLoader(ds, batch_size=None, num_workers=0):
        X, ids = item["X"], item["row_ids"].numpy()
        assert X.layout == torch.sparse_csr and X.dtype == torch.float32
        assert X.col_indices().dtype == torch.int32 == X.crow_indices().dtype
        ref = x[ids]
        assert np.array_equal(X.values().numpy(), ref.data)
        assert np.array_equal(X.col_indices().numpy(), ref.indices)
        assert np.array_equal(X.crow_indices().numpy(), ref.indptr)
        assert np.array_equal(item["obs"][:, 0].numpy(), data["codes"][ids])
        seen.append(ids.copy())  # a kept view would hold its engine buffer
        n += 1
    assert n == len(ds)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(x.shape[0]))


def test_batch_tensors_share_the_engine_buffer(data):
    import scfetch

    with scfetch.Loader(data["sparse"], **FAST) as loader:
        b = loader.next_batch()
        X = b.to_torch()
        assert X.values().data_ptr() == b.data.ctypes.data
        assert X.col_indices().data_ptr() == b.indices.ctypes.data
        saved = X.to_dense().clone()
        del b  # the tensor keeps the buffer
        for _ in loader:
            pass
        assert torch.equal(X.to_dense(), saved)


def test_dense_tensors_share_the_engine_buffer(data):
    x = data["x"]
    ds = SCFetchDataset(data["sparse"], output="dense", **FAST)
    item = next(iter(ds))
    X = item["X"]
    assert X.layout == torch.strided and X.shape == (64, x.shape[1])
    assert np.array_equal(X.numpy(), x[item["row_ids"].numpy()].toarray())
    ds.close()
    del ds
    assert float(X.sum()) == pytest.approx(float(x[item["row_ids"].numpy()].sum()))


def test_epochs_in_process(data):
    ds = SCFetchDataset(data["sparse"], **FAST)
    first, second = epoch_of(ds), epoch_of(ds)  # no set_epoch(): the next epoch
    assert first[0] == {0} and second[0] == {1}
    assert not np.array_equal(first[1], second[1])
    ds.set_epoch(0)
    again = epoch_of(ds)
    assert again[0] == {0} and np.array_equal(again[1], first[1])
    ds.set_epoch(5)
    assert epoch_of(ds)[0] == {5}


@pytest.mark.parametrize("persistent", [True, False])
def test_two_workers_complete_without_duplicates(data, persistent):
    n_rows = data["x"].shape[0]
    ds = SCFetchDataset(data["sparse"], obs=["cell_type"], **FAST)
    dl = DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=persistent)
    orders = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        items = list(dl)
        assert len(items) == len(ds) == len(dl)
        assert {it["epoch"] for it in items} == {epoch}
        ids = ids_of(items)
        assert np.array_equal(np.sort(ids), np.arange(n_rows))  # complete, each once
        it = items[0]  # CSR crossed the process boundary intact
        assert it["X"].layout == torch.sparse_csr
        assert np.array_equal(it["X"].to_dense().numpy(), data["x"][it["row_ids"].numpy()].toarray())
        orders.append(ids)
    # persistent workers never saw set_epoch(1): they counted it themselves
    assert not np.array_equal(orders[0], orders[1])


def run_ranks(path, tmp_path, *worker_args):
    """Two gloo ranks reading one epoch each (ddp_rank.py): their npz files."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    helper = os.path.join(os.path.dirname(__file__), "ddp_rank.py")
    outs = [tmp_path / f"rank{r}.npz" for r in range(2)]
    procs = [subprocess.Popen([sys.executable, helper, path, str(r), "2", str(port),
                               str(outs[r]), *worker_args]) for r in range(2)]
    assert [p.wait(timeout=180) for p in procs] == [0, 0]
    return [np.load(o) for o in outs]


@pytest.mark.parametrize("workers", [(), ("2", "spawn")], ids=["in-process", "spawn-workers"])
def test_two_ranks_are_disjoint_and_complete(data, tmp_path, workers):
    # Spawned workers see no process group: the rank must come from the
    # parent.  seed=None: rank 0's random seed, broadcast.
    a, b = run_ranks(data["sparse"], tmp_path, *workers)
    assert int(a["seed"]) == int(b["seed"])
    ra, rb = a["ids"], b["ids"]
    assert len(ra) and len(rb)
    assert not set(ra.tolist()) & set(rb.tolist())
    assert np.array_equal(np.sort(np.concatenate([ra, rb])), np.arange(data["x"].shape[0]))
    assert int(a["batches"]) == int(a["len"]) and int(b["batches"]) == int(b["len"])


def test_pin_memory_cuda_is_never_faked(data):
    from scfetch.torch import cuda_host_allocator

    alloc = cuda_host_allocator()
    if alloc is None:
        ds = SCFetchDataset(data["sparse"], pin_memory="cuda", output="dense", **FAST)
        with pytest.warns(UserWarning, match="pin_memory='cuda' skipped"):
            item = next(iter(ds))
        assert not item["X"].is_pinned() if torch.cuda.is_available() else True
        return
    ds = SCFetchDataset(data["sparse"], pin_memory="cuda", output="dense", device="cuda", **FAST)
    for item in ds:
        assert item["X"].is_cuda
        ref = data["x"][item["row_ids"].cpu().numpy()].toarray()
        assert np.array_equal(item["X"].cpu().numpy(), ref)
    assert ds._loader.stats()["pinned"]


def test_unsorted_rows(data):
    ref = data["unsorted_x"]
    with pytest.raises(ValueError, match="unsorted.h5ad: column ids are not sorted"):
        next(iter(SCFetchDataset(data["unsorted"], **FAST)))
    for item in SCFetchDataset(data["unsorted"], output="dense", **FAST):
        assert np.array_equal(item["X"].numpy(), ref[item["row_ids"].numpy()].toarray())


def test_unknown_argument():
    with pytest.raises(TypeError):
        SCFetchDataset("x.h5ad", num_workers=2)


def dense_and_labels(item):
    """A batch_transform as a model wants its input (module level: workers
    started by spawn must pickle it)."""
    return item["X"].to_dense(), item["obs"][:, 0].long(), item["row_ids"]


def fetch_sizes(items):
    """A fetch_transform: tags each item with the size of its fetch."""
    return [dict(it, fetch=len(items)) for it in items]


def test_hooks_in_workers(data):
    ds = SCFetchDataset(data["sparse"], obs=["cell_type"], fetch_transform=fetch_sizes,
                        batch_transform=dense_and_labels, **FAST)
    ds.set_epoch(0)
    ids = []
    for X, y, rows in DataLoader(ds, batch_size=None, num_workers=2):
        r = rows.numpy()
        assert np.array_equal(X.numpy(), data["x"][r].toarray())
        assert y.dtype == torch.int64 and np.array_equal(y.numpy(), data["codes"][r])
        ids.append(r)
    assert np.array_equal(np.sort(np.concatenate(ids)), np.arange(data["x"].shape[0]))
    sizes = [it["fetch"] for it in SCFetchDataset(data["sparse"], fetch_transform=fetch_sizes,
                                                   **FAST)]
    k = sizes[-1]  # fetch_factor batches per fetch; the last fetch may be short
    assert 1 <= k <= 4 and sizes == [4] * (len(sizes) - k) + [k] * k


def test_obs_categories_obsm_and_a_layer(data):
    ds = SCFetchDataset(data["sparse"], obs=["cell_type"], obsm=["X_pca"], layers=["counts"],
                        output="dense", **FAST)
    assert ds.obs_categories == {"cell_type": data["labels"]}
    n = 0
    for item in ds:
        r = item["row_ids"].numpy()
        assert np.array_equal(item["obsm"]["X_pca"].numpy(), data["pca"][r])
        assert np.array_equal(item["layers"]["counts"].numpy(),
                              data["counts"][r].toarray().astype(np.float32))
        assert np.array_equal(item["X"].numpy(), data["x"][r].toarray())
        n += len(r)
    assert n == data["x"].shape[0]


def test_options_are_loaders_and_visible():
    import inspect

    import scfetch

    ds_params = inspect.signature(SCFetchDataset).parameters
    ld_params = inspect.signature(scfetch.Loader).parameters
    derived = {"worker", "num_workers", "allocator"}  # set per process by the dataset
    missing = set(ld_params) - derived - set(ds_params)
    assert not missing, f"SCFetchDataset lacks Loader options {sorted(missing)}"
    for name in set(ld_params) & set(ds_params) - {"path", "rank", "world_size"}:
        assert ds_params[name].default == ld_params[name].default, name
    assert not any(p.kind == p.VAR_KEYWORD for p in ds_params.values())


def test_seed_none_is_drawn_once(data):
    ds = SCFetchDataset(data["sparse"], seed=None, **FAST)
    assert isinstance(ds.seed, int)
    first = epoch_of(ds)[1]
    ds.set_epoch(0)
    assert np.array_equal(epoch_of(ds)[1], first)
    with pytest.raises(ValueError, match="seed"):
        SCFetchDataset(data["sparse"], seed=None, rank=1, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        next(iter(SCFetchDataset(data["sparse"], batch_size=0)))


def test_items_carry_obs_of_every_kind(tmp_path, data):
    # float and integer obs columns reach the training loop without loss
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    n = data["x"].shape[0]
    rng = np.random.default_rng(4)
    obs = pd.DataFrame({"cell_type": pd.Categorical.from_codes(data["codes"], data["labels"]),
                        "depth": rng.random(n) * 1e5 + 0.123456789,
                        "n_genes": rng.integers(-2**40, 2**40, n)},
                       index=[f"c{i}" for i in range(n)])
    path = str(tmp_path / "obs.h5ad")
    anndata.AnnData(X=data["x"], obs=obs).write_h5ad(path)
    ds = SCFetchDataset(path, obs=["cell_type", "depth", "n_genes"], **FAST)
    seen = 0
    for item in ds:
        r = item["row_ids"].numpy()
        v = item["obs_values"]
        assert v["depth"].dtype == torch.float64 and v["n_genes"].dtype == torch.int64
        assert np.array_equal(v["depth"].numpy(), obs["depth"].to_numpy()[r])
        assert np.array_equal(v["n_genes"].numpy(), obs["n_genes"].to_numpy()[r])
        assert np.array_equal(v["cell_type"].numpy(), data["codes"][r])
        seen += len(r)
    assert seen == n
