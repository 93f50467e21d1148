"""pandas' exponentially weighted mean on the GPU, as linear recurrences solved by
:mod:`scanlab.cuda.linear`, in float64 whatever the input's dtype (as pandas computes).

Twin of :mod:`scanlab.cpu.ewm`, with the same rules (NaN and infinities are missing
observations; ``ignore_na``; ``min_periods``) in another form. With ``V`` the weight of the old
mean, at an observation ``x[t]`` the mean is ``m[t] = (P m[t-1] + q x[t]) / (P + q)`` with
``P = decay[t] V[t-1]`` (``decay[t] = 1 - alpha``, or ``(1 - alpha) ** delta[t]`` with
pandas' ``times``) and ``q = 1`` (``adjust``: ``V`` is the sum of the weights,
``V[t] = decay[t] V[t-1] + 1``) or ``q = alpha`` (not ``adjust``: ``V`` restarts at 1 at each
observation and decays in between); at a missing step ``m[t] = m[t-1]``. Both are linear
recurrences: ``V`` and the count of observations first (in one solve, side by side), then the
mean, whose coefficients ``P / (P + q)`` lie in ``[0, 1)``: a weighted average that never
divides by a vanishing weight, however long a gap (the first observation has ``P = 0``).
"""

import math

from numba import cuda

from scanlab.cuda import linear
from scanlab.cuda.arrays import launch_over
from scanlab.cuda.memory import zeros


@cuda.jit
def weight_coefficients_kernel(values, alpha, decays, adjust, ignore_na, coefficients, inputs):
    """The recurrences of the weight ``V`` (columns ``0..D-1``) and of the count of
    observations (columns ``D..2D-1``) of each channel; a step ages ``V`` by ``decays[t]``,
    or ``1 - alpha`` for empty ``decays``."""
    length, channels = values.shape
    first, start = cuda.grid(2)
    across, down = cuda.gridsize(2)
    for t in range(start, length, down):
        for channel in range(first, channels, across):
            observed = math.isfinite(values[t, channel])
            step_decay = decays[t] if decays.size else 1.0 - alpha
            decay = step_decay if observed or not ignore_na else 1.0
            coefficients[t, channel] = decay if adjust or not observed else 0.0
            inputs[t, channel] = 1.0 if observed else 0.0
            coefficients[t, channels + channel] = 1.0
            inputs[t, channels + channel] = 1.0 if observed else 0.0


@cuda.jit
def mean_coefficients_kernel(
    values, weights, alpha, decays, adjust, complement, ignore_na, coefficients, inputs
):
    """The recurrence of the mean: ``P / (P + q)`` and ``x q / (P + q)`` at an observation,
    ``1`` and ``0`` at a missing step (``q = 1 - P`` with ``complement``)."""
    length, channels = values.shape
    first, start = cuda.grid(2)
    across, down = cuda.gridsize(2)
    for t in range(start, length, down):
        for channel in range(first, channels, across):
            current = values[t, channel]
            if math.isfinite(current):
                step_decay = decays[t] if decays.size else 1.0 - alpha
                old = step_decay * (weights[t - 1, channel] if t else 0.0)
                share = 1.0 if adjust else 1.0 - old if complement else alpha
                coefficients[t, channel] = old / (old + share)
                inputs[t, channel] = current * (share / (old + share))
            else:
                coefficients[t, channel] = 1.0
                inputs[t, channel] = 0.0


@cuda.jit
def masked_kernel(means, weights, min_periods, out):
    """``out`` (of its own dtype): the means where ``min_periods`` observations were seen,
    else NaN."""
    length, channels = out.shape
    first, start = cuda.grid(2)
    across, down = cuda.gridsize(2)
    for t in range(start, length, down):
        for channel in range(first, channels, across):
            seen = weights[t, channels + channel] >= min_periods
            out[t, channel] = means[t, channel] if seen else math.nan


def ewm_mean_on_device(values, alpha, decays, adjust, complement, ignore_na, min_periods, dtype):
    """The exponentially weighted mean of each column of ``values`` (``(T, D)`` float64) with
    pandas' rules, as a new ``(T, D)`` device array of ``dtype`` (float32 or float64); each
    step ages the weights by ``decays[t]`` (a host array, pandas' ``times``), or by
    ``1 - alpha`` when it is empty."""
    length, channels = values.shape
    out = cuda.device_array((length, channels), dtype)
    if not out.size:
        return out
    coefficients = cuda.device_array((length, 2 * channels), values.dtype)
    inputs = cuda.device_array_like(coefficients)
    weights = cuda.device_array_like(coefficients)
    decays = cuda.to_device(decays)
    launch_over(weight_coefficients_kernel, length, channels)(
        values, alpha, decays, adjust, ignore_na, coefficients, inputs
    )
    linear.solve_on_device(
        coefficients, inputs, zeros(2 * channels, values.dtype), weights, False, "auto"
    )
    mean_coefficients, mean_inputs = (cuda.device_array_like(values) for _ in range(2))
    options = (alpha, decays, adjust, complement, ignore_na)
    launch_over(mean_coefficients_kernel, length, channels)(
        values, weights, *options, mean_coefficients, mean_inputs
    )
    means = cuda.device_array_like(values)
    linear.solve_on_device(
        mean_coefficients, mean_inputs, zeros(channels, values.dtype), means, False, "auto"
    )
    launch_over(masked_kernel, length, channels)(means, weights, float(min_periods), out)
    return out


def kernel_signatures():
    """List every kernel of this module with each signature its launchers compile.

    Returns
    -------
    list of (numba.cuda.dispatcher.CUDADispatcher, str)
        One entry per kernel (and output dtype); compile one to PTX without a GPU with
        ``cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))``.
    """
    matrix, decay = "float64[:, ::1]", "float64, float64[::1]"
    weight_options, mean_options = (
        f"{decay}, boolean, boolean",
        f"{decay}, boolean, boolean, boolean",
    )
    signatures = [
        (weight_coefficients_kernel, f"void({matrix}, {weight_options}, {matrix}, {matrix})"),
        (mean_coefficients_kernel, f"void({matrix}, {matrix}, {mean_options}, {matrix}, {matrix})"),
    ]
    for dtype in ("float32", "float64"):
        signatures.append((masked_kernel, f"void({matrix}, {matrix}, float64, {dtype}[:, ::1])"))
    return signatures
