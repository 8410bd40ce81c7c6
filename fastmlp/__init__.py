"""fastmlp: the course two-layer perceptron, trained as fast as the hardware allows.

>>> import fastmlp
>>> data = fastmlp.load_dataset("mnist", train_size=10000)
>>> model = fastmlp.MLP(784, 1000, 10)
>>> history = fastmlp.train(model, data, epochs=200, lr=0.1, momentum=0.99)

or a whole run, as ``fastmlp train`` does it (data, model, checkpoints, files in ``out``):

>>> result = fastmlp.run(fastmlp.RunConfig(hidden=300, epochs=50, out="runs/h300"))

Importing fastmlp never imports CuPy; the CUDA backend imports it when asked for.
"""

# first, before anything loads NumPy: it sets the thread-pool variables OpenBLAS reads
from .startup import OPENBLAS_LOADED_FIRST as _OPENBLAS_LOADED_FIRST  # noqa: F401, I001

from .backend import Backend, get_backend  # noqa: E402
from .config import RunConfig  # noqa: E402
from .datasets import Dataset, Split, load_dataset  # noqa: E402
from .errors import FastMLPError  # noqa: E402
from .estimator import MLPClassifier  # noqa: E402
from .model import MLP  # noqa: E402
from .runner import RunResult, run  # noqa: E402
from .train import DivergenceError, History, Trainer, train  # noqa: E402

__version__ = "0.1.0"

__all__ = ["MLP", "MLPClassifier", "Backend", "Dataset", "DivergenceError", "FastMLPError",
           "History", "RunConfig", "RunResult", "Split", "Trainer", "get_backend", "load_dataset",
           "run", "train", "__version__"]
