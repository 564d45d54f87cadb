"""scfetch.Loader against anndata/scipy: every delivered row, label and
lifetime rule of the numpy views."""
import gc
import os
import time

import numpy as np
import pytest

import scfetch

FAST = dict(batch_size=64, block_size=8, fetch_factor=4, threads=2)


def epoch(loader):
    """One epoch as (row_ids, batches as scipy matrices, obs codes), copied."""
    ids, mats, obs = [], [], []
    for b in loader:
        ids.append(b.row_ids.copy())
        mats.append(b.to_scipy().copy())
        obs.append(None if b.obs is None else b.obs.copy())
    return ids, mats, obs


def assert_rows_equal(got, ref):
    assert got.shape == ref.shape
    assert np.array_equal(np.diff(got.indptr), np.diff(ref.indptr))
    assert np.array_equal(got.indices, ref.indices)
    assert np.array_equal(got.data, ref.data)  # exact: values are k/8


def test_epoch_rows_labels_and_zero_copy(data):
    x = data["x"]
    with scfetch.Loader(data["sparse"], obs=["cell_type"], **FAST) as loader:
        assert loader.info()["n_rows"] == x.shape[0] and loader.info()["nnz"] == x.nnz
        assert loader.obs_categories == {"cell_type": data["labels"]}
        seen = []
        for b in loader:
            assert b.indptr.dtype == np.int64 and b.indptr[0] == 0
            assert b.indices.dtype == np.int32 and b.data.dtype == np.float32
            m = b.to_scipy()
            # values and column ids are the engine's memory, not copies
            assert np.shares_memory(m.data, b.data) and np.shares_memory(m.indices, b.indices)
            ids = b.row_ids.astype(np.int64)
            assert_rows_equal(m, x[ids])
            assert b.obs.shape == (b.n_rows, 1)
            assert np.array_equal(b.obs[:, 0], data["codes"][ids])
            assert b.obs_categories["cell_type"][b.obs[0, 0]] == data["labels"][data["codes"][ids[0]]]
            seen.append(ids)
        seen = np.concatenate(seen)
        assert np.array_equal(np.sort(seen), np.arange(x.shape[0]))  # each row once
        assert not np.array_equal(seen, np.arange(x.shape[0]))  # and shuffled
        assert loader.stats()["rows"] == x.shape[0]


def test_layer_counts(data):
    with scfetch.Loader(data["sparse"], matrix="layers/counts", **FAST) as loader:
        ids, mats, _ = epoch(loader)
    ref = data["counts"].astype(np.float32)
    for i, m in zip(ids, mats):
        assert_rows_equal(m, ref[i.astype(np.int64)])
    assert np.array_equal(np.sort(np.concatenate(ids)), np.arange(ref.shape[0]))


def test_dense_output_and_dense_file(data):
    x = data["x"]
    with scfetch.Loader(data["sparse"], output="dense", **FAST) as loader:
        for b in loader:
            assert b.indptr is None and b.data.shape == (b.n_rows, x.shape[1])
            assert np.array_equal(b.data, x[b.row_ids.astype(np.int64)].toarray())
    dense = data["dense_x"]
    for output in ("dense", "csr"):
        with scfetch.Loader(data["dense"], output=output, **FAST) as loader:
            assert loader.info()["dense"]
            n = 0
            for b in loader:
                got = b.data if output == "dense" else b.to_scipy().toarray()
                assert np.array_equal(got, dense[b.row_ids.astype(np.int64)])
                n += b.n_rows
            assert n == dense.shape[0]


def test_streaming_is_file_order(data):
    with scfetch.Loader(data["sparse"], strategy="stream", **FAST) as loader:
        ids, _, _ = epoch(loader)
    assert np.array_equal(np.concatenate(ids), np.arange(data["x"].shape[0]))


def test_epochs_follow_and_repeat(data):
    with scfetch.Loader(data["sparse"], seed=5, **FAST) as a:
        e0 = np.concatenate(epoch(a)[0])
        epochs = {b.epoch for b in a}  # the next iteration is the next epoch
        assert epochs == {1} and a.epoch == 2
        a.set_epoch(0)
        assert np.array_equal(np.concatenate(epoch(a)[0]), e0)  # a function of seed + epoch
    with scfetch.Loader(data["sparse"], seed=5, epoch=1, **FAST) as b:
        e1 = np.concatenate(epoch(b)[0])
    assert not np.array_equal(e0, e1)


def test_views_keep_the_buffer(data):
    # 1 fetch in flight = 3 buffers of 1 batch: holding 3 batches stops the stream.
    opts = dict(batch_size=64, fetch_factor=1, fetches_in_flight=1, threads=1)
    with scfetch.Loader(data["sparse"], **opts) as loader:
        b = loader.next_batch()
        n = b.n_rows
        view, saved = b.data, b.data.copy()
        ids = b.row_ids[:3]  # a slice is a view too
        del b
        gc.collect()
        held = [loader.next_batch(), loader.next_batch()]
        n += sum(h.n_rows for h in held)
        with pytest.raises(scfetch.Error) as e:
            loader.next_batch()
        assert e.value.errno == 4004 and data["sparse"] in str(e.value)
        assert np.array_equal(view, saved)  # not given back, not overwritten
        del view, saved
        with pytest.raises(scfetch.Error):
            loader.next_batch()  # `ids` still holds the first buffer
        del ids
        for h in held:
            h.release()  # explicit release gives back at once
        assert held[0].data is None
        while (b := loader.next_batch()) is not None:  # flows again
            n += b.n_rows
        assert n == data["x"].shape[0]


def test_close_waits_for_live_views(data):
    def threads():
        return len(os.listdir("/proc/self/task"))

    gc.collect()  # engines of earlier tests' leftovers
    before = threads()
    loader = scfetch.Loader(data["sparse"], **FAST)
    assert threads() > before
    b = next(iter(loader))
    saved = b.data.copy()
    view = b.data
    del b
    loader.close()
    assert loader.closed and threads() > before  # engine kept open for the view
    assert np.array_equal(view, saved)
    with pytest.raises(ValueError):
        loader.stats()
    del view
    gc.collect()
    assert threads() == before  # the last view closed it


def test_fork_leaves_the_parents_engine_alone(data):
    # A forked child (a DataLoader worker) holds the parent's engine in its
    # memory without its threads: closing or releasing there would join
    # threads that do not exist.
    with scfetch.Loader(data["sparse"], **FAST) as loader:
        b = loader.next_batch()
        pid = os.fork()
        if pid == 0:
            try:
                ok = loader.closed
                b.release()
                loader.close()
                gc.collect()
            finally:
                os._exit(0 if ok else 1)
        for _ in range(100):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung closing the parent's engine")
        assert os.waitstatus_to_exitcode(status) == 0
        del b
        assert sum(x.n_rows for x in loader) > 0  # the parent's engine still runs


def test_release_from_another_thread_during_set_epoch(data):
    # A DataLoader's feeder thread drops batches while the consumer restarts
    # epochs: the releases must neither race scf_set_epoch() nor be lost.
    import queue
    import threading

    q = queue.Queue(maxsize=4)

    def drop():
        while q.get() is not None:
            pass  # the batch dies here, on this thread

    t = threading.Thread(target=drop)
    t.start()
    with scfetch.Loader(data["sparse"], batch_size=32, fetch_factor=2, threads=1) as loader:
        for e in range(30):
            loader.set_epoch(e)
            for i, b in enumerate(loader):
                q.put(b)
                del b
                if i == e % 7:
                    break  # restart mid-epoch with batches in flight
        q.put(None)
        t.join()
        assert sum(b.n_rows for b in loader) == data["x"].shape[0]


def test_python_allocator(data):
    # The path pin_memory="cuda" takes, with malloc() standing in for
    # cudaHostAlloc(): called from engine threads, every buffer freed.
    import ctypes

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    live = {}

    def alloc(size):
        p = libc.malloc(size)
        live[p] = size
        return p

    def free(p, size):
        assert live.pop(p) == size
        libc.free(p)

    a = scfetch.Allocator(alloc, free)
    with scfetch.Loader(data["sparse"], allocator=a, **FAST) as loader:
        for b in loader:
            assert live and any(p <= b.data.ctypes.data < p + n for p, n in live.items())
            assert_rows_equal(b.to_scipy(), data["x"][b.row_ids.astype(np.int64)])
        del b
    assert not live
    failing = scfetch.Allocator(lambda size: 0, lambda p, size: None)
    with scfetch.Loader(data["sparse"], allocator=failing, **FAST) as loader:
        with pytest.raises(scfetch.Error) as e:
            loader.next_batch()
    assert e.value.errno == 12 and "allocate" in e.value.strerror


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="ASan's quarantine keeps freed memory resident")
def test_rss_flat_over_20_epochs(data):
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    with scfetch.Loader(data["sparse"], obs=["cell_type"], **FAST) as loader:
        for b in loader:  # warm: buffers allocated, code paths loaded
            b.to_scipy()
        start = rss()
        for _ in range(20):
            for b in loader:
                b.to_scipy()
                b.obs.sum()
        grown = rss() - start
    assert grown < 4 << 20, f"RSS grew by {grown} bytes over 20 epochs"


def test_errors_name_the_file(data):
    with pytest.raises(scfetch.Error) as e:
        scfetch.Loader(data["sparse"], matrix="layers/missing")
    assert isinstance(e.value, OSError) and e.value.errno > 0
    assert data["sparse"] in str(e.value) and "layers/missing" in str(e.value)
    with pytest.raises(scfetch.Error) as e:
        scfetch.Loader(data["sparse"] + ".absent")
    assert e.value.errno == 2 and ".absent" in e.value.strerror
    with pytest.raises(scfetch.Error) as e:
        scfetch.Loader(data["sparse"], obs=["no_such_column"])
    assert "no_such_column" in str(e.value)
    with pytest.raises(ValueError):
        scfetch.Loader(data["sparse"], strategy="random")
    with pytest.raises(scfetch.Error) as e:
        scfetch.Loader(data["sparse"], rank=2, world_size=2)
    assert e.value.errno == 22


def test_structs_match_the_header(tmp_path):
    # The ctypes mirrors must track include/scfetch.h field for field: ask
    # the C compiler for every offset and size and compare.
    import ctypes
    import shutil
    import subprocess

    from scfetch import _capi as C

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to read include/scfetch.h with")
    include = os.path.join(os.path.dirname(__file__), "..", "..", "include")
    structs = [C.scf_options, C.scf_batch, C.scf_stats, C.scf_info, C.scf_allocator]
    lines, want = [], []
    for st in structs:
        lines.append(f'printf("%zu\\n", sizeof({st.__name__}));')
        want.append(ctypes.sizeof(st))
        for name, _ in st._fields_:
            lines.append(f'printf("%zu\\n", offsetof({st.__name__}, {name}));')
            want.append(getattr(st, name).offset)
    src = tmp_path / "layout.c"
    src.write_text("#include <stdio.h>\n#include <stddef.h>\n#include <scfetch.h>\n"
                   "int main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n")
    built = subprocess.run([cc, "-I", include, str(src), "-o", str(tmp_path / "layout")],
                           capture_output=True, text=True)
    errors = [ln for ln in built.stderr.splitlines() if "error" in ln]
    assert built.returncode == 0, "python/scfetch/_capi.py names fields include/scfetch.h " \
        "lacks:\n" + "\n".join(errors)
    got = subprocess.run([str(tmp_path / "layout")], check=True, capture_output=True,
                         text=True).stdout.split()
    labels = [f"sizeof {st.__name__}" if i == 0 else f"{st.__name__}.{st._fields_[i - 1][0]}"
              for st in structs for i in range(len(st._fields_) + 1)]
    diff = [f"{lab}: C {g}, ctypes {w}" for lab, g, w in zip(labels, got, want) if int(g) != w]
    assert not diff, "python/scfetch/_capi.py differs from include/scfetch.h: " + "; ".join(diff)


def test_normalize_total_and_log1p_match_numpy(data):
    # scanpy's normalize_total(target_sum=1e4) then log1p, computed from the
    # file's own rows (anndata wrote them), against the engine's transforms.
    x = data["x"]
    with scfetch.Loader(data["sparse"], normalize_total=1e4, log1p=True, **FAST) as loader:
        seen = 0
        for b in loader:
            ids = b.row_ids.astype(np.int64)
            ref = x[ids].astype(np.float64)
            sums = np.asarray(ref.sum(axis=1)).ravel()
            scale = np.where(sums > 0, 1e4 / np.where(sums > 0, sums, 1), 1.0)
            want = ref.multiply(scale[:, None]).tocsr()
            want.data = np.log1p(want.data)
            got = b.to_scipy()
            assert np.array_equal(got.indices, want.indices)
            np.testing.assert_allclose(got.data, want.data, rtol=2e-6, atol=1e-6)
            seen += b.n_rows
        assert seen == x.shape[0]
    for bad in (0, -1.0, float("nan"), float("inf"), "1e4", True):
        with pytest.raises((ValueError, TypeError)):
            scfetch.Loader(data["sparse"], normalize_total=bad, **FAST)


def test_decode_options_keep_rows(data, tmp_path):
    # gzip chunks (anndata's compression="gzip"): partial inflate, the chunk
    # cache on and off, and the pread backend all deliver anndata's rows.
    anndata = pytest.importorskip("anndata")
    path = str(tmp_path / "gzip.h5ad")
    anndata.AnnData(X=data["x"]).write_h5ad(path, compression="gzip")
    x = data["x"]
    for kw in (dict(partial_inflate=True, chunk_cache=False), dict(chunk_cache=False),
               dict(chunk_cache_bytes=1 << 16, partial_inflate=True), dict(pread=True)):
        with scfetch.Loader(path, batch_size=32, block_size=1, fetch_factor=8, **kw) as loader:
            n = 0
            for b in loader:
                assert_rows_equal(b.to_scipy(), x[b.row_ids.astype(np.int64)])
                n += b.n_rows
            assert n == x.shape[0], kw
            st = loader.stats()
            assert st["chunks_decoded"] > 0 and st["decode_ns"] > 0
            if kw.get("partial_inflate"):
                assert st["bytes_decode_skipped"] > 0
            if kw.get("chunk_cache") is False:
                assert st["chunk_cache_hits"] == 0
