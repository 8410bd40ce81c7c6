#!/usr/bin/env bash
# The GPU check, sized for the device tool: about 6 minutes at most, at most 8 files back.
#
#   bash bench/gpu_check.sh                # from the repository root, or from anywhere
#   OUT=/some/dir COMPARE=1 bash bench/gpu_check.sh
#
# Steps, each under its own time limit and all under one deadline (BUDGET_S, default 330 s):
# the machine (nvidia-smi), installing fastmlp, `fastmlp doctor` (the CUDA preflight: if it
# fails, the script stops there with its report), the gpu tests, one `fastmlp bench` on CUDA
# (float32 and float64; full batch, B = 100 and B = 1), the default `fastmlp train --device
# cuda`. COMPARE=1 adds `--compare` to the bench: its PyTorch CUDA eager (and torch.compile)
# rows and course-style NumPy; fastmlp's bench has no JAX row yet, so none is measured.
#
# Install: on a machine whose python3 already holds CuPy, numba-cuda and pytest (the lent device
# machines' image, which has no package registry), fastmlp alone goes into that python3
# (--no-deps, no build isolation; SYSTEM_PYTHON=auto, the default); elsewhere (SYSTEM_PYTHON=0)
# a virtual environment gets `.[cuda13]` (or cuda12 where the driver is older) and the test
# extra. Where numba-cuda finds no NVVM wheel, the preflight points it at nvcc's toolkit.
#
# Outputs: $OUT/steps.tsv (step, status, seconds) and $OUT/gpu_check.tar.gz holding every log
# and result (bench.jsonl, the train run's folder, pip freeze, nvidia-smi -q); $OUT defaults to
# bench/results/gpu_check_<UTC time>. Exit status 1 if any step failed.
set -uo pipefail  # no -e: a step's failure must not stop the later steps

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
OUT="${OUT:-$ROOT/bench/results/gpu_check_$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT" || exit 1
WORK="$(mktemp -d)"  # every log goes here, then into one tarball in $OUT
LOGS="$WORK/gpu_check"
mkdir -p "$LOGS" || exit 1
VENV="${VENV:-$ROOT/.venv-gpu}"
SYSTEM_PYTHON="${SYSTEM_PYTHON:-auto}"
if [ "$SYSTEM_PYTHON" = auto ]; then
    if python3 -c 'import cupy, numba.cuda, pytest' 2>/dev/null; then
        SYSTEM_PYTHON=1
    else
        SYSTEM_PYTHON=0
    fi
fi
if [ "$SYSTEM_PYTHON" = 1 ]; then PY="$(command -v python3)"; else PY="$VENV/bin/python"; fi
export PYTHONUNBUFFERED=1
FAILED=0
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-330} ))
printf 'step\tstatus\tseconds\n' > "$OUT/steps.tsv"

# step NAME LIMIT_SECONDS COMMAND...: COMMAND under a time limit (or what is left of the
# deadline, if less), its output in NAME.log; returns COMMAND's exit status
step() {
    local name="$1" limit="$2"
    shift 2
    local log="$LOGS/$name.log" start rc left
    start=$(date +%s)
    left=$(( DEADLINE - start ))
    if [ "$left" -lt 10 ]; then
        FAILED=1
        echo "== $name: skipped, the time budget is spent" | tee "$log"
        printf '%s\tSKIPPED (no time left)\t0\n' "$name" >> "$OUT/steps.tsv"
        return 1
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit}s): $*" | tee "$log"
    timeout --kill-after=5 "$limit" "$@" >> "$log" 2>&1
    rc=$?
    local seconds=$(( $(date +%s) - start ))
    if [ "$rc" -eq 0 ]; then
        printf '%s\tok\t%s\n' "$name" "$seconds" >> "$OUT/steps.tsv"
    else
        FAILED=1
        [ "$rc" -eq 124 ] && echo "== $name: timed out after ${limit}s" >> "$log"
        printf '%s\tFAILED (exit %s)\t%s\n' "$name" "$rc" "$seconds" >> "$OUT/steps.tsv"
        echo "== $name FAILED (exit $rc), see $name.log in the tarball"
    fi
    return "$rc"
}

finish() {
    tar -czf "$OUT/gpu_check.tar.gz" -C "$WORK" gpu_check
    rm -rf "$WORK"
    echo
    column -t -s $'\t' "$OUT/steps.tsv" 2>/dev/null || cat "$OUT/steps.tsv"
    echo "outputs: $OUT/steps.tsv and $OUT/gpu_check.tar.gz"
    exit "$FAILED"
}

# -- the machine ----------------------------------------------------------------------------------
step nvidia-smi 15 nvidia-smi
nvidia-smi -q > "$LOGS/nvidia-smi-q.txt" 2>&1
{ uname -a; git -C "$ROOT" log -1 --format='commit %H %s' 2>/dev/null; "$PY" --version; } \
    > "$LOGS/machine.txt" 2>&1

# -- install --------------------------------------------------------------------------------------
if [ "$SYSTEM_PYTHON" = 1 ]; then
    echo "using $PY and its packages; installing fastmlp alone" | tee "$LOGS/install.txt"
    step install 60 "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e .
    if ! (cd / && "$PY" -c 'import fastmlp.kernels') > /dev/null 2>&1; then
        # no install: import from this tree, with the package-dir mapping made by hand
        echo "install failed: importing fastmlp from $ROOT" | tee -a "$LOGS/install.txt"
        [ -e fastmlp/kernels ] || ln -s ../kernels fastmlp/kernels
        export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    fi
else
    # the driver's CUDA version, e.g. "CUDA Version: 13.0" in nvidia-smi's header
    CUDA_MAJOR=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' \
                 | head -n 1)
    EXTRA=cuda12
    if [ -n "$CUDA_MAJOR" ] && [ "$CUDA_MAJOR" -ge 13 ]; then EXTRA=cuda13; fi
    echo "driver CUDA ${CUDA_MAJOR:-unknown}: .[${EXTRA},test] into $VENV" | tee "$LOGS/install.txt"
    step venv 30 python3 -m venv "$VENV"
    step install 150 "$VENV/bin/pip" install -q -e ".[${EXTRA},test]"
    if [ "${COMPARE:-0}" = 1 ]; then step install-torch 120 "$VENV/bin/pip" install -q torch; fi
fi
"$PY" -m pip freeze > "$LOGS/pip-freeze.txt" 2>&1

# -- the preflight: nothing else is worth running if it fails -------------------------------------
if ! step doctor 60 "$PY" -m fastmlp doctor; then
    echo "the CUDA preflight failed; its report:"
    cat "$LOGS/doctor.log"
    finish
fi

# -- checks ---------------------------------------------------------------------------------------
step pytest-gpu 90 "$PY" -m pytest -m gpu -ra -p no:cacheprovider tests/test_gpu.py \
    tests/test_gpu_model.py
BENCH=("$PY" -m fastmlp bench --device cuda --dtype float32 float64 --batch-size full 100 1
       --json)
if [ "${COMPARE:-0}" = 1 ]; then BENCH+=(--compare); fi
# JSON rows on stdout go to their own file; the log keeps stderr
# shellcheck disable=SC2016  # $0 and $@ are the inner shell's, on purpose
step bench 150 bash -c '"$@" > "$0"' "$LOGS/bench.jsonl" "${BENCH[@]}"
step train 60 "$PY" -m fastmlp train --device cuda --out "$LOGS/train" --no-progress
finish
