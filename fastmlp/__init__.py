"""fastmlp: the course two-layer perceptron, trained as fast as the hardware allows.

>>> import fastmlp
>>> data = fastmlp.load_dataset("mnist", train_size=10000)
>>> model = fastmlp.MLP(784, 1000, 10)
>>> history = fastmlp.train(model, data, epochs=200, lr=0.1, momentum=0.99)

Importing fastmlp never imports CuPy; the CUDA backend imports it when asked for.
"""

import os
import sys

# Before NumPy loads OpenBLAS (so only when fastmlp is imported first, as the CLI does): idle
# OpenBLAS and OpenMP threads otherwise spin for up to ~0.1 s after each product or kernel,
# starving the other pool's threads on a small machine. The user's own settings win.
# (OpenMP, Numba's pool, starts later, at the first parallel kernel, so it always listens.)
_OPENBLAS_LOADED_FIRST = "numpy" in sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in os.environ
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from .backend import Backend, get_backend  # noqa: E402
from .datasets import Dataset, Split, load_dataset  # noqa: E402
from .errors import FastMLPError  # noqa: E402
from .estimator import MLPClassifier  # noqa: E402
from .model import MLP  # noqa: E402
from .train import DivergenceError, History, Trainer, train  # noqa: E402

__version__ = "0.1.0"

__all__ = ["MLP", "MLPClassifier", "Backend", "Dataset", "DivergenceError", "FastMLPError",
           "History", "Split", "Trainer", "get_backend", "load_dataset", "train", "__version__"]
