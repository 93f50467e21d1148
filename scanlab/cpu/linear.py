"""CPU kernels for the elementwise linear recurrence ``h_t = a_t * h_{t-1} + b_t``.

Layout seen by every kernel (prepared by ``scanlab._arrays``): ``out`` is C-contiguous ``(T, D)``
with time first; ``a`` and ``b`` are C-contiguous ``(T or 1, D or 1)`` (a length-1 axis broadcasts);
``h0`` is ``(D,)``; all share the result dtype (the time-last kernels, in
:mod:`scanlab.cpu.linear_rows`, see the transposed layout).
``reverse`` runs time backwards. ``out`` never overlaps ``a``, ``b`` or ``h0``. Time is walked in
*steps*: step ``s`` visits row ``time_index(s)`` (:mod:`scanlab._recurrence_numerics`).
"""

from functools import partial

import numba
import numpy as np
from numba import njit, uint64

from scanlab import config
from scanlab._arrays import read_only
from scanlab._kernel_cache import njit_cached
from scanlab._recurrence_numerics import broadcast_steps, time_direction, time_index
from scanlab._scaled_products import (
    CHECK_PERIOD,
    agrees,
    carried,
    in_range,
    product_bounds,
    renormalised,
)
from scanlab.config import FASTMATH
from scanlab.cpu import atomics, auto, streaming
from scanlab.cpu.few_channels import REGISTER_CHAINS, run_few, run_series, series_steps
from scanlab.cpu.scan_lanes import apply_lanes, compose_lanes
from scanlab.cpu.streaming import store_fence, stream_step
from scanlab.cpu.threads import run_together, share_out
from scanlab.cpu.vector_ir import LANE_BYTES, VECTOR_BYTES

#: Chunks each thread of the ``scan`` kernel walks at once: four independent dependency chains
#: hide the latency of a fused multiply-add (and the chains of the product of ``a``). One
#: series (``b`` full in time) walks ``U`` in the lanes of a vector (``scanlab.cpu.scan_lanes``).
CHAINS = 4
#: Tiles of the ``scan`` kernel per thread at least, when the sequence is short enough that
#: cache-sized chunks would give fewer.
TILES_PER_THREAD = 4
#: What a tile of the ``scan`` kernel has published: nothing, its chunks' summaries, or also the
#: state after it.
UNSEEN, COMPOSED, CARRIED = 0, 1, 2


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
def advance_row(a_t, b_t, a_column, b_column, state, out_t):
    """One step for a row of channels: ``state = a_t * state + b_t``, copied to ``out_t``."""
    for d in range(uint64(state.shape[0])):
        value = a_t[d * a_column] * state[d] + b_t[d * b_column]
        state[d] = value
        out_t[d] = value


@njit_cached(fastmath=FASTMATH)
def run_steps(a, b, state, out, first_step, stop_step, reverse, first_channel, stream):
    """Sequential recurrence over steps ``[first_step, stop_step)`` for the channels of ``state``.

    ``state`` holds channels ``first_channel`` onwards and is updated in place. ``stream``:
    write ``out`` a cache line at a time with streaming stores (see
    :func:`scanlab.cpu.streaming.streams` for what that requires).
    """
    length, channels = out.shape
    origin, direction = time_direction(length, reverse)
    a_row, a_column = broadcast_steps(a, length, channels)
    b_row, b_column = broadcast_steps(b, length, channels)
    if state.shape[0] == 1:
        state[0] = series_steps(a, b, state[0], out, first_step, stop_step, reverse, first_channel)
        return
    width = state.shape[0]
    if stream and b_column == 1:
        stream_steps(a, b, state, out, first_step, stop_step, reverse, first_channel)
        return
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


@njit(inline="always")
def stream_steps(a, b, state, out, first_step, stop_step, reverse, first_channel):
    """``run_steps`` with streaming stores, a cache line of channels at a time."""
    length, channels = out.shape
    origin, direction = time_direction(length, reverse)
    a_row, a_column = broadcast_steps(a, length, channels)
    b_row = uint64(b.shape[0] // length)
    lanes = LANE_BYTES // out.itemsize
    for step in range(first_step, stop_step):
        t = time_index(step, origin, direction)
        b_t = b[t * b_row]
        out_t = out[t]
        # Whole rows, indexed from first_channel inside stream_step: slices of them here made
        # LLVM's code 25x slower.
        if a_column == 1:
            a_t = a[t * a_row]
            for d in range(0, state.shape[0], lanes):
                stream_step(a_t, b_t, state, out_t, d, first_channel)
        else:
            coefficient = a[t * a_row, 0]
            for d in range(0, state.shape[0], lanes):
                stream_step(coefficient, b_t, state, out_t, d, first_channel)
    store_fence()


@njit_cached(nogil=True, fastmath=FASTMATH)
def run_blocks(next_block, a, b, h0, out, reverse, channel_block, stream):
    """The blocks of ``linear_recurrence_sequential`` taken from the counter ``next_block``."""
    length, channels = out.shape
    block_count = (channels + channel_block - 1) // channel_block
    block = atomics.fetch_add(next_block, 0, 1)
    while block < block_count:
        first = block * channel_block
        run_block(a, b, h0, out, reverse, first, min(channels, first + channel_block), stream)
        block = atomics.fetch_add(next_block, 0, 1)


@njit_cached(nogil=True, fastmath=FASTMATH)
def run_block(a, b, h0, out, reverse, first, stop, stream):
    """The sequential recurrence of channels ``[first, stop)`` over all steps, from ``h0``'s.

    Their state starts on a cache line: stored and loaded back at every step, a state whose
    vectors straddled lines (NumPy aligns to 16 bytes) made the loop 1.1-2.2x slower (Zen 4,
    float32, 32 and 64 channels)."""
    width = stop - first
    spare = LANE_BYTES // h0.itemsize
    buffer = np.empty(width + spare, h0.dtype)
    start = (-buffer.ctypes.data % LANE_BYTES) // h0.itemsize
    state = buffer[start : start + width]
    for channel in range(width):  # not a slice assignment: its shape check's message costs
        state[channel] = h0[first + channel]  # 2.4 s of compilation in a process without cache
    run_steps(a, b, state, out, 0, out.shape[0], reverse, first, stream)


def linear_recurrence_sequential(a, b, h0, out, reverse, channel_block, stream):
    """One pass over time, parallel over blocks of ``channel_block`` contiguous channels;
    ``stream``: with streaming stores (:func:`scanlab.cpu.streaming.streams` must hold)."""
    blocks = -(-out.shape[1] // channel_block)
    share_out(run_blocks, blocks, (a, b, h0, out, reverse, channel_block, stream), out.size)


@njit_cached(fastmath=FASTMATH)
def compose_chunks(a, b, first_step, chunk_length, length, reverse, summary, bounds):
    """Summaries of ``CHAINS`` consecutive chunks, walked in lockstep.

    Chunk ``c`` covers ``chunk_length`` steps from ``first_step + c * chunk_length``; its summary
    is ``summary = (product, partial, exponent)`` at row ``c``: ``prod a`` as ``product *
    2**exponent``, kept in range every ``CHECK_PERIOD`` steps (``scanlab._scaled_products``), and
    ``partial``, its last state when started from zero. Written once, at the end: threads'
    summaries may share cache lines.
    """
    product, partial, exponent = summary
    channels = product.shape[1]
    origin, direction = time_direction(length, reverse)
    a_row, a_column = broadcast_steps(a, length, channels)
    b_row, b_column = broadcast_steps(b, length, channels)
    if channels == 1:
        # One series: four scalar chains in registers.
        p0 = p1 = p2 = p3 = product.dtype.type(1)
        q0 = q1 = q2 = q3 = partial.dtype.type(0)
        e0 = e1 = e2 = e3 = 0
        for period_start in range(0, chunk_length, CHECK_PERIOD):
            for offset in range(period_start, min(period_start + CHECK_PERIOD, chunk_length)):
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
            if not (
                in_range(p0, bounds) and in_range(p1, bounds)
                and in_range(p2, bounds) and in_range(p3, bounds)
            ):  # fmt: skip
                p0, e0 = renormalised(p0, e0)
                p1, e1 = renormalised(p1, e1)
                p2, e2 = renormalised(p2, e2)
                p3, e3 = renormalised(p3, e3)
        product[0, 0], product[1, 0], product[2, 0], product[3, 0] = p0, p1, p2, p3
        partial[0, 0], partial[1, 0], partial[2, 0], partial[3, 0] = q0, q1, q2, q3
        exponent[0, 0], exponent[1, 0], exponent[2, 0], exponent[3, 0] = e0, e1, e2, e3
        return
    # A run-time chain count: LLVM does not unroll the vectorised row loop four times.
    chains = product.shape[0]
    local_product = np.ones((chains, channels), product.dtype)
    local_partial = np.zeros((chains, channels), partial.dtype)
    local_exponent = np.zeros((chains, channels), np.int64)
    for period_start in range(0, chunk_length, CHECK_PERIOD):
        for offset in range(period_start, min(period_start + CHECK_PERIOD, chunk_length)):
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
                if not in_range(local_product[chain, d], bounds):
                    local_product[chain, d], local_exponent[chain, d] = renormalised(
                        local_product[chain, d], local_exponent[chain, d]
                    )
    for chain in range(chains):
        for d in range(channels):
            product[chain, d] = local_product[chain, d]
            partial[chain, d] = local_partial[chain, d]
            exponent[chain, d] = local_exponent[chain, d]


@njit_cached(fastmath=FASTMATH)
def apply_chunks(a, b, first_step, chunk_length, length, reverse, incoming, out, ends):
    """Run ``CHAINS`` consecutive chunks in lockstep from their ``incoming`` states into ``out``;
    ``ends`` receives the state each chunk ends in."""
    channels = incoming.shape[1]
    origin, direction = time_direction(length, reverse)
    a_row, a_column = broadcast_steps(a, length, channels)
    b_row, b_column = broadcast_steps(b, length, channels)
    if channels == 1:
        h0, h1, h2, h3 = incoming[0, 0], incoming[1, 0], incoming[2, 0], incoming[3, 0]
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
        ends[0, 0], ends[1, 0], ends[2, 0], ends[3, 0] = h0, h1, h2, h3
        return
    chains = incoming.shape[0]
    for chain in range(chains):
        for d in range(channels):
            ends[chain, d] = incoming[chain, d]
    for offset in range(chunk_length):
        for chain in range(chains):
            t = time_index(first_step + chain * chunk_length + offset, origin, direction)
            advance_row(a[t * a_row], b[t * b_row], a_column, b_column, ends[chain], out[t])


@njit(fastmath=FASTMATH)
def stepped_state(a, b, state, first_step, stop_step, length, reverse, channel):
    """The state of ``channel`` after steps ``[first_step, stop_step)`` from ``state``, step by
    step as the loop computes it (nothing is written)."""
    origin, direction = time_direction(length, reverse)
    a_row, a_d = uint64(a.shape[0] > 1), uint64(channel) * uint64(a.shape[1] > 1)
    b_row, b_d = uint64(b.shape[0] > 1), uint64(channel) * uint64(b.shape[1] > 1)
    for step in range(first_step, stop_step):
        t = time_index(step, origin, direction)
        state = a[t * a_row, a_d] * state + b[t * b_row, b_d]
    return state


@njit(fastmath=FASTMATH)
def carry_through_chunks(
    a, b, state, summary, first_step, chunk_length, length, reverse, bounds, starts
):
    """Carry ``state`` (a row of channels, updated in place) through the chunks of ``summary``,
    which start at ``first_step``; ``starts`` (``0 x D`` for none) receives each chunk's
    incoming state.

    A chunk whose composition has NaN or Inf in it is stepped through instead (``carried``).
    """
    product, partial, exponent = summary
    for row in range(product.shape[0]):
        chunk_start = first_step + row * chunk_length
        for d in range(state.shape[0]):
            if starts.shape[0]:
                starts[row, d] = state[d]
            value, usable = carried(
                product[row, d], exponent[row, d], partial[row, d], state[d], bounds
            )
            if not usable:
                value = stepped_state(
                    a, b, state[d], chunk_start, chunk_start + chunk_length, length, reverse, d
                )
            state[d] = value


@njit(fastmath=FASTMATH)
def settle_chunks(a, b, out, starts, ends, chunk_length, length, reverse, bounds):
    """Rerun, from the loop's state, every chunk whose incoming carry disagrees with the state
    the chunk before it ended in (``agrees``), for as long as they disagree; ``ends`` then holds
    the loop's states."""
    for chunk in range(1, starts.shape[0]):
        for d in range(starts.shape[1]):
            if not agrees(ends[chunk - 1, d], starts[chunk, d], bounds):
                state = ends[chunk - 1, d : d + 1].copy()
                starts[chunk, d] = state[0]
                first_step = chunk * chunk_length
                run_steps(
                    a, b, state, out, first_step, first_step + chunk_length, reverse, d, False
                )
                ends[chunk, d] = state[0]


@njit_cached(nogil=True, fastmath=FASTMATH)
def work_on_tiles(
    a, b, h0, out, reverse, chunk_length, chains, lanes, stream, bounds, summary, starts, ends,
    carries, status, next_tile,
):  # fmt: skip
    """One thread's part of ``linear_recurrence_scan``: take the next tile until none is left.

    For each: look back to the nearest published carry, carry it through the tiles in between
    (their summaries as published, or composed here when their thread has not got that far: a
    late thread never holds the others up) and through this tile, composed and published on
    the way; publish the carry after the tile; rerun the tile's chunks from their incoming
    states into ``out``. Each kernel is called from one place, and the parallel loop's body is
    one call: Numba compiles much faster so.
    """
    length, channels = out.shape
    tile_steps = chains * chunk_length
    scratch = (
        np.empty((chains, channels), summary[0].dtype),
        np.empty((chains, channels), out.dtype),
        np.empty((chains, channels), np.int64),
    )
    no_starts = np.empty((0, channels), out.dtype)
    tile = atomics.fetch_add(next_tile, 0, 1)
    while tile < status.shape[0]:
        source = tile - 1
        while source >= 0 and atomics.load(status, source) != CARRIED:
            source -= 1
        state = h0.copy() if source < 0 else carries[source].copy()
        for between in range(source + 1, tile + 1):
            rows = slice(between * chains, (between + 1) * chains)
            first_step = between * tile_steps
            published = (summary[0][rows], summary[1][rows], summary[2][rows])
            own = between == tile
            used = published
            if own or atomics.load(status, between) == UNSEEN:
                used = published if own else scratch
                if lanes:
                    compose_lanes(a, b, first_step, chunk_length, length, reverse, used, bounds)
                else:
                    compose_chunks(a, b, first_step, chunk_length, length, reverse, used, bounds)
                if own:
                    atomics.store(status, tile, COMPOSED)
            carry_through_chunks(
                a, b, state, used, first_step, chunk_length, length, reverse, bounds,
                starts[rows] if own else no_starts,
            )  # fmt: skip
        for d in range(channels):
            carries[tile, d] = state[d]
        atomics.store(status, tile, CARRIED)
        rows = slice(tile * chains, (tile + 1) * chains)
        first_step = tile * tile_steps
        if lanes:
            apply_lanes(
                a, b, first_step, chunk_length, length, reverse, starts[rows], out, ends[rows],
                stream,
            )  # fmt: skip
        else:
            apply_chunks(
                a, b, first_step, chunk_length, length, reverse, starts[rows], out, ends[rows]
            )
        tile = atomics.fetch_add(next_tile, 0, 1)
    store_fence()


def linear_recurrence_scan(
    a, b, h0, out, reverse, chunk_length, lanes, stream, threads, bounds, product_dtype
):  # fmt: skip
    """Parallel over time: a reduce-then-scan over tiles, handed out as threads come free.

    Time is cut into tiles of ``CHAINS`` chunks of ``chunk_length`` steps, or, with ``lanes``
    (one channel, ``b`` full in time), of ``U`` chunks walked in the lanes of one vector
    (:mod:`scanlab.cpu.scan_lanes`; ``stream``: the results written with streaming stores, see
    :func:`lanes_stream`). A thread takes the
    next tile (an atomic counter), composes its chunks into summaries (``prod a`` kept in range
    and the state from zero) and publishes them, finds the state before the tile by looking back
    to the nearest published carry (composing any tile in between whose thread is late itself),
    publishes the carry after its tile, and reruns its chunks from their incoming states,
    reading ``a`` and ``b`` back from its cache. ``threads`` threads run ``work_on_tiles`` at
    once (:func:`scanlab.cpu.threads.run_together`): no thread ever waits for another until the
    end, so a thread descheduled by a busy neighbour delays the scan by at most its own tile.
    Then the loop's state at the end of each chunk is checked against the carry the next one
    started from, and the fewer than a tile's steps left at the end run sequentially
    (:func:`finish_scan`).
    """
    length, channels = out.shape
    chains = lane_chains(out) if lanes else CHAINS
    tiles = length // (chains * chunk_length)
    dtype = out.dtype
    summary = (
        np.empty((tiles * chains, channels), product_dtype),
        np.empty((tiles * chains, channels), dtype),
        np.empty((tiles * chains, channels), np.int64),
    )
    starts = np.empty((tiles * chains, channels), dtype)
    ends = np.empty((tiles * chains, channels), dtype)
    carries = np.empty((tiles, channels), dtype)
    status = np.zeros(tiles, np.int64)
    next_tile = np.zeros(1, np.int64)
    run_together(
        min(threads, tiles),
        work_on_tiles,
        (a, b, h0, out, reverse, chunk_length, chains, lanes, stream, bounds, summary, starts,
         ends, carries, status, next_tile),
    )  # fmt: skip
    finish_scan(a, b, h0, out, reverse, chunk_length, bounds, starts, ends)


@njit_cached(nogil=True, fastmath=FASTMATH)
def finish_scan(a, b, h0, out, reverse, chunk_length, bounds, starts, ends):
    """The end of ``linear_recurrence_scan``: chunks whose carry disagrees with the loop's state
    rerun (``settle_chunks``), then the steps after the last tile."""
    length = out.shape[0]
    settle_chunks(a, b, out, starts, ends, chunk_length, length, reverse, bounds)
    chunks = starts.shape[0]
    carry = h0.copy() if chunks == 0 else ends[chunks - 1].copy()
    run_steps(a, b, carry, out, chunks * chunk_length, length, reverse, np.int64(0), False)


def choose_method(length: int, channels: int, dtype, threads: int) -> str:
    """What ``method="auto"`` runs on the CPU for a time-first problem: see
    :func:`scanlab.cpu.auto.measured_choice` (the loop until the problem's kind is measured)."""
    choice = auto.measured_choice(
        "linear", length, channels, dtype, threads, measured_speeds, timed=False
    )
    with choice as method:
        return method


def measured_speeds(dtype, channels: int, threads: int, elements: int) -> dict:
    """Nanoseconds per element of each method on this machine, for a problem of ``channels``
    channels and ``elements`` elements (at least ``config.cpu.auto_scan_min_length`` steps),
    coefficients uniform in ``[0.5, 1)`` (the scan's cost no longer depends on them)."""
    length = auto.calibration_length(channels, elements)
    return auto.calibration_speeds(solve, (length, channels), channels, dtype, threads)


def scan_chunk_length(channels: int, itemsize: int, chains: int) -> int:
    """Steps per chunk so that a thread's ``chains`` chunks of ``a`` and ``b`` fill its cache.

    Chunks start ``4 KiB / chains`` apart modulo 4 KiB where the row size allows, so that the
    chains' loads and stores fall on different sets: chunks a multiple of 4 KiB apart make the
    CPU mistake loads of one chunk for stores of another (4K aliasing).
    """
    row_bytes = channels * itemsize
    length = max(1, config.cpu.cache_bytes // (2 * chains * row_bytes))
    page_rows, spacing = 4096 // row_bytes, 4096 // chains
    if spacing % row_bytes == 0 and length >= page_rows:
        length += spacing // row_bytes - length % page_rows
    return length


def lane_chains(out) -> int:
    """Chunks of a tile walked in the lanes of one vector (``scanlab.cpu.scan_lanes``): the
    values of ``out``'s dtype in the widest register, ``U``."""
    return VECTOR_BYTES // out.itemsize


def scan_tiles(a, b, out, threads: int) -> tuple[bool, int]:
    """``(lanes, chunk_length)`` of the scan of this problem: chunks in the lanes of a vector
    for one channel with ``b`` full in time, if its tiles (``U`` chunks of a multiple of ``U``
    steps) leave ``TILES_PER_THREAD`` for each thread; else ``CHAINS`` scalar chains. The
    chunks fill the cache (:func:`scan_chunk_length`), shorter for short sequences, so that
    threads that come free take over a late one's share."""
    length, channels = out.shape
    if channels == 1 and b.shape[0] == length:
        lanes = lane_chains(out)
        chunk_length = min(
            max(lanes, scan_chunk_length(1, out.itemsize, lanes)),
            length // (lanes * threads * TILES_PER_THREAD),
        )
        if chunk_length >= lanes:
            return True, chunk_length - chunk_length % lanes
    balanced = length // (CHAINS * threads * TILES_PER_THREAD)
    return False, max(1, min(scan_chunk_length(channels, out.itemsize, CHAINS), balanced))


def lanes_stream(out, reverse: bool) -> bool:
    """Whether the scan's tiles in lanes (:func:`apply_lanes`) may write ``out`` (``(T, 1)``)
    with streaming stores: as the sequential kernel may (:func:`scanlab.cpu.streaming.streams`),
    for results of at least ``streaming_threshold()`` bytes, on a line boundary; backwards, with
    ``T`` a multiple of ``U`` too, so that the tiles' rows start on lines."""
    lanes = lane_chains(out)
    return (
        out.nbytes >= streaming.streaming_threshold()
        and out.ctypes.data % LANE_BYTES == 0
        and (not reverse or out.shape[0] % lanes == 0)
    )


def solve(a, b, h0, out, reverse: bool, method: str, stream=None) -> None:
    """Run ``method`` ("auto", "sequential" or "scan") on arrays in kernel layout (``a``,
    ``b`` and ``h0`` handed to the kernels read-only: one specialisation, see
    :func:`scanlab._arrays.read_only`); ``stream``: whether the result is written with
    streaming stores where its layout allows (None: where they were measured to pay,
    ``auto.streaming_choice``)."""
    a, b, h0 = read_only(a), read_only(b), read_only(h0)
    length, channels = out.shape
    if method == "auto" and length < config.cpu.auto_scan_min_length:
        method = "sequential"  # as measured_choice decides, without its cost (a few us)
    if method == "auto":
        threads = numba.get_num_threads()
        operands = auto.broadcast_operands(out, a=a, b=b)
        with auto.measured_choice(
            "linear", length, channels, out.dtype, threads, measured_speeds, operands=operands
        ) as method:
            solve(a, b, h0, out, reverse, method)
        return
    if method == "sequential":
        channel_block = max(1, config.cpu.channel_block_bytes // out.itemsize)
        possible = streaming.streams(out, channel_block)
        run = partial(run_sequential, a, b, h0, out, reverse, channel_block)
    else:
        threads = numba.get_num_threads()
        lanes, chunk_length = scan_tiles(a, b, out, threads)
        possible = lanes and lanes_stream(out, reverse)
        run = partial(run_scan, a, b, h0, out, reverse, chunk_length, lanes, threads)
    if stream is not None or not possible:
        run(possible and bool(stream))
        return
    with auto.streaming_choice(method, out.dtype, solve, possible, out.size) as stream:
        run(stream)


def run_sequential(a, b, h0, out, reverse: bool, channel_block: int, stream: bool) -> None:
    """The sequential kernel: blocks of ``channel_block`` channels in parallel."""
    if out.shape[1] == 1:
        run_series(a, b, h0, out, reverse)
    elif out.shape[1] <= REGISTER_CHAINS:
        run_few(a, b, h0, out, reverse)
    elif out.shape[1] <= channel_block:
        # One block: the plain loop, without starting a parallel region for one task.
        run_block(a, b, h0, out, reverse, 0, out.shape[1], stream)
    else:
        linear_recurrence_sequential(a, b, h0, out, reverse, channel_block, stream)


def run_scan(a, b, h0, out, reverse, chunk_length, lanes, threads, stream: bool) -> None:
    """The scan kernel over chunks of ``chunk_length`` steps (in vector lanes: ``lanes``)."""
    bounds = product_bounds(out.dtype, chunk_length)
    product_dtype = np.result_type(out.dtype, np.float64)
    linear_recurrence_scan(
        a, b, h0, out, reverse, chunk_length, lanes, stream, threads, bounds, product_dtype
    )
