"""pandas' exponentially weighted mean (``ewm(...).mean()``) in one pass over time, parallel
over blocks of contiguous channels (vectorised across each block).

pandas' loop divides at every step by a sum that depends on the previous step, so the
division's latency sits in each channel's dependency chain. Here the mean is carried as the
ratio of a weighted sum and the sum of its weights (``adjust=True``, updated at observations)
or as ``c * mean + d`` with the step's coefficients worked out beside the chain
(``adjust=False``): the same means in exact arithmetic, equal to pandas' to rounding, and only
a multiply-add per step in the chain. The weights are never rescaled: over a long gap they
shrink towards zero as pandas' do, and an observation after it outweighs them as in pandas
(scaling them back up, as this module once did, gave the old mean weight it no longer has).
"""

import numpy as np
from numba import njit, prange

from scanlab import math as smath
from scanlab._kernel_cache import njit_cached
from scanlab.config import FASTMATH
from scanlab.cpu.branchless import select_unpredictable


@njit_cached(parallel=True, fastmath=FASTMATH, error_model="numpy")
def ewm_mean_rows(
    values, alpha, decays, adjust, complement, ignore_na, min_periods, out, channel_block
):
    """Write into ``out`` (``(T, D)`` like ``values``) the exponentially weighted mean of each
    channel, computed in float64 whatever the dtype of ``values``, with pandas' rules: NaN and
    infinities are missing observations; without ``ignore_na`` a missing step still ages the
    observations before it; steps with fewer than ``min_periods`` (at least 1) observations so
    far are NaN. A step ages the weights by ``decays[t]`` (pandas' ``times``: ``(1 - alpha) **
    delta``), or by ``1 - alpha`` when ``decays`` is empty. ``complement`` (``adjust=False``
    only): an observation's weight is what the old mean's lost since the last one,
    ``1 - weight``, not ``alpha`` (pandas' rule when ``com == 1``). One channel is walked with
    its state in registers, several in lockstep (vectorised); the step has no branches (a
    missing value is as unpredictable as the data: :mod:`scanlab.cpu.branchless`). ``values``
    and ``out`` may be the transposes of ``(D, T)`` rows (channels laid out time last, as a
    DataFrame's columns), read and written as they lie, ``SERIES_LANES`` channels to a block.
    """
    length, channels = values.shape
    timed = decays.size > 0
    # The mean is 0 before the first observation (not NaN: an observation's mean adds its
    # share of the old one, 0 at the first), and the steps before it are NaN by the count.
    if channels == 1:
        state = (0.0, 0.0, 0.0, 0)
        for t in range(length):
            decay = decays[t] if timed else 1.0 - alpha
            state = ewm_step(values[t, 0], state, alpha, decay, adjust, complement, ignore_na)
            out[t, 0] = state[0] if state[3] >= min_periods else np.nan
        return
    for block in prange((channels + channel_block - 1) // channel_block):
        first = block * channel_block
        count = min(first + channel_block, channels) - first
        mean = np.zeros(count)
        weighted_sum = np.zeros(count)
        weight = np.zeros(count)
        observed = np.zeros(count, np.int64)
        for t in range(length):
            decay = decays[t] if timed else 1.0 - alpha
            for k in range(count):
                state = (mean[k], weighted_sum[k], weight[k], observed[k])
                state = ewm_step(
                    values[t, first + k], state, alpha, decay, adjust, complement, ignore_na
                )
                mean[k], weighted_sum[k], weight[k], observed[k] = state
                out[t, first + k] = state[0] if state[3] >= min_periods else np.nan


#: Channels a thread of :func:`ewm_mean_rows` walks in lockstep when they lie time last (a
#: block of channels then reads no contiguous row: independent chains that hide each other's
#: latency).
SERIES_LANES = 8


@njit(inline="always", fastmath=FASTMATH)
def ewm_step(value, state, alpha, step_decay, adjust, complement, ignore_na):
    """One step of one channel, aging the weights by ``step_decay``: ``state`` is ``(mean,
    weighted sum, weight, observations)``, the weight being the sum of the weights
    (``adjust``) or pandas' weight of the old mean (an observation's ``alpha``, or
    ``1 - weight`` with ``complement``); the mean is 0 until the first observation."""
    mean, weighted_sum, weight, observed = state
    current = np.float64(value)
    is_observation = np.isfinite(current)
    decay = select_unpredictable(is_observation | (not ignore_na), step_decay, 1.0)
    if adjust:
        # Before the first observation both sums are 0 (their quotient NaN, not used: the
        # caller compiles with NumPy's error model). A missing step keeps the mean (pandas'
        # too), so the sums may shrink to subnormal or zero over a long gap as pandas' weight
        # does: at the next observation they count as little as pandas'.
        weighted_sum = weighted_sum * decay + select_unpredictable(is_observation, current, 0.0)
        weight = weight * decay + select_unpredictable(is_observation, 1.0, 0.0)
        mean = select_unpredictable(is_observation, weighted_sum / weight, mean)
    else:
        # The old mean's share, weight / (weight + share) with an observation's share alpha or
        # 1 - weight (complement), and the observation's, 1 - that: beside the mean's
        # dependency chain (a multiply-add and a select). At the first observation 0 and 1.
        weight = weight * decay
        denominator = 1.0 if complement else weight + alpha
        old_share = select_unpredictable(observed == 0, 0.0, weight / denominator)
        following = old_share * mean + (1.0 - old_share) * current
        mean = select_unpredictable(is_observation, following, mean)
        weight = select_unpredictable(is_observation, 1.0, weight)
    return mean, weighted_sum, weight, observed + is_observation


@njit_cached(parallel=True, fastmath=FASTMATH)
def time_decays(ticks, halflife, factor, out):
    """``out[t] = factor ** delta[t]``, ``delta[t] = (ticks[t] - ticks[t-1]) / halflife`` as
    pandas computes it (the ticks as float64 first), ``out[0] = 1``: what each step of
    ``ewm(times=...)`` ages the weights by, in parallel and vectorised (``exp`` of
    ``scanlab.math``, not the C library's ``pow``, one element at a time and 8x slower: the
    same to a few ulps, and equal for ties). Returns how many steps go back in time."""
    log_factor = np.log(factor) if factor > 0.0 else 0.0
    backwards = 0
    if len(out):
        out[0] = 1.0
    for t in prange(1, len(out)):
        delta = (np.float64(ticks[t]) - np.float64(ticks[t - 1])) / halflife
        backwards += delta < 0.0
        decayed = smath.exp(log_factor * delta) if factor > 0.0 else 0.0
        out[t] = 1.0 if delta == 0.0 else decayed
    return backwards
