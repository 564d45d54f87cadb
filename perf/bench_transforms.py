#!/usr/bin/python3
"""perf/bench_transforms — library-size normalisation and log1p done in the
engine's decode threads (normalize_total=, log1p=) against the same work in
torch on the consumer's thread, as a training loop would write it, on one
file in one run (alternating, so both see the same disk and page cache).

    PYTHONPATH=build/python perf/bench_transforms.py FILE [--cells N] [--rounds R]

Each pass reads N cells (block 16, fetch 16, batch 64) and hands the consumer
a torch CSR tensor of normalised, log1p'd values; the torch pass does
  x = x / row_sum * 1e4; x = log1p(x)
on the values of each batch (crow/col untouched), the engine pass nothing.
Prints cells/s of each and their ratio, and checks one batch of each agree.
"""
import argparse
import sys
import time

import numpy as np
import torch

import scfetch

COMMON = dict(batch_size=64, block_size=16, fetch_factor=16, seed=3)


def torch_transform(b):
    """scanpy's normalize_total(target_sum=1e4) then log1p, on a CSR batch."""
    crow = torch.from_numpy(np.asarray(b.indptr))
    vals = torch.from_numpy(np.asarray(b.data)).to(torch.float32)
    rows = torch.repeat_interleave(torch.arange(b.n_rows), crow[1:] - crow[:-1])
    sums = torch.zeros(b.n_rows, dtype=torch.float64).index_add_(0, rows, vals.double())
    scale = torch.where(sums > 0, 1e4 / sums, torch.ones_like(sums)).float()
    return torch.log1p(vals * scale[rows])


def engine_values(b):
    return torch.from_numpy(np.asarray(b.data))


def run(path, cells, engine):
    kw = dict(normalize_total=1e4, log1p=True) if engine else {}
    t0 = time.perf_counter()
    n = 0
    first = None
    with scfetch.Loader(path, **COMMON, **kw) as ld:
        while n < cells:
            for b in ld:
                v = engine_values(b) if engine else torch_transform(b)
                if first is None:
                    first = (b.row_ids.copy(), v.clone())
                n += b.n_rows
                b.release()
                if n >= cells:
                    break
    return n / (time.perf_counter() - t0), first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--cells", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)  # the consumer thread, as in a DataLoader worker
    eng, tch = [], []
    for _ in range(a.rounds):
        r, fe = run(a.file, a.cells, True)
        eng.append(r)
        r, ft = run(a.file, a.cells, False)
        tch.append(r)
    assert np.array_equal(fe[0], ft[0]), "both passes see the same first batch"
    assert torch.allclose(fe[1], ft[1], rtol=1e-5, atol=1e-5), "engine and torch disagree"
    e, t = float(np.median(eng)), float(np.median(tch))
    print(f"bench_transforms: {a.file}, {a.cells} cells per pass, {a.rounds} rounds, medians")
    print(f"  engine (decode threads): {e:10.0f} cells/s")
    print(f"  torch (consumer thread): {t:10.0f} cells/s")
    print(f"  ratio engine / torch:    {e / t:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
