"""Full-batch epoch (the trainer itself) with dense and with sparse products: bundled MNIST
(10000 train rows, H = 1000) and random rows of a given density in the canonical layout, to set
``fastmlp.sparse.SPARSE_MAX_DENSITY``. Usage: python bench/sparse_density.py [float32|float64]
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy: see fastmlp/__init__.py)
import statistics
import sys
import time

import fastmlp
import numpy as np

from fastmlp.train import Trainer
from fastmlp.datasets import Dataset, Split


def med(trainer, k=5):
    """Median seconds of k epochs after one untimed."""
    trainer.run_epoch()
    ts = []
    for _ in range(k):
        a = time.perf_counter()
        trainer.run_epoch()
        ts.append(time.perf_counter() - a)
    return statistics.median(ts)


def epoch_ms(data, dtype: str, sparse: str, k: int = 5) -> float:
    model = fastmlp.MLP(784, 1000, 10, dtype=dtype)
    return med(Trainer(model, data, lr=0.01, momentum=0.9, sparse=sparse), k) * 1e3


def rows(rng, n: int, density: float, dtype: str) -> Split:
    x = rng.random((n, 784)) * (rng.random((n, 784)) < density)
    return Split(x.astype(dtype), rng.integers(0, 10, n))


def main() -> None:
    dtype = sys.argv[1] if len(sys.argv) > 1 else "float32"
    mnist = fastmlp.load_dataset("mnist", train_size=10000, dtype=dtype)
    for sparse in ("off", "on"):
        print(f"mnist {dtype} {sparse}: {epoch_ms(mnist, dtype, sparse):.1f} ms", flush=True)
    rng = np.random.default_rng(0)
    for density in (0.2, 0.3, 0.4, 0.5):
        data = Dataset("random", *(rows(rng, n, density, dtype) for n in (10000, 6000, 2724)))
        dense, sparse = (epoch_ms(data, dtype, mode, 3) for mode in ("off", "on"))
        print(f"density {density}: dense {dense:.1f} ms, sparse {sparse:.1f} ms, "
              f"ratio {sparse / dense:.2f}", flush=True)


if __name__ == "__main__":
    main()
