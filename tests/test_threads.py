"""The CPU kernels' thread pool (``scanlab.cpu.threads``): never a hang, errors reach the caller."""

import multiprocessing
import threading

import numba
import numpy as np
import pandas as pd
import pytest
import reference
import scipy.signal
from conftest import assert_close

import scanlab
import scanlab.signal
from scanlab.cpu import threads

#: Many channels, so that ``"sequential"`` shares blocks of them among threads.
SHAPE = (300, 4096)


def solve() -> np.ndarray:
    b = np.random.default_rng(0).normal(size=SHAPE)
    return scanlab.linear_recurrence(0.5, b, method="sequential"), b


@pytest.mark.skipif(numba.get_num_threads() < 2, reason="one thread: nothing is shared out")
def test_a_busy_pool_leaves_the_work_to_the_calling_thread():
    """Every pool thread blocked (another solve, a Dask worker's task): the caller does all the
    work and the runs that could not start are cancelled, not waited for."""
    release = threading.Event()
    blockers = [threads.pool().submit(release.wait, 30) for _ in range(threads.pool()._max_workers)]
    try:
        result, b = solve()
    finally:
        release.set()
    for blocker in blockers:
        blocker.result()
    assert_close(result, reference.linear_recurrence(0.5, b))


def solve_in_child(queue) -> None:
    result, b = solve()
    queue.put(float(np.abs(result - reference.linear_recurrence(0.5, b)).max()))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_a_forked_child_makes_its_own_pool():
    solve()  # the parent's pool exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=solve_in_child, args=(queue,))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0, "the forked child's solve did not finish"
    assert queue.get(timeout=5) < 1e-10


def test_an_exception_in_one_thread_reaches_the_caller():
    calls = []

    def failing(counter):
        calls.append(threading.get_ident())
        raise RuntimeError("from a worker")

    with pytest.raises(RuntimeError, match="from a worker"):
        threads.run_together(2, failing, (None,))
    assert calls


@pytest.mark.skipif(numba.get_num_threads() < 2, reason="one thread: nothing is shared out")
def test_small_problems_stay_on_the_calling_thread(monkeypatch):
    """Under ``config.cpu.shared_min_elements`` no pool thread is woken (it would start after
    the caller had done the work); from it on, the tasks are shared."""
    monkeypatch.setattr(scanlab.config.cpu, "shared_min_elements", 2**12)
    shared = []
    run_together = threads.run_together
    monkeypatch.setattr(
        threads, "run_together", lambda *args: shared.append(args[0]) or run_together(*args)
    )
    rng = np.random.default_rng(1)
    for channels, length in [(2, 2**11 - 1), (2, 2**11)]:
        x = rng.normal(size=(channels, length))
        y = scanlab.signal.lfilter([0.5, 0.5], [1.0, -0.3], x)
        assert_close(y, scipy.signal.lfilter([0.5, 0.5], [1.0, -0.3], x), np.float64)
    assert len(shared) == 1


def test_by_default_the_machine_decides_what_is_shared(monkeypatch):
    """``config.cpu.shared_min_elements = None``: from twice the measured time a sleeping
    thread takes to start work, in nanoseconds."""
    monkeypatch.setattr(scanlab.config.cpu, "shared_min_elements", None)
    latency = threads.start_latency()
    assert 0 < latency < 1.0
    assert threads.shared_min_elements() == int(2e9 * latency) >= 1
    monkeypatch.setattr(scanlab.config.cpu, "shared_min_elements", 12)
    assert threads.shared_min_elements() == 12


@pytest.mark.skipif(numba.get_num_threads() < 2, reason="one thread: nothing is shared out")
def test_small_problems_run_the_parallel_kernels_on_one_thread(monkeypatch):
    """Under ``shared_min_elements`` the ``prange`` kernels (lockstep filters, time-major
    filters, ``ewm_mean``) run on the calling thread alone, with the same results, and the
    thread count is restored."""
    monkeypatch.setattr(scanlab.config.cpu, "shared_min_elements", 10**9)
    counts, numba_threads = [], threads.numba_threads

    def recorded(count):
        counts.append(count)
        return numba_threads(count)

    monkeypatch.setattr(threads, "numba_threads", recorded)
    before = numba.get_num_threads()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 300))
    b, a = scipy.signal.butter(3, 0.2)
    sos = scipy.signal.butter(6, 0.2, output="sos")
    np.testing.assert_array_equal(scanlab.signal.lfilter(b, a, x), scipy.signal.lfilter(b, a, x))
    np.testing.assert_array_equal(
        scanlab.signal.sosfilt(sos, x.T, axis=0), scipy.signal.sosfilt(sos, x.T, axis=0)
    )
    expected = pd.DataFrame(x.T).ewm(span=5).mean().to_numpy()
    assert_close(scanlab.signal.ewm_mean(x.T, span=5), expected, np.float64)
    assert_close(scanlab.signal.ewm_mean(np.asfortranarray(x.T), span=5), expected, np.float64)
    assert counts == [1, 1, 1, 1]
    assert numba.get_num_threads() == before
