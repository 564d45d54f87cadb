#!/usr/bin/python3
"""perf/report -- turn scf_suite's JSON lines into CSV, the targets table and
the data files the gnuplot scripts (perf/plots/*.gp) draw.

usage: report.py DIR      reads DIR/suite.jsonl (and DIR/meta.json), writes
                          DIR/runs.csv, DIR/summary.csv, DIR/table.md and
                          DIR/{heat,tradeoff,sweep_*}.dat
Standard library only (Debian's python3).
"""
import csv
import json
import math
import os
import re
import sys

RUN_COLS = ["point", "runner", "ok", "strategy", "block", "fetch", "batch", "inflight", "qd",
            "threads", "cells", "secs", "cells_per_s", "mb_s", "mb_s_read", "mb_s_dev",
            "reads", "read_mean_kib", "amp", "amp_dev", "depth", "wait_first_ms",
            "wait_p50_ms", "wait_p99_ms", "wait_p999_ms", "wait_max_ms", "cpu_s",
            "cpu_s_per_gb", "maxrss_mb", "entropy", "entropy_random", "entropy_ratio",
            "direct", "pinned", "cache_dropped", "first_fetch_hash", "error"]


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows


def num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def fmt(v, spec="{:.2f}"):
    v = num(v)
    return "–" if v is None else spec.format(v)


def write_csv(path, rows, cols):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])


def primary(r):
    v = num(r.get("cells_per_s"))
    return v if v is not None else (num(r.get("mb_s_read")) or 0.0)


def by_point(rows):
    """point -> runner -> the run to show: a repeated runner's median round."""
    groups = {}
    for r in rows:
        groups.setdefault(r["point"], {}).setdefault(r["runner"], []).append(r)
    pts = {}
    for point, runners in groups.items():
        pts[point] = {}
        for name, runs in runners.items():
            ok = [r for r in runs if r.get("ok") is not False] or runs
            ok.sort(key=primary)
            pts[point][name] = ok[(len(ok) - 1) // 2]
    return pts


def repeats(pts, prefix):
    """Points t-<name>-r1, -r2, ... in order."""
    out = []
    for name in pts:
        m = re.fullmatch(re.escape(prefix) + r"-r(\d+)", name)
        if m:
            out.append((int(m.group(1)), pts[name]))
    return [p for _, p in sorted(out, key=lambda t: t[0])]


def targets_table(pts):
    """(target, measured as, [values], goal text, predicate); a value is the
    median over the point's rounds, with the rounds' range beside it."""
    def s(prefix, key, runner="summary"):
        out = []
        for p in repeats(pts, prefix):
            r = p.get(runner, {})
            v, arr = r.get(key), r.get(key + "_all")
            arr = [x for x in (arr or []) if num(x) is not None]
            out.append((v, (min(arr), max(arr)) if len(arr) > 1 else None))
        return out

    rss = {}
    for pre in ("t-stream", "t-b64", "t-b1", "t-b16"):
        rss[pre] = s(pre, "rss_ratio")
    lines = [
        ("Streaming >= 85% of fio sequential", "read MB/s / fio seq (1 MiB, same depth)",
         s("t-stream", "ratio_fio_seq"), ">= 0.85", lambda v: v >= 0.85),
        ("block_size 64 >= 85% of fio sequential", "read MB/s / fio seq (block 64, fetch 16)",
         s("t-b64", "ratio_fio_seq"), ">= 0.85", lambda v: v >= 0.85),
        ("true random >= 70% of fio, same sizes and depth",
         "read MB/s / fio replaying the planner's reads (block 1, fetch 64)",
         s("t-b1", "ratio_fio_replay"), ">= 0.70", lambda v: v >= 0.70),
        ("", "read MB/s / fio randread at the planner's mean size",
         s("t-b1", "ratio_fio_rand"), ">= 0.70", lambda v: v >= 0.70),
        (">= 20x the HDF5-library path (block 16, fetch 16)",
         "cells/s / C H5Dread per row slice (anndata's calls, no Python)",
         s("t-b16", "x_hdf5"), ">= 20", lambda v: v >= 20),
        ("", "cells/s / anndata 0.8 + h5py X[sorted_rows]",
         s("t-b16", "x_anndata"), ">= 20", lambda v: v >= 20),
        (">= 3x the synchronous pread loop (block 1)", "cells/s / O_DIRECT pread of the same reads",
         s("t-b1", "x_pread"), ">= 3", lambda v: v >= 3),
        ("consumer wait p99 < 1 ms at 50% of capacity", "paced consumer, p99 wait (ms)",
         s("t-paced", "paced_wait_p99_ms"), "< 1 ms", lambda v: v < 1.0),
        ("", "paced consumer, p99.9 wait (ms)", s("t-paced", "paced_wait_p999_ms"),
         "(info)", None),
        ("", "paced, after the first 3 fetches (warm-up): p99.9 (ms)",
         s("t-paced", "paced_steady_wait_p999_ms"), "(info)", None),
        ("", "paced, after the warm-up: longest wait (ms)",
         s("t-paced", "paced_steady_wait_max_ms"), "(info)", None),
    ]
    for pre, label in (("t-b16", "block 16, fetch 16"), ("t-b1", "block 1, fetch 64"),
                       ("t-stream", "Streaming"), ("t-b64", "block 64, fetch 16")):
        lines.append(("peak RSS <= indptr + 2 x in-flight x fetch + 64 MiB" if pre == "t-b16" else "",
                      "RSS / budget, " + label, rss[pre], "<= 1.00", lambda v: v <= 1.0))
    return lines


def table_md(pts, meta):
    out = []
    lines = targets_table(pts)
    n = max([len(v) for _, _, v, _, _ in lines] + [1])
    out.append("Each value is the median over the point's rounds (range in brackets); "
               "scfetch is held against the mean of the fio runs just before and after it.")
    out.append("")
    out.append("| target | measured as | " + " | ".join("run %d" % (i + 1) for i in range(n)) +
               " | goal | verdict |")
    out.append("|---|---|" + "---:|" * n + "---|---|")
    for target, what, vals, goal, ok in lines:
        cells = [fmt(v) + (" (%s–%s)" % (fmt(rg[0]), fmt(rg[1])) if rg else "")
                 for v, rg in vals] + ["–"] * (n - len(vals))
        good = [ok(v) for v, _ in vals if num(v) is not None] if ok else []
        verdict = ("" if not ok or not good else "met" if all(good) else
                   "missed" if not any(good) else "mixed")
        out.append("| %s | %s | %s | %s | %s |" % (target, what, " | ".join(cells), goal, verdict))
    for prefix, title in (("t-b16", "block 16, fetch 16"), ("t-b1", "block 1 (true random), fetch 64"),
                          ("t-stream", "Streaming"), ("t-b64", "block 64, fetch 16")):
        reps = repeats(pts, prefix)
        if not reps:
            continue
        out.append("")
        out.append("Every runner at %s, run 1 (%s):" % (title, prefix + "-r1"))
        out.append("")
        out.append(runner_table(reps[0]))
    grid = grid_tables(pts)
    if grid:
        out.append("")
        out.append(grid)
    sw = sweep_tables(pts)
    if sw:
        out.append("")
        out.append(sw)
    return "\n".join(out) + "\n"


def device_limit(p):
    """The fio figure a point's runners are held against: the replay of the
    planner's own reads when it ran, else sequential."""
    for k in ("fio-replay", "fio-seq"):
        r = p.get(k)
        if r and r.get("ok"):
            return k, r.get("mb_s_read")
    return None, None


def runner_table(p):
    dev_name, dev = device_limit(p)
    rows = ["| runner | cells/s | MB/s delivered | MB/s read | / %s | wait p50 / p99 / p99.9 (ms) "
            "| CPU s/GB | peak RSS (MB) | read amp. | entropy / random |" % (dev_name or "device"),
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    order = ["scfetch", "paced", "pread", "hdf5", "anndata", "fio-replay", "fio-rand", "fio-seq"]
    for name in order:
        r = p.get(name)
        if not r:
            continue
        if not r.get("ok"):
            rows.append("| %s | failed: %s |" % (name, r.get("error", "")))
            continue
        fio = name.startswith("fio")
        amp = r.get("amp_dev") if name in ("hdf5", "anndata") else r.get("amp")
        ratio = (num(r.get("mb_s_read")) / dev) if num(r.get("mb_s_read")) and num(dev) else None
        rows.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, fmt(r.get("cells_per_s"), "{:,.0f}"), fmt(r.get("mb_s"), "{:,.0f}"),
            fmt(r.get("mb_s_read"), "{:,.0f}"), fmt(ratio),
            "–" if fio else "%s / %s / %s" % (fmt(r.get("wait_p50_ms"), "{:.3f}"),
                                              fmt(r.get("wait_p99_ms"), "{:.2f}"),
                                              fmt(r.get("wait_p999_ms"), "{:.2f}")),
            fmt(r.get("cpu_s_per_gb")), fmt(r.get("maxrss_mb"), "{:,.0f}"),
            fmt(amp), fmt(r.get("entropy_ratio"), "{:.3f}")))
    return "\n".join(rows)


def grid_points(pts):
    g = {}
    for name, p in pts.items():
        m = re.fullmatch(r"g-b(\d+)-f(\d+)", name)
        if m and p.get("scfetch", {}).get("ok"):
            g[(int(m.group(1)), int(m.group(2)))] = p["scfetch"]
    return g


def grid_tables(pts):
    g = grid_points(pts)
    if not g:
        return ""
    blocks = sorted({b for b, _ in g})
    fetches = sorted({f for _, f in g})
    out = ["scfetch over the block_size x fetch_factor grid: cells/s (thousands) | "
           "batch entropy / truly random batches:", "",
           "| block \\ fetch | " + " | ".join(str(f) for f in fetches) + " |",
           "|---|" + "---:|" * len(fetches)]
    for b in blocks:
        cells = []
        for f in fetches:
            r = g.get((b, f))
            cells.append("–" if not r else "%s \\| %s" % (fmt(r.get("cells_per_s", 0) / 1e3, "{:.0f}"),
                                                      fmt(r.get("entropy_ratio"), "{:.2f}")))
        out.append("| %d | %s |" % (b, " | ".join(cells)))
    st = pts.get("g-stream", {}).get("scfetch")
    if st and st.get("ok"):
        out.append("")
        out.append("Streaming: %s cells/s, entropy / random %s." % (
            fmt(st.get("cells_per_s"), "{:,.0f}"), fmt(st.get("entropy_ratio"), "{:.2f}")))
    return "\n".join(out)


def sweeps(pts):
    sw = {}
    for name, p in pts.items():
        m = re.fullmatch(r"s-(qd|inflight|threads)(\d+)-b(\d+)-f(\d+)", name)
        if m and p.get("scfetch", {}).get("ok"):
            key = (m.group(1), int(m.group(3)), int(m.group(4)))
            sw.setdefault(key, []).append((int(m.group(2)), p["scfetch"]))
    for k in sw:
        sw[k].sort(key=lambda t: t[0])
    return sw


def sweep_tables(pts):
    sw = sweeps(pts)
    if not sw:
        return ""
    out = []
    for (kind, b, f), vals in sorted(sw.items()):
        out.append("Sweep of %s at block %d, fetch %d:" % (kind, b, f))
        out.append("")
        out.append("| %s | cells/s | MB/s read | wait p99 (ms) | CPU s/GB | peak RSS (MB) |" % kind)
        out.append("|---:|---:|---:|---:|---:|---:|")
        for v, r in vals:
            out.append("| %d | %s | %s | %s | %s | %s |" % (
                v, fmt(r.get("cells_per_s"), "{:,.0f}"), fmt(r.get("mb_s_read"), "{:,.0f}"),
                fmt(r.get("wait_p99_ms")), fmt(r.get("cpu_s_per_gb")),
                fmt(r.get("maxrss_mb"), "{:,.0f}")))
        out.append("")
    return "\n".join(out)


def write_dat(d, pts):
    g = grid_points(pts)
    if g:
        blocks = sorted({b for b, _ in g})
        fetches = sorted({f for _, f in g})
        with open(os.path.join(d, "heat.dat"), "w") as f:
            f.write("# fetch_index block_index kcells_per_s fetch block entropy_ratio\n")
            for bi, b in enumerate(blocks):
                for fi, fe in enumerate(fetches):
                    r = g.get((b, fe))
                    v = r.get("cells_per_s") / 1e3 if r else float("nan")
                    e = r.get("entropy_ratio") if r else float("nan")
                    f.write("%d %d %.3f %d %d %s\n" % (fi, bi, v, fe, b, e))
                f.write("\n")
        with open(os.path.join(d, "tradeoff.dat"), "w") as f:
            f.write("# entropy_ratio kcells_per_s block fetch\n")
            for (b, fe), r in sorted(g.items()):
                f.write("%s %.3f %d %d\n" % (r.get("entropy_ratio"), r.get("cells_per_s") / 1e3, b, fe))
            st = pts.get("g-stream", {}).get("scfetch")
            if st and st.get("ok"):
                f.write("\n\n%s %.3f stream 0\n" % (st.get("entropy_ratio"), st.get("cells_per_s") / 1e3))
    for (kind, b, fe), vals in sweeps(pts).items():
        with open(os.path.join(d, "sweep_%s_b%d_f%d.dat" % (kind, b, fe)), "w") as f:
            f.write("# %s kcells_per_s mb_s_read wait_p99_ms\n" % kind)
            for v, r in vals:
                f.write("%d %.3f %s %s\n" % (v, r.get("cells_per_s") / 1e3, r.get("mb_s_read"),
                                             r.get("wait_p99_ms")))


def main():
    d = sys.argv[1]
    rows = load(os.path.join(d, "suite.jsonl"))
    meta = {}
    if os.path.exists(os.path.join(d, "meta.json")):
        with open(os.path.join(d, "meta.json")) as f:
            meta = json.load(f)
    runs = [r for r in rows if r.get("runner") != "summary"]
    sums = [r for r in rows if r.get("runner") == "summary"]
    write_csv(os.path.join(d, "runs.csv"), runs, RUN_COLS)
    scols = []
    for r in sums:
        for k in r:
            if k not in scols:
                scols.append(k)
    write_csv(os.path.join(d, "summary.csv"), sums, scols)
    pts = by_point(rows)
    with open(os.path.join(d, "table.md"), "w") as f:
        if meta:
            f.write("Measured %s on %s (%d CPUs, %.0f GiB, kernel %s, %s), commit %s, file %s "
                    "(%.2f GB).\n\n" % (meta.get("date"), "this machine", meta.get("cpus", 0),
                                        meta.get("mem_gb", 0), meta.get("kernel"), meta.get("fio"),
                                        meta.get("commit"), os.path.basename(meta.get("file", "")),
                                        meta.get("file_bytes", 0) / 1e9))
        f.write(table_md(pts, meta))
    write_dat(d, pts)
    bad = [r for r in rows if r.get("ok") is False]
    for r in bad:
        print("report: %s/%s failed: %s" % (r["point"], r["runner"], r.get("error")), file=sys.stderr)
    print("report: %d runs, %d points -> %s/table.md" % (len(runs), len(sums), d), file=sys.stderr)


if __name__ == "__main__":
    main()
