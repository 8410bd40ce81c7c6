"""``fastmlp sweep``'s command line: its options, its progress lines and its exit codes.

The grid, the runs (each a :class:`~fastmlp.config.RunConfig` trained by :func:`fastmlp.run`),
their executors and the summary are :mod:`fastmlp.sweep`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..backend import DEVICES, get_backend
from ..config import RunConfig
from ..errors import FastMLPError, os_errors
from ..history import SPLITS
from ..kernels import ACTIVATIONS
from ..model import DTYPES
from ..rundir import RunLock
from ..runner import prepare_out_dir
from ..sweep import (
    DASK_HINT,
    DEFAULT_SEEDS,
    EXIT_FAILED,
    GRID_KEYS,
    SHARED_KEYS,
    Result,
    blas_note,
    build_runs,
    clear_stale_temps,
    curves_split,
    dask_client,
    finished_runs,
    format_table,
    load_data,
    plot_curves,
    point_name,
    run_stream,
    summarize,
    write_run,
    write_summary,
)
from ..train import check_batch_size
from .common import (
    Command,
    add_data_options,
    add_run_options,
    batch_or_full,
    positive_int,
    setting,
    stopped_exit_code,
)


def configure_sweep(p: argparse.ArgumentParser) -> None:
    """Add the ``fastmlp sweep`` options to ``p``."""
    grid = p.add_argument_group("grid (every combination is a grid point)")
    grid.add_argument("--hidden", nargs="+", type=setting("hidden"), default=[1000], metavar="H",
                      help="hidden units (default: 1000)")
    grid.add_argument("--lr", nargs="+", type=setting("lr"), default=[0.1], metavar="LR",
                      help="learning rates (default: 0.1)")
    grid.add_argument("--momentum", nargs="+", type=setting("momentum"), default=[0.99],
                      metavar="MU", help="momentum coefficients (default: 0.99)")
    grid.add_argument("--batch-size", nargs="+", type=batch_or_full, default=[None], metavar="B",
                      help="minibatch sizes, or 'full' for full batch (default: full)")
    grid.add_argument("--activation", nargs="+", choices=ACTIVATIONS, default=["relu"],
                      help="hidden activations (default: relu)")

    seeds = p.add_argument_group("seeds (every grid point runs once per seed)")
    one_of = seeds.add_mutually_exclusive_group()
    one_of.add_argument("--seeds", type=positive_int, default=None, metavar="R",
                        help=f"seeds 0 .. R-1 (default: {DEFAULT_SEEDS})")
    one_of.add_argument("--seed-list", nargs="+", type=setting("seed"), default=None,
                        metavar="S", help="these seeds instead")

    shared = p.add_argument_group("shared by every run (as in 'fastmlp train')")
    add_data_options(shared, path_help="data file or directory; with --scheduler, a path on "
                                       "the workers")
    add_run_options(shared)
    shared.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="default: %(default)s")
    shared.add_argument("--device", choices=DEVICES, default="auto",
                        help="default: auto (CUDA when CuPy sees a GPU, else the CPU); with "
                             "--scheduler, decided on each worker")

    ex = p.add_argument_group("execution")
    ex.add_argument("--workers", type=positive_int, default=None, metavar="N",
                    help="worker processes on this machine (default: 1, in this process: each "
                         "CPU run already uses every core)")
    ex.add_argument("--scheduler", metavar="ADDRESS", default=None,
                    help="run on a Dask distributed cluster, e.g. tcp://host:8786 (needs "
                         f"{DASK_HINT})")

    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", default=None,
                     help="output directory (default: runs/sweep-<YYYYmmdd-HHMMSS>); rerun with "
                          "the same DIR to resume")
    out.add_argument("--save-models", action="store_true",
                     help="also write each run's model.npz")
    out.add_argument("--quiet", action="store_true",
                     help="no line per finished run; only the table and the directory")


def sweep_runs(args: argparse.Namespace) -> tuple[dict[str, list], list[int], list[RunConfig]]:
    """(grid values, seeds, runs) of the sweep the options describe: every run a
    :class:`~fastmlp.config.RunConfig` of the shared options, a grid point and a seed."""
    base = RunConfig(dataset=args.dataset, data_path=args.data_path, train_size=args.train_size,
                     scale=args.scale, epochs=args.epochs, dtype=args.dtype, device=args.device,
                     eval_every=args.eval_every, init=args.init,
                     velocity_init=args.velocity_init, sparse=args.sparse)
    seeds = (list(args.seed_list) if args.seed_list is not None
             else list(range(args.seeds if args.seeds is not None else DEFAULT_SEEDS)))
    grid, runs = build_runs(base, {key: getattr(args, key) for key in GRID_KEYS}, seeds)
    return grid, seeds, runs


def _validate(args: argparse.Namespace, runs: list[RunConfig]) -> None:
    """Fail in seconds, before any directory exists, on what would fail every run."""
    if args.scheduler is not None and args.data_path is not None:
        return  # the path is on the workers; each run checks it there
    data = load_data(runs[0])  # cached: the first inline run reuses it
    n_train = len(data.train)
    for batch_size in dict.fromkeys(r.batch_size for r in runs):
        check_batch_size(batch_size, n_train, "--batch-size")
    if args.scheduler is None:
        get_backend(args.device)  # e.g. --device cuda without a GPU: one clear line now


def _resume_hint(args: argparse.Namespace, out: Path) -> str:
    argv = getattr(args, "_argv", None)
    if argv is None:
        return f"rerun the same sweep with --out {out}"
    argv = list(argv) + ([] if args.out is not None else ["--out", str(out)])
    return f"to resume, run: {shlex.join(['fastmlp', *argv])}"


def _run_line(k: int, n: int, run: RunConfig, result: Result) -> str:
    head = f"[{k:>{len(str(n))}}/{n}] {point_name(run)} seed {run.seed}:"
    if result["status"] != "ok":
        return f"{head} FAILED: {result['error']}"
    h = result["history"]
    final = h["final"]
    parts = [f"{s} acc {final[f'{s}_acc']:.4f}" for s in SPLITS
             if final.get(f"{s}_acc") is not None]
    return f"{head} {', '.join(parts)} ({h['wall_time_s']:.2f} s)"


def run_sweep(args: argparse.Namespace) -> int:
    """``fastmlp sweep``: train every grid point × seed (resuming finished runs), then write
    summary.csv/json and the curve plots and print the table. Exit 0, 1 if any run failed, 130
    on Ctrl-C."""
    started = time.perf_counter()
    if args.scheduler is not None and args.workers is not None:
        raise FastMLPError("--workers is for this machine; with --scheduler the cluster's "
                           "workers run the runs: use one or the other")
    grid, seeds, runs = sweep_runs(args)
    _validate(args, runs)
    client = dask_client(args.scheduler) if args.scheduler is not None else None
    try:
        out = prepare_out_dir(args.out, prefix="sweep-")
        command = shlex.join(["fastmlp", *args._argv]) if getattr(args, "_argv", None) else ""
        with RunLock(out, command):  # one sweep (or run) writing into --out at a time
            with os_errors("clear temporary files in", out):
                clear_stale_temps(out, runs)
            return _sweep(args, out, grid, seeds, runs, client, started)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _sweep(args: argparse.Namespace, out: Path, grid: dict[str, list[Any]], seeds: list[int],
           runs: list[RunConfig], client: Any, started: float) -> int:
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    results = finished_runs(out, runs, args.save_models)
    todo = [i for i in range(len(runs)) if i not in results]
    n_points = len(runs) // len(seeds)
    workers = args.workers or 1
    where = (f"Dask scheduler {args.scheduler} "
             f"({len(client.scheduler_info().get('workers', {}))} workers)" if client is not None
             else f"{min(workers, max(len(todo), 1))} worker processes" if workers > 1
             else "this process")
    say(f"sweep:    {n_points} grid points x {len(seeds)} seeds = {len(runs)} runs on {where}")
    say(f"output:   {out}")
    if results:
        # printed even with --quiet: it says why the sweep trains fewer runs than it has
        print(f"resume:   {len(results)} of {len(runs)} runs already finished in {out}, "
              f"skipped; training {len(todo)}", flush=True)

    stream = run_stream([(i, runs[i]) for i in todo], args.save_models, client=client,
                        workers=workers)
    n_trained = 0
    try:
        with contextlib.closing(stream):
            for i, result in stream:
                run = runs[i]
                with os_errors("write results to", out):
                    write_run(out, run, result)
                result["model"] = None  # written; do not keep every model in memory
                results[i] = result
                n_trained += 1
                say(_run_line(n_trained, len(todo), run, result))
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP
        finished = sum(r["status"] == "ok" for r in results.values())
        print(f"fastmlp: interrupted: {finished} of {len(runs)} runs finished and kept in "
              f"{out}; {_resume_hint(args, out)}", file=sys.stderr, flush=True)
        return stopped_exit_code(exc)

    note = blas_note([r for r in results.values() if r["status"] == "ok"])
    if note:
        print(note, file=sys.stderr, flush=True)
    rows = summarize(runs, results, out)
    split = curves_split(results.values())
    n_failed = sum(r["status"] != "ok" for r in results.values())
    meta = dict(
        command=shlex.join(["fastmlp", *args._argv]) if getattr(args, "_argv", None) else "",
        grid=grid, seeds=seeds,
        options={k: getattr(runs[0], k) for k in SHARED_KEYS},
        executor=("dask" if client is not None else "processes" if workers > 1 else "inline"),
        n_runs=len(runs), n_ok=len(runs) - n_failed, n_failed=n_failed,
        n_skipped=len(runs) - len(todo), n_trained=n_trained, curves_split=split,
        wall_time_s=time.perf_counter() - started)
    with os_errors("write results to", out):
        write_summary(out, rows, meta)
        plot_curves(out, grid, runs, results, rows, split)
    print("", format_table(rows), "", sep="\n", flush=True)
    if n_failed:
        print(f"fastmlp: {n_failed} of {len(runs)} runs failed (see error.json in their "
              f"directories); rerunning the same command retries them", file=sys.stderr,
              flush=True)
    print(f"results in {out}", flush=True)
    return EXIT_FAILED if n_failed else 0


COMMAND = Command(
    name="sweep",
    help="train a grid of hyperparameters x seeds and summarise it as mean ± std",
    description="Train every combination of --hidden, --lr, --momentum, --batch-size and "
                "--activation once per seed (in this process, --workers processes or on a Dask "
                "cluster with --scheduler); write each run's history.json, summary.csv, "
                "summary.json and mean-curve plots into --out. Rerun with the same --out to "
                "resume.",
    configure=configure_sweep,
    run=run_sweep,
)
