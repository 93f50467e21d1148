"""``scanlab.signal.filtfilt`` and ``sosfiltfilt`` against scipy's."""

import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

from scanlab.signal import filtfilt, sosfiltfilt

DTYPES = [np.float32, np.float64, np.complex128]


@st.composite
def problems(draw):
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    axis = draw(st.integers(0, len(batch)))
    padtype = draw(st.sampled_from(["odd", "even", "constant", None]))
    padlen = draw(st.sampled_from([None, 0, 1, 5, -2]))
    length = draw(st.integers(1, 120)) + (40 if padlen is None else max(padlen, 0))
    return {
        "shape": batch[:axis] + (length,) + batch[axis:],
        "axis": axis - len(batch) - 1 if draw(st.booleans()) else axis,
        "padtype": padtype,
        "padlen": padlen,
        "order": draw(st.integers(1, 4)),
        "band": draw(st.booleans()),
        "dtype": draw(st.sampled_from(DTYPES)),
        "strided": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def signal_of(problem):
    rng = np.random.default_rng(problem["seed"])
    x = rng.standard_normal(problem["shape"])
    if np.dtype(problem["dtype"]).kind == "c":
        x = x + 1j * rng.standard_normal(problem["shape"])
    x = x.astype(problem["dtype"])
    return np.repeat(x, 2, axis=problem["axis"]).take(
        range(0, 2 * x.shape[problem["axis"]], 2), problem["axis"]
    ) if problem["strided"] else x  # fmt: skip


def design(problem, output):
    band = [0.1, 0.3] if problem["band"] else 0.2
    kind = "bandpass" if problem["band"] else "lowpass"
    return scipy.signal.butter(problem["order"], band, kind, output=output)


def assert_matches(found, expected, dtype):
    assert found.shape == expected.shape and found.dtype == expected.dtype
    tolerance = 2e-4 if np.dtype(dtype) in (np.float32, np.complex64) else 1e-10
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(found, expected, rtol=0, atol=tolerance * scale)


@given(problem=problems())
def test_filtfilt_is_scipys(problem):
    x = signal_of(problem)
    x_copy = x.copy()
    b, a = design(problem, "ba")
    options = {"axis": problem["axis"], "padtype": problem["padtype"], "padlen": problem["padlen"]}
    assert_matches(filtfilt(b, a, x, **options), scipy.signal.filtfilt(b, a, x, **options), x.dtype)
    np.testing.assert_array_equal(x, x_copy)


@given(problem=problems())
def test_sosfiltfilt_is_scipys(problem):
    x = signal_of(problem)
    sos = design(problem, "sos")
    options = {"axis": problem["axis"], "padtype": problem["padtype"], "padlen": problem["padlen"]}
    expected = scipy.signal.sosfiltfilt(sos, x, **options)
    assert_matches(sosfiltfilt(sos, x, **options), expected, x.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "axis"), [((300,), 0), ((2, 300), -1), ((300, 3), 0)])
def test_first_order_filtfilt_is_scipys(dtype, shape, axis):
    """``b = [b0]``, ``a = [1, a1]``: both passes solved by ``linear_recurrence``, the
    backward one written over the forward one's result."""
    x = signal_of({"shape": shape, "axis": axis, "dtype": dtype, "strided": False, "seed": 3})
    x_copy = x.copy()
    for padtype in ("odd", None):
        expected = scipy.signal.filtfilt([0.3], [1.0, -0.7], x, axis=axis, padtype=padtype)
        found = filtfilt([0.3], [1.0, -0.7], x, axis=axis, padtype=padtype)
        assert_matches(found, expected, dtype)
    np.testing.assert_array_equal(x, x_copy)


def test_fir_filters_integers_and_gustafssons_method_are_scipys():
    """And a filter without delays, which scipy's ``filtfilt`` refuses: its gain twice."""
    np.testing.assert_array_equal(filtfilt([3.0], [2.0], np.arange(9.0)), 2.25 * np.arange(9.0))
    x = np.arange(50) % 7
    b = scipy.signal.firwin(9, 0.3)
    expected = scipy.signal.filtfilt(b, [1.0], x)
    np.testing.assert_allclose(filtfilt(b, [1.0], x), expected, rtol=1e-12, atol=1e-12)
    b, a = scipy.signal.butter(3, 0.25)
    expected = scipy.signal.filtfilt(b, a, x, method="gust", irlen=20)
    np.testing.assert_array_equal(filtfilt(b, a, x, method="gust", irlen=20), expected)
    sos = np.array([[1.0, 0.5, 0.0, 1.0, -0.3, 0.0]])  # b2 = a2 = 0: 3 taps, padlen 9
    expected = scipy.signal.sosfiltfilt(sos, x[:10])
    np.testing.assert_allclose(sosfiltfilt(sos, x[:10]), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: filtfilt([1.0], [1.0, -0.5], np.ones(5)), ValueError, "greater than padlen"),
        (lambda: filtfilt([1.0], [1.0], np.ones(5), padtype="wrap"), ValueError, "padtype"),
        (lambda: filtfilt([1.0], [1.0], np.ones(9), method="fast"), ValueError, "method"),
        (lambda: filtfilt([1.0], [0.0, 1.0], np.ones(9)), ValueError, r"a\[0\]"),
        (lambda: filtfilt([1.0], [1.0], np.float64(1.0)), ValueError, "time axis"),
        (lambda: filtfilt([1.0], [1.0], np.ones(9), padlen=2.5), TypeError, "integer"),
        (lambda: sosfiltfilt(np.ones((2, 5)), np.ones(50)), ValueError, "n_sections, 6"),
        (lambda: sosfiltfilt(np.ones((1, 6)), np.ones(9), axis=1), np.exceptions.AxisError, "1"),
    ],
)
def test_errors_are_scipys(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_both_passes_on_the_gpu(cuda_device, small_chunks):
    """The passes on the GPU (a first-order filter and small blocks: the simulator is slow;
    sections and higher orders on the GPU are ``sosfilt``'s and ``lfilter``'s tests)."""
    from numba import cuda

    x = np.random.default_rng(4).standard_normal((2, 12))
    b, a = [0.5], [1.0, -0.5]
    expected = scipy.signal.filtfilt(b, a, x)
    np.testing.assert_allclose(filtfilt(b, a, x, device=cuda_device), expected, atol=1e-12)
    with pytest.raises(TypeError, match="host"):
        sosfiltfilt(scipy.signal.butter(2, 0.2, output="sos"), cuda.to_device(x))
