"""The thread pool the CPU kernels split their calls with (kernels/runtime.py, ``run_shares``)."""

import os
import threading
import time

import numba
import numpy as np
import pytest
from fastmlp.kernels import runtime, team
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


# -- teams: shares that meet at barriers (kernels/team.py) ------------------------------------


@numba.njit(**runtime.SERIAL_JIT)
def _team_rounds(t, T, sync, counts, seen_wrong, rounds):
    # each round every member counts itself, meets the others, and checks it sees all counts
    passed = 0
    for r in range(rounds):
        counts[t] += 1
        passed = team.barrier(sync, T, passed)
        for q in range(T):
            if counts[q] != r + 1:
                seen_wrong[0] += 1
        passed = team.barrier(sync, T, passed)


@pytest.mark.parametrize("members", [1, 2, 3])
def test_a_team_meets_at_every_barrier(members):
    # three members on two cores too: a waiting member yields its core, so the team still ends
    sync, counts, wrong = np.zeros(2, np.int64), np.zeros(members, np.int64), np.zeros(1, np.int64)
    rounds = 2000 if members <= 2 else 200  # past the cores a waiting member yields: slower
    runtime.run_team(_team_rounds, members, sync, counts, wrong, rounds)
    assert counts.tolist() == [rounds] * members
    assert wrong[0] == 0  # no member ran ahead of another
    assert sync[0] == 2 * rounds * members


def test_atomic_add_returns_the_old_value():
    @numba.njit
    def add_twice(a):
        return team.atomic_add(a, 1, 5), team.atomic_add(a, 1, -2), team.atomic_load(a, 1)

    a = np.zeros(3, np.int64)
    assert add_twice(a) == (0, 5, 3)
    assert a.tolist() == [0, 3, 0]


def test_a_team_that_finds_the_pool_busy_runs_as_one_member():
    # a team's members wait for each other, so they cannot run one after another: one member
    # (t = 0 of 1) does the whole call instead
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow(t, T):
        if t == 1:
            started.set()
            release.wait(5)

    def member(t, T, sync):
        calls.append((t, T, threading.get_ident()))

    other = threading.Thread(target=run_shares, args=(slow, 2))
    other.start()
    try:
        assert started.wait(5)
        runtime.run_team(member, 2, np.zeros(2, np.int64))
        assert calls == [(0, 1, threading.get_ident())]
    finally:
        release.set()
        other.join()


@numba.njit(**runtime.SERIAL_JIT)
def _wait_once(sync, T):
    return team.barrier(sync, T, 0)


@pytest.mark.parametrize("failing", [0, 1])
def test_a_failing_member_stops_the_team_instead_of_hanging_it(failing):
    # a member that raises before its barrier (share 0: a Ctrl-C before its kernel starts, say;
    # a worker: any error) sets the stop word: the others leave their barrier with -1, and the
    # call raises the error once all have ended
    seen = np.zeros(2, np.int64)

    def member(t, T, sync):
        if t == failing:
            raise ValueError(f"member {t}")
        seen[t] = _wait_once(sync, T)

    sync = np.zeros(2, np.int64)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=f"member {failing}"):
        runtime.run_team(member, 2, sync)
    assert time.perf_counter() - start < 30
    assert seen[1 - failing] == -1 and sync[runtime.STOP] == 1
