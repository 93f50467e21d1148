"""CPU kernels for the elementwise linear recurrence ``h_t = a_t * h_{t-1} + b_t``.

Layout seen by every kernel (prepared by ``scanlab._arrays``): ``out`` is C-contiguous ``(T, D)``
with time first; ``a`` and ``b`` are C-contiguous ``(T or 1, D or 1)`` (a length-1 axis broadcasts);
``h0`` is ``(D,)``; all share the result dtype. ``reverse`` runs time backwards. ``out`` never
overlaps ``a`` or ``b``. Time is walked in *steps*: step ``s`` visits row ``time_index(s)``.
"""

import numba
import numpy as np
from numba import njit, prange, uint64

from scanlab import config
from scanlab.config import FASTMATH

#: Chunks each thread of the ``scan`` kernel walks at once: four independent dependency chains
#: hide the latency of a fused multiply-add (and the chains of the product of ``a``).
CHAINS = 4
#: The two passes of the ``scan`` kernel over each block.
COMPOSE, APPLY = 0, 1


@njit(inline="always")
def time_direction(length, reverse):
    """``(origin, direction)`` such that step ``s`` visits row ``origin + direction * s``."""
    return (length - 1, -1) if reverse else (0, 1)


@njit(inline="always")
def time_index(step, origin, direction):
    """Row of ``out`` visited at the ``step``-th step of the recurrence.

    Affine in ``step`` without a branch, so LLVM turns the indexing into pointer increments.
    """
    return uint64(origin + direction * step)


@njit(inline="always")
def chain_rows(step, chunk_length, origin, direction):
    """Rows the ``CHAINS`` chains visit at their ``step``-th step, ``chunk_length`` apart."""
    return (
        time_index(step, origin, direction),
        time_index(step + chunk_length, origin, direction),
        time_index(step + 2 * chunk_length, origin, direction),
        time_index(step + 3 * chunk_length, origin, direction),
    )


@njit(inline="always")
def broadcast_steps(array, length, channels):
    """Index multipliers ``(row, column)`` of ``array``: 0 along a broadcast axis, else 1.

    ``array``'s first two axes are time (``length`` or 1) and channels (``channels`` or 1).

    Unsigned, like every index they multiply, so Numba skips its negative-index check; computed
    by division rather than a comparison so that LLVM keeps them symbolic and versions the
    channel loops for a unit stride (vectorised) instead of giving up on them.
    """
    return uint64(array.shape[0] // length), uint64(array.shape[1] // channels)


@njit(inline="always")
def is_finite(value):
    """Whether a real or complex ``value`` is neither Inf nor NaN."""
    return value - value == 0


@njit(inline="always")
def is_inf(value):
    """Whether a real or complex ``value`` is infinite: neither finite nor NaN."""
    return not is_finite(value) and value == value


@njit(inline="always")
def advance_row(a_t, b_t, a_column, b_column, state, out_t):
    """One step for a row of channels: ``state = a_t * state + b_t``, copied to ``out_t``."""
    for d in range(uint64(state.shape[0])):
        value = a_t[d * a_column] * state[d] + b_t[d * b_column]
        state[d] = value
        out_t[d] = value


@njit(cache=True, fastmath=FASTMATH)
def run_steps(a, b, state, out, first_step, stop_step, reverse, first_channel):
    """Sequential recurrence over steps ``[first_step, stop_step)`` for the channels of ``state``.

    ``state`` holds channels ``first_channel`` onwards and is updated in place.
    """
    length, channels = out.shape
    origin, direction = time_direction(length, reverse)
    a_row, a_column = broadcast_steps(a, length, channels)
    b_row, b_column = broadcast_steps(b, length, channels)
    if state.shape[0] == 1:
        # One series: keep the state in a register.
        h = state[0]
        a_d = uint64(first_channel) * a_column
        b_d = uint64(first_channel) * b_column
        for step in range(first_step, stop_step):
            t = time_index(step, origin, direction)
            h = a[t * a_row, a_d] * h + b[t * b_row, b_d]
            out[t, first_channel] = h
        state[0] = h
        return
    width = state.shape[0]
    if b_column == 1 and width == channels:
        # Whole rows of b, with whole rows of a or one coefficient per step: plain loops, which
        # LLVM vectorises without the per-row stride and offset checks of the general loop below
        # (1.5x faster at 16 channels, 3x with a scalar coefficient at 64).
        for step in range(first_step, stop_step):
            t = time_index(step, origin, direction)
            b_t = b[t * b_row]
            out_t = out[t]
            if a_column == 1:
                a_t = a[t * a_row]
                for d in range(channels):
                    value = a_t[d] * state[d] + b_t[d]
                    state[d] = value
                    out_t[d] = value
            else:
                coefficient = a[t * a_row, 0]
                for d in range(channels):
                    value = coefficient * state[d] + b_t[d]
                    state[d] = value
                    out_t[d] = value
        return
    for step in range(first_step, stop_step):
        t = time_index(step, origin, direction)
        advance_row(
            a[t * a_row, uint64(first_channel) * a_column :],
            b[t * b_row, uint64(first_channel) * b_column :],
            a_column,
            b_column,
            state,
            out[t, first_channel : first_channel + width],
        )


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def linear_recurrence_sequential(a, b, h0, out, reverse, channel_block):
    """One pass over time, parallel over blocks of ``channel_block`` contiguous channels."""
    length, channels = out.shape
    block_count = (channels + channel_block - 1) // channel_block
    for block in prange(block_count):
        first = block * channel_block
        state = h0[first : min(channels, first + channel_block)].copy()
        run_steps(a, b, state, out, 0, length, reverse, first)


@njit(cache=True, fastmath=FASTMATH)
def compose_chunks(a, b, first_step, chunk_length, length, reverse, product, partial):
    """Summaries of ``CHAINS`` consecutive chunks, walked in lockstep.

    Chunk ``c`` covers ``chunk_length`` steps from ``first_step + c * chunk_length``; its summary
    is ``product[c] = prod a`` and ``partial[c]``, its last state when started from zero.
    The outputs are written once, at the end: threads' summaries may share cache lines.
    """
    channels = product.shape[1]
    origin, direction = time_direction(length, reverse)
    a_row, a_column = broadcast_steps(a, length, channels)
    b_row, b_column = broadcast_steps(b, length, channels)
    if channels == 1:
        # One series: four scalar chains in registers.
        p0 = p1 = p2 = p3 = product.dtype.type(1)
        q0 = q1 = q2 = q3 = partial.dtype.type(0)
        for offset in range(chunk_length):
            t0, t1, t2, t3 = chain_rows(first_step + offset, chunk_length, origin, direction)
            x0 = a[t0 * a_row, 0]
            x1 = a[t1 * a_row, 0]
            x2 = a[t2 * a_row, 0]
            x3 = a[t3 * a_row, 0]
            p0 *= x0
            p1 *= x1
            p2 *= x2
            p3 *= x3
            q0 = x0 * q0 + b[t0 * b_row, 0]
            q1 = x1 * q1 + b[t1 * b_row, 0]
            q2 = x2 * q2 + b[t2 * b_row, 0]
            q3 = x3 * q3 + b[t3 * b_row, 0]
        product[0, 0], product[1, 0], product[2, 0], product[3, 0] = p0, p1, p2, p3
        partial[0, 0], partial[1, 0], partial[2, 0], partial[3, 0] = q0, q1, q2, q3
        return
    # A run-time chain count: LLVM does not unroll the vectorised row loop four times.
    chains = product.shape[0]
    local_product = np.ones((chains, channels), product.dtype)
    local_partial = np.zeros((chains, channels), partial.dtype)
    for offset in range(chunk_length):
        for chain in range(chains):
            t = time_index(first_step + chain * chunk_length + offset, origin, direction)
            a_t = a[t * a_row]
            b_t = b[t * b_row]
            product_c = local_product[chain]
            partial_c = local_partial[chain]
            for d in range(uint64(channels)):
                coefficient = a_t[d * a_column]
                product_c[d] *= coefficient
                partial_c[d] = coefficient * partial_c[d] + b_t[d * b_column]
    for chain in range(chains):
        for d in range(channels):
            product[chain, d] = local_product[chain, d]
            partial[chain, d] = local_partial[chain, d]


@njit(cache=True, fastmath=FASTMATH)
def apply_chunks(a, b, first_step, chunk_length, length, reverse, incoming, out):
    """Run ``CHAINS`` consecutive chunks in lockstep from their ``incoming`` states into ``out``."""
    state = incoming.copy()
    channels = state.shape[1]
    origin, direction = time_direction(length, reverse)
    a_row, a_column = broadcast_steps(a, length, channels)
    b_row, b_column = broadcast_steps(b, length, channels)
    if channels == 1:
        h0, h1, h2, h3 = state[0, 0], state[1, 0], state[2, 0], state[3, 0]
        for offset in range(chunk_length):
            t0, t1, t2, t3 = chain_rows(first_step + offset, chunk_length, origin, direction)
            h0 = a[t0 * a_row, 0] * h0 + b[t0 * b_row, 0]
            h1 = a[t1 * a_row, 0] * h1 + b[t1 * b_row, 0]
            h2 = a[t2 * a_row, 0] * h2 + b[t2 * b_row, 0]
            h3 = a[t3 * a_row, 0] * h3 + b[t3 * b_row, 0]
            out[t0, 0] = h0
            out[t1, 0] = h1
            out[t2, 0] = h2
            out[t3, 0] = h3
        return
    chains = state.shape[0]
    for offset in range(chunk_length):
        for chain in range(chains):
            t = time_index(first_step + chain * chunk_length + offset, origin, direction)
            advance_row(a[t * a_row], b[t * b_row], a_column, b_column, state[chain], out[t])


@njit(cache=True, fastmath=FASTMATH)
def walk_chunks(chunk_pass, a, b, first_step, chunk_length, length, reverse, product, partial, out):
    """One thread's share of a block: ``compose_chunks`` or ``apply_chunks``.

    One call site for both passes halves the time Numba takes to compile the parallel kernel.
    """
    if chunk_pass == COMPOSE:
        compose_chunks(a, b, first_step, chunk_length, length, reverse, product, partial)
    else:
        apply_chunks(a, b, first_step, chunk_length, length, reverse, partial, out)


@njit(cache=True, fastmath=FASTMATH)
def incoming_states(
    a, b, out, reverse, block_start, chunk_length, summary_product, summary_partial, carry
):
    """Scan the chunk summaries of a block: each chunk's incoming state replaces its partial.

    ``carry`` enters as the state before the block and leaves as the state after it.
    """
    for chunk in range(summary_product.shape[0]):
        for d in range(carry.shape[0]):
            incoming = carry[d]
            product = summary_product[chunk, d]
            partial = summary_partial[chunk, d]
            summary_partial[chunk, d] = incoming
            if is_finite(product) and is_finite(partial) and not is_inf(incoming):
                carry[d] = product * incoming + partial
            else:
                # An overflow, Inf or NaN in the chunk or an infinite state: composing can make
                # NaN (inf * 0) where the recursion does not, so step through the chunk.
                chunk_start = block_start + chunk * chunk_length
                chunk_stop = chunk_start + chunk_length
                run_steps(a, b, carry[d : d + 1], out, chunk_start, chunk_stop, reverse, d)


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def linear_recurrence_scan(a, b, h0, out, reverse, chunk_length, threads):
    """Parallel over time: a cache-blocked reduce-then-scan over chunks.

    Time is cut into blocks of ``threads * CHAINS`` chunks of ``chunk_length`` steps. Per block,
    each thread composes its ``CHAINS`` chunks into ``(prod a, h from 0)`` summaries (pass 1), a
    short sequential scan of the summaries gives every chunk's incoming state, and each thread
    reruns its chunks from those states (pass 2), reading ``a`` and ``b`` back from its cache.
    The fewer than ``threads * CHAINS`` steps left at the end run sequentially.
    """
    length, channels = out.shape
    chunk_count = threads * CHAINS
    summary_product = np.empty((chunk_count, channels), out.dtype)
    summary_partial = np.empty((chunk_count, channels), out.dtype)
    carry = h0.copy()
    block_start = 0
    while block_start + chunk_count <= length:
        block_chunk_length = min(chunk_length, (length - block_start) // chunk_count)
        thread_steps = CHAINS * block_chunk_length
        for chunk_pass in (COMPOSE, APPLY):
            if chunk_pass == APPLY:
                incoming_states(
                    a, b, out, reverse, block_start, block_chunk_length,
                    summary_product, summary_partial, carry,
                )  # fmt: skip
            for thread in prange(threads):
                chunks = slice(thread * CHAINS, (thread + 1) * CHAINS)
                walk_chunks(
                    chunk_pass, a, b, block_start + thread * thread_steps, block_chunk_length,
                    length, reverse, summary_product[chunks], summary_partial[chunks], out,
                )  # fmt: skip
        block_start += chunk_count * block_chunk_length
    run_steps(a, b, carry, out, block_start, length, reverse, 0)


def choose_method(length: int, channels: int, itemsize: int, threads: int) -> str:
    """What ``method="auto"`` runs on the CPU (thresholds in ``scanlab.config.cpu``)."""
    few_channels = channels * itemsize <= config.cpu.auto_scan_max_row_bytes
    if few_channels and length >= config.cpu.auto_scan_min_length and threads > 1:
        return "scan"
    return "sequential"


def scan_chunk_length(channels: int, itemsize: int) -> int:
    """Steps per chunk so that a thread's ``CHAINS`` chunks of ``a`` and ``b`` fill its cache.

    Chunks start 1 KiB apart modulo 4 KiB where the row size allows: chunks a multiple of 4 KiB
    apart make the CPU mistake loads of one chunk for stores of another (4K aliasing).
    """
    row_bytes = channels * itemsize
    length = max(1, config.cpu.cache_bytes // (2 * CHAINS * row_bytes))
    page_rows = 4096 // row_bytes
    if 1024 % row_bytes == 0 and length >= page_rows:
        length += 1024 // row_bytes - length % page_rows
    return length


def solve(a, b, h0, out, reverse: bool, method: str) -> None:
    """Run ``method`` ("auto", "sequential" or "scan") on arrays in kernel layout."""
    length, channels = out.shape
    threads = numba.get_num_threads()
    if method == "auto":
        method = choose_method(length, channels, out.itemsize, threads)
    if method == "sequential":
        channel_block = max(1, config.cpu.channel_block_bytes // out.itemsize)
        if channels <= channel_block:
            # One block: the plain loop, without starting a parallel region for one task.
            run_steps(a, b, h0.copy(), out, 0, length, reverse, 0)
        else:
            linear_recurrence_sequential(a, b, h0, out, reverse, channel_block)
    else:
        chunk_length = scan_chunk_length(channels, out.itemsize)
        linear_recurrence_scan(a, b, h0, out, reverse, chunk_length, threads)
