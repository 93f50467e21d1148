"""The user's code in a nonlinear recurrence: a step or Jacobian that raises, writes NaN, leaves
outputs unwritten or does not compile for its ``params``, and probes that NaN data must not
decide. Each reaches the caller as the user's exception or as scanlab's own error naming the
cause, on every method and path, never as a result.

A few small module-level cells serve every test: each new cell costs Numba compilations.
"""

import math
import sys

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scanlab
from scanlab import _step_checks, nonlinear
from scanlab._step_routines import FAILED, failed_steps
from tests import reference

METHODS = ["auto", "newton", "quasi", "damped", "sequential"]
NEWTON_METHODS = ["newton", "quasi", "damped"]


def guarded_step(h_prev, x_t, scale, h_out):
    """``h = scale * h + x`` per channel (two), raising out of its range: a state above 20 in
    channel 0, an input above 50 in channel 1, a scale above 1."""
    if h_prev[0] > 20.0 or x_t[1] > 50.0 or scale > 1.0:
        raise ValueError("guarded_step: out of range")
    for i in range(h_prev.shape[0]):
        h_out[i] = scale * h_prev[i] + x_t[i]


def guarded_jacobian(h_prev, x_t, scale, jacobian_out):
    """``guarded_step``'s Jacobian, raising below a state of -20 in channel 0 (where the step
    does not)."""
    if h_prev[0] < -20.0:
        raise ValueError("guarded_jacobian: out of range")
    for i in range(h_prev.shape[0]):
        jacobian_out[i] = scale


GUARDED = scanlab.cell(guarded_step, jacobian=guarded_jacobian, structure="diagonal")


def guarded_reference(scale):
    return lambda h, x: scale * h + x


def real_only_step(h_prev, x_t, rate, h_out):
    """``math.tanh`` does not compile for complex states: differentiated by central
    differences."""
    for i in range(h_prev.shape[0]):
        h_out[i] = math.tanh(rate * h_prev[i] + x_t[i])


def real_only_reference(rate):
    return lambda h, x: np.tanh(rate * h + x)


def skipping_step(h_prev, x_t, skipped, h_out):
    """Writes every output but ``h_out[skipped]``."""
    for i in range(h_prev.shape[0]):
        if i != skipped:
            h_out[i] = 0.5 * h_prev[i]


def returning_step(h_prev, x_t, params, h_out):
    """Returns the new state instead of writing it (the issue's reproduction)."""
    return 0.5 * h_prev


def pair_step(h_prev, x_t, params, h_out):
    """Takes ``params`` as a pair ``(scale, shift)``."""
    scale, shift = params
    for i in range(h_prev.shape[0]):
        h_out[i] = scale * h_prev[i] + shift


def mixing_step(h_prev, x_t, params, h_out):
    """A dense 2-state step whose Jacobian :func:`faulty_jacobian` gets one entry wrong."""
    h_out[0] = math.tanh(0.5 * h_prev[0] - 0.3 * h_prev[1] + x_t[0])
    h_out[1] = math.tanh(0.4 * h_prev[0] + 0.2 * h_prev[1] + x_t[1])


def faulty_jacobian(h_prev, x_t, params, jacobian_out):
    """``mixing_step``'s Jacobian, except entry ``params[0], params[1]``: NaN if ``params[2]``,
    else left unwritten."""
    row, column, write_nan = params
    first = 1 - math.tanh(0.5 * h_prev[0] - 0.3 * h_prev[1] + x_t[0]) ** 2
    second = 1 - math.tanh(0.4 * h_prev[0] + 0.2 * h_prev[1] + x_t[1]) ** 2
    entries = ((0.5 * first, -0.3 * first), (0.4 * second, 0.2 * second))
    for i in range(2):
        for j in range(2):
            if i != row or j != column:
                jacobian_out[i, j] = entries[i][j]
            elif write_nan:
                jacobian_out[i, j] = math.nan


def assert_noted(error: BaseException, text: str) -> None:
    """``error`` carries a note with ``text`` (where Python has notes, 3.11 on)."""
    if sys.version_info >= (3, 11):
        assert text in "".join(getattr(error, "__notes__", [])), error


def guarded_problem(batch, trigger, position, length=6):
    """Inputs in range except one, which makes the step (or Jacobian) raise where ``trigger``
    says: ``"guess"`` at the first evaluation, ``"iteration"`` (a large state) at the step
    after ``position``, ``"jacobian"`` (a large negative state) only in the Jacobian there."""
    rng = np.random.default_rng(len(batch) + position[0])
    x = rng.uniform(-1.0, 1.0, (length, *batch, 2))
    t, sequence = position
    index = (t, *np.unravel_index(sequence, batch), slice(None)) if batch else (t, slice(None))
    x[index] = {"guess": [0.0, 60.0], "iteration": [30.0, 0.0], "jacobian": [-30.0, 0.0]}[trigger]
    return x, rng.uniform(-1.0, 1.0, (*batch, 2))


def square_root_step(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        if h_prev[i] < 0.0:
            raise ValueError("square_root_step: negative state")
        h_out[i] = 0.5 * math.sqrt(h_prev[i]) + x_t[i] * x_t[i]


@pytest.mark.parametrize("method", NEWTON_METHODS)
def test_a_step_that_raises_outside_its_domain_is_probed_inside_it(method):
    """The probes that choose how to differentiate a cell start at a random state, of both
    signs: where the step raises there (a square root of a negative state), they start from
    the initial state instead, which the recurrence visits; Newton then solves as the loop."""
    cell = scanlab.cell(square_root_step, structure="diagonal")
    x = np.random.default_rng(7).uniform(0.2, 0.6, (50, 4))
    h0 = np.full(4, 0.5)
    expected = scanlab.nonlinear_recurrence(cell, x, h0, method="sequential")
    found = scanlab.nonlinear_recurrence(cell, x, h0, method=method)
    np.testing.assert_allclose(found, expected, rtol=1e-10, atol=1e-12)
    h = scanlab.nonlinear_recurrence(cell, x, h0, method="sequential")
    dx, dh0, _ = scanlab.nonlinear_recurrence_vjp(cell, x, h0, h, np.ones_like(h))
    assert np.isfinite(dx).all() and np.isfinite(dh0).all()


def test_an_exception_while_the_jacobian_is_probed_is_noted():
    """A cell already checked (a loop solved it), then solved by Newton where its first input is
    out of range: the probe that chooses how to differentiate it raises the step's exception,
    noted with the cell, as every other path notes it (a hypothesis run found it unnoted)."""
    cell = scanlab.cell(guarded_step, jacobian=guarded_jacobian, structure="diagonal")
    x, h0 = guarded_problem((), "guess", (0, 0))
    scanlab.nonlinear_recurrence(cell, x[1:], h0, params=0.5, method="sequential")
    with pytest.raises(ValueError, match="guarded_step: out of range") as caught:
        scanlab.nonlinear_recurrence(cell, x, h0, params=0.5, method="newton")
    assert_noted(caught.value, "scanlab.cell(guarded_step")


@settings(max_examples=30, deadline=None)
@given(
    method=st.sampled_from(METHODS),
    batch=st.sampled_from([(), (3,), (2, 2)]),
    trigger=st.sampled_from(["guess", "iteration", "jacobian"]),
    t=st.integers(0, 4),
    sequence=st.integers(0, 3),
    full_output=st.booleans(),
)
def test_an_exception_in_the_users_code_reaches_the_caller(
    method, batch, trigger, t, sequence, full_output
):
    """Wherever the step or the Jacobian raises (the first evaluation, a later Newton
    iteration, the loop; one sequence or a batch), the caller gets that exception, noted with
    where it was raised, and never a result; a Jacobian that raises where the loop does not
    use it leaves the loop's result as it is."""
    sequence %= math.prod(batch)
    x, h0 = guarded_problem(batch, trigger, (t, sequence))
    sequences = math.prod(batch)
    chosen = nonlinear.choose_method("cpu", GUARDED, len(x), sequences, 2)
    solved = chosen if method == "auto" else method
    if trigger == "jacobian" and solved == "sequential":
        h = scanlab.nonlinear_recurrence(
            GUARDED, x, h0, params=0.5, method=method, full_output=full_output
        )
        h = h[0] if full_output else h
        expected = reference.nonlinear_recurrence(guarded_reference(0.5), x, h0)
        np.testing.assert_allclose(h, expected, rtol=1e-12, atol=1e-12)
        return
    name = "guarded_jacobian" if trigger == "jacobian" else "guarded_step"
    with pytest.raises(ValueError, match=f"{name}: out of range") as caught:
        scanlab.nonlinear_recurrence(
            GUARDED, x, h0, params=0.5, method=method, full_output=full_output
        )
    assert_noted(caught.value, "scanlab.cell(guarded_step")


def test_issue_reproduction_raising_steps_in_the_kernels():
    """Issue 18, item 4: Newton returned uninitialised values marked converged, the batched
    loop a SystemError."""
    x, h0 = guarded_problem((3,), "iteration", (2, 1))
    for method in ("newton", "sequential"):
        with pytest.raises(ValueError, match="guarded_step: out of range") as caught:
            scanlab.nonlinear_recurrence(GUARDED, x, h0, params=0.5, method=method)
        assert_noted(caught.value, "at step 3 of sequence 1")


def test_an_exception_in_the_users_code_reaches_the_caller_of_the_vjp():
    """Every path of the VJP through the user's code: the evaluation at ``h``, the pullback
    through the inputs (a moved input) and through ``params`` (a moved parameter)."""
    x, h0 = guarded_problem((2,), "iteration", (0, 0))
    x[0, 0] = 0.0
    h = scanlab.nonlinear_recurrence(GUARDED, x, h0, params=0.5, method="newton")
    g = np.ones_like(h)
    large = h.copy()
    large[2, 1, 0] = 25.0
    with pytest.raises(ValueError, match="guarded_step: out of range"):
        scanlab.nonlinear_recurrence_vjp(GUARDED, x, h0, large, g, params=0.5)
    # Exactly at the limits: the solve runs, and only the moved input or parameter raises.
    at_limit = x.copy()
    at_limit[1, 1, 1] = 50.0
    h = scanlab.nonlinear_recurrence(GUARDED, at_limit, h0, params=0.5, method="sequential")
    with pytest.raises(ValueError, match="guarded_step: out of range") as caught:
        scanlab.nonlinear_recurrence_vjp(GUARDED, at_limit, h0, h, g, params=0.5)
    assert_noted(caught.value, "at step 1 of sequence 1")
    h = scanlab.nonlinear_recurrence(GUARDED, x, h0, params=1.0, method="sequential")
    with pytest.raises(ValueError, match="guarded_step: out of range"):
        scanlab.nonlinear_recurrence_vjp(GUARDED, x, h0, h, g, params=1.0)


def test_a_step_that_does_not_raise_again_is_reported():
    """A step that raised in a kernel but not when run again alone: a RuntimeError, never a
    result."""
    with pytest.raises(RuntimeError, match="at step 4 of sequence 2, but not when run again"):
        _step_checks.raise_from_reruns(GUARDED, iter([(4, 2, lambda: None)]))


def test_failed_steps_are_found_from_the_residuals():
    """The marks the kernels leave: ``FAILED`` first (the step that raised), then any other
    negative residual (steps a stopped GPU thread left as they were), offset by ``first``."""
    rows = np.array([[0.0, np.nan], [-3.5, np.inf], [1e-3, FAILED]])
    np.testing.assert_array_equal(failed_steps(rows, 5), [[7, 1], [6, 0]])
    assert failed_steps(np.zeros((2, 3)), 0).shape == (0, 2)


@settings(max_examples=12, deadline=None)
@given(
    nan_rows=st.sets(st.integers(0, 7), max_size=8),
    nan_rate=st.booleans(),
    method=st.sampled_from(NEWTON_METHODS),
)
def test_nan_data_never_decides_a_probe(nan_rows, nan_rate, method):
    """NaN in the inputs (any steps, all of them included) or in ``params`` at a cell's first
    solve: the result is the loop's, NaN where it puts them, and the plan kept for later solves
    is one that was proven on finite data, or none; a later solve then works."""
    cell = scanlab.cell(real_only_step, structure="diagonal")
    x = np.random.default_rng(len(nan_rows)).uniform(-1.0, 1.0, (8, 2))
    x[sorted(nan_rows), 0] = np.nan
    rate = math.nan if nan_rate else 0.8
    h = scanlab.nonlinear_recurrence(cell, x, np.zeros(2), params=rate, method=method)
    expected = reference.nonlinear_recurrence(real_only_reference(rate), x, np.zeros(2))
    np.testing.assert_allclose(h, expected, rtol=1e-9, atol=1e-9)
    finite_rows = len(nan_rows) < 8 and not nan_rate
    assert [plan.method for plan in cell.plans.values()] == (
        ["central-differences"] if finite_rows else []
    )
    x = np.random.default_rng(1).uniform(-1.0, 1.0, (8, 2))
    h, info = scanlab.nonlinear_recurrence(
        cell, x, np.zeros(2), params=0.8, method="newton", full_output=True
    )
    assert info.converged and cell.plans[2, "<f8"].method == "central-differences"


def test_issue_reproduction_nan_at_the_first_solve():
    """Issue 18, item 5: NaN in ``x[0]`` at the first solve of a step that does not compile for
    complex numbers cached the complex step, and every later solve failed to compile."""
    cell = scanlab.cell(real_only_step, structure="diagonal")
    x = np.random.default_rng(5).uniform(-1.0, 1.0, (10, 2))
    x[0, 0] = np.nan
    scanlab.nonlinear_recurrence(cell, x, np.zeros(2), params=0.8, method="newton")
    h, info = scanlab.nonlinear_recurrence(
        cell, x[1:], np.zeros(2), params=0.8, method="newton", full_output=True
    )
    assert info.converged and cell.plans[2, "<f8"].method == "central-differences"
    # The cell's own Jacobian is not taken as proven from NaN parameters either.
    own = scanlab.cell(guarded_step, jacobian=guarded_jacobian, structure="diagonal")
    scanlab.nonlinear_recurrence(own, x[1:], np.zeros(2), params=math.nan, method="newton")
    assert own.plans == {}


@settings(max_examples=8, deadline=None)
@given(row=st.integers(0, 1), column=st.integers(0, 1), write_nan=st.booleans())
def test_a_jacobian_with_a_nan_or_unwritten_entry_is_rejected(row, column, write_nan):
    """Issue 18, item 6 (``max(error, nan)`` was ``error``), and its twin: an entry of ``J_out``
    left unwritten passed when the probe's buffer happened to hold the right value."""
    cell = scanlab.cell(mixing_step, jacobian=faulty_jacobian, structure="dense")
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="jacobian does not match its step.*by nan"):
        scanlab.nonlinear_recurrence(
            cell, x, np.zeros(2), params=(row, column, write_nan), method="newton"
        )


@pytest.mark.parametrize(
    ("cell_type", "make_step"),
    [
        (scanlab.cells.ElmanRNN, reference.elman_step),
        (scanlab.cells.ParaGRU, reference.gru_step),
        (scanlab.cells.ParaLSTM, reference.lstm_step),
    ],
)
def test_builtin_cells_without_inputs(cell_type, make_step):
    """Issue 18, item 7: ``m = 0`` raised "cannot reshape array of size 0"; the recurrence runs
    on the bias alone (the loop here: Newton and the VJP are shared by every cell, below)."""
    cell = cell_type(2, 0, seed=3)
    x = np.zeros((5, 2, 0))
    expected = reference.nonlinear_recurrence(make_step(cell), x, np.zeros(cell.state_size))
    h = scanlab.nonlinear_recurrence(cell, x, None, method="sequential")
    np.testing.assert_allclose(h, expected, rtol=1e-12, atol=1e-12)


def test_newton_and_the_vjp_without_inputs():
    """``m = 0`` through Newton and the VJP (an Elman cell, whose kernels other tests share)."""
    cell = scanlab.cells.ElmanRNN(2, 0, seed=3)
    x = np.zeros((5, 2, 0))
    h = scanlab.nonlinear_recurrence(cell, x, None, method="newton")
    expected = reference.nonlinear_recurrence(reference.elman_step(cell), x, np.zeros(2))
    np.testing.assert_allclose(h, expected, rtol=1e-10, atol=1e-10)
    g = np.ones_like(h)
    dx, dh0, dparams = scanlab.nonlinear_recurrence_vjp(cell, x, None, h, g)
    expected_dx, expected_dh0, expected_dparams = reference.elman_vjp(
        cell, x, np.zeros((2, 2)), h, g
    )
    assert dx.shape == x.shape and dparams["input_weights"].shape == (2, 0)
    np.testing.assert_allclose(dh0, expected_dh0, rtol=1e-9, atol=1e-12)
    for name, value in expected_dparams.items():
        np.testing.assert_allclose(dparams[name], value, rtol=1e-9, atol=1e-12, err_msg=name)


BAD_PARAMS = [
    {"scale": 0.5},
    [0.5, 0.0],
    "0.5",
    {0.5},
    np.array(["a", "b"]),
    np.array([object(), None]),
    (0.5, {"shift": 0.0}),
    ((0.5,), [0.0]),
]


@pytest.mark.parametrize("params", BAD_PARAMS, ids=lambda value: type(value).__name__)
def test_params_a_step_cannot_take_are_named(params):
    """Issue 18, item 10: a dict ``params`` surfaced as a Numba TypingError. Anything a step
    cannot take is scanlab's TypeError naming ``params`` (and where in it), on every method."""
    for method in ("sequential", "newton"):
        with pytest.raises(TypeError, match=r"params(\[\d\])* is passed to the cell's step"):
            scanlab.nonlinear_recurrence(
                GUARDED, np.zeros((3, 2)), np.zeros(2), params=params, method=method
            )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (0.5, r"params of type float64.*getitem|params of type float64.*unpack"),
        ((0.5,), "params of type UniTuple\\(float64 x 1\\).*wrong tuple length"),
        (None, "params of type none"),
    ],
)
def test_params_the_step_does_not_expect_are_named(params, expected):
    """A ``params`` of a type the step does not compile for: scanlab's TypeError naming
    ``params``, its type and what failed, with Numba's error chained."""
    cell = scanlab.cell(pair_step)
    with pytest.raises(TypeError, match=expected) as caught:
        scanlab.nonlinear_recurrence(cell, np.zeros((3, 1)), [1.0], params=params)
    assert isinstance(caught.value.__cause__, numba.core.errors.TypingError)
    h = scanlab.nonlinear_recurrence(cell, np.zeros((3, 1)), [1.0], params=(0.5, 1.0))
    np.testing.assert_allclose(h[:, 0], [1.5, 1.75, 1.875])


def writes_its_inputs(h_prev, x_t, params, h_out):
    x_t[0] = 0.0
    for i in range(h_prev.shape[0]):
        h_out[i] = 0.5 * h_prev[i]


def calls_an_undefined_name(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = no_such_function(h_prev[i])  # noqa: F821 - the error under test


@pytest.mark.parametrize(
    ("step", "match"),
    [
        (writes_its_inputs, r"writes into h_prev or x_t .*at `x_t\[0\] = 0.0`.*read-only"),
        (calls_an_undefined_name, r"does not compile: .*no_such_function.* is not defined"),
    ],
)
def test_a_step_that_does_not_compile_for_its_own_reasons_is_not_blamed_on_params(step, match):
    with pytest.raises(TypeError, match=match) as caught:
        scanlab.nonlinear_recurrence(scanlab.cell(step), np.ones((5, 1)), np.ones(1))
    assert "params" not in str(caught.value)
    assert isinstance(caught.value.__cause__, numba.core.errors.TypingError)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"bias": np.array(["a", "b"])}, TypeError, r"params\['bias'\] of a ParaGRU must be"),
        ({"bias": np.ones((3, 2), complex)}, TypeError, r"params\['bias'\].*complex128"),
        ({"bias": [[1.0], [1.0, 2.0]]}, TypeError, r"params\['bias'\].*got list"),
        ({"bias": np.ones(4)}, ValueError, r"ParaGRU.bias has shape \(3, 2\)"),
        ([np.ones(4)], TypeError, "params of a ParaGRU is a dict"),
    ],
)
def test_builtin_cell_params_are_checked(params, error, match):
    """A built-in cell's ``params`` dict: values that are not real numbers (complex ones would
    lose their imaginary part silently) or do not fit are named."""
    with pytest.raises(error, match=match):
        scanlab.nonlinear_recurrence(
            scanlab.cells.ParaGRU(2, 1), np.zeros((3, 1)), None, params=params
        )


@pytest.mark.parametrize(
    ("guess", "error", "match"),
    [
        ("0.5", TypeError, r"guess \(str\) has dtype <U3"),
        ({"h": 0.5}, TypeError, r"guess \(dict\) has dtype object"),
        ([[0.5], [0.5, 0.5]], ValueError, "guess could not be read as an array"),
        (np.zeros((3, 2), complex), TypeError, "guess has dtype complex128, but the states"),
    ],
)
def test_a_guess_that_is_not_real_numbers_is_named(guess, error, match):
    """The other user value the solver takes as it is: ``guess`` (complex values would lose
    their imaginary part silently)."""
    with pytest.raises(error, match=match):
        scanlab.nonlinear_recurrence(
            GUARDED, np.zeros((3, 2)), np.zeros(2), params=0.5, guess=guess, method="newton"
        )


def test_issue_reproduction_a_step_that_returns_its_state():
    """Issue 18, item 11: garbage such as 6.9e-310 from the loop, "declare structure='dense'"
    from Newton."""
    cell = scanlab.cell(returning_step, structure="dense")
    for method in ("sequential", "newton"):
        with pytest.raises(ValueError, match=r"does not write h_out\[0\].*returns a ndarray"):
            scanlab.nonlinear_recurrence(cell, np.zeros((5, 0)), [1.0, 2.0], method=method)


@settings(max_examples=12, deadline=None)
@given(
    size=st.integers(1, 5),
    skipped=st.integers(0, 4),
    method=st.sampled_from(METHODS),
    batch=st.sampled_from([(), (3,)]),
    nan_start=st.booleans(),
)
def test_a_step_that_leaves_an_output_unwritten_is_named(size, skipped, method, batch, nan_start):
    """Any output left unwritten, on every method, whatever the initial state (NaN too): the
    error names it and the contract."""
    skipped %= size
    cell = scanlab.cell(skipping_step, structure="diagonal")
    h0 = np.full((*batch, size), np.nan if nan_start else 0.5)
    with pytest.raises(ValueError, match=rf"does not write h_out\[{skipped}\] \(1 of its {size} "):
        scanlab.nonlinear_recurrence(
            cell, np.zeros((4, *batch, 1)), h0, params=skipped, method=method
        )


@pytest.mark.parametrize("method", ["newton", "sequential"])
def test_user_code_errors_on_the_gpu(cuda_device, method):
    """The GPU backend: a raising step reaches the caller (a GPU thread stops where its step
    raises; the simulator raises itself), and the checks run on the host before any launch."""
    x, h0 = guarded_problem((2,), "iteration", (1, 1), length=4)
    with pytest.raises(ValueError, match="guarded_step: out of range"):
        scanlab.nonlinear_recurrence(GUARDED, x, h0, params=0.5, method=method, device=cuda_device)
    with pytest.raises(TypeError, match="params is passed to the cell's step"):
        scanlab.nonlinear_recurrence(
            GUARDED, x, h0, params={"scale": 0.5}, method=method, device=cuda_device
        )
    with pytest.raises(ValueError, match=r"does not write h_out\[1\]"):
        scanlab.nonlinear_recurrence(
            scanlab.cell(skipping_step, structure="diagonal"), x, h0, params=1, method=method,
            device=cuda_device,
        )  # fmt: skip
