"""Register-tiled sparse products, tried against kernels/sparse.py's (not kept: see README.md).

Run: ``python bench/experiments/sparse_regtile.py {float32,float64}``. Bundled MNIST in the
course layout (18724 rows through X·Wh, the 10000 training rows through Xᵀ·dZ), H = 1000,
medians of 5 calls each, the current kernel first and last. Not a test.

The variant keeps a panel of ``P`` output columns in registers across all of a row's nonzeros
(forward) or a column block's entries (backward), as XNNPACK's f32-spmm does; the last panel
overlaps its neighbour so that P stays a compile-time constant. LLVM keeps the panel in
registers only when P is a literal and the loops sit in the prange body itself (the gufunc's
arrays are then noalias); ``acc-mem`` > 0 below means it did not.
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy)
import sys
import time

import fastmlp  # noqa: F401  (sets the thread-pool variables first)
import numba
import numpy as np
from numba import prange, uintp

from fastmlp.backend import aligned_empty
from fastmlp.datasets import load_dataset
from fastmlp.kernels import sparse as ks
from fastmlp.kernels.runtime import JIT, run_shares

J = dict(JIT, cache=False)


def make_forward(P):
    @numba.njit(**J)
    def forward(indptr, indices, values, W, zero, out, T):
        N = indptr.shape[0] - 1
        H = W.shape[1]
        for t in prange(T):
            i0 = t * N // T
            i1 = (t + 1) * N // T
            acc = np.empty(P, W.dtype)
            for q in range((H + P - 1) // P):
                j0 = min(q * P, H - P)  # overlapping last panel: the same sums, stored twice
                for ii in range(i0, i1):
                    i = uintp(ii)
                    for jj in range(P):
                        acc[uintp(jj)] = zero
                    for p in range(indptr[i], indptr[i + 1]):
                        k = uintp(indices[p])
                        x = values[p]
                        for jj in range(P):
                            acc[uintp(jj)] += x * W[k, uintp(j0 + jj)]
                    for jj in range(P):
                        out[i, uintp(j0 + jj)] = acc[uintp(jj)]
    return forward


def make_backward(P):
    @numba.njit(**J)
    def backward(colptr, rows, values, dZ, NQ, zero, out):
        F, H = out.shape
        for q in prange(NQ):
            acc = np.empty(P, dZ.dtype)
            for kk in range(q, F, NQ):
                for jj in range(H):
                    out[uintp(kk), uintp(jj)] = zero
            for pn in range((H + P - 1) // P):
                j0 = min(pn * P, H - P)
                jstore = pn * P  # the overlapping last panel stores only its own columns
                for b in range(colptr.shape[0]):
                    for kk in range(q, F, NQ):
                        k = uintp(kk)
                        s, e = colptr[b, k], colptr[b, k + 1]
                        if s == e:
                            continue
                        for jj in range(P):
                            acc[uintp(jj)] = out[k, uintp(j0 + jj)]
                        for c in range(s, e):
                            r = uintp(rows[c])
                            x = values[c]
                            for jj in range(P):
                                acc[uintp(jj)] += x * dZ[r, uintp(j0 + jj)]
                        for jj in range(P):
                            if j0 + jj >= jstore:
                                out[k, uintp(j0 + jj)] = acc[uintp(jj)]
    return backward


def median_ms(fn, reps=5):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def in_registers(fn):
    asm = fn.inspect_asm(fn.signatures[0]).splitlines()
    w = sum(1 for s in asm if "vfmadd231p" in s and "(" in s and "zmm" in s)
    a = sum(1 for s in asm if "vfmadd213p" in s and "(" in s and "zmm" in s)
    return f"fma-from-operand {w}, acc-mem {a}"


def main(dtype):
    dt = np.dtype(dtype)
    T = numba.get_num_threads()
    H = 1000
    d = load_dataset("mnist", dtype=dt.name)
    X = np.concatenate([d.train.x[:10000], d.valid.x[:6000], d.test.x[:2724]]).astype(dt)
    A, At = ks.csr(X), ks.csr(X, 10000)
    rng = np.random.default_rng(0)
    W = aligned_empty((784, H), dt)
    W[:] = rng.standard_normal((784, H)) * 0.05
    Z = aligned_empty((X.shape[0], H), dt)
    dZ = aligned_empty((10000, H), dt)
    dZ[:] = np.maximum(rng.standard_normal((10000, H)), 0)
    dW = aligned_empty((784, H), dt)
    zero = dt.type(0)
    no_bias = np.zeros(0, dt)
    ref_z = X.astype(np.float64) @ W
    ref_w = X[:10000].T.astype(np.float64) @ dZ

    def err(a, ref):
        return f"max rel err {np.abs(a - ref).max() / np.abs(ref).max():.1e}"

    print(f"{dt.name}, threads {T}, H {H}, nnz {A.indices.shape[0]} (X·Wh), "
          f"{At.indices.shape[0]} (Xᵀ·dZ)")
    cur = lambda: run_shares(ks._matmul_rows, T, A.indptr, A.indices, A.values, W,  # noqa: E731
                             no_bias, False, ks.ROWS_PER_CHUNK, ks.FORWARD_PANEL, ks.GROUP, zero,
                             Z)
    print(f"X·Wh  current          {median_ms(cur):7.2f} ms  {err(Z, ref_z)}")
    hot = (A.indices % 8).astype(np.int32)  # every nonzero reads one of 8 rows of W: in L1
    f = lambda: run_shares(ks._matmul_rows, T, A.indptr, hot, A.values, W, no_bias,  # noqa: E731
                           False, ks.ROWS_PER_CHUNK, ks.FORWARD_PANEL, ks.GROUP, zero, Z)
    print(f"X·Wh  current, W in L1 {median_ms(f):7.2f} ms  (the same arithmetic, W rows hot)")
    for P in (256, 128) if dt == np.float32 else (128, 64):
        fwd = make_forward(P)
        f = lambda fwd=fwd: fwd(A.indptr, A.indices, A.values, W, zero, Z, T)  # noqa: E731
        ms = median_ms(f)
        print(f"X·Wh  registers P={P:<4d} {ms:7.2f} ms  {err(Z, ref_z)}; {in_registers(fwd)}")
        f = lambda fwd=fwd: fwd(A.indptr, hot, A.values, W, zero, Z, T)  # noqa: E731
        print(f"X·Wh  registers P={P:<4d} W in L1 {median_ms(f):7.2f} ms")
    print(f"X·Wh  current          {median_ms(cur):7.2f} ms")
    Xt = ks.transpose_blocks(At)
    cur_t = lambda: run_shares(ks._matmul_t_rows, T, Xt.colptr, Xt.rows,  # noqa: E731
                               Xt.values, dZ, ks.BACKWARD_PANEL, ks.GROUP, zero, dW)
    print(f"Xᵀ·dZ current          {median_ms(cur_t):7.2f} ms  {err(dW, ref_w)}")
    for P in (256, 128) if dt == np.float32 else (128, 64):
        bwd = make_backward(P)
        for R in (32, 64, 128):
            Xr = ks.transpose_blocks(At, R)
            f = lambda bwd=bwd, Xr=Xr: bwd(Xr.colptr, Xr.rows, Xr.values, dZ, T, zero, dW)  # noqa: E731
            ms = median_ms(f)
            print(f"Xᵀ·dZ registers P={P:<4d} blocks of {R:3d} rows {ms:7.2f} ms  {err(dW, ref_w)}")
        print(f"      {in_registers(bwd)}")
    print(f"Xᵀ·dZ current          {median_ms(cur_t):7.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "float32")
