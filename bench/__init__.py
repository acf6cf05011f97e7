"""Benchmarks: the replay (`make bench`) and delivery throughput; results in bench/results/."""
