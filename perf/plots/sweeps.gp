# perf/plots/sweeps.gp — queue depth, fetches in flight, decode threads.
# gnuplot -e "dir='perf/results/full'" perf/plots/sweeps.gp  (reads sweep_*.dat)
if (!exists("dir")) dir = "perf/results/quick"
set terminal pngcairo noenhanced size 1200,420 font "sans,10"
set output dir."/sweeps.png"
set multiplot layout 1,3 title "scfetch cells/s over its knobs (block 1 / fetch 64: random reads; block 16 / fetch 16)"
set grid
set ylabel "thousand cells/s"
set yrange [0:*]
set key bottom right
s(k, p) = dir."/sweep_".k."_".p.".dat"
exists_file(n) = system("test -r '".n."' && echo 1 || echo 0") + 0
do for [k in "qd inflight threads"] {
	set xlabel (k eq "qd" ? "io_uring queue depth" : k eq "inflight" ? "fetches in flight" : "decode threads")
	if (k eq "threads") { unset logscale x; set xtics 1 } else { set logscale x 2; set xtics autofreq }
	a = s(k, "b1_f64"); b = s(k, "b16_f16")
	if (exists_file(b)) {
		plot a using 1:2 with linespoints lw 2 pt 7 title "block 1, fetch 64", \
		     b using 1:2 with linespoints lw 2 pt 5 title "block 16, fetch 16"
	} else {
		plot a using 1:2 with linespoints lw 2 pt 7 title "block 1, fetch 64"
	}
}
unset multiplot
