"""The front ends on the GPU: ``scanlab.signal`` and ``scanlab.rl`` with ``device="cuda"``.

Run in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU. Each front end takes
NumPy arrays with ``device="cuda"`` (the result comes back as NumPy) and Numba device arrays
(the result stays on the GPU), and must give the CPU's references: scipy, pandas, the loops of
``tests/reference.py``.
"""

import numpy as np
import pandas as pd
import pytest
import reference
import scipy.signal
from conftest import CUDA_MODULE_MARKS, assert_close, fast_thread_switching
from numba import cuda

from scanlab._devices import on_gpu
from scanlab.rl import discounted_returns, gae
from scanlab.signal import ewm_mean, lfilter, sosfilt

pytestmark = CUDA_MODULE_MARKS

DTYPES = [np.float32, np.float64]
#: ``host``: NumPy arrays and ``device="cuda"``; ``device``: Numba device arrays, ``"auto"``.
FORMS = ["host", "device"]


@pytest.fixture(autouse=True)
def fast_simulator(small_chunks):
    """Blocks of 8 threads (the simulator runs each thread in Python) and the scans taken
    from 8 steps, so that the small problems cross several chunks."""
    with fast_thread_switching():
        yield


def passed(array, form):
    """``array`` as the test passes it: a NumPy array or a device array."""
    return array if form == "host" else cuda.to_device(np.ascontiguousarray(array))


def options(form) -> dict:
    return {"device": "cuda"} if form == "host" else {}


def returned(result, form) -> np.ndarray:
    """``result`` checked to be where ``form`` says (NumPy, or a GPU array), as NumPy."""
    if form == "host":
        assert isinstance(result, np.ndarray)
        return result
    assert on_gpu(result)
    return result.copy_to_host()


def filter_coefficients(dtype):
    return tuple(np.asarray(c, dtype) for c in scipy.signal.butter(3, 0.2))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lfilter(dtype, form):
    rng = np.random.default_rng(0)
    b, a = filter_coefficients(dtype)
    x = rng.standard_normal((21, 3)).astype(dtype)
    zi = rng.standard_normal((3, 1)).astype(dtype)  # broadcast over the channels
    y, zf = lfilter(b, a, passed(x, form), axis=0, zi=passed(zi, form), **options(form))
    expected, expected_zf = scipy.signal.lfilter(b, a, x, axis=0, zi=zi)
    assert_close(returned(y, form), expected.astype(dtype), dtype)
    assert_close(returned(zf, form), expected_zf.astype(dtype), dtype)
    y = lfilter(b, a, passed(x.T, form), **options(form))
    assert_close(returned(y, form), scipy.signal.lfilter(b, a, x.T).astype(dtype), dtype)


@pytest.mark.parametrize(
    ("b", "a"),
    [([0.5], [1.0, -0.9]), ([1.0, 2.0, 1.0], [1.0]), ([2.0], [1.0]), ([1.0, 0.5], [2.0, -0.5])],
    ids=["first-order", "fir", "gain", "unnormalised"],
)
def test_lfilter_orders_and_nan(b, a):
    """scipy's results, NaN where scipy has it: from the NaN sample on for IIR filters (the
    delay line keeps it), for ``len(b)`` outputs for FIR filters (scipy convolves)."""
    x = np.random.default_rng(1).standard_normal((2, 19))
    zi = np.ones((2, max(len(a), len(b)) - 1))
    y, zf = lfilter(b, a, x, zi=zi, device="cuda")
    expected, expected_zf = scipy.signal.lfilter(b, a, x, zi=zi)
    assert_close(y, expected)
    assert_close(zf, expected_zf)
    x[0, 5] = np.nan
    y, zf = lfilter(b, a, x, zi=zi, device="cuda")
    expected, expected_zf = scipy.signal.lfilter(b, a, x, zi=zi)
    assert np.isnan(y[0, 5:]).any()
    assert_close(y, expected)
    assert_close(zf, expected_zf)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(lfilter(b, a, x, zi=zi, device="cpu")[0]))


def test_lfilter_of_an_empty_signal_returns_the_initial_conditions():
    zi = cuda.to_device(np.arange(6.0).reshape(3, 2))
    y, zf = lfilter([1.0, 0.5, 0.2], [1.0, -0.5, 0.1], cuda.to_device(np.ones((3, 0))), zi=zi)
    assert y.shape == (3, 0)
    np.testing.assert_array_equal(zf.copy_to_host(), np.arange(6.0).reshape(3, 2))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sosfilt(dtype, form):
    rng = np.random.default_rng(2)
    sos = scipy.signal.butter(4, 0.1, output="sos").astype(dtype)
    x = rng.standard_normal((17, 3)).astype(dtype)
    zi = rng.standard_normal((2, 2, 3)).astype(dtype)
    y, zf = sosfilt(sos, passed(x, form), axis=0, zi=passed(zi, form), **options(form))
    expected, expected_zf = scipy.signal.sosfilt(sos, x, axis=0, zi=zi)
    assert_close(returned(y, form), expected.astype(dtype), dtype)
    assert_close(returned(zf, form), expected_zf.astype(dtype), dtype)
    y = sosfilt(sos, passed(x.T, form), **options(form))
    assert_close(returned(y, form), scipy.signal.sosfilt(sos, x.T).astype(dtype), dtype)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ewm_mean(dtype, form):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 23)).astype(dtype)
    x[rng.random(x.shape) < 0.2] = np.nan
    x[1, 4:9] = np.nan  # a gap
    x[2, 7] = np.inf  # missing too, as in pandas
    y = ewm_mean(passed(x, form), span=4, min_periods=2, axis=1, **options(form))
    expected = pd.DataFrame(x.T.astype(np.float64)).ewm(span=4, min_periods=2).mean()
    assert_close(returned(y, form), expected.to_numpy().T.astype(dtype), dtype)


@pytest.mark.parametrize("adjust", [True, False])
@pytest.mark.parametrize("ignore_na", [True, False])
@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_ewm_mean_options(adjust, ignore_na, alpha):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((19, 2))
    x[rng.random(x.shape) < 0.3] = np.nan
    given = {"alpha": alpha, "adjust": adjust, "ignore_na": ignore_na}
    y = ewm_mean(x, **given, device="cuda")
    expected = pd.DataFrame(x).ewm(**given).mean().to_numpy()
    assert_close(y, expected)


@pytest.mark.parametrize("adjust", [True, False])
def test_ewm_mean_with_times(adjust):
    """Uneven steps, ties and a gap of years (the weights underflow), missing values."""
    rng = np.random.default_rng(5)
    seconds = np.cumsum(rng.choice([0, 60, 3600, 86400 * 800], size=40))
    times = pd.DatetimeIndex(np.datetime64("2026-01-01", "s") + seconds.astype("m8[s]"))
    x = rng.standard_normal((40, 3))
    x[rng.random(x.shape) < 0.2] = np.nan
    options = {"halflife": "2h", "times": times, "adjust": adjust}
    y = ewm_mean(x, **options, device="cuda")
    assert_close(y, pd.DataFrame(x).ewm(**options).mean().to_numpy())


def test_ewm_mean_of_a_dataframe_is_one_on_the_gpu_too():
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [0, 1, 2, 3]}, index=list("wxyz"))
    result = ewm_mean(frame, span=3, device="cuda")
    pd.testing.assert_frame_equal(result, frame.ewm(span=3).mean())


def test_ewm_mean_long_gaps_keep_the_mean():
    """A gap over which the weights underflow to 0 (0.01 ** 296) leaves the mean as it was
    (pandas')."""
    x = np.full(300, np.nan)
    x[:3], x[-1] = [1.0, 2.0, 3.0], 5.0
    y = ewm_mean(x, alpha=0.99, device="cuda")
    assert_close(y, pd.Series(x).ewm(alpha=0.99).mean().to_numpy())


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_dones", [True, False], ids=["dones", "no-dones"])
def test_discounted_returns(dtype, form, with_dones):
    rng = np.random.default_rng(5)
    rewards = rng.standard_normal((3, 29)).astype(dtype)
    dones = rng.random((3, 29)) < 0.1 if with_dones else None
    bootstrap = rng.standard_normal(3).astype(dtype)
    operands = {"bootstrap": passed(bootstrap, form), "axis": 1}
    if with_dones:
        operands["dones"] = passed(dones, form)
    result = discounted_returns(passed(rewards, form), 0.9, **operands, **options(form))
    expected = reference.discounted_returns(
        rewards.astype(np.float64), 0.9, dones=dones, bootstrap=bootstrap, axis=1
    )
    assert_close(returned(result, form), expected.astype(dtype), dtype)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gae(dtype, form):
    rng = np.random.default_rng(6)
    rewards, values = rng.standard_normal((2, 3, 29)).astype(dtype)
    dones = (rng.random((3, 29)) < 0.1).astype(dtype)
    last_value = rng.standard_normal(3).astype(dtype)
    operands = [passed(array, form) for array in (rewards, values, dones, last_value)]
    advantages, returns = gae(*operands, gamma=0.99, lam=0.95, axis=1, **options(form))
    expected = reference.gae(
        *(array.astype(np.float64) for array in (rewards, values, dones, last_value)),
        gamma=0.99,
        lam=0.95,
        axis=1,
    )
    assert_close(returned(advantages, form), expected[0].astype(dtype), dtype)
    assert_close(returned(returns, form), expected[1].astype(dtype), dtype)


def test_rl_broadcasts_and_nan_flow_back_as_in_the_loop():
    rewards = np.ones((11, 2))
    rewards[6, 0] = np.nan
    dones = np.zeros((11, 1))  # broadcast over the environments
    dones[3] = 1
    result = discounted_returns(rewards, 0.5, dones=dones, device="cuda")
    assert_close(result, reference.discounted_returns(rewards, 0.5, dones=dones))
    advantages, returns = gae(rewards, 0.5, dones, 0.0, gamma=0.9, lam=0.8, device="cuda")
    dones = np.broadcast_to(dones, (11, 2))
    expected = reference.gae(rewards, np.full((11, 2), 0.5), dones, 0.0, gamma=0.9, lam=0.8)
    assert_close(advantages, expected[0])
    assert_close(returns, expected[1])


def test_empty_rollouts():
    result = discounted_returns(cuda.to_device(np.ones((0, 3))), 0.9, dones=np.zeros(3))
    assert result.shape == (0, 3)
    advantages, _ = gae(np.ones((0, 2)), 0.0, False, 0.0, gamma=0.9, lam=0.9, device="cuda")
    assert advantages.shape == (0, 2)


GPU_CALLS = {
    "lfilter": lambda x, **device: lfilter([1.0], [1.0, -0.5], x, **device),
    "sosfilt": lambda x, **device: sosfilt([[1.0, 0, 0, 1, -0.5, 0]], x, **device),
    "ewm_mean": lambda x, **device: ewm_mean(x, alpha=0.5, **device),
    "discounted_returns": lambda x, **device: discounted_returns(x, 0.9, dones=x, **device),
    "gae": lambda x, **device: gae(x, x, x, 0.0, gamma=0.9, lam=0.9, **device),
}


@pytest.mark.parametrize("call", GPU_CALLS.values(), ids=GPU_CALLS.keys())
def test_gpu_arrays_with_device_cpu_are_refused(call):
    with pytest.raises(TypeError, match="device='cpu'"):
        call(cuda.to_device(np.ones(4)), device="cpu")


def test_filter_coefficients_on_the_gpu_are_refused():
    with pytest.raises(TypeError, match="b is a GPU array"):
        lfilter(cuda.to_device(np.ones(2)), [1.0], np.ones(4))
