"""How much MNIST's rows share their nonzero pixels: the arithmetic of register blocking.

Run: ``python bench/experiments/sparse_unions.py`` (bundled MNIST, the 10000 training rows).
Not a test.

Blocking R rows of X·Wh together (one load of a Wh row piece serving R rows' accumulators, as a
dense GEMM micro-kernel does) multiplies over the union of the R rows' nonzero columns, zeros
included. Blocking R pixels of Xᵀ·dZ together (one load of a dZ row piece serving R output rows)
multiplies over the union of the rows where any of the R pixels is nonzero. For each, the
multiply-adds done per real nonzero ("work") and the dense-operand loads per real nonzero
("loads"), with rows in their own order, sorted by label, and by label then by a coarse position
along two principal directions of each class (a cheap clustering).
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy)
import fastmlp  # noqa: F401  (sets the thread-pool variables first)
import numpy as np

from fastmlp.datasets import load_dataset


def row_blocks(M: np.ndarray, R: int) -> tuple[float, float]:
    n = M.shape[0] // R * R
    blocks = M[:n].reshape(-1, R, M.shape[1])
    union = blocks.any(axis=1).sum()
    nnz = blocks.sum()
    return R * union / nnz, union / nnz


def clustered_order(M: np.ndarray, y: np.ndarray) -> np.ndarray:
    order = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        A = M[idx].astype(np.float64)
        A -= A.mean(axis=0)
        _, _, vt = np.linalg.svd(A[:2000], full_matrices=False)
        p, q = A @ vt[0], A @ vt[1]
        bins = np.digitize(p, np.quantile(p, np.linspace(0, 1, 20)))
        order.extend(idx[np.lexsort((q, bins))])
    return np.asarray(order)


def main() -> None:
    data = load_dataset("mnist", train_size=10000)
    M, y = data.train.x != 0, data.train.y
    print(f"{M.shape[0]} rows, {M.sum(axis=1).mean():.0f} nonzeros per row of {M.shape[1]}")
    orders = {"own order": np.arange(M.shape[0]), "by label": np.argsort(y, kind="stable"),
              "by label, then position": clustered_order(M, y)}
    for name, order in orders.items():
        for R in (2, 4, 8):
            work, loads = row_blocks(M[order], R)
            print(f"X·Wh   rows {name:24s} R={R}: work {work:.2f}×, loads {loads:.2f}×")
    images = M.reshape(-1, 28, 28)
    for h, w in ((1, 2), (2, 2), (1, 4), (2, 4), (1, 8)):
        union = nnz = 0
        for r0 in range(0, 28, h):
            for c0 in range(0, 28, w):
                block = images[:, r0:r0 + h, c0:c0 + w].reshape(M.shape[0], -1)
                union += int(block.any(axis=1).sum())
                nnz += int(block.sum())
        R = h * w
        print(f"Xᵀ·dZ  pixels in {h}×{w} patches     R={R}: work {R * union / nnz:.2f}×, "
              f"loads {union / nnz:.2f}×")


if __name__ == "__main__":
    main()
