"""Tests of the CUDA kernels of ``scanlab.cuda.linear_matrix`` against the einsum reference.

Run in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU. Chunks of 2 or 3 steps
make small sequences cross several levels of the scan of chunk totals.
"""

import doctest

import numpy as np
import pytest
import reference
from conftest import (
    CUDA_MODULE_MARKS,
    DTYPES,
    assert_close,
    fast_thread_switching,
    random_array,
    random_matrices,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import cuda

from scanlab.cuda import linear_matrix

pytestmark = CUDA_MODULE_MARKS

LAUNCHERS = {
    "sequential": (linear_matrix.linear_recurrence_matrix_sequential, {"threads_per_block": 8}),
    "scan": (
        linear_matrix.linear_recurrence_matrix_scan,
        {"threads_per_block": 8, "chunk_length": 3},
    ),
}


@pytest.fixture(autouse=True, scope="module")
def fast_simulator():
    with fast_thread_switching():
        yield


def random_inputs(rng, a_leading, b_leading, systems, size, dtype):
    """Matrices of spectral radius at most 0.9, offsets and initial states of order 1."""
    a = random_matrices(rng, a_leading, size, dtype)
    b = random_array(rng, b_leading + (size,), dtype)
    return a, b, random_array(rng, (systems, size), dtype)


def solve(method, a, b, h0, reverse, **tunables):
    """Run a launcher on NaN-poisoned ``out`` and return the result on the host."""
    launcher, defaults = LAUNCHERS[method]
    length = max(a.shape[0], b.shape[0])
    out = cuda.to_device(np.full((length,) + h0.shape, np.nan, a.dtype))
    launcher(
        cuda.to_device(a),
        cuda.to_device(b),
        cuda.to_device(h0),
        out,
        reverse,
        **(tunables or defaults),
    )
    return out.copy_to_host()


@pytest.mark.parametrize("method", LAUNCHERS)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("systems", [1, 3])
@pytest.mark.parametrize("length", [1, 2, 3, 4, 8, 9, 10, 28, 61])
def test_sizes_across_chunks_and_levels(method, size, systems, length):
    rng = np.random.default_rng(length * 100 + size * 10 + systems)
    a, b, h0 = random_inputs(rng, (length, systems), (length, systems), systems, size, np.float64)
    reverse = length % 2 == 1  # both directions, at half the cost
    expected = reference.linear_recurrence_matrix(a, b, h0, reverse=reverse)
    assert_close(solve(method, a, b, h0, reverse), expected, np.float64)


@pytest.mark.parametrize("method", LAUNCHERS)
@pytest.mark.parametrize("size", [8, 17])
@pytest.mark.parametrize("length", [5, 13])
def test_larger_states_in_memory(method, size, length):
    """Beyond the register path: rows split across lanes, products composed in memory."""
    rng = np.random.default_rng(size + length)
    a, b, h0 = random_inputs(rng, (length, 2), (length, 2), 2, size, np.float64)
    expected = reference.linear_recurrence_matrix(a, b, h0, reverse=length == 13)
    assert_close(solve(method, a, b, h0, length == 13), expected, np.float64)


@pytest.mark.parametrize("method", LAUNCHERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "leading",
    [((20, 2), (20, 2)), ((20, 1), (1, 2)), ((1, 2), (20, 1)), ((1, 1), (20, 2))],
    ids=str,
)
def test_dtypes_and_broadcasting(method, dtype, leading):
    a_leading, b_leading = leading
    rng = np.random.default_rng(7)
    a, b, h0 = random_inputs(rng, a_leading, b_leading, 2, 3, dtype)
    expected = reference.linear_recurrence_matrix(a, b, h0, reverse=True)
    assert_close(solve(method, a, b, h0, True), expected, dtype)


@pytest.mark.parametrize("method", LAUNCHERS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("size", [2, 5])
def test_nan_propagates_only_downstream_in_its_system(method, reverse, size):
    length, systems, poisoned_step = 30, 3, 17
    rng = np.random.default_rng(3)
    a, b, h0 = random_inputs(rng, (length, systems), (length, systems), systems, size, np.float64)
    b[poisoned_step, 1, 0] = np.nan
    result = solve(method, a, b, h0, reverse)
    downstream = (
        np.arange(length) <= poisoned_step if reverse else np.arange(length) >= poisoned_step
    )
    np.testing.assert_array_equal(np.isnan(result[:, 1]).any(axis=1), downstream)
    assert np.isfinite(result[:, [0, 2]]).all()


@pytest.mark.parametrize("method", LAUNCHERS)
@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_an_infinite_state_stays_infinite_not_nan(method, size):
    """States that overflow to inf (every matrix entry positive: no inf - inf) stay inf, as in
    the loop: the register kernels' zero padding once made them NaN (``0 * inf`` in a padding
    row, then ``0 * NaN`` in every row)."""
    length = 12
    a = np.full((length, 1, size, size), 2.0)
    b = np.zeros((length, 1, size))
    h0 = np.full((1, size), 1e307)
    with np.errstate(over="ignore", invalid="ignore"):  # the simulator's arithmetic
        expected = reference.linear_recurrence_matrix(a, b, h0, reverse=False)
        result = solve(method, a, b, h0, False)
    assert np.isinf(expected[3:]).all()
    np.testing.assert_array_equal(result, expected)


@settings(deadline=None, max_examples=20)
@given(
    length=st.integers(1, 40),
    systems=st.integers(1, 3),
    size=st.integers(1, 6),
    threads_log2=st.integers(0, 5),
    chunk_length=st.integers(2, 5),
    reverse=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_scan_matches_reference_for_any_tunables(
    length, systems, size, threads_log2, chunk_length, reverse, seed
):
    a, b, h0 = random_inputs(
        np.random.default_rng(seed), (length, systems), (length, 1), systems, size, np.float64
    )
    result = solve(
        "scan", a, b, h0, reverse, threads_per_block=2**threads_log2, chunk_length=chunk_length
    )
    assert_close(result, reference.linear_recurrence_matrix(a, b, h0, reverse=reverse))


@pytest.mark.parametrize("method", LAUNCHERS)
@pytest.mark.parametrize("threads_per_block", [1, 2, 4, 64])
@pytest.mark.parametrize("size", [2, 5])
def test_any_block_shape(method, threads_per_block, size):
    """Fewer lanes than states (rows in turn), several systems (or chunks) per block, and
    fewer or more threads than a chunk's product has entries."""
    rng = np.random.default_rng(threads_per_block)
    a, b, h0 = random_inputs(rng, (12, 5), (12, 5), 5, size, np.float64)
    tunables = {"threads_per_block": threads_per_block}
    if method == "scan":
        tunables["chunk_length"] = 3
    result = solve(method, a, b, h0, False, **tunables)
    assert_close(result, reference.linear_recurrence_matrix(a, b, h0))


@pytest.mark.parametrize("method", LAUNCHERS)
def test_writes_nothing_outside_out(method):
    length, systems, size = 10, 2, 2
    a, b, h0 = random_inputs(
        np.random.default_rng(5), (length, 1), (length, systems), systems, size, np.float64
    )
    launcher, tunables = LAUNCHERS[method]
    padded_out = cuda.to_device(np.full((length + 2, systems, size), -7.0))
    launcher(
        cuda.to_device(a), cuda.to_device(b), cuda.to_device(h0), padded_out[1:-1], False,
        **tunables,
    )  # fmt: skip
    result = padded_out.copy_to_host()
    assert (result[[0, -1]] == -7.0).all()
    assert_close(result[1:-1], reference.linear_recurrence_matrix(a, b, h0))


def test_scan_rejects_chunks_of_one_step():
    a = np.ones((4, 1, 2, 2))
    with pytest.raises(ValueError, match="chunk_length must be at least 2"):
        tunables = {"threads_per_block": 8, "chunk_length": 1}
        solve("scan", a, np.ones((4, 1, 2)), np.zeros((1, 2)), False, **tunables)


def test_sequential_rejects_states_beyond_shared_memory():
    size = 1600  # two complex128 states: 51,200 bytes
    a = cuda.device_array((1, 1, size, size), np.complex128)
    b = cuda.device_array((1, 1, size), np.complex128)
    out = cuda.device_array((1, 1, size), np.complex128)
    with pytest.raises(ValueError, match="bytes of shared memory.*device='cpu'"):
        linear_matrix.linear_recurrence_matrix_sequential(a, b, b[0], out, False, 256)


def test_docstring_examples_run():
    results = doctest.testmod(linear_matrix)
    assert results.attempted > 0
    assert results.failed == 0
