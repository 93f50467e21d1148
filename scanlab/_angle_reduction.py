"""The reduction of an angle modulo ``pi/2`` for :func:`scanlab.math.sin` and
:func:`scanlab.math.cos`: Payne and Hanek's, on the bits of ``2 / pi`` that matter at the
argument's exponent (:data:`REDUCTION_TABLE`), with exact products and sums of doubles and no
branch (a loop over it vectorises).
"""

import math

import numpy as np
from numba import int64, njit

from scanlab._float_bits import (
    bits_of,
    fused_multiply_add,
    less_integer,
    power_of_two,
    round_to_integer,
    two_sum,
)  # fmt: skip

#: Bits of ``2 / pi`` the reduction reads: 4 windows of 53 bits past the highest bit kept.
TABLE_WINDOWS, WINDOW_BITS = 4, 53


def two_over_pi_bits(count: int) -> int:
    """The first ``count`` bits of the fraction ``2 / pi`` (which is below 1), as an integer:
    ``pi`` from Machin's formula in fixed point, with 64 guard bits."""
    guard = count + 64
    one = 1 << guard

    def arctan_inverse(n: int) -> int:  # atan(1 / n), fixed point
        total, power, k = 0, one // n, 0
        while power:
            term = power // (2 * k + 1)
            total += -term if k % 2 else term
            power //= n * n
            k += 1
        return total

    pi = 16 * arctan_inverse(5) - 4 * arctan_inverse(239)
    return ((2 * one * one) // pi) >> 64


def reduction_table() -> np.ndarray:
    """``(973, 4)`` float64: row ``k`` for a float64 ``x`` of biased exponent ``1075 + k``
    (``k = 0`` for every ``x`` below ``2^53``): the bits of ``2 / pi`` from bit
    ``max(1, k - 1)`` on (the earlier ones only add multiples of 4 to ``x 2 / pi``), in four
    windows of 53 bits, each exact in a double, scaled by ``2^k`` (the reduction multiplies
    them by ``x 2^-k``, whose products then stay in range)."""
    rows = 2047 - 1075 + 1
    bits = TABLE_WINDOWS * WINDOW_BITS + rows + 2
    fraction = two_over_pi_bits(bits)
    table = np.empty((rows, TABLE_WINDOWS))
    for k in range(rows):
        start = max(1, k - 1)
        for window in range(TABLE_WINDOWS):
            first = start + window * WINDOW_BITS  # weight 2^-first
            last = first + WINDOW_BITS - 1
            chunk = (fraction >> (bits - last)) & ((1 << WINDOW_BITS) - 1)
            table[k, window] = math.ldexp(chunk, k - last)
    return table


#: See :func:`reduction_table`.
REDUCTION_TABLE = reduction_table()


#: ``pi / 2`` in two parts, the high one a double.
HALF_PI_HIGH = 1.5707963267948966
HALF_PI_LOW = 6.123233995736766e-17


@njit(inline="always")
def quarter_turns(magnitude):
    """``(q, r, r_low)`` with ``magnitude = (4 m + q) pi/2 + r + r_low`` for an integer ``m``,
    ``q`` in 0..3 and ``|r| <= pi/4`` (about), for a float64 ``magnitude >= 0``, finite or not.

    Payne and Hanek's reduction, branch-free: ``magnitude 2/pi`` modulo 4 from the bits of
    ``2/pi`` that matter at its exponent (:data:`REDUCTION_TABLE`), as exact products and sums
    of doubles. Every term with an integer part has it removed exactly before the fractions
    are added, so that a fraction that cancels (down to ``2^-61`` for the worst doubles) only
    cancels between terms of at most ``2^-50`` whose errors are ``2^-150``.
    """
    exponent = (bits_of(magnitude) >> 52) & 0x7FF
    row = min(max(exponent - 1075, 0), 2047 - 1075)
    scaled = magnitude * power_of_two(magnitude, -row)  # an integer below 2^53 if row > 0
    p0, p1 = REDUCTION_TABLE[row, 0], REDUCTION_TABLE[row, 1]
    p2, p3 = REDUCTION_TABLE[row, 2], REDUCTION_TABLE[row, 3]
    high0 = scaled * p0
    low0 = fused_multiply_add(scaled, p0, -high0)
    high1 = scaled * p1
    low1 = fused_multiply_add(scaled, p1, -high1)
    high2 = scaled * p2
    low2 = fused_multiply_add(scaled, p2, -high2)
    # Integer parts out (exact): high0 modulo 4, then the nearest integers of each term.
    high0 = high0 - 4.0 * round_to_integer(0.25 * high0)
    fraction0, turns = less_integer(high0)
    fraction_low0, turn = less_integer(low0)
    turns += turn
    fraction1, turn = less_integer(high1)
    turns += turn
    total, error0 = two_sum(fraction0, fraction_low0)
    total, turn = less_integer(total)
    turns += turn
    total, error1 = two_sum(total, fraction1)
    total, turn = less_integer(total)
    turns += turn
    # The fraction: total and the small terms, summed exactly, their errors added last.
    total, error2 = two_sum(total, low1)
    total, error3 = two_sum(total, high2)
    total, error4 = two_sum(total, error0)
    total, error5 = two_sum(total, error1)
    rest = ((error2 + error3) + (error4 + error5)) + (low2 + scaled * p3)
    total, low = two_sum(total, rest)
    # Times pi/2, in two parts.
    r = total * HALF_PI_HIGH
    r_low = fused_multiply_add(total, HALF_PI_HIGH, -r) + (total * HALF_PI_LOW + low * HALF_PI_HIGH)
    quadrant = int64(turns) & 3
    return quadrant, r, r_low


__all__ = ["REDUCTION_TABLE", "quarter_turns"]
