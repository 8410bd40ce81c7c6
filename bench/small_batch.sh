#!/usr/bin/env bash
# The small-batch figures of bench/RESULTS.md section 6, one after another (nothing else may
# run meanwhile). Usage: bash bench/small_batch.sh [out-dir]   (default bench/results/small_batch)
set -u
out=${1:-bench/results/small_batch}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
. "$(dirname "$0")/_run.sh"
machine
run threads_mnist "$py" bench/steps_ab.py --hidden 300 --batch-size 1 10 32 --momentum 0 0.99 --threads 1 2
run threads_dense "$py" bench/steps_ab.py --random --rows 5000 --hidden 1000 --activation relu --batch-size 32 100 --momentum 0.9 --threads 1 2
for mu in 0 0.99; do
    run "b1_mu$mu" "$py" -m fastmlp bench --dataset mnist --hidden 300 --activation sigmoid --batch-size 1 --momentum "$mu" --epochs 3 --warmup 1 --compare
done
for c in compiled no-compiled; do
    run "mnist300_$c" "$py" -m fastmlp bench --dataset mnist --hidden 300 --activation sigmoid --batch-size 1 10 16 32 100 --epochs 3 --warmup 1 "--$c"
    run "canonical_small_$c" "$py" -m fastmlp bench --batch-size 4 10 --epochs 2 --warmup 1 "--$c"
done
run canonical "$py" -m fastmlp bench --batch-size full 100 10 --dtype float32 float64 --epochs 3 --warmup 1
run vu_recipe "$py" -m fastmlp train --hidden 300 --activation sigmoid --batch-size 1 --lr 0.0001 --momentum 0 --train-size all --epochs 20 --no-progress --out "$out/vu_run"
