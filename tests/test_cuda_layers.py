"""The layers of ``scanlab.nn`` on GPU arrays (``scanlab.cuda.layer_gates``, ``one_hot``,
``elementwise`` and the products of ``input_projection``) against the same layers on the
host: outputs and input gradients stay device arrays, the weights' gradients are host arrays.

Run in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU.
"""

import importlib.util
import pathlib

import numpy as np
import pytest
from conftest import CUDA_MODULE_MARKS, fast_thread_switching
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import cuda

from scanlab.cpu import layer_gates as cpu_layer_gates
from scanlab.cuda import layer_gates, one_hot
from scanlab.nn import GILR, GILRLSTM, Linear, OneHot

pytestmark = CUDA_MODULE_MARKS


@pytest.fixture(autouse=True)
def fast_simulator(small_chunks):
    """Blocks of 8 threads (the simulator runs each thread in Python), scans of small chunks."""
    with fast_thread_switching():
        yield


def on_gpu_as(array: np.ndarray, form: str):
    """``array`` as a host array, a C-contiguous device array, or a strided one."""
    if form == "host":
        return array.copy()
    if form == "strided":  # every other element of the last axis
        return cuda.to_device(np.repeat(array, 2, axis=-1))[..., ::2]
    return cuda.to_device(array)


def host(value) -> np.ndarray:
    assert hasattr(value, "copy_to_host"), f"{type(value).__name__} is not a device array"
    return value.copy_to_host()


@settings(max_examples=6, deadline=None)
@given(
    kind=st.sampled_from([GILR, GILRLSTM]),
    dtype=st.sampled_from([np.float32, np.float64]),
    length=st.sampled_from([0, 1, 2, 5]),
    batch=st.sampled_from([(), (3,), (2, 1)]),
    x_form=st.sampled_from(["contiguous", "strided", "one-hot", "host"]),
    h0_form=st.sampled_from([None, "full", "broadcast"]),
    dy_form=st.sampled_from(["host", "contiguous"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_recurrent_layers_on_gpu_arrays_are_the_hosts(
    kind, dtype, length, batch, x_form, h0_form, dy_form, seed
):
    """GILR and GILRLSTM given GPU inputs (``x`` dense in float64 for a layer of ``dtype``,
    strided, a OneHot of GPU indices, or a host ``x`` with a GPU ``h0``), then host or GPU
    ``dy``: every result equals the host layer's and the inputs are untouched."""
    rng = np.random.default_rng(seed)
    size, hidden = 4, 3
    layer = kind(size, hidden, seed=seed % 100, dtype=dtype)
    layer.params["bias"][...] = rng.standard_normal(layer.params["bias"].shape)
    if x_form == "one-hot":
        x = OneHot(
            rng.integers(0, size, (length, *batch)).astype(np.uint8),
            size,
            values=rng.choice([-1.0, 2.0], (length, *batch[:1], *(1,) * len(batch[1:]))),
        )
        x_gpu = x.to_device()
    else:
        x = rng.standard_normal((length, *batch, size))
        x_gpu = on_gpu_as(x, x_form)
    h0 = {
        None: None,
        "full": rng.standard_normal((*batch, hidden)),
        "broadcast": rng.standard_normal(hidden),
    }[h0_form]
    if x_form == "host" and h0 is None:
        h0 = np.zeros(hidden)
    h0_gpu = None if h0 is None else cuda.to_device(h0)
    y, cache = layer.forward(x, h0)
    dy = rng.standard_normal(y.shape)
    dx, grads, dh0 = layer.backward(cache, dy, return_dh0=True)

    y_gpu, cache_gpu = layer.forward(x_gpu, h0_gpu)
    dx_gpu, grads_gpu, dh0_gpu = layer.backward(cache_gpu, on_gpu_as(dy, dy_form), return_dh0=True)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    values = [(y_gpu, y), (dh0_gpu, dh0)] + ([] if dx is None else [(dx_gpu, dx)])
    for value, wanted in values:
        assert value.dtype == dtype and value.shape == wanted.shape
        np.testing.assert_allclose(host(value), wanted, rtol=tolerance, atol=tolerance)
    assert (dx is None) == (dx_gpu is None) == (x_form == "one-hot")
    assert list(grads_gpu) == list(grads)
    for name, wanted in grads.items():
        value = grads_gpu[name]
        assert isinstance(value, np.ndarray) and value.dtype == dtype
        np.testing.assert_allclose(value, wanted, rtol=10 * tolerance, atol=10 * tolerance)
    if x_form in ("contiguous", "strided"):
        np.testing.assert_array_equal(host(x_gpu), x)
    if h0_gpu is not None:
        np.testing.assert_array_equal(host(h0_gpu), h0)


@pytest.mark.parametrize("embedding", [False, True])
def test_a_linear_layer_on_gpu_arrays_is_the_hosts(embedding):
    """A dense layer on a GPU ``x`` of one vector or a batch, and as an embedding of GPU
    indices."""
    rng = np.random.default_rng(3)
    layer = Linear(5, 2, seed=1, dtype=np.float64)
    layer.params["bias"][...] = [0.5, -1.0]
    shapes = [(7,)] if embedding else [(5,), (3, 2, 5)]
    for shape in shapes:
        if embedding:
            x = OneHot(rng.integers(0, 5, shape), 5)
            x_gpu = x.to_device()
        else:
            x = rng.standard_normal(shape)
            x_gpu = cuda.to_device(x)
        y, cache = layer.forward(x)
        dy = rng.standard_normal(y.shape)
        dx, grads = layer.backward(cache, dy)
        y_gpu, cache_gpu = layer.forward(x_gpu)
        dx_gpu, grads_gpu = layer.backward(cache_gpu, cuda.to_device(dy))
        np.testing.assert_allclose(host(y_gpu), y, rtol=1e-12, atol=1e-12)
        if embedding:
            assert dx is None and dx_gpu is None
        else:
            np.testing.assert_allclose(host(dx_gpu), dx, rtol=1e-12, atol=1e-12)
        for name, wanted in grads.items():
            np.testing.assert_allclose(grads_gpu[name], wanted, rtol=1e-12, atol=1e-12)


def test_one_hot_vectors_of_gpu_indices():
    """GPU indices (any integer dtype, GPU or host values) are checked on the GPU, made dense
    there, and copied there by ``to_device``; bad ones raise as host ones do."""
    indices = np.array([[3, 0], [1, 1]], np.int32)
    values = np.array([[-1.0], [2.0]])
    expected = OneHot(indices, 4, values=values).dense(np.float64)
    for given_values in (values, cuda.to_device(values)):
        vectors = OneHot(cuda.to_device(indices), 4, values=given_values)
        assert vectors.on_gpu and vectors.shape == (2, 2, 4)
        np.testing.assert_array_equal(host(vectors.dense(np.float64)), expected)
    copied = OneHot(indices.astype(np.uint8), 4).to_device()
    np.testing.assert_array_equal(host(copied.indices), indices)
    np.testing.assert_array_equal(host(copied.dense()), OneHot(indices, 4).dense())
    with pytest.raises(ValueError, match=r"\[0, 3\).* 0 to 3"):
        OneHot(cuda.to_device(indices), 3)
    with pytest.raises(ValueError, match=r"from -1 to 1"):
        OneHot(cuda.to_device(np.array([-1, 1])), 3)
    with pytest.raises(TypeError, match="integers"):
        OneHot(cuda.to_device(np.array([1.0])), 3)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        OneHot(cuda.to_device(np.array([0, 1])), 3, values=cuda.to_device(np.ones(3)))


@settings(max_examples=3, deadline=None)
@given(
    count=st.sampled_from([1, 7, 20]),
    size=st.sampled_from([1, 3, 130]),
    columns=st.sampled_from([1, 33]),
    seed=st.integers(0, 2**32 - 1),
)
def test_gathers_and_scatters_of_rows_are_numpys(monkeypatch, count, size, columns, seed):
    """The one-hot product and its pullback against NumPy, the scatter's rows split among
    several blocks (3 rows each) and its indices among tiles of 128 (``size`` 130)."""
    monkeypatch.setattr(one_hot, "SCATTER_ROWS", 3)
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, size, count).astype(np.int64)
    indices[: min(count, 3)] = size - 1  # collisions, and the last tile's last index
    values, table = rng.standard_normal(count), rng.standard_normal((size, columns))
    rows = rng.standard_normal((count, columns))
    out = cuda.to_device(rows)
    one_hot.gather_rows(cuda.to_device(indices), cuda.to_device(values), cuda.to_device(table), out)
    np.testing.assert_allclose(host(out), rows + values[:, None] * table[indices], rtol=1e-12)
    expected = np.zeros((size, columns))
    np.add.at(expected, indices, values[:, None] * rows)
    scattered = one_hot.scattered_rows(
        cuda.to_device(indices), cuda.to_device(values), cuda.to_device(rows), size
    )
    np.testing.assert_allclose(scattered, expected, rtol=1e-12, atol=1e-12)


def test_the_long_dependency_example_trains_on_the_gpu_as_on_the_cpu():
    """``examples/long_dependency.py --device cuda``: one minibatch's loss and gradients with
    the whole step on the GPU are the CPU's."""
    script = pathlib.Path(__file__).parents[1] / "examples" / "long_dependency.py"
    spec = importlib.util.spec_from_file_location("long_dependency", script)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model = example.Model(hidden=3, forget_bias=2.0, seed=0)
    x, labels = example.minibatch(np.random.default_rng(1), 6, 2)
    loss, accuracy, grads = model.loss_and_gradients(x, labels, "cpu")
    loss_gpu, accuracy_gpu, grads_gpu = model.loss_and_gradients(x, labels, "cuda")
    assert loss_gpu == pytest.approx(loss, rel=1e-5) and accuracy_gpu == accuracy
    for layer_grads, layer_grads_gpu in zip(grads, grads_gpu, strict=True):
        for name, wanted in layer_grads.items():
            assert isinstance(layer_grads_gpu[name], np.ndarray)
            np.testing.assert_allclose(layer_grads_gpu[name], wanted, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_gates_of_extreme_pre_activations_are_the_cpus(dtype):
    """Pre-activations that overflow ``exp`` (gates exactly 0 or 1), subnormals, Inf and NaN:
    the GPU's gates and their gradients are the CPU twin's (the same arithmetic), NaN where
    they are NaN."""
    extremes = np.array([-1e30, -800.0, -89.0, -1e-40, 0.0, 1e-40, 89.0, 800.0, 1e30])
    special = np.array([-np.inf, np.inf, np.nan])
    column = np.concatenate([extremes, special]).astype(dtype)
    pre = np.stack([np.roll(column, shift) for shift in range(4)], axis=1)  # (12, 4): n = 1
    gradients = np.random.default_rng(0).standard_normal((12, 3)).astype(dtype)
    gilr = cpu_layer_gates.gilr_gates(pre[:, :2])
    lstm = cpu_layer_gates.lstm_gates(pre)
    launches = [
        ("gilr_gates", (pre[:, :2],)),
        ("lstm_gates", (pre,)),
        ("gilr_gradients", (gradients[:, :1], gradients[:, 1:2], *gilr[:2])),
        (
            "lstm_gradients",
            (gradients[:, :1], gradients[:, 1:2], gradients[:, 2:], *lstm[:4], gilr[2]),
        ),
    ]
    tolerance = {"rtol": 4 * np.finfo(dtype).eps, "atol": np.finfo(dtype).tiny}
    for name, operands in launches:
        expected = getattr(cpu_layer_gates, name)(*operands)
        got = getattr(layer_gates, name)(
            *(cuda.to_device(np.ascontiguousarray(v)) for v in operands)
        )
        for value, wanted in zip(
            *((got, expected) if isinstance(got, tuple) else ((got,), (expected,))), strict=True
        ):
            assert value.dtype == dtype
            np.testing.assert_allclose(host(value), wanted, **tolerance)
