"""Generalised advantage estimation in one fused pass: each channel's temporal differences,
their discounted sum and the returns computed together while walking time backwards, parallel
over blocks of contiguous channels (vectorised across each block)."""

import numpy as np
from numba import njit, prange

from scanlab.config import FASTMATH


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def advantages_sequential(
    rewards, values, dones, last_value, gamma, lam, advantages, returns, channel_block
):
    """Write ``advantages`` and ``returns`` (``(T, D)``, like every operand but the ``(D,)``
    ``last_value``) for ``delta[t] = r[t] + gamma (1 - done[t]) V[t+1] - V[t]``,
    ``A[t] = delta[t] + gamma lam (1 - done[t]) A[t+1]``, ``A[T] = 0``, ``V[T] = last_value``
    and ``returns = A + V``."""
    length, channels = rewards.shape
    for block in prange((channels + channel_block - 1) // channel_block):
        first = block * channel_block
        stop = min(first + channel_block, channels)
        advantage = np.zeros(stop - first, advantages.dtype)
        next_value = last_value[first:stop].copy()
        for t in range(length - 1, -1, -1):
            for k in range(stop - first):
                channel = first + k
                # gamma (1 - done), in the operands' precision (an integer 1 would promote)
                discount = gamma - gamma * dones[t, channel]
                value = values[t, channel]
                delta = rewards[t, channel] + discount * next_value[k] - value
                advantage[k] = delta + lam * discount * advantage[k]
                advantages[t, channel] = advantage[k]
                returns[t, channel] = advantage[k] + value
                next_value[k] = value


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def advantage_coefficients(rewards, values, dones, last_value, gamma, lam, decay, deltas):
    """The linear recurrence of the advantages, ``A[t] = decay[t] A[t+1] + deltas[t]``, for the
    parallel scan over time: ``decay = gamma lam (1 - done)`` and the temporal differences
    ``deltas``, every step independent of the others."""
    length, channels = rewards.shape
    for t in prange(length):
        for channel in range(channels):
            discount = gamma - gamma * dones[t, channel]
            following = values[t + 1, channel] if t + 1 < length else last_value[channel]
            deltas[t, channel] = rewards[t, channel] + discount * following - values[t, channel]
            decay[t, channel] = lam * discount


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def returns_sequential(rewards, dones, bootstrap, gamma, out, channel_block):
    """Write into ``out`` (``(T, D)`` like ``rewards`` and ``dones``) the discounted returns
    ``G[t] = r[t] + gamma (1 - done[t]) G[t+1]`` from ``G[T] = bootstrap`` (``(D,)``), in one
    pass backwards over time, parallel over blocks of channels."""
    length, channels = rewards.shape
    for block in prange((channels + channel_block - 1) // channel_block):
        first = block * channel_block
        stop = min(first + channel_block, channels)
        following = bootstrap[first:stop].copy()
        for t in range(length - 1, -1, -1):
            for k in range(stop - first):
                channel = first + k
                discount = gamma - gamma * dones[t, channel]
                following[k] = rewards[t, channel] + discount * following[k]
                out[t, channel] = following[k]


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def return_coefficients(dones, gamma, decay):
    """``decay = gamma (1 - done)``, each step independent, for the scan over time."""
    length, channels = dones.shape
    for t in prange(length):
        for channel in range(channels):
            decay[t, channel] = gamma - gamma * dones[t, channel]
