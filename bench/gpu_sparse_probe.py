"""cuSPARSE (cupyx) against cuBLAS for the two big products of a full-batch GPU epoch on MNIST.

    python bench/gpu_sparse_probe.py            # needs a CUDA GPU with CuPy; prints JSON rows

Issue 11 allows a cuSPARSE path on the GPU only if it is measured faster there than the dense
cuBLAS products. This probe times both on the rows the default ``fastmlp train --device cuda``
run uses (MNIST: 10000 train rows, 10000 valid, 10000 test; H = 1000):

- forward ``Z = X @ Wh`` over all 30000 rows (dense: cuBLAS GEMM; sparse: CSR x dense SpMM),
- backward ``dWh = X_train.T @ dZ`` over the 10000 train rows (sparse: the CSR read transposed).

Each is the median of ``--repeat`` launches timed with CUDA events after warm-ups; the sparse
results are checked against the dense ones (max error relative to the largest entry). The
conversion to CSR is done once, outside the timing, as a run would.
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

import fastmlp


def _time_ms(fn, repeat: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` over ``repeat`` launches, timed with CUDA events."""
    import cupy

    for _ in range(warmup):
        fn()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeat):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    data = fastmlp.load_dataset("mnist", train_size=10_000)
    x_all = np.concatenate([data.train.x, data.valid.x, data.test.x])
    n_train = len(data.train)
    density = float(np.count_nonzero(x_all)) / x_all.size
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for row in _probe(x_all, n_train, args.hidden, dtype, args.repeat, rng):
            print(json.dumps(dict(row, density=round(density, 4))), flush=True)


def _probe(x_all: np.ndarray, n_train: int, hidden: int, dtype, repeat: int, rng):
    """One row per product: cuBLAS and cuSPARSE milliseconds on the same operands, and the error."""
    import cupy
    import cupyx.scipy.sparse as cusparse

    X = cupy.asarray(x_all, dtype=dtype)
    Xt = X[:n_train]
    Wh = cupy.asarray(rng.standard_normal((x_all.shape[1], hidden)) / 28, dtype=dtype)
    dZ = cupy.asarray(rng.standard_normal((n_train, hidden)), dtype=dtype)
    S, St = cusparse.csr_matrix(X), cusparse.csr_matrix(Xt)
    products = {
        "forward X@Wh": (lambda: X @ Wh, lambda: S @ Wh),
        "backward Xt.T@dZ": (lambda: Xt.T @ dZ, lambda: St.T @ dZ),
    }
    gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    for name, (dense, sparse) in products.items():
        want, got = dense(), sparse()
        got = got.toarray() if hasattr(got, "toarray") else got
        err = float(cupy.max(cupy.abs(got - want)) / cupy.max(cupy.abs(want)))
        dense_ms, sparse_ms = _time_ms(dense, repeat), _time_ms(sparse, repeat)
        yield {
            "product": name, "dtype": np.dtype(dtype).name, "rows": int(X.shape[0]),
            "hidden": hidden, "cublas_ms": round(dense_ms, 4), "cusparse_ms": round(sparse_ms, 4),
            "cusparse_over_cublas": round(sparse_ms / dense_ms, 3), "max_rel_err": err, "gpu": gpu,
        }

if __name__ == "__main__":
    main()
