"""A sweep's summary: mean ± std over the seeds per grid point (summary.csv/json, the text
table), the mean-curve plots and the note on BLAS threads."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import report
from .config import RunConfig
from .history import METRICS
from .sweep_grid import GRID_KEYS, Result, grid_point, point_name, run_dir
from .texttable import text_table

SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
CURVES_LOSS_PNG = "curves_loss.png"
CURVES_ACCURACY_PNG = "curves_accuracy.png"


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
        groups.setdefault(grid_point(config), []).append(i)
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
            by_point.setdefault(grid_point(config), []).append(results[i]["history"])
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
