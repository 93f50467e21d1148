"""linear_recurrence_matrix against the sequential float64 einsum reference and scipy.signal."""

import numpy as np
import pytest
import reference
import scipy.linalg
import scipy.signal
from conftest import DTYPES, assert_close, numba_threads, random_array, random_matrices
from hypothesis import given
from hypothesis import strategies as st

import scanlab
from scanlab.cpu import linear_matrix as cpu_linear_matrix

METHODS = ["sequential", "scan", "auto"]
#: State sizes: the elementwise path (1), registers (2, 3), memory (5, 8, 17).
SIZES = [1, 2, 3, 5, 8, 17]
#: Lengths around the chunks of the shrunken tunables, primes, and the edges.
LENGTHS = [0, 1, 2, 3, 5, 7, 13, 31, 32, 33, 64, 65, 97, 128, 129, 251]


@st.composite
def problems(draw, simulated=False):
    """A random matrix recurrence: sizes, batch shape, axis, broadcasting of A, dtype, method.

    ``simulated``: sizes the CUDA simulator runs in a second or two.
    """
    if simulated:
        size = draw(st.sampled_from(SIZES[:4]))
        length = draw(st.one_of(st.sampled_from(LENGTHS[:10]), st.integers(0, 40)))
        batch = draw(st.lists(st.integers(1, 2), min_size=0, max_size=1))
    else:
        size = draw(st.sampled_from(SIZES))
        length = draw(st.one_of(st.sampled_from(LENGTHS), st.integers(0, 200)))
        batch = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    axis = draw(st.integers(0, len(batch)))
    leading = tuple(batch[:axis]) + (length,) + tuple(batch[axis:])
    a_leading = draw(
        st.sampled_from(
            [
                leading,  # one matrix per step and system
                (),  # one matrix for all
                tuple(1 if i != axis else length for i in range(len(leading))),  # per step
                tuple(1 if i == axis else n for i, n in enumerate(leading)),  # per system
                tuple(n if i <= axis else 1 for i, n in enumerate(leading)),  # partial
            ]
        )
    )
    return {
        "size": size,
        "leading": leading,
        "a_leading": a_leading,
        "axis": axis,
        "dtype": draw(st.sampled_from(DTYPES)),
        "reverse": draw(st.booleans()),
        "with_h0": draw(st.booleans()),
        "method": draw(st.sampled_from(METHODS)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@given(data=st.data())
def test_matches_sequential_reference(data, device, small_chunks):
    problem = data.draw(problems(simulated=device == "cuda"))
    rng = np.random.default_rng(problem["seed"])
    dtype, axis, size = problem["dtype"], problem["axis"], problem["size"]
    A = random_matrices(rng, problem["a_leading"], size, dtype)
    b = random_array(rng, problem["leading"] + (size,), dtype, -2.0, 2.0)
    state_shape = tuple(np.delete(problem["leading"], axis)) + (size,)
    h0 = random_array(rng, state_shape, dtype) if problem["with_h0"] else None
    inputs = [x.copy() if x is not None else None for x in (A, b, h0)]

    result = scanlab.linear_recurrence_matrix(
        A, b, h0, axis=axis, reverse=problem["reverse"], method=problem["method"], device=device
    )

    expected = reference.linear_recurrence_matrix(A, b, h0, axis=axis, reverse=problem["reverse"])
    assert_close(result, expected, dtype)
    for given_input, original in zip((A, b, h0), inputs, strict=True):
        if given_input is not None:
            np.testing.assert_array_equal(given_input, original)


@pytest.mark.parametrize("size", [2, 3, 4, 5])
@pytest.mark.parametrize("method", ["sequential", "scan"])
def test_long_sequences_cross_full_size_chunks(size, method, device):
    """Default tunables: chunks of thousands of steps, several blocks, one and several systems."""
    if device == "cuda" and size in (3, 4):
        pytest.skip("2 and 5 states cover the GPU kernels; the simulator is slow")
    length = 100_003 if device == "cpu" else 205  # 7 chunks of 32 on the GPU, the last partial
    rng = np.random.default_rng(size)
    for systems in (1, 3):
        A = random_matrices(rng, (length, systems), size, np.float64)
        b = random_array(rng, (length, systems, size), np.float64)
        result = scanlab.linear_recurrence_matrix(A, b, method=method, device=device)
        assert_close(result, reference.linear_recurrence_matrix(A, b))


@pytest.mark.parametrize("method", METHODS)
def test_transposed_view_runs_the_adjoint_recurrence(method, small_chunks):
    rng = np.random.default_rng(1)
    A = random_matrices(rng, (150,), 3, np.float64)
    b = rng.normal(size=(150, 3))
    transposed = A.swapaxes(-1, -2)
    result = scanlab.linear_recurrence_matrix(transposed, b, reverse=True, method=method)
    expected = reference.linear_recurrence_matrix(np.ascontiguousarray(transposed), b, reverse=True)
    assert_close(result, expected)


@pytest.mark.parametrize("method", METHODS)
def test_blocks_match_the_dense_block_diagonal_system(method, small_chunks):
    rng = np.random.default_rng(2)
    length, blocks, size = 90, 4, 2
    A = random_matrices(rng, (length, blocks), size, np.float64)
    b = rng.normal(size=(length, blocks, size))
    result = scanlab.linear_recurrence_matrix(A, b, method=method)
    dense = np.stack([scipy.linalg.block_diag(*A[t]) for t in range(length)])
    expected = scanlab.linear_recurrence_matrix(dense, b.reshape(length, -1), method="sequential")
    assert_close(result.reshape(length, -1), expected)


@pytest.mark.parametrize("method", METHODS)
def test_time_invariant_system_matches_scipy_dlsim(method, small_chunks):
    """``x[t+1] = A x[t] + B u[t]`` is the recurrence with ``b[t] = B u[t]``, ``h[t] = x[t+1]``."""
    rng = np.random.default_rng(3)
    A = random_matrices(rng, (), 4, np.float64)
    B = rng.normal(size=(4, 2))
    u = rng.normal(size=(300, 2))
    x0 = rng.normal(size=4)
    system = (A, B, np.eye(4), np.zeros((4, 2)), 1.0)
    _, _, states = scipy.signal.dlsim(system, u, x0=x0)
    result = scanlab.linear_recurrence_matrix(A, u @ B.T, x0, method=method)
    assert_close(result[:-1], states[1:])


@pytest.mark.parametrize("method", ["sequential", "scan"])
@pytest.mark.parametrize("size", [2, 5])
def test_spectral_radius_one_over_long_sequences(method, size):
    """Rotations keep products bounded: the scan's rounding stays that of the loop."""
    rng = np.random.default_rng(4)
    length = 200_000
    rotation, _ = np.linalg.qr(rng.normal(size=(size, size)))
    b = rng.normal(size=(length, size))
    result = scanlab.linear_recurrence_matrix(rotation, b, method=method)
    expected = reference.linear_recurrence_matrix(rotation, b)
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-11 * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["sequential", "scan"])
def test_growing_recurrences_keep_relative_accuracy(dtype, method, device, small_chunks):
    """Spectral radius 1.05 over a short sequence: states grow 10^4-fold, errors with them."""
    rng = np.random.default_rng(5)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    A = (1.05 * rotation).astype(dtype)
    b = random_array(rng, (200, 3), dtype)
    result = scanlab.linear_recurrence_matrix(A, b, method=method, device=device)
    expected = reference.linear_recurrence_matrix(A, b)
    norms = np.linalg.norm(expected, axis=1, keepdims=True)
    tolerance = 50 * np.finfo(dtype).eps * np.arange(1, 201)[:, None]
    assert np.all(np.abs(result - expected) <= tolerance * np.maximum(norms, 1))


# The CUDA simulator computes in NumPy, which warns where the products overflow.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("size", [2, 5])
@pytest.mark.parametrize("method", ["sequential", "scan"])
def test_products_that_overflow_do_not_poison_a_zero_state(size, method, device):
    """prod(A) overflows in its first entry, where the state is exactly 0 at every step."""
    length, growth = (100_000, 2.0) if device == "cpu" else (300, 16.0)  # 16**300 = 2**1200
    A = np.diag([growth] + [0.5] * (size - 1))
    b = np.zeros((length, size))
    b[:, 1] = 1.0
    result = scanlab.linear_recurrence_matrix(A, b, method=method, device=device)
    np.testing.assert_array_equal(result[:, 0], 0.0)
    assert_close(result[:, 1:], reference.linear_recurrence_matrix(A[1:, 1:], b[:, 1:]))


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_nan_propagates_forward_only_in_its_system(size, reverse, method, small_chunks):
    length = 120
    rng = np.random.default_rng(6)
    A = random_matrices(rng, (length, 3), size, np.float64)
    b = rng.normal(size=(length, 3, size))
    b[50, 1, 0] = np.nan
    result = scanlab.linear_recurrence_matrix(A, b, method=method, reverse=reverse)
    tainted = np.arange(length) >= 50 if not reverse else np.arange(length) <= 50
    np.testing.assert_array_equal(np.isnan(result[:, 1]).any(axis=1), tainted)
    assert np.isfinite(result[~tainted]).all()
    assert np.isfinite(result[:, [0, 2]]).all()


# The CUDA simulator computes in NumPy, which warns where the products overflow.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_inf_matches_the_sequential_loop(dtype, device):
    length = 50_000 if device == "cpu" else 400
    rng = np.random.default_rng(7)
    A = random_matrices(rng, (length, 2), 2, dtype)
    b = random_array(rng, (length, 2, 2), dtype)
    A[length * 3 // 5, 0, 1, 1] = np.inf
    b[length * 4 // 5, 1, 0] = np.inf
    sequential = scanlab.linear_recurrence_matrix(A, b, method="sequential", device=device)
    scanned = scanlab.linear_recurrence_matrix(A, b, method="scan", device=device)
    np.testing.assert_array_equal(np.isnan(scanned), np.isnan(sequential))
    np.testing.assert_array_equal(np.isinf(scanned), np.isinf(sequential))
    finite = np.isfinite(sequential)
    assert_close(scanned[finite], sequential[finite])


@pytest.mark.parametrize(
    ("A", "b", "h0", "expected"),
    [
        (np.eye(2, dtype=np.int64), np.ones((3, 2), np.int32), None, np.float64),
        (np.eye(2, dtype=np.float32), np.ones((3, 2), np.float32), 1.0, np.float32),
        (np.eye(2, dtype=np.float32), np.ones((3, 2)), None, np.float64),
        (np.eye(2, dtype=np.float32), np.ones((3, 2), np.float32), 1j, np.complex64),
        (np.eye(2, dtype=np.complex64), np.ones((3, 2)), None, np.complex128),
    ],
)
def test_dtype_follows_numpy_promotion(A, b, h0, expected):
    result = scanlab.linear_recurrence_matrix(A, b, h0)
    assert result.dtype == expected
    assert_close(result, reference.linear_recurrence_matrix(A, b, h0), expected)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("A_shape", "b_shape"),
    [((2, 2), (0, 2)), ((0, 3, 3), (3,)), ((4, 0, 0), (4, 0)), ((4, 1, 2, 2), (4, 0, 2))],
)
def test_empty_inputs_give_empty_results(method, A_shape, b_shape):
    result = scanlab.linear_recurrence_matrix(np.ones(A_shape), np.ones(b_shape), method=method)
    leading = np.broadcast_shapes(A_shape[:-2], b_shape[:-1])
    assert result.shape == leading + (A_shape[-1],) and result.dtype == np.float64


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("axis", [0, 1, -2])
def test_out_is_written_and_returned(method, axis, small_chunks):
    rng = np.random.default_rng(8)
    A = random_matrices(rng, (2, 40), 3, np.float64)
    b = rng.normal(size=(2, 40, 3))
    out = np.full(b.shape, np.nan)
    result = scanlab.linear_recurrence_matrix(A, b, axis=axis, method=method, out=out)
    assert result is out
    assert_close(out, reference.linear_recurrence_matrix(A, b, axis=axis))


@pytest.mark.parametrize("method", METHODS)
def test_out_may_alias_b(method, small_chunks):
    rng = np.random.default_rng(9)
    A = random_matrices(rng, (100,), 2, np.float64)
    b = rng.normal(size=(100, 2))
    expected = reference.linear_recurrence_matrix(A, b)
    in_place = b.copy()
    assert scanlab.linear_recurrence_matrix(A, in_place, method=method, out=in_place) is in_place
    assert_close(in_place, expected)


@pytest.mark.parametrize("method", METHODS)
def test_non_contiguous_and_read_only_inputs(method, small_chunks):
    rng = np.random.default_rng(10)
    big_A = random_matrices(rng, (90, 4), 6, np.float64)
    big_b = rng.normal(size=(6, 4, 90)).T  # Fortran order, time first
    A, b = big_A[::2, ::2, 1:4, 2:5], big_b[::2, ::2, 3:]
    A.flags.writeable = False
    b.flags.writeable = False
    h0 = np.arange(6.0).reshape(2, 3)[:, ::-1]
    result = scanlab.linear_recurrence_matrix(A, b, h0, method=method)
    assert_close(result, reference.linear_recurrence_matrix(A, b, h0))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("size", [2, 6])
def test_scan_with_any_thread_count(threads, size, small_chunks):
    rng = np.random.default_rng(11)
    A = random_matrices(rng, (501,), size, np.float64)
    b = rng.normal(size=(501, size))
    with numba_threads(threads):
        result = scanlab.linear_recurrence_matrix(A, b, method="scan")
    assert_close(result, reference.linear_recurrence_matrix(A, b))


def test_auto_scans_only_with_threads_to_repay_the_matrix_products():
    choose = cpu_linear_matrix.choose_method
    assert choose(length=2**20, systems=1, size=2, threads=2) == "sequential"
    assert choose(length=2**20, systems=1, size=2, threads=4) == "scan"
    assert choose(length=2**20, systems=1, size=16, threads=16) == "sequential"
    assert choose(length=2**20, systems=4, size=2, threads=16) == "scan"
    assert choose(length=100, systems=1, size=2, threads=64) == "sequential"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"A": np.ones((3, 2)), "b": np.ones((3, 2))}, ValueError, r"A must have shape \(\.\.\."),
        ({"A": np.ones(3), "b": np.ones((3, 1))}, ValueError, r"A must have shape"),
        (
            {"A": np.ones((2, 2)), "b": np.ones((4, 3))},
            ValueError,
            r"n = 2.*got b with shape \(4, 3\)",
        ),
        (
            {"A": np.ones((3, 2, 2)), "b": np.ones((4, 2))},
            ValueError,
            r"leading shapes \(3,\) and \(4,\)",
        ),
        ({"A": np.ones((2, 2)), "b": np.ones(2)}, ValueError, "no time axis"),
        ({"A": np.ones((2, 2)), "b": np.ones((3, 2)), "axis": -1}, ValueError, "state axis"),
        ({"A": np.ones((2, 2)), "b": np.ones((3, 2)), "axis": 1}, ValueError, "state axis"),
        (
            {"A": np.ones((2, 2)), "b": np.ones((3, 2)), "axis": 2},
            np.exceptions.AxisError,
            "axis 2",
        ),
        (
            {"A": np.ones((2, 2)), "b": np.ones((3, 4, 2)), "h0": np.ones((3, 2))},
            ValueError,
            r"needs h0 of shape \(4, 2\).*got \(3, 2\)",
        ),
        (
            {"A": np.ones((2, 2)), "b": np.ones((3, 2)), "out": np.empty((2, 3))},
            ValueError,
            r"out has shape \(2, 3\), but the result has shape \(3, 2\)",
        ),
        (
            {"A": np.ones((2, 2), np.float16), "b": np.ones((3, 2), np.float16)},
            TypeError,
            "promote to float16",
        ),
        ({"A": np.ones((2, 2)), "b": np.ones((3, 2), object)}, TypeError, "b has dtype object"),
        ({"A": np.ones((2, 2)), "b": np.ones((3, 2)), "method": "fast"}, ValueError, "method"),
        ({"A": np.ones((2, 2)), "b": np.ones((3, 2)), "device": "gpu"}, ValueError, "device"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        scanlab.linear_recurrence_matrix(**kwargs)
