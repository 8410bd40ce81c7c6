#!/usr/bin/env bash
# The sparse-input figures of bench/RESULTS.md (the density crossover, the default train A/B),
# one after another (nothing else may run meanwhile). Usage: bash bench/sparse.sh [out-dir]   (default bench/results/sparse)
set -u
out=${1:-bench/results/sparse}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
. "$(dirname "$0")/_run.sh"
machine
run density_float32 "$py" bench/sparse_density.py float32
run density_float64 "$py" bench/sparse_density.py float64
bash bench/sparse_train_ab.sh "$out"
