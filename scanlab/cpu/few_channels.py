"""The sequential loop of the elementwise recurrence for a few channels, each state in a
register of its own (:func:`run_in_registers`; one series: :func:`run_series`): the layout of
``scanlab.cpu.linear``'s kernels, ``(T, D)`` with time first."""

from numba import njit, uint64

from scanlab._kernel_cache import njit_cached
from scanlab._recurrence_numerics import broadcast_steps, time_direction, time_index
from scanlab.config import FASTMATH

#: Channels up to which the sequential loop keeps every state in a register of its own.
REGISTER_CHAINS = 4


@njit_cached(fastmath=FASTMATH)
def run_in_registers(a, b, state, out, first_step, stop_step, reverse, first_channel):
    """``scanlab.cpu.linear.run_steps`` for at most ``REGISTER_CHAINS`` channels, each state
    in a register. ``run_steps``' row loop keeps the states in memory, and for so few channels
    its work per step, not the multiply-add's latency, sets the pace (2-3 channels 1.5-1.7x
    slower); flat indices here, the rows' views cost as much again. Channels past ``state``'s
    last repeat it (the same values, written to the same place). A function of its own, called
    by :func:`run_few`: inlined into ``run_steps``, it made LLVM compile that function's row
    loop 4x slower (5 channels)."""
    length, channels = out.shape
    origin, direction = time_direction(length, reverse)
    a_row, a_column = broadcast_steps(a, length, channels)
    b_row, b_column = broadcast_steps(b, length, channels)
    a_flat, b_flat, out_flat = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    a_step, b_step = a_row * uint64(a.shape[1]), b_row * uint64(b.shape[1])
    last = state.shape[0] - 1
    d0, d1 = uint64(first_channel), uint64(first_channel + min(1, last))
    d2, d3 = uint64(first_channel + min(2, last)), uint64(first_channel + min(3, last))
    h0, h1, h2, h3 = state[0], state[min(1, last)], state[min(2, last)], state[min(3, last)]
    for step in range(first_step, stop_step):
        t = time_index(step, origin, direction)
        a_t, b_t, out_t = t * a_step, t * b_step, t * uint64(channels)
        h0 = a_flat[a_t + d0 * a_column] * h0 + b_flat[b_t + d0 * b_column]
        h1 = a_flat[a_t + d1 * a_column] * h1 + b_flat[b_t + d1 * b_column]
        h2 = a_flat[a_t + d2 * a_column] * h2 + b_flat[b_t + d2 * b_column]
        h3 = a_flat[a_t + d3 * a_column] * h3 + b_flat[b_t + d3 * b_column]
        out_flat[out_t + d0] = h0
        out_flat[out_t + d1] = h1
        out_flat[out_t + d2] = h2
        out_flat[out_t + d3] = h3
    for k, h in enumerate((h0, h1, h2, h3)):
        if k <= last:
            state[k] = h


@njit(inline="always")
def series_steps(a, b, h, out, first_step, stop_step, reverse, channel):
    """The recurrence of ``channel`` alone over steps ``[first_step, stop_step)`` from the
    state ``h``, kept in a register; the final state."""
    length, channels = out.shape
    origin, direction = time_direction(length, reverse)
    a_row, a_column = broadcast_steps(a, length, channels)
    b_row, b_column = broadcast_steps(b, length, channels)
    a_d = uint64(channel) * a_column
    b_d = uint64(channel) * b_column
    for step in range(first_step, stop_step):
        t = time_index(step, origin, direction)
        h = a[t * a_row, a_d] * h + b[t * b_row, b_d]
        out[t, channel] = h
    return h


@njit_cached(nogil=True, fastmath=FASTMATH)
def run_series(a, b, h0, out, reverse):
    """The sequential recurrence of a problem of one channel (``out`` ``(T, 1)``): what a first
    call on one series compiles, without the loops over several channels (0.4 s against 2 s
    cold on Zen 5)."""
    series_steps(a, b, h0[0], out, 0, out.shape[0], reverse, 0)


@njit_cached(nogil=True, fastmath=FASTMATH)
def run_few(a, b, h0, out, reverse):
    """The sequential recurrence of a problem of 2 to ``REGISTER_CHAINS`` channels, from
    ``h0``: a kernel of its own, so that a first call on many channels does not compile this
    loop, nor one on few channels the row loops (0.4 s and 1.6 s cold on Zen 5)."""
    state = h0.copy()
    run_in_registers(a, b, state, out, 0, out.shape[0], reverse, 0)
