"""A first run's fused head compiled in a second process (kernels/warmup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastmlp.kernels import warmup

RUN = """
import json, sys
import fastmlp
from fastmlp.config import RunConfig
from fastmlp.kernels import cpu, warmup

started = []
start = warmup.start
warmup.start = lambda dtype: started.append(start(dtype)) or started[-1]
fastmlp.run(RunConfig(dataset="synthetic", hidden=4, epochs=1, dtype=sys.argv[2],
                      device="cpu", out=sys.argv[1]))
print(json.dumps({"started": started,
                  "head_from_cache": sum(cpu._hidden_to_loss_tiles.stats.cache_hits.values())}))
"""


def _run(out: Path, cache: Path, dtype: str = "float32") -> dict:
    done = subprocess.run([sys.executable, "-c", RUN, str(out), dtype], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_first_run_loads_the_head_its_child_compiled(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    first = _run(tmp_path / "first", cache)
    assert first == {"started": [True], "head_from_cache": 1}  # compiled there, loaded here
    again = _run(tmp_path / "again", cache)
    assert again == {"started": [False], "head_from_cache": 1}  # cached: no child
    models = [np.load(tmp_path / name / "model.npz") for name in ("first", "again")]
    for key in ("Wh", "bh", "Wo", "bo"):  # the same kernel, wherever it was compiled
        np.testing.assert_array_equal(models[0][key], models[1][key])


def test_wait_without_a_child_returns_and_a_failed_child_changes_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    warmup.wait()  # nothing pending: a no-op
    monkeypatch.setattr(warmup, "head_cached", lambda: False)
    assert warmup.start("not-a-dtype")  # a bad argument: the child fails at once
    assert not warmup.start("float32")  # one child at a time
    warmup.wait()  # returns; the head compiles (or loads) here as without a child
    import fastmlp

    loss, _ = fastmlp.MLP(4, 3, 2, device="cpu").loss_and_grads(np.zeros((2, 4), np.float32),
                                                                np.array([0, 1]))
    assert loss == pytest.approx(np.log(2), rel=1e-6)


def test_the_child_is_stopped_when_the_wait_is_interrupted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(warmup, "_pending", child)
    monkeypatch.setattr(warmup, "WAIT_SECONDS", 0.2)  # "timed out": stopped, no error
    warmup.wait()
    assert child.poll() is not None and warmup._pending is None


def test_a_run_that_fails_before_its_first_head_call_stops_the_child(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import fastmlp
    from fastmlp.config import RunConfig
    from fastmlp.errors import FastMLPError

    monkeypatch.setattr(warmup, "head_cached", lambda: False)  # as on a first run
    config = RunConfig(dataset="mnist", data_path=str(tmp_path / "missing"), device="cpu",
                       out=str(tmp_path / "run"))
    started = []
    start = warmup.start
    monkeypatch.setattr(warmup, "start", lambda dtype: started.append(
        (start(dtype), warmup._pending)) or started[-1][0])
    with pytest.raises(FastMLPError, match="not found"):
        fastmlp.run(config)
    (was_started, child), = started
    assert was_started and child.poll() is not None  # stopped (and reaped) by the run's end
    assert warmup._pending is None
