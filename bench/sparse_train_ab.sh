#!/usr/bin/env bash
# A/B of the default `fastmlp train` with and without the sparse products, alternated REPS times
# (bench/RESULTS.md, sparse path). Usage: bash bench/sparse_train_ab.sh [out-dir] [reps]
# (defaults bench/results/sparse and 2)
set -u
out=${1:-bench/results/sparse}
reps=${2:-2}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
for rep in $(seq "$reps"); do
    for mode in off auto; do
        echo "\$ fastmlp train --sparse $mode --no-progress" >"$out/train_${mode}_$rep.txt"
        /usr/bin/time -f "wall %e s" "$py" -m fastmlp train --sparse "$mode" --no-progress \
            --out "$out/run_${mode}_$rep" >>"$out/train_${mode}_$rep.txt" 2>&1
        rm -f "$out/run_${mode}_$rep"/*.npz
        grep -E "products|wall|^test" "$out/train_${mode}_$rep.txt"
    done
done
