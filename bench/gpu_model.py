"""An analytic model of one GPU training epoch (``device="cuda"``): no GPU needed.

    python bench/gpu_model.py   # the tables of bench/RESULTS.md, "A model of the GPU epoch"

For every launch an epoch makes (cuBLAS products, the Numba head and momentum kernels, CuPy's
reductions, gathers and fills, the one metrics read-back) it counts floating-point operations and
the fewest bytes through HBM (each operand read once, each output written once), and turns them
into a time: max(FLOPs / rate, bytes / bandwidth) + a fixed device-side cost per launch. The
launches are asynchronous, so the epoch is predicted as max(device time, host dispatch time) +
the final read-back, which waits for both.

The launch sequence mirrors fastmlp/train.py (``_full_batch_epoch``, ``_minibatch_epoch``),
fastmlp/model.py (``forward_backward``) and kernels/cuda.py (``head``, ``momentum``); the
shapes come from fastmlp's own constants. Rates are the device docs' (datasheet figures derated
by what was measured on an H200 here); the launch and host costs are assumptions, named below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastmlp.kernels import cuda as kcuda

from fastmlp.bench import WORKLOAD
from fastmlp.config import MNIST_TRAIN_SIZE
from fastmlp.datasets import MNIST_VALID_ROWS
from fastmlp.model import CHUNK_ROWS, param_shapes

MNIST_TEST_ROWS = 10_000  # the official t10k set, fastmlp's mnist test split
SMS = 132  # H100 SXM and H200: 132 multiprocessors (read by PyTorch on an H200 here)
STEP_BATCH = 100  # the minibatch size the issue asks about

# -- rates --------------------------------------------------------------------------------------
# Datasheet peaks (H100 SXM; the H200 has the same arithmetic, H200.md): FP32 66.9 TFLOP/s (FFMA,
# what cuBLAS SGEMM runs on), TF32 tensor cores 494.7 dense, FP64 tensor cores 66.9 (DGEMM),
# BF16 989.4. The one matrix rate measured here is bf16 at 769-798 TFLOP/s (on an H200 here), i.e.
# ~0.80 of its datasheet peak: the same fraction is applied to every matrix rate.
MATRIX_FRACTION = 788 / 989.4
# HBM: 4.8 TB/s datasheet (H200), ~4.3 TB/s measured here by a device-to-device copy counting
# read + written bytes; the H100's 3.35 TB/s gets the same 0.9 derating.
HBM_FRACTION = 4.3 / 4.8

# -- assumptions (not in the device docs) ---------------------------------------------------------
LAUNCH_S = 3e-6  # device side, per kernel: launch latency, ramp-up and tail of a dependent kernel
HOST_CUPY_S = 10e-6  # host side, per CuPy call (elementwise, reduction, gather or cuBLAS product)
# Numba's launch: 6.6 us for an empty kernel plus ~3.7 us per array argument (numba-cuda PR #288,
# empty kernels), plus the wrapper's own Python (argument checks, cuda.as_cuda_array views)
NUMBA_BASE_S, NUMBA_PER_ARRAY_S, NUMBA_WRAPPER_S = 6.6e-6, 3.7e-6, 10e-6
GLUE_PER_STEP_S = 20e-6  # the trainer's per-step Python: slicing idx, Xb[:nb], Z[:nb], views
READBACK_S = 10e-6  # a 48-byte device->host copy and the wait for the stream (once per epoch)
H2D_S = 10e-6  # the host->device copy of the epoch's shuffled order (minibatch only)
# The head's latency chain (see head_latency_s): a dependent global load per loop pass, a
# shuffle round, the barrier per tile, lane 0's softmax per row (training; half for evaluation)
HBM_LATENCY_S, L2_LATENCY_S, SHUFFLE_S, BARRIER_S, SERIAL_ROW_S = (0.6e-6, 0.3e-6, 0.02e-6,
                                                                    0.05e-6, 1.0e-6)


@dataclass(frozen=True)
class Device:
    name: str
    hbm: float  # achievable bytes/s
    sgemm: float  # achievable FLOP/s of each GEMM mode
    tf32: float
    dgemm: float
    fp32: float  # vector rates for the non-GEMM kernels (their FLOPs are small)
    fp64: float


H200 = Device("H200", 4.8e12 * HBM_FRACTION, 66.9e12 * MATRIX_FRACTION,
              494.7e12 * MATRIX_FRACTION, 66.9e12 * MATRIX_FRACTION, 66.9e12 * MATRIX_FRACTION,
              33.5e12 * MATRIX_FRACTION)
H100 = Device("H100 SXM", 3.35e12 * HBM_FRACTION, *(getattr(H200, f) for f in
                                                    ("sgemm", "tf32", "dgemm", "fp32", "fp64")))
MODES = ("float32", "tf32", "float64")  # tf32: float32 data, TF32 tensor-core products


@dataclass(frozen=True)
class Launch:
    """One kind of launch in an epoch: FLOPs and HBM bytes of one launch, in a given dtype."""

    name: str
    kind: str  # "gemm", "numba", "cupy" (elementwise/reduction/gather), "h2d", "readback",
    # "glue" (host-only Python between launches)
    count: int  # launches of it per epoch
    flops: float  # per launch
    bytes: float  # per launch
    arrays: int = 0  # array arguments (Numba's launch cost grows with them)

    def device_s(self, dev: Device, mode: str) -> float:
        """Device time of all ``count`` launches: roofline + the fixed cost per launch."""
        if self.kind == "readback":
            return self.count * READBACK_S  # waits for everything before it (see predict)
        if self.kind == "glue":
            return 0.0
        if self.kind == "h2d":
            return self.count * LAUNCH_S
        rate = {"float32": dev.sgemm, "tf32": dev.tf32, "float64": dev.dgemm}[mode]
        if self.kind != "gemm":
            rate = dev.fp64 if mode == "float64" else dev.fp32
        return self.count * (max(self.flops / rate, self.bytes / dev.hbm) + LAUNCH_S)

    def host_s(self) -> float:
        """Host dispatch time of all ``count`` launches."""
        per = {"gemm": HOST_CUPY_S, "cupy": HOST_CUPY_S, "h2d": H2D_S, "readback": 0.0,
               "glue": GLUE_PER_STEP_S,
               "numba": NUMBA_BASE_S + NUMBA_PER_ARRAY_S * self.arrays + NUMBA_WRAPPER_S}
        return self.count * per[self.kind]


@dataclass(frozen=True)
class Shapes:
    name: str
    n_train: int
    n_valid: int
    n_test: int
    F: int = WORKLOAD["n_features"]
    H: int = WORKLOAD["n_hidden"]
    K: int = WORKLOAD["n_classes"]

    @property
    def n_eval(self) -> int:
        return self.n_valid + self.n_test

    @property
    def n_all(self) -> int:
        return self.n_train + self.n_eval

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for s in param_shapes(self.F, self.H, self.K).values())


CANONICAL = Shapes("canonical (random data)", WORKLOAD["n_train"], WORKLOAD["n_valid"],
                   WORKLOAD["n_test"])
# `fastmlp bench --dataset mnist`: the first 10000 training images, valid the last 10000 of the
# official training set, test the official 10000
MNIST = Shapes("MNIST (`--dataset mnist`)", MNIST_TRAIN_SIZE, MNIST_VALID_ROWS, MNIST_TEST_ROWS)


def gemm(name: str, m: int, k: int, n: int, b: int, count: int = 1) -> Launch:
    """(m×k)(k×n) → (m×n), A and B read once, C written once (beta = 0: C is not read)."""
    return Launch(name, "gemm", count, 2.0 * m * k * n, b * (m * k + k * n + m * n))


def head_grid(rows: int) -> tuple[int, int, int]:
    """(rows per tile, blocks, warps per block) of kernels/cuda.py's default head launch on
    ``rows`` rows: its own tile rule (TILE_ROWS, fewer when blocks would sit idle) and grid."""
    warps = -(-kcuda.DEFAULT_THREADS // kcuda.WARP)
    max_blocks = kcuda.BLOCKS_PER_SM * SMS
    tile = kcuda._tile_rows(rows, warps, max_blocks)
    return tile, max(1, min(-(-rows // tile), max_blocks)), warps


HEAD_ARRAYS = 10  # the kernel's array arguments: Z, bh, Wo, bo, y, ends and the four partials


REDUCE_ARRAYS = 8  # the reduction's array arguments: the four partials and dWo, dbh, dbo, stats


def head(s: Shapes, rows: int, n_grad: int, splits: int, b: int, count: int = 1) -> list[Launch]:
    """kernels/cuda.py's head on ``rows`` rows, the first ``n_grad`` of them training rows, and
    its second pass: one Numba launch summing the per-block partials (dWo written transposed)."""
    H, K = s.H, s.K
    _, nb, warps = head_grid(rows)
    # dWo [block, k, j], dbh and dbo partial rows: only a call with training rows touches them,
    # each block zeroing its own and adding into them once per tile (the in-place adds stay in
    # L2: ~11 MB in float32 against 50 MB), so HBM sees them written once
    grads = nb * (K * H + H + K) if n_grad else 0
    stats_rows = nb * warps  # float64 (loss, correct) per split, one row per warp
    # reads Z, bh, Wo, bo, the int32 labels and the int64 split ends; writes dz over the
    # training rows (h, stored there between the two phases of a tile, is overwritten in L2),
    # the partials and the stats
    rd = b * (rows * H + H * K + H + K) + 4 * rows + 8 * splits
    wr = b * (n_grad * H + grads) + 16 * stats_rows * splits
    # forward per row: bias, activation and H×K multiply-adds; backward per training row:
    # dh (H×K), the tile's dWo (H×K), act′ and dbh
    fl = rows * H * (2 * K + 2) + n_grad * H * (4 * K + 3)
    # the reduction reads every partial once and writes each sum once
    outputs = (K * H + H + K) if n_grad else 0
    red_fl = stats_rows * splits * 2 + grads
    red_bytes = 16 * (stats_rows + 1) * splits + b * (grads + outputs)
    return [Launch("head (Numba)", "numba", count, fl, rd + wr, arrays=HEAD_ARRAYS),
            Launch("Σ partials → dWo, dbh, dbo, stats (Numba)", "numba", count, red_fl,
                   red_bytes, arrays=REDUCE_ARRAYS)]


def momentum(s: Shapes, b: int, count: int = 1) -> Launch:
    """v ← γ·v + α·g; p ← p − v over the P parameters: read p, g, v; write v, p."""
    return Launch("momentum (Numba)", "numba", count, 4.0 * s.n_params, 5.0 * b * s.n_params,
                  arrays=3)


def evaluation(s: Shapes, b: int, batch: int) -> list[Launch]:
    """split_stats over the valid and test rows in chunks of the trainer's Z (minibatch)."""
    chunk = min(s.n_all, max(batch, CHUNK_ROWS))  # Trainer's Z rows
    sizes = [min(chunk, s.n_eval - a) for a in range(0, s.n_eval, chunk)]
    out = [] if len(sizes) == 1 else [Launch("total[...] = 0", "cupy", 1, 0, 48)]
    for n in sizes:
        out.append(gemm(f"X·Wh, {n} eval rows", n, s.F, s.H, b))
        out += head(s, n, 0, 3, b)
        if len(sizes) > 1:
            out.append(Launch("total += stats", "cupy", 1, 6, 3 * 48))
    return out


def epoch_launches(s: Shapes, b: int, batch: int | None) -> list[Launch]:
    """Every launch of one epoch on device="cuda", in order; ``b`` bytes per element."""
    if batch is None:  # _full_batch_epoch: one product over all rows serves train and eval
        return [gemm("X·Wh, all rows", s.n_all, s.F, s.H, b), *head(s, s.n_all, s.n_train, 3, b),
                gemm("Xᵀ·dZ → dWh", s.F, s.n_train, s.H, b), momentum(s, b),
                Launch("metrics read-back", "readback", 1, 0, 48)]
    steps = -(-s.n_train // batch)
    assert s.n_train % batch == 0, "the model assumes equal steps"
    B = batch
    return [*evaluation(s, b, batch),
            Launch("train_stats[...] = 0", "cupy", 1, 0, 16),
            Launch("order → device", "h2d", 1, 0, 8 * s.n_train),
            Launch("take X rows", "cupy", steps, 0, 2 * b * B * s.F + 8 * B),
            Launch("take y", "cupy", steps, 0, 8 * B + 8 * B),
            gemm("Xb·Wh", B, s.F, s.H, b, steps),
            *head(s, B, B, 1, b, steps),
            gemm("Xbᵀ·dZ → dWh", s.F, B, s.H, b, steps),
            momentum(s, b, steps),
            Launch("train_stats += batch_stats", "cupy", steps, 2, 48),
            Launch("trainer's Python per step", "glue", steps, 0, 0),
            Launch("metrics read-back", "readback", 1, 0, 48)]


def floor_launches(s: Shapes, b: int) -> list[Launch]:
    """The three products `fastmlp bench` times as its GEMM floor (fastmlp/bench.py)."""
    return [gemm("X_train·Wh", s.n_train, s.F, s.H, b), gemm("Xᵀ·dZ", s.F, s.n_train, s.H, b),
            gemm("X_eval·Wh", s.n_eval, s.F, s.H, b)]


def head_latency_s(s: Shapes, rows: int, n_grad: int) -> float:
    """A guess at the head's time if its work is chains of dependent steps (not a rate).

    Each block grid-strides over tiles of rows. Per tile, phase 1: each warp takes its rows one
    after another, per row ceil(H/32) strided passes that each wait on one global load of Z
    from HBM, 5 shuffle rounds (the K logits' shuffles of a round are independent) and lane 0's
    softmax; then one barrier; then phase 2 (training rows only): ceil(H/threads) passes per
    thread, each walking down the tile's training rows with one load of h from L2 per row, and
    one read-modify-write of the partials from L2. Blocks (2 per SM) and the warps of a block
    run side by side, so the kernel takes the longest block's chain: the one with most tiles.
    (The PTX that numba-cuda's NVVM writes for both loops, float32 and K = 10, is not unrolled:
    one load of Z per pass, so nothing but the other warps hides its latency.)
    """
    tile, nb, warps = head_grid(rows)
    passes1 = -(-s.H // kcuda.WARP)
    passes2 = -(-s.H // kcuda.DEFAULT_THREADS)
    rounds = int(math.log2(kcuda.WARP))

    def row_s(train: bool) -> float:
        return (passes1 * HBM_LATENCY_S + rounds * SHUFFLE_S
                + (SERIAL_ROW_S if train else SERIAL_ROW_S / 2))

    def tile_s(first: int) -> float:
        n = min(tile, rows - first)
        n_rows = min(n, max(0, n_grad - first))  # the tile's training rows
        phase1 = max(sum(row_s(first + r < n_grad) for r in range(w, n, warps))
                     for w in range(warps))
        phase2 = BARRIER_S + passes2 * (n_rows + 1) * L2_LATENCY_S if n_rows else 0.0
        return phase1 + phase2

    n_tiles = -(-rows // tile)
    times = [tile_s(t * tile) for t in range(n_tiles)]
    return max(sum(times[b::nb]) for b in range(nb)) + LAUNCH_S


def _head_calls(s: Shapes, batch: int | None) -> list[tuple[int, int, int]]:
    """(rows, n_grad, calls) of each head launch shape in an epoch."""
    if batch is None:
        return [(s.n_all, s.n_train, 1)]
    chunk = min(s.n_all, max(batch, CHUNK_ROWS))
    calls = [(min(chunk, s.n_eval - a), 0, 1) for a in range(0, s.n_eval, chunk)]
    return calls + [(batch, batch, s.n_train // batch)]


@dataclass(frozen=True)
class Prediction:
    floor_s: float  # the bench's three products
    gemm_s: float  # the products this epoch actually launches
    device_s: float
    host_s: float
    epoch_s: float  # max(device before the read-back, host) + read-back
    epoch_latency_s: float  # the same with the head's latency-chain guess in place of its roofline


def predict(s: Shapes, mode: str, batch: int | None, dev: Device = H200) -> Prediction:
    b = 8 if mode == "float64" else 4
    launches = epoch_launches(s, b, batch)
    device = sum(x.device_s(dev, mode) for x in launches)
    host = sum(x.host_s() for x in launches)
    readback = sum(x.device_s(dev, mode) for x in launches if x.kind == "readback")
    gemms = sum(x.device_s(dev, mode) for x in launches if x.kind == "gemm")
    floor = sum(x.device_s(dev, mode) for x in floor_launches(s, b))
    heads = [x for x in launches if x.name.startswith("head")]
    head_roofline = sum(x.device_s(dev, mode) for x in heads)
    head_guess = sum(c * head_latency_s(s, r, g) for r, g, c in _head_calls(s, batch))
    device_guess = device - head_roofline + max(head_guess, head_roofline)
    # the host queues launches while the device runs them; the read-back waits for both
    return Prediction(floor, gemms, device, host, max(device - readback, host) + readback,
                      max(device_guess - readback, host) + readback)


# -- markdown -----------------------------------------------------------------------------------


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def launch_table(s: Shapes, batch: int | None, dev: Device = H200) -> str:
    """Per-launch rows of one epoch: count, GFLOP, MB (float32 / float64), intensity, time."""
    f32, f64 = epoch_launches(s, 4, batch), epoch_launches(s, 8, batch)
    lines = ["| launch | launches | GFLOP | MB f32 / f64 | FLOP/B f32 | µs float32 | µs TF32 "
             "| µs float64 | host µs |", "|---|---|---|---|---|---|---|---|---|"]
    tot = dict.fromkeys(("n", "fl", "b4", "b8", "t32", "ttf", "t64", "h"), 0.0)
    for a, c in zip(f32, f64, strict=True):
        fl, b4, b8 = a.count * a.flops, a.count * a.bytes, a.count * c.bytes
        t32, ttf, t64 = a.device_s(dev, "float32"), a.device_s(dev, "tf32"), c.device_s(
            dev, "float64")
        ai = f"{fl / b4:.1f}" if b4 else "—"
        lines.append(f"| {a.name} | {a.count} | {fl / 1e9:.4f} | {b4 / 1e6:.2f} / {b8 / 1e6:.2f} "
                     f"| {ai} | {_us(t32)} | {_us(ttf)} | {_us(t64)} | {_us(a.host_s())} |")
        for key, v in zip(tot, (a.count, fl, b4, b8, t32, ttf, t64, a.host_s()), strict=True):
            tot[key] += v
    lines.append(f"| **sum** | {tot['n']:.0f} | {tot['fl'] / 1e9:.4f} | {tot['b4'] / 1e6:.2f} / "
                 f"{tot['b8'] / 1e6:.2f} | {tot['fl'] / tot['b4']:.1f} | {_us(tot['t32'])} | "
                 f"{_us(tot['ttf'])} | {_us(tot['t64'])} | {_us(tot['h'])} |")
    return "\n".join(lines)


def summary_table(dev: Device = H200) -> str:
    lines = ["| workload | batch | mode | cuBLAS floor ms | GEMMs in epoch ms | device ms "
             "| host ms | **epoch ms** | × floor | head as latency chain: epoch ms | × floor |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in (CANONICAL, MNIST):
        for batch in (None, STEP_BATCH):
            for mode in MODES:
                p = predict(s, mode, batch, dev)
                lines.append(
                    f"| {s.name.split(' ')[0]} | {batch or 'full'} | {mode} | {_ms(p.floor_s)} "
                    f"| {_ms(p.gemm_s)} | {_ms(p.device_s)} | {_ms(p.host_s)} "
                    f"| **{_ms(p.epoch_s)}** | {p.epoch_s / p.floor_s:.2f} "
                    f"| {_ms(p.epoch_latency_s)} | {p.epoch_latency_s / p.floor_s:.2f} |")
    return "\n".join(lines)


def rates_table() -> str:
    lines = ["| rate used | H200 | H100 SXM | from |", "|---|---|---|---|"]
    rows = [("HBM, achievable", "hbm", 1e12, "TB/s",
             "4.8 / 3.35 TB/s datasheet × 0.9 (a 4.3 TB/s copy measured on an H200 here)"),
            ("SGEMM (FP32 FFMA)", "sgemm", 1e12, "TFLOP/s", "66.9 datasheet × 0.80"),
            ("TF32 tensor cores", "tf32", 1e12, "TFLOP/s", "494.7 dense datasheet × 0.80"),
            ("DGEMM (FP64 tensor cores)", "dgemm", 1e12, "TFLOP/s", "66.9 datasheet × 0.80"),
            ("FP32 / FP64 vector (other kernels)", None, 1e12, "TFLOP/s",
             "66.9 / 33.5 datasheet × 0.80")]
    for label, field, scale, unit, src in rows:
        if field is None:
            v = [f"{d.fp32 / scale:.1f} / {d.fp64 / scale:.1f}" for d in (H200, H100)]
        else:
            v = [f"{getattr(d, field) / scale:.1f}" for d in (H200, H100)]
        lines.append(f"| {label} | {v[0]} {unit} | {v[1]} {unit} | {src} |")
    lines.append(f"| launch, device side | {_us(LAUNCH_S)} µs | same | assumption |")
    lines.append(f"| metrics read-back (48 B + stream wait) | {_us(READBACK_S)} µs | same "
                 f"| assumption |")
    lines.append(f"| host: CuPy call / Numba launch | {_us(HOST_CUPY_S)} µs / "
                 f"{_us(NUMBA_BASE_S)} + {_us(NUMBA_PER_ARRAY_S)} per array + "
                 f"{_us(NUMBA_WRAPPER_S)} µs | same | assumption / numba-cuda PR #288 |")
    lines.append(f"| host: trainer's Python per minibatch step | {_us(GLUE_PER_STEP_S)} µs "
                 f"| same | assumption |")
    lines.append(f"| head latency chain (last columns only) | {HBM_LATENCY_S * 1e6:g} µs per "
                 f"pass waiting on HBM, {L2_LATENCY_S * 1e6:g} on L2, {SHUFFLE_S * 1e6:g} per "
                 f"shuffle round, {BARRIER_S * 1e6:g} per barrier (one per tile), "
                 f"{SERIAL_ROW_S * 1e6:g} for lane 0's softmax per row | same | assumption |")
    return "\n".join(lines)


def head_table(dev: Device = H200) -> str:
    """Each head launch shape of the epochs: its grid, the h it keeps in flight, its two times."""
    lines = ["| workload | batch | rows (training) | rows per tile | blocks | tiles, most per "
             "block | h in flight MB f32 | roofline µs f32 | latency chain µs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in (CANONICAL, MNIST):
        for batch in (None, STEP_BATCH):
            for rows, n_grad, _ in dict.fromkeys(_head_calls(s, batch)):
                tile, nb, _ = head_grid(rows)
                n_tiles = -(-rows // tile)
                splits = 3 if batch is None else 1
                roof = head(s, rows, n_grad, splits, 4)[0].device_s(dev, "float32")
                # the h of every block's current tile: stored in phase 1, re-read in phase 2
                h_mb = nb * tile * s.H * 4 / 1e6 if n_grad else 0.0
                lines.append(f"| {s.name.split(' ')[0]} | {batch or 'full'} | {rows} ({n_grad}) "
                             f"| {tile} | {nb} | {n_tiles}, {-(-n_tiles // nb)} | {h_mb:.1f} "
                             f"| {_us(roof)} | {_us(head_latency_s(s, rows, n_grad))} |")
    return "\n".join(lines)


def h100_table() -> str:
    lines = ["| workload | batch | mode | cuBLAS floor ms | epoch ms | × floor |",
             "|---|---|---|---|---|---|"]
    for s in (CANONICAL, MNIST):
        for batch in (None, STEP_BATCH):
            for mode in MODES:
                p = predict(s, mode, batch, H100)
                lines.append(f"| {s.name.split(' ')[0]} | {batch or 'full'} | {mode} "
                             f"| {_ms(p.floor_s)} | {_ms(p.epoch_s)} | "
                             f"{p.epoch_s / p.floor_s:.2f} |")
    return "\n".join(lines)


def report() -> str:
    parts = ["#### Rates and assumptions", rates_table(), "",
             "#### Predicted epoch, H200", summary_table(), "",
             "#### The head's launches, H200", head_table(), ""]
    for s in (CANONICAL, MNIST):
        parts += [f"#### {s.name}: N_train {s.n_train}, N_valid {s.n_valid}, N_test {s.n_test}; "
                  f"F {s.F}, H {s.H}, K {s.K}; H200", "",
                  "Full batch:", "", launch_table(s, None), "",
                  f"B = {STEP_BATCH} ({s.n_train // STEP_BATCH} steps):", "",
                  launch_table(s, STEP_BATCH), ""]
    parts += ["#### The same on an H100 SXM (only HBM differs)", h100_table()]
    return "\n".join(parts)


if __name__ == "__main__":
    print(report())
