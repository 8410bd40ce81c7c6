"""fastmlp first, before anything imports NumPy: it sets the thread-pool variables OpenBLAS reads
when NumPy loads it (see README, "Performance notes")."""

import fastmlp  # noqa: F401
