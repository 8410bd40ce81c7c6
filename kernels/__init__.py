"""Hot operations of the two-layer perceptron, each under one name in three forms.

- ``reference``: plain array code (NumPy, or CuPy through the array's own namespace), the oracle.
- ``cpu``: ``numba.njit(cache=True)`` kernels on NumPy arrays, each call split between threads
  by ``runtime.run_shares``.
- ``cuda``: ``numba.cuda.jit`` kernels with grid-stride loops (CuPy arrays, or NumPy arrays under
  the simulator).

The hot operations:

- ``hidden_to_loss``: everything between the two big matrix products, forward and back. From
  z = x·Wh (no bias) it runs the hidden layer's bias and activation, the output layer, the
  softmax cross-entropy and accuracy, and, for training rows, the backward pass down to dz (with
  dWo, dbo and dbh on the way). The name says the span: from the hidden layer to the loss (and,
  for training rows, back). It was called ``head``, which named neither end.
- ``momentum``: the optimiser step over flat buffers.
- ``sparse_matmul`` (Z = X·Wh) and ``sparse_matmul_t`` (dWh = Xᵀ·dZ) take X as a :class:`CSR`
  (built by ``sparse.csr``); their CPU forms are in ``sparse``, their references, the dense
  products of the same operands, in ``reference``.

Where each piece lives:

- ``pieces``: the arithmetic written once for the CPU kernels (momentum step, activation and its
  gradient, a row's log-sum-exp + argmax and softmax cross-entropy gradient, the flush of
  subnormals), inlined into ``cpu`` and ``steps`` (``sparse`` has products only).
- ``runtime``: the compile options, the one thread policy (``threads_for``) and the thread pool
  that runs a call's shares (``run_shares``), serial twins of the parallel kernels, the
  per-shape buffer cache (``Workspaces``) and the inventory of compiled kernels.
- ``steps``: whole small-batch training steps in one compiled call (CPU).
- ``sparse``: the CSR builder and the sparse products (CPU).
- ``fpenv``: flush-to-zero inside a kernel (x86).

What ``cuda`` can share, and what it cannot. numba.cuda types a kernel from its Python source
with its own target. It compiles a call to an ``@numba.njit(inline="always")`` piece (checked:
``cuda.compile_ptx`` for cc 8.0 with numba 0.68.1's numba.cuda, the piece inlined); a call to
a plain (not inlined) ``numba.njit`` function did not compile without a GPU there (numba tried
to start the CUDA driver), and ``numba-cuda``'s own package was not tried. So the pieces could
serve ``cuda`` as they are, but ``cuda`` does not use them, because its arithmetic differs on
purpose and would change the GPU's bits: it works per warp and per lane (shuffles, registers,
the softmax in shared memory in another order), its sigmoid is one-branch ``exp(-|x|)``, its
backward multiplies dh·(h·(1 − h)), and it flushes no subnormals. What
it shares is the argument checks here (``check_hidden_to_loss_args``, ``check_momentum_args``),
the activation codes and the references it is tested against.
"""

from itertools import pairwise
from typing import NamedTuple

import numpy as np

ACTIVATIONS = ("relu", "sigmoid")


def activation_id(name: str) -> int:
    """Integer code of an activation as the compiled kernels take it (0 relu, 1 sigmoid)."""
    return ACTIVATIONS.index(name)


def check_hidden_to_loss_args(Z, bh, Wo, bo, y, ends, n_grad: int, activation: str, dWo, dbo,
                              dbh, stats) -> tuple[int, ...] | None:
    """The checks every form of ``hidden_to_loss`` makes, from shapes and dtypes alone (no
    device sync).

    Returns the split ends as host integers, or None when ``ends`` lives on the GPU (checking
    its values would synchronise). ValueError for a bad shape or value, TypeError for a dtype.
    """
    if Z.ndim != 2 or Wo.ndim != 2:
        raise ValueError(f"Z and Wo must be 2-D, got shapes {Z.shape} and {Wo.shape}")
    N, H = Z.shape
    K = Wo.shape[1]
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose {' or '.join(ACTIVATIONS)}")
    if not 0 <= n_grad <= N:
        raise ValueError(f"n_grad={n_grad} outside [0, N={N}]")
    for name, a, shape in (("bh", bh, (1, H)), ("Wo", Wo, (H, K)), ("bo", bo, (1, K)),
                           ("y", y, (N,)), ("dWo", dWo, (H, K)), ("dbo", dbo, (1, K)),
                           ("dbh", dbh, (1, H))):
        if a.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if any(a.dtype != Z.dtype for a in (bh, Wo, bo, dWo, dbo, dbh)):
        raise TypeError(f"Z, bh, Wo, bo and the gradients must share one dtype ({Z.dtype})")
    if y.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer labels, got {y.dtype}")
    if stats.dtype != "float64":
        raise TypeError(f"stats must be float64, got {stats.dtype}")
    if hasattr(ends, "__cuda_array_interface__"):  # on the GPU: reading it would synchronise
        S, host = ends.shape[0], None
    else:
        host = tuple(int(e) for e in ends)
        if not host or host[-1] != N or any(b < a for a, b in pairwise((0, *host))):
            raise ValueError(f"ends must be non-decreasing split ends finishing at N={N}, "
                             f"got {list(host)}")
        S = len(host)
    if stats.shape != (S, 2):
        raise ValueError(f"stats must have shape ({S}, 2), got {stats.shape}")
    return host


def check_momentum_args(params, grads, velocity) -> None:
    """The checks every form of ``momentum`` makes: flat (P,) buffers of one shape (ValueError)
    and one dtype (TypeError); the compiled forms would otherwise run past the shorter ones."""
    if not (params.ndim == grads.ndim == velocity.ndim == 1):
        raise ValueError(f"momentum takes flat (P,) buffers, got shapes {params.shape}, "
                         f"{grads.shape} and {velocity.shape}")
    if not (params.shape == grads.shape == velocity.shape):
        raise ValueError(f"params, grads and velocity must have one shape, got {params.shape}, "
                         f"{grads.shape} and {velocity.shape}")
    if not (params.dtype == grads.dtype == velocity.dtype):
        raise TypeError(f"params, grads and velocity must share one dtype, got {params.dtype}, "
                        f"{grads.dtype} and {velocity.dtype}")


class CSR(NamedTuple):
    """Rows of an (N, F) matrix by their nonzero entries: row i's are ``indices[indptr[i] :
    indptr[i + 1]]`` (columns, increasing) and the same slice of ``values``. NaN counts as
    nonzero. ``indptr`` (N + 1,) int64, ``indices`` (nnz,) int32, ``values`` (nnz,)."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    n_cols: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.indptr.shape[0] - 1, self.n_cols

    def toarray(self) -> np.ndarray:
        """The dense (N, F) matrix (for references and tests)."""
        N, F = self.shape
        X = np.zeros((N, F), self.values.dtype)
        rows = np.repeat(np.arange(N), np.diff(self.indptr))
        X[rows, self.indices] = self.values
        return X


def check_sparse_args(out, X: CSR, B, out_shape: tuple[int, int], b_rows: int) -> None:
    """The checks both forms of the sparse products make: out of ``out_shape``, B (b_rows, H)
    (ValueError), out, B and X's values of one dtype (TypeError)."""
    if B.ndim != 2 or B.shape[0] != b_rows:
        raise ValueError(f"the dense operand must be ({b_rows}, H), got shape {B.shape}")
    if out.shape != out_shape:
        raise ValueError(f"out must have shape {out_shape}, got {out.shape}")
    if not (out.dtype == B.dtype == X.values.dtype):
        raise TypeError(f"out, the dense operand and X's values must share one dtype, got "
                        f"{out.dtype}, {B.dtype} and {X.values.dtype}")
