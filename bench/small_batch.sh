#!/usr/bin/env bash
# The compiled loop's crossover and thread figures of bench/RESULTS.md, one after another
# (nothing else may run meanwhile). Usage: bash bench/small_batch.sh [out-dir]   (default bench/results/small_batch)
set -u
out=${1:-bench/results/small_batch}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
. "$(dirname "$0")/_run.sh"
machine
run threads_mnist "$py" bench/steps_ab.py --hidden 300 --batch-size 1 10 32 --momentum 0 0.99 --threads 1 2
run threads_dense "$py" bench/steps_ab.py --random --rows 5000 --hidden 1000 --activation relu --batch-size 32 100 --momentum 0.9 --threads 1 2
for c in compiled no-compiled; do
    run "mnist300_$c" "$py" -m fastmlp bench --dataset mnist --hidden 300 --activation sigmoid --batch-size 1 10 16 32 100 --epochs 3 --warmup 1 "--$c"
    run "canonical_small_$c" "$py" -m fastmlp bench --batch-size 4 10 --epochs 2 --warmup 1 "--$c"
done
