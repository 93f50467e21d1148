"""scanlab.nonlinear_recurrence_vjp against finite differences of the sequential loop and the
unrolled backward pass: every structure, own and automatic Jacobians, the built-in cells,
broadcasting, float32, the GPU backend and errors."""

import numpy as np
import pytest
import reference
from hypothesis import given, settings
from hypothesis import strategies as st
from test_nonlinear import CELLS, COMPILED, problem

import scanlab
from scanlab.cells.finite_differences import input_colouring


def central_differences(loss, value, spacing=1e-6):
    """The gradient of ``loss`` at the float64 array ``value`` by central differences."""
    value = np.array(value, np.float64)
    gradient = np.empty(value.shape)
    for k in range(value.size):
        moved = value.copy()
        moved.flat[k] += spacing
        upper = loss(moved)
        moved.flat[k] -= 2 * spacing
        gradient.flat[k] = (upper - loss(moved)) / (2 * spacing)
    return gradient


def assert_gradient(got, expected, name):
    assert np.shape(got) == np.shape(expected), name
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7, err_msg=name)


@settings(max_examples=8)
@given(
    name=st.sampled_from(sorted(CELLS)),
    length=st.sampled_from([1, 2, 3, 7, 17]),
    shapes=st.sampled_from([((), ()), ((3,), (3,)), ((2, 1), (3,)), ((2,), (1, 2))]),
    seed=st.integers(0, 2**32 - 1),
)
def test_gradients_match_finite_differences(name, length, shapes, seed):
    """Every structure: dx, dh0 and dparams against the float64 loop, broadcast batch shapes
    (the cells' own Jacobians: the automatic ones are tested with the solver)."""
    step, _, _, make_reference, sizes = CELLS[name]
    size = sizes[-1] if name != "diagonal" else 3
    x_batch, h0_batch = shapes
    rng = np.random.default_rng(seed)
    x, _, params = problem(rng, name, size, length, x_batch, np.float64)
    h0 = rng.uniform(-1.0, 1.0, (*h0_batch, size))
    cell = COMPILED[name, True]
    h = scanlab.nonlinear_recurrence(cell, x, h0, params=params, method="newton")
    g = rng.standard_normal(h.shape)
    saved = [value.copy() for value in (x, h0, h, g)]
    dx, dh0, dparams = scanlab.nonlinear_recurrence_vjp(cell, x, h0, h, g, params=params)
    for value, before in zip((x, h0, h, g), saved, strict=True):
        np.testing.assert_array_equal(value, before)

    def loss(x=x, h0=h0, params=params):
        step = make_reference(params)
        return float(np.sum(reference.nonlinear_recurrence(step, x, h0) * g))

    assert_gradient(dx, central_differences(lambda value: loss(x=value), x), "dx")
    assert_gradient(dh0, central_differences(lambda value: loss(h0=value), h0), "dh0")
    if params is None:
        assert dparams is None
    else:
        # The dense step reads W and its transpose (two parameters, tied): dW + d(W.T).T.
        d_weights, d_columns = dparams
        expected = central_differences(lambda value: loss(params=(value,)), params[0])
        assert_gradient(d_weights + d_columns.T, expected, "dparams")


BUILTINS = [
    (scanlab.cells.ElmanRNN, reference.elman_step),
    (scanlab.cells.ParaGRU, reference.gru_step),
    (scanlab.cells.ParaLSTM, reference.lstm_step),
]


@pytest.mark.parametrize(("cell_type", "make_step"), BUILTINS)
def test_builtin_cells_analytic_gradients(cell_type, make_step):
    cell = cell_type(3, 2, seed=5)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 2, 2))
    h0 = rng.uniform(-0.5, 0.5, (2, cell.state_size))
    h = scanlab.nonlinear_recurrence(cell, x, h0, method="newton")
    g = rng.standard_normal(h.shape)
    dx, dh0, dparams = scanlab.nonlinear_recurrence_vjp(cell, x, h0, h, g)

    def loss(x=x, h0=h0, **params):
        changed = cell_type(3, 2, seed=5)
        changed.params = params
        return float(np.sum(reference.nonlinear_recurrence(make_step(changed), x, h0) * g))

    assert_gradient(dx, central_differences(lambda value: loss(x=value), x), "dx")
    assert_gradient(dh0, central_differences(lambda value: loss(h0=value), h0), "dh0")
    assert sorted(dparams) == sorted(cell.params)
    for name, value in cell.params.items():
        expected = central_differences(lambda moved, name=name: loss(**{name: moved}), value)
        assert_gradient(dparams[name], expected, name)
    if cell_type is scanlab.cells.ElmanRNN:
        unrolled = reference.elman_vjp(cell, x, h0, h, g)
        for got, want in zip((dx, dh0), unrolled[:2], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        for name in cell.params:
            np.testing.assert_allclose(dparams[name], unrolled[2][name], rtol=1e-12, atol=1e-12)
    # float32 inputs: float32 gradients, close to the float64 ones.
    single = scanlab.nonlinear_recurrence_vjp(
        cell, x.astype(np.float32), h0.astype(np.float32), h.astype(np.float32),
        g.astype(np.float32),
    )  # fmt: skip
    assert single[0].dtype == single[1].dtype == np.float32
    assert single[2]["bias"].dtype == np.float32
    np.testing.assert_allclose(single[0], dx, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(single[2]["input_weights"], dparams["input_weights"], atol=1e-3)


def scaled_step(h_prev, x_t, params, h_out):
    scale, repeats = params
    for i in range(h_prev.shape[0]):
        total = h_prev[i]
        for _ in range(repeats):
            total = 0.5 * np.tanh(scale * total + x_t[0])
        h_out[i] = total


def test_parameter_structure_and_params_none():
    """A tuple of a float and an int: a float gradient and None; h0=None; x broadcast over h0's
    batch; a scalar gradient against finite differences."""
    cell = scanlab.cell(scaled_step, structure="diagonal", state_size=2)
    x = np.linspace(-1.0, 1.0, 11)[:, None]
    params = (0.8, 2)
    h = scanlab.nonlinear_recurrence(cell, x, None, params=params, method="newton")
    g = np.ones_like(h)
    dx, dh0, (d_scale, d_repeats) = scanlab.nonlinear_recurrence_vjp(
        cell, x, None, h, g, params=params
    )
    assert dx.shape == x.shape and dh0.shape == (2,) and d_repeats is None
    assert isinstance(d_scale, float)

    def loss(scale):
        states = scanlab.nonlinear_recurrence(
            cell, x, None, params=(float(scale), 2), method="sequential"
        )
        return float(states.sum())

    assert d_scale == pytest.approx(float(central_differences(loss, 0.8)), rel=1e-6)


def neighbours_step(h_prev, x_t, params, h_out):
    m = x_t.shape[0]
    for i in range(h_prev.shape[0]):
        h_out[i] = np.tanh(0.5 * h_prev[i] + x_t[i % m] - 0.7 * x_t[(i + 1) % m])


def test_inputs_shared_by_outputs_get_their_own_colours():
    """Each output reads two neighbouring inputs: three colours for five inputs (a cycle), and
    the gradients still match finite differences."""
    cell = scanlab.cell(neighbours_step, structure="diagonal")
    rng = np.random.default_rng(8)
    x, h0 = rng.standard_normal((5, 2, 5)), rng.standard_normal((2, 5))
    h = scanlab.nonlinear_recurrence(cell, x, h0, method="sequential")
    colours, owners = input_colouring(cell.step, x, None, h, h0)
    assert owners.shape == (3, 5)
    assert sorted(np.bincount(colours)) == [1, 2, 2]
    g = rng.standard_normal(h.shape)
    dx, _, _ = scanlab.nonlinear_recurrence_vjp(cell, x, h0, h, g)

    def loss(value):
        return float(np.sum(scanlab.nonlinear_recurrence(cell, value, h0, method="sequential") * g))

    assert_gradient(dx, central_differences(loss, x), "dx")


def test_non_solutions_raise_and_nan_propagates():
    cell = scanlab.cells.ParaGRU(2, 1, seed=0)
    x = np.random.default_rng(0).standard_normal((12, 1))
    h = scanlab.nonlinear_recurrence(cell, x, None, method="newton")
    g = np.ones_like(h)
    wrong = h.copy()
    wrong[5, 1] += 1e-3
    with pytest.raises(ValueError, match=r"does not solve the recurrence.*step 5"):
        scanlab.nonlinear_recurrence_vjp(cell, x, None, wrong, g)
    dx, _, _ = scanlab.nonlinear_recurrence_vjp(cell, x, None, wrong, g, tol=1e-2)
    assert np.isfinite(dx).all()
    g[7, 0] = np.nan  # reaches every earlier step of its channel, no later one, no other channel
    dx, dh0, dparams = scanlab.nonlinear_recurrence_vjp(cell, x, None, h, g)
    assert np.isnan(dx[:8]).all() and np.isfinite(dx[8:]).all()
    assert np.isnan(dh0[0]) and np.isfinite(dh0[1])
    x[7] = np.nan  # the states from step 7 on are NaN, and so is every gradient
    h = scanlab.nonlinear_recurrence(cell, x, None, method="newton")
    dx, dh0, dparams = scanlab.nonlinear_recurrence_vjp(cell, x, None, h, np.ones_like(h))
    assert np.isnan(h[7:]).all() and np.isnan(dx).all() and np.isnan(dparams["bias"]).all()


def test_empty_sequences():
    cell = scanlab.cells.ParaGRU(2, 1, seed=0)
    x = np.zeros((0, 3, 1))
    dx, dh0, dparams = scanlab.nonlinear_recurrence_vjp(
        cell, x, None, np.zeros((0, 3, 2)), np.zeros((0, 3, 2))
    )
    assert dx.shape == x.shape and dh0.shape == (3, 2)
    assert not dh0.any() and not dparams["bias"].any()
    own = scanlab.cell(scaled_step, structure="diagonal", state_size=2)
    dx, dh0, (d_scale, _) = scanlab.nonlinear_recurrence_vjp(
        own, x, np.ones(2), np.zeros((0, 3, 2)), np.zeros((0, 3, 2)), params=(0.5, 1)
    )
    assert dx.shape == x.shape and dh0.shape == (2,) and d_scale == 0.0


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"cell": "tanh"}, TypeError, "cell must be made by"),
        ({"h": np.zeros((5, 3))}, ValueError, r"h must have the forward result's shape"),
        ({"g": np.zeros((4, 2))}, ValueError, r"g must have the forward result's shape"),
        ({"x": np.zeros((5, 2))}, ValueError, "takes inputs of size 1"),
        ({"tol": 0.0}, ValueError, "tol must be positive"),
        ({"tol": np.inf}, ValueError, "tol must be positive and finite"),
        ({"x": np.zeros((5, 1), complex)}, TypeError, "float32 or float64"),
    ],
)
def test_errors(change, error, match):
    arguments = {
        "cell": scanlab.cells.ParaGRU(2, 1, seed=0), "x": np.zeros((5, 1)), "h0": None,
        "h": np.zeros((5, 2)), "g": np.zeros((5, 2)),
    }  # fmt: skip
    arguments.update(change)
    tol = arguments.pop("tol", None)
    with pytest.raises(error, match=match):
        scanlab.nonlinear_recurrence_vjp(*arguments.values(), tol=tol)


@pytest.mark.parametrize("name", ["diagonal", "ParaLSTM"])
def test_gradients_on_the_gpu(cuda_device, name):
    """The adjoint solved on the GPU (the simulator in CI) agrees with the CPU's."""
    rng = np.random.default_rng(3)
    if name == "ParaLSTM":
        cell, params = scanlab.cells.ParaLSTM(2, 3, seed=0), None
        x, h0 = rng.standard_normal((4, 2, 3)), None
    else:
        cell = COMPILED[name, True]
        x, h0, params = problem(rng, name, 3, 4, (2,), np.float64)
    h = scanlab.nonlinear_recurrence(cell, x, h0, params=params, method="sequential")
    g = rng.standard_normal(h.shape)
    on_cpu = scanlab.nonlinear_recurrence_vjp(cell, x, h0, h, g, params=params)
    on_gpu = scanlab.nonlinear_recurrence_vjp(cell, x, h0, h, g, params=params, device=cuda_device)
    for got, want in zip(on_gpu[:2], on_cpu[:2], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if name == "ParaLSTM":  # the pullback runs on the GPU too (scanlab.cuda.cell_pullback)
        assert list(on_gpu[2]) == list(cell.parameter_names)
        for parameter, want in on_cpu[2].items():
            np.testing.assert_allclose(on_gpu[2][parameter], want, rtol=1e-12, atol=1e-12)
