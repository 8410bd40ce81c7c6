"""Hot operations of the two-layer perceptron, each under one name in three forms.

- ``reference``: plain array code (NumPy, or CuPy through the array's own namespace), the oracle.
- ``cpu``: ``numba.njit(parallel=True, cache=True)`` kernels on NumPy arrays.
- ``cuda``: ``numba.cuda.jit`` kernels with grid-stride loops (CuPy arrays, or NumPy arrays under
  the simulator).

The hot operations are ``head`` (everything between the two big matrix products: bias, activation,
output layer, softmax cross-entropy, accuracy and, for training rows, the backward pass down to dZ)
and ``momentum`` (the optimiser step over flat buffers).
"""

ACTIVATIONS = ("relu", "sigmoid")


def activation_id(name: str) -> int:
    """Integer code of an activation as the compiled kernels take it (0 relu, 1 sigmoid)."""
    return ACTIVATIONS.index(name)
