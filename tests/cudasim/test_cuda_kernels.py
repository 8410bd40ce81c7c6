"""kernels.cuda against kernels.reference, under Numba's CUDA simulator (NumPy arrays, no GPU).

Cases are tiny (the simulator runs every thread in Python) but awkward: sizes that are not
multiples of the block, blocks fewer than rows, empty splits, n_grad of 0, some and all rows.
"""

import os

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba is imported, also when run without conftest

import itertools  # noqa: E402
import re  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from fastmlp.kernels import cuda as cuda_kernels  # noqa: E402
from fastmlp.kernels import reference  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.cudasim

RTOL = {np.float32: 1e-5, np.float64: 1e-12}  # of the tensor's largest reference magnitude
# (dtype, tensor) -> worst relative error seen; conftest prints it in the terminal summary
MAX_ERRORS: dict[tuple[str, str], float] = {}


def test_runs_on_the_simulator():
    assert numba.config.ENABLE_CUDASIM, "NUMBA_ENABLE_CUDASIM was not set before numba's import"


def check(name, got, want, dtype, terms=0.0):
    """Assert got ≈ want and record the error (printed per case).

    The error is relative to max |want|, or to ``terms`` (the largest Σ|summand| behind an entry)
    when larger: the gradient sums cancel (Σ_k do_k = 0), so max |want| can be far below the size
    of what was added up, which is what rounding error scales with.
    """
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, name
    if got.size == 0:
        return
    scale = max(float(np.abs(want).max()), terms, 1e-6)
    err = float(np.abs(got - want).max()) / scale
    key = (np.dtype(dtype).name, name)
    MAX_ERRORS[key] = max(MAX_ERRORS.get(key, 0.0), err)
    print(f"{name}: max abs {err * scale:.2e}, relative {err:.2e}")
    assert err <= RTOL[dtype], f"{name}: relative error {err:.3e} > {RTOL[dtype]:.0e}"


def make_case(N, H, K, dtype, seed, label_dtype=np.int64):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(N, H)).astype(dtype)
    bh = (0.5 * rng.normal(size=(1, H))).astype(dtype)
    Wo = (rng.normal(size=(H, K)) / np.sqrt(H)).astype(dtype)
    bo = (0.1 * rng.normal(size=(1, K))).astype(dtype)
    y = rng.integers(0, K, size=N).astype(label_dtype)
    return Z, bh, Wo, bo, y


def run_both(Z, bh, Wo, bo, y, ends, n_grad, activation, **launch):
    """(reference outputs, kernel outputs), each a dict of Z, dWo, dbo, dbh, stats."""
    H, K = Wo.shape
    dtype = Z.dtype
    out = []
    for fn, kw in ((reference.head, {}), (cuda_kernels.head, launch)):
        # NaN sentinels: gradients must be left alone when n_grad == 0, stats always written
        o = {
            "Z": Z.copy(),
            "dWo": np.full((H, K), np.nan, dtype),
            "dbo": np.full((1, K), np.nan, dtype),
            "dbh": np.full((1, H), np.nan, dtype),
            "stats": np.full((len(ends), 2), np.nan),
        }
        fn(o["Z"], bh, Wo, bo, y, ends, n_grad, activation, o["dWo"], o["dbo"], o["dbh"],
           o["stats"], **kw)
        out.append(o)
    return out


def compare(ref, got, inputs, n_grad, activation, dtype, gradient_terms):
    """Kernel outputs against the reference's; ``gradient_terms``: the head_gradient_terms
    fixture (tests/conftest.py), the summed magnitudes that rounding error scales with."""
    Z, bh, Wo, bo, y = inputs
    terms = gradient_terms(dict(Z=Z, bh=bh, Wo=Wo, bo=bo, y=y), n_grad, activation)
    # rows [n_grad, N) of Z are unspecified (reference.head): only the dz rows are compared
    check("dz", got["Z"][:n_grad], ref["Z"][:n_grad], dtype, terms.get("dz", 0.0))
    check("loss", got["stats"][:, 0], ref["stats"][:, 0], dtype)
    np.testing.assert_array_equal(got["stats"][:, 1], ref["stats"][:, 1], err_msg="correct")
    if n_grad == 0:
        for name in ("dWo", "dbo", "dbh"):
            assert np.isnan(got[name]).all(), f"{name} written although n_grad == 0"
    else:
        for name in ("dWo", "dbo", "dbh"):
            check(name, got[name], ref[name], dtype, terms[name])


SHAPES = list(itertools.product((1, 7, 13), (1, 7, 33), (2, 10)))
GRADS = ("none", "some", "all")
# Every shape × n_grad mode × dtype; the activation alternates so that each shape meets both
# (the full product would double the simulator's time, ~1 min, for little extra coverage).
HEAD_CASES = [
    pytest.param(N, H, K, grad, ("relu", "sigmoid")[(c + g + d) % 2], dtype,
                 id=f"N{N}-H{H}-K{K}-{grad}-{('relu', 'sigmoid')[(c + g + d) % 2]}-"
                    f"{np.dtype(dtype).name}")
    for c, (N, H, K) in enumerate(SHAPES)
    for g, grad in enumerate(GRADS)
    for d, dtype in enumerate((np.float32, np.float64))
]


@pytest.mark.parametrize(("N", "H", "K", "grad", "activation", "dtype"), HEAD_CASES)
def test_head_matches_reference(N, H, K, grad, activation, dtype, head_gradient_terms):
    case = SHAPES.index((N, H, K))
    n_grad = {"none": 0, "some": (N + 1) // 2, "all": N}[grad]
    m = (N + 1) // 3
    # three splits, always at least one empty, the cut points varying with the case
    ends = [(m, m, N), (0, m, N), (m, N, N)][(case + GRADS.index(grad)) % 3]
    ends = ends if case % 2 else np.asarray(ends)  # tuples and arrays both accepted
    tpb = (2, 4, 5)[case % 3]
    blocks = None if K == 2 else max(1, N // 3)  # default (≤ 3) or fewer blocks than rows
    label_dtype = (np.int64, np.int32)[case % 2]
    inputs = make_case(N, H, K, dtype, seed=case, label_dtype=label_dtype)
    print(f"N={N} H={H} K={K} n_grad={n_grad} ends={tuple(ends)} tpb={tpb} blocks={blocks}")
    ref, got = run_both(*inputs, ends, n_grad, activation, threads_per_block=tpb, blocks=blocks)
    compare(ref, got, inputs, n_grad, activation, dtype, head_gradient_terms)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_head_many_blocks(activation, dtype, head_gradient_terms):
    N, H, K, n_grad = 37, 20, 10, 23
    inputs = make_case(N, H, K, dtype, seed=37)
    ref, got = run_both(*inputs, (n_grad, 30, N), n_grad, activation, threads_per_block=5,
                        blocks=6)
    compare(ref, got, inputs, n_grad, activation, dtype, head_gradient_terms)


# The tiled layout (kernels/cuda.py): tiles of tile_rows rows, one warp per row (lanes strided over
# H, logits reduced by shuffles; a block of fewer than 32 threads, or a last warp of fewer, is a
# partial warp), then the block's threads strided over H for the tile's gradients. Each case:
# N, H, K, threads per block, blocks, tile rows; picked so that rows are not a multiple of the
# tile, H is not a multiple of 32 (nor of the block), K is odd, tiles outnumber blocks (grid
# stride), the training rows end inside a tile, and warps go idle in a tile's last rows.
TILE_CASES = [
    # tiny blocks: every warp partial, many tiles per block
    (13, 7, 3, 1, 2, 3),
    (13, 10, 7, 2, 3, 4),
    (11, 9, 11, 3, 4, 1),
    (9, 5, 1, 2, 2, 2),  # a single class: softmax is 1, do is 0
    (6, 4, 16, 5, 1, 4),  # K = MAX_CLASSES
    # full warps (32 lanes), H past one and two warp widths
    (7, 45, 5, 32, 2, 3),
    (5, 70, 10, 64, 2, 4),  # two warps: one idles in each tile's odd rows
    # a full warp and a partial one of 8 lanes
    (6, 37, 7, 40, 2, 3),
    # a tile larger than N: one tile, most blocks idle
    (5, 33, 3, 4, 3, 8),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("N", "H", "K", "tpb", "blocks", "tile"), TILE_CASES,
                         ids=[f"N{c[0]}-H{c[1]}-K{c[2]}-t{c[3]}-b{c[4]}-tile{c[5]}"
                              for c in TILE_CASES])
def test_head_tiles_match_reference(N, H, K, tpb, blocks, tile, dtype, head_gradient_terms):
    case = TILE_CASES.index((N, H, K, tpb, blocks, tile))
    activation = ("relu", "sigmoid")[case % 2]
    n_grad = [N // 2 + 1, N, 0][case % 3] if case else N - 1  # ends inside a tile mostly
    ends = (n_grad, N)
    inputs = make_case(N, H, K, dtype, seed=100 + case)
    launch = {"threads_per_block": tpb, "blocks": blocks, "tile_rows": tile}
    print(f"N={N} H={H} K={K} n_grad={n_grad} {launch} {activation}")
    ref, got = run_both(*inputs, ends, n_grad, activation, **launch)
    compare(ref, got, inputs, n_grad, activation, dtype, head_gradient_terms)
    # the second pass sums the partials in a fixed order: a rerun gives the very same bits
    _, again = run_both(*inputs, ends, n_grad, activation, **launch)
    for name in ("Z", "dWo", "dbo", "dbh", "stats"):
        np.testing.assert_array_equal(again[name], got[name], err_msg=name)


def test_head_partials_layout():
    # dWo partials are [block, k, j] (H fastest: written coalesced), stats one row per warp
    cuda_kernels._PARTIALS.clear()
    N, H, K = 6, 5, 3
    inputs = make_case(N, H, K, np.float64, seed=3)
    run_both(*inputs, (N,), N, "relu", threads_per_block=40, blocks=2, tile_rows=2)
    (parts,) = cuda_kernels._PARTIALS.values()
    assert parts.dWo.shape == (2, K, H)
    assert parts.dbh.shape == (2, H) and parts.dbo.shape == (2, K)
    assert parts.stats.shape == (2 * 2, 1, 2)  # 2 blocks of 2 warps (32 lanes and 8)


@pytest.mark.parametrize(("N", "n_warps", "max_blocks", "want"), [
    (60000, 8, 264, 64),  # full batch on an H100/H200: TILE_ROWS
    (100, 8, 264, 8),  # a minibatch: one row per warp, so that more blocks get tiles
    (1000, 8, 16, 64),
    (300, 8, 16, 24),  # whole rows per warp
    (7, 1, 3, 3),
    (0, 1, 3, 1),
])
def test_head_default_tile_rows(N, n_warps, max_blocks, want):
    assert cuda_kernels._tile_rows(N, n_warps, max_blocks) == want


def test_head_rejects_tiles_too_large_for_shared_memory():
    N, H, K = 3, 4, 16
    Z, bh, Wo, bo, y = make_case(N, H, K, np.float64, seed=0)
    args = (np.zeros((H, K)), np.zeros((1, K)), np.zeros((1, H)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="use smaller tiles"):
        cuda_kernels.head(Z, bh, Wo, bo, y, (N,), N, "relu", *args, tile_rows=1000)
    with pytest.raises(ValueError, match="rows per tile"):
        cuda_kernels.head(Z, bh, Wo, bo, y, (N,), N, "relu", *args, tile_rows=-1)


def test_head_relu_passes_nan_to_the_loss():
    # as max(z, 0) does in the reference: a NaN weight must reach the divergence guard
    N, H, K = 7, 6, 3
    Z, bh, Wo, bo, y = make_case(N, H, K, np.float64, seed=7)
    Z[N - 1, 2] = np.nan  # a test row
    ref, got = run_both(Z, bh, Wo, bo, y, (N - 2, N - 1, N), N - 2, "relu",
                        threads_per_block=2, blocks=3)
    np.testing.assert_array_equal(np.isnan(got["stats"]), np.isnan(ref["stats"]))
    assert np.isnan(got["stats"][2, 0]) and np.isfinite(got["stats"][:2]).all()


def test_head_default_launch_and_extreme_logits(head_gradient_terms):
    # |z| and |o| in the hundreds: exp would overflow without the stable sigmoid and the max
    # shift in logsumexp; default launch config
    N, H, K = 5, 6, 10
    Z, bh, Wo, bo, y = make_case(N, H, K, np.float64, seed=5)
    Z *= 400.0
    Wo *= 800.0
    ref, got = run_both(Z, bh, Wo, bo, y, (2, 5, 5), 3, "sigmoid")
    compare(ref, got, (Z, bh, Wo, bo, y), 3, "sigmoid", np.float64, head_gradient_terms)
    assert np.isfinite(got["stats"]).all() and np.isfinite(got["Z"]).all()


def test_head_argmax_ties_take_the_first_class(head_gradient_terms):
    # all-zero weights: every logit equals, so the prediction is class 0 as with np.argmax
    N, H, K = 4, 3, 10
    Z, bh, _, _, _ = make_case(N, H, K, np.float64, seed=1)
    Wo, bo = np.zeros((H, K)), np.zeros((1, K))
    y = np.array([0, 1, 0, 9])
    ref, got = run_both(Z, bh, Wo, bo, y, (N,), 2, "relu", threads_per_block=2, blocks=2)
    compare(ref, got, (Z, bh, Wo, bo, y), 2, "relu", np.float64, head_gradient_terms)
    assert got["stats"][0, 1] == 2


def test_partials_are_cached_and_reused(head_gradient_terms):
    cuda_kernels._PARTIALS.clear()
    N, H, K, n_grad, ends = 6, 5, 10, 4, (4, 6, 6)
    inputs = make_case(N, H, K, np.float32, seed=11)
    launch = {"threads_per_block": 2, "blocks": 3}
    ref, got = run_both(*inputs, ends, n_grad, "relu", **launch)
    compare(ref, got, inputs, n_grad, "relu", np.float32, head_gradient_terms)
    cached = dict(cuda_kernels._PARTIALS)
    assert len(cached) == 1
    (parts,) = cached.values()
    buffers = [parts.dWo, parts.dbh, parts.dbo, parts.stats]
    # a second call allocates nothing new, and the kernel itself zeroes the stale partials
    for buffer in buffers:
        buffer[...] = np.nan
    ref, got = run_both(*inputs, ends, n_grad, "relu", **launch)
    compare(ref, got, inputs, n_grad, "relu", np.float32, head_gradient_terms)
    assert cuda_kernels._PARTIALS == cached
    (again,) = cuda_kernels._PARTIALS.values()
    assert again is parts
    assert all(a is b for a, b in zip(buffers, again[:4], strict=True))
    # an evaluation-only call zeroes and sums the stats partials (the gradients are not read)
    for buffer in buffers:
        buffer[...] = np.nan
    ref, got = run_both(*inputs, ends, 0, "relu", **launch)
    compare(ref, got, inputs, 0, "relu", np.float32, head_gradient_terms)
    # more blocks than rows: the idle blocks zero their partials too (the host sums all of them)
    idle = {"threads_per_block": 2, "blocks": N + 3}
    run_both(*inputs, ends, n_grad, "relu", **idle)
    for parts in cuda_kernels._PARTIALS.values():
        for buffer in parts[:4]:
            buffer[...] = np.nan
    for n in (n_grad, 0, n_grad):
        ref, got = run_both(*inputs, ends, n, "relu", **idle)
        compare(ref, got, inputs, n, "relu", np.float32, head_gradient_terms)
    # another dtype gets its own buffers
    run_both(*make_case(N, H, K, np.float64, seed=11), ends, n_grad, "relu", **launch)
    assert len(cuda_kernels._PARTIALS) == 3


def test_partials_are_per_host_thread(head_gradient_terms):
    # two host threads training same-shape models must not share partials (the CPU kernels'
    # concurrency test covers the race itself; the simulator is no place for concurrent launches)
    cuda_kernels._PARTIALS.clear()
    N, H, K, n_grad, ends = 6, 5, 10, 4, (4, 6, 6)
    inputs = make_case(N, H, K, np.float64, seed=12)
    launch = {"threads_per_block": 2, "blocks": 3}
    with ThreadPoolExecutor(1) as pool:  # one after the other, from two threads
        for ref, got in (run_both(*inputs, ends, n_grad, "relu", **launch),
                         pool.submit(run_both, *inputs, ends, n_grad, "relu", **launch).result()):
            compare(ref, got, inputs, n_grad, "relu", np.float64, head_gradient_terms)
    assert len(cuda_kernels._PARTIALS) == 2


def test_momentum_rejects_bad_arguments(assert_momentum_rejects_bad_arguments):
    assert_momentum_rejects_bad_arguments(cuda_kernels.momentum)


def test_head_rejects_bad_arguments(assert_head_rejects_bad_arguments):
    # the checks every form of head makes (tests/conftest.py), and the CUDA head's own limit
    assert_head_rejects_bad_arguments(cuda_kernels.head)
    N, H, K = 3, 4, 17
    Z, bh, Wo, bo, y = make_case(N, H, K, np.float64, seed=0)
    args = (np.zeros((H, K)), np.zeros((1, K)), np.zeros((1, H)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="at most 16 classes"):
        cuda_kernels.head(Z, bh, Wo, bo, y, (N,), N, "relu", *args)
    K = 3
    Z, bh, Wo, bo, y = make_case(N, H, K, np.float64, seed=0)
    args = (np.zeros((H, K)), np.zeros((1, K)), np.zeros((1, H)), np.zeros((1, 2)))
    # the exact messages of the shared table (tests/conftest.py), on this file's own case
    with pytest.raises(ValueError, match=re.escape(f"finishing at N={N}, got [{N - 1}]")):
        cuda_kernels.head(Z, bh, Wo, bo, y, (N - 1,), N, "relu", *args)
    with pytest.raises(ValueError, match=re.escape(f"n_grad={N + 1} outside [0, N={N}]")):
        cuda_kernels.head(Z, bh, Wo, bo, y, (N,), N + 1, "relu", *args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("P", [1, 7, 1001])
@pytest.mark.parametrize(("tpb", "blocks"), [(2, 1), (5, 3), (None, None)])
def test_momentum_matches_reference(P, dtype, tpb, blocks):
    rng = np.random.default_rng(P)
    p, g, v = (rng.normal(size=P).astype(dtype) for _ in range(3))
    lr, mu = 0.1, 0.9
    want_p, want_v = p.copy(), v.copy()
    reference.momentum(want_p, g, want_v, lr, mu)
    cuda_kernels.momentum(p, g, v, lr, mu, threads_per_block=tpb, blocks=blocks)
    check("momentum v", v, want_v, dtype)
    check("momentum p", p, want_p, dtype)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(1, 6), H=st.integers(1, 9), K=st.integers(2, 12),
       grad_frac=st.floats(0, 1), scale=st.sampled_from([1e-3, 1.0, 50.0, 1e3]),
       activation=st.sampled_from(["relu", "sigmoid"]), tpb=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_head_property_random_shapes_and_extreme_values(N, H, K, grad_frac, scale, activation,
                                                        tpb, seed):
    # Hypothesis: any small shape, launch width and input scale (large ones push the stable
    # sigmoid and log-sum-exp to their limits) gives the reference's results, all finite.
    Z, bh, Wo, bo, y = make_case(N, H, K, np.float64, seed)
    Z *= scale
    n_grad = int(round(grad_frac * N))
    ends = (n_grad, (n_grad + N) // 2, N)
    ref, got = run_both(Z, bh, Wo, bo, y, ends, n_grad, activation, threads_per_block=tpb,
                        blocks=2)
    # Z: only the dz rows are specified; rows past n_grad are scratch
    got["dz"], ref["dz"] = got.pop("Z")[:n_grad], ref.pop("Z")[:n_grad]
    for name in ("dz", "stats") + (("dWo", "dbo", "dbh") if n_grad else ()):
        assert np.isfinite(got[name]).all(), name
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-9, atol=1e-9 * scale,
                                   err_msg=name)
