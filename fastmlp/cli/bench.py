"""``fastmlp bench``: epoch time against the GEMM floor (fastmlp/bench.py does the measuring).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..backend import DEVICES, get_backend
from ..datasets import DATASET_NAMES
from ..kernels import ACTIVATIONS
from ..model import DTYPES
from ..sparse import SPARSE_MODES
from ..train import check_batch_size
from .common import (
    EXIT_OK,
    Command,
    batch_or_full,
    non_negative_float,
    positive_float,
    positive_int,
)


def _configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", nargs="+", choices=[d for d in DEVICES if d != "auto"],
                   default=["cpu"], help="devices to measure (default: cpu)")
    p.add_argument("--dtype", nargs="+", choices=DTYPES, default=["float32"],
                   help="dtypes to measure (default: float32)")
    p.add_argument("--batch-size", nargs="+", type=batch_or_full, default=[None], metavar="B",
                   help="minibatch sizes, or 'full' (default: full batch)")
    p.add_argument("--epochs", type=positive_int, default=10, metavar="N",
                   help="timed epochs per row; the median is reported (default: %(default)s)")
    p.add_argument("--warmup", type=positive_int, default=2, metavar="N",
                   help="untimed epochs first (compilation, caches) (default: %(default)s)")
    p.add_argument("--hidden", type=positive_int, default=1000, metavar="H",
                   help="hidden units (default: %(default)s)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                   help="hidden activation (default: %(default)s)")
    p.add_argument("--momentum", type=non_negative_float, default=0.9,
                   help="momentum coefficient (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=0.01,
                   help="learning rate of every row (default: %(default)s)")
    p.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                   help="training rows (default: 10000, the canonical workload)")
    p.add_argument("--valid-size", type=positive_int, default=None, metavar="N",
                   help="validation rows: the first N of a dataset's split (default: 6000 for "
                        "random data, a dataset's whole split)")
    p.add_argument("--test-size", type=positive_int, default=None, metavar="N",
                   help="test rows, as --valid-size (default: 2724 for random data, a "
                        "dataset's whole split)")
    p.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=None,
                   help="force (or, with --no-compiled, turn off) fastmlp's compiled "
                        "small-batch loop for minibatch rows (default: its own choice)")
    p.add_argument("--sparse", choices=SPARSE_MODES, nargs="+", default=None,
                   help="fastmlp's products over the inputs' nonzeros (or around each "
                        "feature's most frequent value, as train's --sparse): auto (by "
                        "density), on, off; several give a row each (default: off and on "
                        "side by side with --dataset, else auto)")
    p.add_argument("--dataset", choices=DATASET_NAMES, default=None,
                   help="real data instead of random data of the canonical shapes")
    p.add_argument("--data-path", metavar="PATH", default=None)
    p.add_argument("--compare", action="store_true",
                   help="also measure course-style NumPy and, when installed, PyTorch eager and "
                        "torch.compile on the same workload (full batch), and for each "
                        "minibatch size a PyTorch eager per-step loop and, on the CPU, JAX's "
                        "training epoch as one lax.scan (training rows only)")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 float32 products on the GPU (explicit opt-in)")
    p.add_argument("--json", action="store_true", help="one JSON object per row on stdout")



def _sparse_modes(args: argparse.Namespace, impl: str, device: str,
                  batch: int | None) -> list[str]:
    # the sparse products are fastmlp's, on the CPU: other rows run as chosen
    if impl != "fastmlp" or device != "cpu":
        return ["auto"]
    return args.sparse or (["off", "on"] if args.dataset else ["auto"])


def run_bench(args: argparse.Namespace) -> int:
    """``fastmlp bench``: epoch time against the GEMM floor, one isolated process per row."""
    from .. import bench

    workload = dict(bench.WORKLOAD, n_hidden=args.hidden)
    if args.train_size is not None:
        workload["n_train"] = args.train_size
    for key, size in (("n_valid", args.valid_size), ("n_test", args.test_size)):
        if size is not None:
            workload[key] = size
    for batch in args.batch_size:
        if batch is not None:
            check_batch_size(batch, workload["n_train"], "--batch-size")
    impls = ["fastmlp"] + ([i for i in bench.IMPLS[1:] if bench.available(i)]
                           if args.compare else [])
    minibatches = [b for b in args.batch_size if b is not None]
    if args.compare and not args.json:
        for package, name in bench.PEERS.items():
            wanted = package != "jax" or (minibatches and "cpu" in args.device)
            if wanted and not bench.available(package):
                print(f"note: {name} is not installed; its rows are left out", file=sys.stderr)
    rows = []
    for device in args.device:
        get_backend(device)  # fail fast, with the clear message, on an unusable device
        for dtype in args.dtype:
            for impl in impls:
                if impl in ("numpy-naive", "jax-scan") and device != "cpu":
                    continue
                batches = {"fastmlp": args.batch_size, "numpy-naive": [None],
                           "torch-compile": [None], "jax-scan": minibatches}.get(
                               impl, args.batch_size)
                if impl == "torch-eager":  # full batch and a per-step loop per minibatch size
                    batches = [None, *minibatches]
                for batch, sparse in ((b, m) for b in batches
                                      for m in _sparse_modes(args, impl, device, b)):
                    spec = dict(impl=impl, device=device, dtype=dtype, batch_size=batch,
                                activation=args.activation, momentum=args.momentum, lr=args.lr,
                                compiled=args.compiled, sparse=sparse, epochs=args.epochs,
                                warmup=args.warmup, repeats=args.epochs, workload=workload,
                                dataset=args.dataset, data_path=args.data_path, tf32=args.tf32,
                                valid_size=args.valid_size, test_size=args.test_size)
                    row = bench.run_isolated(spec)
                    rows.append(row)
                    if args.json:
                        print(json.dumps({k: row[k] for k in (*bench.ROW_KEYS, "error")
                                          if k in row}), flush=True)
                    else:
                        if len(rows) == 1:
                            print(bench.TABLE_HEADER + "\n" + "-" * len(bench.TABLE_HEADER))
                        print(bench.format_row(row), flush=True)
    return EXIT_OK if all("error" not in r for r in rows) else 1


COMMAND = Command(
    name="bench",
    help="time epochs of the canonical workload against the GEMM floor",
    description="Seconds per epoch on the canonical workload (F=784, H=1000, K=10; 10000 "
                "train, 6000 valid, 2724 test rows) as a multiple of the time of its three big "
                "matrix products, measured in the same process.",
    configure=_configure_bench,
    run=run_bench,
)
