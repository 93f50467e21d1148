"""scanlab.dask against the in-memory solvers: uneven chunkings (chunks of one step, one chunk),
reverse, axes, batches, dtypes, NaN, h0 as NumPy or Dask, both strategies of the nonlinear
recurrence, errors, and a real distributed cluster."""

import doctest
import importlib
import os
import pathlib
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from extremes import assert_like_the_loop, extreme_problems
from hypothesis import given, settings
from hypothesis import strategies as st

import scanlab
from scanlab import config
from scanlab import math as smath

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
scanlab_dask = pytest.importorskip("scanlab.dask")


def chunking(draw, length):
    """Uneven chunk lengths summing to ``length``: chunks of one step, and empty ones anywhere."""
    sizes = []
    while sum(sizes) < length:
        sizes.append(min(draw(st.sampled_from([1, 2, 3, 5, 8, 0])), length - sum(sizes)))
    return tuple(sizes) + draw(st.sampled_from([(), (0,)])) or (0,)


@st.composite
def problems(draw, matrices=False):
    length = draw(st.sampled_from([1, 2, 7, 13]))
    batch = draw(st.sampled_from([(), (3,), (2, 2)]))
    axis = draw(st.integers(0, len(batch)))
    leading = batch[:axis] + (length,) + batch[axis:]
    time_chunks = draw(st.sampled_from([chunking(draw, length), (length,)]))
    chunks = tuple(time_chunks if i == axis else 1 for i in range(len(leading)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    state = (draw(st.sampled_from([1, 2, 3])),) if matrices else ()
    coefficient_shape = draw(st.sampled_from([leading, ()])) + state * 2
    scale = 0.9 / np.sqrt(state[0]) if matrices else 0.9
    a = rng.uniform(-scale, scale, coefficient_shape).astype(dtype)
    b = rng.standard_normal(leading + state).astype(dtype)
    rest = batch + state
    h0_shape = draw(st.sampled_from([None, rest, (1,) * len(rest)]))
    h0 = None if h0_shape is None else rng.standard_normal(h0_shape).astype(dtype)
    reverse = draw(st.booleans())
    method = draw(st.sampled_from(["sequential", "blelloch"]))
    return a, b, h0, axis, reverse, chunks + tuple(-1 for _ in state), method


@settings(max_examples=20, deadline=None)
@given(problem=problems())
def test_elementwise_matches_in_memory(problem):
    a, b, h0, axis, reverse, chunks, method = problem
    h = scanlab_dask.linear_recurrence(
        a, da.from_array(b, chunks), h0, axis=axis, reverse=reverse, method=method
    )
    assert isinstance(h, da.Array) and h.dtype == b.dtype
    expected = scanlab.linear_recurrence(a, b, h0, axis=axis, reverse=reverse)
    np.testing.assert_allclose(h.compute(), expected, rtol=1e-5, atol=1e-5)


@settings(max_examples=12, deadline=None)
@given(problem=problems(matrices=True))
def test_matrices_match_in_memory(problem):
    A, b, h0, axis, reverse, chunks, method = problem
    h = scanlab_dask.linear_recurrence_matrix(
        da.from_array(A), da.from_array(b, chunks), None if h0 is None else da.from_array(h0),
        axis=axis, reverse=reverse, method=method,
    )  # fmt: skip
    expected = scanlab.linear_recurrence_matrix(A, b, h0, axis=axis, reverse=reverse)
    np.testing.assert_allclose(h.compute(), expected, rtol=1e-5, atol=1e-5)


def test_nan_lands_where_the_loop_puts_it_and_chunks_are_kept():
    b = np.ones((10, 2))
    b[4, 0] = np.nan
    h = scanlab_dask.linear_recurrence(0.5, da.from_array(b, ((3, 1, 6), (1, 1))))
    assert h.chunks == ((3, 1, 6), (1, 1))
    expected = scanlab.linear_recurrence(0.5, b)
    np.testing.assert_array_equal(np.isnan(h.compute()), np.isnan(expected))
    np.testing.assert_allclose(h.compute()[:, 1], expected[:, 1])


def test_the_tree_over_many_chunks():
    b = da.from_array(np.random.default_rng(4).standard_normal(300), chunks=3)  # 100 chunks
    h = scanlab_dask.linear_recurrence(0.9, b, method="blelloch")
    names = {key[0] if isinstance(key, tuple) else key for key in h.__dask_graph__()}
    assert any(name.startswith("compose_summaries") for name in names)
    np.testing.assert_allclose(h.compute(), scanlab.linear_recurrence(0.9, b.compute()))


def elementwise_and_matrices(a, b, h0, chunks, method):
    """The chunked elementwise solve of ``(T, D)`` operands and the matrix one of the same
    recurrence (``a * I``, of 2 states), each with the loop's result and the loop's on absolute
    values (a bound of the terms that make each state)."""
    matrices = (a[..., None, None] * np.eye(2), np.stack([b, b], -1), np.stack([h0, h0], -1))
    chunked = (scanlab_dask.linear_recurrence, scanlab_dask.linear_recurrence_matrix)
    in_memory = (scanlab.linear_recurrence, scanlab.linear_recurrence_matrix)
    results = []
    for (a_k, b_k, h0_k), solve, loop in zip(
        [(a, b, h0), matrices], chunked, in_memory, strict=True
    ):
        time_chunks = (chunks,) + (-1,) * (a_k.ndim - 1)
        h = solve(da.from_array(a_k, time_chunks), b_k, h0_k, method=method)
        with np.errstate(all="ignore"):
            terms = loop(np.abs(a_k), np.abs(b_k), np.abs(h0_k), method="sequential")
        results.append((h.compute(), loop(a_k, b_k, h0_k, method="sequential"), terms))
    return results


@pytest.mark.parametrize("method", ["sequential", "blelloch"])
def test_a_product_that_underflows_and_grows_back_keeps_the_state(method):
    """Issue 18: the chunk carries lost the state (0 from the second chunk on) where the loop
    comes back to 1e300 every fourth step."""
    a = np.tile([1e-200, 1e-200, 1e200, 1e200], 16)[:, None]
    for result, loop, _ in elementwise_and_matrices(
        a, np.zeros_like(a), np.array([1e300]), 5, method
    ):
        assert_like_the_loop(result, loop)
        np.testing.assert_allclose(result[3::4], 1e300, rtol=1e-12)


@pytest.mark.parametrize("method", ["sequential", "blelloch"])
def test_a_state_that_overflows_inside_a_chunk_stays_infinite(method):
    """Issue 18: the product over the first chunk is 1, but the loop's state overflowed at step
    1; the chunks after it were finite again."""
    a = np.ones((64, 1))
    a[1], a[2] = 1e10, 1e-10
    for result, loop, _ in elementwise_and_matrices(
        a, np.zeros_like(a), np.array([1e300]), 5, method
    ):
        assert not np.isfinite(loop[1:]).any()
        assert_like_the_loop(result, loop)


def test_chunk_products_are_kept_in_range():
    """A product that underflows and grows back is kept exactly, as mantissa and exponent, so
    that its carries need no rerun."""
    a = np.tile([1e-200, 1e-200, 1e200, 1e200], 16).reshape(32, 2)
    mantissa, exponent = scanlab_dask.linear.scaled_product(a)
    np.testing.assert_allclose(np.ldexp(mantissa, exponent), [1.0, 1.0], rtol=1e-12)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@settings(max_examples=40, deadline=None)
@given(
    problem=extreme_problems(lengths=(1, 30)),
    method=st.sampled_from(["sequential", "blelloch"]),
    data=st.data(),
)
def test_chunk_carries_match_the_loop_on_extreme_values(problem, method, data):
    """Products that underflow, overflow and come back, NaN and Inf, over uneven chunks (empty
    ones too): the loop's result in the same dtype, within rounding of the terms that make it."""
    a, b, h0 = problem
    chunks = chunking(data.draw, len(a))
    for result, loop, terms in elementwise_and_matrices(a, b, h0, chunks, method):
        assert_like_the_loop(result, loop, terms)


@pytest.mark.parametrize("reverse", [False, True])
def test_empty_chunks_pass_their_carry_through(reverse):
    """The reproduction: ``chunks=((3, 0, 4),)`` raised IndexError in every solver but Newton."""
    rng = np.random.default_rng(7)
    a, b = rng.uniform(-0.9, 0.9, (7, 3)), rng.standard_normal((7, 3))
    A = rng.uniform(-0.5, 0.5, (7, 2, 2))
    chunks = ((3, 0, 4), (1, 0, 2))
    h = scanlab_dask.linear_recurrence(a, da.from_array(b, chunks), b[0], reverse=reverse)
    assert h.chunks == chunks
    np.testing.assert_allclose(h.compute(), scanlab.linear_recurrence(a, b, b[0], reverse=reverse))
    h = scanlab_dask.linear_recurrence_matrix(
        A, da.from_array(b[:, :2], (chunks[0], 2)), b[0, :2], reverse=reverse, method="blelloch"
    )
    expected = scanlab.linear_recurrence_matrix(A, b[:, :2], b[0, :2], reverse=reverse)
    np.testing.assert_allclose(h.compute(), expected)
    x = da.from_array(rng.standard_normal((7, 3, 2)), chunks + (2,))
    h0 = rng.uniform(-1.0, 1.0, (3, 2))
    expected = scanlab.nonlinear_recurrence(GRU, x.compute(), h0, method="sequential")
    for strategy in ("carry", "newton"):
        h = scanlab_dask.nonlinear_recurrence(GRU, x, h0, strategy=strategy)
        assert h.chunks == x.chunks
        np.testing.assert_allclose(h.compute(), expected, rtol=1e-10, atol=1e-10)


def test_coefficients_as_the_only_dask_array_set_the_chunks():
    a = da.from_array(np.full((9, 2), 0.5), chunks=(4, 2))
    h = scanlab_dask.linear_recurrence(a, np.ones((9, 2)))
    assert h.chunks == ((4, 4, 1), (2,))
    np.testing.assert_allclose(h.compute(), scanlab.linear_recurrence(0.5, np.ones((9, 2))))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: scanlab_dask.linear_recurrence(np.ones(3), da.ones(4)), ValueError, "broadcast"),
        (lambda: scanlab_dask.linear_recurrence(0.5, da.ones(4), method="scan"), ValueError,
         "method"),
        (lambda: scanlab_dask.linear_recurrence(0.5, da.ones((4, 2)), np.ones(3)), ValueError,
         "h0"),
        (lambda: scanlab_dask.linear_recurrence_matrix(np.eye(3), da.ones((4, 2))), ValueError,
         r"\(\.\.\., n, n\)"),
        (lambda: scanlab_dask.linear_recurrence(0.5, da.ones(4, dtype=np.float16)), TypeError,
         "float16"),
    ],
)  # fmt: skip
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def damped_step(h_prev, x_t, rate, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = h_prev[i] + rate * (smath.tanh(x_t[i]) - h_prev[i] ** 3)


DAMPED = scanlab.cell(damped_step, structure="diagonal", state_size=2)


@settings(max_examples=10, deadline=None)
@given(
    length=st.sampled_from([1, 2, 9, 17]),
    batch=st.sampled_from([(), (3,), (2, 2)]),
    dtype=st.sampled_from([np.float32, np.float64]),
    with_h0=st.booleans(),
    data=st.data(),
)
def test_nonlinear_matches_in_memory(length, batch, dtype, with_h0, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((length, *batch, 2)).astype(dtype)
    h0 = rng.uniform(-1.0, 1.0, (*batch, 2)).astype(dtype) if with_h0 else None
    chunks = (chunking(data.draw, length),) + (1,) * len(batch) + (2,)
    x_dask = da.from_array(x, chunks)
    h = scanlab_dask.nonlinear_recurrence(DAMPED, x_dask, h0, params=0.1)
    assert h.dtype == dtype and h.chunks[:-1] == x_dask.chunks[:-1]
    expected = scanlab.nonlinear_recurrence(DAMPED, x, h0, params=0.1, method="sequential")
    np.testing.assert_allclose(h.compute(), expected, rtol=1e-5, atol=1e-6)


def test_nonlinear_chunks_use_the_given_method_and_broadcast_h0():
    gru = scanlab.cells.ParaGRU(3, 2, seed=0)
    x = np.random.default_rng(2).standard_normal((40, 2))
    h0 = np.random.default_rng(3).standard_normal((4, 3))  # batch (4,) from h0 alone
    h = scanlab_dask.nonlinear_recurrence(
        gru, da.from_array(x, (15, 2)), h0, method="newton", on_fail="raise"
    )
    assert h.shape == (40, 4, 3)
    np.testing.assert_allclose(h.compute(), scanlab.nonlinear_recurrence(gru, x, h0), atol=1e-9)
    with pytest.raises(TypeError, match="cell must be made by"):
        scanlab_dask.nonlinear_recurrence(damped_step, x, h0)
    with pytest.raises(ValueError, match="do not broadcast"):
        scanlab_dask.nonlinear_recurrence(gru, np.zeros((5, 3, 2)), h0)


#: Tolerances of Newton's states against the loop's: its default ``tol`` is 1e-5 and 1e-12.
NEWTON_TOLERANCES = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
#: The diagonal cell of the Newton tests (a built-in cell: its kernels compile once per dtype).
GRU = scanlab.cells.ParaGRU(2, 2, seed=1)


@settings(max_examples=8, deadline=None)
@given(
    length=st.sampled_from([1, 2, 9, 17]),
    batch=st.sampled_from([(), (3,), (2, 2)]),
    dtype=st.sampled_from([np.float32, np.float64]),
    dense=st.booleans(),
    method=st.sampled_from(["auto", "quasi"]),
    with_h0=st.booleans(),
    data=st.data(),
)
def test_newton_matches_in_memory(length, batch, dtype, dense, method, with_h0, data):
    """Diagonal (ParaGRU) and dense Jacobians (ElmanRNN), Newton and quasi-Newton."""
    cell = scanlab.cells.ElmanRNN(2, 2, seed=1) if dense else GRU
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((length, *batch, 2)).astype(dtype)
    h0 = rng.uniform(-1.0, 1.0, (*batch, 2)).astype(dtype) if with_h0 else None
    time_chunks = data.draw(st.sampled_from([chunking(data.draw, length), (length,)]))
    x_dask = da.from_array(x, (time_chunks,) + (1,) * len(batch) + (2,))
    h, info = scanlab_dask.nonlinear_recurrence(
        cell, x_dask, h0, method=method, strategy="newton", full_output=True
    )
    assert h.dtype == dtype and h.chunks[:-1] == x_dask.chunks[:-1]
    assert info.converged and info.residual <= info.tol and info.batch_converged.shape == batch
    expected = scanlab.nonlinear_recurrence(cell, x, h0, method="sequential")
    tolerance = NEWTON_TOLERANCES[np.dtype(dtype)]
    np.testing.assert_allclose(h.compute(), expected, rtol=tolerance, atol=tolerance)


def test_unknown_chunk_sizes_are_named():
    """Boolean indexing leaves a Dask array's chunk sizes unknown (NaN): named, with the fix."""
    unknown = da.ones(10, chunks=4)[da.arange(10, chunks=4) < 5]
    with pytest.raises(ValueError, match=r"b has unknown chunk sizes.*compute_chunk_sizes"):
        scanlab_dask.linear_recurrence(0.5, unknown)
    with pytest.raises(ValueError, match=r"x has unknown chunk sizes"):
        scanlab_dask.nonlinear_recurrence(
            GRU, da.ones((10, 1), chunks=(4, 1))[da.arange(10, chunks=4) < 5], None
        )


def raising_step(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        if x_t[0] > 5.0:
            raise ValueError("raising_step: input too large")
        h_out[i] = 0.5 * h_prev[i] + x_t[0]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes")
@pytest.mark.parametrize("strategy", ["carry", "newton"])
def test_a_steps_exception_says_which_chunk_it_came_from(strategy):
    """The in-memory solver notes the step and sequence within its chunk; the chunk's place in
    the whole array is noted too (a fuzzing run found only chunk-local ones)."""
    cell = scanlab.cell(raising_step, structure="diagonal")
    x = np.zeros((50, 3, 1))
    x[30, 2, 0] = 10.0
    with dask.config.set(scheduler="synchronous"), pytest.raises(ValueError) as error:
        scanlab_dask.nonlinear_recurrence(
            cell, da.from_array(x, (7, 1, 1)), np.zeros(2), strategy=strategy
        ).compute()
    notes = "".join(error.value.__notes__)
    assert "input too large" in str(error.value)
    assert "in the Dask chunk from step 28 and batch index (2,)" in notes


def test_newton_raises_when_it_does_not_converge():
    x = da.from_array(np.random.default_rng(5).standard_normal((30, 2, 2)), (7, 1, 2))
    with pytest.raises(scanlab.ConvergenceError, match="did not converge in 2 iterations") as error:
        scanlab_dask.nonlinear_recurrence(GRU, x, None, strategy="newton", max_iter=2)
    assert error.value.info.iterations == 2 and error.value.residual > error.value.info.tol
    assert not error.value.info.batch_converged.all()
    with_nan = x.compute()
    with_nan[12, 1, 0] = np.nan
    with pytest.raises(scanlab.ConvergenceError, match="non-finite") as error:
        scanlab_dask.nonlinear_recurrence(
            GRU, da.from_array(with_nan, (7, 1, 2)), None, strategy="newton"
        )
    assert np.isnan(error.value.residual) and error.value.info.iterations == 0


def test_auto_falls_back_to_carrying_where_newton_fails(monkeypatch):
    """Where "auto" chooses Newton (a large cluster) and it fails, the chunks pass the carry."""
    monkeypatch.setattr(scanlab_dask.nonlinear, "choose_strategy", lambda *arguments: "newton")
    x = np.random.default_rng(6).standard_normal((20, 2))
    x[5, 1] = np.nan
    h = scanlab_dask.nonlinear_recurrence(GRU, da.from_array(x, 6), None)
    expected = scanlab.nonlinear_recurrence(GRU, x, None, method="sequential")
    np.testing.assert_array_equal(np.isnan(h.compute()), np.isnan(expected))
    np.testing.assert_allclose(h.compute(), expected)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"strategy": "deer"}, ValueError, "strategy must be one of"),
        ({"strategy": None}, TypeError, "strategy must be a string"),
        ({"strategy": "newton", "method": "damped"}, ValueError, "strategy='carry'"),
        ({"strategy": "newton", "on_fail": "raise"}, TypeError, "on_fail"),
        ({"strategy": "newton", "tol": 0.0}, ValueError, "tol must be positive"),
        ({"strategy": "carry", "full_output": True}, ValueError, "strategy='newton'"),
    ],
)
def test_nonlinear_option_errors(options, error, match):
    with pytest.raises(error, match=match):
        scanlab_dask.nonlinear_recurrence(DAMPED, da.ones((4, 2)), None, params=0.1, **options)


def task_names(array) -> set:
    """The names of the tasks in a Dask array's graph."""
    return {pytest.importorskip("dask.utils").key_split(key) for key in array.__dask_graph__()}


def test_on_a_distributed_cluster_that_loses_a_worker(monkeypatch):
    """Worker processes: the cell of work, its arguments and results are serialised for real;
    "auto" runs Newton on enough worker threads, and its chunks stay where they are computed
    (work stealing, which may move them where it judges that pays, is off). Then the worker
    holding a chunk of Newton's states is killed: the tasks recomputing it were pinned to that
    worker and waited forever (the reproduction); they run on the other one now, and a
    regression fails at the timeout instead of hanging."""
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(1)
    a, b = rng.uniform(-0.9, 0.9, (50, 3)), rng.standard_normal((50, 3))
    x = da.from_array(b[:, :2], (7, 2))
    with dask.config.set({"distributed.scheduler.work-stealing": False}), distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        h = scanlab_dask.linear_recurrence(
            da.from_array(a, (7, 2)), da.from_array(b, (7, 2)), reverse=True
        ).compute()
        carried = scanlab_dask.nonlinear_recurrence(DAMPED, x, None, params=0.1)
        # 2 threads, 8 chunks:
        monkeypatch.setattr(config.cpu, "dask_auto_newton_min_threads", 2)
        newton = scanlab_dask.nonlinear_recurrence(DAMPED, x, None, params=0.1)
        moved = client.run(
            lambda dask_worker: [key for log in dask_worker.transfer_incoming_log
                                 for key in log["keys"]]
        )  # fmt: skip
        states = da.compute(carried, newton)
        (home, *_), *_ = client.who_has(client.futures_of(newton)).values()
        nanny = next(nanny for nanny in cluster.workers.values() if nanny.worker_address == home)
        nanny.close_gracefully()  # not restarted: the worker and its chunks are gone for good
        os.kill(nanny.pid, signal.SIGKILL)
        recomputed = client.compute(newton).result(timeout=30)
        assert home not in client.nthreads()
    assert "solve_nonlinear_chunk" in task_names(carried)
    assert "corrected_states" in task_names(newton)
    big = {"of", "first_guess", "linearise_chunk", "corrected_states"}
    assert not big & {pytest.importorskip("dask.utils").key_split(key) for keys in moved.values()
                      for key in keys}  # fmt: skip
    np.testing.assert_allclose(h, scanlab.linear_recurrence(a, b, reverse=True))
    expected = scanlab.nonlinear_recurrence(DAMPED, b[:, :2], None, params=0.1)
    np.testing.assert_allclose(states[0], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(states[1], expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(recomputed, states[1], rtol=1e-12, atol=1e-12)


def test_long_sequence_example_agrees_with_memory(tmp_path):
    script = pathlib.Path(__file__).parents[1] / "examples" / "dask_long_sequence.py"
    completed = subprocess.run(
        [sys.executable, str(script), "--steps", "30000", "--chunk", "7001", "--check",
         "--directory", str(tmp_path)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    assert "chunks=5 scheduler=threads" in completed.stdout, completed.stdout
    difference = re.search(r"max \|dask - in memory\| = (\S+)", completed.stdout)
    assert difference and float(difference.group(1)) < 1e-9, completed.stdout


@pytest.mark.parametrize("module", ["", ".linear", ".nonlinear"])
def test_docstring_examples_run(module):
    module = importlib.import_module("scanlab.dask" + module)
    failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0


def test_scanlab_imports_without_dask_and_says_what_to_install():
    code = (
        "import sys; sys.modules['dask'] = None\n"
        "import scanlab\n"
        "try:\n    import scanlab.dask\nexcept ImportError as error:\n    print(error)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "pip install 'scanlab[dask]'" in completed.stdout
