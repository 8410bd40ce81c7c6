"""bench/gpu_model.py, the analytic GPU epoch model: its counts match the code's shapes and its
printed totals are the sums of its rows. (No test reads bench/RESULTS.md: it quotes the model.)"""

import importlib.util
import inspect
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastmlp.kernels import cuda as kcuda

from fastmlp import bench
from fastmlp.model import CHUNK_ROWS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_model.py"


@pytest.fixture(scope="module")
def gm():
    spec = importlib.util.spec_from_file_location("gpu_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_model"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_model"]


def by_name(launches, name):
    (hit,) = [x for x in launches if x.name == name]
    return hit


def test_shapes_come_from_fastmlp(gm):
    s = gm.CANONICAL
    assert (s.n_train, s.n_valid, s.n_test, s.F, s.H, s.K) == (10000, 6000, 2724, 784, 1000, 10)
    assert (gm.MNIST.n_train, gm.MNIST.n_valid, gm.MNIST.n_test) == (10000, 10000, 10000)
    assert s.n_params == 784 * 1000 + 1000 + 1000 * 10 + 10


@pytest.mark.parametrize("b", [4, 8])
def test_full_batch_products(gm, b):
    s = gm.CANONICAL
    launches = gm.epoch_launches(s, b, None)
    fwd, bwd = by_name(launches, "X·Wh, all rows"), by_name(launches, "Xᵀ·dZ → dWh")
    assert fwd.flops == 2 * s.n_all * s.F * s.H
    assert fwd.bytes == b * (s.n_all * s.F + s.F * s.H + s.n_all * s.H)
    assert bwd.flops == 2 * s.n_train * s.F * s.H
    assert bwd.bytes == b * (s.n_train * s.F + s.n_train * s.H + s.F * s.H)
    # the epoch's products do the floor's FLOPs, which are fastmlp bench's own count
    spec = {"workload": bench.WORKLOAD}
    assert sum(x.flops for x in gm.floor_launches(s, b)) == bench.gemm_flops(spec)
    assert fwd.flops + bwd.flops == bench.gemm_flops(spec)
    head = by_name(launches, "head (Numba)")
    assert head.bytes >= b * (s.n_all * s.H + s.n_train * s.H)  # Z read once, dz written once
    assert by_name(launches, "momentum (Numba)").bytes == 5 * b * s.n_params
    assert [x.kind for x in launches].count("numba") == 3  # head, its reduction, momentum


class _Counted(np.ndarray):
    """Records the whole-array calls made on it (the head's second pass: sums and copies)."""

    log: list = []

    def sum(self, *args, **kwargs):
        _Counted.log.append(("sum", self.shape))
        return super().sum(*args, **kwargs)

    def __setitem__(self, key, value):
        _Counted.log.append(("copy", self.shape))
        super().__setitem__(key, value)


@pytest.fixture
def head_call(gm, monkeypatch):
    """Runs kernels/cuda.py's ``head`` wrapper on host arrays with the kernel replaced by a
    recorder and the GPU's SM count by the model's: returns ((blocks, threads, shared bytes,
    rows per tile) of the launch, [the array calls made after it]) for (N, n_grad)."""

    def run(s, N, n_grad, S):
        launched = []

        class Recorder:
            def __getitem__(self, config):
                def launch(*args):
                    for a in args:  # finite partials to sum, as a kernel would leave them
                        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
                            a.view(np.ndarray)[...] = 0
                    launched.append((config[0], config[1], config[3], args[-1], len(_Counted.log)))
                return launch

        reductions = []

        class ReduceRecorder:
            def __getitem__(self, config):
                def launch(*args):
                    reductions.append((config, len(_Counted.log)))
                return launch

        monkeypatch.setattr(kcuda, "_head_kernel", lambda dtype, K: Recorder())
        monkeypatch.setattr(kcuda, "_reduce_kernel", lambda dtype: ReduceRecorder())
        monkeypatch.setattr(kcuda, "_max_blocks", lambda per_sm: per_sm * gm.SMS)
        monkeypatch.setattr(kcuda, "_default_threads", lambda dtype=None: kcuda.DEFAULT_THREADS)
        original = kcuda._partials

        def partials(*args):
            views = [p.view(_Counted) for p in original(*args)[:4]]
            return kcuda._Partials(*views, tuple(views[:4]))

        monkeypatch.setattr(kcuda, "_partials", partials)
        _Counted.log = []
        f = np.float32
        ends = np.linspace(0, N, S + 1).astype(int)[1:]
        arrays = [np.zeros(shape, f) for shape in ((N, s.H), (1, s.H), (s.H, s.K), (1, s.K))]
        grads = [np.zeros(shape, f).view(_Counted) for shape in ((s.H, s.K), (1, s.K), (1, s.H))]
        stats = np.zeros((S, 2)).view(_Counted)
        kcuda.hidden_to_loss(*(a.view(_Counted) for a in arrays),
                             np.zeros(N, np.int32).view(_Counted), tuple(ends), n_grad, "relu",
                             *grads, stats)
        (blocks, threads, shared, tile, before), = launched
        (_, after), = reductions  # the second pass: one launch, after the head's
        log = _Counted.log
        return (blocks, threads, shared, tile), log[before:after] + [("reduce",)] + log[after:]

    return run


@pytest.mark.parametrize("N, n_grad, S", [(18724, 10000, 3), (30000, 10000, 3), (100, 100, 1),
                                          (8192, 0, 3), (532, 0, 3), (3616, 0, 3)])
def test_head_grid_and_second_pass_are_the_codes(gm, head_call, N, n_grad, S):
    s = gm.CANONICAL
    (blocks, threads, shared, tile), calls = head_call(s, N, n_grad, S)
    assert gm.head_grid(N) == (tile, blocks, -(-threads // kcuda.WARP))
    assert shared == 2 * tile * s.K * 4  # do of a tile's rows, double-buffered
    launches = gm.head(s, N, n_grad, S, 4)
    # the second pass is one Numba launch, with no array calls (CuPy sums or copies) around it
    assert calls == [("reduce",)], calls
    assert [x.kind for x in launches] == ["numba", "numba"]
    stats_rows = blocks * (-(-threads // kcuda.WARP))
    grads = blocks * (s.K * s.H + s.H + s.K) if n_grad else 0
    outputs = s.K * s.H + s.H + s.K if n_grad else 0
    assert launches[1].bytes == 16 * (stats_rows + 1) * S + 4 * (grads + outputs)


def test_head_takes_the_arrays_the_model_counts(gm):
    params = inspect.signature(kcuda._head_kernel(np.dtype("float32"), 10).py_func).parameters
    scalars = {"n_grad", "act", "inv_n", "tile"}
    assert set(params) >= scalars
    assert gm.HEAD_ARRAYS == len(params) - len(scalars)


def test_minibatch_launches_per_step(gm):
    s, B = gm.CANONICAL, gm.STEP_BATCH
    launches = gm.epoch_launches(s, 4, B)
    steps = s.n_train // B
    per_step = [x for x in launches if x.count == steps and x.kind != "glue"]
    # 2 gathers, 2 products, the head and its second pass, momentum, the running train stats
    assert len(per_step) == 6 + len(gm.head(s, B, B, 1, 4))
    assert sum(x.kind == "numba" for x in per_step) == 3  # head, its reduction, momentum
    assert sum(x.kind == "gemm" for x in per_step) == 2
    assert by_name(launches, "Xb·Wh").flops == 2 * B * s.F * s.H
    # evaluation: valid + test rows in chunks of at most CHUNK_ROWS, each a product and a head
    evals = [x for x in launches if x.name.endswith("eval rows")]
    rows = [int(re.search(r"(\d+) eval rows", x.name).group(1)) for x in evals]
    assert sum(rows) == s.n_eval and max(rows) <= CHUNK_ROWS
    assert len(evals) == math.ceil(s.n_eval / CHUNK_ROWS)
    heads = [x for x in launches if x.name == "head (Numba)"]
    assert sum(x.count for x in heads) == steps + len(evals)


def test_head_bytes(gm):
    s, b = gm.CANONICAL, 4
    tile, nb, warps = gm.head_grid(s.n_all)
    head = gm.head(s, s.n_all, s.n_train, 3, b)[0]
    z = b * (s.n_all * s.H + s.n_train * s.H)  # Z read once, dz written once
    partials = b * nb * (s.K * s.H + s.H + s.K) + 16 * nb * warps * 3
    assert head.bytes == z + partials + b * (s.H * s.K + s.H + s.K) + 4 * s.n_all + 8 * 3
    # evaluation only: no gradient partials are touched
    evals = gm.head(s, 8192, 0, 3, b)
    assert len(evals) == 2
    _, nb, _ = gm.head_grid(8192)
    assert evals[0].bytes == b * (8192 * s.H + s.H * s.K + s.H + s.K) + 4 * 8192 + 8 * 3 + \
        16 * nb * warps * 3


def test_head_latency_guess(gm):
    s = gm.CANONICAL
    blocks = kcuda.BLOCKS_PER_SM * gm.SMS
    warps = kcuda.DEFAULT_THREADS // kcuda.WARP
    passes1, passes2 = -(-s.H // kcuda.WARP), -(-s.H // kcuda.DEFAULT_THREADS)
    # B = 100: tiles of one row per warp, one tile per block: one row's chain, the barrier and
    # phase 2 over the tile's rows
    tile, nb, _ = gm.head_grid(100)
    assert tile == warps and nb == -(-100 // warps)
    row = passes1 * gm.HBM_LATENCY_S + 5 * gm.SHUFFLE_S + gm.SERIAL_ROW_S
    phase2 = gm.BARRIER_S + passes2 * (tile + 1) * gm.L2_LATENCY_S
    assert gm.head_latency_s(s, 100, 100) == pytest.approx(row + phase2 + gm.LAUNCH_S)
    # evaluation rows skip phase 2 and half the softmax
    assert gm.head_latency_s(s, 100, 0) < gm.head_latency_s(s, 100, 100)
    # full tiles on every block: twice the tiles per block, twice the chain
    one = gm.head_latency_s(s, blocks * kcuda.TILE_ROWS, blocks * kcuda.TILE_ROWS)
    two = gm.head_latency_s(s, 2 * blocks * kcuda.TILE_ROWS, 2 * blocks * kcuda.TILE_ROWS)
    assert two - gm.LAUNCH_S == pytest.approx(2 * (one - gm.LAUNCH_S))
    # the kernel waits for its busiest block: one row past what the grid's tiles hold puts a
    # second tile on block 0, and costs that row's whole chain
    full = gm.head_latency_s(s, blocks * kcuda.TILE_ROWS, 0)
    assert gm.head_latency_s(s, blocks * kcuda.TILE_ROWS + 1, 0) == pytest.approx(
        full + passes1 * gm.HBM_LATENCY_S + 5 * gm.SHUFFLE_S + gm.SERIAL_ROW_S / 2)


@pytest.mark.parametrize("batch", [None, 100])
@pytest.mark.parametrize("mode", ["float32", "tf32", "float64"])
def test_prediction_is_made_of_its_rows(gm, batch, mode):
    s = gm.MNIST
    b = 8 if mode == "float64" else 4
    launches = gm.epoch_launches(s, b, batch)
    p = gm.predict(s, mode, batch)
    assert p.device_s == pytest.approx(sum(x.device_s(gm.H200, mode) for x in launches))
    assert p.host_s == pytest.approx(sum(x.host_s() for x in launches))
    rb = gm.READBACK_S
    assert p.epoch_s == pytest.approx(max(p.device_s - rb, p.host_s) + rb)
    assert p.floor_s <= p.gemm_s + 1e-12 or batch is None
    assert p.epoch_latency_s >= p.epoch_s
    # every kernel costs at least its launch; the roofline part is the larger of the two times
    for x in launches:
        if x.kind in ("gemm", "numba", "cupy"):
            assert x.device_s(gm.H200, mode) >= x.count * gm.LAUNCH_S


def test_modes_and_devices_order_as_their_rates(gm):
    s = gm.CANONICAL
    full = {m: gm.predict(s, m, None) for m in gm.MODES}
    assert full["tf32"].floor_s < full["float32"].floor_s <= full["float64"].floor_s
    assert full["float32"].epoch_s < full["float64"].epoch_s  # the memory-bound parts double
    h100 = gm.predict(s, "float32", None, gm.H100)
    assert h100.epoch_s > full["float32"].epoch_s  # less bandwidth, same arithmetic


def _tables(text):
    """Markdown tables of ``text`` as lists of rows (cells stripped), header rule dropped."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                current.append([c.strip() for c in line.strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    return tables


def _num(cell):
    return float(cell.replace(",", "").replace("*", ""))


def test_printed_totals_are_sums_of_the_rows(gm):
    launch_tables = [t for t in _tables(gm.report()) if t[0][0] == "launch"]
    assert len(launch_tables) == 4  # two workloads, full batch and B = 100
    for table in launch_tables:
        header, rows, total = table[0], table[1:-1], table[-1]
        assert total[0] == "**sum**"
        for col in ("launches", "GFLOP", "µs float32", "µs TF32", "µs float64", "host µs"):
            i = header.index(col)
            assert _num(total[i]) == pytest.approx(sum(_num(r[i]) for r in rows),
                                                   abs=0.1 * len(rows) + 1e-4)
    # the summary's device and host columns are those sums (ms against µs)
    summary = next(t for t in _tables(gm.report()) if t[0][0] == "workload")
    canonical_full = next(r for r in summary if r[:3] == ["canonical", "full", "float32"])
    sums = launch_tables[0][-1]
    assert _num(canonical_full[5]) == pytest.approx(_num(sums[5]) / 1e3, abs=1e-3)
    assert _num(canonical_full[6]) == pytest.approx(_num(sums[8]) / 1e3, abs=1e-3)


@pytest.mark.slow  # a subprocess, Dask or the simulator
def test_script_runs_and_prints_its_report(gm):
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == gm.report().strip()
    rates, summary = _tables(out)[:2]
    assert rates[0][0] == "rate used" and len(rates) > 1
    assert summary[0][0] == "workload" and len(summary) > 1
