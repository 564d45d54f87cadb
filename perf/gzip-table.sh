#!/bin/bash
# perf/gzip-table.sh — the gzip table of docs/performance.md: scfetch on the
# perf suite's gzip variant of its standard file (anndata's layout: X/data
# and X/indices deflate-compressed in h5py's auto chunks), at the settings
# the issue names, for up to two builds and with partial inflate, alternating
# runs so that every column sees the same disk, medians of --repeat rounds.
#
#   perf/gzip-table.sh FILE [--base DIR] [--build DIR] [--repeat N] [--out DIR]
#
# FILE: e.g. `build/scf_gen demo-data/gzip-200000.h5ad --cells 200000
#   --deflate 4 --chunk auto` (62,710 genes, median 2,000 non-zeros per cell).
# --base: a build of an earlier commit (its scf_suite), for before/after.
# Cells per run: 200,000 (one epoch), 50,000 at block 1 (it is slow).
# Variants: base (the --base build), new, new+partial (--partial-inflate),
# new+cache (a 4 GiB decoded-chunk cache: the whole decoded file of the
# standard recipe fits).  Prints a markdown table of cells/s (also written to
# DIR/table.md) and keeps the suite's JSON lines in DIR/table.jsonl
# (DIR: perf/results/gzip).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
file=${1:?usage: perf/gzip-table.sh FILE [--base DIR] [--build DIR] [--repeat N]}
shift
base=""
build="$root/build"
repeat=2
outdir="$here/results/gzip"
while [ $# -gt 0 ]; do
	case "$1" in
	--base) base=$2; shift ;;
	--build) build=$2; shift ;;
	--repeat) repeat=$2; shift ;;
	--out) outdir=$2; shift ;;
	*) echo "gzip-table: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
points=("1 64 50000 block" "16 16 200000 block" "16 64 200000 block" "256 16 200000 block"
	"16 16 200000 stream")
variants=("new" "new+partial" "new+cache")
[ -n "$base" ] && variants=("base" "${variants[@]}")
mkdir -p "$outdir"
out="$outdir/table.jsonl"
: > "$out"
for p in "${points[@]}"; do
	set -- $p
	for ((r = 0; r < repeat; r++)); do
		for v in "${variants[@]}"; do
			suite="$build/scf_suite"; extra=()
			[ "$v" = base ] && suite="$base/scf_suite"
			[ "$v" = new+partial ] && extra=(--partial-inflate)
			[ "$v" = new+cache ] && extra=(--chunk-cache 4096)
			"$suite" "$file" --runners scfetch --strategy "$4" --block "$1" --fetch "$2" \
				--cells "$3" --tag "$v/$4/$1/$2" "${extra[@]}" 2>/dev/null |
				grep '"runner":"scfetch"' >> "$out" || echo "gzip-table: $v $p failed" >&2
		done
	done
done
/usr/bin/python3 - "$out" "${variants[@]}" <<'EOF' | tee "$outdir/table.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
variants = sys.argv[2:]
by = {}
for d in rows:
    v, strat, b, f = d["point"].split("/")
    key = ("streaming" if strat == "stream" else f"{b}, {f}")
    by.setdefault(key, {}).setdefault(v, []).append(d)
print("| block, fetch | " + " | ".join(f"{v} cells/s" for v in variants) +
      " | CPU s/GB (new) |")
print("|---|" + "---:|" * len(variants) + "---:|")
for key, vs in by.items():
    cells = []
    for v in variants:
        xs = [d["cells_per_s"] for d in vs.get(v, []) if d.get("ok")]
        cells.append(f"{statistics.median(xs):,.0f}" if xs else "—")
    last = [d["cpu_s_per_gb"] for d in vs.get("new", []) if d.get("ok")]
    cpu = f"{statistics.median(last):.2f}" if last else "—"
    print(f"| {key} | " + " | ".join(cells) + f" | {cpu} |")
EOF
