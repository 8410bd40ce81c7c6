"""``fastmlp evaluate``: loss and accuracy of a saved model on each split of a dataset.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..backend import DEVICES, get_backend
from ..config import RunConfig, recorded_run
from ..datasets import DATASET_NAMES, SCALES
from ..errors import FastMLPError, is_int, probe_path
from ..jsonsafe import json_clean
from ..model import MLP
from ..runner import load_run_data
from ..texttable import text_table
from ..train import SPLITS, evaluate
from .common import (
    EXIT_OK,
    Command,
    add_data_options,
    model_line,
    setting,
)


def _configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.npz", help="a model written by 'fastmlp train'")
    add_data_options(p, from_run=True,
                     scale_help="pixel scaling (default: the one the model was trained with, if "
                                "recorded, else unit)")
    p.add_argument("--seed", type=setting("seed"), default=None,
                   help="seed of --dataset synthetic (default: the training run's, else 0)")
    p.epilog = ("Without --dataset and --data-path, the data is that of the model's training "
                "run, as MODEL.npz records it: dataset, data file, training rows and (synthetic) "
                "seed; with --data-path alone, only the dataset kind is taken from the record; "
                "with --dataset, none of these. The recorded pixel scaling applies unless --scale "
                "is given. Without a record: mnist, unit scaling.")
    p.add_argument("--device", choices=DEVICES, default="auto", help="default: auto")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _data_options_from_run(args: argparse.Namespace, saved: dict) -> list[str]:
    """Fill the data options left out (None) from the model's recorded training run (see the
    evaluate epilog); return the options filled, as the user would have typed them."""
    # the run's own settings where recorded (RunConfig, runs since it), else the model's keys
    run = recorded_run(saved)
    dataset, seed = run.get("dataset"), run.get("seed")
    recorded = dataset if dataset in DATASET_NAMES else None
    filled = []

    def fill(option: str, value) -> None:
        setattr(args, option, value)
        filled.append(f"--{option.replace('_', '-')} {value}")

    if args.dataset is None and recorded is not None:
        if args.data_path is None:  # the very data: its file, rows and seed too
            # (a synthetic run's recorded path was never read: older versions took one)
            path = run.get("data_path") if recorded != "synthetic" else None
            if path is not None:
                if not (isinstance(path, str) and Path(path).is_absolute()
                        and probe_path(path) is not None):
                    raise FastMLPError(
                        f"the model was trained on --dataset {recorded} --data-path {path}, "
                        f"which is not found from here; pass --data-path (or --dataset)")
                fill("data_path", path)
            n_train = saved.get("n_train")
            if args.train_size is None and is_int(n_train) and n_train > 0:
                fill("train_size", n_train)
            if args.seed is None and recorded == "synthetic" and is_int(seed) and seed >= 0:
                fill("seed", seed)
        filled.insert(0, f"--dataset {recorded}")
        args.dataset = recorded
    args.dataset = args.dataset or "mnist"
    if args.seed is None:
        args.seed = 0
    if args.scale is None:  # a recorded scale applies to any pixel data, the same or not
        if run.get("scale") in SCALES:
            fill("scale", run["scale"])
        else:
            args.scale = "unit"
    return filled


def run_evaluate(args: argparse.Namespace) -> int:
    """``fastmlp evaluate``: loss and accuracy of a saved model on each split of a dataset."""
    backend = get_backend(args.device)
    model = MLP.load(args.model, device=backend)
    from_run = _data_options_from_run(args, model.saved_config)
    try:
        dataset = load_run_data(RunConfig(
            dataset=args.dataset, data_path=args.data_path, train_size=args.train_size,
            scale=args.scale, dtype=model.dtype, seed=args.seed))
    except FastMLPError as exc:
        data_options = [o for o in from_run if not o.startswith("--scale")]
        if not data_options:
            raise
        raise FastMLPError(f"{exc} ({' '.join(data_options)}: taken from the model's training "
                           f"run; give other data options to override them)") from None
    metrics = evaluate(model, dataset)  # checks that the data fits the model first
    results = {split: {"rows": len(getattr(dataset, split)), "loss": metrics[f"{split}_loss"],
                       "accuracy": metrics[f"{split}_acc"]} for split in SPLITS}
    if args.json:
        print(json.dumps(json_clean({"model": args.model, "config": model.config(),
                                     "dataset": dataset.name, "data_path": args.data_path,
                                     "scale": args.scale, "seed": args.seed,
                                     "train_size": args.train_size,
                                     "device": backend.describe(),
                                     "splits": results})), flush=True)
        return EXIT_OK
    print(f"model:  {model_line(args.model, model)}")
    print(f"data:   {dataset.summary()}, scale {args.scale}")
    if from_run:
        print(f"        ({' '.join(from_run)}: as in the model's training run)")
    print(f"device: {backend.describe()} [{backend.reason or 'requested'}]")
    print()
    fmt = lambda v, spec: format(v, spec) if math.isfinite(v) else "n/a"  # noqa: E731
    rows = [("split", "rows", "loss", "accuracy")]
    rows += [(s, str(r["rows"]), fmt(r["loss"], ".4f"), fmt(r["accuracy"], ".4f"))
             for s, r in results.items()]
    print(text_table(rows))
    return EXIT_OK


COMMAND = Command(
    name="evaluate",
    help="loss and accuracy of a saved model on the train/valid/test splits of a dataset",
    configure=_configure_evaluate,
    run=run_evaluate,
)
