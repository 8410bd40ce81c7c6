"""``numba.cuda.jit`` forms of the hot operations, same semantics as :mod:`.reference`.

On a GPU the wrappers take CuPy arrays and launch on CuPy's current stream, so they queue behind
the surrounding CuPy work without a host synchronisation. Under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, set before numba is imported) they take NumPy arrays, which is how
the kernels are tested without a GPU. Shapes: N rows, H hidden units, K classes, S splits.

``head`` works in tiles of rows (grid-stride over tiles), with no block-wide barrier per row.
Phase 1: one warp per row, its lanes strided over H (coalesced loads of Z), h = act(z + bh) and
the lane's share of the K logits in registers (K is compiled in), summed across the warp with
``shfl_down_sync``; lane 0 takes the softmax, loss and accuracy, and puts the row's do in shared
memory. One ``syncthreads`` per tile (do is double-buffered, so the next tile needs none
before it writes). Phase 2: the block's threads strided over H walk down the tile's training
rows: dz = (do Woᵀ) ∘ act′(h) into Z, and the tile's dWo = hᵀ do and dbh = Σ dz summed in
registers, added once per tile to per-block partials laid out [block, k, j] (coalesced over j).
No atomics: a second kernel, one launch, sums the partials over blocks in a fixed order (so
results are reproducible) and writes dWo transposed. The partial buffers are cached per shape,
stream and host thread, so a steady training loop allocates nothing and host threads calling at
once never share them; the device views the launches take are cached too (``_device_view``), so
a steady loop builds none. Each kernel is compiled per dtype with ``cache=True``. Under the
simulator, :mod:`._simwarp` supplies the shuffle it lacks.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any, NamedTuple

import numba
import numpy as np

# numba-cuda (0.30.4 and older) looks up np.row_stack when it first compiles a kernel, and NumPy
# 2.5 removed that alias of np.vstack: every compile then failed with AttributeError (seen on an
# H200 machine with numpy 2.5.2 and numba-cuda 0.30.4). Numba's CPU side already guards it.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

from numba import cuda  # noqa: E402  (after the alias above)

from . import activation_id, check_head_args, check_momentum_args
from .reference import namespace

MAX_CLASSES = 16  # K is compiled in (per-lane register arrays); the course has K = 10
WARP = 32
DEFAULT_THREADS = 256
# float64 head: 128 registers a thread (ptxas, sm_90), exactly the bound of 2 blocks of 256; 192
# threads (6 warps) a block leave it 168, room for a compiler that needs a few more
HEAD_THREADS_FLOAT64 = 192
BLOCKS_PER_SM = 2  # head: more blocks only buy more partial rows to zero and sum
TILE_ROWS = 64  # head: partials are added once per tile, so larger tiles add them less often
# momentum: bandwidth-bound, no partials: 3/4 of an SM's threads (8 blocks of 256 would bound it
# at 32 registers, and it takes 30 on sm_90: no margin; 6 bound it at 40)
MOMENTUM_BLOCKS_PER_SM = 6
REDUCE_BLOCKS_PER_SM = 4  # the head's second pass: a few thousand sums of n_blocks terms each
SIM_THREADS = 4  # simulator: few threads and blocks so tests cross block edges yet stay fast
SIM_BLOCKS = 3
MAX_STATIC_SHARED = 48 * 1024  # bytes a block may use without opting in to more


def _simulated() -> bool:
    return bool(numba.config.ENABLE_CUDASIM)


if _simulated():
    from . import _simwarp

    _simwarp.install()  # the simulator lacks the warp shuffle the head uses


@functools.cache
def _sm_count(device_id: int) -> int:
    """Multiprocessors of the current device; ``device_id``, the current device's id, is only the
    cache key (the simulator has no such attribute, so this stays untested without a GPU)."""
    return cuda.get_current_device().MULTIPROCESSOR_COUNT


def _default_threads(dtype=None) -> int:
    """Threads per block of a default launch (the float64 head: fewer, see
    HEAD_THREADS_FLOAT64)."""
    if _simulated():
        return SIM_THREADS
    return HEAD_THREADS_FLOAT64 if dtype == np.float64 else DEFAULT_THREADS


def _max_blocks(per_sm: int) -> int:
    """Blocks a default launch may use: ``per_sm`` per multiprocessor (simulator: SIM_BLOCKS)."""
    if _simulated():
        return SIM_BLOCKS
    return per_sm * _sm_count(cuda.get_current_device().id)


def _launch_config(n_work: int, per_sm: int, threads_per_block, blocks) -> tuple[int, int]:
    """(blocks, threads per block): explicit values win, else defaults for the platform."""
    tpb = threads_per_block or _default_threads()
    n_blocks = blocks or min(n_work, _max_blocks(per_sm))
    if tpb < 1 or n_blocks < 0:
        raise ValueError(f"bad launch configuration: {n_blocks} blocks of {tpb} threads")
    return max(n_blocks, 1), tpb  # one idle block rather than an invalid empty launch


def _tile_rows(N: int, n_warps: int, max_blocks: int) -> int:
    """Rows per head tile: TILE_ROWS, fewer where that would leave blocks idle (minibatches),
    rounded up to whole rows per warp."""
    per_warp = -(-N // (max_blocks * n_warps))
    return max(1, min(TILE_ROWS, per_warp * n_warps))


# -- streams and device views (CuPy path only) --------------------------------------------------

_STREAMS: dict[tuple[int, int], Any] = {}
_STREAMS_LIMIT = 64  # distinct (device, stream) pairs; beyond it something is churning


def _cupy_stream():
    """Numba's handle on CuPy's current stream (cached by device and pointer: pointer 0, the
    default stream, is one per device)."""
    import cupy

    ptr = cupy.cuda.get_current_stream().ptr
    key = (cupy.cuda.Device().id, ptr)
    stream = _STREAMS.get(key)
    if stream is None:
        if len(_STREAMS) >= _STREAMS_LIMIT:
            _STREAMS.clear()
        stream = cuda.external_stream(ptr) if ptr else cuda.default_stream()
        _STREAMS[key] = stream
    return ptr, stream


_VIEWS: dict[tuple, Any] = {}
_VIEWS_LIMIT = 256  # distinct (pointer, shape, strides, dtype) seen; beyond it, start over


def _device_view(a, on_gpu: bool):
    """What a kernel launch takes for array ``a``: ``a`` itself on the host (the simulator), else
    Numba's device view of the CuPy array, cached by (pointer, shape, strides, dtype).

    Passing CuPy arrays straight to a kernel makes Numba synchronise the host on each array's
    exported stream; we launch on that very stream, so ordering already holds and we skip it.
    Building a view (``__cuda_array_interface__``, Numba's types) costs tens of microseconds, and
    a training step passes the same persistent buffers every time: the views are kept. A view
    holds no reference to its array (``owner=None``), so the cache keeps no memory alive; it is
    a pure function of its key, so where freed memory is reused for an array of the same
    pointer, shape, strides and dtype, the cached view is the very view that array would get.
    """
    if not on_gpu:
        return a
    key = (a.data.ptr, a.shape, a.strides, a.dtype.char)
    view = _VIEWS.get(key)
    if view is None:
        if len(_VIEWS) >= _VIEWS_LIMIT:
            _VIEWS.clear()
        view = cuda.from_cuda_array_interface(a.__cuda_array_interface__, owner=None, sync=False)
        _VIEWS[key] = view
    return view


def _jit(py_func, name: str):
    """``cuda.jit(cache=True)`` of ``py_func`` under its own ``name``: numba-cuda's on-disk cache
    files are named after the function's qualified name, so each dtype (and K) gets files of its
    own and a process that compiled one never invalidates another's (a bench row, a test
    process, then load the kernels instead of compiling them)."""
    py_func.__name__ = py_func.__qualname__ = name
    return cuda.jit(cache=True)(py_func)


# -- head ----------------------------------------------------------------------------------------


@functools.cache
def _head_kernel(dtype: np.dtype, K: int):
    """The head kernel for one float dtype and class count K (both compile-time: K sizes the
    per-lane logit and gradient arrays, which stay in registers only with constant indices)."""
    nbtype = numba.from_dtype(dtype)
    zero = dtype.type(0)  # typed constants keep float32 arithmetic in float32
    one = dtype.type(1)

    def kernel(Z, bh, Wo, bo, y, ends, n_grad, act, inv_n, dWo_part, dbh_part, dbo_part,
               stats_part, tile):
        N = Z.shape[0]
        H = Z.shape[1]
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        b = cuda.blockIdx.x
        lane = tid % WARP
        warp = tid // WARP
        n_warps = (nt + WARP - 1) // WARP
        lanes = min(WARP, nt - warp * WARP)  # the last warp of an odd-sized block is partial
        mask = (1 << lanes) - 1  # the lanes that exist (all 32 in a default launch)
        sw = b * n_warps + warp  # this warp's row of the stats partials
        do_s = cuda.shared.array(0, nbtype)  # dynamic (2, tile, K): the tile's do, two buffers
        o = cuda.local.array(K, nbtype)  # registers (constant indices only)
        g = cuda.local.array(K, nbtype)
        # each partial starts at zero, set by the very thread that accumulates it below (so no
        # synchronisation is needed): no separate fill launches per call
        if n_grad > 0:
            for j in range(tid, H, nt):
                dbh_part[b, j] = zero
                for k in range(K):
                    dWo_part[b, k, j] = zero
            for k in range(tid, K, nt):
                dbo_part[b, k] = zero
        if lane == 0:
            for s in range(stats_part.shape[1]):
                stats_part[sw, s, 0] = 0.0
                stats_part[sw, s, 1] = 0.0
        parity = 0
        for t in range(b, (N + tile - 1) // tile, cuda.gridDim.x):
            first = t * tile
            rows = min(tile, N - first)
            buf = parity * tile * K
            # phase 1, one warp per row: h = act(z + bh) with the lanes strided over H (loads
            # coalesced), o = h Wo summed in registers and then across the warp by shuffles;
            # training rows keep h in Z for phase 2, evaluation rows skip the store
            for r in range(warp, rows, n_warps):
                i = first + r
                for k in range(K):
                    o[k] = zero
                for j in range(lane, H, lanes):  # lanes: 32 but in a partial warp
                    x = Z[i, j] + bh[0, j]
                    if act == 0:
                        h = zero if x < zero else x  # NaN passes, as in the reference
                    else:
                        e = math.exp(-abs(x))  # in (0, 1]: never overflows
                        h = (one if x >= zero else e) / (one + e)
                    if i < n_grad:
                        Z[i, j] = h
                    for k in range(K):
                        o[k] += h * Wo[j, k]
                # tree over the lanes into lane 0; the guard drops lanes past a partial warp,
                # whose rounds start at its own width (a full warp runs all five)
                off = WARP // 2
                while off >= lanes:
                    off //= 2
                while off > 0:
                    for k in range(K):
                        v = cuda.shfl_down_sync(mask, o[k], off)
                        if lane + off < lanes:
                            o[k] += v
                    off //= 2
                if lane == 0:
                    # the row's logits go to its do slots, and the softmax works there in loops
                    # of run-time length: unrolled over K, its exps (float64's are long) would
                    # all be in flight at once and cost registers the rest of the kernel lacks
                    row = buf + r * K
                    for k in range(K):
                        do_s[row + k] = o[k] + bo[0, k]
                    n_k = Wo.shape[1]  # == K
                    # strict > keeps the first maximum, like np.argmax
                    m = do_s[row]
                    best = 0
                    for k in range(1, n_k):
                        if do_s[row + k] > m:
                            m = do_s[row + k]
                            best = k
                    label = y[i]
                    o_label = do_s[row + label]
                    se = zero
                    for k in range(n_k):
                        ek = math.exp(do_s[row + k] - m)
                        do_s[row + k] = ek
                        se += ek
                    split = 0
                    while i >= ends[split]:
                        split += 1
                    stats_part[sw, split, 0] += m + math.log(se) - o_label
                    if best == label:
                        stats_part[sw, split, 1] += 1.0
                    if i < n_grad:
                        for k in range(n_k):
                            d = do_s[row + k] / se
                            if k == label:
                                d -= one
                            do_s[row + k] = d * inv_n
            n_rows = min(rows, n_grad - first)  # the tile's training rows (block-uniform)
            if n_rows > 0:
                # the one barrier per tile: do and h of every row of the tile are in place. The
                # next tile writes the other do buffer, and the one after it this buffer again
                # only past the next tile's barrier, which every thread reaches after this phase
                cuda.syncthreads()
                # phase 2, threads strided over H (Z and the partials coalesced): for each of
                # this thread's hidden units, dz = (do Woᵀ) ∘ act′(h) down the tile's rows, and
                # the tile's dWo = hᵀ do and dbh = Σ dz summed in registers, added once per tile
                for j in range(tid, H, nt):
                    for k in range(K):
                        g[k] = zero
                    db = zero
                    for r in range(n_rows):
                        i = first + r
                        h = Z[i, j]
                        dh = zero
                        for k in range(K):
                            d = do_s[buf + r * K + k]
                            dh += d * Wo[j, k]  # from L1: a register copy of Wo[j] cost more
                            g[k] += h * d
                        if act == 0:
                            dz = dh if h > zero else zero
                        else:
                            dz = dh * (h * (one - h))
                        Z[i, j] = dz
                        db += dz
                    for k in range(K):
                        dWo_part[b, k, j] += g[k]
                    dbh_part[b, j] += db
                for k in range(tid, K, nt):
                    acc = zero
                    for r in range(n_rows):
                        acc += do_s[buf + r * K + k]
                    dbo_part[b, k] += acc
                parity = 1 - parity

    return _jit(kernel, f"head_{dtype.name}_k{K}")


@functools.cache
def _reduce_kernel(dtype: np.dtype):
    """The head's second pass in one launch: the blocks' partials summed in block order (so
    results are reproducible), dWo written transposed. Grid-stride over the outputs: the S·2
    stats first, then, when n_grad > 0, dWo's K·H (H fastest: the partials' reads coalesce),
    dbh's H and dbo's K."""

    def kernel(dWo_part, dbh_part, dbo_part, stats_part, n_grad, dWo, dbh, dbo, stats):
        n_blocks = dWo_part.shape[0]
        K = dWo_part.shape[1]
        H = dWo_part.shape[2]
        n_stats = stats.shape[0] * 2
        total = n_stats + (K * H + H + K if n_grad > 0 else 0)
        for i in range(cuda.grid(1), total, cuda.gridsize(1)):
            if i < n_stats:
                s = i // 2
                c = i - 2 * s
                acc = 0.0
                for w in range(stats_part.shape[0]):
                    acc += stats_part[w, s, c]
                stats[s, c] = acc
                continue
            i -= n_stats
            if i < K * H:
                k = i // H
                j = i - k * H
                a = dWo_part[0, k, j]
                for b in range(1, n_blocks):
                    a += dWo_part[b, k, j]
                dWo[j, k] = a
            elif i < K * H + H:
                j = i - K * H
                a = dbh_part[0, j]
                for b in range(1, n_blocks):
                    a += dbh_part[b, j]
                dbh[0, j] = a
            else:
                k = i - K * H - H
                a = dbo_part[0, k]
                for b in range(1, n_blocks):
                    a += dbo_part[b, k]
                dbo[0, k] = a

    return _jit(kernel, f"reduce_{dtype.name}")


class _Partials(NamedTuple):
    dWo: Any  # (n_blocks, K, H) in the data dtype, H fastest (coalesced); each block zeroes its own
    dbh: Any  # (n_blocks, H)
    dbo: Any  # (n_blocks, K)
    stats: Any  # (n_blocks * warps per block, S, 2) float64: one row per warp
    kernel_args: tuple  # (dWo, dbh, dbo, stats) as the kernel takes them


_PARTIALS: dict[tuple, _Partials] = {}
_ENDS: dict[tuple, tuple] = {}
_CACHE_LIMIT = 64  # distinct shapes/streams seen; beyond it something is churning, start over


def _partials(xp, n_blocks: int, n_warps: int, H: int, K: int, S: int, dtype,
              where) -> _Partials:
    """Per-block (stats: per-warp) accumulators, cached by (n_blocks, n_warps, H, K, S, dtype,
    module, device/stream, host thread)."""
    # keyed on the host thread too: two threads training same-shape models on one stream (Dask
    # worker threads, say) would otherwise zero, fill and sum the same partials at once
    key = (n_blocks, n_warps, H, K, S, np.dtype(dtype), xp.__name__, where,
           threading.get_ident())
    parts = _PARTIALS.get(key)
    if parts is None:
        if len(_PARTIALS) >= _CACHE_LIMIT:
            _PARTIALS.clear()
        dWo = xp.empty((n_blocks, K, H), dtype=dtype)
        dbh = xp.empty((n_blocks, H), dtype=dtype)
        dbo = xp.empty((n_blocks, K), dtype=dtype)
        stats = xp.empty((n_blocks * n_warps, S, 2), dtype=np.float64)
        on_gpu = xp is not np
        args = tuple(_device_view(p, on_gpu) for p in (dWo, dbh, dbo, stats))
        parts = _Partials(dWo, dbh, dbo, stats, args)
        _PARTIALS[key] = parts
    return parts


def _ends_array(xp, ends, host_ends: tuple[int, ...] | None, where):
    """(S,) int64 split ends on the arrays' device. ``host_ends``: check_head_args' result, the
    checked host tuple (copied once and cached), or None when ``ends`` is already on the GPU."""
    if host_ends is None:
        # already on the GPU: checking it would cost a synchronisation, so trust the caller
        arr = ends if ends.dtype == np.int64 else ends.astype(np.int64)
        return arr, _device_view(arr, True)
    key = (host_ends, xp.__name__, where)
    cached = _ENDS.get(key)
    if cached is None:
        if len(_ENDS) >= _CACHE_LIMIT:
            _ENDS.clear()
        arr = xp.asarray(np.asarray(host_ends, dtype=np.int64))
        cached = (arr, _device_view(arr, xp is not np))
        _ENDS[key] = cached
    return cached


def head(Z, bh, Wo, bo, y, ends, n_grad: int, activation: str, dWo, dbo, dbh, stats, *,
         threads_per_block: int | None = None, blocks: int | None = None,
         tile_rows: int | None = None) -> None:
    """Fused :func:`.reference.head`: same arguments, shapes and results.

    Z (N, H) in place: rows [0, n_grad) become dz; rows [n_grad, N) are left as they were (the
    reference calls them unspecified), sparing a store of every evaluation row.
    bh (1, H), Wo (H, K), bo (1, K), y (N,) integer labels in [0, K), ends (S,) split ends.
    stats (S, 2) float64 is overwritten with per-split summed loss and correct count; dWo (H, K),
    dbo (1, K), dbh (1, H) are overwritten when n_grad > 0. K ≤ MAX_CLASSES.
    Launch: tiles of ``tile_rows`` rows, grid-stride over the blocks, one warp per row and then
    ``threads_per_block`` threads over the hidden units; defaults 256 threads (float64: 192),
    2 blocks per SM
    and up to TILE_ROWS rows per tile, fewer when N is small (simulator: 4 threads, 3 blocks).
    """
    xp = namespace(Z, bh, Wo, bo, y, dWo, dbo, dbh, stats)
    N, H = Z.shape
    K = Wo.shape[1]
    dtype = Z.dtype
    host_ends = check_head_args(Z, bh, Wo, bo, y, ends, n_grad, activation, dWo, dbo, dbh, stats)
    if K > MAX_CLASSES:
        raise ValueError(f"the CUDA head supports at most {MAX_CLASSES} classes, got K={K}")
    tpb = threads_per_block or _default_threads(dtype)
    if tpb < 1:
        raise ValueError(f"bad launch configuration: {tpb} threads per block")
    n_warps = -(-tpb // WARP)
    tile = tile_rows or _tile_rows(N, n_warps, _max_blocks(BLOCKS_PER_SM))
    if tile < 1:
        raise ValueError(f"bad launch configuration: {tile} rows per tile")
    n_blocks, tpb = _launch_config(-(-N // tile), BLOCKS_PER_SM, tpb, blocks)
    shared = 2 * tile * K * dtype.itemsize  # do of the tile's rows, double-buffered
    if shared > MAX_STATIC_SHARED:
        raise ValueError(f"tiles of {tile} rows need {shared} B of shared memory for K={K} in "
                         f"{dtype}; the limit is {MAX_STATIC_SHARED} B: use smaller tiles")

    on_gpu = xp is not np
    if on_gpu:
        stream_ptr, stream = _cupy_stream()
        where = (xp.cuda.Device().id, stream_ptr)
    else:
        stream, where = 0, None  # the simulator (or host arrays): default stream
    ends_arr, ends_dev = _ends_array(xp, ends, host_ends, where)
    S = ends_arr.shape[0]
    parts = _partials(xp, n_blocks, n_warps, H, K, S, dtype, where)  # the kernel zeroes them

    kernel = _head_kernel(np.dtype(dtype), K)
    args = [_device_view(a, on_gpu) for a in (Z, bh, Wo, bo, y)]
    kernel[n_blocks, tpb, stream, shared](
        *args, ends_dev, n_grad, activation_id(activation), dtype.type(1.0 / max(n_grad, 1)),
        *parts.kernel_args, tile,
    )

    # the second pass, one launch: sums over blocks (warps) in a fixed order
    n_out = S * 2 + (K * H + H + K if n_grad > 0 else 0)
    r_tpb = _default_threads()
    r_blocks, r_tpb = _launch_config(-(-n_out // r_tpb), REDUCE_BLOCKS_PER_SM, r_tpb, None)
    outs = [_device_view(a, on_gpu) for a in (dWo, dbh, dbo, stats)]
    _reduce_kernel(np.dtype(dtype))[r_blocks, r_tpb, stream](*parts.kernel_args, n_grad, *outs)


# -- momentum ------------------------------------------------------------------------------------


@functools.cache
def _momentum_kernel(dtype: np.dtype):
    """The momentum kernel for one float dtype (its own cache files, see :func:`_jit`)."""

    def kernel(p, g, v, lr, mu):
        start = cuda.grid(1)
        stride = cuda.gridsize(1)
        for i in range(start, p.shape[0], stride):
            vi = mu * v[i] + lr * g[i]
            v[i] = vi
            p[i] -= vi

    return _jit(kernel, f"momentum_{dtype.name}")


def momentum(params, grads, velocity, lr: float, mu: float, *,
             threads_per_block: int | None = None, blocks: int | None = None) -> None:
    """The course rule over flat buffers (P,), in place: v ← mu·v + lr·g; p ← p − v.

    Launch: grid-stride over P; defaults 256 threads and up to 6 blocks per SM (simulator: 4, 3).
    """
    xp = namespace(params, grads, velocity)
    check_momentum_args(params, grads, velocity)
    P = params.shape[0]
    tpb = threads_per_block or _default_threads()  # the work per block depends on it
    n_blocks, tpb = _launch_config(-(-P // tpb), MOMENTUM_BLOCKS_PER_SM, tpb, blocks)
    dtype = params.dtype.type
    on_gpu = xp is not np
    stream = _cupy_stream()[1] if on_gpu else 0
    p, g, v = (_device_view(a, on_gpu) for a in (params, grads, velocity))
    _momentum_kernel(params.dtype)[n_blocks, tpb, stream](p, g, v, dtype(lr), dtype(mu))
