"""The course recipe trained by PyTorch, to compare test accuracies with `fastmlp train`.

Run: ``python bench/torch_recipe.py [--seeds 0 1 2 3 4] [--init torch|fastmlp] [--epochs 200]``.
Not a test; bench/RESULTS.md quotes its output (needs PyTorch).

Same recipe and data as the default `fastmlp train`: bundled MNIST, the first 10000 training
images, H = 1000, ReLU, full batch, 200 epochs, float32; v ← γ·v + α·∂L/∂W, W ← W − v with
γ = 0.99, α = 0.1, v starting at 1e-5. Written directly with torch autograd, independently of
fastmlp's kernels.

``--init torch`` draws Xavier-normal weights (variance 2/(fan_in+fan_out)) from PyTorch's own
generator with ``torch.manual_seed(seed)``: the spread over seeds of an independent implementation.
``--init fastmlp`` starts from ``fastmlp.MLP(seed=seed)``'s weights: same start, other code.
"""

# ruff: noqa: I001  (fastmlp must be imported before NumPy, see fastmlp/__init__.py)
import argparse
import time

import fastmlp
import numpy as np
import torch


def run(seed: int, init: str, epochs: int) -> dict:
    data = fastmlp.load_dataset("mnist", train_size=10000)
    x, y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y).long()
    xt, yt = torch.from_numpy(data.test.x), torch.from_numpy(data.test.y).long()
    F, H, K = x.shape[1], 1000, 10
    if init == "fastmlp":
        model = fastmlp.MLP(F, H, K, seed=seed)
        params = [torch.tensor(np.array(getattr(model, n))) for n in ("Wh", "bh", "Wo", "bo")]
    else:
        torch.manual_seed(seed)
        params = [torch.nn.init.xavier_normal_(torch.empty(F, H)), torch.zeros(1, H),
                  torch.nn.init.xavier_normal_(torch.empty(H, K)), torch.zeros(1, K)]
    for p in params:
        p.requires_grad_(True)
    velocity = [torch.full_like(p, 1e-5) for p in params]
    Wh, bh, Wo, bo = params
    start = time.perf_counter()
    for _ in range(epochs):
        loss = torch.nn.functional.cross_entropy(torch.relu(x @ Wh + bh) @ Wo + bo, y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, v, g in zip(params, velocity, grads, strict=True):
                v.mul_(0.99).add_(g, alpha=0.1)
                p.sub_(v)
    with torch.no_grad():
        acc = (torch.relu(xt @ Wh + bh) @ Wo + bo).argmax(1).eq(yt).double().mean().item()
    return {"seed": seed, "init": init, "test_acc": acc, "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--init", choices=("torch", "fastmlp"), default="torch")
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    accs = []
    for seed in args.seeds:
        r = run(seed, args.init, args.epochs)
        accs.append(r["test_acc"])
        print(f"torch {torch.__version__}  init={r['init']:8s} seed={seed}  "
              f"test_acc={r['test_acc']:.4f}  ({r['wall_s']:.1f} s)", flush=True)
    if len(accs) > 1:
        print(f"mean {np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f} (std over seeds)")


if __name__ == "__main__":
    main()
