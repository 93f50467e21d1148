"""Benchmarks of ``linear_recurrence_matrix`` against bandwidth and the loops users would write.

Used by ``scanlab bench --matrix`` and ``benchmarks/linear_recurrence_matrix.py`` (which writes
``benchmarks/RESULTS.md``). Timing follows :mod:`scanlab.benchmark`: best of a few repeats, the
functions compared taking turns, compilation never timed.
"""

from functools import partial

import numba
import numpy as np
from numba import njit

import scanlab
from scanlab.benchmark import best_time, best_times, progress
from scanlab.cpu.linear_matrix import choose_method

#: ``(n, T, per_step)``: matrices per step (``A`` of shape ``(T, n, n)``) where ``A`` fits in
#: 2 GiB, and a constant matrix (``(n, n)``, a time-invariant system) at every ``n``.
CPU_CASES = (
    (2, 2**16, True),
    (2, 2**20, True),
    (4, 2**20, True),
    (16, 2**16, True),
    (16, 2**20, True),
    (64, 2**16, True),
    (2, 2**20, False),
    (4, 2**20, False),
    (16, 2**20, False),
    (64, 2**20, False),
)
QUICK_CPU_CASES = ((2, 2**16, True), (4, 2**16, True), (16, 2**12, True), (64, 2**14, False))
#: The per-step NumPy loop runs at most this many steps; its time is scaled to the full length.
NUMPY_LOOP_STEPS = 2**12
#: The scan is compared with the sequential method on at most this many steps.
SCAN_STEPS = 2**16


@njit(cache=True)
def numba_loop(a, b, out):
    """The honest baseline: the compiled sequential loop a user would write (one thread).

    ``a`` is ``(T, n, n)`` or ``(1, n, n)`` (the same matrix at every step).
    """
    length, size = b.shape
    state = np.zeros(size, out.dtype)
    following = np.empty(size, out.dtype)
    for t in range(length):
        matrix = a[t if a.shape[0] > 1 else 0]
        for i in range(size):
            value = b[t, i]
            for j in range(size):
                value += matrix[i, j] * state[j]
            following[i] = value
        for i in range(size):
            state[i] = following[i]
            out[t, i] = following[i]


def numpy_loop(a, b, out, steps: int) -> None:
    """The naive baseline: ``h = A[t] @ h + b[t]`` in NumPy, over the first ``steps``."""
    state = np.zeros(b.shape[1], out.dtype)
    for t in range(steps):
        state = a[t if a.shape[0] > 1 else 0] @ state + b[t]
        out[t] = state


def stable_matrices(count: int, size: int, dtype) -> np.ndarray:
    """``count`` random ``size x size`` matrices whose products neither grow nor vanish fast.

    Uniform entries scaled to a norm of about 0.9 per step; a single matrix is scaled to
    spectral radius 0.9 exactly, since its powers follow its largest eigenvalue.
    """
    rng = np.random.default_rng(0)
    matrices = rng.uniform(-1, 1, (count, size, size)) * (0.9 * (3 / size) ** 0.5)
    if count == 1:
        matrices *= 0.9 / np.max(np.abs(np.linalg.eigvals(matrices[0])))
    return matrices.astype(dtype)


def measure_cpu_case(size: int, length: int, per_step: bool, dtype, repeats: int) -> dict:
    """Time scanlab and the baselines on one system of ``size`` states; return one table row."""
    a = stable_matrices(length if per_step else 1, size, dtype)
    b = np.random.default_rng(1).standard_normal((length, size)).astype(dtype)
    out = np.empty_like(b)
    moved = a.nbytes + 2 * b.nbytes
    matrices = a if per_step else a[0]
    times = best_times(
        {
            "scanlab": partial(scanlab.linear_recurrence_matrix, matrices, b, out=out),
            "multiply": partial(np.multiply, b, b, out=out),
            "Numba loop": partial(numba_loop, a, b, out),
        },
        repeats,
    )
    steps = min(length, SCAN_STEPS)
    solve_prefix = partial(
        scanlab.linear_recurrence_matrix,
        matrices[:steps] if per_step else matrices,
        b[:steps],
        out=out[:steps],
    )
    methods = best_times(
        {method: partial(solve_prefix, method=method) for method in ("sequential", "scan")},
        repeats,
    )
    if not np.isfinite(out).all():
        raise RuntimeError(f"the benchmark's recurrence diverged (n={size}, T={length})")
    loop_steps = min(length, NUMPY_LOOP_STEPS)
    numpy_time = best_time(partial(numpy_loop, a, b, out, loop_steps), 1) * length / loop_steps
    scanlab_time = times["scanlab"]
    return {
        "n": size,
        "T": length,
        "A": "per step" if per_step else "constant",
        "dtype": np.dtype(dtype).name,
        "method": choose_method(length, 1, size, numba.get_num_threads()),
        "ms": 1e3 * scanlab_time,
        "GB/s": moved / scanlab_time / 1e9,
        "multiply GB/s": 3 * b.nbytes / times["multiply"] / 1e9,
        "ns/step": 1e9 * scanlab_time / length,
        "GFLOP/s": 2 * size * size * length / scanlab_time / 1e9,
        "x NumPy loop": numpy_time / scanlab_time,
        "x Numba loop": times["Numba loop"] / scanlab_time,
        "scan speedup": methods["sequential"] / methods["scan"],
    }


def cpu_table(quick: bool = False, show_progress: bool = True) -> list[dict]:
    """The CPU benchmark table of ``linear_recurrence_matrix``: float64, one system per row."""
    cases = QUICK_CPU_CASES if quick else CPU_CASES
    rows = []
    for index, (size, length, per_step) in enumerate(cases):
        if show_progress:
            label = f"n={size} T={length} {'per-step' if per_step else 'constant'} A"
            progress(index, len(cases), label)
        rows.append(measure_cpu_case(size, length, per_step, np.float64, repeats=3))
    if show_progress:
        progress(len(cases), len(cases), "done")
    return rows


CPU_COLUMNS = (
    ("n", "{:d}"),
    ("T", "{:d}"),
    ("A", "{}"),
    ("dtype", "{}"),
    ("method", "{}"),
    ("ms", "{:.2f}"),
    ("ns/step", "{:.1f}"),
    ("GFLOP/s", "{:.1f}"),
    ("GB/s", "{:.1f}"),
    ("multiply GB/s", "{:.1f}"),
    ("x NumPy loop", "{:.0f}"),
    ("x Numba loop", "{:.2f}"),
    ("scan speedup", "{:.2f}"),
)
