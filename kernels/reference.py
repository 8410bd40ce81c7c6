"""Reference implementations: plain array code, one small function per layer, outputs first.

These are the oracles the fused kernels are tested against and the unfused path of the model
(``fused=False``). They run on NumPy or CuPy arrays alike: each takes its array module from its
arguments, so the same code serves both. Shapes: N rows, F features, H hidden units, K classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import CSR, check_hidden_to_loss_args, check_momentum_args, check_sparse_args


def library(a: Any) -> str:
    """The top-level package that defines ``a``'s type ("numpy", "cupy", ...)."""
    return type(a).__module__.split(".")[0]


def namespace(*arrays: Any) -> Any:
    """The array module (numpy or cupy) of ``arrays``; a clear TypeError when they are mixed."""
    modules = {library(a) for a in arrays
               if hasattr(a, "__array__") or hasattr(a, "__cuda_array_interface__")}
    if len(modules) > 1:
        raise TypeError(
            f"arrays from different libraries were mixed ({', '.join(sorted(modules))}): move them "
            "to one device first, e.g. with cupy.asarray(...) or an explicit .get()"
        )
    if modules == {"cupy"}:
        import cupy

        return cupy
    return np


# -- layers -------------------------------------------------------------------------------------


def linear_forward(out, x, W, b) -> None:
    """out (N, M) = x (N, F) @ W (F, M) + b (1, M)."""
    xp = namespace(out, x, W, b)
    xp.matmul(x, W, out=out)
    out += b


def linear_backward(dx, dW, db, dout, x, W) -> None:
    """dW (F, M) = xᵀ dout, db (1, M) = Σ_rows dout, dx (N, F) = dout Wᵀ (skipped if dx is None)."""
    xp = namespace(dW, dout, x, W)
    xp.matmul(x.T, dout, out=dW)
    db[...] = dout.sum(axis=0, keepdims=True)
    if dx is not None:
        xp.matmul(dout, W.T, out=dx)


def relu_forward(h, z) -> None:
    """h (N, H) = max(z, 0); h may be z."""
    xp = namespace(h, z)
    xp.maximum(z, 0, out=h)


def relu_backward(dz, dh, h) -> None:
    """dz (N, H) = dh ∘ [h > 0], from the output h (so h may overwrite z)."""
    xp = namespace(dz, dh, h)
    xp.multiply(dh, h > 0, out=dz, dtype=dz.dtype)


def sigmoid_forward(h, z) -> None:
    """h (N, H) = 1 / (1 + exp(-z)), computed without overflow for large |z|; h may be z."""
    xp = namespace(h, z)
    e = xp.exp(-xp.abs(z))  # in (0, 1]: never overflows
    xp.divide(xp.where(z >= 0, 1, e), 1 + e, out=h, dtype=h.dtype)


def sigmoid_backward(dz, dh, h) -> None:
    """dz (N, H) = dh ∘ h ∘ (1 − h), from the output h."""
    xp = namespace(dz, dh, h)
    xp.multiply(dh, h * (1 - h), out=dz)


ACTIVATION_FORWARD = {"relu": relu_forward, "sigmoid": sigmoid_forward}
ACTIVATION_BACKWARD = {"relu": relu_backward, "sigmoid": sigmoid_backward}


def softmax_forward(probs, logits) -> None:
    """probs (N, K) = softmax(logits) row-wise, with the row maximum subtracted first."""
    xp = namespace(probs, logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    xp.exp(shifted, out=probs)
    probs /= probs.sum(axis=1, keepdims=True)


def crossentropy_forward(losses, logits, y) -> None:
    """losses (N,) = −log softmax(logits)[y] = logsumexp(logits) − logits[y], finite for any
    logits."""
    xp = namespace(losses, logits, y)
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + xp.log(xp.exp(logits - m).sum(axis=1))
    losses[...] = lse - logits[xp.arange(logits.shape[0]), y]


def softmax_crossentropy_backward(dlogits, probs, y, scale: float) -> None:
    """dlogits (N, K) = (probs − onehot(y)) · scale for integer labels y (N,); no one-hot matrix."""
    xp = namespace(dlogits, probs, y)
    dlogits[...] = probs
    dlogits[xp.arange(probs.shape[0]), y] -= 1
    dlogits *= dlogits.dtype.type(scale)


# -- the fused operations' references ---------------------------------------------------------


def hidden_to_loss(Z, bh, Wo, bo, y, ends, n_grad: int, activation: str, dWo, dbo, dbh,
                   stats) -> None:
    """Everything between the two big products, unfused: from the hidden layer to the loss and,
    for training rows, back to dz.

    Z (N, H): on entry x·Wh (no bias). On return rows [0, n_grad) hold dz = (do · Woᵀ) ∘ act′,
      with do = (softmax(o) − onehot(y)) / n_grad; rows [n_grad, N) are unspecified (here they
      hold h = act(z + bh); the fused kernels leave them, sparing a write of every eval row).
    bh (1, H), Wo (H, K), bo (1, K); y (N,) integer labels.
    ends (S,) integers: split s is rows [ends[s-1], ends[s]) (ends[-1] == N).
    stats (S, 2) float64, overwritten: per split, the summed cross-entropy and the correct count.
    dWo (H, K), dbo (1, K), dbh (1, H): overwritten with the gradients when n_grad > 0.
    Fused kernels may flush do and dz values below the dtype's smallest normal number
    (``finfo(dtype).tiny``) to zero, as the CPU kernel does; this reference keeps them.
    """
    xp = namespace(Z, bh, Wo, bo, y, stats)
    host = check_hidden_to_loss_args(Z, bh, Wo, bo, y, ends, n_grad, activation, dWo, dbo, dbh,
                                     stats)
    Z += bh
    ACTIVATION_FORWARD[activation](Z, Z)
    logits = xp.empty((Z.shape[0], Wo.shape[1]), dtype=Z.dtype)
    linear_forward(logits, Z, Wo, bo)
    losses = xp.empty(Z.shape[0], dtype=Z.dtype)
    crossentropy_forward(losses, logits, y)
    correct = logits.argmax(axis=1) == y
    start = 0
    for s, end in enumerate(host if host is not None else ends.tolist()):
        # device scalars assigned as they are: float() would synchronise CuPy once per split
        stats[s, 0] = losses[start:end].sum(dtype=xp.float64)
        stats[s, 1] = correct[start:end].sum()
        start = end
    if n_grad == 0:
        return
    h = Z[:n_grad]
    probs = xp.empty((n_grad, Wo.shape[1]), dtype=Z.dtype)
    softmax_forward(probs, logits[:n_grad])
    dlogits = probs  # in place: probs are not needed afterwards
    softmax_crossentropy_backward(dlogits, probs, y[:n_grad], 1.0 / n_grad)
    dh = xp.empty_like(h)
    linear_backward(dh, dWo, dbo, dlogits, h, Wo)
    ACTIVATION_BACKWARD[activation](h, dh, h)
    dbh[...] = h.sum(axis=0, keepdims=True)


def momentum(params, grads, velocity, lr: float, mu: float) -> None:
    """The course rule over flat buffers (P,): v ← mu·v + lr·g; p ← p − v."""
    check_momentum_args(params, grads, velocity)
    dtype = params.dtype.type
    velocity *= dtype(mu)
    velocity += dtype(lr) * grads
    params -= velocity



def sparse_matmul(out, X: CSR, W, bh=None) -> None:
    """out (N, H) = X (N, F, sparse) @ W (F, H) [+ bh (1, H)], as the dense product.

    With a non-finite W[k, j], this dense product gives NaN in every row, the sparse kernel only
    in rows whose x_k is nonzero (0·inf is skipped, not computed); the two agree for finite W.
    """
    N, F = X.shape
    check_sparse_args(out, X, W, (N, W.shape[1]), F)
    np.matmul(X.toarray(), W, out=out)
    if bh is not None:
        out += bh


def sparse_matmul_t(out, X: CSR, dZ, Xt=None) -> None:
    """out (F, H) = X (N, F, sparse)ᵀ @ dZ (N, H), as the dense product (``Xt``, the CPU
    kernel's transposed layout, is not needed here)."""
    N, F = X.shape
    check_sparse_args(out, X, dZ, (F, dZ.shape[1]), N)
    np.matmul(X.toarray().T, dZ, out=out)
