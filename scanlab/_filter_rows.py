"""The CPU's IIR filters over rows of samples (the drivers of ``scanlab.signal``'s ``lfilter``
and ``sosfilt`` on the host): the initial conditions as rows, and a filter's kernel
(:mod:`scanlab.cpu.iir`) run over rows in lockstep, or over one long series in parallel over
time, whichever ``auto`` measured faster on this machine (:func:`filtered_rows`)."""

import contextlib
import math
from functools import partial

import numba
import numpy as np

from scanlab._arrays import as_time_last
from scanlab.cpu import auto as cpu_auto
from scanlab.cpu import iir as cpu_iir


def conditions_by_row(zi, state_shape: tuple, x, axis: int, dtype) -> np.ndarray:
    """Initial conditions as a new C-contiguous ``(D, K)`` array of rows (zeros for None)."""
    rows = math.prod(x.shape[:axis] + x.shape[axis + 1 :])
    order = state_shape[axis]
    if zi is None:
        return np.zeros((rows, order), dtype)
    full = np.moveaxis(np.broadcast_to(zi, state_shape), axis, -1)
    return np.array(full, dtype, order="C").reshape(rows, order)  # a copy: the kernel writes


def from_rows(state: np.ndarray, shape: tuple, axis: int, order: int) -> np.ndarray:
    """``(D, K)`` rows of conditions back in the layout of ``zi``: ``shape`` with ``axis`` of
    length ``order``."""
    rest = shape[:axis] + shape[axis + 1 :]
    return np.moveaxis(state.reshape(*rest, order), -1, axis)


def filtered_rows(x, axis: int, dtype, run, state, task: str | None) -> np.ndarray:
    """The filter ``run(rows, state, out)`` (``(D, T)`` rows, time contiguous; ``state``
    ``(D, n)``, left holding the final state) applied to ``x`` as such rows (no copy when it
    lies so, as ``axis=-1`` of a C array does), and the result in ``x``'s shape. Fewer series
    than a thread walks at once are filtered in parallel over time (:func:`over_time`) where
    that was measured faster for ``task`` on this machine (``None``: ``run`` is parallel over
    time itself)."""
    rest = x.shape[:axis] + x.shape[axis + 1 :]
    length = x.shape[axis]
    rows = as_time_last(x, x.ndim, axis, rest, dtype)
    out = np.empty((math.prod(rest), length), dtype)
    if not out.size:
        return np.moveaxis(out.reshape(*rest, length), -1, axis)
    choice = contextlib.nullcontext("sequential")
    if task is not None and len(rows) < cpu_iir.ROW_CHAINS:
        threads = numba.get_num_threads()
        measure = partial(filter_speeds, run, state.shape[1])
        name = f"{task} states={state.shape[1]}"
        choice = cpu_auto.measured_choice(name, length, 1, dtype, threads, measure)
    with choice as method:
        if method == "scan":
            for row in range(len(rows)):
                over_time(run, rows[row], state[row], out[row])
        else:
            run(rows, state, out)
    return np.moveaxis(out.reshape(*rest, length), -1, axis)


def over_time(run, series, state, out) -> None:
    """Filter one ``series`` from ``state`` (left holding the final state) into ``out``, in
    parallel over time.

    The series is cut into chunks that the filter ``run`` walks together from zero states.
    Then, chunk after chunk, the filter's response to the chunk's true starting state, free of
    input, is added to the chunk until it has decayed far below rounding (for a stable filter a
    few times its time constant, a small part of the chunk), and the starting state of the next
    chunk is this chunk's final state from zero plus, if the free response never decayed
    (slow or unstable filters), its final state. The result is the sequential filter's to
    rounding; no power of the state's transition matrix is formed (ill-conditioned for the
    direct form of ``lfilter``).
    """
    length, size = len(series), len(state)
    chunks = numba.get_num_threads() * cpu_iir.ROW_CHAINS
    chunk = length // chunks
    if chunk < 2 or not size:
        run(series.reshape(1, -1), state.reshape(1, -1), out.reshape(1, -1))
        return
    whole = chunks * chunk
    heads, head_out = series[:whole].reshape(chunks, chunk), out[:whole].reshape(chunks, chunk)
    finals = np.zeros((chunks, size), out.dtype)
    run(heads, finals, head_out)
    # Far below rounding of the states the chunk holds (its final state from zero, its start):
    # a cascade's state may grow for a while before it decays. Of the finite ones: an infinite
    # start never decays (nor does NaN), as in the loop.
    eps = np.finfo(out.dtype).eps
    carried = state.copy()
    for k in range(chunks):
        magnitudes = np.abs(np.concatenate([finals[k], carried]))
        scale = max(magnitudes[np.isfinite(magnitudes)].max(initial=0), 1e-300)
        remaining = add_free_response(run, carried, head_out[k], eps * 1e-6 * scale)
        carried = finals[k] + remaining
    tail_state = carried.reshape(1, size)
    run(series[whole:].reshape(1, -1), tail_state, out[whole:].reshape(1, -1))
    state[:] = tail_state[0]


def add_free_response(run, start, out, tolerance) -> np.ndarray:
    """Add to ``out`` (one row) the filter's response to the state ``start``, free of input,
    in stretches of growing length until the state has decayed below ``tolerance`` (zero is
    returned) or the row ends (the state then is returned). NaN never decays."""
    state = start.reshape(1, -1).copy()
    offset, stretch, length = 0, 256, len(out)
    while offset < length and not np.abs(state).max() <= tolerance:
        stretch = min(stretch, length - offset)
        response = np.empty((1, stretch), out.dtype)
        run(np.zeros((1, stretch), out.dtype), state, response)
        out[offset : offset + stretch] += response[0]
        offset, stretch = offset + stretch, 2 * stretch
    return state[0] if offset == length else np.zeros_like(state[0])


def filter_speeds(run, size: int, dtype, channels: int, threads: int, elements: int) -> dict:
    """Nanoseconds per sample of the filter ``run`` (state size ``size``) on one series of
    about ``elements`` samples of noise, walked sequentially and in parallel over time (the
    measurement ``filtered_rows`` chooses by, kept in ``scanlab.wisdom``)."""
    length = cpu_auto.calibration_length(1, elements)
    series = np.random.default_rng(0).standard_normal((1, length)).astype(dtype)
    out = np.empty_like(series)
    runs = {
        "sequential": lambda: run(series, np.zeros((1, size), dtype), out),
        "scan": lambda: over_time(run, series[0], np.zeros(size, dtype), out[0]),
    }
    return cpu_auto.median_speeds(runs, length, threads)
