# perf/plots/open.gp — scf_open() time and the opener's own memory against the
# number of chunks (no cache, the open that builds it, cached; warm and cold page
# cache) and against processes opening at once (cached).
# gnuplot -e "dir='perf/results/open'" perf/plots/open.gp  (reads open.dat, procs.dat)
if (!exists("dir")) dir = "perf/results/open"
set terminal pngcairo noenhanced size 1200,420 font "sans,10"
set output dir."/open.png"
set multiplot layout 1,3
set logscale xy
set grid
set key top left
set xlabel "chunks (X/data + X/indices)"
set ylabel "open, s"
set title "scf_open() time"
plot dir."/open.dat" using 1:2 with linespoints title "no cache, warm", \
     "" using 1:3 with linespoints title "no cache, cold", \
     "" using 1:4 with linespoints title "builds the cache, warm", \
     "" using 1:6 with linespoints title "cached, warm", \
     "" using 1:7 with linespoints title "cached, cold"
set ylabel "anonymous MB after open"
set title "the opener's own memory"
plot dir."/open.dat" using 1:8 with linespoints title "no cache", \
     "" using 1:9 with linespoints title "cached"
unset logscale x
set logscale y
set xlabel "processes opening at once"
set ylabel "open, s (mean per process)"
set title "cached opens, several processes (2 cores)"
set xtics (1, 4, 8)
plot dir."/procs.dat" using 1:2 with linespoints title "1 M cells, warm", \
     "" using 1:3 with linespoints title "1 M cells, cold", \
     "" using 1:4 with linespoints title "10 M cells, warm", \
     "" using 1:5 with linespoints title "10 M cells, cold"
unset multiplot
