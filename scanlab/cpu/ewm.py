"""pandas' exponentially weighted mean as one pass over time, parallel over blocks of contiguous
channels: the loop of ``pandas.core.window.ewm`` (``ewm(...).mean()``), step for step."""

import numpy as np
from numba import njit, prange


# No fastmath: without contracted multiply-adds the arithmetic is pandas', bit for bit.
@njit(cache=True, parallel=True)
def ewm_mean_sequential(values, alpha, adjust, ignore_na, min_periods, out, channel_block):
    """Write into ``out`` (``(T, D)`` like ``values``) pandas' exponentially weighted mean of
    each channel, in float64 whatever the dtype of ``values``, as pandas computes it: NaN and
    infinities are missing observations, and steps with fewer than ``min_periods``
    observations so far are NaN."""
    length, channels = values.shape
    decay = 1.0 - alpha
    new_weight = 1.0 if adjust else alpha
    for block in prange((channels + channel_block - 1) // channel_block):
        first = block * channel_block
        count = min(first + channel_block, channels) - first
        weighted = np.empty(count)
        old_weight = np.ones(count)
        observed = np.zeros(count, np.int64)
        for t in range(length):
            for k in range(count):
                current = np.float64(values[t, first + k])
                is_observation = np.isfinite(current)
                if not is_observation:
                    current = np.nan  # pandas reads infinities as missing values
                observed[k] += is_observation
                mean = weighted[k]
                if t == 0:
                    mean = current
                elif mean == mean:
                    if is_observation or not ignore_na:
                        old_weight[k] *= decay
                        if is_observation:
                            if mean != current:  # pandas: exact on a constant series
                                mean = (old_weight[k] * mean + new_weight * current) / (
                                    old_weight[k] + new_weight
                                )
                            old_weight[k] = old_weight[k] + new_weight if adjust else 1.0
                elif is_observation:
                    mean = current
                weighted[k] = mean
                out[t, first + k] = mean if observed[k] >= min_periods else np.nan
