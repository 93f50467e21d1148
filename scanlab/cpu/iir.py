"""IIR filters over rows, time contiguous: the transposed direct form II of ``lfilter`` and the
cascaded second-order sections of ``sosfilt``, scipy's arithmetic step for step.

Each thread filters a group of ``ROW_CHAINS`` rows together, ``STEPS`` steps at a time: it copies
the steps of its rows into a small time-first buffer in the L1 cache (square tiles transposed in
registers), filters the buffer one step at a time for all its rows at once (one lane of a vector
each), and copies the results back into their rows (:mod:`scanlab.cpu.filter_lanes`). No
fastmath: without contracted multiply-adds the results are scipy's, bit for bit.
"""

import numpy as np
from numba import njit, prange, uint64

from scanlab.cpu import atomics
from scanlab.cpu.filter_lanes import (
    LANES,
    direct_form_step,
    load_lanes,
    sections_step,
    store_lanes,
)

#: Rows each thread filters together, one lane of a vector each.
ROW_CHAINS = LANES
#: Steps of a group's rows filtered between two copies through the time-first buffer.
STEPS = 64
#: Elements each task of :func:`scale_blocks` scales.
SCALE_BLOCK = 2**16
#: Steps of a row each task of :func:`fir_blocks` filters, and the steps of its tiles.
FIR_STEPS, FIR_TILE = 2**14, 256


@njit(cache=True, parallel=True)
def lfilter_rows(b, a, x, state, out):
    """Filter each row of ``x`` (``(D, T)``) by ``b``, ``a`` (normalised, ``a[0] = 1``, both
    of length ``K + 1``) from ``state`` (``(D, K)``, overwritten with the final state) into
    ``out``::

        y[t] = b[0] x[t] + z[0]
        z[i] = z[i + 1] + b[i + 1] x[t] - a[i + 1] y[t]   (i < K - 1)
        z[K - 1] = b[K] x[t] - a[K] y[t]
    """
    rows, length = x.shape
    order = state.shape[1]
    for group in prange((rows + ROW_CHAINS - 1) // ROW_CHAINS):
        first = group * ROW_CHAINS
        count = min(ROW_CHAINS, rows - first)
        # Lanes past the last row filter zeros from zero states, and are never stored.
        z = np.zeros((max(order, 1), ROW_CHAINS), out.dtype)
        block = np.zeros((STEPS, ROW_CHAINS), out.dtype)
        for k in range(count):
            for i in range(order):
                z[i, k] = state[first + k, i]
        for start in range(0, length, STEPS):
            steps = min(STEPS, length - start)
            load_lanes(x, first, count, start, steps, block)
            for j in range(steps):
                if order:
                    direct_form_step(b, a, block, j, z)
                else:
                    for k in range(ROW_CHAINS):
                        block[j, k] = b[0] * block[j, k]
            store_lanes(block, first, count, start, steps, out)
        for k in range(count):
            for i in range(order):
                state[first + k, i] = z[i, k]


@njit(cache=True, parallel=True)
def sosfilt_rows(sos, x, state, out):
    """Filter each row of ``x`` (``(D, T)``) through the second-order sections ``sos``
    (``(S, 6)``: ``b0 b1 b2 1 a1 a2``) in cascade, from ``state`` (``(D, S, 2)``, overwritten
    with the final state) into ``out``."""
    rows, length = x.shape
    sections = sos.shape[0]
    for group in prange((rows + ROW_CHAINS - 1) // ROW_CHAINS):
        first = group * ROW_CHAINS
        count = min(ROW_CHAINS, rows - first)
        # Lanes past the last row filter zeros from zero states, and are never stored.
        z = np.zeros((sections, 2, ROW_CHAINS), out.dtype)
        block = np.zeros((STEPS, ROW_CHAINS), out.dtype)
        for k in range(count):
            for s in range(sections):
                z[s, 0, k], z[s, 1, k] = state[first + k, s, 0], state[first + k, s, 1]
        for start in range(0, length, STEPS):
            steps = min(STEPS, length - start)
            load_lanes(x, first, count, start, steps, block)
            for j in range(steps):
                sections_step(sos, block, j, z)
            store_lanes(block, first, count, start, steps, out)
        for k in range(count):
            for s in range(sections):
                state[first + k, s, 0], state[first + k, s, 1] = z[s, 0, k], z[s, 1, k]


@njit(cache=True, nogil=True)
def fir_blocks(counter, b, x, state, out, final):
    """Filter each row of ``x`` (``(D, T)``) by the FIR filter ``b`` (length ``K + 1``) from
    the delays ``state`` (``(D, K)``) into ``out``, as scipy does (a convolution)::

        y[t] = sum(b[k] x[t - k] for k <= t) + state[t]   (the last term where t < K)

    and the final delays into ``final`` (``(D, K)``): ``final[i] = sum(b[j] x[T + i - j] for
    j > i, T + i - j >= 0) + state[T + i]`` (the last term where ``T + i < K``). A NaN or Inf
    sample reaches the ``K + 1`` outputs from it on, no further (the direct form's ``0 * y``
    would carry it on for ever). Tasks from ``counter``
    (:func:`scanlab.cpu.threads.share_out`): ``FIR_STEPS`` steps of one row each; the task of a
    row's first steps writes its final delays."""
    rows, length = x.shape
    order = state.shape[1]
    blocks = -(-length // FIR_STEPS)
    task = atomics.fetch_add(counter, 0, 1)
    while task < rows * blocks:
        row, block = task // blocks, task % blocks
        start, stop = block * FIR_STEPS, min((block + 1) * FIR_STEPS, length)
        samples, filtered = x[row], out[row]
        # Each tap's pass over a tile in the L1 cache; unsigned indices (no wraparound of
        # negative ones to check): LLVM vectorises the passes.
        for tile in range(start, stop, FIR_TILE):
            tile_stop = uint64(min(tile + FIR_TILE, stop))
            for t in range(uint64(tile), tile_stop):
                filtered[t] = b[0] * samples[t]
            for k in range(1, order + 1):
                tap = b[k]
                for t in range(uint64(max(tile, k)), tile_stop):
                    filtered[t] += tap * samples[t - uint64(k)]
        for t in range(start, min(stop, order)):
            filtered[t] += state[row, t]
        if block == 0:
            for i in range(order):
                total = out.dtype.type(0)
                for j in range(i + 1, order + 1):
                    if length + i - j >= 0:
                        total += b[j] * samples[length + i - j]
                if length + i < order:
                    total += state[row, length + i]
                final[row, i] = total
        task = atomics.fetch_add(counter, 0, 1)


@njit(cache=True, nogil=True)
def scale_blocks(counter, values, scale, finite):
    """``values *= scale`` (a flat array), in blocks of ``SCALE_BLOCK`` elements taken from
    ``counter`` (:func:`scanlab.cpu.threads.share_out`); ``finite[k]``: whether block ``k`` is
    then free of NaN and Inf. One pass for the first-order filter's scaling and the check that
    decides whether its recurrence was scipy's delay line. (In place, one array: LLVM
    vectorises it; a source and a destination that may be the same array it does not.)"""
    block = atomics.fetch_add(counter, 0, 1)
    while block < finite.shape[0]:
        spoiled = 0
        for i in range(block * SCALE_BLOCK, min((block + 1) * SCALE_BLOCK, values.shape[0])):
            value = scale * values[i]
            values[i] = value
            spoiled += value - value != 0  # NaN unless finite
        finite[block] = spoiled == 0
        block = atomics.fetch_add(counter, 0, 1)
