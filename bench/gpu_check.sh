#!/usr/bin/env bash
# One-shot GPU check for a bare machine with an NVIDIA GPU (about 8 minutes at most).
#
#   bash bench/gpu_check.sh            # from the repository root, or from anywhere
#   OUT=/some/dir bash bench/gpu_check.sh
#
# Makes a virtual environment, installs fastmlp with the CUDA extra the driver supports
# (cuda13 when nvidia-smi reports CUDA 13 or newer, else cuda12) plus the test extra and,
# unless WITH_TORCH=0, PyTorch (so that `bench --compare` adds its CUDA eager and torch.compile
# rows); then runs the gpu tests, `fastmlp bench` on CUDA with and without TF32, the default
# `fastmlp train --device cuda` and the cuSPARSE-against-cuBLAS probe. On a machine with no
# package registry whose python3 already holds CuPy, numba-cuda, pytest and Hypothesis (the lent
# device machines' image), SYSTEM_PYTHON=auto (the default) installs fastmlp alone into that
# python3 (--no-deps, no build isolation) instead; SYSTEM_PYTHON=0 forces the venv. Every output goes into one folder, printed at the end ($OUT if
# set, else bench/results/gpu_check_<UTC time>). A failing step is logged in steps.tsv and the
# later steps still run; the exit status is 1 if any step failed.
set -uo pipefail  # no -e: a step's failure must not stop the later steps

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
OUT="${OUT:-$ROOT/bench/results/gpu_check_$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT" || exit 1
VENV="${VENV:-$ROOT/.venv-gpu}"  # its own venv: the CPU .venv may lack or clash with CUDA wheels
SYSTEM_PYTHON="${SYSTEM_PYTHON:-auto}"
if [ "$SYSTEM_PYTHON" = auto ]; then
    if python3 -c 'import cupy, numba.cuda, pytest, hypothesis, matplotlib, tqdm' 2>/dev/null; then
        SYSTEM_PYTHON=1
    else
        SYSTEM_PYTHON=0
    fi
fi
if [ "$SYSTEM_PYTHON" = 1 ]; then PY="$(command -v python3)"; else PY="$VENV/bin/python"; fi
FAILED=0
# one deadline for the whole script: each step gets its own limit or what is left, if less
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-470} ))
printf 'step\tstatus\tseconds\tlog\n' > "$OUT/steps.tsv"

# step NAME LIMIT_SECONDS COMMAND...: runs COMMAND under a time limit, output to NAME.log
step() {
    local name="$1" limit="$2"
    shift 2
    local log="$OUT/$name.log" start rc
    start=$(date +%s)
    local left=$(( DEADLINE - start ))
    if [ "$left" -lt 10 ]; then
        FAILED=1
        echo "== $name: skipped, the time budget is spent" | tee "$log"
        printf '%s\tSKIPPED (no time left)\t0\t%s\n' "$name" "$name.log" >> "$OUT/steps.tsv"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name: $*" | tee "$log"
    timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
    rc=$?
    local seconds=$(( $(date +%s) - start ))
    if [ "$rc" -eq 0 ]; then
        printf '%s\tok\t%s\t%s\n' "$name" "$seconds" "$name.log" >> "$OUT/steps.tsv"
    else
        FAILED=1
        [ "$rc" -eq 124 ] && echo "== $name: timed out after ${limit}s" >> "$log"
        printf '%s\tFAILED (exit %s)\t%s\t%s\n' "$name" "$rc" "$seconds" "$name.log" \
            >> "$OUT/steps.tsv"
        echo "== $name FAILED (exit $rc), see $log"
    fi
    return 0
}

# -- the machine ----------------------------------------------------------------------------------
step nvidia-smi 30 nvidia-smi
nvidia-smi -q > "$OUT/nvidia-smi-q.txt" 2>&1 || echo "nvidia-smi -q failed" >> "$OUT/nvidia-smi-q.txt"
{ uname -a; git -C "$ROOT" log -1 --format='commit %H %s' 2>/dev/null; python3 --version; } \
    > "$OUT/machine.txt" 2>&1

# the driver's CUDA version, e.g. "CUDA Version: 12.8" in nvidia-smi's header
CUDA_MAJOR=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' | head -n 1)
if [ -n "$CUDA_MAJOR" ] && [ "$CUDA_MAJOR" -ge 13 ]; then
    EXTRA=cuda13
else
    EXTRA=cuda12  # also when nvidia-smi says nothing: the older toolkit is the safer guess
fi
echo "driver CUDA major version: ${CUDA_MAJOR:-unknown}; installing .[${EXTRA},test]" \
    | tee "$OUT/extra.txt"

# -- install --------------------------------------------------------------------------------------
if [ "$SYSTEM_PYTHON" = 1 ]; then
    echo "using $PY and its packages; installing fastmlp alone" | tee -a "$OUT/extra.txt"
    step install 120 "$PY" -m pip install -q --no-deps --no-build-isolation -e .
    if ! (cd / && "$PY" -c 'import fastmlp.kernels') > /dev/null 2>&1; then
        # no install: import from this tree, with the package-dir mapping made by hand
        echo "install failed: importing fastmlp from $ROOT" | tee -a "$OUT/extra.txt"
        [ -e fastmlp/kernels ] || ln -s ../kernels fastmlp/kernels
        export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    fi
else
    step venv 60 python3 -m venv "$VENV"
    step install 150 "$VENV/bin/pip" install -q -e ".[${EXTRA},test]"
    if [ "${WITH_TORCH:-1}" != "0" ]; then
        step install-torch 150 "$VENV/bin/pip" install -q torch
    fi
fi
"$PY" -m pip freeze > "$OUT/pip-freeze.txt" 2>&1

# -- checks ---------------------------------------------------------------------------------------
# only the file that holds them: collecting the rest would need the test extra's other packages
step pytest-gpu 90 "$PY" -m pytest -m gpu -ra -p no:cacheprovider tests/test_gpu.py
BENCH=("$PY" -m fastmlp bench --device cuda --dtype float32 float64 --batch-size full 100
       --compare --json)
# JSON rows on stdout go to their own file, the log keeps stderr; the TF32 run goes last, as the
# least needed if time runs short
# shellcheck disable=SC2016  # $0 and $@ are the inner shell's, on purpose
step bench 120 bash -c '"$@" > "$0"' "$OUT/bench.jsonl" "${BENCH[@]}"
step train 90 "$PY" -m fastmlp train --device cuda --out "$OUT/train" --no-progress
# shellcheck disable=SC2016
step sparse-probe 60 bash -c '"$@" > "$0"' "$OUT/sparse-probe.jsonl" "$PY" \
    bench/gpu_sparse_probe.py
# shellcheck disable=SC2016
step bench-tf32 120 bash -c '"$@" > "$0"' "$OUT/bench-tf32.jsonl" "${BENCH[@]}" --tf32

echo
column -t -s $'\t' "$OUT/steps.tsv" 2>/dev/null || cat "$OUT/steps.tsv"
echo "all outputs in: $OUT"
exit "$FAILED"
