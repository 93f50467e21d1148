"""IIR filters over rows, time contiguous: the transposed direct form II of ``lfilter`` and the
cascaded second-order sections of ``sosfilt``, scipy's arithmetic step for step.

Each thread filters a group of ``ROW_CHAINS`` rows together, ``STEPS`` steps at a time: it copies
the steps of its rows into a small time-first buffer in the L1 cache (square tiles transposed in
registers), filters the buffer one step at a time for all its rows at once (one lane of a vector
each), and copies the results back into their rows (:mod:`scanlab.cpu.filter_lanes`). Time-major
signals (``(T, D)``, channels contiguous: ``axis=0`` of a C array) are filtered as they lie by the
``*_steps`` twins, whose buffer takes the steps' channels as they are. No fastmath: without
contracted multiply-adds the results are scipy's, bit for bit.
"""

import numpy as np
from numba import njit, prange, uint64

from scanlab._kernel_cache import njit_cached
from scanlab.cpu import atomics
from scanlab.cpu.filter_lanes import (
    LANES,
    direct_form_step,
    load_lanes,
    load_steps,
    sections_step,
    store_lanes,
    store_steps,
)

#: Rows each thread filters together, one lane of a vector each.
ROW_CHAINS = LANES
#: Steps of a group's rows filtered between two copies through the time-first buffer.
STEPS = 64
#: Elements each task of :func:`scale_blocks` scales.
SCALE_BLOCK = 2**16
#: Steps of a row each task of :func:`fir_blocks` filters, and the steps of its tiles.
FIR_STEPS, FIR_TILE = 2**14, 256
#: Steps (of every channel) each task of :func:`fir_steps` filters, and the elements of its
#: tiles.
FIR_ROWS, FIR_TILE_ELEMENTS = 2**10, 2048


@njit_cached(parallel=True)
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


@njit_cached(parallel=True)
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


@njit(inline="always")
def copy_delays(state, delays, first_group, into_delays):
    """Between ``state`` (``(D, n)``, channels first) and ``delays`` (``(groups, n, LANES)``,
    the groups of a run from ``first_group``, lanes last), in the direction ``into_delays``."""
    channels = state.shape[0]
    for group in range(delays.shape[0]):
        first = (first_group + group) * LANES
        for k in range(min(LANES, channels - first)):
            for i in range(state.shape[1]):
                if into_delays:
                    delays[group, i, k] = state[first + k, i]
                else:
                    state[first + k, i] = delays[group, i, k]


@njit(inline="always")
def thread_groups(channels, threads):
    """``(parts, groups)``: the groups of ``LANES`` channels of a time-major signal, cut into
    ``parts`` runs of consecutive groups, one per thread of ``threads``."""
    groups = (channels + LANES - 1) // LANES
    return max(1, min(threads, groups)), groups


@njit_cached(parallel=True)
def lfilter_steps(b, a, x, state, out, threads):
    """:func:`lfilter_rows` of a time-major ``x`` (``(T, D)``) into ``out`` (``(T, D)``), with
    no transposing copy: each of ``threads`` threads takes a run of consecutive groups of
    ``LANES`` channels and walks them through each ``STEPS`` steps in turn, so that the cache
    lines the groups share are read once."""
    length, channels = x.shape
    order = state.shape[1]
    parts, groups = thread_groups(channels, threads)
    for part in prange(parts):
        first_group, stop_group = part * groups // parts, (part + 1) * groups // parts
        z = np.zeros((stop_group - first_group, max(order, 1), LANES), out.dtype)
        block = np.zeros((STEPS, LANES), out.dtype)
        copy_delays(state, z[:, :order], first_group, True)
        for start in range(0, length, STEPS):
            steps = min(STEPS, length - start)
            for group in range(first_group, stop_group):
                first = group * LANES
                count = min(LANES, channels - first)
                load_steps(x, first, count, start, steps, block)
                delays = z[group - first_group]
                for j in range(steps):
                    if order:
                        direct_form_step(b, a, block, j, delays)
                    else:
                        for k in range(LANES):
                            block[j, k] = b[0] * block[j, k]
                store_steps(block, first, count, start, steps, out)
        copy_delays(state, z[:, :order], first_group, False)


@njit_cached(parallel=True)
def sosfilt_steps(sos, x, state, out, threads):
    """:func:`sosfilt_rows` of a time-major ``x`` (``(T, D)``) into ``out``, walked as
    :func:`lfilter_steps` walks it; ``state`` is ``(D, 2 S)`` (each section's two delays)."""
    length, channels = x.shape
    sections = sos.shape[0]
    parts, groups = thread_groups(channels, threads)
    for part in prange(parts):
        first_group, stop_group = part * groups // parts, (part + 1) * groups // parts
        z = np.zeros((stop_group - first_group, sections, 2, LANES), out.dtype)
        block = np.zeros((STEPS, LANES), out.dtype)
        flat_z = z.reshape(stop_group - first_group, 2 * sections, LANES)
        copy_delays(state, flat_z, first_group, True)
        for start in range(0, length, STEPS):
            steps = min(STEPS, length - start)
            for group in range(first_group, stop_group):
                first = group * LANES
                count = min(LANES, channels - first)
                load_steps(x, first, count, start, steps, block)
                delays = z[group - first_group]
                for j in range(steps):
                    sections_step(sos, block, j, delays)
                store_steps(block, first, count, start, steps, out)
        copy_delays(state, flat_z, first_group, False)


@njit(inline="always")
def final_delays(b, samples, initial, final):
    """An FIR filter's delays after one channel's ``samples`` (length ``T``), from its
    ``initial`` ones (length ``K``): ``final[i] = sum(b[j] samples[T + i - j] for j > i,
    T + i - j >= 0) + initial[T + i]`` (the last term where ``T + i < K``)."""
    length, order = samples.shape[0], initial.shape[0]
    for i in range(order):
        total = final.dtype.type(0)
        for j in range(i + 1, order + 1):
            if length + i - j >= 0:
                total += b[j] * samples[length + i - j]
        if length + i < order:
            total += initial[length + i]
        final[i] = total


@njit_cached(nogil=True)
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
            final_delays(b, samples, state[row], final[row])
        task = atomics.fetch_add(counter, 0, 1)


@njit_cached(nogil=True)
def fir_steps(counter, b, x, state, out, final):
    """:func:`fir_blocks` of a time-major ``x`` (``(T, D)``) into ``out`` (``(T, D)``), the
    same sums in the same order, with no transposing copy: tasks of ``FIR_ROWS`` steps of every
    channel, cut into tiles of about ``FIR_TILE_ELEMENTS`` elements, over which each tap makes
    one pass (consecutive steps lie end to end: one loop, which LLVM vectorises); the first
    task writes the final delays."""
    length, channels = x.shape
    order = state.shape[1]
    samples, filtered = x.reshape(-1), out.reshape(-1)
    tile_rows = max(1, FIR_TILE_ELEMENTS // channels)
    task = atomics.fetch_add(counter, 0, 1)
    while task * FIR_ROWS < length:
        start, stop = task * FIR_ROWS, min((task + 1) * FIR_ROWS, length)
        for tile in range(start, stop, tile_rows):
            tile_stop = uint64(min(tile + tile_rows, stop) * channels)
            for i in range(uint64(tile * channels), tile_stop):
                filtered[i] = b[0] * samples[i]
            for k in range(1, order + 1):
                tap, shift = b[k], uint64(k * channels)
                for i in range(uint64(max(tile, k) * channels), tile_stop):
                    filtered[i] += tap * samples[i - shift]
        for t in range(start, min(stop, order)):
            for d in range(channels):
                out[t, d] += state[d, t]
        if task == 0:
            for d in range(channels):
                final_delays(b, x[:, d], state[d], final[d])
        task = atomics.fetch_add(counter, 0, 1)


@njit_cached(nogil=True)
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
