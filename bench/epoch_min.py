"""Training-epoch time of one strategy, min and median of 15 epochs (the first dropped):
``python bench/epoch_min.py [B] [COMPILED] [H]``: B rows per step (default 100), COMPILED 1 for
the compiled small-batch loop, 0 for the per-step path (default), H hidden units (default 300);
5000 dense random rows, float32, momentum 0.9. Minima resist a shared machine's noise better
than one run of ``fastmlp bench``; alternate two installs to compare them."""

import sys
import time

import fastmlp  # first: it sets OpenBLAS up before NumPy loads

# isort: split
import numpy as np

from fastmlp.datasets import Dataset, Split
from fastmlp.model import MLP

B = int(sys.argv[1]) if len(sys.argv) > 1 else 100
compiled = len(sys.argv) > 2 and sys.argv[2] == "1"
H = int(sys.argv[3]) if len(sys.argv) > 3 else 300
n = 5000
rng = np.random.default_rng(0)
X = rng.random((n + 20, 784), dtype=np.float32)
y = rng.integers(0, 10, n + 20)
data = Dataset("random", Split(X[:n], y[:n]), Split(X[n:n + 10], y[n:n + 10]),
               Split(X[n + 10:], y[n + 10:]))
model = MLP(784, H, 10, dtype="float32", seed=0)
times: list[float] = []
last = [time.perf_counter()]


def lap(trainer, record) -> None:
    now = time.perf_counter()
    times.append(now - last[0])
    last[0] = now


fastmlp.train(model, data, epochs=16, lr=0.01, momentum=0.9, batch_size=B, eval_every=1000,
              callback=lap, compiled=compiled)
ms = sorted(t * 1e3 for t in times[1:])
print(f"min {ms[0]:.1f} med {ms[len(ms) // 2]:.1f}")
