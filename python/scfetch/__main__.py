"""python3 -m scfetch info FILE | bench FILE — the CLI's two read-only
commands, through the binding (so a benchmark here includes its costs)."""
import argparse
import sys
import time

import scfetch


def _ints(text):
    return [int(v) for v in text.split(",") if v]


def _obs_columns(path):
    """obs column names, when h5py is there to list them (the engine reads
    only the columns it is asked for)."""
    try:
        import h5py
    except ImportError:
        return None
    with h5py.File(path, "r") as f:
        if "obs" not in f:
            return []
        index = f["obs"].attrs.get("_index", "_index")
        return [k for k in f["obs"].keys() if k not in (index, "__categories")]


def _describe(path, matrix, columns):
    """{column: categories, None (integer) or an Error's sentence}."""
    try:
        with scfetch.Loader(path, matrix=matrix, obs=columns, threads=1) as loader:
            return loader.obs_categories
    except scfetch.Error as e:
        if len(columns) == 1:
            return {columns[0]: e.strerror}
    out = {}  # one column the engine cannot read must not hide the others
    for c in columns:
        out.update(_describe(path, matrix, [c]))
    return out


def info(a):
    with scfetch.Loader(a.file, matrix=a.matrix, threads=1) as loader:
        for k, v in loader.info().items():
            print(f"{k:18} {v}")
    columns = a.obs or _obs_columns(a.file)
    if columns is None:
        print("obs                (install h5py to list the columns, or name them with --obs)")
        return 0
    for name, cats in (_describe(a.file, a.matrix, columns) if columns else {}).items():
        if isinstance(cats, str):
            kind = f"not delivered: {cats}"
        elif cats is None:
            kind = "integer"
        else:
            kind = f"{len(cats)} categories: " + ", ".join(cats[:8]) + \
                (", ..." if len(cats) > 8 else "")
        print(f"obs/{name:14} {kind}")
    return 0


def bench(a):
    for block in a.block:
        for fetch in a.fetch:
            with scfetch.Loader(a.file, matrix=a.matrix, batch_size=a.batch, block_size=block,
                                fetch_factor=fetch, strategy=a.strategy, seed=a.seed,
                                output="dense" if a.dense else "csr",
                                fetches_in_flight=a.inflight, queue_depth=a.qd,
                                threads=a.threads, direct=not a.buffered) as loader:
                rows = 0
                t0 = time.perf_counter()
                for _ in range(a.epochs):
                    for b in loader:
                        rows += b.n_rows
                dt = time.perf_counter() - t0
                s = loader.stats()
            print(f"strategy {a.strategy}, block {block}, fetch {fetch}, batch {a.batch}: "
                  f"{rows / dt:,.0f} cells/s, {s['bytes_read'] / dt / 1e6:,.1f} MB/s, "
                  f"{rows} cells in {dt:.2f} s")
            print("  " + ", ".join(f"{k}={v}" for k, v in s.items()))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m scfetch", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("info", help="shape of the matrix and its obs columns")
    i.add_argument("file")
    i.add_argument("--matrix", default="X", help="X, layers/NAME or raw/X")
    i.add_argument("--obs", type=lambda s: s.split(","), help="obs columns (default: all)")
    b = sub.add_parser("bench", help="stream epochs and print cells/s and I/O statistics")
    b.add_argument("file")
    b.add_argument("--matrix", default="X")
    b.add_argument("--strategy", choices=["block", "stream"], default="block")
    b.add_argument("--batch", type=int, default=64)
    b.add_argument("--block", type=_ints, default=[16], help="block sizes, comma-separated")
    b.add_argument("--fetch", type=_ints, default=[16], help="fetch factors, comma-separated")
    b.add_argument("--epochs", type=int, default=1)
    b.add_argument("--inflight", type=int)
    b.add_argument("--qd", type=int)
    b.add_argument("--threads", type=int)
    b.add_argument("--buffered", action="store_true", help="page cache instead of O_DIRECT")
    b.add_argument("--dense", action="store_true")
    b.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        return info(a) if a.cmd == "info" else bench(a)
    except scfetch.Error as e:
        print(f"scfetch: {e.strerror}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
