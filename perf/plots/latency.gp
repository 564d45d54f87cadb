# perf/plots/latency.gp — consumer wait per batch at block 16 / fetch 16, as the
# fraction of batches that wait longer than x (log-log, so tails show).
# gnuplot -e "dir='perf/results/full'" perf/plots/latency.gp  (reads waits-*.dat)
if (!exists("dir")) dir = "perf/results/quick"
set terminal pngcairo noenhanced size 900,640 font "sans,10"
set output dir."/latency.png"
set title "Consumer wait per batch (after the first), block 16 / fetch 16, batch 64\nsynchronous loaders wait for a whole fetch on its first batch, then not at all"
set xlabel "wait x (µs)"
set ylabel "fraction of batches waiting longer than x"
set logscale xy
set format y "%g"
set grid
set key top right
set xrange [0.1:2e6]
set yrange [1e-4:1.2]
w(n) = dir."/waits-".n.".dat"
c(f) = (1 - f) > 1e-4 ? 1 - f : 1e-4
plot w("t-b16-r1-scfetch") using 1:(c($2)) with steps lw 2 title "scfetch, consumer as fast as it can", \
     w("t-paced-r1-paced") using 1:(c($2)) with steps lw 2 title "scfetch, consumer at 50% of capacity", \
     w("t-b16-r1-pread") using 1:(c($2)) with steps lw 2 title "synchronous pread loop (same reads)", \
     w("t-b16-r1-hdf5") using 1:(c($2)) with steps lw 2 title "HDF5 H5Dread per row slice (C)", \
     w("t-b16-r1-anndata") using 1:(c($2)) with steps lw 2 title "anndata 0.8 + h5py"
