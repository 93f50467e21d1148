"""IIR filters on the GPU as matrix linear recurrences: ``lfilter``'s transposed direct form II
and ``sosfilt``'s cascade of second-order sections, solved in parallel over time and channels
by :mod:`scanlab.cuda.linear_matrix`.

Twin of :mod:`scanlab.cpu.iir`, with time first: the signal and the output are C-contiguous
``(T, D)`` device arrays, the filter's delays ``(D, K)``. The delay line's step
``y[t] = b0 x[t] + z0[t-1]``, ``z[t] = shift(z[t-1]) + b[1:] x[t] - a[1:] y[t]`` is, with
``y[t]`` substituted, the state-space recurrence ``z[t] = A z[t-1] + (b[1:] - a[1:] b0) x[t]``
with the companion matrix ``A`` (first column ``-a[1:]``, ones above the diagonal): equal to
scipy's in exact arithmetic, to rounding in floating point. An FIR filter (``a = [1]``) is no
recurrence: as scipy's, a convolution, each output a sum over the samples before it
(:func:`fir_on_device`). The launchers queue their kernels on the default stream and return
without waiting.
"""

import numpy as np
from numba import cuda

from scanlab.cuda import linear, linear_matrix
from scanlab.cuda.arrays import launch_over
from scanlab.cuda.kernel_layout import DTYPES


@cuda.jit
def state_inputs_kernel(x, gains, inputs):
    """``inputs[t, d, i] = gains[i] x[t, d]``: the recurrence's input for each delay."""
    length, channels, order = inputs.shape
    first, start = cuda.grid(2)
    across, down = cuda.gridsize(2)
    for t in range(start, length, down):
        for channel in range(first, channels, across):
            sample = x[t, channel]
            for i in range(order):
                inputs[t, channel, i] = gains[i] * sample


@cuda.jit
def filter_output_kernel(x, b0, delays, initial, out):
    """``out[t] = z0[t-1] + b0 x[t]`` (``z0[-1]`` from ``initial``), or ``b0 x[t]`` for a
    filter without delays."""
    length, channels = out.shape
    order = initial.shape[1]
    first, start = cuda.grid(2)
    across, down = cuda.gridsize(2)
    for t in range(start, length, down):
        for channel in range(first, channels, across):
            filtered = b0 * x[t, channel]
            if order:
                previous = delays[t - 1, channel, 0] if t else initial[channel, 0]
                filtered = previous + filtered
            out[t, channel] = filtered


@cuda.jit
def fir_output_kernel(x, b, initial, out):
    """``out[t] = sum(b[k] x[t - k] for k <= t) + initial[:, t]`` (the last term where
    ``t < K``): twin of ``scanlab.cpu.iir.fir_blocks``'s output."""
    length, channels = out.shape
    order = initial.shape[1]
    first, start = cuda.grid(2)
    across, down = cuda.gridsize(2)
    for t in range(start, length, down):
        for channel in range(first, channels, across):
            filtered = b[0] * x[t, channel]
            for k in range(1, min(order, t) + 1):
                filtered += b[k] * x[t - k, channel]
            if t < order:
                filtered += initial[channel, t]
            out[t, channel] = filtered


@cuda.jit
def fir_delays_kernel(x, b, initial, final):
    """``final[:, i] = sum(b[j] x[T + i - j] for j > i, T + i - j >= 0) + initial[:, T + i]``
    (the last term where ``T + i < K``): twin of ``scanlab.cpu.iir.final_delays``."""
    length = x.shape[0]
    channels, order = final.shape
    first, start = cuda.grid(2)
    across, down = cuda.gridsize(2)
    for i in range(start, order, down):
        for channel in range(first, channels, across):
            total = final.dtype.type(0)
            for j in range(i + 1, order + 1):
                if length + i - j >= 0:
                    total += b[j] * x[length + i - j, channel]
            if length + i < order:
                total += initial[channel, length + i]
            final[channel, i] = total


def fir_on_device(b, x, state):
    """Filter each column of ``x`` by the FIR filter ``b`` (a host array of length ``K + 1``)
    from the delays ``state`` (``(D, K)``), as scipy does (a convolution: a NaN or Inf sample
    reaches ``K + 1`` outputs, no more): the output (a new ``(T, D)`` device array) and the
    final delays (a new ``(D, K)`` one, or ``state`` for an empty ``x``)."""
    length, channels = x.shape
    order = len(b) - 1
    out = cuda.device_array_like(x)
    if not x.size:
        return out, state
    taps = cuda.to_device(np.asarray(b, x.dtype))
    launch_over(fir_output_kernel, length, channels)(x, taps, state, out)
    final = cuda.device_array(state.shape, x.dtype)
    if final.size:
        launch_over(fir_delays_kernel, order, channels)(x, taps, state, final)
    return out, final


def lfilter_on_device(b, a, x, state):
    """Filter each column of ``x`` by ``b``, ``a`` (host arrays, normalised, ``a[0] = 1``,
    both of length ``K + 1``) from the delays ``state`` (``(D, K)``): the output (a new
    ``(T, D)`` device array) and the final delays (a new ``(D, K)`` one, or ``state`` for an
    empty ``x``)."""
    length, channels = x.shape
    order = len(a) - 1
    dtype = x.dtype
    out = cuda.device_array_like(x)
    delays = state.reshape(1, *state.shape)
    if order and x.size:
        transition = np.zeros((1, 1, order, order), dtype)
        transition[0, 0, :, 0] = -a[1:]
        transition[0, 0, np.arange(order - 1), np.arange(1, order)] = 1
        gains = cuda.to_device(np.asarray(b[1:] - a[1:] * b[0], dtype))
        inputs = cuda.device_array((length, channels, order), dtype)
        launch_over(state_inputs_kernel, length, channels)(x, gains, inputs)
        delays = cuda.device_array((length, channels, order), dtype)
        if order == 1:  # the elementwise kernels, as linear_recurrence_matrix runs n = 1
            linear.solve_on_device(
                cuda.to_device(transition.reshape(1, 1)),
                inputs.reshape(length, channels),
                state.reshape(channels),
                delays.reshape(length, channels),
                False,
                "auto",
            )
        else:
            matrices = cuda.to_device(transition)
            linear_matrix.solve_on_device(matrices, inputs, state, delays, False, "auto")
    if not x.size:
        return out, state
    launch_over(filter_output_kernel, length, channels)(x, dtype.type(b[0]), delays, state, out)
    return out, delays[length - 1] if order else state


def sosfilt_on_device(sos, x, state):
    """Filter each column of ``x`` through the second-order sections ``sos`` (a host array,
    ``(S, 6)``) in cascade, from the delays ``state`` (``(S, D, 2)``): the output (a new
    ``(T, D)`` device array) and the final delays (a new ``(S, D, 2)`` one)."""
    finals = cuda.device_array(state.shape, x.dtype)
    for section, coefficients in enumerate(sos):
        x, final = lfilter_on_device(coefficients[:3], coefficients[3:], x, state[section])
        if final.size:
            finals[section].copy_to_device(final)
    return x, finals


def kernel_signatures():
    """List every kernel of this module with each signature its launchers compile.

    Returns
    -------
    list of (numba.cuda.dispatcher.CUDADispatcher, str)
        One entry per kernel and dtype of :data:`scanlab.cuda.kernel_layout.DTYPES`; compile one
        to PTX without a GPU with ``cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))``.
    """
    signatures = []
    for dtype in DTYPES:
        matrix, delays = f"{dtype}[:, ::1]", f"{dtype}[:, :, ::1]"
        signatures += [
            (state_inputs_kernel, f"void({matrix}, {dtype}[::1], {delays})"),
            (filter_output_kernel, f"void({matrix}, {dtype}, {delays}, {matrix}, {matrix})"),
            (fir_output_kernel, f"void({matrix}, {dtype}[::1], {matrix}, {matrix})"),
            (fir_delays_kernel, f"void({matrix}, {dtype}[::1], {matrix}, {matrix})"),
        ]
    return signatures
