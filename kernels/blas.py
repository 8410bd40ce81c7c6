"""NumPy's own BLAS ``gemm``, called from compiled kernels with no Python per call.

``gemm(transa, transb, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off, ldc)``
computes, row-major, C ← alpha·op(A)·op(B) + beta·C for the (m, n) matrix C that starts at
element ``c_off`` of the C-contiguous array C with rows ``ldc`` elements apart (A's (m, k) and
B's (k, n) likewise; op transposes when its flag is true: then A is stored (k, m), B (n, k)).
float32 or float64, the three arrays of one dtype; beta = 0 ignores what C held (BLAS's rule).

Which one runs is chosen once, at import:

- **NumPy's bundled OpenBLAS**, when found: its library is loaded into LLVM's symbol table
  (``llvmlite.binding.load_library_permanently``) and ``gemm`` is an intrinsic that declares the
  CBLAS symbol and calls it, so a kernel calls it like C code, and Numba's on-disk cache of
  that kernel stays valid (the symbol is resolved again by name when the cache is loaded). The
  symbol's name depends on the NumPy build, so the known ones are tried: NumPy 2 wheels
  ``scipy_cblas_sgemm64_`` (ILP64: 64-bit sizes) in ``numpy.libs/libscipy_openblas64_*``,
  NumPy 1.26 wheels ``cblas_sgemm64_`` in ``libopenblas64_p-*``, and their 32-bit-int
  namesakes. CBLAS's enums are C ints: row-major 101, no transpose 111, transpose 112.
- **Numba loops** otherwise (macOS arm64 NumPy 2 uses Accelerate, conda's NumPy links a system
  BLAS): :func:`gemm_loops`, the same signature and meaning, compiled into the kernels instead.
  ``FASTMLP_BLAS=loops`` in the environment forces them (tests, comparisons).

:data:`BLAS` says which (``BLAS.describe()`` for headers and benchmark labels). A kernel that
calls ``gemm`` and is cached on disk must be compiled under a name that includes ``BLAS.tag``:
Numba's cache key does not see which of the two its code calls.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import llvmlite.binding as llvm_binding
import numba
import numpy as np
from llvmlite import ir
from numba import types, uintp
from numba.core import cgutils
from numba.extending import intrinsic

from .runtime import SERIAL_JIT

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS's enum values
# (library file pattern, symbol prefix and suffix around "sgemm"/"dgemm", 64-bit ints?), in
# the order tried: NumPy 2 wheels, then NumPy 1.26 wheels, then builds without 64-bit ints
_KNOWN = (
    ("*scipy_openblas64*", "scipy_cblas_", "64_", True),
    ("*openblas64*", "cblas_", "64_", True),
    ("*scipy_openblas*", "scipy_cblas_", "", False),
    ("*openblas*", "cblas_", "", False),
)


@dataclass(frozen=True)
class BlasInfo:
    """What ``gemm`` calls: ``found`` (NumPy's OpenBLAS) or not (Numba loops), the library file,
    the two symbols, whether sizes are 64-bit, and ``tag``: a name fragment that tells the two
    apart (and one symbol from another) for compiled kernels' cache names."""

    found: bool
    library: str | None = None
    sgemm: str | None = None
    dgemm: str | None = None
    int64: bool = True
    why: str = ""
    threads_symbols: tuple[str, str] | None = None  # (get, set) of OpenBLAS's thread count

    @property
    def tag(self) -> str:
        # the symbol's name says its ABI too (64-bit sizes or not), and a cache built with
        # another NumPy's symbol is not loaded in its place
        return f"blas_{self.sgemm}" if self.found else "loops"

    def describe(self) -> str:
        """One line: which gemm the compiled kernels call."""
        if not self.found:
            return f"gemm: Numba loops ({self.why})"
        return f"gemm: {self.sgemm}/{self.dgemm} from {os.path.basename(self.library or '')}"


def _library_dirs() -> list[str]:
    # where NumPy's wheels keep their bundled libraries (Linux, Windows; macOS x86-64)
    root = os.path.dirname(np.__file__)
    return [os.path.join(root, "..", "numpy.libs"), os.path.join(root, ".libs"),
            os.path.join(root, ".dylibs")]


def _find() -> BlasInfo:
    if os.environ.get("FASTMLP_BLAS", "").lower() == "loops":
        return BlasInfo(False, why="FASTMLP_BLAS=loops")
    tried: set[tuple[str, str, str]] = set()
    for pattern, prefix, suffix, int64 in _KNOWN:
        names = [f"{prefix}{p}gemm{suffix}" for p in "sd"]
        for directory in _library_dirs():
            for path in sorted(glob.glob(os.path.join(directory, pattern))):
                path = os.path.realpath(path)
                if (path, prefix, suffix) in tried:
                    continue
                tried.add((path, prefix, suffix))
                try:
                    lib = ctypes.CDLL(path)  # NumPy has loaded it: this finds it again
                except OSError:
                    continue
                if not all(hasattr(lib, name) for name in names):
                    continue
                llvm_binding.load_library_permanently(path)  # where LLVM looks symbols up
                if all(llvm_binding.address_of_symbol(name) for name in names):
                    lib_prefix = prefix.removesuffix("cblas_")
                    threads = tuple(f"{lib_prefix}openblas_{verb}_num_threads{suffix}"
                                    for verb in ("get", "set"))
                    found = all(hasattr(lib, name) for name in threads)
                    return BlasInfo(True, path, names[0], names[1], int64,
                                    threads_symbols=threads if found else None)
    return BlasInfo(False, why="no OpenBLAS bundled with NumPy")


BLAS = _find()


def _thread_count_functions():
    if BLAS.threads_symbols is None:
        return None
    lib = ctypes.CDLL(BLAS.library)
    get, set_ = (getattr(lib, name) for name in BLAS.threads_symbols)
    get.restype, get.argtypes = ctypes.c_int, []
    set_.restype, set_.argtypes = None, [ctypes.c_int]
    return get, set_


_THREAD_COUNT = _thread_count_functions()


@contextmanager
def threads(n: int) -> Iterator[None]:
    """OpenBLAS's products on ``n`` threads while inside (its count is process-wide: restored
    on the way out); a no-op without OpenBLAS. The count changes the last bits of a product
    (measured: float32 100×784·784×300 on 1 and 2 threads), not only its speed."""
    if _THREAD_COUNT is None:
        yield
        return
    get, set_ = _THREAD_COUNT
    before = get()
    if before == n:
        yield
        return
    set_(n)
    try:
        yield
    finally:
        set_(before)


TILE = 256  # columns of C per panel of gemm_loops: its tile of four rows, 4·TILE, stays in L1


@numba.njit(**SERIAL_JIT)
def _sweep4x4(T, b, q0, ldb, w, x00, x01, x02, x03, x10, x11, x12, x13, x20, x21, x22, x23, x30,
              x31, x32, x33):
    # T[r·TILE + t] += Σ_e x_re · b[q0 + e·ldb + t] for the tile's four rows r, t < w: sixteen
    # products per four loads of b. T's rows lie TILE (a constant) apart, so LLVM vectorises the
    # sweep with one runtime alias check (rows of C a runtime stride apart ran as scalar code)
    step = uintp(ldb)
    for tt in range(w):
        t = uintp(tt)
        q = uintp(q0 + tt)
        s0, s1, s2, s3 = b[q], b[q + step], b[q + 2 * step], b[q + 3 * step]
        T[t] += (x00 * s0 + x01 * s1) + (x02 * s2 + x03 * s3)
        T[t + TILE] += (x10 * s0 + x11 * s1) + (x12 * s2 + x13 * s3)
        T[t + 2 * TILE] += (x20 * s0 + x21 * s1) + (x22 * s2 + x23 * s3)
        T[t + 3 * TILE] += (x30 * s0 + x31 * s1) + (x32 * s2 + x33 * s3)


@numba.njit(**SERIAL_JIT)
def _sweep4x1(T, b, q0, w, x0, x1, x2, x3):
    # _sweep4x4 for one row of b (the last k mod 4)
    for tt in range(w):
        t = uintp(tt)
        s0 = b[uintp(q0 + tt)]
        T[t] += x0 * s0
        T[t + TILE] += x1 * s0
        T[t + 2 * TILE] += x2 * s0
        T[t + 3 * TILE] += x3 * s0


@numba.njit(**SERIAL_JIT)
def _a_at(a, a_off, lda, transa, m, i, p, zero):
    # op(A)[i, p], zero past the last row (a tile's missing rows)
    if i >= m:
        return zero
    return a[uintp(a_off + p * lda + i)] if transa else a[uintp(a_off + i * lda + p)]


@numba.njit(**SERIAL_JIT)
def gemm_loops(transa, transb, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off,
               ldc):
    """:func:`gemm` in Numba loops (the fallback). A, B, C: C-contiguous arrays of any shape.
    op(B) = B (what the kernels call): per panel of TILE columns, four rows of C at a time are
    summed in an L1 tile, four terms per sweep (the compiled minibatch epoch's own products
    before kernels/blas.py, yet measured at about half their speed: 17-24 GFLOP/s in float32
    against their 37-40 and OpenBLAS's 67-81; not found why), then C ← alpha·sum + beta·C.
    op(B) = Bᵀ: a dot product per element."""
    zero = C.dtype.type(0)
    a = A.reshape(-1)
    b = B.reshape(-1)
    c = C.reshape(-1)
    T = np.empty(4 * TILE, C.dtype)
    for j0 in range(0, n, TILE):
        w = min(TILE, n - j0)
        for i0 in range(0, m, 4):
            rows = min(4, m - i0)
            if transb:
                for r in range(rows):
                    for t in range(w):
                        acc = zero
                        for p in range(k):
                            acc += (_a_at(a, a_off, lda, transa, m, i0 + r, p, zero)
                                    * b[uintp(b_off + (j0 + t) * ldb + p)])
                        T[r * TILE + t] = acc
            else:
                for t in range(4 * TILE):
                    T[t] = zero
                i1, i2, i3 = i0 + 1, i0 + 2, i0 + 3
                p = 0
                while p + 4 <= k:
                    _sweep4x4(T, b, b_off + p * ldb + j0, ldb, w,
                              _a_at(a, a_off, lda, transa, m, i0, p, zero),
                              _a_at(a, a_off, lda, transa, m, i0, p + 1, zero),
                              _a_at(a, a_off, lda, transa, m, i0, p + 2, zero),
                              _a_at(a, a_off, lda, transa, m, i0, p + 3, zero),
                              _a_at(a, a_off, lda, transa, m, i1, p, zero),
                              _a_at(a, a_off, lda, transa, m, i1, p + 1, zero),
                              _a_at(a, a_off, lda, transa, m, i1, p + 2, zero),
                              _a_at(a, a_off, lda, transa, m, i1, p + 3, zero),
                              _a_at(a, a_off, lda, transa, m, i2, p, zero),
                              _a_at(a, a_off, lda, transa, m, i2, p + 1, zero),
                              _a_at(a, a_off, lda, transa, m, i2, p + 2, zero),
                              _a_at(a, a_off, lda, transa, m, i2, p + 3, zero),
                              _a_at(a, a_off, lda, transa, m, i3, p, zero),
                              _a_at(a, a_off, lda, transa, m, i3, p + 1, zero),
                              _a_at(a, a_off, lda, transa, m, i3, p + 2, zero),
                              _a_at(a, a_off, lda, transa, m, i3, p + 3, zero))
                    p += 4
                while p < k:
                    _sweep4x1(T, b, b_off + p * ldb + j0, w,
                              _a_at(a, a_off, lda, transa, m, i0, p, zero),
                              _a_at(a, a_off, lda, transa, m, i1, p, zero),
                              _a_at(a, a_off, lda, transa, m, i2, p, zero),
                              _a_at(a, a_off, lda, transa, m, i3, p, zero))
                    p += 1
            for r in range(rows):
                row = c_off + (i0 + r) * ldc + j0
                for t in range(w):
                    at = uintp(row + t)
                    if beta == zero:  # BLAS's rule: what C held is not read
                        c[at] = alpha * T[r * TILE + t]
                    else:
                        c[at] = alpha * T[r * TILE + t] + beta * c[at]


def _blas_int(builder, context, value, fromty, int64: bool):
    # a size or leading dimension as the library's integer (64- or 32-bit)
    wide = context.cast(builder, value, fromty, types.int64)
    return wide if int64 else builder.trunc(wide, ir.IntType(32))


def _data_at(context, builder, arrty, arr, offty, off):
    # the address of element ``off`` of array ``arr``, as void*
    data = context.make_array(arrty)(context, builder, arr).data
    at = builder.gep(data, [context.cast(builder, off, offty, types.intp)])
    return builder.bitcast(at, ir.IntType(8).as_pointer())


@intrinsic
def gemm_blas(typingctx, transa, transb, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C,
              c_off, ldc):
    """:func:`gemm` as a call of the CBLAS symbol found (:data:`BLAS`); only where found."""
    arrays = (A, B, C)
    if not all(isinstance(t, types.Array) for t in arrays):
        return None
    dtype = C.dtype
    if dtype not in (types.float32, types.float64) or any(t.dtype != dtype for t in arrays):
        return None
    args = (transa, transb, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off, ldc)
    sig = types.void(*args)
    symbol = BLAS.sgemm if dtype == types.float32 else BLAS.dgemm
    int64 = BLAS.int64

    def codegen(context, builder, signature, values):
        tys = signature.args
        fp = context.get_value_type(dtype)
        bint = ir.IntType(64 if int64 else 32)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, bint, bint, bint, fp, i8p, bint,
                                               i8p, bint, fp, i8p, bint])
        fn = cgutils.get_or_insert_function(builder.module, fnty, symbol)

        def size(i):
            return _blas_int(builder, context, values[i], tys[i], int64)

        def flag(i):
            on = context.cast(builder, values[i], tys[i], types.boolean)
            return builder.select(on, i32(TRANS), i32(NO_TRANS))

        def scalar(i):
            return context.cast(builder, values[i], tys[i], dtype)

        def data(i):
            return _data_at(context, builder, tys[i], values[i], tys[i + 1], values[i + 1])

        builder.call(fn, [i32(ROW_MAJOR), flag(0), flag(1), size(2), size(3), size(4), scalar(5),
                          data(6), size(8), data(9), size(11), scalar(12), data(13), size(15)])
        return context.get_dummy_value()

    return sig, codegen


# what the kernels call: chosen once (see the module's docstring)
gemm = gemm_blas if BLAS.found else gemm_loops
