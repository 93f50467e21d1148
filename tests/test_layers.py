"""The NumPy layers against finite differences, Adam against a hand-written loop, the example."""

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanlab.cpu import layer_gates
from scanlab.nn import GILR, GILRLSTM, Adam, Linear, OneHot, ParaGRULayer, ParaLSTMLayer

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"


def forward(layer, x, h0=None, device="cpu"):
    """``layer.forward`` with the arguments its kind takes."""
    if isinstance(layer, Linear):
        return layer.forward(x)
    return layer.forward(x, h0, device=device)


def randomise(layer, rng):
    """Random parameters of order one (biases too), so no gate sits at a trivial value."""
    for value in layer.params.values():
        value[...] = rng.uniform(-1.5, 1.5, value.shape)


def numerical_gradient(loss, array, step=1e-6):
    """Central differences of ``loss()`` with respect to each entry of ``array`` (in place)."""
    gradient = np.zeros(array.shape)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + step
        above = loss()
        array[index] = saved - step
        below = loss()
        array[index] = saved
        gradient[index] = (above - below) / (2 * step)
    return gradient


def assert_gradients_match_finite_differences(layer, x, h0, rng):
    """Every gradient of ``backward`` (and ``dh0`` of a recurrent layer, also for ``h0=None``:
    the gradient at the zero state) against central differences of a random linear loss."""
    y, cache = forward(layer, x, h0)
    weights = rng.standard_normal(y.shape)
    if isinstance(layer, Linear):
        dx, grads = layer.backward(cache, weights)
    else:
        dx, grads, dh0 = layer.backward(cache, weights, return_dh0=True)
        state_size = layer.cell.state_size if hasattr(layer, "cell") else layer.hidden_size
        initial = np.zeros(y.shape[1:-1] + (state_size,)) if h0 is None else h0.copy()
        assert dh0.shape == initial.shape and dh0.dtype == y.dtype
        expected = numerical_gradient(
            lambda: float(np.sum(weights * forward(layer, x, initial)[0])), initial
        )
        np.testing.assert_allclose(dh0, expected, rtol=1e-6, atol=1e-7, err_msg="h0")

    def loss():
        return float(np.sum(weights * forward(layer, x, h0)[0]))

    assert sorted(grads) == sorted(layer.params)
    for name, value in layer.params.items():
        assert grads[name].shape == value.shape, name
        expected = numerical_gradient(loss, value)
        np.testing.assert_allclose(grads[name], expected, rtol=1e-6, atol=1e-7, err_msg=name)
    if isinstance(x, OneHot):
        assert dx is None
    else:
        np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-7)


@st.composite
def layer_problems(draw):
    """A float64 layer, an input (dense or one-hot, with or without signs) and maybe an h0."""
    kind = draw(st.sampled_from([GILR, GILRLSTM]))
    length = draw(st.integers(1, 5))
    batch = tuple(draw(st.lists(st.integers(1, 2), max_size=2)))
    input_size, hidden_size = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layer = kind(input_size, hidden_size, dtype=np.float64)
    randomise(layer, rng)
    inputs = draw(st.sampled_from(["dense", "one-hot", "signed one-hot"]))
    if inputs == "dense":
        x = rng.standard_normal((length, *batch, input_size))
    else:
        indices = rng.integers(0, input_size, (length, *batch))
        values = rng.choice([-1.0, 1.0], indices.shape) if inputs == "signed one-hot" else None
        x = OneHot(indices, input_size, values=values)
    h0_shape = draw(st.sampled_from([None, (hidden_size,), (*batch, hidden_size)]))
    h0 = None if h0_shape is None else rng.standard_normal(h0_shape)
    return layer, x, h0, rng


@settings(max_examples=10, deadline=None)
@given(layer_problems())
def test_recurrent_layers_match_finite_differences(problem):
    assert_gradients_match_finite_differences(*problem)


def test_linear_matches_finite_differences():
    rng = np.random.default_rng(0)
    layer = Linear(3, 2, dtype=np.float64)
    randomise(layer, rng)
    assert_gradients_match_finite_differences(layer, rng.standard_normal((4, 2, 3)), None, rng)


@pytest.mark.parametrize("kind", [GILR, GILRLSTM, Linear])
def test_one_hot_inputs_match_dense_ones(kind):
    rng = np.random.default_rng(1)
    layer = kind(5, 4, seed=2, dtype=np.float64)
    randomise(layer, rng)
    x = OneHot(rng.integers(0, 5, (30, 3), dtype=np.uint8), 5, values=rng.standard_normal(3))
    sparse, sparse_cache = forward(layer, x)
    dense, dense_cache = forward(layer, x.dense(np.float64))
    np.testing.assert_allclose(sparse, dense, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(dense.shape)
    _, sparse_grads = layer.backward(sparse_cache, dy)
    _, dense_grads = layer.backward(dense_cache, dy)
    for name in layer.params:
        np.testing.assert_allclose(sparse_grads[name], dense_grads[name], rtol=1e-12, atol=1e-12)


def test_gilr_is_the_gated_recurrence_step_by_step():
    rng = np.random.default_rng(3)
    layer = GILR(2, 3, seed=0, dtype=np.float64)
    randomise(layer, rng)
    x, h0 = rng.standard_normal((6, 2)), rng.standard_normal(3)
    weight, bias = layer.params["input_weight"], layer.params["bias"]
    state, expected = h0, []
    for step in x:
        pre = step @ weight + bias
        gate, candidate = 1 / (1 + np.exp(-pre[:3])), np.tanh(pre[3:])
        state = gate * state + (1 - gate) * candidate
        expected.append(state)
    np.testing.assert_allclose(layer.forward(x, h0)[0], expected, rtol=1e-12)


@pytest.mark.parametrize("kind", [GILR, GILRLSTM, Linear])
def test_float32_layers_compute_in_float32(kind):
    layer = kind(3, 2, seed=0)
    y, cache = forward(layer, np.ones((4, 1, 3)))
    dx, grads = layer.backward(cache, np.ones(y.shape))
    assert y.dtype == dx.dtype == np.float32
    assert all(value.dtype == np.float32 for value in (*layer.params.values(), *grads.values()))


@pytest.mark.parametrize("kind", [GILR, GILRLSTM, Linear, ParaGRULayer, ParaLSTMLayer])
def test_a_layer_without_inputs_is_one_fed_zeros(kind):
    empty, fed_zeros = kind(0, 3, seed=0, dtype=np.float64), kind(1, 3, seed=1, dtype=np.float64)
    for name, value in empty.params.items():
        if value.size:
            fed_zeros.params[name][...] = value
    y, cache = empty.forward(np.zeros((5, 2, 0)))
    expected, expected_cache = fed_zeros.forward(np.zeros((5, 2, 1)))
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    dy = np.random.default_rng(0).standard_normal(y.shape)
    dx, grads = empty.backward(cache, dy)[:2]
    _, expected_grads = fed_zeros.backward(expected_cache, dy)[:2]
    assert dx.shape == (5, 2, 0)
    for name, value in grads.items():
        assert value.shape == empty.params[name].shape
        if value.size:
            np.testing.assert_allclose(value, expected_grads[name], rtol=1e-9, atol=1e-12)


def test_seeds_make_layers_reproducible():
    first, second = GILRLSTM(3, 2, seed=7), GILRLSTM(3, 2, seed=7)
    for name, value in first.params.items():
        np.testing.assert_array_equal(value, second.params[name])
    np.testing.assert_array_equal(first.params["bias"], [1, 1, 0, 0, 0, 0, 0, 0])


def test_layers_run_their_scans_on_the_gpu(cuda_device):
    rng = np.random.default_rng(4)
    layer = GILRLSTM(3, 2, seed=0, dtype=np.float64)
    x, h0 = rng.standard_normal((40, 2, 3)), rng.standard_normal(2)
    dy = rng.standard_normal((40, 2, 2))
    results = []
    for device in ("cpu", cuda_device):
        y, cache = layer.forward(x, h0, device=device)
        results.append((y, *layer.backward(cache, dy, return_dh0=True)))
    (y_cpu, dx_cpu, grads_cpu, dh0_cpu), (y_gpu, dx_gpu, grads_gpu, dh0_gpu) = results
    np.testing.assert_allclose(y_gpu, y_cpu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx_gpu, dx_cpu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dh0_gpu, dh0_cpu, rtol=1e-10, atol=1e-12)
    for name, value in grads_cpu.items():
        np.testing.assert_allclose(grads_gpu[name], value, rtol=1e-10, atol=1e-12)


class GPUArray:
    """Any object that says it lives on the GPU."""

    __cuda_array_interface__ = {"shape": (4, 3), "typestr": "<f8", "data": (0, False), "version": 3}


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: GILR(3, 2).forward(np.ones((4, 2))), ValueError, r"input_size=3, got \(4, 2\)"),
        (lambda: GILR(3, 2).forward(np.ones(3)), ValueError, r"\(T, \*batch, input_size\)"),
        (lambda: GILR(3, 2).forward(np.ones((4, 3), int)), TypeError, "OneHot"),
        (lambda: GILRLSTM(3, 2).forward(OneHot([1], 4)), ValueError, "size 4.*input_size 3"),
        (lambda: GILR(3, 2).forward(OneHot(2, 3)), ValueError, "needs a time axis"),
        (lambda: GILR(3, 2).forward(np.ones((4, 5, 3)), h0=np.ones(3)), ValueError, r"\(5, 2\)"),
        (lambda: Linear(3, 2).forward(np.ones((4, 2))), ValueError, r"\(\.\.\., input_size\)"),
        (lambda: OneHot([0, 3], 3), ValueError, r"\[0, 3\).* 0 to 3"),
        (lambda: OneHot([0.0], 3), TypeError, "integers"),
        (lambda: OneHot([0, 1], 3, values=[1.0, 2.0, 3.0]), ValueError, r"\(3,\).*\(2,\)"),
        (lambda: GILR(3, 2, dtype=np.float16), TypeError, "float32 or float64"),
        (lambda: GILR(3, 2).forward(GPUArray(), device="cpu"), TypeError, "x live.*GPU.*'cpu'"),
        (
            lambda: Linear(3, 2).backward(Linear(3, 2).forward(np.ones((4, 3)))[1], GPUArray()),
            TypeError,
            "dy is a GPU array.*ran on the host",
        ),
        (
            lambda: GILR(3, 2).forward(np.ones((4, 3)), h0=np.full(2, 1 + 5j)),
            TypeError,
            "h0 has dtype complex128",
        ),
        (
            lambda: Linear(3, 2).backward(
                Linear(3, 2).forward(np.ones((4, 3)))[1], np.ones((4, 2), complex)
            ),
            TypeError,
            "dy has dtype complex128",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("kind", [GILR, GILRLSTM])
def test_output_gradient_of_the_wrong_shape_is_refused(kind):
    layer = kind(3, 2)
    _, cache = layer.forward(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"dy must have the forward output's shape \(4, 2\)"):
        layer.backward(cache, np.ones((4, 3)))


@pytest.mark.parametrize("kind", [ParaGRULayer, ParaLSTMLayer])
def test_newton_layers_match_finite_differences(kind):
    """ParaGRULayer/ParaLSTMLayer: forward by the loop (exact, for the differences), backward
    through nonlinear_recurrence_vjp; Newton's forward agrees and says it converged."""
    rng = np.random.default_rng(7)
    layer = kind(2, 3, seed=1, dtype=np.float64, method="sequential")
    x = rng.standard_normal((6, 2, 2))
    h0 = rng.uniform(-0.5, 0.5, (2, layer.cell.state_size))
    assert_gradients_match_finite_differences(layer, x, h0, rng)
    layer.method = "newton"
    y, cache = layer.forward(x, h0)
    assert cache.info.converged and cache.info.method == "newton"
    layer.method = "sequential"
    np.testing.assert_allclose(y, layer.forward(x, h0)[0], rtol=1e-10, atol=1e-10)
    single = kind(2, 3, seed=1, method="newton")
    y32, cache32 = single.forward(x.astype(np.float32), h0)
    dx32, grads32 = single.backward(cache32, np.ones_like(y32))
    assert y32.dtype == dx32.dtype == grads32["bias"].dtype == np.float32


@pytest.mark.parametrize("kind", [ParaGRULayer, ParaLSTMLayer])
def test_newton_layers_take_a_fixed_number_of_iterations(kind):
    """ParaRNN's training mode: ``max_iter=1, on_fail="accept"`` returns one Newton iterate
    (not converged on this sequence), which the backward pass differentiates at."""
    rng = np.random.default_rng(8)
    layer = kind(2, 3, seed=1, dtype=np.float64, method="newton", max_iter=1, on_fail="accept")
    x = rng.standard_normal((50, 2, 2))
    y, cache = layer.forward(x)
    assert cache.info.iterations == 1 and not cache.info.converged
    assert not cache.info.finished_sequentially.any() and cache.info.residual > cache.info.tol
    dx, grads = layer.backward(cache, np.ones_like(y))
    assert np.isfinite(dx).all() and all(np.isfinite(g).all() for g in grads.values())


def reference_adam(values, gradient, steps, lr, betas, eps, max_grad_norm=None):
    """Adam on a flat list of floats, one scalar at a time, as in Kingma & Ba's Algorithm 1."""
    beta1, beta2 = betas
    means, squares = [0.0] * len(values), [0.0] * len(values)
    for t in range(1, steps + 1):
        grads = gradient(values)
        norm = sum(g * g for g in grads) ** 0.5
        if max_grad_norm is not None and norm > max_grad_norm:
            grads = [g * max_grad_norm / norm for g in grads]
        for i, g in enumerate(grads):
            means[i] = beta1 * means[i] + (1 - beta1) * g
            squares[i] = beta2 * squares[i] + (1 - beta2) * g * g
            corrected_mean = means[i] / (1 - beta1**t)
            corrected_square = squares[i] / (1 - beta2**t)
            values[i] -= lr * corrected_mean / (corrected_square**0.5 + eps)
    return values


@pytest.mark.parametrize("max_grad_norm", [None, 0.5])
def test_adam_matches_a_hand_written_loop_on_a_quadratic(max_grad_norm):
    # L = sum(curvature * (p - target)^2) / 2 over two dicts of arrays.
    rng = np.random.default_rng(5)
    curvature, target = rng.uniform(0.1, 10, 7), rng.standard_normal(7)
    params = [{"w": rng.standard_normal((2, 2))}, {"v": rng.standard_normal(3)}]
    start = [*params[0]["w"].ravel(), *params[1]["v"]]
    settings = {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "max_grad_norm": max_grad_norm}
    optimiser = Adam(params, **settings)
    for _ in range(40):
        flat = np.concatenate([params[0]["w"].ravel(), params[1]["v"]])
        gradient = curvature * (flat - target)
        optimiser.step([{"w": gradient[:4].reshape(2, 2)}, {"v": gradient[4:]}])
    expected = reference_adam(
        start, lambda p: list(curvature * (np.array(p) - target)), 40, **settings
    )
    result = np.concatenate([params[0]["w"].ravel(), params[1]["v"]])
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)
    assert optimiser.steps == 40


def test_adam_returns_the_norm_before_clipping():
    params = {"w": np.zeros(2)}
    norm = Adam(params, lr=0.1, max_grad_norm=1.0).step({"w": np.array([3.0, 4.0])})
    assert norm == 5.0
    np.testing.assert_allclose(params["w"], [-0.1, -0.1])


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: Adam({"w": np.zeros(2)}).step({"v": np.zeros(2)}), ValueError, r"keys .*'w'"),
        (lambda: Adam({"w": np.zeros(2)}).step({"w": np.zeros(3)}), ValueError, r"\(2,\).*\(3,\)"),
        (lambda: Adam({"w": np.zeros(2)}, lr=0), ValueError, "lr must be positive"),
        (lambda: Adam({"w": np.zeros(2)}, betas=(0.9, 1.0)), ValueError, r"betas .*\[0, 1\)"),
        (lambda: Adam({"w": np.zeros(2)}, max_grad_norm=-1), ValueError, "max_grad_norm"),
        (lambda: Adam({"w": np.zeros(2, int)}), TypeError, "float ndarray"),
        (lambda: Adam(np.zeros(2)), TypeError, "dict of arrays"),
    ],
)
def test_adam_refuses_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_long_dependency_example_learns():
    completed = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "long_dependency.py"),
            "--length",
            "32",
            "--max-iterations",
            "300",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = re.search(r"^converged=(\w+) iterations=(\d+) seconds=\S+$", completed.stdout, re.M)
    assert summary, completed.stdout
    assert summary[1] == "True", completed.stdout


def test_long_dependency_presets_are_the_papers_settings_and_options_override_them():
    completed = subprocess.run(
        [
            sys.executable, str(EXAMPLES / "long_dependency.py"), "--preset", "paper-1m",
            "--length", "16", "--hidden", "4", "--max-iterations", "2",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert (
        "preset paper-1m: length 16, 128 symbols, 2 GILR-LSTM layers of 4 units, batch 8, "
        "device auto, lr 0.001, clip None, init 0.05, forget-gate bias 5.00"
    ) in completed.stdout
    assert "iterations=2 " in completed.stdout


def float64_sigmoid(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 3, 5000])  # 5000: several blocks of rows among threads
def test_the_gate_kernels_are_their_formulas(dtype, rows):
    """scanlab.cpu.layer_gates against the layers' formulas in float64, within a few rounding
    errors of ``dtype`` relative to each result's largest value (the sigmoid and tanh are
    scanlab.math's, accurate to a few ulp on their own), on random pre-activations and ones
    that overflow ``exp``, subnormals, Inf and NaN (NaN where the formulas give NaN)."""
    rng = np.random.default_rng(rows)
    special = [-1e30, -800.0, -89.0, -1e-40, 0.0, 1e-40, 89.0, 800.0, 1e30, -np.inf, np.inf, np.nan]
    values = 10 * rng.standard_normal(rows * 12)
    values[: len(special)] = special
    pre = values.reshape(rows * 3, 4).astype(dtype)  # n = 1
    upstream = rng.standard_normal((rows * 3, 3)).astype(dtype)
    exact = pre.astype(np.float64)
    with np.errstate(invalid="ignore"):
        g, j = float64_sigmoid(exact[:, :1]), np.tanh(exact[:, 1:2])
        f, i, o = (float64_sigmoid(exact[:, k : k + 1]) for k in range(3))
        z = np.tanh(exact[:, 3:])
    up = upstream.astype(np.float64)
    cells = up[:, :1] * 3
    # The gradients' kernels read gates in dtype: the formulas take the same rounded values.
    g, j, f, i, o, z, cells = (
        value.astype(dtype).astype(np.float64) for value in (g, j, f, i, o, z, cells)
    )
    cases = [
        (layer_gates.gilr_gates(pre[:, :2]), [g, j, (1 - g) * j]),
        (layer_gates.lstm_gates(pre), [f, i, o, z, i * z]),
        (
            layer_gates.gilr_gradients(
                upstream[:, :1], upstream[:, 1:2], g.astype(dtype), j.astype(dtype)
            ),
            [
                np.hstack(
                    [(up[:, :1] - up[:, 1:2] * j) * g * (1 - g), up[:, 1:2] * (1 - g) * (1 - j * j)]
                )
            ],
        ),
        (
            layer_gates.lstm_gradients(
                *(upstream[:, k : k + 1] for k in range(3)),
                *(value.astype(dtype) for value in (f, i, o, z, cells)),
            ),
            [
                np.hstack(
                    [
                        up[:, :1] * f * (1 - f),
                        up[:, 1:2] * z * i * (1 - i),
                        up[:, 2:] * cells * o * (1 - o),
                        up[:, 1:2] * i * (1 - z * z),
                    ]
                )
            ],
        ),
    ]
    eps = np.finfo(dtype).eps
    for got, expected in cases:
        got = got if isinstance(got, tuple) else (got,)
        for value, wanted in zip(got, expected, strict=True):
            assert value.dtype == dtype and value.shape == wanted.shape
            scale = np.abs(wanted[np.isfinite(wanted)]).max()
            np.testing.assert_allclose(value, wanted, rtol=16 * eps, atol=16 * eps * scale)
