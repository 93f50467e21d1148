"""The CUDA scans' carries between chunks and tiles, elementwise and matrix: products that
underflow, overflow or grow back, states that overflow inside a chunk, NaN and Inf. The
sequential kernels are the reference.

Run in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU, on tiny problems.
"""

import numba
import numpy as np
import pytest
from conftest import CUDA_MODULE_MARKS, fast_thread_switching
from extremes import assert_like_the_loop, extreme_problems
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import cuda

from scanlab.cuda import linear, linear_matrix

pytestmark = CUDA_MODULE_MARKS

#: Tunables of the scan and what their tiles check for ``T = 64`` steps: tiles of one chunk of 4
#: steps (only the tile boundaries), one tile of 8 chunks of 8 steps (only the chunk boundaries
#: within it), and tiles of 8 chunks of 2 steps over two levels (both).
TUNABLES = {
    "tiles": {"threads_per_block": 1, "items_per_thread": 4, "channels_per_block": 1},
    "chunks": {"threads_per_block": 8, "items_per_thread": 8, "channels_per_block": 1},
    "both": {"threads_per_block": 8, "items_per_thread": 2, "channels_per_block": 1},
}


@pytest.fixture(autouse=True, scope="module")
def fast_simulator():
    with fast_thread_switching():
        yield


def operands(a, b, h0):
    """``a``, ``b`` and ``h0`` on the device, in kernel layout."""
    return [cuda.to_device(np.ascontiguousarray(array)) for array in (a, b, h0)]


def loop_of(a, b, h0, reverse=False):
    """The sequential kernel's result for ``(T, D)`` operands."""
    loop = cuda.device_array(b.shape, b.dtype)
    linear.linear_recurrence_sequential(*operands(a, b, h0), loop, reverse, threads_per_block=8)
    return loop.copy_to_host()


def scan_and_loop(a, b, h0, reverse=False, single_pass=False, **tunables):
    """The scan's result and the sequential kernel's, for ``(T, D)`` operands."""
    scanned = cuda.device_array(b.shape, b.dtype)
    linear.linear_recurrence_scan(
        *operands(a, b, h0), scanned, reverse, single_pass=single_pass,
        **(tunables or TUNABLES["both"]),
    )  # fmt: skip
    return scanned.copy_to_host(), loop_of(a, b, h0, reverse)


@pytest.mark.parametrize("single_pass", [False, True], ids=["scan", "single-pass"])
@pytest.mark.parametrize("checked", TUNABLES)
def test_a_product_that_underflows_and_grows_back_keeps_the_state(checked, single_pass):
    """Issue 18: the scan gave 0 after the first chunk where the loop comes back to 1e300 every
    fourth step."""
    a = np.tile([1e-200, 1e-200, 1e200, 1e200], 16)[:, None]
    h0 = np.array([1e300])
    scanned, loop = scan_and_loop(a, np.zeros_like(a), h0, False, single_pass, **TUNABLES[checked])
    assert_like_the_loop(scanned, loop)
    np.testing.assert_allclose(scanned[3::4], 1e300, rtol=1e-12)


@pytest.mark.parametrize("single_pass", [False, True], ids=["scan", "single-pass"])
@pytest.mark.parametrize("checked", TUNABLES)
def test_a_state_that_overflows_inside_a_chunk_stays_infinite(checked, single_pass):
    """Issue 18: the product over the chunk is 1, but the loop's state overflowed at step 1 and
    stays Inf; the scan was finite again after the chunk."""
    a = np.ones((64, 1))
    a[1], a[2] = 1e10, 1e-10
    h0 = np.array([1e300])
    scanned, loop = scan_and_loop(a, np.zeros_like(a), h0, False, single_pass, **TUNABLES[checked])
    assert np.isinf(loop[1:]).all()
    np.testing.assert_array_equal(scanned, loop)


#: The dtypes of the test on extreme values. The simulator runs the kernels' ``njit`` helpers
#: on the CPU, which return boxed Python floats, so single-precision states turn double there
#: after a step: only a GPU computes float32 as it is.
EXTREME_DTYPES = [np.float64] if numba.config.ENABLE_CUDASIM else [np.float32, np.float64]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@settings(max_examples=40, deadline=None)
@given(
    problem=extreme_problems(EXTREME_DTYPES),
    items_per_thread=st.integers(2, 4),
    threads_per_block=st.sampled_from([1, 8]),
    reverse=st.booleans(),
    single_pass=st.booleans(),
)
def test_scan_matches_the_loop_on_extreme_values(
    problem, items_per_thread, threads_per_block, reverse, single_pass
):
    """Products that underflow, overflow and come back, NaN and Inf: the loop's result, within
    rounding of the terms that make it."""
    a, b, h0 = problem
    tunables = {"items_per_thread": items_per_thread, "threads_per_block": threads_per_block}
    scanned, loop = scan_and_loop(a, b, h0, reverse, single_pass, channels_per_block=1, **tunables)
    assert_like_the_loop(scanned, loop, loop_of(np.abs(a), np.abs(b), np.abs(h0), reverse))


def matrix_scan_and_loop(scales, size, h0, reverse=False, mixing="identity", chunk_length=3):
    """The matrix scan's result and the sequential kernel's for one system of ``size`` states,
    ``A[t] = scales[t] * M`` (``M`` the identity, or a rotation of the first two states or
    their swap), ``b = 0``; and the loop's on absolute values, a bound of the terms."""
    mixing_matrix = np.eye(size)
    if mixing == "rotation":
        cosine, sine = np.cos(0.3), np.sin(0.3)
        mixing_matrix[:2, :2] = [[cosine, -sine], [sine, cosine]]
    elif mixing == "swap":
        mixing_matrix[:2, :2] = [[0.0, 1.0], [1.0, 0.0]]
    scales = np.asarray(scales)
    a = (scales[:, None, None] * mixing_matrix)[:, None].astype(scales.dtype)
    b = np.zeros((len(scales), 1, size), scales.dtype)
    initial = np.full((1, size), h0, scales.dtype)
    results = []
    for operands_k in ((a, b, initial), (np.abs(a), b, np.abs(initial))):
        device = [cuda.to_device(np.ascontiguousarray(array)) for array in operands_k]
        for solve in (linear_matrix.linear_recurrence_matrix_scan,
                      linear_matrix.linear_recurrence_matrix_sequential):  # fmt: skip
            out = cuda.device_array(b.shape, b.dtype)
            if solve is linear_matrix.linear_recurrence_matrix_scan:
                solve(*device, out, reverse, threads_per_block=8, chunk_length=chunk_length)
            else:
                solve(*device, out, reverse, threads_per_block=8)
            results.append(out.copy_to_host())
    scanned, loop, _, terms = results
    return scanned, loop, terms


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("size", [2, 5], ids=["registers", "blocks"])
@pytest.mark.parametrize("mixing", ["identity", "rotation"])
def test_matrix_products_that_underflow_and_grow_back_keep_the_state(size, mixing):
    """Issue 18 for matrices: products of ``1e-200 I`` underflowed to zero and lost the state
    the loop comes back to every fourth step (chunks of 4 steps: their products are 0, not
    NaN)."""
    scales = np.tile([1e-200, 1e-200, 1e200, 1e200], 5)
    scanned, loop, terms = matrix_scan_and_loop(scales, size, 1e300, mixing=mixing, chunk_length=4)
    assert_like_the_loop(scanned, loop, terms)
    if mixing == "identity":
        np.testing.assert_allclose(scanned[3::4], 1e300, rtol=1e-12)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("size", [2, 5], ids=["registers", "blocks"])
@pytest.mark.parametrize("mixing", ["identity", "rotation"])
def test_matrix_state_that_overflows_inside_a_chunk_stays_non_finite(size, mixing):
    """Issue 18 for matrices: the product over the chunk is finite, but the loop's state
    overflowed at step 1 and is never finite again."""
    scales = np.ones(20)
    scales[1], scales[2] = 1e10, 1e-10
    scanned, loop, terms = matrix_scan_and_loop(scales, size, 1e300, mixing=mixing)
    assert not np.isfinite(loop[1:, 0, 0]).any()
    assert_like_the_loop(scanned, loop, terms)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@settings(max_examples=15, deadline=None)
@given(
    problem=extreme_problems(EXTREME_DTYPES, lengths=(8, 30)),
    mixing=st.sampled_from(["identity", "swap"]),
    chunk_length=st.integers(2, 4),
    reverse=st.booleans(),
)
def test_matrix_scan_matches_the_loop_on_extreme_values(problem, mixing, chunk_length, reverse):
    """Systems of two states, ``a[t]`` times the identity or a swap (no cancellation between
    states): the loop's result, within rounding of the terms that make it."""
    a, _, h0 = problem
    scanned, loop, terms = matrix_scan_and_loop(a[:, 0], 2, h0[0], reverse, mixing, chunk_length)
    assert_like_the_loop(scanned, loop, terms)
