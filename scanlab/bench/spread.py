"""The spread of ``linear_recurrence``'s speed: input distributions, layouts, and a busy core.

Used by ``scanlab bench --spread`` and ``benchmarks/linear_recurrence.py --spread`` (which
writes ``benchmarks/RESULTS.md``). For every channel count, dtype and layout, the public call
with ``method="auto"``, ``"sequential"`` and ``"scan"`` on every distribution of the
coefficients take turns (:func:`scanlab.bench.timing.best_times`); then the same again while
another process keeps one core busy.
"""

import contextlib
import subprocess
import sys
from functools import partial

import numba
import numpy as np
import scipy.signal

import scanlab
from scanlab.bench.linear import numba_loop
from scanlab.bench.timing import best_times, measure_rows

#: Coefficient distributions: constants from 0.1 to 1, uniform ranges, signed, complex.
DISTRIBUTIONS = (
    "0.1", "0.5", "0.9", "0.99", "0.999", "1.0", "U(0.5,1)", "U(-1,1)", "complex, modulus<1",
)  # fmt: skip
CHANNELS = (1, 4, 16, 512)
DTYPES = (np.float32, np.float64)
LAYOUTS = ("time-first", "time-last")
METHODS = ("auto", "sequential", "scan")
#: Elements of each problem (``T * D``).
ELEMENTS, QUICK_ELEMENTS = 2**22, 2**16


def coefficients(distribution: str, shape: tuple, dtype, rng) -> np.ndarray:
    """Coefficients ``a`` of ``shape`` drawn from ``distribution`` (complex ones in the complex
    dtype of ``dtype``'s precision)."""
    if distribution == "U(0.5,1)":
        return rng.uniform(0.5, 1.0, shape).astype(dtype)
    if distribution == "U(-1,1)":
        return rng.uniform(-1.0, 1.0, shape).astype(dtype)
    if distribution == "complex, modulus<1":
        modulus = rng.uniform(0.5, 1.0, shape)
        phase = np.exp(2j * np.pi * rng.uniform(size=shape))
        return (modulus * phase).astype(np.result_type(dtype, np.complex64))
    return np.full(shape, float(distribution), dtype)


@contextlib.contextmanager
def busy_core():
    """Another process spinning on one core for the duration."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def measure_spread_shape(
    channels: int, dtype, layout: str, elements: int, repeats: int, statistic=min
) -> list[dict]:
    """Time the three methods on one problem of each distribution of this shape, all of them
    taking turns (so that a machine whose speed drifts over the minutes is not read as a cost
    that depends on the coefficients); return one table row per distribution (each method's
    best run, or ``statistic`` of its runs)."""
    rng = np.random.default_rng(0)
    length = elements // channels
    shape = (length, channels) if layout == "time-first" else (channels, length)
    axis = 0 if layout == "time-first" else -1
    b = rng.standard_normal(shape).astype(dtype)
    problems = {}
    for distribution in DISTRIBUTIONS:
        a = coefficients(distribution, shape, dtype, rng)
        problems[distribution] = (a, np.empty(shape, np.result_type(a, b)))
    calls = {
        (distribution, method): partial(
            scanlab.linear_recurrence, a, b, axis=axis, method=method, out=out
        )
        for distribution, (a, out) in problems.items()
        for method in METHODS
    }
    times = best_times(calls, repeats, statistic)
    rows = []
    for distribution, (_, out) in problems.items():
        seen = {method: times[distribution, method] for method in METHODS}
        best = min(("sequential", "scan"), key=seen.get)
        rows.append(
            {
                "a": distribution,
                "dtype": out.dtype.name,
                "D": channels,
                "layout": layout,
                "auto ms": seen["auto"] * 1e3,
                "best": best,
                "best ms": seen[best] * 1e3,
                "auto/best": seen["auto"] / seen[best],
                "ns/element": seen["auto"] * 1e9 / elements,
            }
        )
    return rows


def spread_table(quick: bool = False, busy: bool = False, show_progress: bool = True) -> list:
    """Rows of every (distribution, D, dtype, layout), optionally next to a busy core. Quiet,
    each method's best run counts; next to a busy core its median run (the best of many runs
    there is the one the neighbour happened to leave alone, which favours the method whose
    time varies most)."""
    elements = QUICK_ELEMENTS if quick else ELEMENTS
    statistic = np.median if busy else min
    shapes = [
        (channels, dtype, layout, elements, 2 if quick else 3, statistic)
        for dtype in DTYPES
        for channels in CHANNELS
        for layout in LAYOUTS
    ]
    context = busy_core() if busy else contextlib.nullcontext()
    with context:
        groups = measure_rows(
            shapes,
            measure_spread_shape,
            lambda c, t, layout, *_: (
                f"D={c} {np.dtype(t).name} {layout}" + (" (busy core)" if busy else "")
            ),
            show_progress,
        )
    return [row for group in groups for row in group]


def spread_summary(quiet: list, busy: list) -> list[str]:
    """The issue's targets read off the two grids: the spread over distributions at each shape
    and how far ``auto`` is from the best method."""
    lines = []
    for name, rows in (("quiet", quiet), ("one core busy", busy)):
        if not rows:
            continue
        shapes = {}
        for row in rows:
            shapes.setdefault((row["dtype"], row["D"], row["layout"]), []).append(row["auto ms"])
        spreads = {shape: max(times) / min(times) for shape, times in shapes.items()}
        worst_shape = max(spreads, key=spreads.get)
        worst_auto = max(rows, key=lambda row: row["auto/best"])
        lines.append(
            f"- {name}: slowest/fastest distribution at most {spreads[worst_shape]:.2f} "
            f"({'/'.join(map(str, worst_shape))}); auto within {worst_auto['auto/best']:.2f}x "
            f"of the best method everywhere (worst: {worst_auto['a']}, D={worst_auto['D']}, "
            f"{worst_auto['dtype']}, {worst_auto['layout']})"
        )
    return lines


def headline_ratios(quick: bool = False) -> list[str]:
    """One float64 series against the Numba loop and lfilter; a time-last (100, T) against
    lfilter along axis=-1."""
    rng = np.random.default_rng(0)
    length = 2**18 if quick else 2**24
    x = rng.standard_normal((length, 1))
    a = np.full_like(x, 0.9)
    out = np.empty_like(x)
    times = best_times(
        {
            "scanlab": lambda: scanlab.linear_recurrence(0.9, x, out=out),
            "numba loop": lambda: numba_loop(a, x, out),
            "lfilter": lambda: scipy.signal.lfilter([1.0], [1.0, -0.9], x, axis=0),
        },
        3,
    )
    wide = rng.standard_normal((100, 10**3 if quick else 10**5))
    wide_times = best_times(
        {
            "scanlab": lambda: scanlab.linear_recurrence(0.9, wide, axis=-1),
            "lfilter": lambda: scipy.signal.lfilter([1.0], [1.0, -0.9], wide, axis=-1),
        },
        3,
    )
    threads = numba.get_num_threads()
    return [
        f"- one float64 series of {length} steps, a = 0.9, {threads} threads: "
        f"{times['numba loop'] / times['scanlab']:.2f}x the Numba loop, "
        f"{times['lfilter'] / times['scanlab']:.2f}x lfilter ({times['scanlab'] * 1e3:.1f} ms)",
        f"- (100, {wide.shape[1]}) float64 along axis=-1: "
        f"{wide_times['lfilter'] / wide_times['scanlab']:.2f}x lfilter(axis=-1) "
        f"({wide_times['scanlab'] * 1e3:.1f} ms)",
    ]


SPREAD_COLUMNS = (
    ("a", "{}"),
    ("dtype", "{}"),
    ("D", "{}"),
    ("layout", "{}"),
    ("auto ms", "{:.2f}"),
    ("best", "{}"),
    ("best ms", "{:.2f}"),
    ("auto/best", "{:.2f}"),
    ("ns/element", "{:.2f}"),
)
