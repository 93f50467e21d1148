"""Generalised advantage estimation and discounted returns in fused passes backwards over time:
each channel's temporal differences, their discounted sum and the returns computed together,
vectorised across blocks of contiguous channels, parallel over those blocks and, when there are
too few of them for the threads, over chunks of time as well.

A chunk of time other than the last starts its walk from a zero advantage (return): the true one
comes from the chunk after it. Once every chunk is walked, each chunk's end is walked again from
its true carry, one chunk after the other from the last, until every channel's new state equals
the one written (or both are NaN): from there on the first walk already wrote what the loop
would. The state difference shrinks by ``gamma lam (1 - done)`` a step, and an episode end makes
it zero, so this second walk is usually a few hundred steps; without decay (``gamma lam = 1``,
no episode end) it is the whole chunk, and the chunked method costs more than one walk (``auto``
measures both). The result is the sequential loop's bit for bit: the same arithmetic on the
same state.

Twin of :mod:`scanlab.cuda.returns` (same problems; the GPU solves them as linear recurrences
with its parallel scan). Every operand is ``(T, D)``, time first, but the ``(D,)`` final values.
"""

import numpy as np
from numba import njit, uint64

from scanlab.config import FASTMATH
from scanlab.cpu import atomics
from scanlab.cpu.threads import share_out

#: Fewest steps of a chunk of time: the walk again from the true carry (a few hundred steps
#: at the usual discounts) stays a small part of it.
MIN_CHUNK = 2**14
#: Tasks per thread (chunks of time x blocks of channels) the chunked method aims at, so that a
#: thread that comes free takes over the share of one that was descheduled.
TASKS_PER_THREAD = 4


def time_chunks(length: int, channel_blocks: int, threads: int) -> int:
    """Chunks of time for ``channel_blocks`` blocks of channels: enough tasks for
    ``TASKS_PER_THREAD`` per thread, each chunk at least ``MIN_CHUNK`` steps (one chunk: the
    plain walk)."""
    wanted = -(-TASKS_PER_THREAD * threads // channel_blocks)
    return max(1, min(wanted, length // MIN_CHUNK))


def chunk_length(length: int, chunks: int) -> int:
    """Steps of each chunk but the first of ``length`` steps in ``chunks`` (at least 1)."""
    return max(1, -(-length // chunks))


@njit(inline="always")
def advantage(reward, value, done, next_value, following, gamma, lam):
    """One step of GAE: ``r + gamma (1 - done) V[t+1] - V + gamma lam (1 - done) A[t+1]``
    (``gamma (1 - done)`` in the operands' precision: an integer 1 would promote)."""
    discount = gamma - gamma * done
    delta = reward + discount * next_value - value
    return delta + lam * discount * following


@njit(inline="always")
def same_state(written, new) -> bool:
    """Whether a walk from ``new`` goes on as the one that wrote ``written``."""
    return written == new or (written != written and new != new)


def advantages_backwards(
    rewards, values, dones, last_value, gamma, lam, advantages, returns, channel_block, chunks
) -> None:
    """Write ``advantages`` and ``returns`` for ``delta[t] = r[t] + gamma (1 - done[t]) V[t+1]
    - V[t]``, ``A[t] = delta[t] + gamma lam (1 - done[t]) A[t+1]``, ``A[T] = 0``,
    ``V[T] = last_value`` and ``returns = A + V``: blocks of ``channel_block`` channels times
    ``chunks`` chunks of time (one: the loop over time), as the module says."""
    length, channels = rewards.shape
    blocks = -(-channels // channel_block)
    chunk = chunk_length(length, chunks)
    operands = (rewards, values, dones, last_value, gamma, lam, advantages, returns)
    share_out(advantage_chunks, blocks * -(-length // chunk), (*operands, channel_block, chunk))
    if chunk < length:
        share_out(settle_advantages, blocks, (*operands, channel_block, chunk))


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def advantage_chunks(
    next_task, rewards, values, dones, last_value, gamma, lam, advantages, returns, block, chunk
):
    """The tasks (chunk of time, block of channels) of :func:`advantages_backwards` taken from
    the counter, each walked from a zero advantage (the last chunk from ``A[T] = 0``)."""
    length, channels = rewards.shape
    blocks = -(-channels // block)
    task = atomics.fetch_add(next_task, 0, 1)
    while task < blocks * -(-length // chunk):
        first = (task % blocks) * block
        start = (task // blocks) * chunk
        stop = min(start + chunk, length)
        width = min(block, channels - first)
        state = np.zeros(width, advantages.dtype)
        next_value = values[stop, first : first + width].copy() if stop < length else (
            last_value[first : first + width].copy()
        )  # fmt: skip
        for t in range(stop - 1, start - 1, -1):
            # Rows, and unsigned channels (no negative-index check): LLVM vectorises this loop
            # (1.6x against indexing [t, channel], float64, 16 channels).
            rewards_t, values_t, dones_t = rewards[t], values[t], dones[t]
            advantages_t, returns_t = advantages[t], returns[t]
            for k in range(width):
                channel = uint64(first) + uint64(k)
                value = values_t[channel]
                state[k] = advantage(
                    rewards_t[channel], value, dones_t[channel], next_value[k], state[k], gamma, lam
                )
                advantages_t[channel] = state[k]
                returns_t[channel] = state[k] + value
                next_value[k] = value
        task = atomics.fetch_add(next_task, 0, 1)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def settle_advantages(
    next_block, rewards, values, dones, last_value, gamma, lam, advantages, returns, block, chunk
):
    """The blocks of channels of :func:`advantages_backwards`' second walk: each chunk's end
    from the true advantage at the start of the chunk after it, chunk after chunk from the last
    but one, until the block's new states all equal the written ones."""
    length, channels = rewards.shape
    current = atomics.fetch_add(next_block, 0, 1)
    while current * block < channels:
        first = current * block
        width = min(block, channels - first)
        for stop in range(((length - 1) // chunk) * chunk, 0, -chunk):
            state = advantages[stop, first : first + width].copy()
            next_value = values[stop, first : first + width].copy()
            for t in range(stop - 1, stop - chunk - 1, -1):
                rewards_t, values_t, dones_t = rewards[t], values[t], dones[t]
                advantages_t, returns_t = advantages[t], returns[t]
                settled = True
                for k in range(width):
                    channel = uint64(first) + uint64(k)
                    value = values_t[channel]
                    state[k] = advantage(
                        rewards_t[channel],
                        value,
                        dones_t[channel],
                        next_value[k],
                        state[k],
                        gamma,
                        lam,
                    )
                    settled &= same_state(advantages_t[channel], state[k])
                    advantages_t[channel] = state[k]
                    returns_t[channel] = state[k] + value
                    next_value[k] = value
                if settled:
                    break
        current = atomics.fetch_add(next_block, 0, 1)


def returns_backwards(rewards, dones, bootstrap, gamma, out, channel_block, chunks) -> None:
    """Write into ``out`` the discounted returns ``G[t] = r[t] + gamma (1 - done[t]) G[t+1]``
    from ``G[T] = bootstrap``: blocks of ``channel_block`` channels times ``chunks`` chunks of
    time (one: the loop over time), as the module says."""
    length, channels = rewards.shape
    blocks = -(-channels // channel_block)
    chunk = chunk_length(length, chunks)
    operands = (rewards, dones, bootstrap, gamma, out)
    share_out(return_chunks, blocks * -(-length // chunk), (*operands, channel_block, chunk))
    if chunk < length:
        share_out(settle_returns, blocks, (*operands, channel_block, chunk))


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def return_chunks(next_task, rewards, dones, bootstrap, gamma, out, block, chunk):
    """The tasks (chunk of time, block of channels) of :func:`returns_backwards` taken from the
    counter, each walked from a zero return (the last chunk from ``bootstrap``)."""
    length, channels = rewards.shape
    blocks = -(-channels // block)
    task = atomics.fetch_add(next_task, 0, 1)
    while task < blocks * -(-length // chunk):
        first = (task % blocks) * block
        start = (task // blocks) * chunk
        stop = min(start + chunk, length)
        width = min(block, channels - first)
        state = np.zeros(width, out.dtype)
        if stop == length:
            state[:] = bootstrap[first : first + width]
        for t in range(stop - 1, start - 1, -1):
            rewards_t, dones_t, out_t = rewards[t], dones[t], out[t]
            for k in range(width):
                channel = uint64(first) + uint64(k)
                discount = gamma - gamma * dones_t[channel]
                state[k] = rewards_t[channel] + discount * state[k]
                out_t[channel] = state[k]
        task = atomics.fetch_add(next_task, 0, 1)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def settle_returns(next_block, rewards, dones, bootstrap, gamma, out, block, chunk):
    """The blocks of channels of :func:`returns_backwards`' second walk (as
    :func:`settle_advantages`)."""
    length, channels = rewards.shape
    current = atomics.fetch_add(next_block, 0, 1)
    while current * block < channels:
        first = current * block
        width = min(block, channels - first)
        for stop in range(((length - 1) // chunk) * chunk, 0, -chunk):
            state = out[stop, first : first + width].copy()
            for t in range(stop - 1, stop - chunk - 1, -1):
                rewards_t, dones_t, out_t = rewards[t], dones[t], out[t]
                settled = True
                for k in range(width):
                    channel = uint64(first) + uint64(k)
                    discount = gamma - gamma * dones_t[channel]
                    state[k] = rewards_t[channel] + discount * state[k]
                    settled &= same_state(out_t[channel], state[k])
                    out_t[channel] = state[k]
                if settled:
                    break
        current = atomics.fetch_add(next_block, 0, 1)
