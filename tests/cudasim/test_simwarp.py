"""The simulator's warp shuffle (kernels/_simwarp.py) against the hardware's definition.

The CUDA head reduces its logits with ``cuda.shfl_down_sync``, which Numba's simulator lacks;
the shim must give what the GPU gives, or the simulator suite would test a different kernel.
"""

import os

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba is imported, also when run without conftest

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from fastmlp.kernels import _simwarp  # noqa: E402
from fastmlp.kernels import cuda as cuda_kernels  # noqa: E402, F401  (installs the shim)
from numba import cuda  # noqa: E402

pytestmark = pytest.mark.cudasim


@cuda.jit
def _shuffle_down(a, delta, out):
    tid = cuda.threadIdx.x
    lanes = min(32, cuda.blockDim.x - tid // 32 * 32)
    out[tid] = cuda.shfl_down_sync((1 << lanes) - 1, a[tid], delta)


@cuda.jit
def _tree_sum(a, out):
    # the head's reduction: into lane 0 of each warp, partial warps included
    tid = cuda.threadIdx.x
    lane = tid % 32
    lanes = min(32, cuda.blockDim.x - tid // 32 * 32)
    v = a[tid]
    off = 16
    while off > 0:
        t = cuda.shfl_down_sync((1 << lanes) - 1, v, off)
        if lane + off < lanes:
            v += t
        off //= 2
    out[tid] = v


@cuda.jit
def _lane_outside_mask(a, out):
    out[cuda.threadIdx.x] = cuda.shfl_down_sync(1, a[cuda.threadIdx.x], 1)


def test_installed_on_the_simulator():
    from numba.cuda.simulator import kernelapi

    assert hasattr(kernelapi.FakeCUDAModule, "shfl_down_sync")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("delta", [1, 3, 16])
def test_full_warp_matches_the_hardware(delta, dtype):
    # lane l gets lane l + delta, or its own value past lane 31; the dtype is kept
    a = np.arange(32, dtype=dtype) + 1
    out = np.zeros(32, dtype=dtype)
    _shuffle_down[1, 32](a, delta, out)
    want = np.where(np.arange(32) + delta < 32, np.roll(a, -delta), a)
    np.testing.assert_array_equal(out, want)


def test_partial_warp_reads_outside_the_mask_as_nan():
    # 5 lanes: the GPU leaves a read of a missing lane undefined; the shim poisons it
    a = np.arange(5, dtype=np.float64) + 1
    out = np.zeros(5)
    _shuffle_down[1, 5](a, 2, out)
    np.testing.assert_array_equal(out[:3], a[2:])
    assert np.isnan(out[3:]).all()


@pytest.mark.parametrize("threads", [1, 5, 32, 40, 64])
def test_tree_sums_each_warp_into_lane_0(threads):
    rng = np.random.default_rng(threads)
    a = rng.integers(-100, 100, threads).astype(np.float64)
    out = np.zeros(threads)
    _tree_sum[1, threads](a, out)
    for w in range(0, threads, 32):
        assert out[w] == a[w:w + 32].sum(), w


def test_a_lane_outside_its_own_mask_fails():
    a = np.zeros(2)
    with pytest.raises(RuntimeError, match="not in its mask"):
        _lane_outside_mask[1, 2](a, np.zeros(2))


def test_integers_get_a_poison_value():
    assert _simwarp._undefined(7) == _simwarp.INT_POISON
    assert np.isnan(_simwarp._undefined(np.float32(1.0)))
    assert isinstance(_simwarp._undefined(np.float32(1.0)), np.float32)
