"""What ``scanlab.signal``'s filters stand on: their operands' checks; on the host, the initial
conditions as rows and a filter's kernel (:mod:`scanlab.cpu.iir`) run over rows in lockstep (or
over a time-first signal's steps as they lie), fewer rows one at a time with their delays in
registers (:mod:`scanlab.cpu.filter_registers`, a cascade's sections in vector lanes:
:mod:`scanlab.cpu.filter_wavefront`; time first or last as they lie), or one long
series in parallel over time, whichever ``auto`` measured faster on this machine
(:func:`filtered_rows`), a first-order filter of few long series as ``linear_recurrence``
(:func:`first_order`); on the GPU, the layout around
:mod:`scanlab.cuda.iir`'s filters (:func:`on_device`); the forward-backward passes of
zero-phase filtering (:func:`both_ways`)."""

import math
import operator
from functools import partial

import numba
import numpy as np

from scanlab import config
from scanlab._arrays import (
    as_time_last,
    moved_axis,
    normalize_axis,
    numeric_array,
    read_only,
    stand_in,
)
from scanlab._devices import cuda_module, on_gpu
from scanlab.cpu import auto as cpu_auto
from scanlab.cpu import filter_registers, filter_wavefront
from scanlab.cpu import iir as cpu_iir
from scanlab.cpu.threads import share_out, threads_for
from scanlab.linear import linear_recurrence


def run_iir(b, a, rows, state, out):
    """The IIR filter ``b``, ``a`` over ``rows`` (see :func:`filtered_rows`): each thread
    walks ``ROW_CHAINS`` rows in lockstep, or, for fewer rows (:func:`in_registers`), one row
    at a time with its delays in registers."""
    order = state.shape[1]
    if in_registers(len(rows), out.dtype, order, cascade=False):
        size = filter_registers.register_count(order) + 1
        b, a = register_values(b, size, out.dtype), register_values(a, size, out.dtype)
        arguments = (b, a, order, *lying_flat(rows, out), state)
        share_out(filter_registers.lfilter_registers, len(rows), arguments, rows.size)
        return
    with threads_for(rows.size):
        cpu_iir.lfilter_rows(read_only(b), read_only(a), read_only(rows), state, out)


#: Sections from which a cascade over few rows advances its sections together, one a vector
#: lane (:func:`scanlab.cpu.filter_wavefront.sosfilt_wavefront`), rather than one after the
#: other, by dtype kind (Zen 5, ns a step: float 1 and 2 sections 2.7-2.9 in turn, 3 and 4 4.2
#: in turn, 3.0-3.1 together up to 8; complex 2 sections 8.3 in turn, 5.1 together).
WAVEFRONT_SECTIONS = {"f": 3, "c": 2}


def run_sections(sos, rows, state, out):
    """The second-order sections ``sos`` (``(S, 6)``) in cascade over ``rows``, from the
    delays ``state`` (``(D, 2 S)``): as :func:`run_iir` walks them."""
    sections = len(sos)
    if in_registers(len(rows), out.dtype, 2 * sections, cascade=True):
        if sections >= WAVEFRONT_SECTIONS[out.dtype.kind]:
            size, kernel = filter_wavefront.WAVE_LANES, filter_wavefront.sosfilt_wavefront
            padded = zero_padded(sos.reshape(-1), 6 * size * -(-sections // size), out.dtype)
            arguments = (read_only(padded), sections, *lying_flat(rows, out), state)
        else:
            size = 6 * filter_registers.register_count(sections)
            coefficients = register_values(sos.reshape(-1), size, out.dtype)
            kernel = filter_registers.sosfilt_registers
            arguments = (coefficients, sections, *lying_flat(rows, out), state)
        share_out(kernel, len(rows), arguments, rows.size)
        return
    states = state.reshape(len(state), sections, 2)
    with threads_for(rows.size):
        cpu_iir.sosfilt_rows(read_only(sos), read_only(rows), states, out)


def in_registers(rows: int, dtype, delays: int, cascade: bool) -> bool:
    """Whether a filter of ``delays`` delays over ``rows`` rows runs with its delays in
    registers (:mod:`scanlab.cpu.filter_registers`): fewer rows than the lockstep kernels walk
    together, a float or complex dtype, a ``cascade`` of sections or a direct form of 1 to
    ``MAX_DELAYS`` delays. Its rows may then lie as a C or a Fortran array does
    (:func:`lying_flat`)."""
    largest = math.inf if cascade else filter_registers.MAX_DELAYS
    return rows < cpu_iir.ROW_CHAINS and 1 <= delays <= largest and np.dtype(dtype).kind in "fc"


def lying_flat(rows, out) -> tuple:
    """``(x, out, layout)`` for the register kernels: ``rows`` and ``out`` (``(D, T)``, each
    C- or Fortran-contiguous) flat as they lie, and the layout of both in elements (``(D, T,
    rows' row step, rows' time step, out's row step, out's time step)``)."""
    for array in (rows, out):
        if not (array.flags.c_contiguous or array.flags.f_contiguous):
            raise ValueError("the register kernels take rows that lie C- or Fortran-contiguous")
    (row, time), (out_row, out_time) = rows.strides, out.strides
    size = rows.itemsize
    layout = (*rows.shape, row // size, time // size, out_row // size, out_time // size)
    return read_only(rows).ravel(order="K"), out.ravel(order="K"), layout


def register_values(values, size: int, dtype) -> tuple:
    """The 1-D ``values`` followed by zeros up to ``size``, a tuple of ``dtype``'s numbers for
    the register kernels: Python floats or complex numbers for float64 and complex128 (the
    same type to Numba, at a fifth of the cost of NumPy's scalars; ``values`` of that dtype),
    NumPy's for the others."""
    if values.dtype == dtype and values.dtype.char in "dD":
        zero = 0.0 if values.dtype.char == "d" else 0j
        return (*values.tolist(), *(zero,) * (size - len(values)))
    return tuple(zero_padded(values, size, dtype))


def zero_padded(values, size: int, dtype) -> np.ndarray:
    """The 1-D ``values`` followed by zeros up to ``size``, a new array of ``dtype``
    (``np.pad`` costs ten times as much, on every call of a filter)."""
    padded = np.zeros(size, dtype)
    padded[: len(values)] = values
    return padded


def run_sections_steps(sos, steps, state, out):
    """The sections ``sos`` over a time-major signal ``steps`` (``(T, D)``)."""
    with threads_for(steps.size):
        cpu_iir.sosfilt_steps(read_only(sos), steps, state, out, numba.get_num_threads())


def run_iir_steps(b, a, steps, state, out):
    """The IIR filter ``b``, ``a`` over a time-major signal ``steps`` (``(T, D)``)."""
    with threads_for(steps.size):
        cpu_iir.lfilter_steps(
            read_only(b), read_only(a), steps, state, out, numba.get_num_threads()
        )


def run_fir(b, a, rows, state, out):
    """The FIR filter ``b`` (``a = [1]``) over ``rows``, in parallel over rows and time."""
    final = np.empty_like(state)
    blocks = -(-rows.shape[1] // cpu_iir.FIR_STEPS)
    arguments = (read_only(b), read_only(rows), state, out, final)
    share_out(cpu_iir.fir_blocks, len(rows) * blocks, arguments, rows.size)
    state[:] = final


def run_fir_steps(b, a, steps, state, out):
    """The FIR filter ``b`` over a time-major signal ``steps`` (``(T, D)``), in parallel over
    time."""
    final = np.empty_like(state)
    arguments = (read_only(b), steps, state, out, final)
    share_out(cpu_iir.fir_steps, -(-len(steps) // cpu_iir.FIR_ROWS), arguments, steps.size)
    state[:] = final


def on_device(run, x, shape: tuple, axis: int, dtype, zi, zi_shape: tuple, zi_order: list):
    """The filter ``run(rows, state) -> (out, final)`` of ``scanlab.cuda.iir`` (``(T, D)`` rows;
    the delays in ``zi``'s layout with its axes in ``zi_order`` and the channels flattened)
    applied on the GPU to ``x`` (host or GPU) of ``shape``: ``y``, or ``(y, zf)`` with ``zi``;
    GPU arrays when ``x`` or ``zi`` is one, else NumPy arrays."""
    arrays = cuda_module("arrays")
    rows = arrays.time_first_rows(x, shape, axis, dtype)
    moved_shape = tuple(zi_shape[k] for k in zi_order)
    kernel_shape = (*moved_shape[: len(zi_shape) - len(shape)], rows.shape[1], moved_shape[-1])
    if zi is None:
        state = cuda_module("memory").zeros(kernel_shape, dtype)
    else:
        state = arrays.moved_axes(zi, zi_shape, zi_order, dtype).reshape(kernel_shape)
    out, final = run(rows, state)
    y = arrays.from_time_first_rows(out, shape, axis)
    zf = arrays.in_shape(final.reshape(moved_shape), zi_shape, zi_order)
    if not (on_gpu(x) or on_gpu(zi)):
        y, zf = y.copy_to_host(), zf.copy_to_host()
    return y if zi is None else (y, zf)


def scaled_finite(values, scale) -> bool:
    """``values *= scale``, in parallel where ``values`` is C-contiguous; whether ``values``
    is then free of NaN and Inf."""
    if not values.flags.c_contiguous:
        values *= scale
        return bool(np.isfinite(values).all())
    finite = np.empty(-(-values.size // cpu_iir.SCALE_BLOCK), np.bool_)
    arguments = (values.reshape(-1), values.dtype.type(scale), finite)
    share_out(cpu_iir.scale_blocks, len(finite), arguments, values.size)
    return bool(finite.all())


def conditions_by_row(zi, state_shape: tuple, x, axis: int, dtype) -> np.ndarray:
    """Initial conditions as a new C-contiguous ``(D, K)`` array of rows (zeros for None)."""
    rows = math.prod(x.shape[:axis] + x.shape[axis + 1 :])
    order = state_shape[axis]
    if zi is None:
        return np.zeros((rows, order), dtype)
    full = zi if zi.shape == state_shape else np.broadcast_to(zi, state_shape)
    full = moved_axis(full, axis, -1)
    return np.array(full, dtype, order="C").reshape(rows, order)  # a copy: the kernel writes


def section_conditions(zi, zi_shape: tuple, axis: int, dtype) -> np.ndarray:
    """``sosfilt``'s initial conditions (``zi_shape``: ``(S, ..., 2, ...)``, the delays at
    ``axis + 1``) as a new C-contiguous ``(D, S, 2)`` array of rows (zeros for None)."""
    sections, ndim = zi_shape[0], len(zi_shape)
    rows = math.prod(zi_shape) // (2 * sections)
    if zi is None:
        return np.zeros((rows, sections, 2), dtype)
    order = (*range(1, axis + 1), *range(axis + 2, ndim), 0, axis + 1)
    return np.array(zi.transpose(order), dtype, order="C").reshape(rows, sections, 2)


def from_section_rows(state: np.ndarray, shape: tuple, axis: int) -> np.ndarray:
    """``(D, S, 2)`` rows of conditions back in ``sosfilt``'s layout of ``zi`` for a signal of
    ``shape``: the mirror of :func:`section_conditions`."""
    rest = shape[:axis] + shape[axis + 1 :]
    last = len(rest)
    moved = state.reshape(*rest, *state.shape[1:])
    return moved.transpose(last, *range(axis), last + 1, *range(axis, last))


def from_rows(state: np.ndarray, shape: tuple, axis: int, order: int) -> np.ndarray:
    """``(D, K)`` rows of conditions back in the layout of ``zi``: ``shape`` with ``axis`` of
    length ``order``."""
    rest = shape[:axis] + shape[axis + 1 :]
    return moved_axis(state.reshape(*rest, order), -1, axis)


def filtered_rows(
    x, axis: int, dtype, run, state, task: str | None, result=None, run_steps=None
) -> np.ndarray:
    """The filter ``run(rows, state, out)`` (``(D, T)`` rows, time contiguous, or as
    :func:`laid_out_rows` lays them out; ``state`` ``(D, n)``, left holding the final state) applied
    to ``x`` as such rows (no copy when it lies so, as ``axis=-1`` of a C array does), and the
    result in ``x``'s shape: ``result`` where given and laid out so (of ``x``'s shape and
    ``dtype``), else a new array. Fewer series than a thread walks at once are filtered in parallel
    over time (:func:`over_time`) where that was measured faster for ``task`` on this machine
    (``None``: ``run`` is parallel over time itself). A time-major ``x`` (``axis=0`` of a C array)
    of at least ``ROW_CHAINS`` channels is filtered as it lies by ``run_steps(steps, state, out)``
    where given (``(T, D)`` arrays): transposing it into rows (NumPy's copy) took twice as long as
    filtering them."""
    rest = x.shape[:axis] + x.shape[axis + 1 :]
    length = x.shape[axis]
    channels = math.prod(rest)
    if run_steps is not None and channels >= cpu_iir.ROW_CHAINS and length:
        steps = two_axis_view(x, axis, 0)
        if steps is not None:
            out = two_axis_view(result, axis, 0)
            out = np.empty((length, channels), dtype) if out is None else out
            run_steps(read_only(np.asarray(steps, dtype)), state, out)
            return moved_axis(out.reshape(length, *rest), 0, axis)
    if not length or not channels:
        return np.empty(x.shape, dtype) if result is None else result
    choice = cpu_auto.SEQUENTIAL
    if task is not None and few_long_series(channels, length):  # else no choice to make
        threads = numba.get_num_threads()
        measure = partial(filter_speeds, run, state.shape[1])
        name = f"{task} states={state.shape[1]}"
        choice = cpu_auto.measured_choice(name, length, 1, dtype, threads, measure)
    with choice as method:
        as_they_lie = method == "sequential" and task is not None
        cascade = task == "sosfilt"
        as_they_lie = as_they_lie and in_registers(channels, dtype, state.shape[1], cascade)
        rows, out, shaped = laid_out_rows(x, axis, dtype, result, as_they_lie)
        if method == "scan":
            for row in range(len(rows)):
                over_time(run, rows[row], state[row], out[row])
        else:
            run(rows, state, out)
    return shaped(out)


def laid_out_rows(x, axis: int, dtype, result, as_they_lie: bool) -> tuple:
    """``(rows, out, shaped)``: ``x`` as ``(D, T)`` rows of ``dtype``, ``out`` the rows the
    filter writes (``result``'s memory where given and laid out so), ``shaped(out)`` the
    result in ``x``'s shape. Rows are C-contiguous, copied where ``x`` does not lie so, but
    where ``as_they_lie`` (a filter that reads Fortran-contiguous rows too, :func:`in_registers`)
    a time-major ``x`` of ``dtype`` is read as it lies, its steps' channels, and ``out`` lies
    alike: no transposing copy either way (NumPy's took longer than the filter)."""
    rest = x.shape[:axis] + x.shape[axis + 1 :]
    length = x.shape[axis]
    if as_they_lie and x.dtype == dtype and two_axis_view(x, axis, -1) is None:
        steps = two_axis_view(x, axis, 0)
        if steps is not None:
            out = two_axis_view(result, axis, 0)
            out = np.empty(steps.shape, dtype) if out is None else out
            return steps.T, out.T, lambda out: moved_axis(out.T.reshape(length, *rest), 0, axis)
    rows = as_time_last(x, x.ndim, axis, rest, dtype)
    out = two_axis_view(result, axis, -1)
    out = np.empty((math.prod(rest), length), dtype) if out is None else out
    return rows, out, lambda out: moved_axis(out.reshape(*rest, length), -1, axis)


def first_order(b0, a1, x, axis: int, zi, dtype, out=None):
    """``y[t] = b0 x[t] - a1 y[t-1]`` (from ``zi``: ``y[0] = b0 x[0] + zi``) as
    ``b0 * linear_recurrence(-a1, x, h0=-zi / (a1 b0))``, parallel over time for few long
    series; ``zf = -a1 y[T-1]``. The same values as the filter's delay line where ``x`` is
    finite (``0 * x[t]``, the delay's unused term, is then 0), to the scan's rounding; None
    where NaN or Inf turned up (``x`` or ``zi`` has them, a value overflowed, or ``zi`` cannot
    be a start state because ``a1 b0`` is 0 or tiny): the caller then runs the delay line
    itself. ``out``: where to write ``y`` (or None)."""
    start = None
    if zi is not None:
        zi = np.broadcast_to(np.asarray(zi), first_shape(x.shape, axis))
        with np.errstate(all="ignore"):
            start = np.squeeze(-zi / (np.asarray(a1, dtype) * b0), axis).astype(dtype)
        if not np.isfinite(start).all():
            return None
    # The recurrence of x, scaled after in the pass that checks it: one pass fewer than
    # scaling x first.
    y = linear_recurrence(np.asarray(-a1, dtype), x, start, axis=axis, out=out)
    if not scaled_finite(y, b0):
        return None
    if zi is None:
        return y
    if not y.shape[axis]:
        return y, np.array(zi, dtype)
    last = [slice(None)] * x.ndim
    last[axis] = slice(-1, None)
    return y, -a1 * y[tuple(last)]


def few_long_series(series: int, length: int) -> bool:
    """Whether ``series`` of ``length`` samples may be filtered in parallel over time: fewer
    series than the lockstep kernels walk together, long enough for ``auto`` to consider the
    scan (``config.cpu.auto_scan_min_length``). Then ``auto`` chooses (:func:`filtered_rows`),
    and a first-order filter is :func:`first_order`; shorter ones the filter's own loop runs
    faster (its delays in registers: no ``linear_recurrence`` call around it)."""
    return series < cpu_iir.ROW_CHAINS and length >= config.cpu.auto_scan_min_length


def first_shape(shape: tuple, axis: int) -> tuple:
    """``shape`` with ``axis`` of length 1."""
    return shape[:axis] + (1,) + shape[axis + 1 :]


def two_axis_view(array, axis: int, time: int):
    """``array`` (or None) seen as a C-contiguous 2-D array without a copy, time ``axis`` moved
    to ``time`` (0: ``(T, D)``, -1: ``(D, T)``) and the other axes flattened; None where it
    does not lie so."""
    if array is None:
        return None
    moved = moved_axis(array, axis, time)
    if not moved.flags.c_contiguous:
        return None
    length = moved.shape[time]
    return moved.reshape((length, -1) if time == 0 else (-1, length)) if moved.size else None


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
    carried = state.copy()
    for k in range(chunks):
        carried = finals[k] + add_free_response(run, carried, head_out[k])
    tail_state = carried.reshape(1, size)
    run(series[whole:].reshape(1, -1), tail_state, out[whole:].reshape(1, -1))
    state[:] = tail_state[0]


def add_free_response(run, start, out) -> np.ndarray:
    """Add to ``out`` (one row of the filter's output from a zero state) the filter's response
    to the state ``start``, free of input, in stretches of growing length until that response's
    state is far below rounding of what it is added to (zero is returned) or the row ends (the
    state then is returned).

    Far below: under ``1e-6`` of an ulp of the larger of ``start`` and the output it would be
    added to next, so that a response that decays is dropped once it is negligible there (a
    cascade's state may grow for a while before it decays: hence the margin), and one that
    grows as fast as the output (an unstable filter) never is. NaN and Inf never decay, as in
    the loop."""
    state = start.reshape(1, -1).copy()
    margin = np.finfo(out.dtype).eps * 1e-6
    start_scale = finite_max(start)
    offset, stretch, length = 0, 256, len(out)
    while offset < length:
        stretch = min(stretch, length - offset)
        scale = max(start_scale, finite_max(out[offset : offset + stretch]), 1e-300)
        if np.abs(state).max() <= margin * scale:
            return np.zeros_like(state[0])
        response = np.empty((1, stretch), out.dtype)
        run(np.zeros((1, stretch), out.dtype), state, response)
        out[offset : offset + stretch] += response[0]
        offset, stretch = offset + stretch, 2 * stretch
    return state[0]


def finite_max(values: np.ndarray) -> float:
    """The largest finite magnitude among ``values`` (0 if none)."""
    magnitudes = np.abs(values)
    return float(magnitudes[np.isfinite(magnitudes)].max(initial=0))


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


def host_coefficients(name: str, value) -> np.ndarray:
    """Filter coefficients as a numeric NumPy array: the filter is built from them on the host,
    so a GPU array is a TypeError."""
    if on_gpu(value):
        raise TypeError(
            f"{name} is a GPU array, but filter coefficients are read on the host: pass a NumPy "
            "array (the signal x and zi may stay on the GPU)"
        )
    return numeric_array(name, value)


def filter_coefficients(name: str, value) -> np.ndarray:
    """``b`` or ``a`` as a non-empty 1-D numeric array, on the host (``a[0]`` not 0)."""
    array = host_coefficients(name, value)
    array = array.reshape(1) if not array.ndim else array
    if array.ndim != 1 or not array.size:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if name == "a" and array[0] == 0:
        raise ValueError("a[0] must not be 0 (scipy: filter coefficient a[0] == 0 not supported)")
    return array


def signal_array(x) -> np.ndarray:
    """``x`` as a numeric array with a time axis (a GPU array as its :func:`stand_in`)."""
    x = numeric_array("x", x, stand_in)
    if not x.shape:
        raise ValueError("x must have a time axis; got a scalar")
    return x


def check_conditions(name: str, given: tuple, expected: tuple, shape: tuple, axis: int) -> None:
    """A ValueError unless ``given`` is ``expected`` or has 1 where ``expected`` does not (the
    time axis excepted): scipy's rule for ``zi``."""
    fits = (
        given == expected
        or len(given) == len(expected)
        and all(
            size == wanted or (size == 1 and k != axis)
            for k, (size, wanted) in enumerate(zip(given, expected, strict=True))
        )
    )
    if not fits:
        raise ValueError(
            f"With axis={axis}, an input with shape {shape} needs {name} of shape {expected}, "
            f"got {given}"
        )


def both_ways(run, x, axis: int, padtype, padlen, taps: int) -> np.ndarray:
    """scipy's forward-backward filtering of ``x`` along ``axis`` by ``run(values, first, out)
    -> (y, zf)``, a filter along the last axis (from the steady state of ``first``, the first
    sample; ``y`` written into ``out`` where given), padded as ``padtype`` and ``padlen`` say
    (``3 * taps`` samples by default)."""
    axis = normalize_axis(axis, x.ndim)
    if padtype not in ("even", "odd", "constant", None):
        raise ValueError(
            f"Unknown value {padtype!r} given to padtype. padtype must be 'even', 'odd', "
            "'constant', or None."
        )
    edge = 0 if padtype is None else 3 * taps if padlen is None else operator.index(padlen)
    if x.shape[axis] <= edge:
        raise ValueError(
            f"The length of the input vector x must be greater than padlen, which is {edge}."
        )
    # Time last from here on: the padded copy is then laid out as the filter reads it (time
    # contiguous), whatever x's axis. The backward pass reads y reversed, copied into that
    # copy's memory (ours, no longer needed), and writes over y: no fresh memory, whose first
    # touch (page faults) costs as much as the copy itself (10**7 samples: 46 -> 36 ms on Zen
    # 4; (10**5, 100) along axis 0: 82 -> 57 ms).
    x = moved_axis(x, axis, -1)
    last = x.ndim - 1
    ext = x if padtype is None or edge <= 0 else padded(x, last, padtype, edge)
    y, _ = run(ext, steps(ext, last, 0, 1))
    backward, out = np.flip(y, last), None
    if ext is not x and ext.dtype == y.dtype:
        np.copyto(ext, backward)
        backward, out = ext, y
    y, _ = run(backward, steps(y, last, -1, None).copy(), out)
    y = np.flip(y, last)
    return moved_axis(y if edge <= 0 else steps(y, last, edge, -edge), -1, axis)


def padded(x, axis: int, padtype: str, edge: int) -> np.ndarray:
    """``x`` extended by ``edge`` samples at both ends along ``axis``: mirrored about its end
    samples ("odd"), mirrored ("even") or repeated ("constant"), as scipy extends it; a new
    C-contiguous array (NumPy's concatenation keeps a transposed ``x``'s order)."""
    first, last = steps(x, axis, 0, 1), steps(x, axis, -1, None)
    if padtype == "constant":
        shape = list(x.shape)
        shape[axis] = edge
        before, after = np.broadcast_to(first, shape), np.broadcast_to(last, shape)
    else:
        before = steps(x, axis, edge, 0, -1)
        after = steps(x, axis, -2, -edge - 2, -1)
        if padtype == "odd":
            before, after = 2 * first - before, 2 * last - after
    shape = list(x.shape)
    shape[axis] += 2 * edge
    out = np.empty(shape, np.result_type(before, x, after))
    return np.concatenate((before, x, after), axis, out=out)


def steps(x, axis: int, start, stop, step: int = 1) -> np.ndarray:
    """``x[start:stop:step]`` along ``axis`` (a view)."""
    return x[(slice(None),) * axis + (slice(start, stop, step),)]


def host_signal(name: str, x) -> np.ndarray:
    """``x`` as a host array with a time axis for ``name``, which pads it on the host."""
    if on_gpu(x):
        raise TypeError(
            f"{name} pads x on the host: pass a NumPy array (device='cuda' runs the two passes "
            "on the GPU)"
        )
    return signal_array(x)


def section_array(sos) -> np.ndarray:
    """``sos`` as a checked ``(n_sections, 6)`` host array with ``a0 = 1`` (one section may
    be 1-D, as in scipy)."""
    sos = np.atleast_2d(host_coefficients("sos", sos))
    if sos.ndim != 2 or sos.shape[1] != 6 or not sos.shape[0]:
        raise ValueError(
            f"sos must have shape (n_sections, 6) with n_sections >= 1, got {sos.shape}"
        )
    if not (sos[:, 3] == 1).all():
        raise ValueError("sos[:, 3] should be all ones")
    return sos
