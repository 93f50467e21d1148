"""scanlab.cpu.branchless: a select LLVM keeps a select."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import njit

from scanlab.cpu.branchless import select_unpredictable


@njit
def finite_or_zero(values, out):
    for t in range(len(values)):
        out[t] = select_unpredictable(np.isfinite(values[t]), values[t], 0.0)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=50))
def test_it_chooses_as_the_conditional_expression_does(values):
    values = np.array(values, np.float64)
    out = np.empty_like(values)
    finite_or_zero(values, out)
    np.testing.assert_array_equal(out, np.where(np.isfinite(values), values, 0.0))


def test_it_is_a_select_marked_unpredictable_in_the_optimised_ir():
    ir = finite_or_zero.inspect_llvm(finite_or_zero.signatures[0])
    marked = [line for line in ir.splitlines() if " select " in line and "!unpredictable" in line]
    assert marked, "no select with !unpredictable metadata"


def test_integers_and_booleans_too():
    @njit
    def choose(condition, a, b):
        return select_unpredictable(condition, a, b)

    assert choose(True, 3, 4) == 3 and choose(False, 3, 4) == 4
    assert choose(False, True, False) is False


def test_values_of_two_types_are_refused():
    @njit
    def mixed(condition):
        return select_unpredictable(condition, 1.0, 2)

    with pytest.raises(TypeError, match="two values of one type"):
        mixed(True)
