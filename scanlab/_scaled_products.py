"""Products of a chunk's coefficients kept in range, and the check that a composed carry holds.

A scan composes each chunk into ``(P, Q)``: ``P`` the product of its coefficients, ``Q`` its last
state from zero, so that the chunk maps an incoming state ``h`` to ``P * h + Q``. Multiplied out
as plain numbers, ``P`` falls through the subnormal range (about 100 cycles an operation on many
CPUs) to zero, and a product that underflows and grows back (``1e-200, 1e-200, 1e200, 1e200``)
loses the state the loop carries. So the scans keep ``P = mantissa * 2**exponent``, bringing the
mantissa back to ``[0.5, 1)`` by an exact power of two whenever a periodic check finds it outside
``[2**-64, 2**64]``.

Whatever composition does, the loop is the reference: a scan reruns each chunk from its incoming
state anyway, so the state the rerun ends in is the loop's, and ``agrees`` compares it with the
composed carry the next chunk started from. Where they disagree beyond rounding (a state lost to
underflow, a state of the loop that overflowed inside the chunk, a product that lost bits), the
following chunks are rerun from the loop's state until they agree again.
"""

import math

import numpy as np
from numba import njit

from scanlab._float_bits import bits_of, power_of_two
from scanlab._kernel_cache import njit_cached
from scanlab._recurrence_numerics import is_finite, is_identical

#: Steps between the checks that keep a chunk's product of ``a`` in range, in the CPU scans. The
#: product is kept in double precision, so between two checks it falls out of the normal range
#: only through coefficients below about ``2**-15`` on average (and then the carry check catches
#: what it changes). Checks more often cost more than the composition itself.
CHECK_PERIOD = 64


def product_bounds(dtype, chunk_length: int):
    """The constants of the kept range and the agreement check for ``dtype`` (real or complex).

    ``(low, high, step, unit, tolerance)``: the products are kept in double precision (also for
    single-precision data: a wider range, at no cost in the scalar chains), their mantissa in
    ``[low, high] = [2**-64, 2**64]``; ``step`` is the largest power of two by which scaling is
    always exact; ``unit`` is 1.0; ``tolerance`` is the relative difference between a composed
    carry and the loop's state beyond which the carry is wrong rather than rounded differently
    (``4 * chunk_length * eps`` of ``dtype``, at least ``sqrt(eps)``).
    """
    eps = float(np.finfo(dtype).eps)
    return (
        2.0**-64,
        2.0**64,
        np.int64(np.finfo(np.float64).maxexp // 2),
        1.0,
        min(0.5, max(math.sqrt(eps), 4 * chunk_length * eps)),
    )


@njit(inline="always")
def magnitude(value):
    """``max(|re|, |im|)`` of a real or complex ``value``: its modulus within ``sqrt(2)``."""
    return max(abs(value.real), abs(value.imag))


@njit(inline="always")
def in_range(product, bounds):
    """Whether the mantissa ``product`` lies in ``[2**-64, 2**64]`` (False for NaN)."""
    return bounds[0] <= magnitude(product) <= bounds[1]


@njit
def scaled(value, exponent, bounds):
    """``value * 2**exponent`` for any integer ``exponent``, in ``value``'s precision.

    Steps of ``2**step`` are exact; only the last multiplication can round (when the result is
    subnormal).
    """
    step, unit = bounds[2], bounds[3]
    while exponent > step and is_finite(value):
        value = value * math.ldexp(unit, step)
        exponent -= step
    while exponent < -step and value != 0:
        value = value * math.ldexp(unit, -step)
        exponent += step
    return value * math.ldexp(unit, exponent)


@njit(inline="always")
def normalising_shift(size):
    """``math.frexp(size)[1]`` of a positive, finite double ``size``, from its bits (``frexp``
    only for a subnormal one): with ``frexp`` and ``ldexp`` calls on every renormalisation, the
    scan of a series whose products leave the range at every check (``|a|`` about 0.5 or less)
    took 1.15-1.2x the time of one whose products stay in it."""
    biased = (bits_of(size) >> 52) & 0x7FF
    return biased - 1022 if biased else math.frexp(size)[1]


@njit(inline="always")
def halves_of_power(size, exponent):
    """Two powers of two, normal doubles, whose product is ``2**exponent`` (``|exponent|`` up to
    twice the normal range): multiplying by one, then the other, scales exactly."""
    half = exponent >> 1
    return power_of_two(size, half), power_of_two(size, exponent - half)


@njit(inline="always")
def renormalised(product, exponent):
    """``(mantissa, exponent)`` of ``product * 2**exponent`` with the mantissa in ``[0.5, 1)``
    (two exact multiplications). Zero, NaN and Inf are returned as they are."""
    size = magnitude(product)
    if not 0 < size < math.inf:
        return product, exponent
    shift = normalising_shift(size)
    first, second = halves_of_power(size, -shift)
    return product * first * second, exponent + shift


@njit(inline="always")
def carried(product, exponent, partial, incoming, bounds):
    """``(product * 2**exponent * incoming + partial, usable)``.

    Not usable when anything is NaN or Inf: composing can make NaN from ``inf * 0`` where the
    loop does not, so the caller steps through the chunk instead.
    """
    if is_finite(product) and is_finite(partial) and is_finite(incoming):
        return scaled(product * incoming, exponent, bounds) + partial, True
    return incoming, False


@njit(inline="always")
def agrees(loop_state, carry, bounds):
    """Whether ``carry`` is the loop's state ``loop_state`` up to the rounding of composition:
    the same number (infinities, zeros and NaN parts included: :func:`is_identical`), or both
    finite and within ``tolerance`` relative to the larger."""
    if is_identical(loop_state, carry):
        return True
    if not (is_finite(loop_state) and is_finite(carry)):
        return False
    scale = max(magnitude(loop_state), magnitude(carry))
    return magnitude(loop_state - carry) <= bounds[4] * scale


@njit(inline="always")
def state_agrees(loop_state, carry, size, bounds):
    """``agrees`` for the first ``size`` entries of the state vectors ``loop_state`` and
    ``carry`` (1-D arrays), the tolerance relative to their largest finite entry: an entry that
    matrices make small beside the others differs from the loop's by the others' rounding.
    ``scanlab.cuda.linear_matrix`` compiles the same function (``py_func``) for the GPU."""
    scale = 0.0
    for i in range(len(loop_state)):
        if i < size:
            if is_finite(loop_state[i]):
                scale = max(scale, magnitude(loop_state[i]))
            if is_finite(carry[i]):
                scale = max(scale, magnitude(carry[i]))
    for i in range(len(loop_state)):
        if i < size:
            state, composed = loop_state[i], carry[i]
            if is_identical(state, composed):
                continue
            if not (is_finite(state) and is_finite(composed)):
                return False
            if magnitude(state - composed) > bounds[4] * scale:
                return False
    return True


@njit_cached()
def rows_agree(loop_states, carries, bounds):
    """``state_agrees`` for each row of the 2-D ``loop_states`` and ``carries``, one state a row
    (of one entry for the elementwise recurrence: then it is ``agrees``)."""
    result = np.empty(loop_states.shape[0], np.bool_)
    for row in range(loop_states.shape[0]):
        result[row] = state_agrees(loop_states[row], carries[row], loop_states.shape[1], bounds)
    return result


@njit_cached()
def column_products(values, bounds, mantissa, exponent):
    """``mantissa * 2**exponent`` (1-D arrays, the mantissa in double precision) becomes the
    product of each column of the 2-D ``values``, renormalised whenever a step takes the
    mantissa out of range: no product turns subnormal or is lost by underflowing and growing
    back, unless a coefficient itself is below about ``2**-958``."""
    mantissa[:] = 1
    exponent[:] = 0
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            product = mantissa[column] * values[row, column]
            if not in_range(product, bounds):
                product, exponent[column] = renormalised(product, exponent[column])
            mantissa[column] = product


@njit_cached()
def carried_states(mantissa, exponent, partial, incoming, bounds):
    """``mantissa * 2**exponent * incoming + partial`` for 1-D arrays, in ``partial``'s dtype:
    carries through chunks whose products ``column_products`` kept (NaN and Inf as the
    arithmetic makes them: the caller checks the carries against the loop)."""
    result = np.empty_like(partial)
    for i in range(partial.shape[0]):
        result[i] = scaled(mantissa[i] * incoming[i], exponent[i], bounds) + partial[i]
    return result
