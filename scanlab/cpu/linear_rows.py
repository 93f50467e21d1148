"""CPU kernels for the elementwise linear recurrence with time last: ``out`` is C-contiguous
``(D, T)``, each row one channel's steps, ``a`` and ``b`` C-contiguous ``(D or 1, T or 1)``, ``h0``
``(D,)``, all in the result dtype (``axis=-1`` of a C array, ``axis=0`` of a Fortran one, solved
as they lie: no transposing copy). ``reverse`` runs time backwards; ``out`` never overlaps ``a``,
``b`` or ``h0``.
"""

import numba
import numpy as np
from numba import njit, types, uint64
from numba.extending import intrinsic

from scanlab._arrays import read_only
from scanlab._kernel_cache import njit_cached
from scanlab._recurrence_numerics import broadcast_steps, time_direction
from scanlab.config import FASTMATH
from scanlab.cpu import atomics, auto
from scanlab.cpu.linear import solve
from scanlab.cpu.row_tiles import CONSTANT, FULL, PER_ROW, PER_STEP, tile_step
from scanlab.cpu.threads import share_out
from scanlab.cpu.vector_ir import VECTOR_BYTES

#: Bytes of the time-last kernel's vectors of real values: 32 (8 x 8 float32 tiles, 4 x 4
#: float64) even where registers hold 64: a group of rows is a stream per row and operand for
#: the prefetchers, and twice the groups share the rows out among threads (D = 16 float32 had
#: one group: one thread).
#: On Zen 5 (AVX-512), 32-byte tiles over 64-byte ones, two runs: float32 (16, 2**18) 1.63-1.72
#: -> 0.71-0.80 ms, (512, 8192) 1.32-1.36 -> 1.06-1.09, float64 (512, 8192) 2.50 -> 2.01-2.03.
REAL_TILE_BYTES = min(VECTOR_BYTES, 32)


@njit(inline="always")
def step_rows(a, b, out, state, first, count, step, origin, direction, strides):
    """Step ``step`` of the rows ``first`` to ``first + count - 1``, one scalar chain each."""
    a_channel, a_step, b_channel, b_step = strides
    t = uint64(origin + direction * step)
    for k in range(count):
        d = uint64(first + k)
        value = a[d * a_channel, t * a_step] * state[k] + b[d * b_channel, t * b_step]
        state[k] = value
        out[d, t] = value


@njit(inline="always")
def tile_step_of(a, b, out, state, first, rows, start, reverse, a_mode):
    """:func:`scanlab.cpu.row_tiles.tile_step` with ``a_mode`` made a constant, in tiles of
    :func:`tile_bytes` (written out: ``width`` must be a constant)."""
    if complex_elements(out):
        tile_step_in(a, b, out, state, first, rows, start, reverse, a_mode, VECTOR_BYTES)
    else:
        tile_step_in(a, b, out, state, first, rows, start, reverse, a_mode, REAL_TILE_BYTES)


@njit(inline="always")
def tile_step_in(a, b, out, state, first, rows, start, reverse, a_mode, width):
    """:func:`tile_step_of` in tiles of ``width`` bytes (a constant)."""
    if a_mode == FULL:
        tile_step(a, b, out, state, first, rows, start, reverse, FULL, False, width)
    elif a_mode == PER_STEP:
        tile_step(a, b, out, state, first, rows, start, reverse, PER_STEP, False, width)
    elif a_mode == PER_ROW:
        tile_step(a, b, out, state, first, rows, start, reverse, PER_ROW, False, width)
    else:
        tile_step(a, b, out, state, first, rows, start, reverse, CONSTANT, False, width)


@intrinsic
def complex_elements(typingctx, array):
    """Whether ``array``'s dtype is complex, a constant."""

    def codegen(context, builder, signature, args):
        return context.get_constant(types.boolean, isinstance(array.dtype, types.Complex))

    return types.boolean(array), codegen


@njit_cached(inline="always")
def tile_bytes(out):
    """Bytes of the time-last kernel's vectors for ``out``'s dtype: :data:`REAL_TILE_BYTES` for
    real ones, the widest register for complex ones (32-byte tiles of complex values ran
    1.2-1.6x slower on Zen 5)."""
    return VECTOR_BYTES if complex_elements(out) else REAL_TILE_BYTES


@njit_cached(nogil=True, fastmath=FASTMATH)
def run_row_tiles(next_group, a, b, h0, out, reverse, a_mode):
    """Groups of ``U`` rows (:mod:`scanlab.cpu.row_tiles`; the last may have fewer) taken from
    the counter ``next_group``: ``U`` steps at a time by :func:`tile_step`, the last ``T mod U``
    steps (the first ones if ``reverse``) by scalar chains."""
    channels, length = out.shape
    units = tile_bytes(out) // out.itemsize
    a_channel, a_step = broadcast_steps(a, channels, length)
    b_channel, b_step = broadcast_steps(b, channels, length)
    strides = (a_channel, a_step, b_channel, b_step)
    origin, direction = time_direction(length, reverse)
    tiles = length // units
    group = atomics.fetch_add(next_group, 0, 1)
    while group < (channels + units - 1) // units:
        first = group * units
        rows = min(units, channels - first)
        # The lanes past the last row repeat it, as the tiles' loads do: computed, never stored.
        state = np.empty(units, out.dtype)
        for lane in range(units):
            state[lane] = h0[first + min(lane, rows - 1)]
        for tile in range(tiles):
            start = length - (tile + 1) * units if reverse else tile * units
            tile_step_of(a, b, out, state, first, rows, start, reverse, a_mode)
        for step in range(tiles * units, length):
            step_rows(a, b, out, state, first, rows, step, origin, direction, strides)
        group = atomics.fetch_add(next_group, 0, 1)


def linear_recurrence_rows(a, b, h0, out, reverse):
    """Time last: ``out`` and ``b`` are ``(D, T)``, each channel's steps contiguous, and ``a``
    ``(D or 1, T or 1)``. Parallel over groups of ``U`` rows, walked in square tiles of ``U``
    rows and steps transposed in registers (:mod:`scanlab.cpu.row_tiles`), with no transposing
    copy of the operands or the result.
    """
    channels, length = out.shape
    units = tile_bytes(out) // out.itemsize
    a_mode = (
        (FULL if a.shape[1] == length else PER_ROW)
        if a.shape[0] == channels
        else (PER_STEP if a.shape[1] == length else CONSTANT)
    )
    share_out(run_row_tiles, -(-channels // units), (a, b, h0, out, reverse, a_mode), out.size)


def solve_rows(a, b, h0, out, reverse: bool, method: str) -> None:
    """Run ``method`` on a time-last problem as it lies: ``out`` ``(D, T)``, each row one
    channel's steps, ``a`` and ``b`` ``(D or 1, T or 1)``.

    ``"sequential"``: the time-last kernel (:func:`linear_recurrence_rows`).
    ``"scan"``: row by row, each row a one-channel series in time-first layout (a view: ``(T,
    1)`` is ``(T,)`` in memory) solved by the parallel scan over time. ``"auto"``: the one
    measured faster on this machine for problems of this dtype, channels and size
    (:func:`measured_rows_speeds`): a few long rows scan, many short ones take the kernel.
    ``a``, ``b`` and ``h0`` reach the kernels read-only (see :func:`scanlab._arrays.read_only`).
    """
    a, b, h0 = read_only(a), read_only(b), read_only(h0)
    channels, length = out.shape
    if method == "auto":
        threads = numba.get_num_threads()
        operands = auto.broadcast_operands(out, a=a, b=b)
        with auto.measured_choice(
            "linear time-last", length, channels, out.dtype, threads, measured_rows_speeds,
            operands=operands,
        ) as method:  # fmt: skip
            solve_rows(a, b, h0, out, reverse, method)
        return
    if method == "sequential":
        linear_recurrence_rows(a, b, h0, out, reverse)
        return
    for channel in range(channels):
        a_row, b_row = (
            operand[min(channel, operand.shape[0] - 1)].reshape(-1, 1) for operand in (a, b)
        )
        solve(a_row, b_row, h0[channel : channel + 1], out[channel].reshape(-1, 1), reverse, "scan")


def measured_rows_speeds(dtype, channels: int, threads: int, elements: int) -> dict:
    """Nanoseconds per element of each method of :func:`solve_rows` on this machine, for a
    time-last problem of ``channels`` rows and about ``elements`` elements."""
    length = auto.calibration_length(channels, elements)
    return auto.calibration_speeds(solve_rows, (channels, length), channels, dtype, threads)
