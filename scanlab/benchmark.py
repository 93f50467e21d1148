"""Benchmarks of ``linear_recurrence`` against memory bandwidth and the baselines users would write.

Used by ``scanlab bench`` and by ``benchmarks/linear_recurrence.py`` (which writes
``benchmarks/RESULTS.md``). Every figure is the best of a few repeats after a warm-up call, so
compilation is never timed.
"""

import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial

import numba
import numpy as np
import scipy
import scipy.signal
from numba import njit

import scanlab
from scanlab.cpu.linear import choose_method

#: ``(T, D)`` of the CPU table: one long series, a few channels, many channels, and the issue's
#: per-step-loop comparison point.
CPU_CASES = ((2**24, 1), (2**21, 16), (2**16, 512), (2**14, 64))
QUICK_CPU_CASES = ((2**20, 1), (2**16, 16), (2**12, 512), (2**14, 64))
DTYPES = (np.float32, np.float64)
#: The per-step NumPy loop runs at most this many steps; its time is scaled to the full length.
NUMPY_LOOP_STEPS = 2**14
#: The coefficient of the constant-coefficient comparison with scipy.signal.lfilter.
CONSTANT_COEFFICIENT = 0.99


@njit(cache=True)
def numba_loop(a, b, out):
    """The honest baseline: the sequential loop a user would compile with Numba (one thread)."""
    state = np.zeros(b.shape[1], out.dtype)
    for t in range(b.shape[0]):
        for d in range(b.shape[1]):
            state[d] = a[t, d] * state[d] + b[t, d]
            out[t, d] = state[d]


def numpy_loop(a, b, out, steps: int) -> None:
    """The naive baseline: one vectorised NumPy step per time step, over the first ``steps``."""
    state = np.zeros(b.shape[1], out.dtype)
    for t in range(steps):
        state = a[t] * state + b[t]
        out[t] = state


def best_time(function: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of at least ``repeats`` calls, after one warm-up call.

    Short calls are repeated more (up to 0.2 s in all, at most 200 times): the minimum of a few
    sub-millisecond timings is at the mercy of one interruption.
    """
    start = time.perf_counter()
    function()
    warm_up = time.perf_counter() - start
    repeats = max(repeats, min(200, int(0.2 / max(warm_up, 1e-6))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def progress(done: int, total: int, label: str, stream=sys.stderr) -> None:
    """Draw a one-line progress bar on ``stream`` (a terminal), ending the line when done."""
    width = 30
    filled = width * done // max(total, 1)
    stream.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total} {label:<40}")
    if done == total:
        stream.write("\n")
    stream.flush()


def measure_cpu_case(length: int, channels: int, dtype, repeats: int) -> dict:
    """Time scanlab and the baselines on one ``(T, D)`` problem; return one table row."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.0, (length, channels)).astype(dtype)
    b = rng.standard_normal((length, channels)).astype(dtype)
    out = np.empty_like(b)
    array_bytes = b.nbytes
    method = choose_method(length, channels, out.itemsize, numba.get_num_threads())

    scanlab_time = best_time(lambda: scanlab.linear_recurrence(a, b, out=out), repeats)
    multiply_time = best_time(lambda: np.multiply(a, b, out=out), repeats)
    numba_time = best_time(lambda: numba_loop(a, b, out), repeats)
    steps = min(length, NUMPY_LOOP_STEPS)
    numpy_time = best_time(lambda: numpy_loop(a, b, out, steps), 1) * length / steps
    coefficient = dtype(CONSTANT_COEFFICIENT)
    constant_time = best_time(lambda: scanlab.linear_recurrence(coefficient, b, out=out), repeats)
    lfilter_time = best_time(
        lambda: scipy.signal.lfilter([1], [1, -coefficient], b, axis=0), repeats
    )
    return {
        "T": length,
        "D": channels,
        "dtype": np.dtype(dtype).name,
        "method": method,
        "ms": 1e3 * scanlab_time,
        "GB/s": 3 * array_bytes / scanlab_time / 1e9,
        "multiply GB/s": 3 * array_bytes / multiply_time / 1e9,
        "of multiply": multiply_time / scanlab_time,
        "x NumPy loop": numpy_time / scanlab_time,
        "x Numba loop": numba_time / scanlab_time,
        "x lfilter": lfilter_time / constant_time,
    }


def cpu_table(quick: bool = False, show_progress: bool = True) -> list[dict]:
    """The CPU benchmark table: one row per ``(T, D)`` case and dtype."""
    cases = [
        (t, d, dtype) for t, d in (QUICK_CPU_CASES if quick else CPU_CASES) for dtype in DTYPES
    ]
    rows = []
    for index, (length, channels, dtype) in enumerate(cases):
        if show_progress:
            progress(index, len(cases), f"T={length} D={channels} {np.dtype(dtype).name}")
        rows.append(measure_cpu_case(length, channels, dtype, repeats=3 if quick else 5))
    if show_progress:
        progress(len(cases), len(cases), "done")
    return rows


def throughput_sweep(
    lengths: Iterable[int], dtype=np.float64, show_progress: bool = True
) -> dict[str, list[float]]:
    """GB/s (3 arrays moved) of one series of each length: scanlab and the baselines."""
    lengths = list(lengths)
    series: dict[str, list[float]] = {
        "scanlab": [],
        "Numba loop": [],
        "numpy.multiply": [],
        "lfilter (constant a)": [],
    }
    rng = np.random.default_rng(0)
    for index, length in enumerate(lengths):
        if show_progress:
            progress(index, len(lengths), f"sweep T={length}")
        a = rng.uniform(0.5, 1.0, (length, 1)).astype(dtype)
        b = rng.standard_normal((length, 1)).astype(dtype)
        out = np.empty_like(b)
        gigabytes = 3 * b.nbytes / 1e9
        repeats = max(3, min(50, 2**22 // length))
        timings = {
            "scanlab": partial(scanlab.linear_recurrence, a, b, out=out),
            "Numba loop": partial(numba_loop, a, b, out),
            "numpy.multiply": partial(np.multiply, a, b, out=out),
            "lfilter (constant a)": partial(
                scipy.signal.lfilter, [1], [1, -CONSTANT_COEFFICIENT], b[:, 0]
            ),
        }
        for name, function in timings.items():
            series[name].append(gigabytes / best_time(function, repeats))
    if show_progress:
        progress(len(lengths), len(lengths), "done")
    return series


def plot_sweep(lengths: list[int], series: dict[str, list[float]], path: str) -> None:
    """Save throughput against sequence length as a PNG (needs matplotlib: scanlab[plot])."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'scanlab[plot]'") from None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, values in series.items():
        axes.plot(lengths, values, marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("sequence length T (one float64 series)")
    axes.set_ylabel("GB/s (read a, b; write h)")
    axes.set_title(f"h[t] = a[t] h[t-1] + b[t] on {numba.get_num_threads()} threads")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


COLUMNS = (
    ("T", "{:d}"),
    ("D", "{:d}"),
    ("dtype", "{}"),
    ("method", "{}"),
    ("ms", "{:.2f}"),
    ("GB/s", "{:.1f}"),
    ("multiply GB/s", "{:.1f}"),
    ("of multiply", "{:.2f}"),
    ("x NumPy loop", "{:.0f}"),
    ("x Numba loop", "{:.2f}"),
    ("x lfilter", "{:.2f}"),
)


def format_table(rows: list[dict], markdown: bool = False) -> str:
    """``rows`` as an aligned text table, or a Markdown one."""
    header = [name for name, _ in COLUMNS]
    cells = [[template.format(row[name]) for name, template in COLUMNS] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
        lines += ["| " + " | ".join(line) + " |" for line in cells]
        return "\n".join(lines)
    widths = [max(len(text) for text in column) for column in zip(header, *cells, strict=True)]
    return "\n".join(
        "  ".join(text.rjust(width) for text, width in zip(line, widths, strict=True))
        for line in [header, *cells]
    )


def machine_description() -> str:
    """CPU model, core count, threads and the versions that matter for the numbers."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line)
    except (OSError, StopIteration):
        pass
    try:
        layer = f"{numba.threading_layer()} layer"
    except ValueError:  # no parallel kernel has run yet
        layer = "threading layer not chosen yet"
    return (
        f"{model}, {os.cpu_count()} cores, Numba {numba.__version__} with "
        f"{numba.get_num_threads()} threads ({layer}), "
        f"NumPy {np.__version__}, SciPy {scipy.__version__}, Python {platform.python_version()}"
    )
