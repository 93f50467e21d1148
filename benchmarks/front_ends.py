"""Benchmark the front ends against what they replace; record in RESULTS.md.

Usage: python benchmarks/front_ends.py [--quick] [--busy] [--only TABLE]
       python benchmarks/front_ends.py --device cuda [--seconds S] [--quick]

Each row times scanlab and the library it replaces on the same data, taking turns: ``lfilter`` and
``sosfilt`` against scipy's on one series of 10**7 samples, a (100, 10**5) array along ``axis=-1``,
and a (10**5, 100) and a (10**6, 2) one along ``axis=0`` (a first-order filter, a 4th-order
Butterworth as ``lfilter(b, a)``, an 8th-order one as ``sosfilt``, a 32-tap low-pass FIR filter as
``lfilter(b, [1])``, the first-order filter from initial conditions ``zi`` (a stream's next piece),
and the zero-phase ``filtfilt`` and ``sosfiltfilt`` of the Butterworth filters); the first three
filters on a stream of 2**20 samples filtered in pieces of 256, 4096 and 65536 samples, ``zi``
carried (where the calls' own cost shows); what a call costs on small problems (256 to 4096
samples: ``linear_recurrence`` against ``lfilter``, the filters with ``zi``, ``ewm_mean``, ``gae``
and ``discounted_returns`` on (256, 8) rollouts against the Numba loop); ``ewm_mean`` against
pandas' ``ewm(span=20).mean()`` on a Series of 10**7 values and a (10**5, 100) DataFrame, without
and with 10% missing values, and with uneven ``times`` (``halflife="20s"``); ``gae`` and
``discounted_returns`` against the same loop compiled by Numba (sequential, one thread: what a user
would write with ``@njit``) and, for rollouts of at most 10**5 steps, the per-step NumPy loop of
PPO implementations (rewards and values standard normal, episodes ending with probability 1/200 per
step, gamma 0.99, lambda 0.95). The tables
replace the ``filter-table``, ``stream-table``, ``calls-table``, ``ewm-table`` and ``rl-table``
blocks of benchmarks/RESULTS.md (``--only``: one of them: filter, stream, calls, ewm or rl).

``--busy``: the same next to another process spinning on one core, each function's median run
(the best of many runs there is the one the neighbour happened to leave alone); the
``filter-busy-table``, ``stream-busy-table``, ``calls-busy-table``, ``ewm-busy-table`` and
``rl-busy-table`` blocks.

``--device cuda``: the front ends on GPU arrays (float32, the data on the GPU before timing,
CUDA events) against the CPU library of the same run (scipy, pandas, the Numba loop) and
against CuPy's ``cupyx.scipy.signal`` filters where CuPy is installed; the
``front-ends-cuda-table`` block.
"""

import argparse
import contextlib
import pathlib
from functools import partial

import numpy as np
import pandas as pd
import scipy.signal
from numba import njit

from scanlab import linear_recurrence, signal
from scanlab.bench.spread import busy_core
from scanlab.bench.tables import (
    format_table,
    gpu_description,
    machine_description,
    record_results,
)
from scanlab.bench.timing import best_times, gpu_best_time, measure_rows
from scanlab.rl import discounted_returns, gae
from scanlab.signal import ewm_mean

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")
GAMMA, LAM = 0.99, 0.95
#: (function, steps, environments, dtype).
RL_CASES = (
    ("gae", 10**6, 16, np.float32),
    ("gae", 10**6, 16, np.float64),
    ("gae", 10**5, 16, np.float64),
    ("gae", 2**22, 1, np.float64),
    ("discounted_returns", 10**6, 16, np.float64),
    ("discounted_returns", 2**22, 1, np.float64),
)
RL_COLUMNS = (
    ("function", "{}"),
    ("T x envs", "{}"),
    ("dtype", "{}"),
    ("scanlab ms", "{:.2f}"),
    ("Numba loop ms", "{:.2f}"),
    ("x Numba loop", "{:.2f}"),
    ("x NumPy loop", "{}"),
)


#: (label, filter function, coefficients).
FILTERS = (
    ("order 1", "lfilter", ([0.1], [1.0, -0.9])),
    ("Butterworth 4 (b, a)", "lfilter", scipy.signal.butter(4, 0.1)),
    ("Butterworth 8 (sos)", "sosfilt", (scipy.signal.butter(8, 0.1, output="sos"),)),
    ("FIR 32 taps", "lfilter", (scipy.signal.firwin(32, 0.1), [1.0])),
)
#: Host arrays only (not in the GPU table): a stream's next piece, from the initial conditions
#: ``zi`` (the steady state of the first sample), and the zero-phase filters.
HOST_FILTERS = (
    ("order 1 with zi", "lfilter", ([0.1], [1.0, -0.9])),
    ("Butterworth 4 filtfilt", "filtfilt", scipy.signal.butter(4, 0.1)),
    ("Butterworth 8 sosfiltfilt", "sosfiltfilt", (scipy.signal.butter(8, 0.1, output="sos"),)),
)
FILTER_SHAPES = ((10**7,), (100, 10**5))
#: On the host also time first: channels along rows, filtered along ``axis=0`` (many of them,
#: and a stereo pair).
TIME_FIRST_SHAPES = ((10**5, 100), (10**6, 2))
FILTER_COLUMNS = (
    ("filter", "{}"),
    ("shape", "{}"),
    ("scanlab ms", "{:.2f}"),
    ("scipy ms", "{:.2f}"),
    ("x scipy", "{:.2f}"),
)
#: One series of ``STREAM_SAMPLES`` samples filtered in pieces of each of these lengths, ``zi``
#: carried from piece to piece (a recording processed as it arrives).
STREAM_PIECES = (256, 4096, 65536)
STREAM_SAMPLES = 2**20
STREAM_COLUMNS = (
    ("filter", "{}"),
    ("piece", "{}"),
    ("scanlab ms", "{:.2f}"),
    ("scipy ms", "{:.2f}"),
    ("x scipy", "{:.2f}"),
)


def measure_filter(
    label: str,
    function: str,
    coefficients: tuple,
    shape: tuple,
    axis: int = -1,
    quick: bool = False,
    statistic=min,
):
    """One row: scanlab's and scipy's filter on the same float64 signal along ``axis`` (from
    ``zi``, the steady state of the first sample, where the label says "with zi")."""
    if quick:
        shape = tuple(
            size // 16 if k == axis % len(shape) else size for k, size in enumerate(shape)
        )
    x = np.random.default_rng(0).standard_normal(shape)
    options = {"axis": axis}
    if label.endswith("with zi"):
        first = np.take(x, [0], axis)
        steady = scipy.signal.lfilter_zi(*coefficients)
        options["zi"] = np.moveaxis(np.moveaxis(first, axis, -1) * steady, -1, axis)
    times = best_times(
        {
            "scanlab": partial(getattr(signal, function), *coefficients, x, **options),
            "scipy": partial(getattr(scipy.signal, function), *coefficients, x, **options),
        },
        repeats=3,
        statistic=statistic,
    )
    return {
        "filter": label,
        "shape": "x".join(map(str, shape)) + (f" (axis {axis})" if axis != -1 else ""),
        "scanlab ms": 1e3 * times["scanlab"],
        "scipy ms": 1e3 * times["scipy"],
        "x scipy": times["scipy"] / times["scanlab"],
    }


def filter_stream(filter_function, coefficients: tuple, pieces: list, zi) -> None:
    """Filter ``pieces`` one after the other, each from the previous one's final conditions."""
    for piece in pieces:
        _, zi = filter_function(*coefficients, piece, zi=zi)


def measure_stream(
    label: str, function: str, coefficients: tuple, piece: int, quick=False, statistic=min
):
    """One row: a stream of ``STREAM_SAMPLES`` float64 samples (16x fewer when ``quick``)
    filtered in pieces of ``piece`` samples by scanlab's and scipy's filter, from zero
    conditions."""
    samples = STREAM_SAMPLES // (16 if quick else 1)
    pieces = np.split(np.random.default_rng(0).standard_normal(samples), samples // piece)
    if function == "sosfilt":
        zi = np.zeros((len(coefficients[0]), 2))
    else:
        zi = np.zeros(max(map(len, coefficients)) - 1)
    times = best_times(
        {
            name: partial(filter_stream, getattr(module, function), coefficients, pieces, zi)
            for name, module in (("scanlab", signal), ("scipy", scipy.signal))
        },
        repeats=3,
        statistic=statistic,
    )
    return {
        "filter": label,
        "piece": piece,
        "scanlab ms": 1e3 * times["scanlab"],
        "scipy ms": 1e3 * times["scipy"],
        "x scipy": times["scipy"] / times["scanlab"],
    }


#: Small problems, where a call's own cost shows (checks, layout, choosing a kernel): (front
#: end, shape), each against what a user would call instead.
CALL_CASES = (
    ("linear_recurrence", (256,)),
    ("linear_recurrence", (4096,)),
    ("linear_recurrence", (8, 256)),
    ("lfilter with zi", (256,)),
    ("lfilter with zi", (2, 256)),
    ("lfilter", (16, 256)),
    ("sosfilt with zi", (256,)),
    ("ewm_mean", (256,)),
    ("ewm_mean", (4096,)),
    ("ewm_mean", (16, 256)),
    ("gae", (256, 8)),
    ("discounted_returns", (256, 8)),
)
CALL_COLUMNS = (
    ("front end", "{}"),
    ("shape", "{}"),
    ("scanlab us", "{:.1f}"),
    ("instead", "{}"),
    ("instead us", "{:.1f}"),
    ("x instead", "{:.2f}"),
)


def call_pair(front_end: str, x: np.ndarray) -> tuple:
    """``(scanlab's call, what a user would call instead, its call)`` on ``x`` (time last; the
    rollouts ``(T, envs)``; ``ewm_mean`` of a Series, or of a DataFrame of ``x``'s rows as
    columns)."""
    butterworth, sections = scipy.signal.butter(4, 0.1), scipy.signal.butter(8, 0.1, output="sos")
    if front_end == "linear_recurrence":
        alternative = partial(scipy.signal.lfilter, [1.0], [1.0, -0.9], x)
        return partial(linear_recurrence, 0.9, x, axis=-1), "scipy lfilter", alternative
    if front_end in ("lfilter with zi", "sosfilt with zi"):
        coefficients = butterworth if front_end == "lfilter with zi" else (sections,)
        name = front_end.split()[0]
        zi = np.zeros(
            (len(sections), *x.shape[:-1], 2) if name == "sosfilt" else (*x.shape[:-1], 4)
        )
        scanlab_call, scipy_call = (
            partial(getattr(module, name), *coefficients, x, zi=zi)
            for module in (signal, scipy.signal)
        )
        return scanlab_call, f"scipy {name}", scipy_call
    if front_end == "lfilter":
        scanlab_call, scipy_call = (
            partial(module.lfilter, *butterworth, x) for module in (signal, scipy.signal)
        )
        return scanlab_call, "scipy lfilter", scipy_call
    if front_end == "ewm_mean":
        data = pd.Series(x) if x.ndim == 1 else pd.DataFrame(x.T)  # columns: time contiguous
        return partial(ewm_mean, data, span=20), "pandas ewm", data.ewm(span=20).mean
    rng = np.random.default_rng(1)
    dones = (rng.random(x.shape) < 1 / 200).astype(x.dtype)
    if front_end == "gae":
        values, last = rng.standard_normal(x.shape), rng.standard_normal(x.shape[1])
        scanlab_call = partial(gae, x, values, dones, last, gamma=GAMMA, lam=LAM)
        return scanlab_call, "Numba loop", partial(gae_numba, x, values, dones, last, GAMMA, LAM)
    scanlab_call = partial(discounted_returns, x, GAMMA, dones=dones)
    return scanlab_call, "Numba loop", partial(returns_numba, x, dones, GAMMA)


def measure_call(front_end: str, shape: tuple, quick: bool, statistic=min) -> dict:
    """One row: the microseconds of a call of a front end and of its alternative on a small
    float64 problem (the same size when ``quick``)."""
    x = np.random.default_rng(0).standard_normal(shape)
    scanlab_call, alternative, alternative_call = call_pair(front_end, x)
    times = best_times({"scanlab": scanlab_call, "instead": alternative_call}, 50, statistic)
    return {
        "front end": front_end,
        "shape": "x".join(map(str, shape)),
        "scanlab us": 1e6 * times["scanlab"],
        "instead": alternative,
        "instead us": 1e6 * times["instead"],
        "x instead": times["instead"] / times["scanlab"],
    }


#: (label, shape, fraction missing); "with times": steps a random 0-2 s apart (ties too),
#: ``halflife="20s"`` against pandas' ``ewm(halflife="20s", times=...)``.
EWM_CASES = (
    ("Series", (10**7,), 0.0),
    ("Series", (10**7,), 0.1),
    ("Series with times", (10**7,), 0.1),
    ("DataFrame", (10**5, 100), 0.0),
    ("DataFrame", (10**5, 100), 0.1),
    ("DataFrame with times", (10**5, 100), 0.1),
)
EWM_COLUMNS = (
    ("pandas object", "{}"),
    ("shape", "{}"),
    ("missing", "{:.0%}"),
    ("scanlab ms", "{:.2f}"),
    ("pandas ms", "{:.2f}"),
    ("x pandas", "{:.2f}"),
)


def measure_ewm(label: str, shape: tuple, missing: float, quick: bool, statistic=min) -> dict:
    """One row: ``ewm_mean`` and pandas on the same pandas object (scanlab gives one back)."""
    shape = (shape[0] // 16,) + shape[1:] if quick else shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).cumsum(axis=0)
    x[rng.random(shape) < missing] = np.nan
    data = pd.Series(x) if len(shape) == 1 else pd.DataFrame(x)
    options = {"span": 20}
    if label.endswith("with times"):
        milliseconds = np.cumsum(rng.integers(0, 2000, shape[0])).astype("m8[ms]")
        options = {
            "halflife": "20s",
            "times": pd.DatetimeIndex(np.datetime64("2026-12-07") + milliseconds),
        }
    times = best_times(
        {
            "scanlab": partial(ewm_mean, data, **options),
            "pandas": lambda: data.ewm(**options).mean(),
        },
        repeats=3,
        statistic=statistic,
    )
    return {
        "pandas object": label,
        "shape": "x".join(map(str, shape)),
        "missing": missing,
        "scanlab ms": 1e3 * times["scanlab"],
        "pandas ms": 1e3 * times["pandas"],
        "x pandas": times["pandas"] / times["scanlab"],
    }


@njit(cache=True)
def gae_numba_loop(rewards, values, dones, last_value, gamma, lam, advantages, returns):
    """The PPO loop, compiled: one step at a time, the environments of a step together."""
    next_value = last_value.copy()
    advantage = np.zeros_like(last_value)
    for t in range(rewards.shape[0] - 1, -1, -1):
        for e in range(rewards.shape[1]):
            continuing = 1.0 - dones[t, e]
            delta = rewards[t, e] + gamma * continuing * next_value[e] - values[t, e]
            advantage[e] = delta + gamma * lam * continuing * advantage[e]
            advantages[t, e] = advantage[e]
            returns[t, e] = advantage[e] + values[t, e]
            next_value[e] = values[t, e]


def gae_numba(rewards, values, dones, last_value, gamma, lam):
    """The compiled loop into outputs NumPy allocates, as scanlab's are (Numba's own allocator
    takes no huge pages: its outputs alone cost the loop 3x on this machine)."""
    advantages, returns = np.empty_like(rewards), np.empty_like(rewards)
    gae_numba_loop(rewards, values, dones, last_value, gamma, lam, advantages, returns)
    return advantages, returns


@njit(cache=True)
def returns_numba_loop(rewards, dones, gamma, out):
    """Discounted returns, compiled: one step at a time."""
    following = np.zeros(rewards.shape[1], rewards.dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):
        for e in range(rewards.shape[1]):
            following[e] = rewards[t, e] + gamma * (1.0 - dones[t, e]) * following[e]
            out[t, e] = following[e]


def returns_numba(rewards, dones, gamma):
    """The compiled loop into an output NumPy allocates."""
    out = np.empty_like(rewards)
    returns_numba_loop(rewards, dones, gamma, out)
    return out


def gae_numpy_loop(rewards, values, dones, last_value, gamma, lam):
    """The per-step NumPy loop of PPO implementations."""
    advantages = np.empty_like(rewards)
    advantage = np.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(len(rewards))):
        continuing = 1.0 - dones[t]
        delta = rewards[t] + gamma * continuing * next_value - values[t]
        advantage = delta + gamma * lam * continuing * advantage
        advantages[t] = advantage
        next_value = values[t]
    return advantages, advantages + values


def returns_numpy_loop(rewards, dones, gamma):
    """Discounted returns, one NumPy step at a time."""
    out = np.empty_like(rewards)
    following = np.zeros(rewards.shape[1], rewards.dtype)
    for t in reversed(range(len(rewards))):
        following = rewards[t] + gamma * (1.0 - dones[t]) * following
        out[t] = following
    return out


def measure_rl(
    function: str, length: int, environments: int, dtype, quick: bool, statistic=min
) -> dict:
    """One table row: scanlab and the loops on one rollout."""
    length = length // 16 if quick else length
    rng = np.random.default_rng(0)
    shape = (length, environments)
    rewards = rng.standard_normal(shape).astype(dtype)
    values = rng.standard_normal(shape).astype(dtype)
    dones = (rng.random(shape) < 1 / 200).astype(dtype)
    last_value = rng.standard_normal(environments).astype(dtype)
    gamma, lam = dtype(GAMMA), dtype(LAM)
    if function == "gae":
        functions = {
            "scanlab": partial(gae, rewards, values, dones, last_value, gamma=GAMMA, lam=LAM),
            "numba": partial(gae_numba, rewards, values, dones, last_value, gamma, lam),
            "numpy": partial(gae_numpy_loop, rewards, values, dones, last_value, gamma, lam),
        }
    else:
        functions = {
            "scanlab": partial(discounted_returns, rewards, GAMMA, dones=dones),
            "numba": partial(returns_numba, rewards, dones, gamma),
            "numpy": partial(returns_numpy_loop, rewards, dones, gamma),
        }
    if length > 10**5:
        del functions["numpy"]
    times = best_times(functions, repeats=3, statistic=statistic)
    numpy_ratio = times["numpy"] / times["scanlab"] if "numpy" in times else None
    return {
        "function": function,
        "T x envs": f"{length}x{environments}",
        "dtype": np.dtype(dtype).name,
        "scanlab ms": 1e3 * times["scanlab"],
        "Numba loop ms": 1e3 * times["numba"],
        "x Numba loop": times["numba"] / times["scanlab"],
        "x NumPy loop": "-" if numpy_ratio is None else f"{numpy_ratio:.0f}",
    }


#: (label, shape) of the GPU table, float32: the filters of ``FILTERS``, then ``ewm_mean``
#: (span 20) and ``gae`` (as in ``RL_CASES``).
GPU_CASES = tuple((label, shape) for label, _, _ in FILTERS for shape in FILTER_SHAPES) + (
    ("ewm_mean", (10**7,)),
    ("ewm_mean", (10**5, 100)),
    ("gae", (10**6, 16)),
)
GPU_COLUMNS = (
    ("front end", "{}"),
    ("shape", "{}"),
    ("scanlab GPU ms", "{:.3f}"),
    ("CPU library", "{}"),
    ("CPU ms", "{:.2f}"),
    ("x CPU", "{:.1f}"),
    ("CuPy ms", "{}"),
)


def measure_gpu(label: str, shape: tuple, quick: bool) -> dict:
    """One row of the GPU table: scanlab on GPU arrays, the CPU library on the same values and,
    for the filters, CuPy's."""
    from numba import cuda

    shape = tuple(max(2, size // 2**16) for size in shape) if quick else shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    on_gpu = cuda.to_device(x)
    cupy_call = None
    if label == "ewm_mean":
        x = x.cumsum(axis=0)
        on_gpu = cuda.to_device(x)
        ours = partial(ewm_mean, on_gpu, span=20)
        data = pd.Series(x) if len(shape) == 1 else pd.DataFrame(x)
        library, theirs = "pandas", lambda: data.ewm(span=20).mean()
    elif label == "gae":
        values = rng.standard_normal(shape).astype(np.float32)
        dones = (rng.random(shape) < 1 / 200).astype(np.float32)
        last = rng.standard_normal(shape[1]).astype(np.float32)
        arguments = [cuda.to_device(value) for value in (x, values, dones, last)]
        ours = partial(gae, *arguments, gamma=GAMMA, lam=LAM)
        gamma, lam = np.float32(GAMMA), np.float32(LAM)
        library, theirs = "Numba loop", partial(gae_numba, x, values, dones, last, gamma, lam)
    else:
        function, coefficients = next(
            (function, coefficients) for name, function, coefficients in FILTERS if name == label
        )
        ours = partial(getattr(signal, function), *coefficients, on_gpu)
        library = "scipy"
        theirs = partial(getattr(scipy.signal, function), *coefficients, x)
        cupy_call = cupy_filter(function, coefficients, x)
    cupy_ms = "-" if cupy_call is None else f"{1e3 * gpu_best_time(cupy_call, 3):.3f}"
    ours_seconds = gpu_best_time(ours, 3)
    theirs_seconds = best_times({"": theirs}, repeats=3)[""]
    return {
        "front end": label,
        "shape": "x".join(map(str, shape)),
        "scanlab GPU ms": 1e3 * ours_seconds,
        "CPU library": library,
        "CPU ms": 1e3 * theirs_seconds,
        "x CPU": theirs_seconds / ours_seconds,
        "CuPy ms": cupy_ms,
    }


def cupy_filter(function: str, coefficients: tuple, x: np.ndarray):
    """CuPy's ``cupyx.scipy.signal`` filter on ``x`` copied to the GPU, or None without CuPy
    (or under the simulator)."""
    import numba

    if numba.config.ENABLE_CUDASIM:
        return None
    try:
        import cupy
        import cupyx.scipy.signal
    except ImportError:
        return None
    on_gpu = cupy.asarray(x)
    coefficients = tuple(cupy.asarray(value, dtype=x.dtype) for value in coefficients)
    return partial(getattr(cupyx.scipy.signal, function), *coefficients, on_gpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16x shorter (does not write)")
    parser.add_argument("--busy", action="store_true", help="next to a process spinning on a core")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--seconds", type=float, help="with --device cuda: start no row after this many seconds"
    )
    parser.add_argument(
        "--only", choices=("filter", "stream", "calls", "ewm", "rl"), help="one table (CPU)"
    )
    arguments = parser.parse_args()
    quick = arguments.quick
    if arguments.device == "cuda":
        rows = measure_rows(
            GPU_CASES, partial(measure_gpu, quick=quick), lambda *case: case[0],
            seconds=arguments.seconds,
        )  # fmt: skip
        record_results(
            RESULTS,
            "front-ends-cuda-table",
            f"{gpu_description()}; CPU libraries on {machine_description()}",
            format_table(rows, GPU_COLUMNS, markdown=True),
            write=not quick,
        )
        return
    filter_cases = [
        (*case, shape, axis)
        for case in FILTERS + HOST_FILTERS
        for shape, axis in [(shape, -1) for shape in FILTER_SHAPES]
        + [(shape, 0) for shape in TIME_FIRST_SHAPES]
    ]
    stream_cases = [(*case, piece) for case in FILTERS[:3] for piece in STREAM_PIECES]
    tables = (
        ("filter", filter_cases, measure_filter, FILTER_COLUMNS),
        ("stream", stream_cases, measure_stream, STREAM_COLUMNS),
        ("calls", CALL_CASES, measure_call, CALL_COLUMNS),
        ("ewm", EWM_CASES, measure_ewm, EWM_COLUMNS),
        ("rl", RL_CASES, measure_rl, RL_COLUMNS),
    )
    statistic, suffix = (np.median, "-busy") if arguments.busy else (min, "")
    with busy_core() if arguments.busy else contextlib.nullcontext():
        for name, cases, measure_case, columns in tables:
            if arguments.only not in (None, name):
                continue
            rows = measure_rows(
                cases,
                partial(measure_case, quick=quick, statistic=statistic),
                lambda *case: str(case[0]),
            )
            record_results(
                RESULTS,
                f"{name}{suffix}-table",
                machine_description() + (", one core kept busy" if arguments.busy else ""),
                format_table(rows, columns, markdown=True),
                write=not quick,
            )


if __name__ == "__main__":
    main()
