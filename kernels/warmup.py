"""A first run's fused head compiled in a second process while this one loads the data.

Every CPU run evaluates through the fused head (``cpu.hidden_to_loss``), the largest kernel to
compile (~3 s of a first run's ~6 s on the 2-core development machine). Where Numba's on-disk
cache holds no compilation of it yet, :func:`start` runs a Python process calling
``_compile_head(DTYPE)``: the head on a tiny batch, with the argument types a run passes, which
compiles its kernels as a run calls them and writes them to the cache. This process meanwhile
loads the data and compiles its other kernels; its first head call
(``fastmlp.backend.Backend.hidden_to_loss``) waits for the child (:func:`wait`), then loads
the head from the cache. Where the child fails, or is not done
within :data:`WAIT_SECONDS`, the head compiles here as it would have: the child only saves
time, never changes a result.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

WAIT_SECONDS = 120.0
_pending: subprocess.Popen | None = None
_lock = threading.Lock()  # runs on several threads (a sweep's) start and wait one at a time


def head_cached() -> bool:
    """Whether the head's kernel is compiled in this process or indexed in Numba's on-disk cache
    (any dtype: a float64 run after a float32 one compiles its own, as without the child)."""
    from . import cpu

    kernel = cpu._hidden_to_loss_tiles
    try:
        if kernel.signatures:
            return True
        index = kernel._cache._cache_file._index_path  # Numba's cache layout (internal)
    except AttributeError:
        return True  # cannot tell: start nothing
    return os.path.exists(index)


def start(dtype: str) -> bool:
    """Start compiling the head for ``dtype`` in a child process, unless one runs already or
    the head is cached (:func:`head_cached`). Returns whether a child was started."""
    global _pending
    with _lock:
        if _pending is not None or head_cached():
            return False
        return _start(dtype)


def _start(dtype: str) -> bool:
    global _pending
    try:
        _pending = subprocess.Popen(
            [sys.executable, "-c", "import sys; from fastmlp.kernels.warmup import "
             "_compile_head; _compile_head(sys.argv[1])", str(dtype)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:  # no child: the head compiles here when first called
        _pending = None
        return False
    return True


def wait() -> None:
    """Wait for the child :func:`start` started, if any (at most :data:`WAIT_SECONDS`, then it
    is stopped). Called before the head's first call."""
    global _pending
    with _lock:
        child, _pending = _pending, None
    if child is None:
        return
    try:
        child.wait(WAIT_SECONDS)
    except BaseException:  # timed out, or a signal's exception: the child is no longer needed
        child.kill()
        child.wait()
        if not isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
            raise


def stop() -> None:
    """Stop the child :func:`start` started, if it still runs (a run that ended before its
    first head call: an error in its data, say). Its cache files are written by renaming
    complete temporary files (Numba's), so a stopped child leaves none half-written."""
    global _pending
    with _lock:
        child, _pending = _pending, None
    if child is not None:
        child.kill()
        child.wait()


def _compile_head(dtype: str) -> None:
    # the head's kernels with the types a CPU run passes them (the model's (1, n) bias views,
    # int32 labels, float64 stats): a tiny batch's loss and gradients
    import numpy as np

    from . import cpu

    dt = np.dtype(dtype)
    H, K = 3, 2
    params, grads = np.zeros(2 * H + H * K + K, dt), np.zeros(2 * H + H * K + K, dt)
    bh, Wo, bo = (params[:H].reshape(1, H), params[H:H + H * K].reshape(H, K),
                  params[H + H * K:H + H * K + K].reshape(1, K))
    dbh, dWo, dbo = (grads[:H].reshape(1, H), grads[H:H + H * K].reshape(H, K),
                     grads[H + H * K:H + H * K + K].reshape(1, K))
    cpu.hidden_to_loss(np.zeros((2, H), dt), bh, Wo, bo, np.array([0, 1], np.int32), (2,), 2,
                       "relu", dWo, dbo, dbh, np.zeros((1, 2), np.float64))
