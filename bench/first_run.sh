#!/usr/bin/env bash
# A new user's first run against the same command once Numba's cache holds its kernels.
#
# Each repetition points NUMBA_CACHE_DIR at a new empty folder, runs the command (first: every
# kernel it uses compiles and is written to the cache), then runs it again (cached: the kernels
# load from that folder); both are timed as wall clock of the whole process. Prints each pair and
# the medians. Compare runs taken on the same machine only, and note its load (printed).
#
#   bench/first_run.sh [REPS]            # default 3 repetitions of each command
#   FASTMLP=path/to/fastmlp bench/first_run.sh
#   INVENTORY=1 bench/first_run.sh 1     # also list what each first run compiled (compiled.py)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
fastmlp=${FASTMLP:-$( [ -x .venv/bin/fastmlp ] && echo .venv/bin/fastmlp || echo fastmlp )}
python=$(dirname "$(command -v "$fastmlp")")/python
commands=(
  "--epochs 1"                                                   # the default run: MNIST, full batch, sparse
  "--batch-size 1 --hidden 300 --activation sigmoid --epochs 1"  # per-sample SGD, the compiled steps
)
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
seconds() {  # seconds one run of `fastmlp train ARGS` takes, with NUMBA_CACHE_DIR=$1
  local cache=$1 out t0 t1
  shift
  out=$(mktemp -d)
  t0=$(date +%s.%N)
  NUMBA_CACHE_DIR=$cache "$fastmlp" train "$@" --out "$out" --quiet --no-progress >/dev/null
  t1=$(date +%s.%N)
  rm -rf "$out"
  echo "$t1 - $t0" | bc
}
median() { tr ' ' '\n' | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
for args in "${commands[@]}"; do
  firsts=() ; cached=()
  for _ in $(seq "$reps"); do
    cache=$(mktemp -d)
    # shellcheck disable=SC2086  # the arguments are meant to split
    firsts+=("$(seconds "$cache" $args)")
    # shellcheck disable=SC2086
    cached+=("$(seconds "$cache" $args)")
    if [ "${INVENTORY:-0}" = 1 ]; then
      fresh=$(mktemp -d); out=$(mktemp -d)
      # shellcheck disable=SC2086
      NUMBA_CACHE_DIR=$fresh "$python" bench/compiled.py $args --out "$out"
      rm -rf "$fresh" "$out"
    fi
    rm -rf "$cache"
    echo "fastmlp train $args: first ${firsts[-1]} s, cached ${cached[-1]} s"
  done
  f=$(echo "${firsts[*]}" | median)
  c=$(echo "${cached[*]}" | median)
  printf 'fastmlp train %s: median first %.2f s, cached %.2f s, ratio %.2f (%d pairs)\n' \
    "$args" "$f" "$c" "$(echo "$f / $c" | bc -l)" "$reps"
done
