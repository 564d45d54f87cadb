# perf/plots/tradeoff.gp — throughput against minibatch diversity over the grid.
# gnuplot -e "dir='perf/results/full'" perf/plots/tradeoff.gp  (reads tradeoff.dat)
if (!exists("dir")) dir = "perf/results/quick"
f = dir."/tradeoff.dat"
set terminal pngcairo noenhanced size 900,640 font "sans,10"
set output dir."/tradeoff.png"
set title "Throughput vs minibatch diversity (each point: one block_size / fetch_factor)"
set xlabel "mean batch entropy of cell_line / truly random batches"
set ylabel "thousand cells/s (log)"
set logscale y
set grid
set key bottom left box opaque
set xrange [0:1.05]
plot f index 0 using 1:2 with points pt 7 ps 1.2 lc rgb "#1f77b4" title "block shuffling", \
     f index 0 using 1:2:(sprintf("%d/%d", $3, $4)) with labels offset 0,0.8 font "sans,8" notitle, \
     f index 1 using 1:2 with points pt 5 ps 1.5 lc rgb "#d62728" title "streaming"
