"""scanlab.nonlinear_recurrence against the sequential float64 loop: every method, structure,
dtype and shape, automatic and given Jacobians, divergence, non-finite data and errors."""

import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scanlab
from scanlab import config
from scanlab import math as smath
from scanlab._step_routines import FAILED
from scanlab.cpu.row_summary import summarise_rows
from tests import reference
from tests.conftest import random_matrices

#: Tolerances of a Newton solution against the float64 loop (the per-step tolerance, amplified by
#: the contraction of the cells below).
TOLERANCES = {np.dtype(np.float32): 2e-3, np.dtype(np.float64): 1e-9}


def leaky_step(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = 0.5 * h_prev[i] + smath.tanh(x_t[i] - h_prev[i])


def leaky_jacobian(h_prev, x_t, params, jacobian_out):
    for i in range(h_prev.shape[0]):
        squashed = smath.tanh(x_t[i] - h_prev[i])
        jacobian_out[i] = 0.5 - (1 - squashed * squashed)


def pairs_step(h_prev, x_t, params, h_out):
    for j in range(h_prev.shape[0] // 2):
        p, q = h_prev[2 * j], h_prev[2 * j + 1]
        h_out[2 * j] = smath.tanh(0.9 * p - 0.5 * q + x_t[2 * j])
        h_out[2 * j + 1] = smath.tanh(0.5 * p + 0.9 * q + x_t[2 * j + 1])


def pairs_jacobian(h_prev, x_t, params, jacobian_out):
    for j in range(h_prev.shape[0] // 2):
        p, q = h_prev[2 * j], h_prev[2 * j + 1]
        first = 1 - smath.tanh(0.9 * p - 0.5 * q + x_t[2 * j]) ** 2
        second = 1 - smath.tanh(0.5 * p + 0.9 * q + x_t[2 * j + 1]) ** 2
        jacobian_out[j, 0, 0] = 0.9 * first
        jacobian_out[j, 0, 1] = -0.5 * first
        jacobian_out[j, 1, 0] = 0.5 * second
        jacobian_out[j, 1, 1] = 0.9 * second


def pairs_reference(h, x):
    p, q = h[..., 0::2], h[..., 1::2]
    first = np.tanh(0.9 * p - 0.5 * q + x[..., 0::2])
    second = np.tanh(0.5 * p + 0.9 * q + x[..., 1::2])
    return np.stack([first, second], axis=-1).reshape(h.shape[:-1] + (-1,))


#: The test cells by structure: (step, jacobian, structure, float64 reference of the step taking
#: the params, allowed state sizes).
CELLS = {
    "diagonal": (
        leaky_step,
        leaky_jacobian,
        "diagonal",
        lambda params: lambda h, x: 0.5 * h + np.tanh(x - h),
        (1, 3, 8),
    ),
    "block": (pairs_step, pairs_jacobian, ("block", 2), lambda params: pairs_reference, (2, 6)),
    "dense": (
        scanlab.cells.builtin.elman_step,
        scanlab.cells.builtin.elman_jacobian,
        "dense",
        lambda params: lambda h, x: np.tanh(h @ params[0].T + x),
        (1, 3, 5),
    ),
}
#: Compiled once per session: with and without the cell's own Jacobian.
COMPILED = {
    (name, own): scanlab.cell(step, jacobian=jacobian if own else None, structure=structure)
    for name, (step, jacobian, structure, _, _) in CELLS.items()
    for own in (True, False)
}


def problem(rng, name, size, length, batch, dtype):
    """Inputs, initial states and params of a test cell."""
    x = rng.uniform(-1.0, 1.0, (length, *batch, size)).astype(dtype)
    h0 = rng.uniform(-1.0, 1.0, (*batch, size)).astype(dtype)
    weights = random_matrices(rng, (), size, np.float64, radius=0.8).astype(dtype)
    return x, h0, (weights, np.ascontiguousarray(weights.T)) if name == "dense" else None


def scaled_residual(step, x, h0, h):
    """``max |h[t] - step(h[t-1], x[t])| / (1 + |step(...)|)`` in float64."""
    h = h.astype(np.float64)
    previous = np.concatenate([np.broadcast_to(h0, h[:1].shape), h[:-1]])
    value = step(previous, x.astype(np.float64))
    return float(np.max(np.abs(h - value) / (1 + np.abs(value)), initial=0.0))


@settings(max_examples=25)
@given(
    name=st.sampled_from(sorted(CELLS)),
    own_jacobian=st.booleans(),
    method=st.sampled_from(["newton", "quasi", "damped"]),
    length=st.sampled_from([1, 2, 3, 7, 31, 64, 101, 257]),
    batch=st.sampled_from([(), (1,), (3,), (2, 3)]),
    dtype=st.sampled_from([np.float32, np.float64]),
    size_index=st.integers(0, 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_methods_agree_with_the_loop(
    name, own_jacobian, method, length, batch, dtype, size_index, seed
):
    step, _, _, make_reference, sizes = CELLS[name]
    size = sizes[size_index % len(sizes)]
    rng = np.random.default_rng(seed)
    x, h0, params = problem(rng, name, size, length, batch, dtype)
    saved = (x.copy(), h0.copy())
    h, info = scanlab.nonlinear_recurrence(
        COMPILED[name, own_jacobian], x, h0, params=params, method=method, full_output=True
    )
    reference_step = make_reference(params)
    expected = reference.nonlinear_recurrence(reference_step, x, h0)
    assert h.dtype == dtype and h.shape == expected.shape
    tolerance = TOLERANCES[np.dtype(dtype)]
    np.testing.assert_allclose(h, expected, rtol=tolerance, atol=tolerance)
    assert info.converged and info.batch_converged.shape == batch
    assert info.method == method and info.iterations <= length
    assert not info.finished_sequentially.any()
    assert info.residual <= info.tol == scanlab.nonlinear.TOLERANCES[np.dtype(dtype)]
    if dtype == np.float64:
        assert scaled_residual(reference_step, x, h0, h) <= 10 * info.tol
    np.testing.assert_array_equal(x, saved[0])
    np.testing.assert_array_equal(h0, saved[1])


@pytest.mark.parametrize("name", sorted(CELLS))
def test_sequential_method_is_the_loop(name):
    step, _, _, make_reference, sizes = CELLS[name]
    rng = np.random.default_rng(3)
    x, h0, params = problem(rng, name, sizes[-1], 50, (4,), np.float64)
    h, info = scanlab.nonlinear_recurrence(
        COMPILED[name, True], x, h0, params=params, method="sequential", full_output=True
    )
    np.testing.assert_allclose(
        h, reference.nonlinear_recurrence(make_reference(params), x, h0), rtol=1e-13, atol=1e-14
    )
    assert (info.method, info.iterations, info.converged) == ("sequential", 0, True)


@pytest.mark.parametrize(
    ("cell_type", "make_step", "size"),
    [
        (scanlab.cells.ElmanRNN, reference.elman_step, 6),
        (scanlab.cells.ParaGRU, reference.gru_step, 7),
        (scanlab.cells.ParaLSTM, reference.lstm_step, 5),
    ],
)
@pytest.mark.parametrize("method", ["newton", "quasi", "sequential"])
def test_builtin_cells_agree_with_numpy(cell_type, make_step, size, method):
    cell = cell_type(size, 4, seed=1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 2, 4))
    h0 = rng.uniform(-0.5, 0.5, (2, cell.state_size))
    h, info = scanlab.nonlinear_recurrence(cell, x, h0, method=method, full_output=True)
    expected = reference.nonlinear_recurrence(make_step(cell), x, h0)
    np.testing.assert_allclose(h, expected, rtol=1e-9, atol=1e-9)
    assert info.converged
    if method != "newton":
        return
    assert info.iterations <= 8  # ParaRNN reports 3-4 for its cells
    single, info32 = scanlab.nonlinear_recurrence(
        cell, x.astype(np.float32), h0.astype(np.float32), method=method, full_output=True
    )
    assert single.dtype == np.float32 and info32.converged
    np.testing.assert_allclose(single, expected, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize(
    "cell_type", [scanlab.cells.ElmanRNN, scanlab.cells.ParaGRU, scanlab.cells.ParaLSTM]
)
def test_builtin_jacobians_match_finite_differences(cell_type):
    cell = cell_type(5, 3, seed=2)
    rng = np.random.default_rng(2)
    inputs, params = cell.prepare(rng.standard_normal((1, 3)), None, np.float64)
    state = rng.uniform(-1.0, 1.0, cell.state_size)
    plan = cell.plan(cell.state_size, np.float64, inputs[0], params)
    analytic = cell.jacobian_with(
        "analytic", plan.shape, plan.period, state, inputs[0], params, spacing=0.0
    )
    dense = np.zeros((cell.state_size, cell.state_size))
    for j in range(cell.state_size):
        offset = np.zeros(cell.state_size)
        offset[j] = 1e-6
        plus, minus = np.empty(cell.state_size), np.empty(cell.state_size)
        cell.step(state + offset, inputs[0], params, plus)
        cell.step(state - offset, inputs[0], params, minus)
        dense[:, j] = (plus - minus) / 2e-6
    if cell.structure == "diagonal":
        expected = np.diag(analytic)
    elif cell.structure == "dense":
        expected = analytic
    else:
        expected = np.zeros_like(dense)
        for block, matrix in enumerate(analytic):
            expected[2 * block : 2 * block + 2, 2 * block : 2 * block + 2] = matrix
    np.testing.assert_allclose(dense, expected, atol=1e-8)


def test_a_solve_compiles_a_builtin_cells_step_and_jacobian_once():
    """The host passes the step read-only arrays, as the kernels do (h0 broadcast or not), and
    a built-in cell's plan needs no probes: one signature each (each compile costs seconds);
    Newton's evaluation calls the step that also writes the Jacobian, not the Jacobian."""
    pararnn = scanlab.cells.pararnn
    step = numba.njit(pararnn.gru_step.py_func)
    jacobian = numba.njit(pararnn.gru_jacobian.py_func)
    fused = numba.njit(pararnn.gru_step_with_jacobian.py_func)
    cell = scanlab.cells.ParaGRU(3, 2, seed=0)
    cell.step, cell.jacobian, cell.step_with_jacobian = step, jacobian, fused
    x = np.random.default_rng(0).standard_normal((20, 2, 2))
    scanlab.nonlinear_recurrence(cell, x[:, 0], np.zeros(3), method="newton")
    scanlab.nonlinear_recurrence(cell, x, np.zeros(3), method="newton")
    # (The kernels may come from Numba's disk cache, the fused step compiled into them.)
    assert len(step.signatures) == 1 and len(fused.signatures) <= 1
    assert not jacobian.signatures


@pytest.mark.parametrize(
    "cell_type", [scanlab.cells.ElmanRNN, scanlab.cells.ParaGRU, scanlab.cells.ParaLSTM]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_builtin_step_with_its_jacobian_is_the_step_and_the_jacobian(cell_type, dtype):
    cell = cell_type(6, 3, seed=4)
    rng = np.random.default_rng(4)
    inputs, params = cell.prepare(rng.standard_normal((1, 3)), None, dtype)
    state = rng.uniform(-2.0, 2.0, cell.state_size).astype(dtype)
    shape = cell.jacobian_shape(cell.state_size)
    value, jacobian = np.empty_like(state), np.empty(shape, dtype)
    fused_value, fused_jacobian = np.empty_like(state), np.empty(shape, dtype)
    cell.step(state, inputs[0], params, value)
    cell.jacobian(state, inputs[0], params, jacobian)
    cell.step_with_jacobian(state, inputs[0], params, fused_value, fused_jacobian)
    tolerance = 1e-5 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(fused_value, value, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(fused_jacobian, jacobian, rtol=tolerance, atol=tolerance)


def test_builtin_cell_parameters_are_settable():
    cell = scanlab.cells.ParaGRU(3, 2, seed=0)
    x = np.random.default_rng(0).standard_normal((20, 2))
    before = scanlab.nonlinear_recurrence(cell, x, None, method="sequential")
    zeroed = scanlab.nonlinear_recurrence(
        cell, x, None, params={"input_weights": np.zeros((3, 3, 2))}
    )
    cell.params = {"input_weights": np.zeros((3, 3, 2))}
    np.testing.assert_allclose(scanlab.nonlinear_recurrence(cell, x, None), zeroed, rtol=1e-12)
    assert not np.allclose(before, zeroed)
    with pytest.raises(ValueError, match="no parameter 'weights'"):
        scanlab.nonlinear_recurrence(cell, x, None, params={"weights": 1})
    with pytest.raises(ValueError, match=r"input_weights has shape \(3, 3, 2\)"):
        scanlab.nonlinear_recurrence(cell, x, None, params={"input_weights": np.zeros(3)})
    with pytest.raises(ValueError, match="inputs of size 2"):
        scanlab.nonlinear_recurrence(cell, x[:, :1], None)


def numpy_tanh_step(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = np.tanh(0.8 * h_prev[i] + x_t[i])


def absolute_step(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = 0.5 * abs(h_prev[i] - 0.3) + x_t[i]


def math_tanh_step(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = math.tanh(0.8 * h_prev[i] + x_t[i])


@pytest.mark.parametrize(
    ("step", "method", "reference_step"),
    [
        (numpy_tanh_step, "complex-step", lambda h, x: np.tanh(0.8 * h + x)),
        (absolute_step, "central-differences", lambda h, x: 0.5 * np.abs(h - 0.3) + x),
        (math_tanh_step, "central-differences", lambda h, x: np.tanh(0.8 * h + x)),
    ],
    ids=["analytic-step", "abs-is-not-analytic", "no-complex-compile"],
)
def test_automatic_jacobian_method(step, method, reference_step):
    cell = scanlab.cell(step, structure="diagonal")
    x = np.random.default_rng(4).uniform(-1, 1, (100, 3))
    h, info = scanlab.nonlinear_recurrence(
        cell, x, np.full(3, 0.1), method="newton", full_output=True
    )
    assert cell.plans[3, "<f8"].method == method
    assert info.converged
    np.testing.assert_allclose(
        h,
        reference.nonlinear_recurrence(reference_step, x, np.full(3, 0.1)),
        rtol=1e-10,
        atol=1e-10,
    )


def test_a_wrong_structure_is_detected():
    mixing = scanlab.cell(scanlab.cells.builtin.elman_step, structure="diagonal")
    weights = (np.full((3, 3), 0.2), np.full((3, 3), 0.2))
    with pytest.raises(
        ValueError, match="declared structure='diagonal'.*output 1 depends on h_prev\\[0\\]"
    ):
        scanlab.nonlinear_recurrence(
            mixing, np.zeros((5, 3)), np.zeros(3), params=weights, method="newton"
        )
    with pytest.raises(ValueError, match="divisible by 2"):
        scanlab.nonlinear_recurrence(
            COMPILED["block", True], np.zeros((5, 3)), np.zeros(3), method="newton"
        )


def test_a_wrong_jacobian_is_detected():
    wrong = scanlab.cell(
        leaky_step, jacobian=lambda h, x, p, out: out.fill(0.5), structure="diagonal"
    )
    with pytest.raises(ValueError, match="jacobian does not match its step"):
        scanlab.nonlinear_recurrence(wrong, np.zeros((5, 2)), np.zeros(2), method="newton")


def logistic_step(h_prev, x_t, rate, h_out):
    h_out[0] = rate * h_prev[0] * (1 - h_prev[0])


def logistic_jacobian(h_prev, x_t, rate, jacobian_out):
    jacobian_out[0] = rate * (1 - 2 * h_prev[0])


LOGISTIC = scanlab.cell(logistic_step, jacobian=logistic_jacobian, structure="diagonal")


@pytest.mark.parametrize("method", ["newton", "quasi", "damped"])
def test_chaos_is_detected_and_finished_sequentially(method):
    x = np.zeros((400, 3, 0))
    h0 = np.array([[0.2], [0.5], [0.7]])
    h, info = scanlab.nonlinear_recurrence(
        LOGISTIC, x, h0, params=3.9, method=method, max_iter=30, full_output=True
    )
    assert not info.converged and info.finished_sequentially.all()
    assert info.iterations <= 30
    # Every step satisfies the recurrence, although the trajectory, being chaotic, amplifies the
    # tolerance of the exact prefix (as it amplifies rounding) and differs from the loop's.
    assert scaled_residual(lambda h, x: 3.9 * h * (1 - h), x, h0, h) <= info.tol
    with pytest.raises(scanlab.ConvergenceError, match="did not converge for 3 of 3") as error:
        scanlab.nonlinear_recurrence(
            LOGISTIC, x, h0, params=3.9, method=method, max_iter=30, on_fail="raise"
        )
    assert error.value.residual > info.tol and not error.value.info.converged


def rate_step(h_prev, x_t, params, h_out):
    h_out[0] = x_t[0] * h_prev[0] * (1 - h_prev[0])


def test_converging_and_diverging_sequences_in_one_batch():
    rates = np.broadcast_to(np.array([[2.8], [3.9]]), (300, 2, 1))
    cell = scanlab.cell(rate_step, structure="diagonal")
    h, info = scanlab.nonlinear_recurrence(cell, rates, [0.3], method="newton", full_output=True)
    np.testing.assert_array_equal(info.batch_converged, [True, False])
    np.testing.assert_array_equal(info.finished_sequentially, [False, True])
    assert not info.converged and info.residual <= info.tol
    expected = reference.nonlinear_recurrence(lambda h, x: x * h * (1 - h), rates[:, :1], [0.3])
    np.testing.assert_allclose(h[:, :1], expected, atol=1e-10)


def contracting_tanh_step(h_prev, x_t, weight, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = math.tanh(weight * h_prev[i] + x_t[i])


CONTRACTING = scanlab.cell(contracting_tanh_step, structure="diagonal")


@pytest.mark.parametrize("method", ["newton", "quasi", "damped"])
def test_accept_returns_the_last_iterate_of_exactly_max_iter_iterations(method, monkeypatch):
    """ParaRNN's fixed-iteration mode: ``max_iter=3, on_fail="accept"`` runs three iterations
    and returns their iterate, never the loop, with its residual reported (this problem needs
    five to reach the tolerance)."""
    from scanlab.cpu import nonlinear as cpu_nonlinear

    def no_loop(*arguments):
        raise AssertionError("on_fail='accept' ran the sequential loop")

    x = np.random.default_rng(0).normal(size=(400, 3, 2))
    h0 = np.zeros((3, 2))
    loop = scanlab.nonlinear_recurrence(CONTRACTING, x, h0, params=0.9, method="sequential")
    monkeypatch.setattr(cpu_nonlinear.Backend, "finish_sequentially", no_loop)
    h, info = scanlab.nonlinear_recurrence(
        CONTRACTING, x, h0, params=0.9, method=method, max_iter=3, on_fail="accept",
        full_output=True,
    )  # fmt: skip
    assert info.iterations == 3 and not info.converged
    assert not info.batch_converged.any() and not info.finished_sequentially.any()
    residual = scaled_residual(lambda h, x: np.tanh(0.9 * h + x), x, h0, h)
    assert info.residual == pytest.approx(residual, rel=1e-6)
    assert info.tol < info.residual < 1e-2
    np.testing.assert_allclose(h, loop, atol=10 * info.residual)
    np.testing.assert_allclose(h[:1], loop[:1], rtol=1e-12)  # exact from the guess on


def test_accept_keeps_converged_sequences_as_they_converged():
    rates = np.broadcast_to(np.array([[2.8], [3.9]]), (300, 2, 1))
    cell = scanlab.cell(rate_step, structure="diagonal")
    h, info = scanlab.nonlinear_recurrence(
        cell, rates, [0.3], method="newton", max_iter=40, on_fail="accept", full_output=True
    )
    np.testing.assert_array_equal(info.batch_converged, [True, False])
    assert not info.finished_sequentially.any() and info.iterations <= 40
    expected = reference.nonlinear_recurrence(lambda h, x: x * h * (1 - h), rates[:, :1], [0.3])
    np.testing.assert_allclose(h[:, :1], expected, atol=1e-10)
    assert info.residual == np.inf  # the chaotic sequence diverged: its iterate is returned
    assert not np.isfinite(h[:, 1]).all()


def test_non_finite_data_lands_where_the_loop_puts_it():
    x = np.random.default_rng(5).uniform(-1, 1, (60, 2))
    x[20, 0] = np.nan
    x[30, 1] = np.inf
    cell = COMPILED["diagonal", True]
    for method in ("newton", "damped", "quasi"):
        h, info = scanlab.nonlinear_recurrence(
            cell, x, np.zeros(2), method=method, full_output=True
        )
        expected = scanlab.nonlinear_recurrence(cell, x, np.zeros(2), method="sequential")
        np.testing.assert_array_equal(np.isnan(h), np.isnan(expected))
        np.testing.assert_allclose(h, expected, rtol=1e-10, atol=1e-10)
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(np.isnan(h[:, 0]), False)


def test_guess_and_the_exact_prefix():
    rng = np.random.default_rng(6)
    x, h0, _ = problem(rng, "diagonal", 3, 200, (2,), np.float64)
    cell = COMPILED["diagonal", True]
    exact = scanlab.nonlinear_recurrence(cell, x, h0, method="sequential")
    h, info = scanlab.nonlinear_recurrence(
        cell, x, h0, guess=exact, method="newton", full_output=True
    )
    assert info.iterations == 0 and info.converged
    np.testing.assert_array_equal(h, exact)
    perturbed = exact.copy()
    perturbed[150:] += 0.1
    h, info = scanlab.nonlinear_recurrence(
        cell, x, h0, guess=perturbed, method="newton", full_output=True
    )
    assert info.converged and info.iterations <= 5
    np.testing.assert_allclose(h, exact, atol=1e-11)
    with pytest.raises(
        ValueError, match=r"guess must broadcast to the result's shape \(200, 2, 3\)"
    ):
        scanlab.nonlinear_recurrence(cell, x, h0, guess=np.zeros((5, 3)))


def test_max_iter_is_respected_and_reported():
    rng = np.random.default_rng(7)
    x, h0, params = problem(rng, "dense", 5, 300, (), np.float64)
    cell = COMPILED["dense", True]
    h, info = scanlab.nonlinear_recurrence(
        cell, x, h0, params=params, method="quasi", max_iter=2, full_output=True
    )
    assert info.iterations == 2 and not info.converged and info.finished_sequentially.all()
    assert len(info.residual_history) == 3 and info.residual_history[-1] > info.tol
    expected = reference.nonlinear_recurrence(CELLS["dense"][3](params), x, h0)
    np.testing.assert_allclose(h, expected, rtol=1e-9, atol=1e-9)


def test_auto_method(monkeypatch):
    cell = COMPILED["diagonal", True]
    x = np.zeros((10, 2))
    _, info = scanlab.nonlinear_recurrence(cell, x, np.zeros(2), full_output=True)
    assert info.method == "sequential"
    monkeypatch.setattr(config.cpu, "nonlinear_auto_newton_min_threads", 1)
    monkeypatch.setattr("numba.get_num_threads", lambda: 4)
    _, info = scanlab.nonlinear_recurrence(cell, x, np.zeros(2), full_output=True)
    assert info.method == "newton"
    choose = scanlab.nonlinear.choose_method
    assert choose("cuda", cell, 1024, 1, 8) == "sequential"
    assert choose("cuda", cell, 16384, 1, 8) == "newton"
    assert choose("cuda", COMPILED["dense", True], 16384, 1, 8) == "quasi"


def test_shapes_broadcasting_and_views():
    cell = COMPILED["block", True]
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, (4, 40, 2)).transpose(1, 0, 2)  # (T, batch, m), not contiguous
    h0 = rng.uniform(-1, 1, 2)
    h = scanlab.nonlinear_recurrence(cell, x, h0, method="newton")
    np.testing.assert_allclose(
        h, reference.nonlinear_recurrence(pairs_reference, x, h0), atol=1e-10
    )
    h = scanlab.nonlinear_recurrence(cell, x[:, :1], rng.uniform(-1, 1, (3, 1, 2)), method="newton")
    assert h.shape == (40, 3, 1, 2)
    empty = scanlab.nonlinear_recurrence(cell, np.zeros((0, 3, 2)), np.zeros(2), method="newton")
    assert empty.shape == (0, 3, 2)
    sized = scanlab.cell(leaky_step, structure="diagonal", state_size=4)
    assert scanlab.nonlinear_recurrence(sized, np.ones((3, 4)), None).shape == (3, 4)
    integers = scanlab.nonlinear_recurrence(COMPILED["diagonal", True], np.ones((3, 1), int), [0])
    assert integers.dtype == np.float64


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"x": np.zeros(5)}, ValueError, r"x must have shape \(T, \*batch, m\)"),
        ({"x": np.zeros((5, 2), complex)}, TypeError, "float32 or float64"),
        ({"h0": None}, ValueError, "h0=None needs the state size"),
        ({"h0": np.zeros((3, 2))}, ValueError, "do not broadcast"),
        ({"method": "fast"}, ValueError, "method must be one of"),
        ({"on_fail": "ignore"}, ValueError, "must be one of 'fallback', 'raise', 'accept'"),
        ({"tol": 0}, ValueError, "tol must be positive"),
        ({"max_iter": -1}, ValueError, "max_iter must be a non-negative integer"),
        ({"max_iter": 2.5}, ValueError, "max_iter must be a non-negative integer"),
        ({"max_iter": True}, ValueError, "max_iter must be a non-negative integer"),
        ({"tol": np.inf}, ValueError, "tol must be positive and finite"),
        ({"tol": np.nan}, ValueError, "tol must be positive and finite"),
        ({"full_output": "no"}, TypeError, "full_output must be True or False"),
        ({"device": "tpu"}, ValueError, "device must be one of"),
        ({"x": np.array([["a", "b"]])}, TypeError, "not numeric"),
    ],
)
def test_errors(kwargs, error, match):
    arguments = {"x": np.zeros((5, 4, 2)), "h0": np.zeros(2), "method": "newton"} | kwargs
    with pytest.raises(error, match=match):
        scanlab.nonlinear_recurrence(COMPILED["diagonal", True], **arguments)


def test_cell_errors():
    with pytest.raises(TypeError, match="cell must be made by scanlab.cell"):
        scanlab.nonlinear_recurrence(leaky_step, np.zeros((2, 1)), [0.0])
    with pytest.raises(TypeError, match="step must be a function"):
        scanlab.cell(3)
    with pytest.raises(ValueError, match="structure must be"):
        scanlab.cell(leaky_step, structure=("block", 0))
    with pytest.raises(ValueError, match="states of size 8"):
        scanlab.nonlinear_recurrence(scanlab.cells.ParaLSTM(4, 1), np.zeros((2, 1)), np.zeros(3))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_every_method_on_the_gpu(cuda_device, name):
    """The GPU backend (under the simulator in CI: tiny sizes) against the loop, as the CPU's."""
    step, _, _, make_reference, sizes = CELLS[name]
    rng = np.random.default_rng(9)
    for own_jacobian in (True, False):
        for method, dtype in [
            ("newton", np.float64), ("quasi", np.float64), ("damped", np.float32),
            ("sequential", np.float64),
        ]:  # fmt: skip
            x, h0, params = problem(rng, name, sizes[-1], 7, (2,), dtype)
            h, info = scanlab.nonlinear_recurrence(
                COMPILED[name, own_jacobian], x, h0, params=params, method=method,
                device=cuda_device, full_output=True,
            )  # fmt: skip
            expected = reference.nonlinear_recurrence(make_reference(params), x, h0)
            tolerance = TOLERANCES[np.dtype(dtype)]
            np.testing.assert_allclose(h, expected, rtol=tolerance, atol=tolerance)
            assert h.dtype == dtype and info.converged


def test_divergence_and_guesses_on_every_device(device):
    rates = np.broadcast_to(np.array([[2.8], [3.9]]), (24, 2, 1))
    cell = scanlab.cell(rate_step, structure="diagonal")
    for method in ("newton", "damped"):
        h, info = scanlab.nonlinear_recurrence(
            cell, rates, [0.3], method=method, max_iter=15, device=device, full_output=True
        )
        np.testing.assert_array_equal(info.batch_converged, [True, False])
        assert scaled_residual(lambda h, x: x * h * (1 - h), rates, [0.3], h) <= info.tol
    exact = scanlab.nonlinear_recurrence(cell, rates[:, :1], [0.3], method="sequential")
    h, info = scanlab.nonlinear_recurrence(
        cell, rates[:, :1], [0.3], guess=exact, method="newton", device=device, full_output=True
    )
    assert info.iterations == 0
    np.testing.assert_array_equal(h, exact)


@pytest.mark.parametrize(
    ("cell_type", "make_step"),
    [
        (scanlab.cells.ElmanRNN, reference.elman_step),
        (scanlab.cells.ParaGRU, reference.gru_step),
        (scanlab.cells.ParaLSTM, reference.lstm_step),
    ],
)
def test_builtin_cells_on_the_gpu(cuda_device, cell_type, make_step):
    cell = cell_type(3, 2, seed=4)
    x = np.random.default_rng(4).standard_normal((6, 2, 2))
    expected = reference.nonlinear_recurrence(make_step(cell), x, np.zeros(cell.state_size))
    for method in ("newton", "quasi"):
        h = scanlab.nonlinear_recurrence(cell, x, None, method=method, device=cuda_device)
        np.testing.assert_allclose(h, expected, rtol=1e-10, atol=1e-10)


@given(
    length=st.integers(1, 30),
    sequences=st.integers(1, 4),
    first_fraction=st.floats(0, 1, exclude_max=True),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_row_summary_is_the_loops(length, sequences, first_fraction, dtype, seed):
    """``summarise_rows`` against a plain loop over each sequence's residuals: ties with the
    tolerance, NaN, Inf, the mark of a step that raised and squares that overflow."""
    tol = 1e-3
    values = [0.0, tol, 2 * tol, 3e38, np.inf, np.nan, FAILED]
    rng = np.random.default_rng(seed)
    rows = rng.uniform(0, tol, (length, sequences))
    special = rng.random(rows.shape) < 0.2
    rows[special] = rng.choice(values, special.sum())
    rows = rows.astype(dtype)
    first = int(first_fraction * length)
    summary = summarise_rows(rows, first, tol)
    tol = dtype(tol)  # compared in the rows' dtype
    for s in range(sequences):
        bad = [t for t in range(first, length) if not rows[t, s] <= tol]
        first_bad = bad[0] if bad else length
        assert summary.first_bad[s] == first_bad
        assert summary.bad_is_nan[s] == (bool(bad) and math.isnan(rows[first_bad, s]))
        assert summary.finite[s] == all(math.isfinite(r) for r in rows[first:, s])
        magnitudes = [float(r) if math.isfinite(r) else math.inf for r in rows[:, s]]
        assert summary.worst[s] == max([0.0, *magnitudes])
        merit = math.fsum(m * m for m in magnitudes[first:])
        assert summary.merit[s] == pytest.approx(merit, rel=1e-12)
