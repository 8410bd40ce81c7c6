"""Set before NumPy loads: the thread-pool variables OpenBLAS and OpenMP read once.

Imported first by ``fastmlp/__init__.py``, so only when fastmlp is imported before NumPy (as the
CLI does): idle OpenBLAS and OpenMP threads otherwise spin for up to ~0.1 s after each product or
kernel, starving the other pool's threads on a small machine. The user's own settings win.
(OpenMP, Numba's pool, starts later, at the first parallel kernel, so it always listens.)
Its own module, importing nothing of fastmlp, so the trainer can read the flag without importing
the package's ``__init__``.
"""

import os
import sys

# too late: NumPy (and OpenBLAS with it) was loaded before fastmlp, without the user's setting
OPENBLAS_LOADED_FIRST = "numpy" in sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in os.environ
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
