#!/usr/bin/env bash
# A/B of one command between a base commit and HEAD, alternated (base, head, base, head, ...):
# the library (fastmlp/, kernels/) is checked out at BASE for each base run and restored after,
# so the tree must be clean. Nothing else may run meanwhile.
# Usage: bash bench/ab.sh BASE OUT-DIR REPS COMMAND...
#   e.g. bash bench/ab.sh 3d149e6 bench/results/align 3 .venv/bin/fastmlp bench --dataset mnist ...
set -eu
base=$1 out=$2 reps=$3
shift 3
[ -z "$(git status --porcelain -- fastmlp kernels)" ] || { echo "ab.sh: fastmlp/ or kernels/ has changes" >&2; exit 2; }
mkdir -p "$out"
. "$(dirname "$0")/_run.sh"
machine
echo "base commit $(git log -1 --format='%h %s' "$base")" >>"$out/machine.txt"
trap 'git checkout -q HEAD -- fastmlp kernels' EXIT
for rep in $(seq "$reps"); do
    git checkout -q "$base" -- fastmlp kernels
    run "base_$rep" "$@"
    git checkout -q HEAD -- fastmlp kernels
    run "head_$rep" "$@"
done
