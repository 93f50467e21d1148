"""The CPU scan's carries between chunks: products that underflow, overflow or grow back, states
that overflow inside a chunk, late threads, any thread count. The loop is the reference."""

import extremes
import numpy as np
import pytest
from conftest import numba_threads, random_array
from hypothesis import given
from hypothesis import strategies as st

import scanlab
from scanlab._arrays import read_only
from scanlab._scaled_products import agrees, product_bounds, renormalised
from scanlab.cpu import linear as cpu_linear
from scanlab.cpu.vector_ir import VECTOR_BYTES

#: Relative tolerance of the scan against the loop in the same precision, and the absolute
#: floor below which the loop's own states are subnormal (and so imprecise themselves).
CLOSE = {np.float32: (1e-3, 1e-30), np.float64: (1e-8, 1e-290)}


def assert_like_the_loop(scanned, sequential, dtype):
    """NaN and Inf exactly where the loop has them; finite values equal to rounding."""
    np.testing.assert_array_equal(np.isnan(scanned), np.isnan(sequential))
    np.testing.assert_array_equal(np.isposinf(scanned), np.isposinf(sequential))
    np.testing.assert_array_equal(np.isneginf(scanned), np.isneginf(sequential))
    finite = np.isfinite(sequential)
    rtol, atol = CLOSE[dtype]
    np.testing.assert_allclose(scanned[finite], sequential[finite], rtol=rtol, atol=atol)


@given(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True),
    st.integers(-(2**40), 2**40),
)
def test_renormalised_keeps_the_value_exactly(real, imaginary, exponent):
    """The mantissa has magnitude (max of |re|, |im|) in [0.5, 1) and times 2**exponent is the
    product exactly, subnormal and huge products included (a complex part below the magnitude
    times 2**-960 may round away, as it would in any product); zero, NaN and Inf stay as they
    are."""
    for product in (real, complex(real, imaginary)):
        mantissa, shifted = renormalised(product, exponent)
        size = max(abs(product.real), abs(product.imag))
        if not 0 < size < np.inf:
            assert (mantissa, shifted) == (product, exponent) or np.isnan(mantissa)
            continue
        assert 0.5 <= max(abs(mantissa.real), abs(mantissa.imag)) < 1
        shift = shifted - exponent
        for part, original in ((mantissa.real, product.real), (mantissa.imag, product.imag)):
            if abs(original) < size * 2.0**-960:
                assert abs(part) <= 2.0**-960
                continue
            whole, scale = np.frexp(part)  # part * 2**shift exactly, without overflow
            assert np.ldexp(whole, int(scale + shift)) == original


def test_a_product_that_underflows_and_grows_back_keeps_the_state(small_chunks):
    """The issue's reproduction: the loop gives 1e300 every fourth step."""
    a = np.tile([1e-200, 1e-200, 1e200, 1e200], 16)
    for length in (64, 2**15):
        coefficients = np.resize(a, length)
        result = scanlab.linear_recurrence(coefficients, np.zeros(length), 1e300, method="scan")
        np.testing.assert_allclose(result[3::4], 1e300, rtol=1e-12)
        np.testing.assert_allclose(result[1::4], 1e-100, rtol=1e-12)


@pytest.mark.parametrize("where", [1, 40, 101])
def test_a_state_that_overflows_inside_a_chunk_stays_infinite(where, small_chunks):
    """The product over the chunk is 1, but the loop's state overflowed on the way."""
    a = np.ones(256)
    a[where], a[where + 1] = 1e10, 1e-10
    result = scanlab.linear_recurrence(a, np.zeros(256), 1e300, method="scan")
    expected = scanlab.linear_recurrence(a, np.zeros(256), 1e300, method="sequential")
    assert np.isinf(expected[where:]).all()
    np.testing.assert_array_equal(result, expected)


def extreme_values(dtype):
    """Magnitudes across the dtype's exponent range, zeros, ones, and now and then NaN/Inf."""
    top = 250 if dtype == np.float64 else 30
    magnitude = st.floats(-top, top).map(lambda exponent: 10.0**exponent)
    special = st.sampled_from([0.0, 1.0, -1.0, np.inf, -np.inf, np.nan])
    sign = st.sampled_from([1.0, -1.0])
    signed = st.tuples(sign, magnitude).map(lambda pair: pair[0] * pair[1])
    return st.one_of(signed, signed, signed, special)


@st.composite
def hostile_problems(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    length = draw(st.integers(0, 200))
    channels = draw(st.sampled_from([1, 3]))
    values = extreme_values(dtype)
    size = length * channels
    a = np.array(draw(st.lists(values, min_size=size, max_size=size)), dtype)
    b_kind = draw(st.sampled_from(["zeros", "extreme", "normal"]))
    if b_kind == "zeros":
        b = np.zeros(size, dtype)
    elif b_kind == "extreme":
        b = np.array(draw(st.lists(values, min_size=size, max_size=size)), dtype)
    else:
        b = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(size=size)
    h0 = np.array(draw(st.lists(values, min_size=channels, max_size=channels)), dtype)
    shape = (length, channels)
    return a.reshape(shape), b.astype(dtype).reshape(shape), h0, draw(st.booleans()), dtype


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@given(problem=hostile_problems())
def test_scan_matches_the_loop_on_extreme_values(problem, small_chunks):
    a, b, h0, reverse, dtype = problem
    with np.errstate(all="ignore"):
        sequential = scanlab.linear_recurrence(a, b, h0, reverse=reverse, method="sequential")
    scanned = scanlab.linear_recurrence(a, b, h0, reverse=reverse, method="scan")
    assert_like_the_loop(scanned, sequential, dtype)


@pytest.mark.parametrize("threads", [1, 2, 5])
@pytest.mark.parametrize(("channels", "lanes", "chunk_length"), [(1, False, 7), (3, False, 7),
                                                                  (1, True, 16)])  # fmt: skip
def test_any_number_of_workers_gives_the_loop(threads, channels, lanes, chunk_length):
    """More workers than threads (and than cores) take tiles in turn; all agree with the loop."""
    rng = np.random.default_rng(threads)
    # Read-only, as the solver hands them to the kernel: no specialisation of its own.
    a = read_only(rng.uniform(-1, 1, (3001, channels)))
    b = read_only(rng.normal(size=(3001, channels)))
    h0 = read_only(rng.normal(size=channels))
    out = np.empty(b.shape)
    bounds = product_bounds(np.float64, chunk_length)
    with numba_threads(threads):
        cpu_linear.linear_recurrence_scan(
            a, b, h0, out, False, chunk_length, lanes, False, threads, bounds, np.float64
        )
    expected = scanlab.linear_recurrence(a, b, h0, method="sequential")
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lanes", [False, True])
@pytest.mark.parametrize("published", ["none", "composed", "carried", "mixed"])
def test_a_late_thread_is_looked_past(published, lanes):
    """A worker that starts at tile 3 finds the state before it whatever tiles 0-2 have
    published: summaries not yet composed it composes itself, carries it uses where present.
    With ``lanes``, one channel's tiles of ``U`` chunks composed in the lanes of a vector."""
    chains = VECTOR_BYTES // 8 if lanes else cpu_linear.CHAINS
    compose = cpu_linear.compose_lanes if lanes else cpu_linear.compose_chunks
    rng = np.random.default_rng(3)
    chunk_length, tiles, channels = (16, 6, 1) if lanes else (5, 6, 2)
    tile_steps = chains * chunk_length
    length = tiles * tile_steps
    a = read_only(rng.uniform(-1, 1, (length, channels)))
    b = read_only(rng.normal(size=(length, channels)))
    h0 = read_only(rng.normal(size=channels))
    expected = scanlab.linear_recurrence(a, b, h0, method="sequential")
    bounds = product_bounds(np.float64, chunk_length)
    rows = tiles * chains
    summary = tuple(np.full((rows, channels), np.nan) for _ in range(2))
    summary += (np.zeros((rows, channels), np.int64),)
    starts, ends = np.empty((rows, channels)), np.empty((rows, channels))
    carries = np.full((tiles, channels), np.nan)
    unseen, composed, carried = cpu_linear.UNSEEN, cpu_linear.COMPOSED, cpu_linear.CARRIED
    states = {
        "none": [unseen] * 3,
        "composed": [composed] * 3,
        "carried": [carried] * 3,
        "mixed": [carried, unseen, composed],
    }[published]
    status = np.array(states + [unseen] * 3, np.int64)
    for tile in range(3):
        mine = tuple(part[tile * chains : (tile + 1) * chains] for part in summary)
        if status[tile] != unseen:
            compose(a, b, tile * tile_steps, chunk_length, length, False, mine, bounds)
        if status[tile] == carried:
            carries[tile] = expected[(tile + 1) * tile_steps - 1]
    out = np.full((length, channels), np.nan)
    cpu_linear.work_on_tiles(
        a, b, h0, out, False, chunk_length, chains, lanes, False, bounds, summary, starts,
        ends, carries, status, np.array([3], np.int64),
    )  # fmt: skip
    np.testing.assert_allclose(out[3 * tile_steps :], expected[3 * tile_steps :], rtol=1e-10)
    assert np.isnan(out[: 3 * tile_steps]).all()  # the late tiles are left to their thread
    np.testing.assert_array_equal(status, states + [carried] * 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_products_far_below_the_normal_range_are_kept_exactly(dtype):
    """a = 0.5 over 4096 steps: the product 2**-4096 is kept as a mantissa and an exponent, so a
    state of 2**4000... would survive; here h0 = 1 decays to exactly what the loop gives."""
    length = 3 * 2**14 + 5
    a = np.full(length, 0.999, dtype)
    b = np.zeros(length, dtype)
    scanned = scanlab.linear_recurrence(a, b, dtype(1), method="scan")
    sequential = scanlab.linear_recurrence(a, b, dtype(1), method="sequential")
    real = np.float32 if dtype == np.float32 else np.float64
    assert_like_the_loop(np.abs(scanned), np.abs(sequential), real)


@st.composite
def lane_problems(draw):
    """One series long enough for the scan's tiles in vector lanes (``U`` chunks of ``U`` steps
    or more, 4 tiles for each of 2 threads), of any dtype, forwards or backwards, with ``a``
    uniform, signed, of extreme magnitude with NaN/Inf/0 sprinkled in, or one value."""
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64, np.complex64, np.complex128])))
    lanes = VECTOR_BYTES // dtype.itemsize
    length = draw(st.integers(8 * lanes**2, 11 * lanes**2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["uniform", "signed", "extreme", "constant"]))
    if kind == "uniform":
        a = random_array(rng, length, dtype, 0.5, 1.0)
    elif kind == "signed":
        a = random_array(rng, length, dtype, -1.0, 1.0)
    elif kind == "extreme":
        top = 30 if dtype in (np.float32, np.complex64) else 250
        a = random_array(rng, length, dtype) * 10.0 ** rng.uniform(-top / 8, top / 8, length)
        a[rng.integers(0, length, 3)] = rng.choice([0.0, np.inf, np.nan], 3)
        a = a.astype(dtype)
    else:
        a = random_array(rng, 1, dtype, 0.5, 1.0)
    b = random_array(rng, length, dtype)
    h0 = random_array(rng, (), dtype) * draw(st.sampled_from([1.0, 1e20]))
    return a, b, h0.astype(dtype), draw(st.booleans()), dtype


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@given(problem=lane_problems(), stream=st.booleans())
def test_scan_in_vector_lanes_matches_the_loop(problem, stream):
    """One series' scan composes and reruns its chunks in the lanes of one vector; with
    ``stream`` (every result large enough) the results are written with streaming stores."""
    a, b, h0, reverse, dtype = problem
    saved = scanlab.config.cpu.streaming_store_bytes
    scanlab.config.cpu.streaming_store_bytes = 0 if stream else None
    try:
        with numba_threads(2):
            scanned = scanlab.linear_recurrence(a, b, h0, reverse=reverse, method="scan")
    finally:
        scanlab.config.cpu.streaming_store_bytes = saved
    out = np.empty((b.shape[0], 1), dtype)
    lanes, _ = cpu_linear.scan_tiles(a.reshape(-1, 1), b.reshape(-1, 1), out, 2)
    assert lanes
    with np.errstate(all="ignore"):
        sequential = scanlab.linear_recurrence(a, b, h0, reverse=reverse, method="sequential")
        terms = scanlab.linear_recurrence(
            np.abs(a), np.abs(b), np.abs(h0), reverse=reverse, method="sequential"
        )
    assert scanned.dtype == dtype
    if dtype.kind == "c":  # which part of a complex result is NaN or Inf is the product's
        finite = np.isfinite(sequential)
        np.testing.assert_array_equal(np.isfinite(scanned), finite)
        rtol, atol = extremes.CLOSE[terms.dtype]
        error = np.abs(scanned[finite] - sequential[finite])
        assert (error <= rtol * np.nan_to_num(terms[finite], nan=np.inf) + atol).all()
    else:
        extremes.assert_like_the_loop(scanned, sequential, terms)


@pytest.mark.parametrize(
    ("state", "carry", "same"),
    [
        (complex(np.nan, np.inf), complex(-np.inf, np.nan), False),
        (complex(np.nan, np.inf), complex(np.nan, np.inf), True),
        (complex(np.nan, 1.0), complex(np.nan, 1.0), True),
        (complex(np.nan, 1.0), complex(np.nan, 2.0), False),
        (complex(np.inf, 0.0), complex(np.inf, -0.0), True),
        (np.nan, np.nan, True),
        (np.inf, -np.inf, False),
        (1.0, 1.0 + 1e-15, True),
    ],
)
def test_a_carry_agrees_with_the_loop_only_where_its_nan_parts_are_the_loops(state, carry, same):
    """A complex carry whose real part is NaN where the loop's imaginary part is (both are
    ``!= themselves``) is not the loop's state: the chunk after it reruns."""
    bounds = product_bounds(np.float64, 64)
    assert agrees(state, carry, bounds) is same
