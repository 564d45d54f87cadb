#!/bin/bash
# perf/run-suite.sh — the performance suite: target points (every runner,
# repeated), the block_size x fetch_factor grid, and sweeps of queue depth,
# fetches in flight and decode threads; then CSV, the targets table and
# gnuplot PNGs (perf/report.py, perf/plots/*.gp).
#
#   perf/run-suite.sh [--quick | --full] [--file F] [--label COL] [--build DIR]
#                     [--out DIR] [--repeat N] [--parts targets,grid,sweeps] [--report-only]
#
# --label: the categorical obs column whose batch entropy the points report
#   (default cell_line, the demo file's).  Any failed point makes the script
#   exit 1 after the report, naming the points; a plot whose data is missing
#   is not drawn (no empty PNGs).
# Target points run scf_suite --repeat: rounds of fio, scfetch and pread, so
# that every ratio to the (drifting) disk comes from neighbouring seconds.
# --quick (default): ~50k cells per point, 2 rounds per target point, a 6 x 5
#   grid, short sweeps, targets once; about 2-3 minutes on a 2-core VM.
# --full: 200k cells per point (one epoch of the demo file), 3 rounds, the
#   6 x 6 grid (fetch_factor up to 1024: ~12 GB of buffers at that point), the
#   long sweeps, the targets twice (run 1, run 2); about 15-20 minutes.
# Root is needed for the HDF5 and anndata runners (they drop the page cache).
# Output: DIR/suite.jsonl (one JSON line per runner per point), DIR/runs.csv,
# DIR/summary.csv, DIR/table.md, DIR/*.png, DIR/waits-*.dat.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
mode=quick
file="$root/demo-data/synthetic-200000.h5ad"
label=cell_line
failed=()
build="$root/build-perf"
out=""
repeat=""
parts="targets,grid,sweeps"
report_only=0

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) mode=quick ;;
	--full) mode=full ;;
	--file) file=$2; shift ;;
	--label) label=$2; shift ;;
	--build) build=$2; shift ;;
	--out) out=$2; shift ;;
	--repeat) repeat=$2; shift ;;
	--parts) parts=$2; shift ;;
	--report-only) report_only=1 ;;
	-h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run-suite: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
out=${out:-$here/results/$mode}
suite="$build/scf_suite"
mkdir -p "$out"

if [ "$mode" = full ]; then
	cells=200000; hdf5_time=10; fio_time=5; repeat=${repeat:-2}; rounds=3
	grid_blocks="1 4 16 64 256 1024"; grid_fetches="1 4 16 64 256 1024"
	qds="4 8 16 32 64 128 256 512"; inflights="1 2 3 4 8 16"; threads="1 2 4"
	sweep_points="1:64 16:16"; paced_cells=640000
else
	cells=50000; hdf5_time=5; fio_time=2; repeat=${repeat:-1}; rounds=2
	grid_blocks="1 4 16 64 256 1024"; grid_fetches="1 4 16 64 256"
	qds="8 32 128"; inflights="1 3 8"; threads="1 2"
	sweep_points="1:64"; paced_cells=128000
fi

run() { # tag, then scf_suite options
	local tag=$1; shift
	if ! nice -n 0 "$suite" "$file" --tag "$tag" --out "$out" --obs "$label" "$@" \
		>> "$out/suite.jsonl" 2> >(sed "s/^/  /" >&2); then
		echo "run-suite: point $tag failed" >&2
		failed+=("$tag")
	fi
}

# scfetch's clock starts once every fetch slot (in flight + 2) has been filled
# once: first touches of GB-sized page-locked buffers are a start-up cost.
warm() { echo "--warmup $(( ($1 + 2) * 64 * $2 ))"; }

has() { case ",$parts," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

if [ "$report_only" = 0 ]; then
	[ -x "$suite" ] || { echo "run-suite: build first: cmake -S . -B build-perf -DCMAKE_BUILD_TYPE=Release && make -C build-perf scf_suite" >&2; exit 1; }
	[ -r "$file" ] || { echo "run-suite: $file missing (scfetch demo, or perf/gen)" >&2; exit 1; }
	# A label the file lacks would fail every point: say so once, up front.
	/usr/bin/python3 - "$file" "$label" <<-'PY' || exit 1
	import sys
	try:
	    import h5py
	except ImportError:
	    sys.exit(0)  # the points will say it
	with h5py.File(sys.argv[1], "r") as f:
	    obs = [k for k in f["obs"] if not k.startswith("_")] if "obs" in f else []
	if sys.argv[2] not in obs:
	    sys.exit(f"run-suite: {sys.argv[1]} has no obs column {sys.argv[2]!r} "
	             f"(--label COL; its obs columns: {', '.join(obs) or 'none'})")
	PY
	command -v fio > /dev/null || { echo "run-suite: fio is needed (apt-get install fio)" >&2; exit 1; }
	[ "$(id -u)" = 0 ] || echo "run-suite: not root: the HDF5/anndata runners cannot drop the page cache" >&2
	: > "$out/suite.jsonl"
	rm -f "$out"/waits-*.dat
	{
		echo "{\"mode\":\"$mode\",\"file\":\"$file\",\"date\":\"$(date -u +%FT%TZ)\","
		echo "\"commit\":\"$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)\","
		echo "\"cpus\":$(nproc),\"mem_gb\":$(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo),"
		echo "\"kernel\":\"$(uname -r)\",\"fio\":\"$(fio --version)\","
		echo "\"file_bytes\":$(stat -c %s "$file")}"
	} > "$out/meta.json"
	t0=$(date +%s)

	if has targets; then
		for r in $(seq 1 "$repeat"); do
			echo "== targets, run $r" >&2
			t="--cells $cells --fio-time $fio_time --repeat $rounds --time $hdf5_time"
			run "t-stream-r$r" --strategy stream $t $(warm 3 16) --runners scfetch,pread,fio-seq,fio-replay
			run "t-b64-r$r" --block 64 --fetch 16 $t $(warm 3 16) --runners scfetch,pread,fio-seq,fio-replay
			run "t-b1-r$r" --block 1 --fetch 64 $t $(warm 3 64) --runners scfetch,pread,hdf5,fio
			run "t-b16-r$r" --block 16 --fetch 16 $t $(warm 3 16) \
				--runners scfetch,pread,hdf5,anndata,fio
			# The paced consumer: capacity measured first (after a warm-up), then a
			# fresh loader asked at 50% of it from a cold start.
			run "t-paced-r$r" --block 16 --fetch 16 --cells "$paced_cells" $(warm 3 16) \
				--pace 0.5 --runners scfetch,paced
		done
	fi
	if has grid; then
		echo "== grid: block_size x fetch_factor" >&2
		for b in $grid_blocks; do
			for f in $grid_fetches; do
				run "g-b$b-f$f" --block "$b" --fetch "$f" --cells "$cells" $(warm 3 "$f") \
					--runners scfetch
			done
		done
		run "g-stream" --strategy stream --cells "$cells" $(warm 3 16) --runners scfetch
	fi
	if has sweeps; then
		for p in $sweep_points; do
			b=${p%:*}; f=${p#*:}
			echo "== sweeps at block $b, fetch $f" >&2
			for q in $qds; do
				run "s-qd$q-b$b-f$f" --block "$b" --fetch "$f" --qd "$q" --cells "$cells" \
					$(warm 3 "$f") --runners scfetch
			done
			for i in $inflights; do
				run "s-inflight$i-b$b-f$f" --block "$b" --fetch "$f" --inflight "$i" \
					--cells "$cells" $(warm "$i" "$f") --runners scfetch
			done
			for t in $threads; do
				run "s-threads$t-b$b-f$f" --block "$b" --fetch "$f" --threads "$t" \
					--cells "$cells" $(warm 3 "$f") --runners scfetch
			done
		done
	fi
	echo "suite: $(( $(date +%s) - t0 )) s" >&2
fi

/usr/bin/python3 "$here/report.py" "$out" || failed+=("report.py")
# Each plot and the data it draws; one without data is not drawn.
declare -A plot_data=([heatmap]="heat.dat" [tradeoff]="tradeoff.dat" [latency]="waits-*.dat"
	[sweeps]="sweep_*.dat")
if command -v gnuplot > /dev/null; then
	for name in heatmap tradeoff latency sweeps; do
		rm -f "$out/$name.png"
		if ! compgen -G "$out/${plot_data[$name]}" > /dev/null ||
			! grep -qsv '^#' $out/${plot_data[$name]}; then
			echo "run-suite: no data for $name.png: not drawn" >&2
			continue
		fi
		if ! gnuplot -e "dir='$out'" "$here/plots/$name.gp" || [ ! -s "$out/$name.png" ]; then
			echo "run-suite: $name.gp failed" >&2
			rm -f "$out/$name.png"
			failed+=("$name.png")
		fi
	done
else
	echo "run-suite: no gnuplot (apt-get install gnuplot-nox): no PNGs" >&2
fi
echo "results in $out: table.md, runs.csv, summary.csv, *.png" >&2
if [ ${#failed[@]} -gt 0 ]; then
	echo "run-suite: FAILED: ${failed[*]}" >&2
	exit 1
fi
