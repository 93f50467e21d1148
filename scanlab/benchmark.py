"""Benchmarks of ``linear_recurrence`` against memory bandwidth and the baselines users would write.

Used by ``scanlab bench`` and by ``benchmarks/linear_recurrence.py`` (which writes
``benchmarks/RESULTS.md``). Every figure is the best of a few repeats after a warm-up call, so
compilation is never timed.
"""

import datetime
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial

import numba
import numpy as np
import scipy
import scipy.signal
from numba import cuda, njit

import scanlab
from scanlab import config
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


def best_times(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Seconds of the fastest call of each function, the functions taking turns.

    Taking turns exposes every function to the same disturbances of a shared machine, so their
    ratios hold even when one burst of noise spoils a whole stretch of calls. Each timed call
    follows an untimed one of the same function, so each finds its data as warm in the caches as
    a run of repeated calls would (and not as the previous function left them). Short calls are
    repeated more (up to 0.2 s per function, at most 200 rounds).
    """
    slowest = 0.0
    for function in functions.values():
        start = time.perf_counter()
        function()
        slowest = max(slowest, time.perf_counter() - start)
    rounds = max(repeats, min(200, int(0.2 / max(slowest, 1e-6))))
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(rounds):
        for name, function in functions.items():
            function()
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def best_time(function: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of at least ``repeats`` calls of one function (see ``best_times``)."""
    return best_times({"": function}, repeats)[""]


def progress(done: int, total: int, label: str, stream=sys.stderr) -> None:
    """Draw a one-line progress bar on ``stream`` (a terminal), ending the line when done."""
    width = 30
    filled = width * done // max(total, 1)
    stream.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total} {label:<40}")
    if done == total:
        stream.write("\n")
    stream.flush()


def measure_rows(cases, measure, label, show_progress: bool = True) -> list[dict]:
    """``measure(*case)`` for each case, with a progress bar showing ``label(*case)``."""
    rows = []
    for index, case in enumerate(cases):
        if show_progress:
            progress(index, len(cases), label(*case))
        rows.append(measure(*case))
    if show_progress:
        progress(len(cases), len(cases), "done")
    return rows


def measure_cpu_case(length: int, channels: int, dtype, repeats: int) -> dict:
    """Time scanlab and the baselines on one ``(T, D)`` problem; return one table row."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.0, (length, channels)).astype(dtype)
    b = rng.standard_normal((length, channels)).astype(dtype)
    out = np.empty_like(b)
    array_bytes = b.nbytes
    method = choose_method(length, channels, out.dtype, numba.get_num_threads())

    times = best_times(
        {
            "scanlab": partial(scanlab.linear_recurrence, a, b, out=out),
            "multiply": partial(np.multiply, a, b, out=out),
            "Numba loop": partial(numba_loop, a, b, out),
        },
        repeats,
    )
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
    for index, length in enumerate(lengths):
        if show_progress:
            progress(index, len(lengths), f"sweep T={length}")
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


def format_table(rows: list[dict], columns=CPU_COLUMNS, markdown: bool = False) -> str:
    """``rows`` as an aligned text table, or a Markdown one; ``columns`` are (name, format),
    the format applied to numbers (a string, such as "skipped", is shown as it is)."""
    header = [name for name, _ in columns]
    cells = [
        [
            row[name] if isinstance(row[name], str) else template.format(row[name])
            for name, template in columns
        ]
        for row in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
        lines += ["| " + " | ".join(line) + " |" for line in cells]
        return "\n".join(lines)
    widths = [max(len(text) for text in column) for column in zip(header, *cells, strict=True)]
    return "\n".join(
        "  ".join(text.rjust(width) for text, width in zip(line, widths, strict=True))
        for line in [header, *cells]
    )


def record_results(path, name: str, machine: str, table: str, notes=(), write=True) -> None:
    """Print the ``name`` block of RESULTS.md (machine, command, table, ``notes`` lines) and, if
    ``write``, replace the ``<!-- name:start -->`` ... ``<!-- name:end -->`` block of ``path``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    lines = [start, f"Measured {datetime.date.today()} on {machine}."]
    lines += [f"Command: `python {' '.join(sys.argv)}`", "", table]
    lines += ["", *notes] if notes else []
    block = "\n".join([*lines, end])
    print(block)
    if not write:
        return
    text = path.read_text()
    if start not in text:
        raise SystemExit(f"{path} has no {start} ... {end} block to replace")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    path.write_text(pattern.sub(lambda _: block, text))
    print(f"wrote {path}")


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


#: ``(T, D)`` of the GPU table: T x D = 2**28 float32 elements (1 GiB per array), from one series
#: to many channels; the quick table is 256 times smaller.
GPU_CASES = tuple((2**28 // channels, channels) for channels in (1, 16, 256, 4096))
QUICK_GPU_CASES = tuple((2**20 // channels, channels) for channels in (1, 16, 256, 4096))
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


def gpu_best_time(function: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls, timed with CUDA events after a warm-up.

    Under the CUDA simulator, whose events record no time, the host clock times the (synchronous)
    simulation instead: the numbers then only show that the benchmark runs.
    """
    if numba.config.ENABLE_CUDASIM:
        return best_time(function, repeats)
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
    return measure_rows(
        QUICK_GPU_CASES if quick else GPU_CASES,
        partial(measure_gpu_case, dtype=np.float32, repeats=5 if quick else 20),
        lambda length, channels: f"GPU T={length} D={channels} float32",
        show_progress,
    )


def gpu_description() -> str:
    """The GPU's name and compute capability, and the numba-cuda version."""
    if numba.config.ENABLE_CUDASIM:  # its device has no name
        return f"the CUDA simulator (NUMBA_ENABLE_CUDASIM=1), Numba {numba.__version__}"
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    return f"{name} (compute capability {device.compute_capability}), Numba {numba.__version__}"
