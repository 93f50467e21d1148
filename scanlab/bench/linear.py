"""Benchmarks of ``linear_recurrence`` against memory bandwidth and the baselines users would write.

Used by ``scanlab bench`` and by ``benchmarks/linear_recurrence.py`` (which writes
``benchmarks/RESULTS.md``): the CPU table and its throughput sweep, the GPU table, and the
baselines they time (a compiled Numba loop, a per-step NumPy loop, ``scipy.signal.lfilter``, one
kernel launch per step, JAX's and CuPy's scans). Timing follows :mod:`scanlab.bench.timing`.
"""

from collections.abc import Iterable
from functools import partial

import numba
import numpy as np
import scipy.signal
from numba import cuda, njit
from tqdm import tqdm

import scanlab
from scanlab import config
from scanlab._arrays import aligned_empty
from scanlab.bench.timing import (
    best_time,
    best_times,
    gpu_best_time,
    gpu_cases,
    measure_rows,
)
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
    """The honest baseline: the sequential loop a user would compile with Numba (one thread),
    with the state of one series in a local variable (a register) and of several in an array."""
    if b.shape[1] == 1:
        h = out.dtype.type(0)
        for t in range(b.shape[0]):
            h = a[t, 0] * h + b[t, 0]
            out[t, 0] = h
        return
    state = np.zeros(b.shape[1], out.dtype)
    for t in range(b.shape[0]):
        for d in range(b.shape[1]):
            state[d] = a[t, d] * state[d] + b[t, d]
            out[t, d] = state[d]


@cuda.jit
def step_kernel(a, b, state, out, t):
    """The GPU's naive baseline: one step for every channel, launched once per time step."""
    channel = cuda.grid(1)
    if channel < out.shape[1]:
        value = a[t, channel] * state[channel] + b[t, channel]
        state[channel] = value
        out[t, channel] = value


def kernel_signatures():
    """``(kernel, signature)`` of this module's CUDA kernel, for the PTX compilation check."""
    return [
        (step_kernel, f"void({d}[:, ::1], {d}[:, ::1], {d}[::1], {d}[:, ::1], int64)")
        for d in ("float32", "float64")
    ]


def numpy_loop(a, b, out, steps: int) -> None:
    """The naive baseline: one vectorised NumPy step per time step, over the first ``steps``."""
    state = np.zeros(b.shape[1], out.dtype)
    for t in range(steps):
        state = a[t] * state + b[t]
        out[t] = state


def measure_cpu_case(length: int, channels: int, dtype, repeats: int) -> dict:
    """Time scanlab and the baselines on one ``(T, D)`` problem; return one table row."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.0, (length, channels)).astype(dtype)
    b = rng.standard_normal((length, channels)).astype(dtype)
    # The alignment of the results scanlab allocates, for every function timed: whole cache
    # lines let large results be written with streaming stores (scanlab.cpu.streaming).
    out = aligned_empty(b.shape, b.dtype)
    array_bytes = b.nbytes
    times = best_times(
        {
            "scanlab": partial(scanlab.linear_recurrence, a, b, out=out),
            "multiply": partial(np.multiply, a, b, out=out),
            "Numba loop": partial(numba_loop, a, b, out),
        },
        repeats,
    )
    method = choose_method(length, channels, out.dtype, numba.get_num_threads())  # as measured
    # A separate group: lfilter allocates its output, which would evict the others' arrays.
    coefficient = dtype(CONSTANT_COEFFICIENT)
    constant = best_times(
        {
            "scanlab": partial(scanlab.linear_recurrence, coefficient, b, out=out),
            "lfilter": partial(scipy.signal.lfilter, [1], [1, -coefficient], b, axis=0),
        },
        repeats,
    )
    scanlab_time = times["scanlab"]
    steps = min(length, NUMPY_LOOP_STEPS)
    numpy_time = best_time(partial(numpy_loop, a, b, out, steps), 1) * length / steps
    return {
        "T": length,
        "D": channels,
        "dtype": np.dtype(dtype).name,
        "method": method,
        "ms": 1e3 * scanlab_time,
        "GB/s": 3 * array_bytes / scanlab_time / 1e9,
        "multiply GB/s": 3 * array_bytes / times["multiply"] / 1e9,
        "of multiply": times["multiply"] / scanlab_time,
        "x NumPy loop": numpy_time / scanlab_time,
        "x Numba loop": times["Numba loop"] / scanlab_time,
        "x lfilter": constant["lfilter"] / constant["scanlab"],
    }


def cpu_table(quick: bool = False, show_progress: bool = True) -> list[dict]:
    """The CPU benchmark table: one row per ``(T, D)`` case and dtype."""
    cases = [
        (t, d, dtype) for t, d in (QUICK_CPU_CASES if quick else CPU_CASES) for dtype in DTYPES
    ]
    return measure_rows(
        cases,
        partial(measure_cpu_case, repeats=3 if quick else 5),
        lambda length, channels, dtype: f"T={length} D={channels} {np.dtype(dtype).name}",
        show_progress,
    )


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
    bar = tqdm(lengths, disable=not show_progress)
    for length in bar:
        bar.set_postfix_str(f"sweep T={length}")
        a = rng.uniform(0.5, 1.0, (length, 1)).astype(dtype)
        b = rng.standard_normal((length, 1)).astype(dtype)
        out = np.empty_like(b)
        gigabytes = 3 * b.nbytes / 1e9
        timings = {
            "scanlab": partial(scanlab.linear_recurrence, a, b, out=out),
            "Numba loop": partial(numba_loop, a, b, out),
            "numpy.multiply": partial(np.multiply, a, b, out=out),
            "lfilter (constant a)": partial(
                scipy.signal.lfilter, [1], [1, -CONSTANT_COEFFICIENT], b[:, 0]
            ),
        }
        for name, seconds in best_times(timings, repeats=3).items():
            series[name].append(gigabytes / seconds)
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


CPU_COLUMNS = (
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


#: ``(T, D)`` of the GPU table: T x D = 2**28 float32 elements (1 GiB per array), from one series
#: to many channels; the quick table is 256 times smaller.
GPU_CASES = tuple((2**28 // channels, channels) for channels in (1, 16, 256, 4096))
QUICK_GPU_CASES = tuple((2**20 // channels, channels) for channels in (1, 16, 256, 4096))
#: The quick table under Numba's CUDA simulator (``scanlab.bench.timing.gpu_cases``).
SIMULATOR_GPU_CASES = ((512, 1), (32, 16))
#: The loop of one kernel launch per step runs at most this many steps; scaled to the full length.
LAUNCH_LOOP_STEPS = 2**10

GPU_COLUMNS = (
    ("T", "{:d}"),
    ("D", "{:d}"),
    ("dtype", "{}"),
    ("method", "{}"),
    ("ms", "{:.3f}"),
    ("API ms", "{:.3f}"),
    ("API time-last ms", "{:.3f}"),
    ("VJP ms", "{:.3f}"),
    ("GB/s", "{:.0f}"),
    ("copy GB/s", "{:.0f}"),
    ("of copy", "{:.2f}"),
    ("1-pass ms", "{:.3f}"),
    ("1-pass of copy", "{:.2f}"),
    ("1-pass diff", "{:.1e}"),
    ("x sequential kernel", "{:.1f}"),
    ("x launch loop", "{:.0f}"),
    ("x jax scan", "{:.2f}"),
    ("x cupy cumsum", "{:.2f}"),
)


def launch_loop(a, b, state, out, steps: int) -> None:
    """The naive GPU baseline: one kernel launch per time step, over the first ``steps``."""
    channels = out.shape[1]
    blocks = (channels + 255) // 256
    for t in range(steps):
        step_kernel[blocks, 256](a, b, state, out, t)


def elementwise_combine(first, second):
    """The scan operator of the elementwise recurrence on ``(a, b)`` pairs (for JAX)."""
    return second[0] * first[0], second[0] * first[1] + second[1]


def jax_scan_time(
    a_host: np.ndarray, b_host: np.ndarray, repeats: int, combine=elementwise_combine
) -> float:
    """Seconds of ``jax.lax.associative_scan`` of ``combine`` over ``(a, b)``, NaN without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return float("nan")
    scan = jax.jit(lambda a, b: jax.lax.associative_scan(combine, (a, b), axis=0)[1])
    a, b = jnp.asarray(a_host), jnp.asarray(b_host)
    return best_time(lambda: scan(a, b).block_until_ready(), repeats)


def cupy_cumsum_time(b_host: np.ndarray, repeats: int) -> float:
    """Seconds of ``cupy.cumsum`` over time (a library scan of additions), NaN without CuPy."""
    try:
        import cupy
    except ImportError:
        return float("nan")
    b = cupy.asarray(b_host)
    out = cupy.empty_like(b)
    return gpu_best_time(lambda: cupy.cumsum(b, axis=0, out=out), repeats)


def time_last_api_time(a_host: np.ndarray, b_host: np.ndarray, repeats: int) -> float:
    """Seconds of the public call on ``(D, T)`` device arrays with ``axis=1``: it lays ``a``,
    ``b`` and the result out on the GPU (``scanlab.cuda.arrays``) around the kernels."""
    a, b = (cuda.to_device(np.ascontiguousarray(array.T)) for array in (a_host, b_host))
    out = cuda.device_array(b.shape, b.dtype)
    return gpu_best_time(lambda: scanlab.linear_recurrence(a, b, axis=1, out=out), repeats)


def measure_gpu_case(length: int, channels: int, dtype, repeats: int) -> dict:
    """Time scanlab's CUDA kernels and the GPU baselines on one ``(T, D)`` problem, on the device.

    The operands live on the GPU before timing: transfers are not timed (see ``solve``).
    """
    from scanlab.cuda.linear import choose_method, linear_recurrence_scan, solve_on_device

    rng = np.random.default_rng(0)
    a_host = rng.uniform(0.5, 1.0, (length, channels)).astype(dtype)
    b_host = rng.standard_normal((length, channels)).astype(dtype)
    a, b = cuda.to_device(a_host), cuda.to_device(b_host)
    h0 = cuda.to_device(np.zeros(channels, dtype))
    out = cuda.device_array((length, channels), dtype)
    array_bytes = b_host.nbytes

    scanlab_time = gpu_best_time(lambda: solve_on_device(a, b, h0, out, False, "auto"), repeats)
    api_time = gpu_best_time(lambda: scanlab.linear_recurrence(a, b, out=out), repeats)
    time_last_time = time_last_api_time(a_host, b_host, repeats)
    vjp_time = gpu_best_time(lambda: scanlab.linear_recurrence_vjp(a, out, b), repeats)
    sequential_time = gpu_best_time(
        lambda: solve_on_device(a, b, h0, out, False, "sequential"), repeats
    )
    copy_time = gpu_best_time(lambda: out.copy_to_device(b), repeats)
    settings = config.cuda
    tunables = (settings.threads_per_block, settings.items_per_thread, settings.channels_per_block)
    single_pass_out = cuda.device_array_like(out)
    single_pass_time = gpu_best_time(
        lambda: linear_recurrence_scan(a, b, h0, single_pass_out, False, *tunables, True), repeats
    )
    linear_recurrence_scan(a, b, h0, out, False, *tunables, False)
    two_pass, one_pass = out.copy_to_host(), single_pass_out.copy_to_host()
    difference = np.max(np.abs(one_pass - two_pass)) / max(np.max(np.abs(two_pass)), 1e-30)
    steps = min(length, LAUNCH_LOOP_STEPS)
    state = cuda.to_device(np.zeros(channels, dtype))
    loop_time = gpu_best_time(lambda: launch_loop(a, b, state, out, steps), 1) * length / steps
    return {
        "T": length,
        "D": channels,
        "dtype": np.dtype(dtype).name,
        "method": choose_method(length, channels),
        "ms": 1e3 * scanlab_time,
        "API ms": 1e3 * api_time,
        "API time-last ms": 1e3 * time_last_time,
        "VJP ms": 1e3 * vjp_time,
        "GB/s": 3 * array_bytes / scanlab_time / 1e9,
        "copy GB/s": 2 * array_bytes / copy_time / 1e9,
        "of copy": (3 / scanlab_time) / (2 / copy_time),
        "1-pass ms": 1e3 * single_pass_time,
        "1-pass of copy": (3 / single_pass_time) / (2 / copy_time),
        "1-pass diff": difference,
        "x sequential kernel": sequential_time / scanlab_time,
        "x launch loop": loop_time / scanlab_time,
        "x jax scan": jax_scan_time(a_host, b_host, repeats) / scanlab_time,
        "x cupy cumsum": cupy_cumsum_time(b_host, repeats) / scanlab_time,
    }


def gpu_table(quick: bool = False, show_progress: bool = True) -> list[dict]:
    """The GPU benchmark table: one float32 row per ``(T, D)`` case."""
    cases, repeats = gpu_cases(quick, GPU_CASES, QUICK_GPU_CASES, SIMULATOR_GPU_CASES)
    return measure_rows(
        cases,
        partial(measure_gpu_case, dtype=np.float32, repeats=repeats),
        lambda length, channels: f"GPU T={length} D={channels} float32",
        show_progress,
    )
