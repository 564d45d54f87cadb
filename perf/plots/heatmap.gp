# perf/plots/heatmap.gp — scfetch throughput over block_size x fetch_factor.
# gnuplot -e "dir='perf/results/full'" perf/plots/heatmap.gp  (reads heat.dat)
if (!exists("dir")) dir = "perf/results/quick"
f = dir."/heat.dat"
set terminal pngcairo noenhanced size 900,640 font "sans,10"
set output dir."/heatmap.png"
set title "scfetch throughput (thousand cells/s; below: batch entropy / random)\nO_DIRECT, batch 64, 3 fetches in flight, 2 decode threads"
set xlabel "fetch_factor"
set ylabel "block_size"
set palette defined (0 "#ffffff", 1 "#c6dbef", 2 "#6baed6", 3 "#2171b5")
set cblabel "thousand cells/s"
set tics nomirror out
set xrange [-0.5:*]
set yrange [-0.5:*]
unset key
plot f using 1:2:3 with image, \
     f using 1:2:(sprintf("%.0f\n%.2f", $3, $6)):xtic(4):ytic(5) with labels tc rgb "black" font "sans,9"
