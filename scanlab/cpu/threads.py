"""Running a compiled kernel on several threads at once, without a Numba parallel region.

A kernel compiled with ``nogil=True`` runs on Python threads in parallel. For kernels whose
threads take their work themselves (an atomic counter, :mod:`scanlab.cpu.atomics`), this replaces
``prange`` over the threads: Numba compiles a parallel region as a second function around its
body, which costs seconds of compilation per dtype, where a plain kernel costs a fraction.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

#: Made on first use: one pool per process, as many threads as CPUs.
POOL = None
POOL_LOCK = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """The process's pool of worker threads."""
    global POOL
    with POOL_LOCK:
        if POOL is None:
            POOL = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="scanlab")
        return POOL


def run_together(count: int, kernel, args: tuple) -> None:
    """Run ``kernel(*args)`` on ``count`` threads at once (the calling thread one of them) and
    wait for all; an exception raised by one reaches the caller. The kernel must release the
    GIL (``nogil=True``) and tolerate a thread that starts late or not at all: the pool is shared
    by every caller, so a submitted run may wait for a free worker."""
    others = [pool().submit(kernel, *args) for _ in range(count - 1)]
    kernel(*args)
    for other in others:
        other.result()


def share_out(worker, tasks: int, args: tuple) -> None:
    """Run ``worker(counter, *args)`` on as many threads as Numba's thread count allows (at
    most ``tasks``): each takes task numbers from ``counter`` (a one-element int64 array,
    :func:`scanlab.cpu.atomics.fetch_add`) until they reach ``tasks``, so a thread that comes
    free takes over the share of one that was descheduled."""
    counter = np.zeros(1, np.int64)
    run_together(max(1, min(tasks, numba.get_num_threads())), worker, (counter, *args))
