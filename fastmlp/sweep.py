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
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import report
from .config import RunConfig
from .errors import FastMLPError
from .history import History
from .rundir import LOCK_FILE, remove_stale_temps
from .runner import load_run_data, run
from .sweep_grid import (  # noqa: F401  (the sweep's names, here too)
    GRID_KEYS,
    RECORD_KEYS,
    SHARED_KEYS,
    Result,
    build_runs,
    canonical_record,
    point_name,
    run_dir,
    run_record,
)
from .sweep_summary import (  # noqa: F401
    CURVES_ACCURACY_PNG,
    CURVES_LOSS_PNG,
    SUMMARY_CSV,
    SUMMARY_JSON,
    blas_note,
    curves_split,
    format_table,
    plot_curves,
    summarize,
    write_summary,
)

__all__ = ["build_runs", "point_name", "run_one", "run_record", "summarize"]

ERROR_JSON = "error.json"
DEFAULT_SEEDS = 3
EXIT_FAILED = 1  # the sweep finished but some runs failed (2 stays "bad options", 130 Ctrl-C)
DASK_HINT = "pip install 'fastmlp[dask]'"
DASK_CONNECT_TIMEOUT = "20s"
# Dask's nanny sets these to 1 in its workers (distributed.nanny.pre-spawn-environ); recorded per
# run, since the BLAS thread count changes both the speed and the last bits of the products
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

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


def _exit_with_parent(parent: int) -> None:
    """End this process when ``parent`` dies, even by kill -9 (which no handler sees): Linux's
    PR_SET_PDEATHSIG through ctypes, else a thread polling the parent's pid."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG = 1
                if os.getppid() != parent:  # it died before the request was made
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="fastmlp-parent-watch", daemon=True).start()


def _init_worker(parent: int) -> None:
    # Pool workers leave Ctrl-C and a hangup to the driver, which cancels and terminates them:
    # otherwise every idle worker would print its own KeyboardInterrupt traceback, or die and
    # fail its run. They end with the driver, however it ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _exit_with_parent(parent)


def _run_pool(todo: Sequence[tuple[int, RunConfig]], save_model: bool,
              workers: int) -> Iterator[tuple[int, Result]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))
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
    recorded = data.get("config", {}).get("sweep") if isinstance(data, dict) else None
    if recorded != canonical_record(config):
        return None
    if save_model and not (d / report.MODEL_NPZ).is_file():
        return None
    return data


def clear_stale_temps(out: Path, configs: Sequence[RunConfig]) -> None:
    """Delete the temp files a killed driver left in ``out`` and its run directories (call it
    holding the sweep's lock: no live writer is there then)."""
    remove_stale_temps(out, (SUMMARY_CSV, SUMMARY_JSON, CURVES_LOSS_PNG, CURVES_ACCURACY_PNG,
                             "write-check", LOCK_FILE))
    for d in dict.fromkeys(run_dir(out, config) for config in configs):
        if d.is_dir():
            remove_stale_temps(d, (report.HISTORY_JSON, report.HISTORY_CSV, report.MODEL_NPZ,
                                   ERROR_JSON))


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
