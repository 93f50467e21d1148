"""The built-in cells' pullbacks on the GPU (``scanlab.cuda.cell_pullback`` and the products of
``scanlab.cuda.input_projection``) against their CPU twins: every gradient of a VJP whose
adjoint is solved on the GPU is computed there, and the Newton layers run on GPU arrays.

Run in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU.
"""

import numpy as np
import pytest
from conftest import CUDA_MODULE_MARKS, fast_thread_switching
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import cuda

import scanlab
from scanlab.cuda import cell_pullback, input_projection
from scanlab.nn import ParaLSTMLayer

pytestmark = CUDA_MODULE_MARKS

CELLS = {
    "ParaGRU": lambda: scanlab.cells.ParaGRU(4, 3, seed=0),
    "ParaLSTM heads=2": lambda: scanlab.cells.ParaLSTM(4, 2, seed=1, heads=2),
    "ElmanRNN": lambda: scanlab.cells.ElmanRNN(3, 2, seed=2),
}


@pytest.fixture(autouse=True, scope="module")
def fast_simulator():
    with fast_thread_switching():
        yield


@pytest.mark.parametrize(
    "name, dtype",
    [("ParaGRU", np.float32), ("ParaLSTM heads=2", np.float32), ("ElmanRNN", np.float64)],
)
def test_gpu_pullbacks_match_the_cpus(name, dtype):
    """``dx`` and ``dh0`` stay device arrays (``x``, broadcast along the batch, summed back),
    ``dparams`` host arrays equal to the CPU's (``input_weights``' zero outside the heads'
    blocks), the inputs untouched."""
    length, x_batch, h0_batch = 5, (1,), (2,)
    cell = CELLS[name]()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((length, *x_batch, cell.input_size)).astype(dtype)
    h0 = (0.3 * rng.standard_normal((*h0_batch, cell.state_size))).astype(dtype)
    h = scanlab.nonlinear_recurrence(cell, x, h0, method="sequential")
    g = rng.standard_normal(h.shape).astype(dtype)
    expected = scanlab.nonlinear_recurrence_vjp(cell, x, h0, h, g, device="cpu")
    given_values = [cuda.to_device(value) for value in (x, h0, h, g)]
    dx, dh0, dparams = scanlab.nonlinear_recurrence_vjp(cell, *given_values)
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    for value, wanted in zip((dx, dh0), expected[:2], strict=True):
        assert hasattr(value, "copy_to_host") and value.shape == wanted.shape
        np.testing.assert_allclose(value.copy_to_host(), wanted, rtol=tolerance, atol=tolerance)
    assert list(dparams) == list(expected[2])
    for parameter, wanted in expected[2].items():
        assert isinstance(dparams[parameter], np.ndarray) and dparams[parameter].dtype == dtype
        np.testing.assert_allclose(dparams[parameter], wanted, rtol=tolerance, atol=tolerance)
    for given_value, original in zip(given_values, (x, h0, h, g), strict=True):
        np.testing.assert_array_equal(given_value.copy_to_host(), original)


def test_gpu_pullback_of_host_arrays_is_the_cpus():
    """``device="cuda"`` with NumPy arrays, one sequence: the pullback on the GPU, every result
    on the host."""
    cell = scanlab.cells.ParaGRU(3, 2, seed=3)
    x = np.random.default_rng(6).standard_normal((6, 2))
    h = scanlab.nonlinear_recurrence(cell, x, None, method="sequential")
    g = np.ones_like(h)
    expected = scanlab.nonlinear_recurrence_vjp(cell, x, None, h, g, device="cpu")
    dx, dh0, dparams = scanlab.nonlinear_recurrence_vjp(cell, x, None, h, g, device="cuda")
    assert isinstance(dx, np.ndarray) and isinstance(dh0, np.ndarray)
    np.testing.assert_allclose(dx, expected[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dh0, expected[1], rtol=1e-12, atol=1e-12)
    for parameter, wanted in expected[2].items():
        np.testing.assert_allclose(dparams[parameter], wanted, rtol=1e-12, atol=1e-12)


def test_a_gpu_pullback_sums_each_channel_in_one_thread_at_most_once(monkeypatch):
    """More items than threads: every thread loops over items of one channel, and the sums of
    the recurrent weights' gradients add up (against the CPU kernel) whatever the split."""
    cell = scanlab.cells.ParaGRU(3, 1, seed=4)
    rng = np.random.default_rng(7)
    u = rng.standard_normal((9, 2, 9))
    states, adjoint = rng.standard_normal((2, 9, 2, 3))
    h0 = rng.standard_normal((2, 3))
    params = (cell.recurrent_weights,)
    expected = cell.projected_pullback(u, params, states, h0, adjoint)
    monkeypatch.setattr(cell_pullback, "MAX_THREADS", 6)  # 2 threads per channel, 9 items each
    d_inputs, sums = cell_pullback.pullback(
        cell.channel_pullback, u, params, states, h0, cuda.to_device(adjoint), 3
    )
    np.testing.assert_allclose(d_inputs.copy_to_host(), expected[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sums, expected[1][0], rtol=1e-12, atol=1e-12)


@settings(max_examples=8)
@given(
    count=st.sampled_from([1, 5, 33]),
    left=st.sampled_from([1, 4]),
    right=st.sampled_from([0, 1, 3]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_transposed_products_and_column_sums_are_numpys(count, left, right, dtype, seed):
    """``rows.T @ columns`` and ``rows.sum(0)`` summed over the rows on the GPU (the
    reduction's route under the simulator, CuPy's where it is installed on a GPU)."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((count, left)).astype(dtype)
    columns = rng.standard_normal((count, right)).astype(dtype)
    product = input_projection.transposed_product(cuda.to_device(rows), cuda.to_device(columns))
    sums = input_projection.column_sums(cuda.to_device(rows))
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert product.shape == (left, right) and product.dtype == dtype
    np.testing.assert_allclose(
        product, rows.T.astype(float) @ columns, rtol=tolerance, atol=tolerance
    )
    np.testing.assert_allclose(sums, rows.sum(axis=0, dtype=float), rtol=tolerance, atol=tolerance)


def test_a_newton_layer_runs_on_gpu_arrays():
    """ParaLSTMLayer (outputs every other state) on float64 GPU inputs, cast to its float32:
    ``y``, ``dx`` and ``dh0`` device arrays, equal to the host layer's, ``grads`` host arrays;
    shapes that do not fit raise as on the host."""
    layer = ParaLSTMLayer(3, 2, seed=0, method="newton")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    h0 = (0.1 * rng.standard_normal((1, 4))).astype(np.float32)
    y, cache = layer.forward(x, h0)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, grads, dh0 = layer.backward(cache, dy, return_dh0=True)
    y_gpu, cache_gpu = layer.forward(cuda.to_device(x.astype(np.float64)), cuda.to_device(h0))
    dx_gpu, grads_gpu, dh0_gpu = layer.backward(cache_gpu, cuda.to_device(dy), return_dh0=True)
    for value, wanted in ((y_gpu, y), (dx_gpu, dx), (dh0_gpu, dh0)):
        assert hasattr(value, "copy_to_host") and value.dtype == np.float32
        np.testing.assert_allclose(value.copy_to_host(), wanted, rtol=1e-4, atol=1e-5)
    for name, wanted in grads.items():
        np.testing.assert_allclose(grads_gpu[name], wanted, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="input_size=3"):
        layer.forward(cuda.to_device(np.ascontiguousarray(x[..., :2])))
    with pytest.raises(ValueError, match=r"h0 must broadcast to .*\(2, 4\)"):
        layer.forward(cuda.to_device(x), cuda.to_device(np.zeros((3, 4), np.float32)))
    with pytest.raises(ValueError, match="dy must have the forward output's shape"):
        layer.backward(cache_gpu, cuda.to_device(np.ascontiguousarray(dy[:, :1])))
