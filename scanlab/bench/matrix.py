"""Benchmarks of ``linear_recurrence_matrix`` against bandwidth and the loops users would write.

Used by ``scanlab bench --matrix`` and ``benchmarks/linear_recurrence.py --matrix`` (which writes
``benchmarks/RESULTS.md``). Timing follows :mod:`scanlab.bench.timing`: best of a few repeats, the
functions compared taking turns, compilation never timed.
"""

from functools import partial

import numba
import numpy as np
from numba import njit

import scanlab
from scanlab.bench.linear import jax_scan_time
from scanlab.bench.timing import (
    best_time,
    best_times,
    gpu_best_time,
    gpu_cases,
    measure_rows,
)
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
    return measure_rows(
        QUICK_CPU_CASES if quick else CPU_CASES,
        partial(measure_cpu_case, dtype=np.float64, repeats=3),
        lambda size, length, per_step: (
            f"n={size} T={length} {'per-step' if per_step else 'constant'} A"
        ),
        show_progress,
    )


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


#: ``(n, T)`` of the GPU table: one float32 system with a matrix per step, ``A`` of 2**28 bytes;
#: the quick table is 64 times smaller.
GPU_CASES = tuple((size, 2**26 // (size * size)) for size in (2, 4, 16, 64))
QUICK_GPU_CASES = tuple((size, 2**20 // (size * size)) for size in (2, 4, 16, 64))
#: The quick table under Numba's CUDA simulator (``scanlab.bench.timing.gpu_cases``).
SIMULATOR_GPU_CASES = ((2, 256), (4, 64))

GPU_COLUMNS = (
    ("n", "{:d}"),
    ("T", "{:d}"),
    ("dtype", "{}"),
    ("method", "{}"),
    ("ms", "{:.3f}"),
    ("GB/s", "{:.0f}"),
    ("copy GB/s", "{:.0f}"),
    ("of copy", "{:.2f}"),
    ("x sequential kernel", "{:.1f}"),
    ("x jax scan", "{:.2f}"),
)


def matrix_combine(first, second):
    """The scan operator of the matrix recurrence on ``(A, b)`` pairs (for JAX)."""
    first_a, first_b = first
    second_a, second_b = second
    return second_a @ first_a, (second_a @ first_b[..., None])[..., 0] + second_b


def measure_gpu_case(size: int, length: int, dtype, repeats: int) -> dict:
    """Time the CUDA kernels of ``linear_recurrence_matrix`` on one system, operands on the GPU."""
    from numba import cuda

    from scanlab.cuda.linear_matrix import choose_method as choose_gpu_method
    from scanlab.cuda.linear_matrix import solve_on_device

    a_host = stable_matrices(length, size, dtype).reshape(length, 1, size, size)
    b_host = np.random.default_rng(1).standard_normal((length, 1, size)).astype(dtype)
    a, b = cuda.to_device(a_host), cuda.to_device(b_host)
    h0 = cuda.to_device(np.zeros((1, size), dtype))
    out = cuda.device_array((length, 1, size), dtype)
    scanlab_time = gpu_best_time(lambda: solve_on_device(a, b, h0, out, False, "auto"), repeats)
    sequential_time = gpu_best_time(
        lambda: solve_on_device(a, b, h0, out, False, "sequential"), repeats
    )
    copy = cuda.device_array_like(a)
    copy_time = gpu_best_time(lambda: copy.copy_to_device(a), repeats)
    moved = a_host.nbytes + 2 * b_host.nbytes
    return {
        "n": size,
        "T": length,
        "dtype": np.dtype(dtype).name,
        "method": choose_gpu_method(length, 1, size),
        "ms": 1e3 * scanlab_time,
        "GB/s": moved / scanlab_time / 1e9,
        "copy GB/s": 2 * a_host.nbytes / copy_time / 1e9,
        "of copy": (moved / scanlab_time) / (2 * a_host.nbytes / copy_time),
        "x sequential kernel": sequential_time / scanlab_time,
        "x jax scan": (
            jax_scan_time(a_host[:, 0], b_host[:, 0], repeats, matrix_combine) / scanlab_time
        ),
    }


def gpu_table(quick: bool = False, show_progress: bool = True) -> list[dict]:
    """The GPU benchmark table of ``linear_recurrence_matrix``: float32, one system per row."""
    cases, repeats = gpu_cases(quick, GPU_CASES, QUICK_GPU_CASES, SIMULATOR_GPU_CASES)
    return measure_rows(
        cases,
        partial(measure_gpu_case, dtype=np.float32, repeats=repeats),
        lambda size, length: f"GPU n={size} T={length} float32",
        show_progress,
    )
