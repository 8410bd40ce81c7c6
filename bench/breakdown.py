"""Where an epoch's time goes, on the canonical workload (random data, float32).

Run: ``python bench/breakdown.py [full] [minibatch] [head] [sgd] [torch] [subnormal]`` (full,
minibatch, sgd and torch by default). bench/RESULTS.md quotes the output. Not a test.

- full: medians of one full-batch epoch taken apart (X·Wh for all rows, a plain copy of Z for
  scale, the fused head, Xᵀ·dZ, the momentum update).
- minibatch: B = 100 epochs of the trainer itself with timers around its backend calls (the two
  products, the head, the momentum update, the valid/test evaluation; the rest is the batch
  gathers and Python), summed per epoch and averaged over the same 5 epochs as their whole;
  then the median of 5 epochs without timers.
- head: one 100-row head call alone, its Z restored (and so in cache) before each call (median).
- sgd: one per-sample (B = 1) epoch on 10000 rows, H = 1000.
- torch: the three big products with torch.matmul (MKL), when PyTorch is installed.
- subnormal: the default recipe (bundled MNIST, 200 full-batch epochs) with the epoch time and
  the count of subnormal entries of dZ every 50 epochs.
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy, see below)
import sys
import time

import fastmlp  # first: it sets the thread-pool variables before NumPy loads OpenBLAS
import numpy as np
from fastmlp.bench import WORKLOAD, _dataset


def median_ms(fn, repeats=10, setup=None):
    fn()
    times = []
    for _ in range(repeats):
        if setup:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def trainer(batch_size, n_hidden=1000):
    data = _dataset(dict(dtype="float32", workload=WORKLOAD))
    model = fastmlp.MLP(784, n_hidden, 10)
    tr = fastmlp.Trainer(model, data, lr=0.01, momentum=0.9, batch_size=batch_size)
    tr.run_epoch()  # compile and warm up
    return model, tr


def full():
    model, tr = trainer(None)
    be, g, n = model.backend, model.grad_views, tr.counts[0]
    X, Z, y = tr.X, tr.strategy.Z, tr.y
    Z0 = Z.copy()
    rows = {
        "X·Wh (all rows)": lambda: be.matmul(X, model.Wh, out=Z),
        "copy of Z": lambda: np.copyto(Z, Z0),
        "fused head": lambda: be.hidden_to_loss(Z, model.bh, model.Wo, model.bo, y, tr.ends, n,
                                                "relu", g["Wo"], g["bo"], g["bh"],
                                                tr.strategy.stats),
        "Xᵀ·dZ": lambda: be.matmul(X[:n].T, Z[:n], out=g["Wh"]),
        "momentum": lambda: be.momentum(model.params, model.grads, tr.velocity, 0.01, 0.9),
        "whole epoch": tr.run_epoch,
    }
    for name, fn in rows.items():
        setup = (lambda: np.copyto(Z, Z0)) if name == "fused head" else None
        print(f"full batch  {name:18s} {median_ms(fn, setup=setup):8.1f} ms")


def minibatch(B=100, epochs=5):
    # The trainer's own epochs, with timers around the backend calls it makes: the parts and
    # the whole come from the same epochs, and the loop timed is the real one.
    model, tr = trainer(B)
    be = model.backend
    spent = dict.fromkeys(("X·Wh", "fused head", "Xᵀ·dZ", "momentum", "valid+test eval"), 0.0)
    evaluating = False

    def timed(fn, part):
        def call(*args, **kwargs):
            start = time.perf_counter()
            fn(*args, **kwargs)
            spent["valid+test eval" if evaluating else part(args[0])] += (
                time.perf_counter() - start)
        return call

    # X·Wh takes the C-contiguous batch; Xᵀ·dZ its transpose
    be.matmul = timed(be.matmul, lambda a: "X·Wh" if a.flags.c_contiguous else "Xᵀ·dZ")
    be.hidden_to_loss = timed(be.hidden_to_loss, lambda a: "fused head")
    be.momentum = timed(be.momentum, lambda a: "momentum")
    forward_only = tr.strategy.forward_only

    def evaluation(*args, **kwargs):
        nonlocal evaluating
        evaluating = True
        try:
            return forward_only(*args, **kwargs)
        finally:
            evaluating = False

    tr.strategy.forward_only = evaluation
    whole = 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        tr.run_epoch()
        whole += time.perf_counter() - start
    for key, total in spent.items():
        print(f"B={B} epoch {key:18s} {total / epochs * 1e3:8.1f} ms")
    rest = whole - sum(spent.values())
    print(f"B={B} epoch {'gathers and rest':18s} {rest / epochs * 1e3:8.1f} ms")
    print(f"B={B} epoch {'sum: whole epoch':18s} {whole / epochs * 1e3:8.1f} ms "
          f"(mean of the same {epochs} epochs, timers in)")
    for name in ("matmul", "head", "momentum", "_forward_only"):  # the timers out again
        vars(be).pop(name, None)
        vars(tr).pop(name, None)
    print(f"B={B} epoch {'whole epoch':18s} {median_ms(tr.run_epoch, repeats=5):8.1f} ms "
          f"(median of 5, no timers)")


def head(B=100):
    model, tr = trainer(B)
    g = model.grad_views
    Z = tr.strategy.Z[:B]
    model.backend.matmul(tr.X[:B], model.Wh, out=Z)  # real pre-activations of 100 rows
    Z0 = Z.copy()

    def call():
        model.backend.hidden_to_loss(Z, model.bh, model.Wo, model.bo, tr.y[:B], (B,), B, "relu",
                                     g["Wo"], g["bo"], g["bh"], tr.strategy.batch_stats)

    us = median_ms(call, repeats=2000, setup=lambda: np.copyto(Z, Z0)) * 1e3
    print(f"B={B} head, one call alone {us:8.1f} µs")


def sgd():
    _, tr = trainer(1)
    print(f"B=1 epoch   {'whole epoch':18s} {median_ms(tr.run_epoch, repeats=2):8.1f} ms")


def torch_floor():
    try:
        import torch
    except ImportError:
        print("torch: not installed")
        return
    n, N = WORKLOAD["n_train"], WORKLOAD["n_train"] + WORKLOAD["n_valid"] + WORKLOAD["n_test"]
    X, W = torch.rand(N, 784), torch.rand(784, 1000)
    Z, dW = torch.empty(N, 1000), torch.empty(784, 1000)

    def products():
        torch.matmul(X[:n], W, out=Z[:n])
        torch.matmul(X[:n].T, Z[:n], out=dW)
        torch.matmul(X[n:], W, out=Z[n:])

    print(f"torch {torch.__version__} three products {median_ms(products):8.1f} ms")


def subnormal():
    data = fastmlp.load_dataset("mnist", train_size=10000)
    model = fastmlp.MLP(784, 1000, 10)
    tr = fastmlp.Trainer(model, data, lr=0.1, momentum=0.99)
    n, tiny, times = tr.counts[0], np.finfo(np.float32).tiny, []
    for epoch in range(1, 201):
        start = time.perf_counter()
        tr.run_epoch()
        times.append(time.perf_counter() - start)
        if epoch % 50 == 0:
            dZ = tr.strategy.Z[:n]  # the head left dZ of the training rows here
            count = np.count_nonzero((dZ != 0) & (np.abs(dZ) < tiny))
            print(f"default recipe epoch {epoch:3d}  {np.median(times[-10:]) * 1e3:6.1f} ms "
                  f"(median of the last 10)  subnormal dZ entries {count}")


if __name__ == "__main__":
    parts = {"full": full, "minibatch": minibatch, "head": head, "sgd": sgd, "torch": torch_floor,
             "subnormal": subnormal}
    for name in sys.argv[1:] or ("full", "minibatch", "sgd", "torch"):
        parts[name]()
