"""fastmlp: the course two-layer perceptron, trained as fast as the hardware allows.

>>> import fastmlp
>>> data = fastmlp.load_dataset("mnist", train_size=10000)
>>> model = fastmlp.MLP(784, 1000, 10)
>>> history = fastmlp.train(model, data, epochs=200, lr=0.1, momentum=0.99)

Importing fastmlp never imports CuPy; the CUDA backend imports it when asked for.
"""

from .backend import Backend, get_backend
from .datasets import Dataset, Split, load_dataset
from .errors import FastMLPError
from .model import MLP
from .train import History, Trainer, train

__version__ = "0.1.0"

__all__ = ["MLP", "Backend", "Dataset", "FastMLPError", "History", "Split", "Trainer",
           "get_backend", "load_dataset", "train", "__version__"]
