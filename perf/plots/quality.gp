# perf/plots/quality.gp — held-out accuracy and minibatch label diversity per
# sampling strategy: bars are means over seeds, black lines ± 1 sd, dots single seeds.
# gnuplot -e "dir='perf/results/quality'" perf/plots/quality.gp  (reads quality.dat
# written by perf/quality.py)
if (!exists("dir")) dir = "perf/results/quality"
f = dir."/quality.dat"
stats f index 2 using 1 nooutput
majority = STATS_max
stats f index 0 using 1 nooutput
last = STATS_max
set terminal pngcairo noenhanced size 1060,600 font "sans,10"
set output dir."/quality.png"
set title "Logistic regression, fixed number of steps (< 1 epoch) on a label-sorted file"
set ylabel "fraction"
set yrange [0:1.08]
set xrange [-0.6:last + 0.6]
set grid ytics
set key top left box opaque
set style fill solid 0.85 border -1
set boxwidth 0.36
set xtics scale 0
set arrow from -0.6, majority to last + 0.6, majority nohead dt 2 lw 1.5 lc rgb "#555555"
set label "accuracy of always answering the most frequent label" at -0.55, majority offset 0,0.7 font "sans,8" tc rgb "#555555"
plot f index 0 using ($1-0.19):2 with boxes lc rgb "#1f77b4" title "held-out accuracy", \
     f index 0 using ($1-0.19):($2-$3):(0):(2*$3) with vectors nohead lw 1.5 lc rgb "black" notitle, \
     f index 1 using ($3-0.19):2 with points pt 7 ps 0.5 lc rgb "#ff7f0e" title "accuracy, one seed", \
     f index 0 using ($1+0.19):4 with boxes lc rgb "#2ca02c" title "batch entropy / truly random batches", \
     f index 0 using ($1+0.19):($4-$5):(0):(2*$5) with vectors nohead lw 1.5 lc rgb "black" notitle, \
     f index 0 using ($1-0.19):($2+$3):(sprintf("%.3f", $2)) with labels offset 0,0.8 font "sans,8" notitle, \
     f index 0 using ($1+0.19):($4+$5):(sprintf("%.3f", $4)) with labels offset 0,0.8 font "sans,8" notitle, \
     f index 0 using 1:(1/0):xticlabels(6) notitle
