"""The dense step's product by columns (``scanlab.cpu.matrix_vector``) against a float64
product, and the Elman step that uses it against its rows form and NumPy."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import njit

from scanlab.cells import builtin
from scanlab.cpu import matrix_vector

REAL_DTYPES = (np.float32, np.float64)


@njit
def column_sums_of(weights, columns, vector, start, out):
    """:func:`matrix_vector.affine_by_columns` from compiled code, as a step calls it."""
    matrix_vector.affine_by_columns(weights, columns, vector, start, out)


@given(
    # Fewer lanes than one vector, whole vectors, more than one block of 8 vectors (n > 128
    # for float32, > 64 for float64), primes; every remainder of blocks 4, 2, 1.
    n=st.one_of(
        st.sampled_from([0, 1, 2, 7, 8, 16, 17, 64, 65, 97, 129, 200]), st.integers(0, 150)
    ),
    dtype=st.sampled_from(REAL_DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_column_sums_match_a_float64_product(n, dtype, seed):
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((n, n)).astype(dtype)
    vector, start = (rng.standard_normal(n).astype(dtype) for _ in range(2))
    saved = [value.copy() for value in (weights, vector, start)]
    out = np.full(n, np.nan, dtype)
    column_sums_of(weights, np.ascontiguousarray(weights.T), vector, start, out)
    expected = weights.astype(np.float64) @ vector.astype(np.float64) + start
    scale = np.abs(weights.astype(np.float64)) @ np.abs(vector.astype(np.float64)) + np.abs(start)
    assert np.all(np.abs(out - expected) <= 4 * n * np.finfo(dtype).eps * (scale + 1e-30))
    for value, before in zip((weights, vector, start), saved, strict=True):
        np.testing.assert_array_equal(value, before)


@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("n", [5, 16, 40])
def test_non_finite_values_propagate_as_in_the_sums(dtype, n):
    rng = np.random.default_rng(n)
    weights = rng.standard_normal((n, n)).astype(dtype)
    vector, start = (rng.standard_normal(n).astype(dtype) for _ in range(2))
    vector[1], start[2], weights[3, 0] = np.nan, np.inf, np.inf
    out = np.empty(n, dtype)
    column_sums_of(weights, np.ascontiguousarray(weights.T), vector, start, out)
    with np.errstate(invalid="ignore"):
        expected = weights.astype(np.float64) @ vector.astype(np.float64) + start
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(out), np.isposinf(expected))


@njit
def elman_steps(h_prev, x_t, params, out):
    """The compiled Elman step (the CPU's sums by columns)."""
    builtin.elman_step(h_prev, x_t, params, out)


@given(
    n=st.integers(1, 80),
    dtype=st.sampled_from(REAL_DTYPES),
    strided=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_elman_step_matches_its_rows_form(n, dtype, strided, seed):
    """Contiguous arrays take the columns, strided ones the rows (the GPU's form); both are
    ``tanh(W h + u)``."""
    rng = np.random.default_rng(seed)
    weights = (rng.uniform(-1, 1, (n, n)) / np.sqrt(n)).astype(dtype)
    h_prev, x_t = (rng.standard_normal(2 * n).astype(dtype) for _ in range(2))
    h_prev, x_t = (h_prev[::2], x_t[::2]) if strided else (h_prev[:n], x_t[:n])
    out = np.empty(n, dtype)
    elman_steps(h_prev, x_t, (weights, np.ascontiguousarray(weights.T)), out)
    rows = np.empty(n, dtype)
    builtin.recurrent_sums_by_rows(weights, weights.T, h_prev, x_t, rows)
    expected = np.tanh(weights.astype(np.float64) @ h_prev + x_t)
    tolerance = 8 * n * np.finfo(dtype).eps
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(np.tanh(rows), expected, rtol=tolerance, atol=tolerance)
