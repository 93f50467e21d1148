"""The CPU matrix scan where a chunk's products or states leave the normal range: underflow,
overflow, growing back, subnormals, Inf and NaN. Its results must be the sequential loop's."""

import numpy as np
import pytest
from extremes import assert_like_the_loop
from hypothesis import given
from hypothesis import strategies as st

import scanlab
from scanlab import config


def use_chunks(steps, systems, size, itemsize=8):
    """Make the scan's chunks ``steps`` long for ``systems`` systems of ``size`` states."""
    config.cpu.cache_bytes = steps * systems * size * (size + 1) * itemsize


def rotation(size, angle=0.3):
    """A rotation of the first two states, the identity on the others."""
    matrix = np.eye(size)
    matrix[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return matrix


def scan_and_loop(A, b, h0, reverse=False):
    """The scan's result, the loop's, and the loop on absolute values: a bound of its terms (of
    the rounding errors over eps), exact for matrices with one nonzero entry per row and
    column."""
    scanned = scanlab.linear_recurrence_matrix(A, b, h0, reverse=reverse, method="scan")
    loop = scanlab.linear_recurrence_matrix(A, b, h0, reverse=reverse, method="sequential")
    with np.errstate(invalid="ignore"):
        terms = scanlab.linear_recurrence_matrix(
            np.abs(A), np.abs(b), np.abs(h0), reverse=reverse, method="sequential"
        )
    return scanned, loop, terms


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("size", [2, 5])
@pytest.mark.parametrize("mixing", ["identity", "rotation"])
def test_product_that_underflows_and_grows_back_keeps_the_state(dtype, size, mixing, small_chunks):
    """Issue 18: ``a = tile([1e-200, 1e-200, 1e200, 1e200])`` with ``h0 = 1e300`` gave 0 after
    the first chunk, where the loop comes back to 1e300 every fourth step."""
    use_chunks(5, 1, size, np.dtype(dtype).itemsize)
    tiny, huge, start = (1e-200, 1e200, 1e300) if dtype == np.float64 else (1e-30, 1e30, 1e35)
    scales = np.tile([tiny, tiny, huge, huge], 16)
    A = (scales[:, None, None] * rotation(size, 0.3 if mixing == "rotation" else 0.0)).astype(dtype)
    h0 = np.full(size, start, dtype)
    scanned, loop, terms = scan_and_loop(A, np.zeros((64, size), dtype), h0)
    assert_like_the_loop(scanned, loop, terms)
    if mixing == "identity":
        np.testing.assert_allclose(scanned[3::4], start, rtol=100 * np.finfo(dtype).eps)


@pytest.mark.parametrize("size", [2, 5])
@pytest.mark.parametrize("mixing", ["identity", "rotation"])
def test_state_that_overflows_inside_a_chunk_stays_non_finite(size, mixing, small_chunks):
    """Issue 18: ``a[1] = 1e10, a[2] = 1e-10`` with ``h0 = 1e300``: the loop overflows at step 1
    and stays Inf or NaN; the scan was finite again after the chunk."""
    use_chunks(5, 1, size)
    scales = np.ones(64)
    scales[1], scales[2] = 1e10, 1e-10
    A = scales[:, None, None] * rotation(size, 0.3 if mixing == "rotation" else 0.0)
    scanned, loop, terms = scan_and_loop(A, np.zeros((64, size)), np.full(size, 1e300))
    assert not np.isfinite(loop[1:, 0]).any()
    assert_like_the_loop(scanned, loop, terms)


@pytest.mark.parametrize("size", [2, 5])
def test_product_that_decays_below_the_subnormals_keeps_a_large_state(size, small_chunks):
    """Half a quarter turn for 1100 steps: the product falls to ``2**-1100`` (zero as a plain
    number), the loop's state from 1e300 to ``2**-103``; the next chunks start from that state,
    not from 0."""
    use_chunks(1100, 1, size)
    A = np.eye(size)
    A[:2, :2] = [[0.0, -0.5], [0.5, 0.0]]
    A[2:, 2:] *= 0.5
    scanned, loop, terms = scan_and_loop(A, np.zeros((4 * 1100, size)), np.full(size, 1e300))
    assert np.abs(loop[1100]).max() > 1e-40
    assert_like_the_loop(scanned, loop, terms)


@pytest.mark.parametrize("size", [2, 5])
def test_large_terms_that_cancel_in_the_product_still_overflow(size, small_chunks):
    """A step maps the state into the null space of a huge next matrix: their product is 0, but
    the loop's terms (1e300 * 1e10) overflow to Inf and NaN, which the scan must give too."""
    use_chunks(8, 1, size)
    length = 64
    A = np.broadcast_to(np.eye(size), (length, size, size)).copy()
    A[18, :2, :2] = [[1.0, 0.0], [-1.0, 0.0]]
    A[19, :2, :2] = 1e300
    h0 = np.zeros(size)
    h0[0] = 1e10
    scanned, loop, terms = scan_and_loop(A, np.zeros((length, size)), h0)
    assert not np.isfinite(loop[19:, :2]).any()
    assert_like_the_loop(scanned, loop, terms)


#: Exponents of ten for the scales of matrices and inputs: the extremes, around 1, and between.
EXPONENTS = st.one_of(
    st.sampled_from([-300, -200, -160, -30, 0, 0, 0, 30, 160, 200, 300]),
    st.integers(-300, 300),
)


@st.composite
def wild_recurrences(draw):
    """Matrices ``s * M``: scales ``s`` from 1e-300 to 1e300 (and 0), ``M`` a signed
    permutation with entries from 1e-3 to 1e3 (products of such matrices never cancel, so the
    loop on absolute values bounds every term exactly) or a rotation; inputs and the initial
    state of any scale; NaN and Inf at a few places."""
    size = draw(st.sampled_from([2, 5]))
    length = draw(st.integers(1, 48))
    systems = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["permutation", "rotation"]))
    scales = 10.0 ** np.array(draw(st.lists(EXPONENTS, min_size=length, max_size=length)))
    scales[rng.uniform(size=length) < 0.05] = 0.0
    scales *= rng.choice([-1.0, 1.0], length)
    if kind == "permutation":
        matrices = np.zeros((length, systems, size, size))
        rows = np.arange(size)
        for t in range(length):
            for system in range(systems):
                columns = rng.permutation(size)
                matrices[t, system, rows, columns] = rng.choice([-1, 1], size) * 10.0 ** (
                    rng.integers(-3, 4, size)
                )
    else:
        matrices = np.linalg.qr(rng.normal(size=(length, systems, size, size)))[0]
    A = scales[:, None, None, None] * matrices
    b = rng.normal(size=(length, systems, size)) * 10.0 ** rng.integers(-300, 301, (length, 1, 1))
    b[rng.uniform(size=length) < draw(st.sampled_from([0.0, 0.5, 0.9]))] = 0.0
    h0 = rng.normal(size=(systems, size)) * 10.0 ** draw(EXPONENTS)
    for array in (A, b):
        if draw(st.booleans()) and draw(st.booleans()):
            flat = array.reshape(-1)
            flat[rng.integers(flat.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return {
        "A": A,
        "b": b,
        "h0": h0,
        "chunk": draw(st.integers(1, 6)),
        "reverse": draw(st.booleans()),
    }


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@given(problem=wild_recurrences())
def test_scan_matches_the_loop_across_the_whole_exponent_range(problem, small_chunks):
    A, b, h0 = problem["A"], problem["b"], problem["h0"]
    use_chunks(problem["chunk"], *h0.shape)
    scanned, loop, terms = scan_and_loop(A, b, h0, problem["reverse"])
    assert_like_the_loop(scanned, loop, terms)
