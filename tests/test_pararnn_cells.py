"""ParaRNN's cells, scanlab.cells.ParaGRU and ParaLSTM, as its paper and code define them (issue
23): the steps against NumPy written from the equations, the analytic Jacobians and pullbacks
against the complex step, ParaRNN's initialisation, the heads' block-diagonal input projection
(kept by training), errors, and the GPU."""

import types

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import scanlab
from scanlab.cells import ParaGRU, ParaLSTM
from scanlab.nn import Adam, ParaGRULayer, ParaLSTMLayer
from tests import reference

#: ParaRNN's cells and their NumPy steps.
PARARNN_CELLS = [(ParaGRU, reference.gru_step), (ParaLSTM, reference.lstm_step)]
#: Tolerances of a solution against the float64 loop.
TOLERANCES = {np.dtype(np.float32): 2e-3, np.dtype(np.float64): 1e-9}
#: The complex step's imaginary offset: the derivative is exact to rounding.
COMPLEX_STEP = 1e-30


def complex_step_gradient(function, value):
    """The gradient of the real-analytic ``function`` at the real array ``value``, by the complex
    step ``Im f(value + i s e_k) / s``."""
    gradient = np.empty(np.shape(value))
    for k in range(gradient.size):
        moved = np.array(value, complex)
        moved.flat[k] += COMPLEX_STEP * 1j
        gradient.flat[k] = function(moved).imag / COMPLEX_STEP
    return gradient


def with_values(cell, **values):
    """What the NumPy steps read of ``cell``, with some parameters replaced (complex ones too)."""
    return types.SimpleNamespace(
        **{**cell.params, **values}, hidden_size=cell.hidden_size, input_size=cell.input_size,
        heads=cell.heads,
    )  # fmt: skip


@settings(max_examples=16)
@given(
    cell_index=st.integers(0, 1),
    init=st.sampled_from(["pararnn", "uniform"]),
    heads=st.sampled_from([1, 2, 4]),
    method=st.sampled_from(["newton", "quasi", "sequential"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_cells_follow_their_equations(cell_index, init, heads, method, dtype, seed):
    cell_type, make_step = PARARNN_CELLS[cell_index]
    cell = cell_type(4, 8, seed=seed, init=init, heads=heads)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((60, 2, 8)).astype(dtype)
    h0 = rng.uniform(-0.5, 0.5, (2, cell.state_size)).astype(dtype)
    h, info = scanlab.nonlinear_recurrence(cell, x, h0, method=method, full_output=True)
    expected = reference.nonlinear_recurrence(make_step(cell), x, h0)
    assert h.dtype == dtype
    tolerance = TOLERANCES[np.dtype(dtype)]
    np.testing.assert_allclose(h, expected, rtol=tolerance, atol=tolerance)
    # Quasi-Newton on ParaLSTM's 2x2 blocks may reach max_iter and let the loop finish.
    assert info.converged or (method == "quasi" and cell_type is ParaLSTM)


def dense(jacobian):
    """A structured Jacobian (diagonal ``(n,)`` or blocks ``(n / k, k, k)``) as a matrix."""
    return np.diag(jacobian) if jacobian.ndim == 1 else scipy.linalg.block_diag(*jacobian)


@pytest.mark.parametrize(("cell_type", "make_step"), PARARNN_CELLS)
@pytest.mark.parametrize("init", ["pararnn", "uniform"])
def test_jacobians_match_the_complex_step(cell_type, make_step, init):
    """The analytic Jacobian against the complex step of the NumPy step: every entry, the zeros
    between channels included."""
    cell = cell_type(5, 3, seed=2, init=init)
    rng = np.random.default_rng(2)
    x_t = rng.standard_normal(3)
    inputs, params = cell.prepare(x_t[None], None, np.float64)
    state = rng.uniform(-1.5, 1.5, cell.state_size)
    plan = cell.plan(cell.state_size, np.float64, inputs[0], params)
    analytic = cell.jacobian_with(
        "analytic", plan.shape, plan.period, state, inputs[0], params, spacing=0.0
    )
    step = make_step(cell)
    expected = np.stack(
        [
            complex_step_gradient(lambda value, i=i: step(value, x_t)[i], state)
            for i in range(cell.state_size)
        ]
    )
    np.testing.assert_allclose(dense(analytic), expected, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize(("cell_type", "make_step"), PARARNN_CELLS)
@pytest.mark.parametrize("heads", [1, 2])
def test_gradients_match_the_complex_step(cell_type, make_step, heads):
    """``nonlinear_recurrence_vjp``'s ``dx``, ``dh0`` and every parameter's gradient (the
    recurrent, peephole and input weights and the biases) against the complex step of the NumPy
    loop; with two heads the input weights outside the blocks have zero gradients."""
    cell = cell_type(4, 2, seed=6, heads=heads)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, 2, 2))
    h0 = rng.uniform(-0.5, 0.5, (2, cell.state_size))
    h = scanlab.nonlinear_recurrence(cell, x, h0, method="sequential")
    g = rng.standard_normal(h.shape)
    dx, dh0, dparams = scanlab.nonlinear_recurrence_vjp(cell, x, h0, h, g)

    def loss(x=x, h0=h0, **values):
        step = make_step(with_values(cell, **values))
        state, total = h0, 0.0
        for t in range(len(x)):
            state = step(state, x[t])
            total = total + np.sum(state * g[t])
        return total

    def assert_gradient(got, function, value, name):
        expected = complex_step_gradient(function, value)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=name)

    assert_gradient(dx, lambda value: loss(x=value), x, "dx")
    assert_gradient(dh0, lambda value: loss(h0=value), h0, "dh0")
    assert list(dparams) == list(cell.parameter_names)
    for name, value in cell.params.items():
        assert_gradient(dparams[name], lambda moved, name=name: loss(**{name: moved}), value, name)
    outside = ~reference.heads_mask(cell)
    assert outside.any() == (heads > 1)
    assert not dparams["input_weights"][:, outside].any()


def test_peephole_weights_are_a_parameter_like_the_others():
    """Overridden for one call, checked, listed in errors (and differentiated: above)."""
    lstm = ParaLSTM(3, 2, seed=0)
    x = np.random.default_rng(1).standard_normal((20, 2))
    zero = np.zeros((2, 3))
    h = scanlab.nonlinear_recurrence(lstm, x, None, params={"peephole_weights": zero})
    step = reference.lstm_step(with_values(lstm, peephole_weights=zero))
    expected = reference.nonlinear_recurrence(step, x, np.zeros(6))
    np.testing.assert_allclose(h, expected, rtol=1e-9, atol=1e-9)
    assert not np.allclose(h, scanlab.nonlinear_recurrence(lstm, x, None))
    with pytest.raises(ValueError, match=r"peephole_weights has shape \(2, 3\), got \(3,\)"):
        scanlab.nonlinear_recurrence(lstm, x, None, params={"peephole_weights": np.zeros(3)})
    with pytest.raises(
        ValueError, match="recurrent_weights, peephole_weights, input_weights, bias"
    ):
        scanlab.nonlinear_recurrence(lstm, x, None, params={"peepholes": zero})


@pytest.mark.parametrize(("cell_type", "glorot_fan_out"), [(ParaGRU, 1200), (ParaLSTM, 300)])
def test_pararnn_initialisation(cell_type, glorot_fan_out):
    """ParaRNN's code: diagonal (and peephole) weights from N(0, (2/sqrt(5n))^2), input weights
    Glorot-uniform with a head's inputs as fan-in (and as fan-out the whole state for the GRU, a
    head's channels for the LSTM), biases zero but the first gate's, -linspace(0, 1, n)."""
    n, m, heads = 1200, 40, 4
    cell = cell_type(n, m, seed=0, heads=heads)
    expected_shapes = {"recurrent_weights": (3, n), "input_weights": (3, n, m), "bias": (3, n)}
    if cell_type is ParaLSTM:
        expected_shapes["peephole_weights"] = (2, n)
    assert {name: value.shape for name, value in cell.params.items()} == expected_shapes
    assert all(value.dtype == np.float64 for value in cell.params.values())
    np.testing.assert_array_equal(cell.bias[0], -np.linspace(0, 1, n))
    np.testing.assert_array_equal(cell.bias[1:], 0.0)
    for name in cell.step_parameter_names:
        values = cell.params[name]
        assert values.std() == pytest.approx(2 / np.sqrt(5 * n), rel=0.05), name
        assert abs(values.mean()) < 4 * values.std() / np.sqrt(values.size), name
    bound = np.sqrt(6 / (m // heads + glorot_fan_out))
    inside = reference.heads_mask(cell)
    blocks = cell.input_weights[:, inside]
    assert np.abs(blocks).max() <= bound and np.abs(blocks).max() > 0.99 * bound
    assert blocks.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
    np.testing.assert_array_equal(cell.input_weights[:, ~inside], 0.0)
    again = cell_type(n, m, seed=0, heads=heads)
    for name, value in cell.params.items():
        np.testing.assert_array_equal(again.params[name], value, err_msg=name)


@pytest.mark.parametrize("cell_type", [ParaGRU, ParaLSTM])
def test_uniform_initialisation(cell_type):
    """scanlab's earlier initialisation: input weights and biases in +-1/sqrt(n), diagonal
    weights in +-1, ParaLSTM's forget gate biased by +1."""
    n, m = 400, 6
    cell = cell_type(n, m, seed=1, init="uniform")
    bound = 1 / np.sqrt(n)
    assert np.abs(cell.input_weights).max() <= bound
    assert np.abs(cell.input_weights).max() > 0.99 * bound
    forget_shift = 1.0 if cell_type is ParaLSTM else 0.0
    assert np.abs(cell.bias[0] - forget_shift).max() <= bound
    assert np.abs(cell.bias[1:]).max() <= bound
    for name in cell.step_parameter_names:
        values = cell.params[name]
        assert np.abs(values).max() <= 1 and np.abs(values).max() > 0.99, name


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ParaLSTM(4, 2, init="xavier"),
         "init of a ParaLSTM must be one of 'pararnn', 'uniform', got 'xavier'"),
        (lambda: ParaGRU(4, 2, init=None), "init of a ParaGRU must be one of"),
        (lambda: ParaGRU(4, 3, heads=2), "heads >= 1 dividing both n and m, got heads=2, n=4, m=3"),
        (lambda: ParaLSTM(6, 4, heads=4), r"got heads=4, n=6, m=4"),
        (lambda: ParaLSTM(4, 4, heads=0), r"got heads=0, n=4, m=4"),
        (lambda: ParaLSTMLayer(6, 4, heads=4), r"ParaLSTM needs heads .* got heads=4, n=4, m=6"),
        (lambda: ParaGRULayer(2, 2, init="zeros"), "init of a ParaGRU must be one of"),
    ],
)  # fmt: skip
def test_bad_init_and_heads_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("kind", [ParaGRULayer, ParaLSTMLayer])
def test_training_keeps_the_heads_blocks(kind):
    """The input weights' gradient is zero outside the heads' blocks, so an optimiser keeps
    them zero; weights a user sets there are ignored by the forward and backward passes."""
    layer = kind(6, 4, seed=0, heads=2, dtype=np.float64, method="newton")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 3, 6))
    dy = rng.standard_normal((30, 3, 4))
    outside = ~reference.heads_mask(layer.cell)
    y, cache = layer.forward(x)
    dx, grads = layer.backward(cache, dy)
    assert not grads["input_weights"][:, outside].any()
    assert np.all(grads["input_weights"][:, ~outside] != 0)
    optimiser = Adam(layer.params, lr=0.05)
    for _ in range(3):
        optimiser.step(layer.backward(layer.forward(x)[1], dy)[1])
    assert not layer.params["input_weights"][:, outside].any()
    y, cache = layer.forward(x)
    dx, grads = layer.backward(cache, dy)
    layer.params["input_weights"][:, outside] = 5.0
    y_set, cache_set = layer.forward(x)
    dx_set, grads_set = layer.backward(cache_set, dy)
    np.testing.assert_array_equal(y_set, y)
    np.testing.assert_array_equal(dx_set, dx)
    assert not grads_set["input_weights"][:, outside].any()


@pytest.mark.parametrize(("cell_type", "make_step"), PARARNN_CELLS)
def test_cells_with_heads_on_the_gpu(cuda_device, cell_type, make_step):
    """Both precisions on the GPU (the simulator in CI: tiny sizes), two heads."""
    cell = cell_type(4, 2, seed=3, heads=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 2, 2))
    h0 = rng.uniform(-0.5, 0.5, (2, cell.state_size))
    expected = reference.nonlinear_recurrence(make_step(cell), x, h0)
    for dtype in (np.float32, np.float64):
        h, info = scanlab.nonlinear_recurrence(
            cell, x.astype(dtype), h0.astype(dtype), method="newton", device=cuda_device,
            full_output=True,
        )  # fmt: skip
        tolerance = TOLERANCES[np.dtype(dtype)]
        assert h.dtype == dtype and info.converged
        np.testing.assert_allclose(h, expected, rtol=tolerance, atol=tolerance)
