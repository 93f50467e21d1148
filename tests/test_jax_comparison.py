"""The comparison with JAX's ``lax.scan`` (``benchmarks/nonlinear.py --jax``): its JAX twins
compute scanlab's cells, a wrong twin is caught, and without JAX it measures nothing."""

import sys

import numpy as np
import pytest

import scanlab
from scanlab.bench import jax_comparison

#: Tiny sizes: steps, state size and inputs per step.
SIZES = (64, 4, 2)


@pytest.fixture
def jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", jax_comparison.DTYPES)
@pytest.mark.parametrize("name", jax_comparison.CELL_NAMES)
def test_the_jax_twins_compute_scanlabs_cells(jax, name, dtype, batch):
    problem = jax_comparison.make_problem(name, dtype, batch, *SIZES)
    parameters = {key: jax.numpy.asarray(value) for key, value in problem.jax_parameters.items()}
    jax_states = np.asarray(
        jax_comparison.jax_solver(name)(parameters, jax.numpy.asarray(problem.x), problem.h0)
    )
    states = scanlab.nonlinear_recurrence(
        problem.cell, problem.x, problem.h0, params=problem.params
    )
    assert jax_states.dtype == states.dtype == dtype
    assert jax_states.shape == states.shape == (SIZES[0], *problem.h0.shape)
    np.testing.assert_allclose(
        jax_states, states, rtol=0, atol=jax_comparison.tolerance(dtype, states)
    )
    assert np.ptp(states) > 0.1  # the states move: the comparison is not of constants


def test_a_row_is_timed_and_checked(jax):
    row = jax_comparison.measure_row("ParaLSTM", np.float32, 3, *SIZES, repeats=1)
    assert row["n"] == 2 * SIZES[1] and row["batch"] == 3 and row["dtype"] == "float32"
    assert row["JAX / auto"] == pytest.approx(row["JAX ms"] / row["auto ms"])
    assert 0 <= row["max abs(auto - JAX)"] <= 1e-3


def test_a_wrong_jax_twin_fails_the_row(jax, monkeypatch):
    steps = jax_comparison.jax_steps()
    steps["tanh"] = lambda parameters, h, x_t: jax.numpy.tanh(parameters["weights"] * h - x_t)
    monkeypatch.setattr(jax_comparison, "jax_steps", lambda: steps)
    with pytest.raises(AssertionError, match="scanlab and JAX differ"):
        jax_comparison.measure_row("tanh", np.float64, 1, *SIZES, repeats=1)


def test_without_jax_no_row_is_measured(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax raises ImportError
    assert jax_comparison.jax_table(quick=True, show_progress=False) == []
    assert "JAX is not installed" in jax_comparison.jax_notes()
