"""The sparse-input products (kernels/sparse.py) against NumPy's dense matmul on MNIST rows.

    python bench/sparse_ab.py                       # the chosen panel widths
    python bench/sparse_ab.py --forward-panel 64 128 256 --backward-panel 32 64 128

Per dtype and H: the median time of Z = X·Wh over all rows (train + valid + test) and of
dWh = Xᵀ·dZ over the training rows, sparse and dense (into preallocated outputs), and the
ratio sparse / dense. The one-off layouts (CSR, transposed blocks) are timed apart.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
from fastmlp.kernels import sparse

import fastmlp


def median_s(fn: Callable[[], None], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of fn after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, nargs="+", default=[1000, 300])
    p.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    p.add_argument("--forward-panel", type=int, nargs="+", default=[sparse.FORWARD_PANEL])
    p.add_argument("--backward-panel", type=int, nargs="+", default=[sparse.BACKWARD_PANEL])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    for dtype in args.dtype:
        data = fastmlp.load_dataset("mnist", train_size=10000, dtype=dtype)
        X = np.ascontiguousarray(np.concatenate([data.train.x, data.valid.x, data.test.x]))
        Xtr = np.ascontiguousarray(data.train.x)
        t = time.perf_counter()
        A = sparse.csr(X)
        Atr = sparse.csr(Xtr)
        Atr_t = sparse.transpose_blocks(Atr)
        layout_s = time.perf_counter() - t
        print(f"{dtype}: X {X.shape}, train {Xtr.shape}, density {sparse.density(A):.3f}; "
              f"layouts (first call compiles) {layout_s:.3f} s")
        for H in args.hidden:
            W = (rng.standard_normal((X.shape[1], H)) * 0.05).astype(dtype)
            dZ = (rng.standard_normal((Xtr.shape[0], H)) * 1e-3).astype(dtype)
            Z = np.empty((X.shape[0], H), dtype)
            dW = np.empty((X.shape[1], H), dtype)
            dense_f = median_s(partial(np.matmul, X, W, out=Z), args.repeats)
            dense_b = median_s(partial(np.matmul, Xtr.T, dZ, out=dW), args.repeats)
            for pw in args.forward_panel:
                s = median_s(partial(sparse.sparse_matmul, Z, A, W, panel=pw), args.repeats)
                print(f"  H={H:5d} X·Wh    panel {pw:4d}: sparse {s * 1e3:7.2f} ms, "
                      f"dense {dense_f * 1e3:7.2f} ms, ratio {s / dense_f:.3f}")
            for pw in args.backward_panel:
                s = median_s(partial(sparse.sparse_matmul_t, dW, Atr, dZ, Atr_t, panel=pw),
                             args.repeats)
                print(f"  H={H:5d} Xᵀ·dZ   panel {pw:4d}: sparse {s * 1e3:7.2f} ms, "
                      f"dense {dense_b * 1e3:7.2f} ms, ratio {s / dense_b:.3f}")


if __name__ == "__main__":
    main()
