"""``fastmlp gradcheck``: analytic gradients against central differences.
"""

from __future__ import annotations

import argparse

from ..backend import DEVICES, Backend, get_backend
from ..datasets import TrainSizeError, load_dataset
from ..errors import FastMLPError
from ..gradcheck import check_memory
from ..kernels import ACTIVATIONS
from ..model import MLP
from ..texttable import text_table
from ..train import check_compatible
from .common import (
    EXIT_OK,
    Command,
    model_line,
    non_negative_int,
    positive_float,
    positive_int,
)

GRADCHECK_MODEL_ENTRIES = 32  # entries per tensor checked in a saved model: two passes each
GRADCHECK_RANDOM = {"hidden": 8, "n_in": 20, "n_classes": 10, "activation": "relu"}
# floating-point operations past which a full check is refused (each checked entry costs two
# forward passes): about an hour of small products; --max-entries samples instead
GRADCHECK_MAX_FLOPS = 10**12


def _configure_gradcheck(p: argparse.ArgumentParser) -> None:
    net = p.add_argument_group("network (default: a small random one)")
    net.add_argument("--model", metavar="MODEL.npz", default=None,
                     help="check this saved model instead of a random network")
    net.add_argument("--hidden", type=positive_int, default=None, metavar="H",
                     help=f"hidden units of the random network (default: "
                          f"{GRADCHECK_RANDOM['hidden']})")
    net.add_argument("--n-in", type=positive_int, default=None, metavar="F",
                     help=f"inputs of the random network (default: {GRADCHECK_RANDOM['n_in']}; "
                          f"784 with --dataset mnist)")
    net.add_argument("--n-classes", type=positive_int, default=None, metavar="K",
                     help=f"outputs of the random network (default: "
                          f"{GRADCHECK_RANDOM['n_classes']})")
    net.add_argument("--activation", choices=ACTIVATIONS, default=None,
                     help=f"activation of the random network (default: "
                          f"{GRADCHECK_RANDOM['activation']})")
    net.add_argument("--device", choices=DEVICES, default="auto",
                     help="device whose kernels are checked (default: auto)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=("synthetic", "mnist"), default="synthetic",
                      help="rows to check on (default: %(default)s)")
    data.add_argument("--data-path", metavar="DIR", default=None,
                      help="a directory with the MNIST IDX files (default: the bundled copy)")
    data.add_argument("--samples", type=positive_int, default=16, metavar="N",
                      help="rows of data (default: %(default)s)")
    check = p.add_argument_group("check")
    check.add_argument("--max-entries", type=positive_int, default=None, metavar="M",
                       help=f"check at most M seeded random entries per tensor (default: all "
                            f"for the random network, {GRADCHECK_MODEL_ENTRIES} with --model)")
    check.add_argument("--eps", type=positive_float, default=1e-6,
                       help="finite-difference step (default: %(default)g)")
    check.add_argument("--tol", type=positive_float, default=1e-6,
                       help="largest relative error that passes (default: %(default)g)")
    check.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed for the network, the data and the sampled entries "
                            "(default: %(default)s)")


def _gradcheck_model(args: argparse.Namespace, backend: Backend) -> MLP:
    """The saved model, or a random float64 network with random biases too (zero biases are a
    special point where some gradient bugs cancel out)."""
    import numpy as np

    shape_opts = ("hidden", "n_in", "n_classes", "activation")
    if args.model is not None:
        given = [f"--{o.replace('_', '-')}" for o in shape_opts if getattr(args, o) is not None]
        if given:
            what = ("describes the random network; leave it" if len(given) == 1
                    else "describe the random network; leave them")
            raise FastMLPError(f"{', '.join(given)} {what} out with --model (the model file "
                               f"fixes its shape)")
        model = MLP.load(args.model, device=backend)
        check_memory(model.n_in, model.n_hidden, model.n_out, args.samples, backend,
                     np.dtype(model.dtype).itemsize)
        return model
    opts = {o: GRADCHECK_RANDOM[o] if getattr(args, o) is None else getattr(args, o)
            for o in shape_opts}
    if args.dataset == "mnist" and args.n_in is None:
        opts["n_in"] = 784
    check_memory(opts["n_in"], opts["hidden"], opts["n_classes"], args.samples, backend)
    check_work(opts["n_in"], opts["hidden"], opts["n_classes"], args.samples, args.max_entries)
    model = MLP(opts["n_in"], opts["hidden"], opts["n_classes"], activation=opts["activation"],
                dtype="float64", device=backend, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    model.bh = backend.asarray(rng.normal(0.0, 0.5, model.shapes["bh"]))
    model.bo = backend.asarray(rng.normal(0.0, 0.5, model.shapes["bo"]))
    return model


def check_work(n_in: int, n_hidden: int, n_out: int, n_rows: int,
               max_entries: int | None) -> None:
    """A one-line FastMLPError when checking the entries asked for would take more than
    :data:`GRADCHECK_MAX_FLOPS` (two forward passes over ``n_rows`` rows per entry)."""
    sizes = [n_in * n_hidden, n_hidden, n_hidden * n_out, n_out]
    entries = sum(size if max_entries is None else min(size, max_entries) for size in sizes)
    flops = 2 * entries * 2 * n_rows * (n_in * n_hidden + n_hidden * n_out)
    if flops > GRADCHECK_MAX_FLOPS:
        raise FastMLPError(f"checking all {entries:,} entries of a {n_in}-{n_hidden}-{n_out} "
                           f"network takes {2 * entries:,} forward passes (about {flops:.1e} "
                           f"floating-point operations); pass --max-entries M to check M "
                           f"sampled entries per tensor")


def _gradcheck_rows(args: argparse.Namespace, model: MLP):
    """(x, y, description) of ``--samples`` rows that fit the model."""
    if args.dataset == "synthetic":
        if args.data_path is not None:
            raise FastMLPError("--data-path is for --dataset mnist")
        data = load_dataset("synthetic", n_train=args.samples, n_valid=0, n_test=0,
                            n_features=model.n_in, n_classes=model.n_out, dtype="float64",
                            seed=args.seed)
    else:
        try:
            data = load_dataset("mnist", path=args.data_path, train_size=args.samples,
                                dtype="float64")
        except TrainSizeError as exc:  # its message names train_size, not our option
            raise FastMLPError(f"--samples must be between 1 and {exc.rows} (the training "
                               f"rows of mnist), got {args.samples}") from None
    check_compatible(model, data)
    return data.train.x, data.train.y, f"{len(data.train)} {data.name} rows"


def run_gradcheck(args: argparse.Namespace) -> int:
    """``fastmlp gradcheck``: analytic gradients against central differences, per tensor."""
    from ..gradcheck import gradcheck

    backend = get_backend(args.device)
    model = _gradcheck_model(args, backend)
    x, y, rows = _gradcheck_rows(args, model)
    max_entries = args.max_entries
    if max_entries is None and args.model is not None:
        max_entries = GRADCHECK_MODEL_ENTRIES
    result = gradcheck(model, x, y, eps=args.eps, max_entries=max_entries, seed=args.seed)
    what = args.model if args.model is not None else "random network"
    print(f"model:  {model_line(what, model)}")
    print(f"data:   {rows}; mean loss {result.loss:.6g}")
    print(f"device: {backend.describe()} [{backend.reason or 'requested'}]")
    print(f"check:  central differences, eps {result.eps:g}, tol {args.tol:g}")
    for note in result.notes:
        print(f"note:   {note}")
    rows_out = [("tensor", "shape", "checked", "rel error", "result")]
    for name, err in result.items():
        shape = "x".join(str(d) for d in result.shapes[name])
        rows_out.append((name, shape, str(result.checked[name]), f"{err:.2e}",
                         "pass" if err < args.tol else "FAIL"))
    print()
    print(text_table(rows_out, n_left=2))
    failed = [name for name, err in result.items() if not err < args.tol]
    print()
    if failed:
        print(f"FAILED: {', '.join(failed)} at or above tol {args.tol:g}", flush=True)
        return 1
    print(f"passed: all {len(result)} tensors below tol {args.tol:g}", flush=True)
    return EXIT_OK


COMMAND = Command(
    name="gradcheck",
    help="check the analytic gradients against central finite differences",
    description="Compare the gradients of the mean loss (the fused kernels of --device) with "
                "central finite differences on a float64 copy, per tensor. Exit 0 when every "
                "relative error ||a-n||/(||a||+||n||) is below --tol, 1 otherwise.",
    configure=_configure_gradcheck,
    run=run_gradcheck,
)
