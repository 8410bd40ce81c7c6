"""``fastmlp sweep``: a hyperparameter grid × seeds, run in parallel, summarised as mean ± std.

A *grid point* is one combination of ``--hidden``, ``--lr``, ``--momentum``, ``--batch-size`` and
``--activation``; a *run* is one grid point trained with one seed. Each run is exactly what
``fastmlp train`` does with the same options and ``--seed`` (the seed draws the initial weights,
the minibatch order and, for ``--dataset synthetic``, the data), so any run can be reproduced on
its own.

Layout of ``--out DIR``::

    DIR/summary.csv, DIR/summary.json        one row per grid point: mean ± std over the seeds
    DIR/curves_loss.png, curves_accuracy.png mean validation curves per grid point, ± std bands
    DIR/<point>/seed-<s>/history.json        one finished run (config["sweep"] = its record)
    DIR/<point>/seed-<s>/history.csv         the same, per epoch
    DIR/<point>/seed-<s>/model.npz           with --save-models
    DIR/<point>/seed-<s>/error.json          a failed run (divergence, crash); retried on resume

where ``<point>`` is e.g. ``h100-lr0.05-m0.9-bfull-relu``.

Execution: ``--workers 1`` (the default) trains in this process, one run after the other; each
CPU training already uses every core (Numba threads + BLAS), so more processes on the same cores
mostly compete. ``--workers N`` uses N spawned processes (spawn, not fork: Numba's thread pool
does not survive a fork), worth it for runs too small to fill the machine or to keep a GPU busy.
``--scheduler ADDRESS`` sends the runs to a Dask distributed cluster. Every task is
:func:`run_one`: it loads the dataset itself, trains and *returns* the history; the driver (this
process) writes every file, so workers need not share its filesystem.

A Dask cluster for sweeps runs one training per worker process at a time, each using all the
cores of its machine. Dask limits its workers' BLAS to one thread by default, so set it back::

    dask scheduler                                                     # once, on any machine
    OPENBLAS_NUM_THREADS=16 dask worker tcp://HOST:8786 --nworkers 1 --nthreads 1   # per machine
    fastmlp sweep --scheduler tcp://HOST:8786 --hidden 100 500 1000 2000 \
        --lr 0.05 0.01 0.001 0.0001 --seeds 3 --out runs/grid

(the sweep prints a note when runs used several Numba threads but one BLAS thread). For a
``distributed.LocalCluster`` in Python, set ``distributed.nanny.pre-spawn-environ.<VAR>`` to
None for OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS with ``dask.config.set``.

Determinism: a run's result depends only on its settings and on the numbers of Numba and BLAS
threads
(the CPU head kernel sums per-thread partials; OpenBLAS splits its products by thread), so on one
machine ``--workers N`` and a local Dask cluster with the same thread counts give bit-identical
metrics to ``--workers 1``. Both counts are recorded in each history (``threads``, ``blas_env``).

Resume: rerunning the same command with the same ``--out`` skips every run whose history.json
exists and whose stored record (:func:`run_record`) equals the run's (and, with
``--save-models``, whose model.npz exists); failed and mismatching runs are trained again.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import math
import os
import signal
import socket
import traceback
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import report
from .config import RunConfig
from .errors import FastMLPError
from .history import METRICS, History
from .runner import load_run_data, run
from .texttable import text_table

__all__ = ["build_runs", "point_name", "run_one", "run_record", "summarize"]

GRID_KEYS = ("hidden", "lr", "momentum", "batch_size", "activation")
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
CURVES_LOSS_PNG = "curves_loss.png"
CURVES_ACCURACY_PNG = "curves_accuracy.png"
ERROR_JSON = "error.json"
DEFAULT_SEEDS = 3
EXIT_FAILED = 1  # the sweep finished but some runs failed (2 stays "bad options", 130 Ctrl-C)
DASK_HINT = "pip install 'fastmlp[dask]'"
DASK_CONNECT_TIMEOUT = "20s"
# Dask's nanny sets these to 1 in its workers (distributed.nanny.pre-spawn-environ); recorded per
# run, since the BLAS thread count changes both the speed and the last bits of the products
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

Result = dict[str, Any]  # what run_one returns (see its docstring)


# -- runs and names -------------------------------------------------------------------------------


def _unique(values: Iterable[Any]) -> list[Any]:
    """``values`` without repeats, first occurrence kept (``--hidden 100 100`` is one value)."""
    seen: list[Any] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _num(x: float) -> str:
    """Shortest exact text of a float (repr), so names of distinct values never collide."""
    return repr(float(x))


def point_name(config: RunConfig) -> str:
    """Directory name of a grid point, e.g. ``h100-lr0.05-m0.9-bfull-relu``."""
    batch = "full" if config.batch_size is None else str(config.batch_size)
    return (f"h{config.hidden}-lr{_num(config.lr)}-m{_num(config.momentum)}-b{batch}-"
            f"{config.activation}")


def run_dir(out: Path, config: RunConfig) -> Path:
    """``out/<point>/seed-<s>``: where one run's files live."""
    return out / point_name(config) / f"seed-{config.seed}"


def _point(config: RunConfig) -> tuple:
    return tuple(getattr(config, k) for k in GRID_KEYS)


# what identifies a run (history.json's config["sweep"], compared on resume): the settings
# shared by every run, the grid values and the seed, in this order
SHARED_KEYS = ("dataset", "data_path", "train_size", "scale", "epochs", "dtype", "device",
               "eval_every", "init", "velocity_init", "sparse")
RECORD_KEYS = (*SHARED_KEYS, *GRID_KEYS, "seed")


def run_record(config: RunConfig) -> dict[str, Any]:
    """The settings that identify the run ``config`` in its sweep (:data:`RECORD_KEYS`, as the
    options gave them), JSON-ready: what history.json and error.json store as ``sweep``."""
    return {key: getattr(config, key) for key in RECORD_KEYS}


def _canonical(config: RunConfig) -> dict[str, Any]:
    """``config``'s record as it reads back from JSON (what history.json stores), for resume
    comparison."""
    return json.loads(json.dumps(run_record(config)))


def build_runs(base: RunConfig, grid: dict[str, list[Any]],
               seeds: list[int]) -> tuple[dict[str, list[Any]], list[RunConfig]]:
    """(grid values per key without repeats, one RunConfig per run: ``base`` with each
    combination of the ``grid`` values (keys :data:`GRID_KEYS`) and each seed, in grid order
    then seed order). Each run is validated now, not when it runs."""
    if len(set(seeds)) != len(seeds):
        raise FastMLPError(f"--seed-list has repeated seeds: {seeds}")
    grid = {key: _unique(float(v) if key in ("lr", "momentum") else v for v in grid[key])
            for key in GRID_KEYS}
    configs = [base.replace(**dict(zip(GRID_KEYS, values, strict=True)), seed=seed)
               for values in itertools.product(*grid.values()) for seed in seeds]
    return grid, configs


# -- the task: one run, anywhere ----------------------------------------------------------------

_DATA_CACHE: dict[tuple, Any] = {}  # one dataset per process: a worker reuses it across its runs


def _data_key(config: RunConfig) -> tuple:
    # only synthetic data depends on the seed (load_dataset ignores it otherwise)
    seed = config.seed if config.dataset == "synthetic" else None
    return (config.dataset, config.data_path, config.train_size, config.scale, config.dtype,
            seed)


def load_data(config: RunConfig) -> Any:
    """The :class:`~fastmlp.datasets.Dataset` of ``config``, loaded as ``fastmlp train`` loads it
    (cached: the last one stays in memory)."""
    key = _data_key(config)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # keep one: a second MNIST copy is ~100 MB per worker
        _DATA_CACHE[key] = load_run_data(config)
    return _DATA_CACHE[key]


def _threads(backend: Any) -> int | None:
    if backend.name != "cpu":
        return None
    import numba

    return int(numba.get_num_threads())


def _error_line(exc: BaseException) -> str:
    """An unexpected exception as one line: its type name, then its message."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def run_one(config: RunConfig, save_model: bool = False) -> Result:
    """Train the run ``config`` (one of :func:`build_runs`) and return its result.

    Top-level and self-contained so that a spawned process or a Dask worker can run it: it loads
    the dataset by name/options and writes nothing. Returns a picklable dict:

    - ``status``: ``"ok"`` or ``"failed"``;
    - ``history``: ``History.to_dict()`` (per-epoch lists of length ``epochs``, ``final``,
      ``config`` with ``config["sweep"] =`` :func:`run_record`); for a failed run the epochs
      done, or None;
    - ``error`` (one line) and ``traceback`` (for unexpected exceptions) when failed;
    - ``model``: ``{"Wh" (F×H), "bh" (1×H), "Wo" (H×K), "bo" (1×K)}`` host arrays when
      ``save_model`` and ok, else None;
    - ``host``, ``pid``: where it ran.

    A divergence (train()'s :class:`~fastmlp.train.DivergenceError`) fails the run with the
    history up to its last finite weights. Any exception but KeyboardInterrupt becomes a failed
    result, so one bad run never ends the sweep.
    """
    result: Result = dict(status="failed", history=None, error=None, traceback=None, model=None,
                          host=socket.gethostname(), pid=os.getpid())
    # train() appends to this in place, also when it raises: a run that fails midway keeps its
    # epochs (after a divergence, those up to the last finite weights)
    history = History(config={"sweep": run_record(config)})
    try:
        # no files: the driver writes them; run() puts the settings into the history first
        model = run(config, dataset=load_data(config), history=history, save=False).model
    except Exception as exc:  # noqa: BLE001 - recorded as a failed run, never ends the sweep
        if isinstance(exc, FastMLPError):  # the user's kind of problem: its message says it all
            result["error"] = " ".join(str(exc).split())
        else:  # a bug: name it and keep its traceback in error.json
            result["error"] = _error_line(exc)
            result["traceback"] = traceback.format_exc()
        # a divergence measures ``final`` at the kept weights, even when no epoch is kept
        result["history"] = history.to_dict() if history.epochs or history.final else None
        return result
    # what run() does not know ("sweep", the run's identity for resume, went in above)
    history.config.update(threads=_threads(model.backend),
                          blas_env={k: os.environ[k] for k in BLAS_ENV if k in os.environ})
    result.update(status="ok", history=history.to_dict())
    if save_model:
        result["model"] = model.state()
    return result


# -- executors: yield (index, result) as runs finish; todo holds (index, config) pairs ------------


def _failed(exc: BaseException) -> Result:
    """The result of a run whose task itself failed (worker died, pool broken, cancelled)."""
    return dict(status="failed", history=None, error=_error_line(exc), traceback=None,
                model=None, host=None, pid=None)


def _run_inline(todo: Sequence[tuple[int, RunConfig]],
                save_model: bool) -> Iterator[tuple[int, Result]]:
    for i, config in todo:
        yield i, run_one(config, save_model)


def _ignore_sigint() -> None:
    # Pool workers leave Ctrl-C to the driver, which cancels and terminates them: otherwise every
    # idle worker would print its own KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_pool(todo: Sequence[tuple[int, RunConfig]], save_model: bool,
              workers: int) -> Iterator[tuple[int, Result]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_ignore_sigint)
    finished = False
    futures: dict[Any, int] = {}
    try:
        futures = {pool.submit(run_one, config, save_model): i for i, config in todo}
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - BrokenProcessPool etc.: that run failed
                result = _failed(exc)
            yield futures[fut], result
        finished = True
    finally:
        if not finished:  # Ctrl-C (or the consumer stopped): drop queued runs, stop running ones
            for fut in futures:
                fut.cancel()
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


def dask_client(address: str) -> Any:
    """A ``distributed.Client`` on ``address``; one-line errors when Dask is missing or the
    scheduler cannot be reached."""
    try:
        import distributed
    except ImportError:
        raise FastMLPError(f"--scheduler needs Dask's distributed scheduler: {DASK_HINT}"
                           ) from None
    try:
        return distributed.Client(address, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise FastMLPError(f"cannot connect to the Dask scheduler at {address}: {exc}") from None


def _run_dask(todo: Sequence[tuple[int, RunConfig]], save_model: bool,
              client: Any) -> Iterator[tuple[int, Result]]:
    from distributed import as_completed

    futures = {client.submit(run_one, config, save_model, pure=False): i for i, config in todo}
    pending = set(futures)
    try:
        for fut in as_completed(list(futures), loop=client.loop):
            pending.discard(fut)
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, lost connection, ...
                result = _failed(exc)
            fut.release()  # the driver has it now; free the worker's copy
            yield futures[fut], result
    finally:
        if pending:  # Ctrl-C: queued and running tasks are cancelled on the cluster
            with contextlib.suppress(Exception):
                client.cancel(list(pending))


def run_stream(todo: Sequence[tuple[int, RunConfig]], save_model: bool, *, client: Any = None,
               workers: int = 1) -> Iterator[tuple[int, Result]]:
    """The runs ``todo`` ((index, config) pairs) on the Dask ``client``, in ``workers`` spawned
    processes, or in this process (workers 1); yields (index, result) as runs finish."""
    if not todo:
        return _run_inline([], save_model)  # a generator, like the others
    if client is not None:
        return _run_dask(todo, save_model, client)
    if workers > 1:
        return _run_pool(todo, save_model, workers)
    return _run_inline(todo, save_model)


# -- files --------------------------------------------------------------------------------------


def _finished_history(out: Path, config: RunConfig, save_model: bool) -> dict[str, Any] | None:
    """history.json of ``config`` if that run is already done with the same config, else None."""
    d = run_dir(out, config)
    try:
        data = json.loads((d / report.HISTORY_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("config", {}).get("sweep") != _canonical(config):
        return None
    if save_model and not (d / report.MODEL_NPZ).is_file():
        return None
    return data


def finished_runs(out: Path, configs: Sequence[RunConfig], save_model: bool) -> dict[int, Result]:
    """The runs of ``configs`` (by index) already done in ``out`` with the same config: resumed."""
    results: dict[int, Result] = {}
    for i, config in enumerate(configs):
        done = _finished_history(out, config, save_model)
        if done is not None:
            results[i] = dict(status="ok", history=done, error=None)
    return results


def write_run(out: Path, config: RunConfig, result: Result) -> None:
    """Write one finished run's files into its directory (atomically; history.json last, since
    its presence is what marks the run as done)."""
    d = run_dir(out, config)
    d.mkdir(parents=True, exist_ok=True)
    if result.get("model") is None:  # an earlier run's model must not pass for this one's
        with contextlib.suppress(FileNotFoundError):
            (d / report.MODEL_NPZ).unlink()
    if result["status"] != "ok":
        report.write_json(d / ERROR_JSON, {
            "config": {"sweep": run_record(config)}, "error": result["error"],
            "traceback": result["traceback"], "host": result["host"],
            "history": result["history"]})
        with contextlib.suppress(FileNotFoundError):  # a stale run's files must not look done
            (d / report.HISTORY_JSON).unlink()
        return
    history = History.from_dict(result["history"])
    if result.get("model") is not None:
        from .model import MLP

        c = history.config
        model = MLP.from_weights(result["model"], activation=c["activation"], init=c["init"],
                                 device="cpu", seed=c["seed"])
        report.save_model(model, d / report.MODEL_NPZ, extra=history.config)
    report.write_history(history, d)
    with contextlib.suppress(FileNotFoundError):
        (d / ERROR_JSON).unlink()


# -- summary ------------------------------------------------------------------------------------


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard deviation over seeds: ddof=1 (sample) for 2+ values, 0 for one."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1 if a.size > 1 else 0))


def _as_float(v: Any) -> float:
    return math.nan if v is None else float(v)


def summarize(configs: Sequence[RunConfig], results: dict[int, Result],
              out: Path) -> list[dict[str, Any]]:
    """One row per grid point (grid order): the grid values, ``status`` ("ok" / "partial" /
    "failed"), ``n_seeds`` (runs that finished) and ``n_failed``, ``<metric>_mean`` and
    ``<metric>_std`` of the six final metrics and of ``wall_time_s`` over the finished seeds,
    ``seeds`` and ``failed_seeds``, and ``runs`` (seed, status, dir, error per run).

    ``results`` maps an index into ``configs`` to that run's result (with a ``history`` dict).
    """
    groups: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(_point(config), []).append(i)
    rows = []
    for point, idx in groups.items():
        ok = [i for i in idx if results.get(i, {}).get("status") == "ok"]
        failed = [i for i in idx if i not in ok]
        row: dict[str, Any] = dict(point=point_name(configs[idx[0]]),
                                   **dict(zip(GRID_KEYS, point, strict=True)))
        row.update(status="ok" if not failed else ("partial" if ok else "failed"),
                   n_seeds=len(ok), n_failed=len(failed))
        for key in (*METRICS, "wall_time_s"):
            values = [(_as_float(results[i]["history"]["final"].get(key)) if key in METRICS
                       else float(results[i]["history"]["wall_time_s"])) for i in ok]
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(values)
        row["seeds"] = [configs[i].seed for i in ok]
        row["failed_seeds"] = [configs[i].seed for i in failed]
        row["runs"] = [dict(seed=configs[i].seed,
                            status=results.get(i, {}).get("status", "not run"),
                            dir=str(run_dir(out, configs[i]).relative_to(out)),
                            error=results.get(i, {}).get("error")) for i in idx]
        rows.append(row)
    return rows


CSV_KEYS = ("point", *GRID_KEYS, "status", "n_seeds", "n_failed",
            *(f"{m}_{s}" for m in (*METRICS, "wall_time_s") for s in ("mean", "std")),
            "seeds", "failed_seeds")


def _csv_value(v: Any) -> str:
    if v is None:
        return "full"  # the only None among the row values: batch_size of full batch
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    return str(v)


def write_summary(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """``summary.csv`` (columns :data:`CSV_KEYS`; empty cell for NaN, ``full`` for full batch;
    seeds space-separated) and ``summary.json`` (``meta`` plus ``rows``; NaN as null)."""
    def write_csv(f: IO[str]) -> None:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CSV_KEYS)
        for row in rows:
            w.writerow([_csv_value(row[k]) for k in CSV_KEYS])

    report.atomic_write(out / SUMMARY_CSV, write_csv, newline="")
    report.write_json(out / SUMMARY_JSON, dict(meta, rows=rows))


def _pm(mean: float, std: float, spec: str = ".4f") -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:{spec}} ± {std:{spec}}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The summary as an aligned text table: grid values, seeds, mean ± std of each metric."""
    head = ["H", "lr", "momentum", "batch", "act", "seeds",
            *(m.replace("_", " ") for m in METRICS), "time/run (s)"]
    body = []
    for r in rows:
        seeds = str(r["n_seeds"]) + (f" ({r['n_failed']} failed)" if r["n_failed"] else "")
        body.append([str(r["hidden"]), f"{r['lr']:g}", f"{r['momentum']:g}",
                     "full" if r["batch_size"] is None else str(r["batch_size"]),
                     r["activation"], seeds,
                     *(_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in METRICS),
                     _pm(r["wall_time_s_mean"], r["wall_time_s_std"], ".2f")])
    return text_table([head, *body], n_left=5, rule=True)  # the grid columns left-aligned


# -- plots --------------------------------------------------------------------------------------


def curves_split(results: Iterable[Result]) -> str:
    """The split the curve plots show: valid (the model-selection split) when the data has one,
    else test, else train."""
    histories = [r["history"] for r in results if r.get("status") == "ok"]
    for split in ("valid", "test"):
        if any(any(v is not None for v in h[f"{split}_loss"]) for h in histories):
            return split
    return "train"


def _labels(grid: dict[str, list[Any]], rows: list[dict[str, Any]]) -> list[str]:
    """Legend labels naming only the grid keys that vary (all of them if none does)."""
    short = {"hidden": "H", "lr": "lr", "momentum": "mom", "batch_size": "B", "activation": ""}
    varying = [k for k in GRID_KEYS if len(grid[k]) > 1] or list(GRID_KEYS)

    def text(k: str, v: Any) -> str:
        v = "full" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
        return f"{short[k]}={v}" if short[k] else v

    return [", ".join(text(k, r[k]) for k in varying) for r in rows]


def plot_curves(out: Path, grid: dict[str, list[Any]], configs: Sequence[RunConfig],
                results: dict[int, Result], rows: list[dict[str, Any]],
                split: str) -> tuple[Path, Path]:
    """``curves_loss.png`` and ``curves_accuracy.png``: per grid point the mean ``split`` curve
    over its finished seeds, with a ± std band (same ddof rule as the summary)."""
    # Figure + Agg canvas, not pyplot: no global backend or figure registry (as report.py does)
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    by_point: dict[tuple, list[dict[str, Any]]] = {}
    for i, config in enumerate(configs):
        if results.get(i, {}).get("status") == "ok":
            by_point.setdefault(_point(config), []).append(results[i]["history"])
    labels = _labels(grid, rows)
    n = len(rows)
    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"]
    name = {"train": "training", "valid": "validation", "test": "test"}[split]
    seeds = sorted({c.seed for c in configs})
    paths = []
    for metric, ylabel, filename in (("loss", "average cross-entropy", CURVES_LOSS_PNG),
                                     ("acc", "accuracy", CURVES_ACCURACY_PNG)):
        fig = Figure(figsize=(9, 5.5), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for k, (row, label) in enumerate(zip(rows, labels, strict=True)):
            hists = by_point.get(tuple(row[g] for g in GRID_KEYS), [])
            if not hists:
                continue
            curves = np.array([[_as_float(v) for v in h[f"{split}_{metric}"]] for h in hists])
            epochs = np.arange(1, curves.shape[1] + 1)
            keep = np.isfinite(curves).all(axis=0)  # epochs --eval-every measured
            if not keep.any():
                continue
            mean = curves[:, keep].mean(axis=0)
            std = curves[:, keep].std(axis=0, ddof=1 if len(hists) > 1 else 0)
            color = cmap(k / max(n - 1, 1) if cmap.N > 20 else k % cmap.N)
            marker = "o" if keep.sum() <= 30 else None
            ax.plot(epochs[keep], mean, color=color, marker=marker, markersize=3, linewidth=1.5,
                    label=f"{label} (n={len(hists)})")
            ax.fill_between(epochs[keep], mean - std, mean + std, color=color, alpha=0.2,
                            linewidth=0)
        ax.set_title(f"{name.capitalize()} {'loss' if metric == 'loss' else 'accuracy'}: mean "
                     f"± std over seeds {', '.join(map(str, seeds))} ({configs[0].dataset})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{name} {ylabel}")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                      title="grid point", ncol=1 if n <= 25 else 2)
        else:
            ax.text(0.5, 0.5, "no finished runs", ha="center", va="center",
                    transform=ax.transAxes)
        path = out / filename
        report.atomic_write(path, lambda f, fig=fig: fig.savefig(f, format="png"), binary=True)
        paths.append(path)
    return paths[0], paths[1]


def blas_note(results: Iterable[Result]) -> str:
    """A note when runs used several Numba threads but one BLAS thread (Dask's worker default),
    so the matrix products, most of an epoch, ran single-threaded."""
    for r in results:
        c = r["history"].get("config", {})
        env = c.get("blas_env") or {}
        # OpenBLAS reads OPENBLAS_NUM_THREADS first and falls back to OMP_NUM_THREADS
        blas = env.get("OPENBLAS_NUM_THREADS", env.get("OMP_NUM_THREADS"))
        if (c.get("threads") or 1) > 1 and blas == "1":
            return (f"fastmlp: note: runs used {c['threads']} Numba threads but 1 BLAS thread "
                    f"(Dask's worker default); for full speed start the workers with "
                    f"OPENBLAS_NUM_THREADS=<cores> in their environment")
    return ""
