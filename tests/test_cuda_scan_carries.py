"""The CUDA scans' carries between chunks and tiles: products that underflow, overflow or grow
back, states that overflow inside a chunk, NaN and Inf. The sequential kernel is the reference.

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

from scanlab.cuda import linear

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
