"""pandas' exponentially weighted mean (``ewm(...).mean()``) in one pass over time, parallel
over blocks of contiguous channels (vectorised across each block).

pandas' loop divides at every step by a sum that depends on the previous step, so the
division's latency sits in each channel's dependency chain. Here the mean is carried as the
ratio of a weighted sum and the sum of its weights (``adjust=True``) or as ``c * mean + d``
with the step's coefficients worked out beside the chain (``adjust=False``): the same means in
exact arithmetic, equal to pandas' to rounding, and only a multiply-add per step in the chain.
"""

import numpy as np
from numba import njit, prange

from scanlab.config import FASTMATH

#: Weights below this are scaled up, with their weighted sum, by ``RESCALE`` (powers of two:
#: exact), so that long gaps never make them subnormal or zero.
TINY_WEIGHT = 2.0**-500
RESCALE = 2.0**500
#: The most a weight may shrink between two checks (``check_period``): it stays normal.
LARGEST_SHRINK = 400.0


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def ewm_mean_rows(values, alpha, adjust, ignore_na, min_periods, out, channel_block):
    """Write into ``out`` (``(T, D)`` like ``values``) the exponentially weighted mean of each
    channel, computed in float64 whatever the dtype of ``values``, with pandas' rules: NaN and
    infinities are missing observations; without ``ignore_na`` a missing step still ages the
    observations before it; steps with fewer than ``min_periods`` observations so far are NaN.
    One channel is walked with its state in registers, several in lockstep (vectorised); the
    step has no branches (a missing value is as unpredictable as the data).
    """
    length, channels = values.shape
    period = check_period(alpha)
    if channels == 1:
        state = (np.nan, 0.0, 0.0, 0)
        for start in range(0, length, period):
            for t in range(start, min(start + period, length)):
                state = ewm_step(values[t, 0], state, alpha, adjust, ignore_na)
                out[t, 0] = state[0] if state[3] >= min_periods else np.nan
            state = rescaled(state)
        return
    for block in prange((channels + channel_block - 1) // channel_block):
        first = block * channel_block
        count = min(first + channel_block, channels) - first
        mean = np.full(count, np.nan)
        weighted_sum = np.zeros(count)
        weight = np.zeros(count)
        observed = np.zeros(count, np.int64)
        for start in range(0, length, period):
            for t in range(start, min(start + period, length)):
                for k in range(count):
                    state = (mean[k], weighted_sum[k], weight[k], observed[k])
                    state = ewm_step(values[t, first + k], state, alpha, adjust, ignore_na)
                    mean[k], weighted_sum[k], weight[k], observed[k] = state
                    out[t, first + k] = state[0] if state[3] >= min_periods else np.nan
            for k in range(count):
                state = rescaled((mean[k], weighted_sum[k], weight[k], observed[k]))
                mean[k], weighted_sum[k], weight[k], observed[k] = state


@njit(cache=True)
def check_period(alpha):
    """Steps between two checks of the weights: they shrink by at most ``2**-LARGEST_SHRINK``
    in between (every step when ``alpha = 1``: a missing step leaves no weight)."""
    decay = 1.0 - alpha
    if decay <= 0.0:
        return 1
    return max(1, min(1024, int(LARGEST_SHRINK / -np.log2(decay))))


@njit(inline="always", fastmath=FASTMATH)
def ewm_step(value, state, alpha, adjust, ignore_na):
    """One step of one channel: ``state`` is ``(mean, weighted sum, weight, observations)``,
    the weight being the sum of the weights (``adjust``) or pandas' weight of the old mean."""
    mean, weighted_sum, weight, observed = state
    current = np.float64(value)
    is_observation = np.isfinite(current)
    ages = is_observation or not ignore_na
    decay = 1.0 - alpha if ages else 1.0
    if adjust:
        # Before the first observation both sums are 0 and the mean NaN; with alpha = 1 a
        # missing step leaves no weight, and the mean carries on.
        weighted_sum = weighted_sum * decay + (current if is_observation else 0.0)
        weight = weight * decay + (1.0 if is_observation else 0.0)
        mean = weighted_sum / weight if weight > 0.0 else mean
    else:
        weight = weight * decay
        scale = 1.0 / (weight + alpha)
        following = weight * scale * mean + alpha * scale * current
        first = observed == 0
        mean = (current if first else following) if is_observation else mean
        weight = 1.0 if is_observation else weight
    return mean, weighted_sum, weight, observed + is_observation


@njit(inline="always")
def rescaled(state):
    """``state`` with a tiny weight and its weighted sum scaled up by a power of two (exact)."""
    mean, weighted_sum, weight, observed = state
    if 0.0 < weight < TINY_WEIGHT:
        return mean, weighted_sum * RESCALE, weight * RESCALE, observed
    return state
