"""How scanlab's benchmarks time a call, and measure the rows of a table behind a progress bar.

Every figure is the best of a few repeats after a warm-up call, so compilation is never timed;
functions compared take turns (``best_times``). On the GPU, CUDA events time the device
(``gpu_best_time``).
"""

import time
from collections.abc import Callable
from functools import partial

import numba
from numba import cuda
from tqdm import tqdm

from scanlab import config


def best_times(
    functions: dict[str, Callable[[], object]], repeats: int, statistic=min
) -> dict[str, float]:
    """Seconds of the fastest call of each function (or ``statistic`` of its calls' seconds,
    e.g. ``numpy.median``), the functions taking turns.

    Taking turns exposes every function to the same disturbances of a shared machine, so their
    ratios hold even when one burst of noise spoils a whole stretch of calls. Each timed call
    follows an untimed one of the same function, so each finds its data as warm in the caches as
    a run of repeated calls would (and not as the previous function left them). Short calls are
    repeated more (up to 0.2 s per function, at most 200 rounds). The warm-up call lets
    ``method="auto"`` measure its kind of problem at once (``config.cpu.calibrate_after`` 0),
    so what is timed is auto's lasting choice, not the loop it runs until then.
    """
    slowest = 0.0
    patience, config.cpu.calibrate_after = config.cpu.calibrate_after, 0.0
    try:
        for function in functions.values():
            start = time.perf_counter()
            function()
            slowest = max(slowest, time.perf_counter() - start)
    finally:
        config.cpu.calibrate_after = patience
    rounds = max(repeats, min(200, int(0.2 / max(slowest, 1e-6))))
    seconds = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            function()
            start = time.perf_counter()
            function()
            seconds[name].append(time.perf_counter() - start)
    return {name: float(statistic(spent)) for name, spent in seconds.items()}


def best_time(function: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of at least ``repeats`` calls of one function (see ``best_times``)."""
    return best_times({"": function}, repeats)[""]


def gpu_best_time(function: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls, timed with CUDA events after a warm-up.

    Under the CUDA simulator, whose events record no time, the host clock times one call of the
    (synchronous) simulation instead: the numbers then only show that the benchmark runs.
    """
    if numba.config.ENABLE_CUDASIM:
        start = time.perf_counter()
        function()
        return time.perf_counter() - start
    function()
    cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start, stop = cuda.event(), cuda.event()
        start.record()
        function()
        stop.record()
        stop.synchronize()
        best = min(best, start.elapsed_time(stop) / 1e3)
    return best


def copy_times(host, states_shape: tuple, repeats: int) -> tuple[float, float]:
    """Seconds of one copy of ``host`` to the GPU and of one ``states_shape`` array back, as the
    solver makes them (pageable memory, allocation included), from CUDA events."""
    states = cuda.device_array(states_shape, host.dtype)
    to_device = gpu_best_time(partial(cuda.to_device, host), repeats)
    return to_device, gpu_best_time(states.copy_to_host, repeats)


def gpu_cases(quick: bool, full: tuple, smaller: tuple, simulated: tuple) -> tuple[tuple, int]:
    """``(cases, repeats)`` of a GPU table: ``full``, or with ``quick`` the ``smaller`` cases,
    or under Numba's CUDA simulator (which runs every GPU thread in Python) the ``simulated``
    ones, sizes it finishes in seconds, to try the benchmark's code rather than measure."""
    if quick and numba.config.ENABLE_CUDASIM:
        return simulated, 1
    return (smaller, 5) if quick else (full, 20)


def measure_rows(cases, measure, label, show_progress: bool = True, seconds=None) -> list[dict]:
    """``measure(*case)`` for each case, with a progress bar on stderr showing ``label(*case)``;
    with ``seconds``, no case starts once that many have passed (the rows measured until then)."""
    rows = []
    start = time.perf_counter()
    with tqdm(cases, disable=not show_progress) as bar:
        for case in bar:
            if seconds is not None and time.perf_counter() - start > seconds:
                break
            bar.set_postfix_str(label(*case))
            rows.append(measure(*case))
    return rows
