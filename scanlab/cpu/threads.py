"""Running a compiled kernel on several threads at once, without a Numba parallel region.

A kernel compiled with ``nogil=True`` runs on Python threads in parallel. For kernels whose
threads take their work themselves (an atomic counter, :mod:`scanlab.cpu.atomics`), this replaces
``prange`` over the threads: Numba compiles a parallel region as a second function around its
body, which costs seconds of compilation per dtype, where a plain kernel costs a fraction.
"""

import contextlib
import functools
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from scanlab import config

#: Made on first use: one pool per process, as many threads as CPUs (made again in a child
#: process forked from this one, which does not inherit the threads; Numba's OpenMP layer, which
#: the ``prange`` kernels use, is not fork-safe in the same way: see README, "What scanlab
#: guarantees").
POOL = None
POOL_LOCK = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """The process's pool of worker threads."""
    global POOL
    with POOL_LOCK:
        if POOL is None:
            POOL = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="scanlab")
        return POOL


def forget_pool() -> None:
    """In a forked child: the parent's pool has no threads here."""
    global POOL, POOL_LOCK
    POOL, POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=forget_pool)

#: Wake-ups :func:`start_latency` times (the first, a new thread's, not counted).
WAKE_ROUNDS = 8


@functools.cache
def start_latency() -> float:
    """Seconds a sleeping thread of this process takes to start work handed to it on this
    machine: the median of ``WAKE_ROUNDS - 1`` wake-ups of a thread waiting on an event, until
    it holds the GIL (what a pool thread does before it runs a kernel). Measured once per
    process, in about a millisecond (30-55 us on a KVM guest of AMD Zen 5, where a pool
    thread asleep for 10 ms took 150 us)."""
    wake, woken, woke = threading.Event(), threading.Event(), []

    def sleeper():
        for _ in range(WAKE_ROUNDS):
            wake.wait()
            woke.append(time.perf_counter())
            wake.clear()
            woken.set()

    thread = threading.Thread(target=sleeper, daemon=True)
    thread.start()
    delays = []
    for _ in range(WAKE_ROUNDS):
        woken.clear()
        start = time.perf_counter()
        wake.set()
        woken.wait()
        delays.append(woke[-1] - start)
    thread.join()
    return statistics.median(delays[1:])


def shared_min_elements() -> int:
    """Elements from which :func:`share_out` hands tasks to other threads:
    ``config.cpu.shared_min_elements``, or by default twice this machine's
    :func:`start_latency` in nanoseconds: work at a nanosecond an element (the fastest
    kernels') that outlasts a helper's start twice over, so that the helper's share pays for
    its wait."""
    setting = config.cpu.shared_min_elements
    return int(2e9 * start_latency()) if setting is None else setting


def run_together(count: int, kernel, args: tuple) -> None:
    """Run ``kernel(*args)`` on ``count`` threads at once, the calling thread one of them, and
    return when all have; an exception raised by one reaches the caller.

    The kernel must release the GIL (``nogil=True``) and be written so that any one thread can
    do all the work (threads take tasks from a counter): the pool is shared by every caller,
    so when its threads are busy (another solve, a Dask worker's), the calling thread does the
    work alone and the runs that did not start are cancelled, never waited for.
    """
    others = [pool().submit(kernel, *args) for _ in range(count - 1)]
    try:
        kernel(*args)
    finally:
        started = [other for other in others if not other.cancel()]
        for other in started:
            other.exception()  # wait: they write the caller's arrays
    for other in started:
        other.result()


@contextlib.contextmanager
def numba_threads(count: int):
    """Run with ``count`` Numba threads, then restore the previous count."""
    saved = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        yield
    finally:
        numba.set_num_threads(saved)


#: What :func:`threads_for` gives a problem large enough for every thread: nothing to change.
ALL_THREADS = contextlib.nullcontext()


def threads_for(elements: int):
    """The context in which a Numba parallel kernel (``prange``) runs a problem of
    ``elements``: on the calling thread alone under :func:`shared_min_elements`, else on all
    Numba's threads. A parallel region ends when every thread has arrived, so a small one
    waits for its sleeping threads to wake: on a KVM guest of Zen 5 a (16, 256) ``lfilter``
    took 22-25 us in some processes and 150 us in others (25-32 us on one thread)."""
    return numba_threads(1) if elements < shared_min_elements() else ALL_THREADS


def share_out(worker, tasks: int, args: tuple, elements: int | None = None) -> None:
    """Run ``worker(counter, *args)`` on as many threads as Numba's thread count allows (at
    most ``tasks``): each takes task numbers from ``counter`` (a one-element int64 array,
    :func:`scanlab.cpu.atomics.fetch_add`) until they reach ``tasks``, so a thread that comes
    free takes over the share of one that was descheduled. ``elements``: the size of the
    problem, where the caller knows it; under :func:`shared_min_elements` the calling
    thread does all the work (a pool thread would wake after it was done)."""
    counter = np.zeros(1, np.int64)
    alone = tasks <= 1 or (elements is not None and elements < shared_min_elements())
    if alone:  # the caller's thread (no need to ask Numba for its thread count)
        worker(counter, *args)
        return
    run_together(min(tasks, numba.get_num_threads()), worker, (counter, *args))
