"""``method="auto"`` on the CPU: the method measured faster on this machine for a kind of problem.

A kind of problem is a task (``"linear"``, ``"gae"``, ...), a dtype, a thread count, and the
problem's channels and elements rounded up to powers of 4 (:func:`problem_class`). Its methods'
speeds are measured on a synthetic problem of that kind (:func:`calibration_speeds`) and kept in
``scanlab.wisdom``; until then, and for a while (:func:`measured_choice`), the loop runs.

The wisdom is measured once, on a quiet machine and a problem of at most
``config.cpu.calibration_elements``. What ``auto`` then sees in the process overrides it: every
run it chooses is timed (:class:`Observed`), per kind and size, and the method seen faster (the
median of its last runs) wins, so that a neighbour that takes a core (the parallel scan then
does twice the loop's work on the one core left) or a problem larger than the calibration's
turns the choice within two runs.
The other method is run again now and then (every ``config.cpu.auto_recheck_runs`` runs, times
how much slower it was seen; one the wisdom prefers after 2, 4, 8, ... of those), so that the
choice turns back when the neighbour leaves, and soon when what turned it did not last (the
first calls of a process on a fresh VM, whose memory the host backs at first touch, run
several times slower for about half a second).

Whether the kernels write large results with streaming stores is measured too, once per method
and dtype (:func:`streaming_choice`): they pay on some CPUs and not on others.
"""

import collections
import contextlib
import time
from functools import cache, partial

import numba
import numpy as np
from numba.core import event

from scanlab import config, wisdom
from scanlab._arrays import aligned_empty, read_only
from scanlab.cpu import streaming
from scanlab.cpu.threads import numba_threads
from scanlab.cpu.vector_ir import LANE_BYTES

#: Timed runs of each kernel when ``auto`` measures a kind of problem (``measured_speeds``).
CALIBRATION_RUNS = 7
#: The methods ``auto`` chooses between.
METHODS = ("sequential", "scan")

#: Seconds the loop ran, per kind of problem ``auto`` has not measured yet, in this process.
UNMEASURED_SECONDS = collections.Counter()
#: Above this many times its measured speed, a method a problem has not run yet is not tried
#: on it (:meth:`Observed.choose`).
TRY_WITHIN = 1.5
#: Runs of each method whose median ``auto`` takes as its speed (:class:`Observed`).
SEEN_RUNS = 3


class Observed:
    """What ``auto`` saw of one kind and size of problem in this process, of its two
    ``options`` (the methods, or the kinds of stores of :func:`streaming_choice`; "methods"
    below): the nanoseconds per element of each method's last ``SEEN_RUNS`` runs, whose median
    is its speed (one run that a neighbour or the first touch of new memory slowed does not
    turn the choice; a change of conditions that lasts does, within two runs), and, per
    method, the runs since it last ran.
    A method's first run is not counted: it may load the kernel from Numba's cache. Until a
    method has run ``SEEN_RUNS`` times in the process, its measured speed (the wisdom) counts
    as one run: the first runs of a process can be slow (see above), and one such run alone
    must not turn the choice."""

    def __init__(self, options: tuple = METHODS):
        self.options = options
        self.seen = {method: [] for method in options}
        self.counted = dict.fromkeys(options, 0)
        self.runs_since = dict.fromkeys(options, 0)
        self.rechecks = dict.fromkeys(options, 0)
        self.warm = set()

    def speed(self, method: str, measured: float) -> float | None:
        """The median of ``method``'s runs seen, with its ``measured`` speed while it has
        run fewer than ``SEEN_RUNS`` times in the process; None where it has not been seen
        (in plain Python: ``numpy.median`` costs 30 microseconds, a tenth of a small problem's
        run)."""
        runs = self.seen[method]
        if not runs:
            return None
        runs = sorted(runs if self.counted[method] >= SEEN_RUNS else [*runs, measured])
        middle = len(runs) // 2
        return runs[middle] if len(runs) % 2 else (runs[middle - 1] + runs[middle]) / 2

    def choose(self, measured: dict) -> str:
        """The method to run, given the ``measured`` speeds (the wisdom): the faster by what
        was seen, the wisdom where a method has not run; but the other one where it has not
        run on this size yet and was measured within ``TRY_WITHIN`` of the faster one's
        speed here, or has not run for the ratio ``r`` of the two speeds times
        ``config.cpu.auto_recheck_runs`` runs (a recheck costs ``r`` runs: so spaced, rechecks
        cost about ``1 / auto_recheck_runs`` of the time). A method the wisdom prefers but
        what was seen turned away is retried sooner, after ``r`` times 2, 4, 8, ... runs
        (doubling with each recheck since it was last the faster, up to the same), so that a
        turn that did not last is undone within a few runs."""
        first, second = self.options
        seen = {first: self.speed(first, measured[first])}
        seen[second] = self.speed(second, measured[second])
        estimate = {
            method: measured[method] if speed is None else speed for method, speed in seen.items()
        }
        faster, other = (first, second) if estimate[first] <= estimate[second] else (second, first)
        if seen[faster] is not None and seen[other] is None:
            if measured[other] <= TRY_WITHIN * seen[faster]:
                return other
        ratio = estimate[other] / estimate[faster] if estimate[faster] > 0 else 1.0
        spacing = config.cpu.auto_recheck_runs
        if measured[other] < measured[faster]:
            spacing = min(2 ** (self.rechecks[other] + 1), spacing)
        self.rechecks[faster] = 0
        if self.runs_since[other] >= spacing * max(ratio, 1.0):
            self.rechecks[other] += 1
            return other
        return faster

    def record(self, method: str, nanoseconds_per_element: float) -> None:
        """Account for a run of ``method`` at that speed (forgetting the runs seen before if it
        had not run for ``config.cpu.auto_recheck_runs`` runs: they are stale)."""
        stale = self.runs_since[method] >= config.cpu.auto_recheck_runs
        for name in self.options:
            self.runs_since[name] = 0 if name == method else self.runs_since[name] + 1
        if method not in self.warm:
            self.warm.add(method)
            return
        runs = [] if stale else self.seen[method][1 - SEEN_RUNS :]
        self.counted[method] += 1
        self.seen[method] = [*runs, nanoseconds_per_element]


#: The :class:`Observed` of each kind of problem, size (elements rounded up to a power of 4) and
#: pattern of broadcast operands.
OBSERVED = collections.defaultdict(Observed)


class CompileCounter(event.Listener):
    """Counts Numba's compilations in this process: a run that compiled is not timed."""

    count = 0

    def on_start(self, event_):
        CompileCounter.count += 1

    def on_end(self, event_):
        pass


event.register("numba:compile", CompileCounter())


#: The choice for a problem with none to make (short, or one thread): a context manager that
#: may be entered again and again.
SEQUENTIAL = contextlib.nullcontext("sequential")


def measured_choice(
    task: str,
    length: int,
    channels: int,
    dtype,
    threads: int,
    measure,
    timed: bool = True,
    operands: str = "",
):
    """``"sequential"`` or ``"scan"`` for a ``(length, channels)`` problem of ``task``, as
    ``method="auto"`` chooses it on the CPU; the caller runs it inside the ``with`` block,
    which is timed (unless not ``timed``: the choice is only shown). ``operands``: which of
    the problem's operands broadcast (:func:`broadcast_operands`); the runs of each pattern are
    seen apart (a constant coefficient makes the scan cheaper than the wisdom's full ones).

    Sequences shorter than ``config.cpu.auto_scan_min_length`` and single threads run
    ``"sequential"``; ``config.cpu.auto_scan_max_row_bytes``, when set, decides by the bytes of
    a row of channels. Otherwise the methods' speeds for problems of this kind (dtype, thread
    count, channels and size, :func:`problem_class`) come from ``scanlab.wisdom``, measured on
    this machine by ``measure(dtype, channels, threads, elements)`` (nanoseconds per element of
    each method), and from the runs seen in this process (:class:`Observed`). A kind not
    measured yet runs the loop, timed, until the loop has spent ``config.cpu.calibrate_after``
    seconds on it in this process: measuring compiles the scan (seconds, without Numba's
    cache), which a script that solves a problem once should not pay.
    """
    if threads < 2 or length < config.cpu.auto_scan_min_length:
        return SEQUENTIAL  # at once: a small problem's call costs a few microseconds in all
    return timed_choice(task, length, channels, dtype, threads, measure, timed, operands)


@contextlib.contextmanager
def timed_choice(
    task: str, length: int, channels: int, dtype, threads: int, measure, timed: bool, operands
):
    """:func:`measured_choice` for a problem with a choice to make."""
    dtype = np.dtype(dtype)
    if config.cpu.auto_scan_max_row_bytes is not None:
        few_channels = channels * dtype.itemsize <= config.cpu.auto_scan_max_row_bytes
        yield "scan" if few_channels else "sequential"
        return
    channel_class, size_class = problem_class(length, channels)
    key = wisdom_key(dtype, channel_class, size_class, threads, task)
    speeds = wisdom.known(key)
    if speeds is None and UNMEASURED_SECONDS[key] < config.cpu.calibrate_after:
        start = time.perf_counter()
        yield "sequential"
        UNMEASURED_SECONDS[key] += (time.perf_counter() - start) if timed else 0.0
        return
    if speeds is None:
        speeds = wisdom.recall(key, lambda: measure(dtype, channel_class, threads, size_class))
    elements = length * channels
    observed = OBSERVED[key, power_of_4_above(elements), operands]
    method = observed.choose(speeds)
    compilations, start = CompileCounter.count, time.perf_counter()
    yield method
    seconds = time.perf_counter() - start
    if timed and CompileCounter.count == compilations:
        observed.record(method, seconds * 1e9 / elements)


def broadcast_operands(out, **operands) -> str:
    """The ``operands`` (by name) whose shape is not ``out``'s, with their shapes: ``""``
    where none broadcasts."""
    if all(array.shape == out.shape for array in operands.values()):
        return ""
    return " ".join(
        f"{name} {array.shape}" for name, array in operands.items() if array.shape != out.shape
    )


def power_of_4_above(count: int) -> int:
    """``count`` rounded up to a power of 4 (1 for 0 or 1), in integers."""
    return 4 ** (((count - 1).bit_length() + 1) // 2) if count > 1 else 1


def problem_class(length: int, channels: int) -> tuple[int, int]:
    """The class ``auto`` measures a problem by: its channels and its elements ``length *
    channels``, each rounded up to a power of 4, the elements at most
    ``config.cpu.calibration_elements`` (beyond it the time per element no longer changes)."""
    size_class = power_of_4_above(length * channels)
    return power_of_4_above(channels), min(size_class, config.cpu.calibration_elements)


@cache
def wisdom_key(dtype, channel_class: int, size_class: int, threads: int, task="linear") -> str:
    """The name of a measurement in ``scanlab.wisdom`` (kept: ``auto`` asks on every call)."""
    return (
        f"{task} {np.dtype(dtype).name} channels<={channel_class} "
        f"elements<={size_class} threads={threads}"
    )


def calibration_length(channels: int, elements: int) -> int:
    """Steps of a calibration problem of ``channels`` channels and about ``elements`` elements."""
    return max(elements // channels, config.cpu.auto_scan_min_length)


def calibration_speeds(solver, shape: tuple, channels: int, dtype, threads: int) -> dict:
    """:func:`median_speeds` of ``solver(a, b, h0, out, False, method)`` for each method, on
    ``a`` uniform in ``[0.5, 1)`` and normal ``b`` of ``shape`` (the layout ``solver`` takes)."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.0, shape).astype(dtype)
    b = rng.normal(size=shape).astype(dtype)
    h0 = np.zeros(channels, dtype)
    out = np.empty(shape, dtype)
    runs = {method: partial(solver, a, b, h0, out, False, method) for method in METHODS}
    return median_speeds(runs, out.size, threads)


def median_speeds(runs: dict, elements: int, threads: int) -> dict:
    """Nanoseconds per element of each of ``runs`` (method -> function solving a problem of
    ``elements`` elements) with ``threads`` threads: each runs once to compile and warm up,
    then ``CALIBRATION_RUNS`` times, taking turns so that a passing disturbance hits all; the
    median run of each counts, so that one lucky or unlucky run (a thread woken late, a busy
    neighbour) does not decide."""
    times = {method: [] for method in runs}
    with numba_threads(threads):
        for repeat in range(CALIBRATION_RUNS + 1):
            for method, run in runs.items():
                start = time.perf_counter()
                run()
                if repeat:
                    times[method].append(time.perf_counter() - start)
    return {method: float(np.median(spent)) * 1e9 / elements for method, spent in times.items()}


@contextlib.contextmanager
def streaming_choice(method: str, dtype, solver, possible: bool, elements: int):
    """Whether ``method`` ("sequential" or "scan") of ``solver`` (``scanlab.cpu.linear.solve``)
    writes a result of ``elements`` that its layout lets it stream (``possible``) with
    streaming stores, where ``config.cpu.streaming_store_bytes`` does not decide: as ``auto``
    chooses a method (:class:`Observed`), by the runs of both kinds of stores seen in this
    process on results of this size, from a measurement of both on this machine for ``dtype``
    (:func:`streaming_speeds`, about a second, kept in ``scanlab.wisdom``). The measurement is
    made once the process has spent ``config.cpu.calibrate_after`` seconds writing such
    results, with ordinary stores until then (a script that writes one never pays for it), and
    not where its arrays find no room. On an AMD Zen 4 VM the loop over rows of one cache line
    of float32 took 1.6x as long with them on a result of 128 MB, the scan of one series 0.9x;
    the measurement's smaller result told them apart less clearly.
    """
    if not possible or config.cpu.streaming_store_bytes is not None:
        yield possible
        return
    key = streaming_key(method, dtype)
    speeds = wisdom.known(key)
    if speeds is None and UNMEASURED_SECONDS[key] >= config.cpu.calibrate_after:
        speeds = measured_stores(method, dtype, solver)
    if speeds is None:
        start = time.perf_counter()
        yield False
        UNMEASURED_SECONDS[key] += time.perf_counter() - start
        return
    observed = STREAMING_OBSERVED[key, power_of_4_above(elements)]
    stores = observed.choose(speeds)
    compilations, start = CompileCounter.count, time.perf_counter()
    yield stores == "streaming"
    if CompileCounter.count == compilations:
        observed.record(stores, (time.perf_counter() - start) * 1e9 / elements)


def streaming_key(method: str, dtype) -> str:
    """The name of the measurement of both kinds of stores in ``scanlab.wisdom``."""
    return f"streaming stores {method} {np.dtype(dtype).name}"


def measured_stores(method: str, dtype, solver) -> dict | None:
    """The measurement of both kinds of stores (:func:`streaming_speeds`), made now if it was
    not yet; None where its arrays find no room."""
    try:
        return wisdom.recall(
            streaming_key(method, dtype), partial(streaming_speeds, method, np.dtype(dtype), solver)
        )
    except MemoryError:
        return None


#: What :func:`streaming_choice` chooses between.
STORES = ("ordinary", "streaming")
#: The :class:`Observed` of both kinds of stores, per method, dtype and size of result.
STREAMING_OBSERVED = collections.defaultdict(partial(Observed, STORES))


#: Seconds the two kinds of stores run, taking turns, before they are timed: a fresh VM's
#: memory is slow at first (see above), and the measurement's arrays are new.
STREAMING_WARM_UP = 0.5
#: Bytes beyond the threshold of the result the measurement writes, at most (the threshold
#: follows the last-level cache, which may be large).
STREAMING_RESULT_BYTES = 2**26


def streaming_speeds(method: str, dtype, solver) -> dict:
    """Nanoseconds per element of ``method`` ("sequential": rows of one cache line, the
    loop of one thread; "scan": one series) with and without streaming stores, on a result of
    twice the size from which they are used (``streaming.streaming_threshold()``; at most
    ``STREAMING_RESULT_BYTES`` beyond it), after ``STREAMING_WARM_UP`` seconds of both."""
    channels = 1 if method == "scan" else LANE_BYTES // dtype.itemsize
    threshold = streaming.streaming_threshold()
    size = threshold + min(threshold, STREAMING_RESULT_BYTES)
    shape = (size // (channels * dtype.itemsize), channels)
    rng = np.random.default_rng(0)
    a = read_only(rng.uniform(0.5, 1.0, shape).astype(dtype))
    b = read_only(rng.normal(size=shape).astype(dtype))
    h0, out = read_only(np.zeros(channels, dtype)), aligned_empty(shape, dtype)
    runs = {
        name: partial(solver, a, b, h0, out, False, method, name == "streaming")
        for name in ("streaming", "ordinary")
    }
    start = time.perf_counter()
    while time.perf_counter() - start < STREAMING_WARM_UP:
        for run in runs.values():
            run()
    return median_speeds(runs, out.size, numba.get_num_threads())
