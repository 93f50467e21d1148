"""Drop-in front ends for the smoothing users already run: pandas' exponentially weighted mean.

``ewm_mean`` is ``pandas.DataFrame.ewm(...).mean()`` on NumPy arrays, any axis, parallel over
channels (and, for few long series, over time).
"""

import math
import numbers
from functools import partial

import numba
import numpy as np

from scanlab import config
from scanlab._arrays import as_time_major, normalize_axis, numeric_array
from scanlab.cpu import ewm as cpu_ewm
from scanlab.cpu import linear as cpu_linear
from scanlab.linear import linear_recurrence


def ewm_mean(
    x,
    *,
    com=None,
    span=None,
    halflife=None,
    alpha=None,
    adjust: bool = True,
    ignore_na: bool = False,
    min_periods: int = 0,
    axis: int = 0,
):
    """Exponentially weighted mean along ``axis``: ``pandas.DataFrame.ewm(...).mean()``.

    The one-line change from pandas: ``df.ewm(span=20).mean()`` becomes
    ``ewm_mean(df.to_numpy(), span=20)`` (the columns are channels, time along axis 0).

    Parameters
    ----------
    x : array_like
        float32 or float64 (integers and bools become float64); NaN and infinities mark missing
        values, as in pandas.
    com, span, halflife, alpha : float, optional
        The decay, exactly one of them, as pandas validates them: ``alpha = 1 / (1 + com)``,
        ``com >= 0``; ``com = (span - 1) / 2``, ``span >= 1``;
        ``alpha = 1 - exp(-ln 2 / halflife)``, ``halflife > 0``; ``0 < alpha <= 1``.
    adjust : bool, optional
        True: the weights of the observations so far, ``(1 - alpha)**i``, normalised by their
        sum. False: ``y[t] = (1 - alpha) y[t-1] + alpha x[t]``.
    ignore_na : bool, optional
        False: missing values still age the observations before them (weights by absolute
        position). True: they are skipped.
    min_periods : int, optional
        NaN until this many observations were seen (pandas counts at least 1).
    axis : int, optional
        The time axis.

    Returns
    -------
    ndarray
        Of ``x``'s shape and dtype (float32 stays float32; the means are computed in float64,
        as pandas computes them, and rounded once).

    Raises
    ------
    ValueError
        Not exactly one of com/span/halflife/alpha, one outside its domain (pandas' messages),
        a negative ``min_periods``, ``x`` without a time axis.
    TypeError
        Complex or non-numeric ``x``; a decay or ``min_periods`` that is not a number.

    See Also
    --------
    pandas.DataFrame.ewm : the reference; this follows its loop (``ewm(...).mean()``).
    scanlab.linear_recurrence : the solver of the parallel-over-time path.

    Notes
    -----
    Many channels run pandas' loop, step for step in float64, in parallel over blocks of
    channels. Where the parallel scan was measured faster on this machine for problems of this
    size (few long series on many cores; measured the first time, kept in ``scanlab.wisdom``
    as ``linear_recurrence``'s ``method="auto"`` is), the mean is solved in parallel over time
    as the ratio of two linear recurrences (``adjust=True``: the weighted sum and the sum of
    weights) or one (``adjust=False``: the coefficients of each step from the gap since the previous
    observation); these agree with pandas to rounding, and any channel where the ratio is
    undefined or imprecise (``alpha = 1`` with missing values, weights that underflow over a
    long gap) is solved by the loop instead.

    Examples
    --------
    >>> import numpy as np
    >>> from scanlab.signal import ewm_mean
    >>> ewm_mean(np.array([1.0, np.nan, 3.0]), alpha=0.5)
    array([1. , 1. , 2.6])
    >>> ewm_mean(np.array([1.0, np.nan, 3.0]), alpha=0.5, ignore_na=True)
    array([1.        , 1.        , 2.33333333])
    """
    alpha = decay_alpha(com, span, halflife, alpha)
    if not isinstance(min_periods, numbers.Integral) or isinstance(min_periods, bool):
        raise TypeError(f"min_periods must be an integer, got {min_periods!r}")
    if min_periods < 0:
        raise ValueError(f"min_periods must be >= 0, got {min_periods}")
    x = numeric_array("x", x)
    if x.dtype.kind == "c":
        raise TypeError(f"x has dtype {x.dtype}; ewm_mean takes real numbers, as pandas does")
    if not x.shape:
        raise ValueError("x must have a time axis; got a scalar")
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    axis = normalize_axis(axis, x.ndim)
    rest = x.shape[:axis] + x.shape[axis + 1 :]
    length, channels = x.shape[axis], math.prod(rest)
    out = np.empty((length, channels), dtype)
    if out.size:
        values = as_time_major(x, x.ndim, axis, rest, dtype)
        options = (alpha, bool(adjust), bool(ignore_na), max(int(min_periods), 1))
        threads = numba.get_num_threads()
        method = cpu_linear.measured_choice(
            "ewm_mean", length, channels, dtype, threads, measured_speeds
        )
        if method == "scan":
            mean_over_time(values, *options, out)
        else:
            block = channel_block(channels, 8, threads)
            cpu_ewm.ewm_mean_sequential(values, *options, out, block)
    return np.moveaxis(out.reshape((length, *rest)), 0, axis)


def mean_over_time(values, alpha, adjust, ignore_na, min_periods, out) -> None:
    """``ewm_mean`` in parallel over time: ``out[:] =`` the ratio of two linear recurrences
    (``adjust``) or one recurrence with per-step coefficients, in float64."""
    length = len(values)
    values = values.astype(np.float64, copy=False)
    observed = np.isfinite(values)
    filled = np.where(observed, values, 0.0)
    if adjust:
        # sum_i w_i x_i and sum_i w_i, each aged by (1 - alpha) at every step it counts.
        decay = np.where(observed, 1.0 - alpha, 1.0) if ignore_na else 1.0 - alpha
        sums = linear_recurrence(decay, np.stack([filled, observed.astype(np.float64)]), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums[0] / sums[1]
        # Weights that underflowed (long gaps) would lose the ratio's precision: the loop's.
        means[sums[1] < np.finfo(np.float64).tiny] = np.nan
    else:
        steps = np.arange(length).reshape(-1, *([1] * (values.ndim - 1)))
        latest = np.maximum.accumulate(np.where(observed, steps, -1), axis=0)
        previous = np.concatenate([np.full_like(latest[:1], -1), latest[:-1]])
        age = (1.0 - alpha) ** (1 if ignore_na else steps - previous)
        follows = observed & (previous >= 0)
        first = observed & (previous < 0)
        coefficient = np.where(follows, age / (age + alpha), np.where(first, 0.0, 1.0))
        term = np.where(follows, alpha * filled / (age + alpha), filled)
        means = linear_recurrence(coefficient, term)
    counts = np.cumsum(observed, axis=0)
    undefined = np.isnan(means) & (counts > 0)
    means[counts < min_periods] = np.nan
    out[...] = means
    if undefined.any():
        # 0 / 0 after an observation (alpha = 1 and a missing value, weights that underflowed):
        # those channels are solved by the loop.
        columns = np.flatnonzero(undefined.any(axis=0))
        again = np.empty((length, len(columns)), out.dtype)
        values = np.ascontiguousarray(values[:, columns])
        cpu_ewm.ewm_mean_sequential(values, alpha, adjust, ignore_na, min_periods, again, 1)
        out[:, columns] = again


def measured_speeds(dtype, channels: int, threads: int, elements: int) -> dict:
    """Nanoseconds per element of the loop and of the scan over time on this machine, for a
    random walk with 5% missing values of ``channels`` channels and about ``elements`` elements
    (``method="auto"``'s measurement, kept in ``scanlab.wisdom``)."""
    length = cpu_linear.calibration_length(channels, elements)
    rng = np.random.default_rng(0)
    values = rng.standard_normal((length, channels)).cumsum(axis=0).astype(dtype)
    values[rng.random(values.shape) < 0.05] = np.nan
    out = np.empty_like(values)
    options = (0.1, True, False, 1)
    block = channel_block(channels, 8, threads)
    runs = {
        "sequential": partial(cpu_ewm.ewm_mean_sequential, values, *options, out, block),
        "scan": partial(mean_over_time, values, *options, out),
    }
    return cpu_linear.median_speeds(runs, out.size, threads)


def channel_block(channels: int, itemsize: int, threads: int) -> int:
    """Channels per task of a loop parallel over blocks of channels: enough blocks for every
    thread, each at most ``config.cpu.channel_block_bytes`` and at least 256 bytes of a row (two
    threads writing the two halves of one cache line every step ran 2.7x slower than one)."""
    spread = -(-channels // threads)
    return max(256 // itemsize, min(config.cpu.channel_block_bytes // itemsize, spread), 1)


def decay_alpha(com, span, halflife, alpha) -> float:
    """``alpha`` from exactly one of ``com``, ``span``, ``halflife``, ``alpha``, validated and
    converted as pandas converts them (through the centre of mass)."""
    given = {"com": com, "span": span, "halflife": halflife, "alpha": alpha}
    for name, value in given.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise TypeError(f"{name} must be a real number, got {value!r}")
    if sum(value is not None for value in given.values()) > 1:
        raise ValueError("comass, span, halflife, and alpha are mutually exclusive")
    if com is not None:
        if com < 0:
            raise ValueError("comass must satisfy: comass >= 0")
    elif span is not None:
        if span < 1:
            raise ValueError("span must satisfy: span >= 1")
        com = (span - 1) / 2
    elif halflife is not None:
        if halflife <= 0:
            raise ValueError("halflife must satisfy: halflife > 0")
        com = 1 / (1 - np.exp(np.log(0.5) / halflife)) - 1
    elif alpha is not None:
        if alpha <= 0 or alpha > 1:
            raise ValueError("alpha must satisfy: 0 < alpha <= 1")
        com = (1 - alpha) / alpha
    else:
        raise ValueError("Must pass one of comass, span, halflife, or alpha")
    return 1.0 / (1.0 + float(com))


__all__ = ["ewm_mean"]
