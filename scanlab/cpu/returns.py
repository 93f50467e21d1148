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

from scanlab._kernel_cache import njit_cached
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
    """Steps of each chunk but the last of ``length`` steps in ``chunks`` (at least 1)."""
    return max(1, -(-length // chunks))


@njit(inline="always")
def advantage(reward, value, done, next_value, following, gamma, lam):
    """One step of GAE: ``r + gamma (1 - done) V[t+1] - V + gamma lam (1 - done) A[t+1]``
    (``gamma (1 - done)`` in the operands' precision: an integer 1 would promote)."""
    discount = gamma - gamma * done
    return reward + discount * next_value - value + lam * discount * following


@njit(inline="always")
def same_state(written, new) -> bool:
    """Whether a walk from ``new`` goes on as the one that wrote ``written``."""
    return written == new or (written != written and new != new)


@njit(inline="always")
def advantage_row(
    rewards, values, dones, gamma, lam, advantages, returns, row, width, next_advantages,
    next_values, next_row, settle,
):  # fmt: skip
    """One step of ``width`` channels from flat index ``row``, their successors' advantages and
    values read from ``next_advantages`` and ``next_values`` at ``next_row``; with ``settle``,
    whether every new advantage equals the written one."""
    settled = True
    for k in range(width):
        i, j = row + uint64(k), next_row + uint64(k)
        value = values[i]
        new = advantage(rewards[i], value, dones[i], next_values[j], next_advantages[j], gamma, lam)
        if settle:
            settled &= same_state(advantages[i], new)
        advantages[i] = new
        returns[i] = new + value
    return settled


@njit(inline="always")
def advantage_walk(
    rewards, values, dones, gamma, lam, advantages, returns, first, width, start, stop, carry,
    following, settle,
):  # fmt: skip
    """Walk steps ``stop - 1`` down to ``start`` of channels ``first`` to ``first + width``
    (flat ``(T D,)`` operands of ``channels`` a step) from the advantages ``carry`` and the
    values ``following`` after ``stop - 1`` (``(D,)`` each); with ``settle``, stop after the
    first step at which every new advantage equals the written one. Each step after the first
    reads its successor's advantage and value back from the arrays: no state array, so LLVM
    vectorises the loop over channels (2x on 16 channels); one channel keeps them in
    registers."""
    channels = uint64(len(carry))
    row = uint64(stop - 1) * channels + uint64(first)
    settled = advantage_row(
        rewards, values, dones, gamma, lam, advantages, returns, row, width, carry, following,
        uint64(first), settle,
    )  # fmt: skip
    if settle and settled:
        return
    if width == 1:
        # One channel: its state in a register, not read back (a store and a load on the chain).
        state, following = advantages[row], values[row]
        for t in range(stop - 2, start - 1, -1):
            i = uint64(t) * channels + uint64(first)
            value = values[i]
            state = advantage(rewards[i], value, dones[i], following, state, gamma, lam)
            settle_step = settle and same_state(advantages[i], state)
            advantages[i] = state
            returns[i] = state + value
            following = value
            if settle_step:
                return
        return
    for t in range(stop - 2, start - 1, -1):
        row = uint64(t) * channels + uint64(first)
        settled = advantage_row(
            rewards, values, dones, gamma, lam, advantages, returns, row, width, advantages,
            values, row + channels, settle,
        )  # fmt: skip
        if settle and settled:
            return


def advantages_backwards(
    rewards, values, dones, last_value, gamma, lam, advantages, returns, channel_block, chunks
) -> None:
    """Write ``advantages`` and ``returns`` for ``delta[t] = r[t] + gamma (1 - done[t]) V[t+1]
    - V[t]``, ``A[t] = delta[t] + gamma lam (1 - done[t]) A[t+1]``, ``A[T] = 0``,
    ``V[T] = last_value`` and ``returns = A + V``: blocks of ``channel_block`` channels times
    ``chunks`` chunks of time (one: the loop over time), as the module says. Every ``(T, D)``
    operand C-contiguous."""
    length, channels = rewards.shape
    blocks = -(-channels // channel_block)
    chunk = chunk_length(length, chunks)
    flat = [x.reshape(-1) for x in (rewards, values, dones, advantages, returns)]
    operands = (*flat[:3], last_value, gamma, lam, *flat[3:], length, channel_block, chunk)
    share_out(advantage_chunks, blocks * -(-length // chunk), operands, rewards.size)
    if chunk < length:
        share_out(settle_advantages, blocks, operands, rewards.size)


@njit_cached(nogil=True, fastmath=FASTMATH)
def advantage_chunks(
    next_task, rewards, values, dones, last_value, gamma, lam, advantages, returns, length,
    block, chunk,
):  # fmt: skip
    """The tasks (chunk of time, block of channels) of :func:`advantages_backwards` taken from
    the counter, each walked from a zero advantage (the last chunk from ``A[T] = 0``)."""
    channels = len(last_value)
    blocks = -(-channels // block)
    carry = np.zeros(channels, advantages.dtype)
    task = atomics.fetch_add(next_task, 0, 1)
    while task < blocks * -(-length // chunk):
        first = (task % blocks) * block
        start = (task // blocks) * chunk
        stop = min(start + chunk, length)
        following = (
            last_value if stop == length else values[stop * channels : (stop + 1) * channels]
        )
        width = min(block, channels - first)
        advantage_walk(
            rewards, values, dones, gamma, lam, advantages, returns, first, width, start, stop,
            carry, following, False,
        )  # fmt: skip
        task = atomics.fetch_add(next_task, 0, 1)


@njit_cached(nogil=True, fastmath=FASTMATH)
def settle_advantages(
    next_block, rewards, values, dones, last_value, gamma, lam, advantages, returns, length,
    block, chunk,
):  # fmt: skip
    """The blocks of channels of :func:`advantages_backwards`' second walk: each chunk's end
    from the true advantage at the start of the chunk after it, chunk after chunk from the last
    but one, until the block's new advantages all equal the written ones."""
    channels = len(last_value)
    current = atomics.fetch_add(next_block, 0, 1)
    while current * block < channels:
        first = current * block
        width = min(block, channels - first)
        for stop in range(((length - 1) // chunk) * chunk, 0, -chunk):
            row = slice(stop * channels, (stop + 1) * channels)
            advantage_walk(
                rewards, values, dones, gamma, lam, advantages, returns, first, width,
                stop - chunk, stop, advantages[row], values[row], True,
            )  # fmt: skip
        current = atomics.fetch_add(next_block, 0, 1)


@njit(inline="always")
def return_row(rewards, dones, gamma, out, row, width, next_out, next_row, settle):
    """One step of the returns of ``width`` channels from flat index ``row``, their successors
    read from ``next_out`` at ``next_row``; with ``settle``, whether every new return equals
    the written one."""
    settled = True
    for k in range(width):
        i = row + uint64(k)
        new = rewards[i] + (gamma - gamma * dones[i]) * next_out[next_row + uint64(k)]
        if settle:
            settled &= same_state(out[i], new)
        out[i] = new
    return settled


@njit(inline="always")
def return_walk(rewards, dones, gamma, out, first, width, start, stop, carry, settle):
    """Walk the returns' steps ``stop - 1`` down to ``start`` of channels ``first`` to
    ``first + width`` from ``carry`` (``(D,)``), as :func:`advantage_walk` walks GAE's."""
    channels = uint64(len(carry))
    row = uint64(stop - 1) * channels + uint64(first)
    settled = return_row(rewards, dones, gamma, out, row, width, carry, uint64(first), settle)
    if settle and settled:
        return
    if width == 1:
        # One channel: its state in a register, not read back (a store and a load on the chain).
        state = out[row]
        for t in range(stop - 2, start - 1, -1):
            i = uint64(t) * channels + uint64(first)
            state = rewards[i] + (gamma - gamma * dones[i]) * state
            settle_step = settle and same_state(out[i], state)
            out[i] = state
            if settle_step:
                return
        return
    for t in range(stop - 2, start - 1, -1):
        row = uint64(t) * channels + uint64(first)
        settled = return_row(rewards, dones, gamma, out, row, width, out, row + channels, settle)
        if settle and settled:
            return


def returns_backwards(rewards, dones, bootstrap, gamma, out, channel_block, chunks) -> None:
    """Write into ``out`` the discounted returns ``G[t] = r[t] + gamma (1 - done[t]) G[t+1]``
    from ``G[T] = bootstrap``: blocks of ``channel_block`` channels times ``chunks`` chunks of
    time (one: the loop over time), as the module says. Every ``(T, D)`` operand
    C-contiguous."""
    length, channels = rewards.shape
    blocks = -(-channels // channel_block)
    chunk = chunk_length(length, chunks)
    flat = [x.reshape(-1) for x in (rewards, dones, out)]
    operands = (*flat[:2], bootstrap, gamma, flat[2], length, channel_block, chunk)
    share_out(return_chunks, blocks * -(-length // chunk), operands, rewards.size)
    if chunk < length:
        share_out(settle_returns, blocks, operands, rewards.size)


@njit_cached(nogil=True, fastmath=FASTMATH)
def return_chunks(next_task, rewards, dones, bootstrap, gamma, out, length, block, chunk):
    """The tasks (chunk of time, block of channels) of :func:`returns_backwards` taken from the
    counter, each walked from a zero return (the last chunk from ``bootstrap``)."""
    channels = len(bootstrap)
    blocks = -(-channels // block)
    zero = np.zeros(channels, out.dtype)
    task = atomics.fetch_add(next_task, 0, 1)
    while task < blocks * -(-length // chunk):
        first = (task % blocks) * block
        start = (task // blocks) * chunk
        stop = min(start + chunk, length)
        carry = bootstrap if stop == length else zero
        width = min(block, channels - first)
        return_walk(rewards, dones, gamma, out, first, width, start, stop, carry, False)
        task = atomics.fetch_add(next_task, 0, 1)


@njit_cached(nogil=True, fastmath=FASTMATH)
def settle_returns(next_block, rewards, dones, bootstrap, gamma, out, length, block, chunk):
    """The blocks of channels of :func:`returns_backwards`' second walk (as
    :func:`settle_advantages`)."""
    channels = len(bootstrap)
    current = atomics.fetch_add(next_block, 0, 1)
    while current * block < channels:
        first = current * block
        width = min(block, channels - first)
        for stop in range(((length - 1) // chunk) * chunk, 0, -chunk):
            carry = out[stop * channels : (stop + 1) * channels]
            return_walk(rewards, dones, gamma, out, first, width, stop - chunk, stop, carry, True)
        current = atomics.fetch_add(next_block, 0, 1)
