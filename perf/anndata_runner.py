#!/usr/bin/python3
"""perf/anndata_runner -- the HDF5 path as a Python loader really takes it.

Reads the fetch sequence that scf_suite's plan wrote (per fetch: u64 n,
u64 n_deliver, n sorted row ids) and, for each fetch, does what scDataset
does with a backed AnnData: ``X[sorted_rows]`` on anndata 0.8's
SparseDataset, which reloads indptr and reads every row's ``data`` slice,
then every row's ``indices`` slice, through h5py (one H5Dread per slice).
Page cache: dropped at the start; each fetch starts with the file's pages
evicted (POSIX_FADV_DONTNEED, not timed), as for a file much larger than RAM.

usage: anndata_runner.py FILE ROWS BATCH TIME_LIMIT MATRIX [WAITS_OUT]
Prints one JSON object (keys as scf_suite's run_res) on stdout.
Uses Debian's python3-anndata / python3-h5py; run with /usr/bin/python3.
"""
import json
import math
import os
import resource
import struct
import sys
import time

import anndata
import h5py
import numpy as np


def proc_io():
    out = {}
    with open("/proc/self/io") as f:
        for line in f:
            k, v = line.split(":")
            out[k] = int(v)
    return out


def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return 1
    except OSError:
        return 0


def fetches(path):
    with open(path, "rb") as f:
        while True:
            hd = f.read(16)
            if len(hd) < 16:
                return
            n, n_deliver = struct.unpack("<QQ", hd)
            rows = np.frombuffer(f.read(8 * n), dtype="<u8").astype(np.int64)
            yield rows, n_deliver


def pct(sorted_w, p):
    if not sorted_w:
        return 0.0
    k = int(math.ceil(p * len(sorted_w)))
    return sorted_w[max(k, 1) - 1]


def main():
    path, rows_path, batch, limit, matrix = sys.argv[1:6]
    waits_out = sys.argv[6] if len(sys.argv) > 6 else None
    batch, limit = int(batch), float(limit)
    res = {"ok": 0, "err": ""}
    adata = anndata.read_h5ad(path, backed="r")
    if matrix == "X":
        X = adata.X
    else:
        X = anndata._core.sparse_dataset.SparseDataset(adata.file[matrix])
    if not isinstance(X, anndata._core.sparse_dataset.SparseDataset):
        res["err"] = "%s is not a backed sparse matrix" % matrix
        print(json.dumps(res, separators=(",", " : ")))
        return
    entry = X.group["data"].dtype.itemsize + X.group["indices"].dtype.itemsize
    res["cache_dropped"] = drop_caches()
    evict = os.open(path, os.O_RDONLY)
    waits, cells, nbytes, n_fetches, paused = [], 0, 0, 0, 0.0
    io0 = proc_io()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for rows, n_deliver in fetches(rows_path):
        e0 = time.perf_counter()
        if n_fetches:
            os.posix_fadvise(evict, 0, 0, os.POSIX_FADV_DONTNEED)
        f0 = time.perf_counter()
        paused += f0 - e0
        m = X[rows]  # scDataset's fetch: one sorted X[idx] per fetch
        ft = time.perf_counter() - f0
        for j in range(0, n_deliver, batch):
            waits.append(ft if j == 0 else 0.0)
        cells += n_deliver
        nbytes += m.nnz * entry
        n_fetches += 1
        if time.perf_counter() - t0 - paused > limit:
            break
    secs = time.perf_counter() - t0 - paused
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    io1 = proc_io()
    os.close(evict)
    first = waits[0] if waits else 0.0
    rest = sorted(waits[1:])
    res.update({
        "ok": 1, "secs": secs,
        "cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), "cells": cells, "batches": len(waits), "fetches": n_fetches,
        "bytes_delivered": nbytes, "bytes_read": io1["rchar"] - io0["rchar"],
        "reads": io1["syscr"] - io0["syscr"],
        "dev_read_bytes": io1["read_bytes"] - io0["read_bytes"],
        "first_wait": first, "wait_p50": pct(rest, 0.5), "wait_p99": pct(rest, 0.99),
        "wait_p999": pct(rest, 0.999), "wait_max": rest[-1] if rest else 0.0,
        "versions": "anndata %s h5py %s" % (anndata.__version__, h5py.__version__),
    })
    if waits_out and rest:
        with open(waits_out, "w") as f:
            f.write("# wait_us cumulative_fraction (%d batches after the first)\n" % len(rest))
            for q in range(1, 1001):
                f.write("%.3f %.4f\n" % (pct(rest, q / 1000) * 1e6, q / 1000))
    print(json.dumps(res, separators=(",", " : ")))


if __name__ == "__main__":
    main()
