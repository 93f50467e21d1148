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
    is_single,
    less_integer,
    power_of_two,
    round_to_integer,
    two_sum,
)  # fmt: skip

#: Windows of ``2 / pi``'s bits the reduction reads, each of the precision's significant bits
#: (53 for float64, 24 for float32), past the highest bit kept.
TABLE_WINDOWS = 4


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


def reduction_table(dtype) -> np.ndarray:
    """``(rows, 4)`` of ``dtype`` (float64: 973 rows, float32: 106): row ``k`` for an ``x`` of
    biased exponent ``offset + k`` (``offset`` 1075 or 150, so that ``x 2^-k`` is an integer;
    ``k = 0`` for every ``x`` below ``2^53`` or ``2^24``): the bits of ``2 / pi`` from bit
    ``max(1, k - 1)`` on (the earlier ones only add multiples of 4 to ``x 2 / pi``), in four
    windows of the precision's bits, each exact in ``dtype``, scaled by ``2^k`` (the reduction
    multiplies them by ``x 2^-k``, whose products then stay in range)."""
    info = np.finfo(dtype)
    precision, offset = info.nmant + 1, info.maxexp - 1 + info.nmant
    rows = 2 * info.maxexp - 1 - offset + 1
    bits = TABLE_WINDOWS * precision + rows + 2
    fraction = two_over_pi_bits(bits)
    table = np.empty((rows, TABLE_WINDOWS), dtype)
    for k in range(rows):
        start = max(1, k - 1)
        for window in range(TABLE_WINDOWS):
            first = start + window * precision  # weight 2^-first
            last = first + precision - 1
            chunk = (fraction >> (bits - last)) & ((1 << precision) - 1)
            table[k, window] = math.ldexp(chunk, k - last)
    return table


#: See :func:`reduction_table`: float64 and float32.
REDUCTION_TABLE = reduction_table(np.float64)
REDUCTION_TABLE_SINGLE = reduction_table(np.float32)
#: ``pi / 2`` in two parts, the high one rounded to the precision (float64, float32).
HALF_PI_HIGH, HALF_PI_LOW = 1.5707963267948966, 6.123233995736766e-17
HALF_PI_HIGH_SINGLE = float(np.float32(math.pi / 2))
HALF_PI_LOW_SINGLE = float(np.float32(math.pi / 2 - HALF_PI_HIGH_SINGLE))


@njit(inline="always")
def quarter_turns(magnitude, table):
    """``(q, r, r_low)`` with ``magnitude = (4 m + q) pi/2 + r + r_low`` for an integer ``m``,
    ``q`` in 0..3 and ``|r| <= pi/4`` (about), for a float32 or float64 ``magnitude >= 0``,
    finite or not, ``table`` its precision's :data:`REDUCTION_TABLE`.

    Payne and Hanek's reduction, branch-free: ``magnitude 2/pi`` modulo 4 from the bits of
    ``2/pi`` that matter at its exponent, as exact products and sums in its precision. Every
    term with an integer part has it removed exactly before the fractions are added, so that a
    fraction that cancels (down to ``2^-61`` for the worst doubles) only cancels between terms
    of at most ``2^-50`` (float64) whose errors are ``2^-150``.
    """
    real = type(magnitude)
    if is_single(magnitude):
        mantissa_bits, exponent_mask, offset = 23, 0xFF, 150
        half_pi_high, half_pi_low = real(HALF_PI_HIGH_SINGLE), real(HALF_PI_LOW_SINGLE)
    else:
        mantissa_bits, exponent_mask, offset = 52, 0x7FF, 1075
        half_pi_high, half_pi_low = real(HALF_PI_HIGH), real(HALF_PI_LOW)
    exponent = (bits_of(magnitude) >> mantissa_bits) & exponent_mask
    row = min(max(exponent - offset, 0), table.shape[0] - 1)
    scaled = magnitude * power_of_two(magnitude, -row)  # an integer if row > 0
    p0, p1, p2, p3 = table[row, 0], table[row, 1], table[row, 2], table[row, 3]
    high0 = scaled * p0
    low0 = fused_multiply_add(scaled, p0, -high0)
    high1 = scaled * p1
    low1 = fused_multiply_add(scaled, p1, -high1)
    high2 = scaled * p2
    low2 = fused_multiply_add(scaled, p2, -high2)
    # Integer parts out (exact): high0 modulo 4, then the nearest integers of each term.
    high0 = high0 - real(4) * round_to_integer(real(0.25) * high0)
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
    r = total * half_pi_high
    r_low = fused_multiply_add(total, half_pi_high, -r) + (total * half_pi_low + low * half_pi_high)
    quadrant = int64(turns) & 3
    return quadrant, r, r_low


__all__ = ["REDUCTION_TABLE", "REDUCTION_TABLE_SINGLE", "quarter_turns"]
