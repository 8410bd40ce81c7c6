#!/usr/bin/env bash
# The speed targets of the small-batch and sparse-input issues, measured on the machine at hand
# (bench/RESULTS.md quotes its outputs), one command after another (nothing else may run
# meanwhile). Usage: bash bench/open_targets.sh [out-dir] [reps] [parts]
#   out-dir: default bench/results/open_targets; reps: repetitions of the course-layout and
#   canonical commands (default 3); parts: some of "course canonical per_sample vu bound
#   breakdown regtile" (default all of them)
set -u
out=${1:-bench/results/open_targets}
reps=${2:-3}
parts=${3:-course canonical per_sample vu bound breakdown regtile}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
. "$(dirname "$0")/_run.sh"
machine
has() { [[ " $parts " == *" $1 "* ]]; }
for rep in $(seq "$reps"); do
    has course && run "course_compare_$rep" "$py" -m fastmlp bench --dataset mnist --valid-size 6000 --test-size 2724 --compare --dtype float32 float64 --epochs 5 --warmup 2
    has canonical && run "canonical_$rep" "$py" -m fastmlp bench --batch-size full 100 10 --dtype float32 float64 --epochs 3 --warmup 1
done
if has per_sample; then  # the bench's default lr 0.01, and the issue's own example's 0.001
    for lr in 0.01 0.001; do
        for mu in 0 0.99; do
            run "b1_lr${lr}_mu$mu" "$py" -m fastmlp bench --dataset mnist --hidden 300 --activation sigmoid --batch-size 1 --lr "$lr" --momentum "$mu" --epochs 3 --warmup 1 --compare
        done
    done
fi
has vu && run vu_recipe "$py" -m fastmlp train --hidden 300 --activation sigmoid --batch-size 1 --lr 0.0001 --momentum 0 --train-size all --epochs 20 --no-progress --out "$out/vu_run"
has bound && run update_bound "$py" bench/update_bound.py
has breakdown && run breakdown "$py" bench/breakdown.py full minibatch
if has regtile; then
    run regtile_float32 "$py" bench/experiments/sparse_regtile.py float32
    run regtile_float64 "$py" bench/experiments/sparse_regtile.py float64
fi
