"""Differential test: scfetch against the reference reader.

Each seed draws a random *valid* .h5ad file (written by h5py with the
AnnData attributes, or by anndata itself): CSR or dense, every integer and
float dtype, index dtypes, contiguous or chunked storage of every chunk-index
kind h5py makes, gzip/shuffle/lzf/fletcher32 filters, empty rows, unsorted
and repeated column ids, dense chunks never written (their fill value),
layers/raw matrices, and obs columns of every kind (string and numeric
categoricals, signed and unsigned integers up to 2^62, booleans, floats).
The expected rows and obs values come from h5py reading the file back (and
anndata reading it too, as a check of the file and of the oracle), never
from the arrays the generator meant to write.  One epoch (or a few: ranks,
both output formats) is streamed with random loader options and every
delivered row and obs value is compared.

    SCF_DIFF_SEEDS=N     seeds to run (default 60, a few seconds)
    SCF_DIFF_SEED0=S     first seed (default 0)

A failure names its seed and the file's recipe; rerun it alone with
SCF_DIFF_SEED0=<seed> SCF_DIFF_SEEDS=1.
"""
import json
import os
import threading
import warnings

import numpy as np
import pytest

import scfetch

h5py = pytest.importorskip("h5py", reason="h5py writes the files and is the oracle")

try:  # optional: writes some files, and checks every file it can read
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import anndata
        import pandas as pd
        import scipy.sparse as sp
except ImportError:  # pragma: no cover - Debian CI has them
    anndata = None

SEED0 = int(os.environ.get("SCF_DIFF_SEED0", "0"))
N_SEEDS = int(os.environ.get("SCF_DIFF_SEEDS", "60"))
SEEDS = list(range(SEED0, SEED0 + N_SEEDS))
# one rank's epoch (open, stream, close) that takes longer is reported as a hang
HANG_S = float(os.environ.get("SCF_DIFF_TIMEOUT", "10"))

INT32_MIN = -(2**31)

# Known bugs the lead is fixing: (predicate on the recipe, reason).  A
# sub-case matching one is run under a strict xfail; every other mismatch is a
# real failure.  Empty while no known bug reproduces.
KNOWN_BUGS = []
if not hasattr(scfetch.Batch, "obs_values"):  # a binding without lossless obs values
    KNOWN_BUGS.append((
        lambda r: r["n_rows"] > 0 and any(
            c["kind"] == "float" or (c["kind"] == "int" and c["big"]
                                     and c["dtype"] in ("int64", "uint32", "uint64"))
            for c in r["obs"]),
        "Batch.obs_values missing: int64/uint32 obs clipped to int32, float obs refused"))

# Known gaps, reported in the issue tracker, each run under a strict xfail so that
# a fix shows up as XPASS: float16 matrices are refused (UNSUPPORTED), and a
# contiguous dense X that was never written is refused instead of read as its
# fill value.
KNOWN_BUGS.append((lambda r: r["dtype"] == "float16",
                   "float16 matrices are refused (UNSUPPORTED) where h5py reads them"))
KNOWN_BUGS.append((lambda r: r["layout"] == "dense" and
                   r.get("storage", {}).get("data", {}).get("layout") == "contiguous" and
                   r.get("written", 1.0) == 0.0,
                   "a contiguous dense X never written is refused, not read as its fill value"))

DATA_DTYPES = ["float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
               "uint32", "float16", "uint64"]
DATA_WEIGHTS = [6, 3, 1, 1, 3, 2, 1, 1, 1, 0.5, 0.5]
FILTERS = ["none", "gzip", "shuffle+gzip", "lzf", "fletcher32", "shuffle+lzf",
           "gzip+fletcher32"]


# ---------------------------------------------------------------- recipes

def _pick(rng, items, weights=None):
    if weights is None:
        return items[int(rng.integers(len(items)))]
    p = np.asarray(weights, float)
    return items[int(rng.choice(len(items), p=p / p.sum()))]


def _storage(rng, libver, n_dims):
    """How one dataset is stored (h5py writer)."""
    if rng.random() < 0.3:
        return {"layout": "contiguous"}
    st = {"layout": "chunked", "unlimited": bool(rng.random() < 0.4),
          "filters": _pick(rng, FILTERS, [4, 3, 2, 2, 1, 1, 1]),
          "chunk": [float(rng.choice([0.01, 0.1, 0.3, 0.7, 1.0, 1.5])) for _ in range(n_dims)]}
    if st["filters"] in ("gzip", "shuffle+gzip", "gzip+fletcher32"):
        st["level"] = int(rng.integers(1, 10))
    # implicit chunk index: early allocation, no filter, fixed size (latest format)
    st["early"] = bool(st["filters"] == "none" and not st["unlimited"] and libver == "latest"
                       and rng.random() < 0.5)
    return st


def _obs_recipe(rng, writer):
    kinds = ["cat_str", "cat_int", "cat_float", "int", "bool", "float"]
    cols = []
    for i in range(int(rng.integers(0, 6))):
        kind = _pick(rng, kinds, [4, 1, 1, 3, 1, 2])
        name = _pick(rng, ["c", "cell type", "donor_id", "n_genes", "x\u00e9", "batch"]) + str(i)
        col = {"name": name, "kind": kind, "missing": bool(rng.random() < 0.3)}
        if kind == "int":
            col["dtype"] = _pick(rng, ["int8", "int16", "int32", "int64", "uint8", "uint16",
                                       "uint32", "uint64"], [1, 1, 2, 4, 1, 1, 3, 1])
            col["big"] = bool(rng.random() < 0.6)  # values beyond int32 where the dtype allows
        elif kind == "float":
            col["dtype"] = _pick(rng, ["float32", "float64"])
        elif kind.startswith("cat"):
            col["n_categories"] = int(rng.integers(1, 40))
            if writer == "h5py":
                col["codes_dtype"] = _pick(rng, ["int8", "int16", "int32"])
                if kind == "cat_str":
                    col["strings"] = _pick(rng, ["vlen", "fixed"])
        cols.append(col)
    return cols


def _run_recipe(rng, n_rows, n_cols):
    run = {"strategy": _pick(rng, ["block", "stream"], [3, 1]),
           "output": _pick(rng, ["csr", "dense"]),
           "batch_size": int(_pick(rng, [1, 2, 7, 16, 33, 64, 300])),
           "block_size": int(_pick(rng, [1, 2, 3, 8, 16, 64])),
           "fetch_factor": int(rng.integers(1, 9)),
           "seed": int(rng.integers(0, 2**31)),
           "threads": int(rng.integers(1, 3)),
           "fetches_in_flight": int(rng.integers(1, 5)),
           "direct": bool(rng.random() < 0.5)}
    if rng.random() < 0.3:
        run["max_read"] = int(_pick(rng, [4096, 8192, 65536]))
    if rng.random() < 0.3:
        run["coalesce_gap"] = int(_pick(rng, [1, 4096, 2**32 - 1]))
    if rng.random() < 0.3:
        run["queue_depth"] = int(_pick(rng, [4, 8, 64]))
    if rng.random() < 0.3:
        k = int(rng.integers(1, n_cols + 1))
        run["columns"] = [int(c) for c in rng.permutation(n_cols)[:k]]
        if rng.random() < 0.5:
            run["columns"].sort()
    if n_rows and rng.random() < 0.3:
        k = int(rng.integers(1, n_rows + 1))
        run["indices"] = [int(r) for r in rng.permutation(n_rows)[:k]]
    if rng.random() < 0.15:
        run["world_size"] = int(rng.integers(2, 4))
    if rng.random() < 0.1:
        run["drop_last"] = True
    return run


def make_recipe(seed):
    """The structure of file `seed` and the loader runs over it (printable)."""
    rng = np.random.default_rng([seed, 0])
    writer = "anndata" if anndata is not None and rng.random() < 0.3 else "h5py"
    r = {"seed": seed, "writer": writer}
    u = rng.random()
    r["n_rows"] = 0 if u < 0.03 else 1 if u < 0.1 else int(rng.integers(2, 301))
    r["n_cols"] = 1 if rng.random() < 0.05 else int(rng.integers(1, 201))
    r["layout"] = _pick(rng, ["csr", "dense"], [3, 1])
    r["dtype"] = _pick(rng, DATA_DTYPES, DATA_WEIGHTS)
    r["matrix"] = _pick(rng, ["X", "layers/counts", "raw/X"],
                        [6, 2, 1 if writer == "h5py" else 0])
    r["empty_rows"] = float(_pick(rng, [0.0, 0.1, 0.5, 1.0], [4, 3, 1, 0.3]))
    r["density"] = float(_pick(rng, [0.01, 0.05, 0.2, 0.6]))
    r["specials"] = bool(rng.random() < 0.15)  # nan, inf, -0.0, explicit zeros
    r["extremes"] = bool(rng.random() < 0.2)  # dtype min/max, 2^40 and such
    if r["layout"] == "csr":
        r["unsorted"] = bool(rng.random() < 0.3)
        r["duplicates"] = bool(rng.random() < 0.2)
        r["indices_dtype"] = _pick(rng, ["int32", "int64", "uint32", "int16", "uint16"]
                                   + (["int8"] if r["n_cols"] <= 127 else []))
        r["indptr_dtype"] = _pick(rng, ["int32", "int64", "uint32", "uint64"], [3, 3, 1, 1])
        if writer == "anndata":  # scipy wants both index arrays int32 or both int64
            r["indptr_dtype"] = r["indices_dtype"] = _pick(rng, ["int32", "int64"])
    if writer == "h5py":
        r["libver"] = _pick(rng, ["earliest", "latest"])
        if r["layout"] == "csr":
            r["storage"] = {k: _storage(rng, r["libver"], 1) for k in ("data", "indices", "indptr")}
        else:
            r["storage"] = {"X": _storage(rng, r["libver"], 2)}
            if r["storage"]["X"]["layout"] == "chunked" or rng.random() < 0.2:
                r["fillvalue"] = bool(rng.random() < 0.7)  # non-zero fill value
                # fraction of row ranges written; 0: never written at all
                r["written"] = float(_pick(rng, [0.0, 0.3, 0.7, 1.0], [0.5, 2, 2, 1]))
        r["var_index"] = bool(rng.random() < 0.8)
    else:
        r["compression"] = _pick(rng, [None, "gzip", "lzf"])
    r["dup_obs_names"] = bool(rng.random() < 0.1)
    r["obs"] = _obs_recipe(rng, writer)
    r["runs"] = [_run_recipe(rng, r["n_rows"], r["n_cols"]) for _ in range(2)]
    if r["runs"][0]["output"] == r["runs"][1]["output"]:
        r["runs"][1]["output"] = "dense" if r["runs"][0]["output"] == "csr" else "csr"
    return r


# ---------------------------------------------------------------- contents

def _values(rng, dtype, k, r):
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        v = rng.integers(max(info.min, -100), min(info.max, 1000) + 1, size=k).astype(dt)
        if r["extremes"] and k:
            ext = [info.min, info.max] + ([2**40 + 5, 2**53 + 1] if info.bits == 64 else []) + \
                  ([-(2**40) - 3] if info.bits == 64 and info.min < 0 else [])
            pick = rng.random(k) < 0.2
            v[pick] = np.array(ext, dtype=object)[rng.integers(len(ext), size=int(pick.sum()))]
        return v
    if rng.random() < 0.5:
        v = (rng.integers(-4000, 4000, size=k) / 8.0)
    else:
        v = rng.standard_normal(k) * 10.0 ** rng.integers(-3, 4)
    if r["extremes"] and k:
        big = [1e30, -3.4e38, 1e-30, 1.5e-45] if dt.itemsize >= 4 else [65504.0, -6e-8]
        pick = rng.random(k) < 0.2
        v[pick] = rng.choice(big, size=int(pick.sum()))
    if r["specials"] and k:
        pick = rng.random(k) < 0.15
        v[pick] = rng.choice([np.nan, np.inf, -np.inf, -0.0, 0.0], size=int(pick.sum()))
    return v.astype(dt)


def _csr_arrays(rng, r):
    """(data, indices, indptr) as the file will store them."""
    n_rows, n_cols = r["n_rows"], r["n_cols"]
    rows_idx = []
    for _ in range(n_rows):
        if rng.random() < r["empty_rows"]:
            rows_idx.append(np.empty(0, np.int64))
            continue
        k = int(rng.binomial(n_cols, r["density"]))
        cols = np.sort(rng.choice(n_cols, size=k, replace=False)).astype(np.int64)
        if r["duplicates"] and k and rng.random() < 0.5:
            extra = rng.choice(cols, size=int(rng.integers(1, 4)))
            cols = np.sort(np.concatenate([cols, extra]))
        if r["unsorted"] and rng.random() < 0.7:
            cols = rng.permutation(cols)
        rows_idx.append(cols)
    lengths = np.array([len(c) for c in rows_idx], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(r["indptr_dtype"])
    indices = (np.concatenate(rows_idx) if rows_idx else np.empty(0, np.int64)).astype(
        r["indices_dtype"])
    data = _values(rng, r["dtype"], int(lengths.sum()), r)
    if r["specials"] and data.size and np.dtype(r["dtype"]).kind in "iu":
        data[rng.random(data.size) < 0.1] = 0  # explicit zeros
    return data, indices, indptr


def _dense_array(rng, r):
    n_rows, n_cols = r["n_rows"], r["n_cols"]
    mask = rng.random((n_rows, n_cols)) < r["density"]
    mask[rng.random(n_rows) < r["empty_rows"]] = False
    x = np.zeros((n_rows, n_cols), dtype=r["dtype"])
    x[mask] = _values(rng, r["dtype"], int(mask.sum()), r)
    return x


def _obs_values(rng, col, n_rows):
    """(kind, values as written, categories or None)."""
    kind = col["kind"]
    if kind.startswith("cat"):
        n = col["n_categories"]
        if kind == "cat_str":
            stems = ["T", "B cell", "NK", "mono", "\u00e9t\u00e9", ""]
            cats = np.array([f"{_pick(rng, stems)}_{i}" for i in range(n)], dtype=object)
        elif kind == "cat_int":
            cats = np.sort(rng.choice(np.arange(-50, 2**40, 2**33 + 7), size=n, replace=False)
                           if rng.random() < 0.3 else
                           rng.choice(1000, size=n, replace=False)).astype(np.int64)
        else:
            cats = np.sort(rng.choice(4000, size=n, replace=False) / 8.0 - 100.0)
        codes = rng.integers(0, n, size=n_rows)
        if col["missing"]:
            codes[rng.random(n_rows) < 0.2] = -1
        return "categorical", codes, cats
    if kind == "bool":
        return "int", rng.random(n_rows) < 0.5, None
    dt = np.dtype(col["dtype"])
    if kind == "float":
        v = rng.standard_normal(n_rows) * 1000.0
        if col["missing"]:
            v[rng.random(n_rows) < 0.2] = np.nan
            v[rng.random(n_rows) < 0.05] = np.inf
        return "float", v.astype(dt), None
    info = np.iinfo(dt)
    hi = min(info.max, 2**62) if col["big"] else min(info.max, 30000)
    lo = max(info.min, -(2**62)) if col["big"] else max(info.min, -30000)
    v = rng.integers(lo, hi, size=n_rows, endpoint=True, dtype=np.int64 if dt != np.uint64
                     else np.uint64).astype(dt)
    if col["big"] and n_rows:
        special = {8: [2**40 + 5, -(2**40) - 5, 2**31, INT32_MIN - 1], 4: [3_000_000_000, 2**31]}
        for val in special.get(dt.itemsize, []):
            if info.min <= val <= info.max:
                v[int(rng.integers(n_rows))] = val
    return "int", v, None


# ---------------------------------------------------------------- writers

def _dataset(parent, name, data, st, shape=None, dtype=None, fillvalue=None):
    """create_dataset following a storage recipe."""
    shape = data.shape if data is not None else shape
    dtype = data.dtype if data is not None else dtype
    kw = {}
    if fillvalue is not None:
        kw["fillvalue"] = fillvalue
    if st["layout"] == "chunked":
        chunks = tuple(max(1, int(round(f * max(n, 1)))) for f, n in zip(st["chunk"], shape))
        unlimited = st["unlimited"] or any(c > n for c, n in zip(chunks, shape))
        kw["chunks"] = chunks
        if unlimited:
            kw["maxshape"] = (None,) + tuple(shape[1:])
            # a dimension that is not unlimited cannot be smaller than its chunk
            kw["chunks"] = (chunks[0],) + tuple(min(c, n) for c, n in zip(chunks[1:], shape[1:]))
            if any(n == 0 for n in shape[1:]):
                kw.pop("chunks"), kw.pop("maxshape")
        f = st["filters"]
        if "gzip" in f:
            kw["compression"], kw["compression_opts"] = "gzip", st["level"]
        if "lzf" in f:
            kw["compression"] = "lzf"
        if "shuffle" in f:
            kw["shuffle"] = True
        if "fletcher32" in f:
            kw["fletcher32"] = True
        if st.get("early") and not unlimited:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            kw["dcpl"] = dcpl
    if data is not None:
        return parent.create_dataset(name, data=data, **kw)
    return parent.create_dataset(name, shape=shape, dtype=dtype, **kw)


def _str_dataset(parent, name, values, fixed=False):
    if fixed:  # fixed-length UTF-8
        enc = [s.encode() for s in values]
        width = max([len(s) for s in enc] + [1])
        d = parent.create_dataset(name, data=np.array(enc, dtype=h5py.string_dtype("utf-8",
                                                                                   width)))
    else:
        d = parent.create_dataset(name, data=np.array(list(values), dtype=object),
                                  dtype=h5py.string_dtype())
    d.attrs["encoding-type"] = "string-array"
    d.attrs["encoding-version"] = "0.2.0"
    return d


def _enc(obj, kind, version):
    obj.attrs["encoding-type"] = kind
    obj.attrs["encoding-version"] = version


def _write_h5py(path, r, rng, matrix, obs_cols, obs_names):
    with h5py.File(path, "w", libver=r["libver"]) as f:
        _enc(f, "anndata", "0.1.0")
        n_rows, n_cols = r["n_rows"], r["n_cols"]

        def put_matrix(parent, name, m):
            if r["layout"] == "csr":
                data, indices, indptr = m
                g = parent.create_group(name)
                _enc(g, "csr_matrix", "0.1.0")
                g.attrs["shape"] = np.array([n_rows, n_cols], dtype=np.int64)
                for key, arr in (("data", data), ("indices", indices), ("indptr", indptr)):
                    _dataset(g, key, arr, r["storage"][key])
                return
            st = r["storage"]["X"]
            if "written" not in r:
                d = _dataset(parent, name, m, st)
            else:
                fill = None
                if r["fillvalue"]:
                    fill = np.array(_values(rng, r["dtype"], 4, dict(r, specials=False))[0]
                                    or 3, dtype=r["dtype"])
                d = _dataset(parent, name, None, st, shape=m.shape, dtype=m.dtype,
                             fillvalue=fill)
                cuts = np.unique(np.concatenate([[0, n_rows], rng.integers(0, n_rows + 1, 6)]))
                for a, b in zip(cuts[:-1], cuts[1:]):
                    if rng.random() < r["written"]:
                        c0 = int(rng.integers(0, n_cols)) if rng.random() < 0.3 else 0
                        d[a:b, c0:] = m[a:b, c0:]
            _enc(d, "array", "0.2.0")

        # the matrix read, and decoys of another shape where it is not X
        decoy = np.full((n_rows, n_cols), 0.5, np.float32)
        if r["matrix"] == "X":
            put_matrix(f, "X", matrix)
        else:
            d = f.create_dataset("X", data=decoy)
            _enc(d, "array", "0.2.0")
        layers = f.create_group("layers")
        _enc(layers, "dict", "0.1.0")
        if r["matrix"] == "layers/counts":
            put_matrix(layers, "counts", matrix)
        if r["matrix"] == "raw/X":
            raw = f.create_group("raw")
            _enc(raw, "raw", "0.1.0")
            put_matrix(raw, "X", matrix)
            rv = raw.create_group("var")
            _enc(rv, "dataframe", "0.2.0")
            rv.attrs["_index"] = "_index"
            rv.attrs["column-order"] = np.array([], dtype=object).astype(h5py.string_dtype())
            _str_dataset(rv, "_index", [f"g{i}" for i in range(n_cols)])

        obs = f.create_group("obs")
        _enc(obs, "dataframe", "0.2.0")
        obs.attrs["_index"] = "_index"
        obs.attrs["column-order"] = np.array([c["name"] for c in obs_cols],
                                             dtype=h5py.string_dtype())
        _str_dataset(obs, "_index", obs_names)
        for col in obs_cols:
            kind, vals, cats = col["_data"]
            if kind == "categorical":
                g = obs.create_group(col["name"])
                _enc(g, "categorical", "0.2.0")
                g.attrs["ordered"] = False
                d = g.create_dataset("codes", data=vals.astype(col["codes_dtype"]))
                _enc(d, "array", "0.2.0")
                if cats.dtype == object:
                    _str_dataset(g, "categories", cats, fixed=col.get("strings") == "fixed")
                else:
                    d = g.create_dataset("categories", data=cats)
                    _enc(d, "array", "0.2.0")
            else:
                d = obs.create_dataset(col["name"], data=vals)
                _enc(d, "array", "0.2.0")
        var = f.create_group("var")
        _enc(var, "dataframe", "0.2.0")
        var.attrs["column-order"] = np.array([], dtype=h5py.string_dtype())
        if r["var_index"]:
            var.attrs["_index"] = "_index"
            _str_dataset(var, "_index", [f"g{i}" for i in range(n_cols)])
        else:
            var.attrs["_index"] = "gene"
            d = var.create_dataset("gene", data=np.arange(n_cols, dtype=np.int64))
            _enc(d, "array", "0.2.0")
        for key in ("obsm", "obsp", "varm", "varp", "uns"):
            _enc(f.create_group(key), "dict", "0.1.0")


def _write_anndata(path, r, matrix, obs_cols, obs_names):
    n_rows, n_cols = r["n_rows"], r["n_cols"]
    if r["layout"] == "csr":
        data, indices, indptr = matrix
        # keep the arrays exactly as drawn (no sorting, no summing)
        m = sp.csr_matrix((n_rows, n_cols), dtype=data.dtype)
        m.data, m.indices, m.indptr = data, indices, indptr
    else:
        m = matrix
    cols = {}
    for col in obs_cols:
        kind, vals, cats = col["_data"]
        cols[col["name"]] = (pd.Categorical.from_codes(vals, categories=cats)
                             if kind == "categorical" else vals)
    obs = pd.DataFrame(cols, index=pd.Index(obs_names, dtype=object))
    var = pd.DataFrame(index=[f"g{i}" for i in range(n_cols)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if r["matrix"] == "X":
            a = anndata.AnnData(X=m, obs=obs, var=var, dtype=m.dtype)
        else:
            a = anndata.AnnData(X=sp.csr_matrix((n_rows, n_cols), dtype=np.float32), obs=obs,
                                var=var)
            a.layers["counts"] = m
        a.write_h5ad(path, compression=r["compression"])


def write_file(path, r):
    rng = np.random.default_rng([r["seed"], 1])
    matrix = _csr_arrays(rng, r) if r["layout"] == "csr" else _dense_array(rng, r)
    obs_cols = [dict(c, _data=_obs_values(rng, c, r["n_rows"])) for c in r["obs"]]
    names = [f"cell{i}" for i in range(r["n_rows"])]
    if r["dup_obs_names"] and r["n_rows"] > 1:
        names[-1] = names[0]
    if r["writer"] == "h5py":
        _write_h5py(path, r, rng, matrix, obs_cols, names)
    else:
        _write_anndata(path, r, matrix, obs_cols, names)


# ---------------------------------------------------------------- the oracle

def _decode(arr):
    if arr.dtype.kind in "OS":
        return [s.decode() if isinstance(s, bytes) else str(s) for s in arr]
    return arr


def read_oracle(path, r):
    """What the file holds, read back by h5py: per row (column ids, values as
    stored) of a CSR matrix or the dense rows, and each obs column."""
    o = {}
    with h5py.File(path, "r") as f:
        node = f[r["matrix"]]
        if isinstance(node, h5py.Group):
            o["csr"] = True
            o["data"], o["indices"] = node["data"][()], node["indices"][()].astype(np.int64)
            o["indptr"] = node["indptr"][()].astype(np.int64)
            o["shape"] = tuple(int(v) for v in node.attrs["shape"])
        else:
            o["csr"] = False
            o["dense"] = node[()]
            o["shape"] = o["dense"].shape
        o["obs"] = {}
        for col in r["obs"]:
            g = f["obs"][col["name"]]
            if isinstance(g, h5py.Group):
                cats = g["categories"][()]
                o["obs"][col["name"]] = ("categorical", g["codes"][()].astype(np.int64),
                                         _decode(cats))
            elif g.dtype.kind == "f":
                o["obs"][col["name"]] = ("float", g[()].astype(np.float64), None)
            else:
                o["obs"][col["name"]] = ("int", g[()].astype(np.int64), None)
    n_rows, n_cols = o["shape"]
    # float32 of each stored value (what the engine delivers), and the dense
    # rows: repeated column ids add up, as scipy's toarray() does.
    if o["csr"]:
        f32 = o["data"].astype(np.float32)
        o["f32"] = f32
        rows = np.repeat(np.arange(n_rows), np.diff(o["indptr"]))
        dense = np.zeros((n_rows, n_cols), np.float64)
        count = np.zeros((n_rows, n_cols), np.int64)
        mag = np.zeros((n_rows, n_cols), np.float64)
        with np.errstate(invalid="ignore"):
            np.add.at(dense, (rows, o["indices"]), f32.astype(np.float64))
            np.add.at(mag, (rows, o["indices"]), np.abs(f32.astype(np.float64)))
        np.add.at(count, (rows, o["indices"]), 1)
        o["dense64"], o["count"], o["mag"] = dense, count, mag
        o["exact64"] = np.zeros((n_rows, n_cols), np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            np.add.at(o["exact64"], (rows, o["indices"]), o["data"].astype(np.float64))
    else:
        o["f32"] = o["dense"].astype(np.float32)
        o["dense64"] = o["f32"].astype(np.float64)
        o["count"] = np.ones(o["shape"], np.int64)
        o["mag"] = np.abs(o["dense64"])
        o["exact64"] = o["dense"].astype(np.float64)
    return o


def _same(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def check_with_anndata(path, r, o):
    """The file is valid AnnData, and anndata agrees with the h5py oracle."""
    if anndata is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = anndata.read_h5ad(path)
    m = {"X": lambda: a.X, "layers/counts": lambda: a.layers["counts"],
         "raw/X": lambda: a.raw.X}[r["matrix"]]()
    if sp.issparse(m):
        m = sp.csr_matrix((m.data.astype(np.float64), m.indices, m.indptr), shape=m.shape)
        with np.errstate(invalid="ignore", over="ignore"):
            m = m.toarray()
    m = np.asarray(m, np.float64)
    ok = m.shape == o["exact64"].shape
    with np.errstate(invalid="ignore"):
        ok = ok and bool(np.all((m == o["exact64"]) | (np.isnan(m) & np.isnan(o["exact64"])) |
                                (np.abs(m - o["exact64"]) <= 1e-9 * np.abs(m))))
    assert ok, "anndata and h5py disagree on the matrix (generator or oracle bug)"
    for name, (kind, vals, cats) in o["obs"].items():
        s = a.obs[name]
        if kind == "categorical":
            assert np.array_equal(np.asarray(s.cat.codes, np.int64), vals), name
            assert [str(c) if isinstance(c, str) else c for c in s.cat.categories] == \
                [c for c in cats], name
        else:
            assert _same(np.asarray(s, np.float64), vals.astype(np.float64)) or \
                np.array_equal(np.asarray(s).astype(np.int64), vals), name


# ---------------------------------------------------------------- comparing

def expected_csr_row(o, row, col_map):
    """(column ids, float32 values) the engine should deliver for `row`."""
    if o["csr"]:
        a, b = o["indptr"][row], o["indptr"][row + 1]
        idx, val = o["indices"][a:b], o["f32"][a:b]
    else:
        val = o["f32"][row]
        idx = np.arange(val.size)
        keep = val != 0  # a dense row's entries: non-zeros (NaN included), in column order
        idx, val = idx[keep], val[keep]
    if col_map is not None:
        m = col_map[idx]
        idx, val = m[m >= 0], val[m >= 0]
    return idx, val


def expected_dense_rows(o, rows, cols):
    d, c, g = o["dense64"][rows], o["count"][rows], o["mag"][rows]
    if cols is not None:
        d, c, g = d[:, cols], c[:, cols], g[:, cols]
    return d, c, g


def check_dense(got, want, count, mag):
    got = np.asarray(got, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        # the delivered value is float32: a sum beyond its range is +-inf, as
        # scipy's toarray() of float32 data makes it
        want = np.where(count > 1, want.astype(np.float32).astype(np.float64), want)
        tol = np.where(count > 1, 1e-6 * mag * count, 0.0)
        ok = (got == want) | (np.isnan(got) & np.isnan(want)) | (np.abs(got - want) <= tol)
    return ok


def run_loader(path, r, o, run, rank):
    """One epoch of one rank: checks every batch, returns the row ids."""
    n_rows, n_cols = o["shape"]
    kw = {k: v for k, v in run.items() if k not in ("world_size", "indices", "columns")}
    cols = run.get("columns")
    col_map = None
    if cols is not None:
        col_map = np.full(n_cols, -1, np.int64)
        col_map[np.asarray(cols)] = np.arange(len(cols))
    n_out = len(cols) if cols is not None else n_cols
    obs_names = [c["name"] for c in r["obs"]]
    ids = []
    problems = []
    with scfetch.Loader(path, matrix=r["matrix"], obs=obs_names, rank=rank,
                        world_size=run.get("world_size", 1), indices=run.get("indices"),
                        columns=cols, **kw) as loader:
        info = loader.info()
        if (info["n_rows"], info["n_cols"]) != (n_rows, n_cols):
            problems.append(f"info shape {(info['n_rows'], info['n_cols'])} != {(n_rows, n_cols)}")
        if o["csr"] and info["nnz"] != o["indptr"][-1]:
            problems.append(f"info nnz {info['nnz']} != {o['indptr'][-1]}")
        if info["dense"] != (not o["csr"]):
            problems.append(f"info dense {info['dense']}")
        kinds = getattr(loader, "obs_kinds", None)
        for name in obs_names:
            kind, vals, cats = o["obs"][name]
            if kinds is not None and kinds[name] != kind:
                problems.append(f"obs {name!r}: kind {kinds[name]!r}, expected {kind!r}")
            got_cats = loader.obs_categories[name]
            if kind != "categorical":
                if got_cats is not None:
                    problems.append(f"obs {name!r}: categories {got_cats[:5]} for a {kind} column")
            elif isinstance(cats, list):
                if got_cats != cats:
                    problems.append(f"obs {name!r}: categories {got_cats[:5]}... != {cats[:5]}...")
            else:
                try:
                    same = got_cats is not None and len(got_cats) == len(cats) and \
                        all(float(g) == float(c) for g, c in zip(got_cats, cats))
                except ValueError:
                    same = False
                if not same:
                    problems.append(f"obs {name!r}: numeric categories {got_cats[:5]} != "
                                    f"{list(cats[:5])}")
        for b in loader:
            rid = b.row_ids.astype(np.int64).copy()
            ids.append(rid)
            if b.n_rows > run["batch_size"] or b.n_cols != n_out or (
                    run.get("drop_last") and b.n_rows != run["batch_size"]):
                problems.append(f"batch {b.index}: {b.n_rows}x{b.n_cols}, batch_size "
                                f"{run['batch_size']}, {n_out} columns")
            if len(problems) > 20:
                break
            if rid.size and (rid.min() < 0 or rid.max() >= n_rows):
                problems.append(f"batch {b.index}: row ids out of range {rid}")
                continue
            if b.output == "dense":
                want, count, mag = expected_dense_rows(o, rid, cols)
                got = np.asarray(b.data).reshape(b.n_rows, n_out)
                ok = check_dense(got, want, count, mag)
                if not ok.all():
                    i, j = np.argwhere(~ok)[0]
                    problems.append(
                        f"batch {b.index} dense row {rid[i]} col {j}: got {got[i, j]!r}, "
                        f"expected {want[i, j]!r} (stored {count[i, j]} time(s)); "
                        f"{int((~ok).sum())} cells differ")
            else:
                indptr = b.indptr
                for i, row in enumerate(rid):
                    gi = b.indices[indptr[i]:indptr[i + 1]].astype(np.int64)
                    gv = b.data[indptr[i]:indptr[i + 1]]
                    wi, wv = expected_csr_row(o, row, col_map)
                    if not (np.array_equal(gi, wi) and _same(gv, wv)):
                        problems.append(
                            f"batch {b.index} csr row {row}: got ids {gi[:8].tolist()} "
                            f"values {gv[:8].tolist()}, expected ids {wi[:8].tolist()} "
                            f"values {wv[:8].tolist()} (lengths {gi.size} vs {wi.size})")
                        break
            values = getattr(b, "obs_values", None)
            for k, name in enumerate(obs_names):
                kind, vals, cats = o["obs"][name]
                want = vals[rid]
                if values is not None:
                    got = np.asarray(values[name])
                    good = (_same(got, want) if kind == "float"
                            else np.array_equal(got.astype(np.int64), want))
                    if not good or got.shape != want.shape:
                        bad = np.flatnonzero(~((got == want) | (np.isnan(got.astype(float))
                                                                & np.isnan(want.astype(float)))))
                        i = int(bad[0]) if bad.size else 0
                        problems.append(f"batch {b.index} obs_values {name!r} ({kind}, "
                                        f"{got.dtype}) row {rid[i] if rid.size else '-'}: got "
                                        f"{got[i] if got.size else got!r}, expected "
                                        f"{want[i] if want.size else want!r}")
                # the int32 view: codes, integer values when the column fits, else INT32_MIN
                if b.obs is not None:
                    col = b.obs[:, k].astype(np.int64)
                    fits = kind == "int" and (vals.size == 0 or (vals.min() >= INT32_MIN and
                                                                 vals.max() < 2**31))
                    want32 = (want if kind == "categorical" or fits
                              else np.full(want.shape, INT32_MIN, np.int64))
                    if not np.array_equal(col, want32):
                        i = int(np.flatnonzero(col != want32)[0])
                        problems.append(f"batch {b.index} obs {name!r} ({kind}) row {rid[i]}: "
                                        f"got {col[i]}, expected {want32[i]}")
                elif obs_names:
                    problems.append(f"batch {b.index}: obs is None")
    return (np.concatenate(ids) if ids else np.empty(0, np.int64)), problems, info


def _watched(fn, *args):
    """fn(*args) on a daemon thread: a hang in the engine (scf_next or
    scf_close never returning) fails this case instead of the whole run."""
    out = {}

    def body():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # re-raised on the test's thread
            out["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(HANG_S)
    if t.is_alive():
        raise Hang(f"no progress in {HANG_S:.0f} s (a hang in open, scf_next or scf_close); "
                   f"thread left behind")
    if "error" in out:
        raise out["error"]
    return out["value"]


class Hang(Exception):
    pass


def check_run(path, r, o, run):
    n_rows = o["shape"][0]
    problems = []
    per_rank = []
    rows_per_epoch = 0
    for rank in range(run.get("world_size", 1)):
        ids, p, info = _watched(run_loader, path, r, o, run, rank)
        rows_per_epoch += info["rows_per_epoch"]
        per_rank.append(ids)
        problems += [f"rank {rank}: {s}" for s in p]
    got = np.concatenate(per_rank)
    want = np.sort(np.asarray(run["indices"], np.int64)) if "indices" in run else np.arange(n_rows)
    if run.get("drop_last"):
        # the short tail block and each fetch's short last batch are dropped
        if np.unique(got).size != got.size or not np.all(np.isin(got, want)):
            problems.append("drop_last: rows repeated or outside the selection")
        if got.size != rows_per_epoch:
            problems.append(f"drop_last: {got.size} rows delivered, info() said "
                            f"{rows_per_epoch}")
        if got.size < want.size - run["block_size"] - (
                -(-want.size // (run["batch_size"] * run["fetch_factor"]))) * run["batch_size"]:
            problems.append(f"drop_last: only {got.size} rows of {want.size}")
    elif not np.array_equal(np.sort(got), want):
        missing = np.setdiff1d(want, got)
        extra = np.setdiff1d(got, want)
        problems.append(f"rows: {got.size} delivered for {want.size}; missing "
                        f"{missing[:10].tolist()}, extra {extra[:10].tolist()}, repeated "
                        f"{got.size - np.unique(got).size}")
    elif run["strategy"] == "stream" and "indices" not in run and run.get("world_size", 1) == 1 \
            and not np.array_equal(got, want):
        problems.append("stream: rows not in file order")
    return problems


def _known_bug(r):
    for pred, reason in KNOWN_BUGS:
        if pred(r):
            return reason
    return None


def _describe(r):
    return json.dumps(r, sort_keys=True, default=str)


@pytest.mark.parametrize("seed", SEEDS)
def test_differential(seed, tmp_path):
    r = make_recipe(seed)
    path = str(tmp_path / f"d{seed}.h5ad")
    where = (f"seed {seed} (rerun: SCF_DIFF_SEED0={seed} SCF_DIFF_SEEDS=1)\n"
             f"recipe: {_describe(r)}")
    write_file(path, r)
    o = read_oracle(path, r)
    try:
        check_with_anndata(path, r, o)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{where}") from None
    reason = _known_bug(r)
    problems = []
    for n, run in enumerate(r["runs"]):
        try:
            p = check_run(path, r, o, run)
        except scfetch.Error as e:
            p = [f"scfetch.Error {e.errno}: {e.strerror}"]
        except Hang as e:
            p = [str(e)]
        short = {k: (f"<{len(v)} entries>" if isinstance(v, list) else v) for k, v in run.items()}
        problems += [f"run {n} {json.dumps(short)}: {s}" for s in p]
    if reason and problems:
        pytest.xfail(reason)
    assert not problems, "scfetch differs from h5py:\n" + "\n".join(problems[:12]) + \
        f"\n{where}"
    if reason:
        pytest.fail(f"known bug no longer reproduces ({reason}): remove it from KNOWN_BUGS")
