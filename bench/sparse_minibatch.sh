#!/usr/bin/env bash
# The sparse minibatch and evaluation figures of bench/RESULTS.md (nothing else may
# run meanwhile). Usage: bash bench/sparse_minibatch.sh [out-dir]  (default bench/results/sparse_minibatch)
set -u
out=${1:-bench/results/sparse_minibatch}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
. "$(dirname "$0")/_run.sh"
machine
# B = 100 on the per-step path, dense and sparse rows side by side (the default network)
run b100 "$py" -m fastmlp bench --dataset mnist --batch-size 100 --dtype float32 float64 --sparse off on --epochs 3 --warmup 1
# per-sample SGD (compiled loop): the epoch's evaluation forward dense or sparse
for mu in 0 0.99; do
    run "b1_mu$mu" "$py" -m fastmlp bench --dataset mnist --hidden 300 --activation sigmoid --batch-size 1 --momentum "$mu" --sparse off on --epochs 3 --warmup 1
done
