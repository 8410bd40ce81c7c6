"""The thread pool the CPU kernels split their calls with (kernels/runtime.py, ``run_shares``)."""

import os
import threading
import time

import numba
import numpy as np
import pytest
from fastmlp.kernels import runtime
from fastmlp.kernels.runtime import run_shares


def test_each_share_runs_once_and_the_call_waits_for_all():
    seen = {}

    def share(t, T, out):
        time.sleep(0.05 if t else 0.0)  # the workers' shares end last
        seen[t] = threading.get_ident()
        out[t] = T

    for shares in (1, 2, 4):
        seen.clear()
        out = np.zeros(shares, np.int64)
        run_shares(share, shares, out)
        assert out.tolist() == [shares] * shares  # every share done when the call returns
        assert seen[0] == threading.get_ident()  # share 0 on the calling thread
        assert len(set(seen.values())) == shares  # the others each on a thread of its own


@numba.njit(**runtime.SERIAL_JIT)
def _fill_share(t, T, out):
    a, b = runtime.split(out.shape[0], t, T)
    for i in range(a, b):
        out[i] = t


def test_compiled_shares_split_the_range_contiguously():
    out = np.full(10, -1, np.int64)
    run_shares(_fill_share, 3, out)
    assert out.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]


@pytest.mark.parametrize("failing", [0, 1])
def test_a_share_s_exception_is_raised_after_every_share_ended(failing):
    done = []

    def share(t, T):
        if t == failing:
            raise ValueError(f"share {t}")
        time.sleep(0.05)
        done.append(t)

    with pytest.raises(ValueError, match=f"share {failing}"):
        run_shares(share, 2)
    assert done == [1 - failing]
    run_shares(lambda t, T: done.append(t), 2)  # the pool still works
    assert sorted(done[1:]) == [0, 1]


def test_a_signal_s_exception_waits_for_the_workers():
    # Ctrl-C raises KeyboardInterrupt in the caller between bytecodes; the trainer then restores
    # or checkpoints the weights, so no worker may still be writing them
    done = []

    def share(t, T):
        if t == 0:
            raise KeyboardInterrupt
        time.sleep(0.2)
        done.append(t)

    with pytest.raises(KeyboardInterrupt):
        run_shares(share, 2)
    assert done == [1]


def test_a_call_that_finds_the_pool_busy_runs_its_shares_itself():
    started, release = threading.Event(), threading.Event()
    threads = {}

    def slow(t, T):
        if t == 1:
            started.set()
            release.wait(5)

    def quick(t, T):
        threads[t] = threading.get_ident()

    other = threading.Thread(target=run_shares, args=(slow, 2))
    other.start()
    try:
        assert started.wait(5)
        run_shares(quick, 3)  # the pool is running `slow`: both shares here, one after another
        assert set(threads) == {0, 1, 2}
        assert set(threads.values()) == {threading.get_ident()}
    finally:
        release.set()
        other.join()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_starts_its_own_pool():
    out = np.zeros(2, np.int64)
    run_shares(_fill_share, 2, out)  # the parent's workers exist
    pid = os.fork()
    if pid == 0:  # the child: the parent's worker threads are not here
        code = 1
        try:
            run_shares(_fill_share, 2, out)
            code = 0 if out.tolist() == [0, 1] else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the child's call did not return: it waited for the parent's threads")
