"""Shared test setup: the `gpu` marker, the separate CUDA-simulator process, and checks several
test files make (one-line CLI errors, PNG files, no temp files left behind).

The shared checks are plain functions handed out by fixtures of the same name: a test module
must not ``from conftest import ...``, since with more than one conftest.py loaded (``pytest
tests bench``) the module named ``conftest`` may be another directory's.
"""

import os
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import fastmlp  # noqa: F401  (first, before NumPy: it sets the thread-pool variables OpenBLAS reads)

# tests/cudasim needs NUMBA_ENABLE_CUDASIM=1 before numba is imported, so it runs in its own
# pytest process (see README): a plain `pytest` run leaves it out.
if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    collect_ignore = ["cudasim"]

# tests/cudacheck needs the simulator off and its own extra (numba-cuda, the nvcc wheel), and
# takes a while to compile: it too runs in its own process, only when its path is given.
_CUDACHECK = Path(__file__).resolve().parent / "cudacheck"


def _asks_for_cudacheck(config: pytest.Config) -> bool:
    """Whether a command-line path lies in tests/cudacheck (``pytest tests/cudacheck[/...]``)."""
    base = config.invocation_params.dir
    for arg in config.args:
        path = (base / arg.split("::")[0]).resolve()
        if path == _CUDACHECK or _CUDACHECK in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path == _CUDACHECK and not _asks_for_cudacheck(config):
        return True
    return None  # no opinion: the other rules decide


def _gpu_unavailable_reason() -> str | None:
    try:
        import cupy
    except Exception as exc:
        return f"needs a CUDA GPU with CuPy (pip install 'fastmlp[cuda12]'): {exc}"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "needs a CUDA GPU: CuPy sees none"
    except Exception as exc:
        return f"needs a CUDA GPU: {exc}"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    reason = _gpu_unavailable_reason()
    if reason is None and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        reason = "real-GPU tests do not run under the CUDA simulator"
    if reason is None:
        return
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason=reason))


# -- shared checks ------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _one_line_error(stderr: str, fragment: str) -> None:
    """The CLI error policy: one line ``fastmlp: error: ...`` naming ``fragment``, no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("fastmlp: error: "), stderr
    assert fragment in lines[0], stderr


def _png_size(path: Path) -> tuple[int, int]:
    """Assert ``path`` is a PNG (signature, IHDR first); return its (width, height)."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path}: no IHDR chunk first"
    return struct.unpack(">II", data[16:24])


def _no_temp_files(directory: Path) -> None:
    """Assert no atomic-write temp file (``*.tmp``) is left in ``directory``."""
    left = sorted(p.name for p in Path(directory).iterdir() if p.name.endswith(".tmp"))
    assert not left, f"temp files left in {directory}: {left}"


@pytest.fixture
def assert_one_line_error() -> Callable[[str, str], None]:
    """``assert_one_line_error(stderr, fragment)``: see :func:`_one_line_error`."""
    return _one_line_error


@pytest.fixture
def png_size() -> Callable[[Path], tuple[int, int]]:
    """``png_size(path)``: asserts a PNG, returns (width, height); see :func:`_png_size`."""
    return _png_size


@pytest.fixture
def assert_no_temp_files() -> Callable[[Path], None]:
    """``assert_no_temp_files(directory)``: see :func:`_no_temp_files`."""
    return _no_temp_files


def _good_head_arguments() -> dict:
    import numpy as np  # here, not at the top: fastmlp must be imported before NumPy

    N, H, K = 3, 4, 3
    rng = np.random.default_rng(0)
    return dict(Z=rng.normal(size=(N, H)), bh=np.zeros((1, H)), Wo=rng.normal(size=(H, K)),
                bo=np.zeros((1, K)), y=np.array([0, 1, 2]), ends=(N,), n_grad=N,
                activation="relu", dWo=np.zeros((H, K)), dbo=np.zeros((1, K)),
                dbh=np.zeros((1, H)), stats=np.zeros((1, 2)))


def _bad_head_arguments() -> dict:
    """What every form of kernels' head must refuse, with the same error (N, H, K = 3, 4, 3):
    case -> (changed arguments, exception, message fragment)."""
    import numpy as np

    return {
        "ends short of N": (dict(ends=(2,)), ValueError, "finishing at N=3, got [2]"),
        "ends decreasing": (dict(ends=(2, 1, 3), stats=np.zeros((3, 2))), ValueError,
                            "non-decreasing"),
        "negative end": (dict(ends=(-1, 3), stats=np.zeros((2, 2))), ValueError, "non-decreasing"),
        "no ends": (dict(ends=(), stats=np.zeros((0, 2))), ValueError, "got []"),
        "n_grad past N": (dict(n_grad=4), ValueError, "n_grad=4 outside [0, N=3]"),
        "negative n_grad": (dict(n_grad=-1), ValueError, "n_grad=-1 outside"),
        "unknown activation": (dict(activation="tanh"), ValueError, "unknown activation 'tanh'"),
        "Wo of other H": (dict(Wo=np.zeros((5, 3))), ValueError, "Wo must have shape (4, 3)"),
        "bh of other H": (dict(bh=np.zeros((1, 5))), ValueError, "bh must have shape (1, 4)"),
        "y of other N": (dict(y=np.array([0, 1])), ValueError, "y must have shape (3,)"),
        "dWo of other K": (dict(dWo=np.zeros((4, 2))), ValueError, "dWo must have shape (4, 3)"),
        "dWo 1-D": (dict(dWo=np.zeros(3)), ValueError, "dWo must have shape (4, 3)"),
        "bh 1-D": (dict(bh=np.zeros(4)), ValueError, "bh must have shape (1, 4)"),
        "dbo 1-D": (dict(dbo=np.zeros(3)), ValueError, "dbo must have shape (1, 3)"),
        "float32 bias": (dict(bh=np.zeros((1, 4), np.float32)), TypeError, "share one dtype"),
        "float labels": (dict(y=np.zeros(3)), TypeError, "y must hold integer labels"),
        "float32 stats": (dict(stats=np.zeros((1, 2), np.float32)), TypeError,
                          "stats must be float64"),
        "stats for other splits": (dict(stats=np.zeros((2, 2))), ValueError,
                                   "stats must have shape (1, 2)"),
    }


@pytest.fixture
def assert_head_rejects_bad_arguments() -> Callable[[Callable], None]:
    """``check(head)``: every case of :func:`_bad_head_arguments` raises its error, with its
    message."""
    def check(head: Callable) -> None:
        head(**_good_head_arguments())  # the baseline call is accepted
        for case, (changes, exc, fragment) in _bad_head_arguments().items():
            with pytest.raises(exc, match=re.escape(fragment)):
                head(**dict(_good_head_arguments(), **changes))
                pytest.fail(f"{case}: accepted")
    return check


def _bad_momentum_arguments() -> dict:
    """What every form of kernels' momentum must refuse (P = 4): case -> (changed buffers,
    exception, message fragment). The compiled forms would run past a shorter buffer."""
    import numpy as np

    return {
        "short velocity": (dict(velocity=np.zeros(3)), ValueError, "must have one shape"),
        "short grads": (dict(grads=np.zeros(2)), ValueError, "must have one shape"),
        "2-D params": (dict(params=np.zeros((2, 2))), ValueError, "flat (P,) buffers"),
        "float32 grads": (dict(grads=np.zeros(4, np.float32)), TypeError, "share one dtype"),
    }


@pytest.fixture
def assert_momentum_rejects_bad_arguments() -> Callable[[Callable], None]:
    """``check(momentum)``: every case of :func:`_bad_momentum_arguments` raises its error, with
    its message, and leaves the buffers untouched."""
    import numpy as np

    def check(momentum: Callable) -> None:
        for case, (changes, exc, fragment) in _bad_momentum_arguments().items():
            buffers = dict(dict(params=np.ones(4), grads=np.ones(4), velocity=np.ones(4)),
                           **changes)
            before = {name: b.copy() for name, b in buffers.items()}
            with pytest.raises(exc, match=re.escape(fragment)):
                momentum(**buffers, lr=0.1, mu=0.9)
                pytest.fail(f"{case}: accepted")
            for name, b in buffers.items():
                np.testing.assert_array_equal(b, before[name], err_msg=f"{case}: {name}")
    return check


def _head_gradient_terms(inputs, n_grad: int, activation: str) -> dict[str, float]:
    """Per output of the head, the largest Σ|summand| behind an entry (float64 recomputation).

    Rounding error scales with what was added up, not with the result: do = (p − onehot(y)) / n
    cancels when p ≈ 1 (its summands are p and 1), and dz, dbh, dWo and dbo are sums of such
    terms that cancel again (Σ_k do_k = 0). do's terms are therefore taken as (p + onehot(y)) / n,
    not |do|, which would miss the first cancellation. ``inputs``: Z, bh, Wo, bo, y by name.
    """
    import numpy as np
    from fastmlp.kernels import reference

    if n_grad == 0:
        return {}
    Z, bh, Wo, bo = (np.asarray(inputs[k], dtype=np.float64) for k in ("Z", "bh", "Wo", "bo"))
    y = np.asarray(inputs["y"])[:n_grad]
    h = np.empty((n_grad, Z.shape[1]))
    reference.ACTIVATION_FORWARD[activation](h, Z[:n_grad] + bh)
    do = np.empty((n_grad, Wo.shape[1]))
    reference.softmax_forward(do, h @ Wo + bo)
    do[np.arange(n_grad), y] += 1.0
    do /= n_grad
    dz = np.empty_like(h)
    reference.ACTIVATION_BACKWARD[activation](dz, do @ np.abs(Wo).T, h)
    dz = np.abs(dz)
    return {"dz": float(dz.max(initial=0.0)), "dbh": float(dz.sum(axis=0).max(initial=0.0)),
            "dWo": float((np.abs(h).T @ do).max(initial=0.0)),
            "dbo": float(do.sum(axis=0).max(initial=0.0))}


@pytest.fixture(scope="session")  # a plain function: Hypothesis tests may use it too
def head_gradient_terms() -> Callable[..., dict[str, float]]:
    """``terms(inputs, n_grad, activation)``: the scales the head's rounding errors grow with,
    shared by the CPU and the CUDA kernel tests."""
    return _head_gradient_terms


@pytest.fixture(scope="module", params=["dense", "sparse"])
def products(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test once on each path of the products X·Wh, Xᵀ·dZ: ``sparse="auto"`` (the
    default everywhere) then picks the dense ones for any rows, or the sparse ones for any rows
    (a density threshold above 1). Tests where the path matters (they train and check what
    training gives) opt in with ``@pytest.mark.usefixtures("products")``, not whole modules of
    bad-input rows that never reach a product; module-scoped fixtures that train ask for it too
    (module scope: their trainings are shared). Runs in subprocesses keep the real threshold."""
    import fastmlp.sparse

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastmlp.sparse, "SPARSE_MAX_DENSITY",
                      0.0 if request.param == "dense" else 1.01)
        yield request.param
