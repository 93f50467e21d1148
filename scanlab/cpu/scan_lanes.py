"""The CPU scan of one series in the lanes of a vector: ``U`` consecutive chunks of a tile
(:mod:`scanlab.cpu.linear`'s ``linear_recurrence_scan``), viewed as the rows of a ``(U, chunk
length)`` array, are composed and rerun as :mod:`scanlab.cpu.row_tiles` walks time-last rows:
square tiles of ``U`` chunks and ``U`` steps transposed in registers, one vector multiply-add a
step for all ``U`` chunks (``VECTOR_BYTES`` of the dtype: 16 float32, 8 float64, 8 complex64, 4
complex128 with AVX-512), where scalar chains spent one per chunk. Layout as in
:mod:`scanlab.cpu.linear` with one channel: ``(T, 1)`` arrays, ``a`` possibly ``(1, 1)``, ``b``
full in time.
"""

import numpy as np
from numba import njit

from scanlab._kernel_cache import njit_cached
from scanlab._scaled_products import CHECK_PERIOD, in_range, renormalised
from scanlab.config import FASTMATH
from scanlab.cpu.row_tiles import CONSTANT, FULL, tile_compose, tile_step
from scanlab.cpu.vector_ir import VECTOR_BYTES


@njit(inline="always")
def lane_tile(array, first_step, chains, chunk_length, length, reverse):
    """The ``chains`` chunks of ``chunk_length`` steps from ``first_step`` of a one-channel
    ``(T, 1)`` array as a ``(chains, chunk_length)`` view, one chunk a row (chunk ``c`` in row
    ``c``, or ``chains - 1 - c`` if ``reverse``); a ``(1, 1)`` array as it is."""
    if array.shape[0] == 1:
        return array
    count = chains * chunk_length
    low = length - first_step - count if reverse else first_step
    return array.reshape(array.shape[0])[low : low + count].reshape((chains, chunk_length))


@njit(inline="always")
def lane_chain(lane, chains, reverse):
    """The chunk (of a tile, in step order) that ``lane`` of :func:`lane_tile` holds."""
    return chains - 1 - lane if reverse else lane


@njit(inline="always")
def lane_step(a, b, out, state, start, reverse, stream):
    """:func:`scanlab.cpu.row_tiles.tile_step` on all the rows of :func:`lane_tile` views,
    ``reverse`` and the broadcast of ``a`` (full, or one value) made constants."""
    rows = state.shape[0]
    if reverse:
        if a.shape[0] == 1:
            tile_step(a, b, out, state, 0, rows, start, True, CONSTANT, stream, VECTOR_BYTES)
        else:
            tile_step(a, b, out, state, 0, rows, start, True, FULL, stream, VECTOR_BYTES)
    elif a.shape[0] == 1:
        tile_step(a, b, out, state, 0, rows, start, False, CONSTANT, stream, VECTOR_BYTES)
    else:
        tile_step(a, b, out, state, 0, rows, start, False, FULL, stream, VECTOR_BYTES)


@njit(inline="always")
def lane_compose(a, b, product, state, start, reverse):
    """:func:`scanlab.cpu.row_tiles.tile_compose` as :func:`lane_step` calls ``tile_step``."""
    rows = state.shape[0]
    if reverse:
        if a.shape[0] == 1:
            tile_compose(a, b, product, state, 0, rows, start, True, CONSTANT, VECTOR_BYTES)
        else:
            tile_compose(a, b, product, state, 0, rows, start, True, FULL, VECTOR_BYTES)
    elif a.shape[0] == 1:
        tile_compose(a, b, product, state, 0, rows, start, False, CONSTANT, VECTOR_BYTES)
    else:
        tile_compose(a, b, product, state, 0, rows, start, False, FULL, VECTOR_BYTES)


@njit_cached(fastmath=FASTMATH)
def compose_lanes(a, b, first_step, chunk_length, length, reverse, summary, bounds):
    """``scanlab.cpu.linear.compose_chunks`` for one series with a ``b`` full in time: its
    ``U`` chunks (``chunk_length`` a multiple of ``U``) composed in the lanes of one vector,
    the products in double precision."""
    product, partial, exponent = summary
    chains = product.shape[0]
    a_tile = lane_tile(a, first_step, chains, chunk_length, length, reverse)
    b_tile = lane_tile(b, first_step, chains, chunk_length, length, reverse)
    running = np.ones(chains, product.dtype)
    state = np.zeros(chains, partial.dtype)
    shift = np.zeros(chains, np.int64)
    for period_start in range(0, chunk_length, CHECK_PERIOD):
        for offset in range(period_start, min(period_start + CHECK_PERIOD, chunk_length), chains):
            start = chunk_length - chains - offset if reverse else offset
            lane_compose(a_tile, b_tile, running, state, start, reverse)
        for lane in range(chains):
            if not in_range(running[lane], bounds):
                running[lane], shift[lane] = renormalised(running[lane], shift[lane])
    for lane in range(chains):
        chain = lane_chain(lane, chains, reverse)
        product[chain, 0], partial[chain, 0] = running[lane], state[lane]
        exponent[chain, 0] = shift[lane]


@njit_cached(fastmath=FASTMATH)
def apply_lanes(a, b, first_step, chunk_length, length, reverse, incoming, out, ends, stream):
    """``scanlab.cpu.linear.apply_chunks`` for the tiles of :func:`compose_lanes`: the ``U``
    chunks run in the lanes of one vector; with ``stream``, ``out`` written with streaming
    stores (``scanlab.cpu.linear.lanes_stream`` must hold)."""
    chains = incoming.shape[0]
    a_tile = lane_tile(a, first_step, chains, chunk_length, length, reverse)
    b_tile = lane_tile(b, first_step, chains, chunk_length, length, reverse)
    out_tile = lane_tile(out, first_step, chains, chunk_length, length, reverse)
    state = np.empty(chains, out.dtype)
    for lane in range(chains):
        state[lane] = incoming[lane_chain(lane, chains, reverse), 0]
    for offset in range(0, chunk_length, chains):
        start = chunk_length - chains - offset if reverse else offset
        lane_step(a_tile, b_tile, out_tile, state, start, reverse, stream)
    for lane in range(chains):
        ends[lane_chain(lane, chains, reverse), 0] = state[lane]
