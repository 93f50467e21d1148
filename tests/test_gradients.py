"""The vector-Jacobian products against the unrolled backward pass and finite differences."""

import numpy as np
import pytest
import reference
from conftest import DTYPES, TOLERANCES, random_array, random_matrices
from hypothesis import given
from hypothesis import strategies as st

import scanlab


def assert_gradients_close(result, expected, dtype):
    for name, got, want in zip(("da", "db", "dh0"), result, expected, strict=True):
        assert got.shape == want.shape, name
        scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
        tolerance = 5 * TOLERANCES[np.dtype(dtype)]
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * scale, err_msg=name)


@st.composite
def problems(draw, matrices=False, simulated=False):
    """A forward problem: shapes, axis, how the coefficients broadcast, h0, dtype, direction."""
    length = draw(st.integers(0, 12 if simulated else 60))
    rest = draw(st.lists(st.integers(1, 3), max_size=1 if simulated else 2))
    axis = draw(st.integers(0, len(rest)))
    leading = tuple(rest[:axis]) + (length,) + tuple(rest[axis:])
    coefficient_leading = draw(
        st.sampled_from(
            [
                leading,
                (),
                tuple(1 if i != axis else length for i in range(len(leading))),
                tuple(1 if i == axis else n for i, n in enumerate(leading)),
            ]
        )
    )
    size = draw(st.sampled_from([1, 2, 3, 5])) if matrices else None
    h0 = draw(st.sampled_from(["none", "full", "broadcast"]))
    return {
        "leading": leading,
        "coefficient_leading": coefficient_leading,
        "axis": axis,
        "size": size,
        "h0": h0,
        "dtype": draw(st.sampled_from(DTYPES)),
        "reverse": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def draw_inputs(problem):
    rng = np.random.default_rng(problem["seed"])
    dtype, size = problem["dtype"], problem["size"]
    state = () if size is None else (size,)
    if size is None:
        a = random_array(rng, problem["coefficient_leading"], dtype)
    else:
        a = random_matrices(rng, problem["coefficient_leading"], size, dtype)
    b = random_array(rng, problem["leading"] + state, dtype)
    g = random_array(rng, problem["leading"] + state, dtype)
    rest = tuple(np.delete(problem["leading"], problem["axis"])) + state
    h0 = {
        "none": None,
        "full": random_array(rng, rest, dtype),
        "broadcast": random_array(rng, state, dtype) if state else dtype(0.5),
    }[problem["h0"]]
    return a, b, g, h0


@given(data=st.data())
def test_elementwise_matches_the_unrolled_backward_pass(data, device):
    problem = data.draw(problems(simulated=device == "cuda"))
    a, b, g, h0 = draw_inputs(problem)
    axis, reverse = problem["axis"], problem["reverse"]
    h = scanlab.linear_recurrence(a, b, h0, axis=axis, reverse=reverse)
    result = scanlab.linear_recurrence_vjp(a, h, g, h0, axis=axis, reverse=reverse, device=device)
    expected = reference.linear_recurrence_vjp(a, h, g, h0, axis=axis, reverse=reverse)
    assert_gradients_close(result, expected, problem["dtype"])
    assert all(value.dtype == h.dtype for value in result)


@given(data=st.data())
def test_matrix_matches_the_unrolled_backward_pass(data, device):
    problem = data.draw(problems(matrices=True, simulated=device == "cuda"))
    A, b, g, h0 = draw_inputs(problem)
    axis, reverse = problem["axis"], problem["reverse"]
    h = scanlab.linear_recurrence_matrix(A, b, h0, axis=axis, reverse=reverse)
    result = scanlab.linear_recurrence_matrix_vjp(
        A, h, g, h0, axis=axis, reverse=reverse, device=device
    )
    expected = reference.linear_recurrence_matrix_vjp(A, h, g, h0, axis=axis, reverse=reverse)
    assert_gradients_close(result, expected, problem["dtype"])


def central_differences(loss, value, step=1e-6):
    """d loss / d value by central differences, one element at a time (value is float64)."""
    gradient = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        shifted = value.copy()
        shifted[index] += step
        upper = loss(shifted)
        shifted[index] -= 2 * step
        gradient[index] = (upper - loss(shifted)) / (2 * step)
    return gradient


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("a_shape", [(7, 2), (7, 1), (), (1, 2)], ids=str)
def test_elementwise_matches_finite_differences(a_shape, reverse):
    rng = np.random.default_rng(1)
    a, b, h0 = rng.uniform(-1, 1, a_shape), rng.normal(size=(7, 2)), rng.normal(size=2)
    g = rng.normal(size=(7, 2))

    def loss(a, b, h0):
        return float(np.sum(g * scanlab.linear_recurrence(a, b, h0, reverse=reverse)))

    h = scanlab.linear_recurrence(a, b, h0, reverse=reverse)
    da, db, dh0 = scanlab.linear_recurrence_vjp(a, h, g, h0, reverse=reverse)
    np.testing.assert_allclose(
        da, central_differences(lambda x: loss(x, b, h0), np.asarray(a, float)), atol=1e-8
    )
    np.testing.assert_allclose(db, central_differences(lambda x: loss(a, x, h0), b), atol=1e-8)
    np.testing.assert_allclose(dh0, central_differences(lambda x: loss(a, b, x), h0), atol=1e-8)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("A_shape", [(6, 3, 3, 3), (3, 3), (1, 3, 3, 3), (6, 1, 3, 3)], ids=str)
def test_matrix_matches_finite_differences(A_shape, reverse):
    rng = np.random.default_rng(2)
    A = rng.uniform(-0.5, 0.5, A_shape)
    b, h0, g = rng.normal(size=(6, 3, 3)), rng.normal(size=(3, 3)), rng.normal(size=(6, 3, 3))

    def loss(A, b, h0):
        return float(np.sum(g * scanlab.linear_recurrence_matrix(A, b, h0, reverse=reverse)))

    h = scanlab.linear_recurrence_matrix(A, b, h0, reverse=reverse)
    dA, db, dh0 = scanlab.linear_recurrence_matrix_vjp(A, h, g, h0, reverse=reverse)
    np.testing.assert_allclose(dA, central_differences(lambda x: loss(x, b, h0), A), atol=1e-8)
    np.testing.assert_allclose(db, central_differences(lambda x: loss(A, x, h0), b), atol=1e-8)
    np.testing.assert_allclose(dh0, central_differences(lambda x: loss(A, b, x), h0), atol=1e-8)


def test_complex_gradients_are_the_holomorphic_derivatives():
    """L = sum(g * h) is holomorphic in a: its derivative along the real direction is dL/da."""
    rng = np.random.default_rng(3)
    a = 0.5 * np.exp(2j * np.pi * rng.uniform(size=5))
    b = rng.normal(size=5) + 1j * rng.normal(size=5)
    g = rng.normal(size=5) + 1j * rng.normal(size=5)
    h = scanlab.linear_recurrence(a, b)
    da, _, _ = scanlab.linear_recurrence_vjp(a, h, g)
    step = 1e-6
    for t in range(5):
        shift = np.zeros(5, complex)
        shift[t] = step
        upper = np.sum(g * scanlab.linear_recurrence(a + shift, b))
        lower = np.sum(g * scanlab.linear_recurrence(a - shift, b))
        np.testing.assert_allclose(da[t], (upper - lower) / (2 * step), atol=1e-8)


def test_empty_sequences_have_zero_gradients():
    da, db, dh0 = scanlab.linear_recurrence_vjp(0.5, np.empty((0, 2)), np.empty((0, 2)))
    assert da.shape == () and float(da) == 0 and db.shape == (0, 2)
    np.testing.assert_array_equal(dh0, np.zeros(2))


@pytest.mark.parametrize(
    ("function", "kwargs", "message"),
    [
        ("linear_recurrence_vjp", {"a": 0.5, "h": np.ones(3), "g": np.ones(4)}, "g must have"),
        (
            "linear_recurrence_vjp",
            {"a": np.ones(4), "h": np.ones(3), "g": np.ones(3)},
            "does not broadcast",
        ),
        (
            "linear_recurrence_vjp",
            {"a": 0.5, "h": np.ones((3, 2)), "g": np.ones((3, 2)), "h0": np.ones(3)},
            "needs h0 of shape",
        ),
        (
            "linear_recurrence_matrix_vjp",
            {"A": np.ones((3, 3)), "h": np.ones((4, 2)), "g": np.ones((4, 2))},
            r"A must have shape",
        ),
        (
            "linear_recurrence_matrix_vjp",
            {"A": np.eye(2), "h": np.ones((4, 2)), "g": np.ones((4, 2)), "axis": -1},
            "state axis",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(function, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(scanlab, function)(**kwargs)
