"""Recurrences near the ends of the exponent range, and the comparison of a solver with the
sequential loop on them: what the tests of the scans' carries between chunks share."""

import numpy as np
from hypothesis import strategies as st

#: Relative tolerance against the loop in the same precision, and the absolute floor below which
#: the loop's own states are subnormal (and so imprecise themselves).
CLOSE = {np.dtype(np.float32): (1e-3, 1e-30), np.dtype(np.float64): (1e-7, 1e-290)}


@st.composite
def extreme_problems(draw, dtypes=(np.float32, np.float64), lengths=(8, 48)):
    """``(a, b, h0)``, ``(T, D)``, ``(T, D)`` and ``(D,)``, near the ends of the exponent range:
    ``a`` from two values of extreme magnitude (or 0, Inf, NaN), so that products underflow and
    overflow and come back; ``b`` mostly zero, so that the state the carries hold is all there
    is; ``h0`` huge."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    top = 250 if dtype == np.float64 else 30
    sign = st.sampled_from([1.0, -1.0])
    exponents = st.sampled_from([-top / 2, -top / 4, 0, top / 4, top / 2])
    value = st.builds(lambda s, exponent: s * 10.0**exponent, sign, exponents)
    special = st.sampled_from([0.0, np.inf, np.nan])
    palette = draw(st.lists(st.one_of(value, value, value, special), min_size=2, max_size=2))
    shape = (draw(st.integers(*lengths)), draw(st.sampled_from([1, 2])))
    size = shape[0] * shape[1]
    a = np.array(draw(st.lists(st.sampled_from(palette), min_size=size, max_size=size)), dtype)
    b = np.zeros(size, dtype)
    if not draw(st.integers(0, 3)):
        b[:] = draw(st.lists(value, min_size=size, max_size=size))
    huge = st.builds(lambda s, exponent: s * 10.0**exponent, sign, st.sampled_from([top, top / 2]))
    h0 = np.array(draw(st.lists(huge, min_size=shape[1], max_size=shape[1])), dtype)
    return a.reshape(shape), b.reshape(shape), h0


def assert_like_the_loop(result, loop, terms=None):
    """NaN and Inf of each sign exactly where the loop has them; finite values within rounding
    of ``terms`` (where Inf or NaN: any difference), by default the loop's own values.

    Pass as ``terms`` the loop on ``|a|``, ``|b|`` and ``|h0|`` where ``a * h`` and ``b`` may
    cancel: a carry one rounding off then changes the state by more than its own rounding.
    """
    for where in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(where(result), where(loop), err_msg=where.__name__)
    finite = np.isfinite(loop)
    terms = np.abs(loop) if terms is None else np.nan_to_num(terms, nan=np.inf)
    rtol, atol = CLOSE[loop.dtype]
    error = np.abs(result[finite] - loop[finite])
    wrong = error > rtol * terms[finite] + atol
    assert not wrong.any(), f"{result[finite][wrong]} where the loop has {loop[finite][wrong]}"
