"""Tests of the CUDA kernels of ``scanlab.cuda.linear`` against a sequential NumPy reference.

Run in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU. The tunables are shrunk so
that small sequences cross several blocks and several levels of the scan of tile totals.
"""

import doctest
from functools import partial

import numpy as np
import pytest
import reference
from conftest import CUDA_MODULE_MARKS, DTYPES, assert_close, fast_thread_switching
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import cuda

from scanlab.cuda import linear, linear_single_pass

pytestmark = CUDA_MODULE_MARKS


# Tiles of 24 steps for D = 1 (1 lane x 8 time threads) and of 6 steps for D = 3 or 17 (4 lanes x
# 2 time threads, 5 channel groups for D = 17): with D = 3, T = 200 recurses on 34 tile totals,
# then on 6, which one tile solves.
SCAN_TUNABLES = {"threads_per_block": 8, "items_per_thread": 3, "channels_per_block": 4}
SEQUENTIAL_TUNABLES = {"threads_per_block": 8}
LAUNCHERS = {
    "sequential": (linear.linear_recurrence_sequential, SEQUENTIAL_TUNABLES),
    "scan": (linear.linear_recurrence_scan, SCAN_TUNABLES),
    "single-pass": (partial(linear.linear_recurrence_scan, single_pass=True), SCAN_TUNABLES),
}
# D = 17 stops at T = 65 (still three levels): its 5 channel groups are slow to simulate.
SIZES = [
    (length, channels)
    for channels in (1, 3, 17)
    for length in (1, 2, 3, 7, 31, 64, 65, 97, 200)
    if channels < 17 or length <= 65
]


@pytest.fixture(autouse=True, scope="module")
def fast_simulator():
    with fast_thread_switching():
        yield


def random_inputs(rng, a_shape, b_shape, channels, dtype):
    """Coefficients of modulus below 0.95 (a stable recurrence), offsets and h0 of order 1."""

    def draw(shape, scale):
        if np.issubdtype(dtype, np.complexfloating):
            real, imaginary = rng.uniform(-scale, scale, (2, *shape))
            return ((real + 1j * imaginary) / np.sqrt(2)).astype(dtype)
        return rng.uniform(-scale, scale, shape).astype(dtype)

    return draw(a_shape, 0.95), draw(b_shape, 1.0), draw((channels,), 1.0)


def solve(method, a, b, h0, reverse, **tunables):
    """Run a launcher on NaN-poisoned ``out`` and return the result on the host."""
    launcher, defaults = LAUNCHERS[method]
    out = cuda.to_device(np.full((max(a.shape[0], b.shape[0]), h0.size), np.nan, a.dtype))
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
@pytest.mark.parametrize("length, channels", SIZES)
def test_sizes_across_blocks(method, length, channels):
    rng = np.random.default_rng(length * 100 + channels)
    a, b, h0 = random_inputs(rng, (length, channels), (length, channels), channels, np.float64)
    reverse = length % 2 == 1  # both directions, at half the cost
    expected = reference.linear_recurrence(a, b, h0, reverse=reverse)
    assert_close(solve(method, a, b, h0, reverse), expected, np.float64)


@pytest.mark.parametrize("method", LAUNCHERS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shapes",
    [
        ((40, 2), (40, 2)),
        ((40, 1), (1, 2)),
        ((1, 2), (40, 1)),
        ((1, 1), (40, 2)),
        ((40, 2), (1, 1)),
    ],
    ids=str,
)
def test_dtypes_and_broadcasting(method, reverse, dtype, shapes):
    a_shape, b_shape = shapes
    rng = np.random.default_rng(7)
    a, b, h0 = random_inputs(rng, a_shape, b_shape, 2, dtype)
    expected = reference.linear_recurrence(a, b, h0, reverse=reverse)
    assert_close(solve(method, a, b, h0, reverse), expected, dtype)


@pytest.mark.parametrize("method", LAUNCHERS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_nan_propagates_only_downstream(method, reverse, dtype):
    length, channels, poisoned_step, poisoned_channel = 50, 3, 29, 1
    rng = np.random.default_rng(3)
    a, b, h0 = random_inputs(rng, (length, channels), (length, channels), channels, dtype)
    b[poisoned_step, poisoned_channel] = np.nan
    result = solve(method, a, b, h0, reverse)
    downstream = np.zeros((length, channels), bool)
    rows = slice(None, poisoned_step + 1) if reverse else slice(poisoned_step, None)
    downstream[rows, poisoned_channel] = True
    np.testing.assert_array_equal(np.isnan(result), downstream)
    assert_close(result, reference.linear_recurrence(a, b, h0, reverse=reverse), dtype)


@settings(deadline=None, max_examples=25)
@given(
    length=st.integers(1, 60),
    channels=st.integers(1, 5),
    threads_log2=st.integers(0, 4),
    lanes_log2=st.integers(0, 3),
    items_per_thread=st.integers(2, 4),
    reverse=st.booleans(),
    method=st.sampled_from(["scan", "single-pass"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_scan_matches_reference_for_any_tunables(
    length, channels, threads_log2, lanes_log2, items_per_thread, reverse, method, seed
):
    a, b, h0 = random_inputs(
        np.random.default_rng(seed), (length, channels), (length, channels), channels, np.float64
    )
    result = solve(
        method,
        a,
        b,
        h0,
        reverse,
        threads_per_block=2**threads_log2,
        items_per_thread=items_per_thread,
        channels_per_block=2**lanes_log2,
    )
    assert_close(result, reference.linear_recurrence(a, b, h0, reverse=reverse), np.float64)


@settings(deadline=None, max_examples=10)
@given(
    length=st.integers(1, 40),
    channels=st.integers(1, 20),
    reverse=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_launchers_agree(length, channels, reverse, seed):
    a, b, h0 = random_inputs(
        np.random.default_rng(seed), (length, 1), (length, channels), channels, np.complex64
    )
    assert_close(
        solve("scan", a, b, h0, reverse), solve("sequential", a, b, h0, reverse), np.complex64
    )


@pytest.mark.parametrize("method", LAUNCHERS)
@pytest.mark.parametrize("length", [5, 30])
def test_writes_nothing_outside_out(method, length):
    channels = 3
    a, b, h0 = random_inputs(
        np.random.default_rng(length), (length, 1), (length, channels), channels, np.float64
    )
    launcher, tunables = LAUNCHERS[method]
    padded_out = cuda.to_device(np.full((length + 2, channels), -7.0))
    launcher(
        cuda.to_device(a),
        cuda.to_device(b),
        cuda.to_device(h0),
        padded_out[1:-1],
        False,
        **tunables,
    )
    result = padded_out.copy_to_host()
    assert (result[[0, -1]] == -7.0).all()
    assert_close(result[1:-1], reference.linear_recurrence(a, b, h0), np.float64)


@pytest.mark.parametrize(
    "tunables, message",
    [
        (
            {"threads_per_block": 6, "items_per_thread": 2, "channels_per_block": 2},
            "threads_per_block must be a power of two",
        ),
        (
            {"threads_per_block": 8, "items_per_thread": 2, "channels_per_block": 3},
            "channels_per_block must be a power of two",
        ),
        (
            {"threads_per_block": 8, "items_per_thread": 1, "channels_per_block": 2},
            "items_per_thread must be at least 2",
        ),
        (
            {"threads_per_block": 1024, "items_per_thread": 4, "channels_per_block": 32},
            "bytes of shared memory",
        ),
    ],
)
def test_scan_rejects_bad_tunables(tunables, message):
    a = np.ones((4, 1))
    with pytest.raises(ValueError, match=message):
        solve("scan", a, a, np.zeros(1), False, **tunables)


@cuda.jit
def look_back_kernel(flags, aggregates_a, aggregates_b, inclusive, tile, out):
    channel = cuda.grid(1)
    if channel < out.shape[0]:
        out[channel] = linear_single_pass.look_back(
            flags, aggregates_a, aggregates_b, inclusive, tile, channel
        )


def test_look_back_composes_aggregates_until_an_inclusive_prefix():
    """The look-back past tiles that have published only their aggregate, which the simulator,
    running blocks one after another, never meets in a whole scan."""
    aggregate, inclusive = linear_single_pass.AGGREGATE, linear_single_pass.INCLUSIVE
    flags = np.array([[inclusive, aggregate], [aggregate, inclusive], [aggregate, aggregate]])
    aggregates_a = np.array([[np.nan, 0.5], [2.0, np.nan], [3.0, -1.0]])
    aggregates_b = np.array([[np.nan, 1.0], [1.0, np.nan], [-2.0, 4.0]])
    states = np.array([[10.0, np.nan], [np.nan, 7.0], [np.nan, np.nan]])
    out = cuda.device_array(2)

    look_back_kernel[1, 2](
        cuda.to_device(flags.astype(np.int32)),
        *map(cuda.to_device, (aggregates_a, aggregates_b, states)),
        3,
        out,
    )

    # Channel 0: tile 0's state 10, then tiles 1 and 2; channel 1: tile 1's state 7, then tile 2.
    expected = [3.0 * (2.0 * 10.0 + 1.0) - 2.0, -1.0 * 7.0 + 4.0]
    np.testing.assert_array_equal(out.copy_to_host(), expected)


def test_docstring_examples_run():
    results = doctest.testmod(linear)
    assert results.attempted > 0
    assert results.failed == 0
