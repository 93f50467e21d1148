"""linear_recurrence against the sequential float64 reference and scipy.signal.lfilter."""

import concurrent.futures

import numpy as np
import pytest
import reference
import scipy.signal
from conftest import DTYPES, assert_close, numba_threads, random_array
from hypothesis import given
from hypothesis import strategies as st
from numba import cuda

import scanlab
from scanlab.cpu import linear as cpu_linear

METHODS = ["sequential", "scan", "auto"]
#: Lengths around chunk and block boundaries of the shrunken tunables, primes, and the edges.
LENGTHS = [0, 1, 2, 3, 5, 7, 13, 31, 32, 33, 63, 64, 65, 97, 127, 128, 129, 251]


@st.composite
def problems(draw):
    """A random recurrence: shapes, axis, broadcasting of ``a``, ``h0``, dtype, direction."""
    length = draw(st.one_of(st.sampled_from(LENGTHS), st.integers(0, 300)))
    rest = draw(st.lists(st.integers(1, 4), min_size=0, max_size=2))
    axis = draw(st.integers(0, len(rest)))
    shape = tuple(rest[:axis]) + (length,) + tuple(rest[axis:])
    a_shape = draw(
        st.sampled_from(
            [
                shape,  # full
                (),  # constant coefficient
                tuple(1 if i != axis else length for i in range(len(shape))),  # shared by channels
                tuple(1 if i == axis else size for i, size in enumerate(shape)),  # constant in time
                tuple(size if i <= axis else 1 for i, size in enumerate(shape)),  # partial
            ]
        )
    )
    return {
        "shape": shape,
        "a_shape": a_shape,
        "axis": axis,
        "dtype": draw(st.sampled_from(DTYPES)),
        "reverse": draw(st.booleans()),
        "with_h0": draw(st.booleans()),
        "method": draw(st.sampled_from(METHODS)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@given(problem=problems())
def test_matches_sequential_reference(problem, device, small_chunks):
    rng = np.random.default_rng(problem["seed"])
    dtype, axis = problem["dtype"], problem["axis"]
    a = random_array(rng, problem["a_shape"], dtype)
    b = random_array(rng, problem["shape"], dtype, -2.0, 2.0)
    rest = tuple(np.delete(problem["shape"], axis))
    h0 = random_array(rng, rest, dtype) if problem["with_h0"] else None
    inputs = [x.copy() if x is not None else None for x in (a, b, h0)]

    result = scanlab.linear_recurrence(
        a, b, h0, axis=axis, reverse=problem["reverse"], method=problem["method"], device=device
    )

    expected = reference.linear_recurrence(a, b, h0, axis=axis, reverse=problem["reverse"])
    assert_close(result, expected, dtype)
    for given_input, original in zip((a, b, h0), inputs, strict=True):
        if given_input is not None:
            np.testing.assert_array_equal(given_input, original)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h0", [2.5, np.float32(-1.5), np.array(0.25), np.array([3.0])])
@pytest.mark.parametrize("axis", [0, -1])
def test_a_scalar_h0_starts_every_channel(dtype, h0, axis):
    """A 0-d ``h0`` (a Python or NumPy number, a 0-d array) or one of shape (1,) broadcasts to every
    channel; the result's dtype is NumPy's promotion (a Python float is weak, arrays are not)."""
    rng = np.random.default_rng(5)
    b = random_array(rng, (37, 5) if axis == 0 else (5, 37), dtype)
    a = random_array(rng, b.shape, dtype)
    result = scanlab.linear_recurrence(a, b, h0, axis=axis)
    expected_dtype = np.result_type(a, b, h0)
    full = np.broadcast_to(np.asarray(h0).reshape(()), (5,)).astype(expected_dtype)
    assert result.dtype == expected_dtype
    expected = reference.linear_recurrence(a, b, full, axis=axis)
    assert_close(result, expected, expected_dtype)


@pytest.mark.parametrize("length", [1, 2, 97, 300, 4099])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("reverse", [False, True])
def test_matches_lfilter(length, method, reverse, device, small_chunks):
    if device == "cuda" and length > 300:
        pytest.skip("too slow for the CUDA simulator; 300 steps already cross many tiles")
    rng = np.random.default_rng(length)
    coefficient, h0 = 0.93, 0.7
    x = rng.normal(size=(length, 3))
    result = scanlab.linear_recurrence(
        coefficient, x, h0, reverse=reverse, method=method, device=device
    )
    x_in_order = x[::-1] if reverse else x
    expected, _ = scipy.signal.lfilter(
        [1.0], [1.0, -coefficient], x_in_order, axis=0, zi=np.full((1, 3), coefficient * h0)
    )
    assert_close(result, expected[::-1] if reverse else expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["sequential", "scan"])
def test_long_series_crosses_full_size_chunks(dtype, method, device):
    """Default tunables: chunks of thousands of steps, several blocks or tiles, few channels."""
    # On the GPU (simulated), 2100 steps are three tiles of the default 1024 and two levels.
    length, channel_counts = (3 * 2**16 + 11, (1, 3)) if device == "cpu" else (2100, (1,))
    rng = np.random.default_rng(7)
    for channels in channel_counts:
        a = random_array(rng, (length, channels), dtype, 0.5, 1.0)
        b = random_array(rng, (length, channels), dtype)
        result = scanlab.linear_recurrence(a, b, method=method, device=device)
        assert_close(result, reference.linear_recurrence(a, b), dtype)


@pytest.mark.parametrize(
    ("a", "b", "h0", "expected"),
    [
        (np.int64(2), np.arange(3), None, np.float64),
        (np.ones(3, bool), np.arange(3, dtype=np.int32), None, np.float64),
        (0.5, np.ones(3, np.float32), None, np.float32),
        (np.float32(0.5), np.ones(3, np.float32), 1.0, np.float32),
        (np.ones(3, np.float32), np.ones(3), None, np.float64),
        (np.ones(3, np.complex64), np.ones(3), None, np.complex128),
        (np.ones(3, np.float32), np.ones(3, np.float32), 1j, np.complex64),
        (np.ones(3, np.int16), np.ones(3, np.float32), None, np.float32),
    ],
)
def test_dtype_follows_numpy_promotion(a, b, h0, expected):
    result = scanlab.linear_recurrence(a, b, h0)
    assert result.dtype == expected
    assert_close(result, reference.linear_recurrence(a, b, h0), expected)


@pytest.mark.parametrize("method", METHODS)
def test_empty_inputs_give_empty_results(method):
    assert scanlab.linear_recurrence(0.5, np.empty(0), method=method).shape == (0,)
    empty = scanlab.linear_recurrence(np.ones((0, 3)), np.ones((0, 3), np.float32), method=method)
    assert empty.shape == (0, 3) and empty.dtype == np.float64
    no_channels = scanlab.linear_recurrence(0.5, np.ones((4, 0), np.float32), method=method)
    assert no_channels.shape == (4, 0) and no_channels.dtype == np.float32


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_out_is_written_and_returned(method, axis, small_chunks):
    rng = np.random.default_rng(1)
    a, b = rng.uniform(-1, 1, (2, 40, 3)), rng.normal(size=(2, 40, 3))
    out = np.full(b.shape, np.nan)
    result = scanlab.linear_recurrence(a, b, axis=axis, method=method, out=out)
    assert result is out
    assert_close(out, reference.linear_recurrence(a, b, axis=axis))


@pytest.mark.parametrize("method", METHODS)
def test_out_may_alias_the_inputs(method, small_chunks):
    rng = np.random.default_rng(2)
    a, b = rng.uniform(-1, 1, (100, 2)), rng.normal(size=(100, 2))
    expected = reference.linear_recurrence(a, b)
    in_place = b.copy()
    assert scanlab.linear_recurrence(a, in_place, method=method, out=in_place) is in_place
    assert_close(in_place, expected)
    shifted = np.concatenate([b, b])
    scanlab.linear_recurrence(a, shifted[1:101], method=method, out=shifted[:100])
    assert_close(shifted[:100], reference.linear_recurrence(a, np.concatenate([b, b])[1:101]))


@pytest.mark.parametrize("method", METHODS)
def test_non_contiguous_and_read_only_inputs(method, small_chunks):
    rng = np.random.default_rng(3)
    big_a = rng.uniform(-1, 1, (90, 8))
    big_b = rng.normal(size=(8, 90)).T  # Fortran order
    a, b = big_a[::2, ::3], big_b[::2, 1::3]
    a.flags.writeable = False
    b.flags.writeable = False
    result = scanlab.linear_recurrence(a, b, np.array([1.0, 2.0, 3.0])[::-1], method=method)
    assert_close(result, reference.linear_recurrence(a, b, np.array([3.0, 2.0, 1.0])))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("reverse", [False, True])
def test_nan_propagates_forward_only_in_its_channel(method, reverse, small_chunks):
    length = 200
    rng = np.random.default_rng(4)
    a, b = rng.uniform(-1, 1, (length, 3)), rng.normal(size=(length, 3))
    b[77, 1] = np.nan
    result = scanlab.linear_recurrence(a, b, method=method, reverse=reverse)
    tainted = np.arange(length) >= 77 if not reverse else np.arange(length) <= 77
    np.testing.assert_array_equal(np.isnan(result[:, 1]), tainted)
    assert np.isfinite(result[:, [0, 2]]).all()
    assert np.isfinite(result[~tainted, 1]).all()


# The CUDA simulator computes in NumPy, which warns where the products overflow.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["sequential", "scan"])
def test_products_that_overflow_do_not_poison_a_zero_state(method, dtype, device):
    """prod(a) overflows within a chunk, but with b = 0 and h0 = 0 every state is exactly 0."""
    length = 100_000 if device == "cpu" else (300 if dtype == np.float32 else 2100)
    result = scanlab.linear_recurrence(
        dtype(2.0), np.zeros(length, dtype), method=method, device=device
    )
    np.testing.assert_array_equal(result, np.zeros(length))


# The CUDA simulator computes in NumPy, which warns where the products overflow.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_inf_in_a_matches_the_sequential_loop(dtype, device, request):
    if device == "cuda":  # small tiles: the simulator is slow; 600 steps cross 37 of them
        request.getfixturevalue("small_chunks")
    length = 50_000 if device == "cpu" else 600
    rng = np.random.default_rng(5)
    a = random_array(rng, (length, 2), dtype)
    b = random_array(rng, (length, 2), dtype)
    a[length * 3 // 5, 0] = np.inf
    a[length * 4 // 5, 1] = 0.0
    b[length * 4 // 5, 1] = np.inf
    sequential = scanlab.linear_recurrence(a, b, method="sequential", device=device)
    scanned = scanlab.linear_recurrence(a, b, method="scan", device=device)
    np.testing.assert_array_equal(np.isnan(scanned), np.isnan(sequential))
    np.testing.assert_array_equal(np.isinf(scanned), np.isinf(sequential))
    finite = np.isfinite(sequential)
    assert_close(scanned[finite], sequential[finite])


@pytest.mark.parametrize("threads", [1, 2])
def test_scan_with_any_thread_count(threads, small_chunks):
    rng = np.random.default_rng(6)
    a, b = rng.uniform(-1, 1, 1001), rng.normal(size=1001)
    with numba_threads(threads):
        result = scanlab.linear_recurrence(a, b, method="scan")
    assert_close(result, reference.linear_recurrence(a, b))


def test_auto_with_the_static_override_scans_only_few_channels():
    choose = cpu_linear.choose_method
    assert choose(length=2**20, channels=1, dtype=np.float64, threads=2) == "scan"
    assert choose(length=2**20, channels=1, dtype=np.float64, threads=1) == "sequential"
    assert choose(length=2**20, channels=512, dtype=np.float64, threads=2) == "sequential"
    assert choose(length=100, channels=1, dtype=np.float64, threads=2) == "sequential"


class FakeGPUArray:
    """Any object that says it lives on the GPU."""

    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f8", "data": (0, False), "version": 3}


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"a": 0.5, "b": np.ones(3), "device": "gpu"}, ValueError, "device must be one of"),
        ({"a": 0.5, "b": np.ones(3), "device": None}, ValueError, "device must be one of"),
        ({"a": 0.5, "b": np.ones(3), "method": "fast"}, ValueError, "method must be one of"),
        ({"a": 0.5, "b": np.ones(3, np.float16)}, TypeError, "promote to float16"),
        ({"a": 0.5, "b": np.ones(3, np.longdouble)}, TypeError, "promote to"),
        ({"a": 0.5, "b": np.array(["x", "y"])}, TypeError, "b has dtype <U1"),
        ({"a": 0.5, "b": np.ones(3, object)}, TypeError, "not numeric"),
        ({"a": np.ones(4), "b": np.ones(3)}, ValueError, r"shape \(4,\) and b with shape \(3,\)"),
        ({"a": 0.5, "b": 1.0}, ValueError, "both scalars"),
        ({"a": 0.5, "b": np.ones((3, 2)), "axis": 2}, np.exceptions.AxisError, "axis 2"),
        ({"a": 0.5, "b": np.ones((3, 2)), "axis": 1.0}, TypeError, "axis must be an integer"),
        (
            {"a": 0.5, "b": np.ones((3, 5)), "h0": np.ones(4), "axis": 1},
            ValueError,
            r"With axis=1, a result of shape \(3, 5\) needs h0 of shape \(3,\).*got \(4,\)",
        ),
        (
            {"a": 0.5, "b": np.ones((3, 5)), "out": np.empty((5, 3))},
            ValueError,
            r"out has shape \(5, 3\), but the result has shape \(3, 5\)",
        ),
        (
            {"a": 0.5, "b": np.ones(3), "out": np.empty(3, np.float32)},
            TypeError,
            "out has dtype float32, but the result has dtype float64",
        ),
        ({"a": 0.5, "b": np.ones(3), "out": [0.0, 0.0, 0.0]}, TypeError, "out must be a NumPy"),
        ({"a": 0.5, "b": np.ones(3), "reverse": "no"}, TypeError, "reverse must be True or"),
        (
            {"a": 0.5, "b": FakeGPUArray(), "device": "cpu"},
            TypeError,
            "b live.* on the GPU, but device='cpu'",
        ),
        (
            {"a": 0.5, "b": np.ones(3), "out": FakeGPUArray(), "device": "cpu"},
            TypeError,
            "out live.* on the GPU, but device='cpu'",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        scanlab.linear_recurrence(**kwargs)


def test_read_only_out_is_refused():
    out = np.empty(3)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        scanlab.linear_recurrence(0.5, np.ones(3), out=out)


@pytest.mark.skipif(cuda.is_available(), reason="a CUDA device (or the simulator) is here")
def test_cuda_without_a_gpu_says_how_to_run_on_the_cpu():
    with pytest.raises(RuntimeError, match="device='cpu'"):
        scanlab.linear_recurrence(0.5, np.ones(3), device="cuda")
    with pytest.raises(RuntimeError, match="device='cpu'"):  # 'auto' follows the data
        scanlab.linear_recurrence(FakeGPUArray(), np.ones(3))
    with pytest.raises(RuntimeError, match="device='cpu'"):
        scanlab.linear_recurrence_vjp(0.5, FakeGPUArray(), np.ones(3))
    with pytest.raises(RuntimeError, match="device='cpu'"):
        scanlab.nonlinear_recurrence(scanlab.cells.ParaGRU(2, 3), FakeGPUArray(), None)
    with pytest.raises(RuntimeError, match="device='cpu'"):
        scanlab.nonlinear_recurrence_vjp(
            scanlab.cells.ParaGRU(2, 3), np.ones((3, 3)), None, np.ones((3, 2)), FakeGPUArray()
        )


@pytest.mark.parametrize("method", ["scan", "sequential"])
def test_many_python_threads_at_once_get_their_own_results(method, small_chunks):
    rng = np.random.default_rng(11)
    problems = [
        (rng.uniform(-1, 1, (257, 3)), rng.standard_normal((257, 3)), rng.standard_normal(3))
        for _ in range(10)
    ]
    expected = [reference.linear_recurrence(a, b, h0) for a, b, h0 in problems]

    def solve(problem):
        a, b, h0 = problem
        return scanlab.linear_recurrence(a, b, h0, method=method, device="cpu")

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(solve, problems * 3))
    for result, wanted in zip(results, expected * 3, strict=True):
        assert_close(result, wanted, np.float64)
