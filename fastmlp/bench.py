"""``fastmlp bench``: seconds per epoch on the canonical workload, against its GEMM floor.

Canonical workload (the course's shapes): F = 784, H = 1000, K = 10; 10000 training rows, 6000
valid, 2724 test. One epoch = forward, backward and momentum update on the training rows plus
forward-only loss and accuracy on valid and test. The GEMM floor is the time of the three big
products in the same dtype, measured in the same process just before the epochs:
(N_train×F)(F×H), (F×N_train)(N_train×H) and (N_eval×F)(F×H).

Minibatch rows (``batch_size`` B) time the same epoch in steps of B rows; ``samples_per_s`` is
training rows per second of the epoch (its evaluation included). With ``--compare`` a minibatch
row gains a PyTorch eager per-step loop on the same workload (autograd, the course's momentum
rule written out), the loop a PyTorch user writes for per-sample SGD, and, on the CPU, JAX's
whole training epoch as one ``lax.scan`` (fastmlp/bench_jax.py; training rows only, so its floor
and GFLOP/s are of the two training products).

Each row runs in its own subprocess (``python -m fastmlp.bench SPEC``), so one implementation's
threads, caches and memory peak never leak into another's figures.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

WORKLOAD = {"n_features": 784, "n_hidden": 1000, "n_classes": 10, "n_train": 10000,
            "n_valid": 6000, "n_test": 2724}
IMPLS = ("fastmlp", "numpy-naive", "torch-eager", "torch-compile", "jax-scan")
PEERS = {"torch": "PyTorch", "jax": "JAX"}  # the package a peer's rows need, and its name
ROW_KEYS = ("impl", "device", "dtype", "batch_size", "activation", "n_hidden", "momentum", "lr",
            "products", "density", "epoch_ms", "samples_per_s", "gemm_floor_ms",
            "ratio_to_floor", "gflops", "peak_rss_mb")
LR = 0.01  # a spec's learning rate where it names none


def _median_seconds(fn: Callable[[], Any], sync: Callable[[], None], warmup: int,
                    repeats: int) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _shapes(spec: dict[str, Any]) -> tuple[int, int, int, int, int]:
    w = spec["workload"]
    return (w["n_train"], w["n_valid"] + w["n_test"], w["n_features"], w["n_hidden"],
            w["n_classes"])


def gemm_flops(spec: dict[str, Any]) -> float:
    """Floating-point operations of the three big products of one epoch."""
    n_train, n_eval, F, H, _ = _shapes(spec)
    return 2.0 * F * H * (2 * n_train + n_eval)


def gemm_floor(xp: Any, dtype: str, spec: dict[str, Any], sync: Callable[[], None],
               matmul: Callable | None = None) -> float:
    """Median seconds of the three big products (into preallocated outputs) on ``xp``."""
    n_train, n_eval, F, H, _ = _shapes(spec)
    rng = np.random.default_rng(0)
    X = xp.asarray(rng.random((n_train + n_eval, F)).astype(dtype))
    W = xp.asarray(rng.standard_normal((F, H)).astype(dtype))
    Z = xp.empty((n_train + n_eval, H), dtype=dtype)
    dW = xp.empty((F, H), dtype=dtype)
    mm = matmul or (lambda a, b, out: xp.matmul(a, b, out=out))

    def products():
        mm(X[:n_train], W, Z[:n_train])
        mm(X[:n_train].T, Z[:n_train], dW)
        mm(X[n_train:], W, Z[n_train:])

    median, _ = _median_seconds(products, sync, spec["warmup"], spec["repeats"])
    return median


def _dataset(spec: dict[str, Any]):
    from .datasets import Dataset, Split, load_dataset

    dtype = spec["dtype"]
    if spec.get("dataset"):
        data = load_dataset(spec["dataset"], path=spec.get("data_path"), dtype=dtype,
                            train_size=spec["workload"]["n_train"])
        # the first rows of the evaluation splits when asked (e.g. MNIST in the course layout)
        valid, test = (Split(s.x[:n], s.y[:n]) if n else s for s, n in (
            (data.valid, spec.get("valid_size")), (data.test, spec.get("test_size"))))
        return Dataset(data.name, data.train, valid, test, n_classes=data.n_classes)
    w = spec["workload"]
    rng = np.random.default_rng(0)

    def split(n):
        return Split(rng.random((n, w["n_features"])).astype(dtype),
                     rng.integers(0, w["n_classes"], n))

    return Dataset("random", split(w["n_train"]), split(w["n_valid"]), split(w["n_test"]),
                   n_classes=w["n_classes"])


def _workload_of(data, spec: dict[str, Any]) -> dict[str, Any]:
    """The shapes that actually run: a dataset's own splits, not the canonical ones (the floor
    and GFLOP/s are of these)."""
    return {"n_train": len(data.train.y), "n_valid": len(data.valid.y),
            "n_test": len(data.test.y), "n_features": data.n_features,
            "n_hidden": spec["workload"]["n_hidden"], "n_classes": data.n_classes}


def _bench_fastmlp(spec, data):
    from .backend import get_backend
    from .model import MLP
    from .train import Trainer

    backend = get_backend(spec["device"], tf32=spec.get("tf32", False))
    model = MLP(data.n_features, spec["workload"]["n_hidden"], data.n_classes,
                activation=spec["activation"], dtype=spec["dtype"], device=backend)
    trainer = Trainer(model, data, lr=spec.get("lr", LR), momentum=spec["momentum"],
                      batch_size=spec.get("batch_size"), compiled=spec.get("compiled"),
                      sparse=spec.get("sparse", "auto"))
    be = model.backend
    floor = gemm_floor(be.xp, spec["dtype"], spec, be.synchronize, matmul=be.matmul)

    def epoch():
        trainer.run_epoch()  # reads the epoch's metrics to the host, as a real run does

    label = f"{be.describe()}, {trainer.plan.label()}"  # the plan, as the run header says it
    return floor, epoch, be.synchronize, label, trainer.plan


def _bench_numpy_naive(spec, data):
    """The course-style code: plain NumPy, one-hot labels, fresh arrays every epoch."""
    dtype = spec["dtype"]
    rng = np.random.default_rng(0)
    F, H, K = data.n_features, spec["workload"]["n_hidden"], data.n_classes
    Wh = rng.normal(0, math.sqrt(2 / (F + H)), (F, H)).astype(dtype)
    Wo = rng.normal(0, math.sqrt(2 / (H + K)), (H, K)).astype(dtype)
    bh, bo = np.zeros((1, H), dtype), np.zeros((1, K), dtype)
    params = [Wh, bh, Wo, bo]
    vs = [np.full_like(p, 1e-5) for p in params]
    onehot = np.eye(K, dtype=dtype)[data.train.y]
    xs = [data.train.x, data.valid.x, data.test.x]
    ys = [data.train.y, data.valid.y, data.test.y]

    sigmoid = spec["activation"] == "sigmoid"
    mu, lr = spec["momentum"], spec.get("lr", LR)

    def forward(x):
        z = x @ Wh + bh
        h = 1 / (1 + np.exp(-z)) if sigmoid else np.maximum(z, 0)
        o = h @ Wo + bo
        e = np.exp(o - o.max(axis=1, keepdims=True))
        return h, e / e.sum(axis=1, keepdims=True)

    def epoch():
        for x, y in zip(xs, ys, strict=True):
            _, p = forward(x)
            float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))
            float(np.mean(p.argmax(axis=1) == y))
        h, p = forward(xs[0])
        do = (p - onehot) / len(onehot)
        dz = (do @ Wo.T) * (h * (1 - h) if sigmoid else h > 0)
        grads = [xs[0].T @ dz, dz.sum(axis=0, keepdims=True), h.T @ do,
                 do.sum(axis=0, keepdims=True)]
        for p_, v, g in zip(params, vs, grads, strict=True):
            v *= mu  # Python floats keep float32 arrays float32
            v += lr * g
            p_ -= v

    floor = gemm_floor(np, dtype, spec, lambda: None)
    return floor, epoch, lambda: None, "cpu (numpy, course-style)"


def _bench_torch(spec, data, compiled: bool):
    import torch

    dev = "cuda" if spec["device"] == "cuda" else "cpu"
    dtype = getattr(torch, spec["dtype"])
    F, H, K = data.n_features, spec["workload"]["n_hidden"], data.n_classes
    x = torch.as_tensor(np.concatenate([data.train.x, data.valid.x, data.test.x])).to(dev, dtype)
    y = torch.as_tensor(np.concatenate([data.train.y, data.valid.y, data.test.y])).to(dev)
    n_train, n_valid = len(data.train), len(data.valid)
    act = torch.nn.Sigmoid() if spec["activation"] == "sigmoid" else torch.nn.ReLU()
    model = torch.nn.Sequential(torch.nn.Linear(F, H), act, torch.nn.Linear(H, K))
    model = model.to(dev, dtype)
    loss_fn = torch.nn.functional.cross_entropy
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    tf32 = bool(spec.get("tf32")) and dev == "cuda"
    if dev == "cuda":
        # --tf32 holds for the peer too (its products and its floor), as for fastmlp's own rows;
        # set either way, since one bench process runs rows with and without it
        from .backend import get_backend

        torch.backends.cuda.matmul.allow_tf32 = tf32
        be = get_backend("cuda", tf32=tf32)
        floor = gemm_floor(be.xp, spec["dtype"], spec, sync, matmul=be.matmul)
    else:
        floor = gemm_floor(np, spec["dtype"], spec, lambda: None)
    label = (f"{dev} (torch {torch.__version__}{', compile' if compiled else ''}"
             f"{', TF32 products' if tf32 else ''})")
    if spec.get("batch_size") is not None:
        return floor, _torch_steps(spec, model, x, y, n_train, n_valid), sync, label
    opt = torch.optim.SGD(model.parameters(), lr=spec.get("lr", LR), momentum=spec["momentum"])

    def step(x, y):
        # the idiomatic loop: backward through the training rows only; valid and test under
        # no_grad at the same (pre-update) weights
        opt.zero_grad(set_to_none=True)
        out = model(x[:n_train])
        loss = loss_fn(out, y[:n_train])
        loss.backward()
        with torch.no_grad():
            ev = model(x[n_train:])
            y_ev = y[n_train:]

            def loss_acc(o, t):
                return [loss_fn(o, t), (o.argmax(1) == t).float().mean()]

            metrics = torch.stack([loss.detach(), (out.argmax(1) == y[:n_train]).float().mean(),
                                   *loss_acc(ev[:n_valid], y_ev[:n_valid]),
                                   *loss_acc(ev[n_valid:], y_ev[n_valid:])])
        opt.step()
        return metrics

    fn = torch.compile(step) if compiled else step

    def epoch():
        fn(x, y).cpu()  # read the metrics, as every implementation does once per epoch

    if compiled:
        # torch.compile compiles at the first call and again at the second (SGD's momentum
        # buffers appear after the first step): both stay out of the timing, whatever --warmup
        epoch()
        epoch()
    return floor, epoch, sync, label


def _torch_steps(spec, model, x, y, n_train: int, n_valid: int) -> Callable[[], None]:
    """The per-step loop a PyTorch user writes: valid and test at the epoch's starting
    weights, then a shuffled pass in batches of B with v ← γ·v + α·g; W ← W − v per step."""
    import torch

    B, mu, lr = spec["batch_size"], spec["momentum"], spec.get("lr", LR)
    loss_fn = torch.nn.functional.cross_entropy
    params = list(model.parameters())
    velocity = [torch.full_like(p, 1e-5) for p in params]
    gen = torch.Generator().manual_seed(0)
    x_ev, y_ev = x[n_train:], y[n_train:]

    def epoch():
        with torch.no_grad():
            ev = model(x_ev)
            metrics = [loss_fn(ev[:n_valid], y_ev[:n_valid]),
                       (ev[n_valid:].argmax(1) == y_ev[n_valid:]).float().mean()]
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for idx in torch.randperm(n_train, generator=gen).to(x.device).split(B):
            loss = loss_fn(model(x[idx]), y[idx])
            for p in params:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                for p, v in zip(params, velocity, strict=True):
                    v.mul_(mu).add_(p.grad, alpha=lr)
                    p.sub_(v)
                total += loss.detach() * len(idx)
        torch.stack([total, *metrics]).cpu()  # the epoch's one read, as fastmlp's

    return epoch


def _bench_jax(spec, data):
    """JAX's whole training epoch as one ``lax.scan`` from fastmlp's initial weights; the floor
    and GFLOP/s are of the training products alone (no evaluation runs)."""
    from .bench_jax import scan_trainer
    from .model import MLP

    model = MLP(data.n_features, spec["workload"]["n_hidden"], data.n_classes,
                activation=spec["activation"], dtype=spec["dtype"])
    epoch, label = scan_trainer(data.train.x, data.train.y, model.state(), spec["activation"],
                                spec["batch_size"], spec.get("lr", LR), spec["momentum"])
    floor = gemm_floor(np, spec["dtype"], spec, lambda: None)
    return floor, epoch, lambda: None, label


def run_row(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one implementation × device × dtype in this process; return its result row."""
    impl = spec["impl"]
    if impl not in IMPLS:
        raise ValueError(f"unknown implementation {impl!r}")
    from .sparse import density_of

    data = _dataset(spec)
    spec = {**spec, "workload": _workload_of(data, spec)}
    if impl == "jax-scan":  # training rows only: no evaluation products in its floor or GFLOP/s
        spec["workload"] = {**spec["workload"], "n_valid": 0, "n_test": 0}
    products, constants = "dense", None  # the peers' products
    if impl == "fastmlp":
        floor, epoch, sync, label, plan = _bench_fastmlp(spec, data)
        products, constants = plan.products, plan.constants  # offset: the density of S
    elif impl == "numpy-naive":
        floor, epoch, sync, label = _bench_numpy_naive(spec, data)
    elif impl == "jax-scan":
        floor, epoch, sync, label = _bench_jax(spec, data)
    else:
        floor, epoch, sync, label = _bench_torch(spec, data, compiled=impl == "torch-compile")
    median, times = _median_seconds(epoch, sync, spec["warmup"], spec["epochs"])
    w = spec["workload"]
    return {
        "impl": impl, "device": spec["device"], "dtype": spec["dtype"],
        "batch_size": spec.get("batch_size"), "activation": spec["activation"],
        "n_hidden": w["n_hidden"], "momentum": spec["momentum"], "lr": spec.get("lr", LR),
        "products": products, "density": density_of(
            [s.x for s in (data.train, data.valid, data.test)], constants),
        "epoch_ms": median * 1e3, "samples_per_s": w["n_train"] / median,
        "gemm_floor_ms": floor * 1e3, "ratio_to_floor": median / floor,
        "gflops": gemm_flops(spec) / median / 1e9,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "epochs_ms": [t * 1e3 for t in times], "backend": label,
        "workload": spec["workload"], "dataset": spec.get("dataset") or "random",
    }


def run_isolated(spec: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """:func:`run_row` in a fresh Python process; an ``error`` row if it fails."""
    cmd = [sys.executable, "-m", "fastmlp.bench", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"impl": spec["impl"], "device": spec["device"], "dtype": spec["dtype"],
                "batch_size": spec.get("batch_size"), "error": tail}
    return json.loads(lines[-1])


def peer_package(impl: str) -> str | None:
    """The package a peer's rows need (a key of :data:`PEERS`), None for fastmlp's and NumPy's."""
    return next((package for package in PEERS if impl.startswith(package)), None)


def available(impl: str) -> bool:
    """Whether ``impl`` can run here: its peer's package (torch, jax) is importable by this
    Python, the one every row's process runs."""
    import importlib.util

    package = peer_package(impl)
    return package is None or importlib.util.find_spec(package) is not None


TABLE_HEADER = (f"{'impl':<14} {'device':<8} {'dtype':<8} {'batch':>6} {'products':<12} "
                f"{'epoch ms':>9} "
                f"{'samples/s':>10} {'floor ms':>9} {'ratio':>6} {'GFLOP/s':>8} {'peak MB':>8}")


def format_row(r: dict[str, Any]) -> str:
    """One fixed-width table line for a result row (an error row says why)."""
    batch = "full" if r.get("batch_size") in (None, 0) else str(r["batch_size"])
    products = f"{r.get('products', 'dense')} {r['density']:.2f}" if "density" in r else ""
    lead = f"{r['impl']:<14} {r['device']:<8} {r['dtype']:<8} {batch:>6} {products:<12} "
    if "error" in r:
        return lead + f"error: {r['error']}"
    return lead + (f"{r['epoch_ms']:>9.1f} {r['samples_per_s']:>10.0f} {r['gemm_floor_ms']:>9.1f} "
                   f"{r['ratio_to_floor']:>6.3f} {r['gflops']:>8.1f} {r['peak_rss_mb']:>8.0f}")


if __name__ == "__main__":
    print(json.dumps(run_row(json.loads(sys.argv[1]))))
