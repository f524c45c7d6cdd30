# gnuplot -e "out='docs/swarm-scaling.png'" tools/testbed/swarm-scaling.gp
# Time until the last peer vs N (docs/benchmarks.md "Swarm": 64 MiB, 50 Mbit/s every host,
# 1 seed, testbed bench per N and mode). Columns: N, zfly t_last, direct t_last, T_min.
if (!exists("out")) out = 'docs/swarm-scaling.png'
$data << EOD
2  12.32  22.46 10.74
4  13.58  44.92 10.74
8  15.09  89.83 10.74
16 16.74 179.69 10.74
EOD
set terminal pngcairo size 800,500 noenhanced
set output out
set title "Time until the last peer has the file (64 MiB, 50 Mbit/s links, 1 seed)"
set xlabel "peers N"
set ylabel "t_last (s)"
set logscale x 2
set xtics (2, 4, 8, 16)
set xrange [1.8:18]
set yrange [0:*]
set key top left
set grid
plot $data using 1:3 with linespoints lw 2 title "direct HTTP (curl)", \
     $data using 1:2 with linespoints lw 2 title "zfly swarm", \
     $data using 1:($4*1.25) with lines dt 2 title "1.25 x T_min"
