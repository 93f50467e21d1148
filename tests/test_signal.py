"""``scanlab.signal``: ``lfilter`` and ``sosfilt`` against scipy, ``ewm_mean`` against pandas."""

import contextlib
import datetime
import decimal
import inspect
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

from scanlab import config
from scanlab import signal as signal_module
from scanlab._arrays import read_only
from scanlab.cpu import auto as cpu_auto
from scanlab.cpu import filter_registers, filter_wavefront
from scanlab.cpu import iir as cpu_iir
from scanlab.signal import ewm_mean, lfilter, sosfilt

LENGTHS = [0, 1, 2, 3, 7, 31, 97, 251]
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
DECAYS = [
    {"com": 0.0},
    {"com": 3.3},
    {"span": 1.0},
    {"span": 20},
    {"halflife": 0.7},
    {"halflife": 50.0},
    {"alpha": 1.0},
    {"alpha": 0.05},
    # com == 1: pandas 3.0-3.1's weights after a gap differ (see pandas_ewm_mean).
    {"span": 3},
    {"alpha": 0.5},
]
#: Half-lives of ``times`` (pandas' timedelta-convertible kinds).
DURATIONS = ["90min", "3 days", datetime.timedelta(hours=5), np.timedelta64(2, "D")]


def moments(draw, length):
    """Increasing times for ``length`` steps, with ties and gaps of all sizes, in a drawn
    unit, sometimes with a time zone."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    gaps = rng.choice([0, 60, 3600, 86400, 86400 * 400], size=length) * rng.random(length)
    seconds = np.cumsum(gaps.astype(np.int64))
    unit = draw(st.sampled_from(["s", "us", "ns"]))
    times = pd.DatetimeIndex(np.datetime64("2026-01-01", unit) + seconds.astype("m8[s]"))
    return times.tz_localize("UTC").tz_convert("Europe/Paris") if draw(st.booleans()) else times


def pandas_ewm_mean(x, axis, **options):
    """pandas' answer: each channel a column of a DataFrame, time down the rows. pandas 3.0-3.1
    weighs an observation after a gap by 1 - (1 - alpha)**k instead of its documented alpha
    when adjust=False, com == 1 and no times (pandas-dev/pandas#66523): a centre of mass a
    few ulps from 1 asks it for the documented weights, which scanlab computes."""
    if not options.get("adjust", True) and options.get("times") is None:
        decay = {key: options.pop(key) for key in ("com", "span", "alpha") if key in options}
        com = {"com": lambda c: c, "span": lambda s: (s - 1) / 2, "alpha": lambda a: 1 / a - 1}
        for key, value in decay.items():
            options["com"] = com[key](value)
        if options.get("com") == 1:
            options["com"] = 1 + 2**-50
    moved = np.moveaxis(np.asarray(x, np.float64), axis, 0)
    frame = pd.DataFrame(moved.reshape(len(moved), int(np.prod(moved.shape[1:]))))
    means = frame.ewm(**options).mean().to_numpy()
    return np.moveaxis(means.reshape(moved.shape), 0, axis)


@st.composite
def series(draw):
    length = draw(st.one_of(st.sampled_from(LENGTHS), st.integers(0, 300)))
    batch = tuple(draw(st.lists(st.integers(1, 4), max_size=2)))
    axis = draw(st.integers(0, len(batch)))
    return {
        "shape": batch[:axis] + (length,) + batch[axis:],
        "axis": axis,
        "dtype": draw(st.sampled_from([np.float32, np.float64])),
        "missing": draw(st.sampled_from([0.0, 0.1, 0.6, 1.0])),
        "infinite": draw(st.sampled_from([0.0, 0.0, 0.02])),
        "decay": draw(st.sampled_from(DECAYS)),
        "times": moments(draw, length) if draw(st.integers(0, 3)) == 0 else None,
        "adjust": draw(st.booleans()),
        "ignore_na": draw(st.booleans()),
        "min_periods": draw(st.sampled_from([0, 1, 3])),
        "fortran": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def draw_values(problem):
    rng = np.random.default_rng(problem["seed"])
    x = rng.standard_normal(problem["shape"]) * 10.0
    x[rng.random(x.shape) < problem["missing"]] = np.nan
    x[rng.random(x.shape) < problem["infinite"]] = np.inf
    x[rng.random(x.shape) < problem["infinite"]] = -np.inf
    x = x.astype(problem["dtype"])
    return np.asfortranarray(x) if problem["fortran"] else x


def options_of(problem):
    decay = problem["decay"]
    if problem["times"] is not None:
        # A duration; com, span or alpha beside it only with adjust=True (pandas' rule).
        others = {} if "halflife" in decay or not problem["adjust"] else decay
        duration = DURATIONS[problem["seed"] % len(DURATIONS)]
        decay = {**others, "halflife": duration, "times": problem["times"]}
    return {
        **decay,
        "adjust": problem["adjust"],
        "ignore_na": problem["ignore_na"],
        "min_periods": problem["min_periods"],
    }


@given(problem=series())
def test_ewm_mean_is_pandas(problem):
    x = draw_values(problem)
    original = x.copy()
    result = ewm_mean(x, axis=problem["axis"], **options_of(problem))
    expected = pandas_ewm_mean(x, problem["axis"], **options_of(problem)).astype(x.dtype)
    assert result.dtype == x.dtype and result.shape == x.shape
    tolerance = 1e-6 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(result, expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(x, original)


def test_long_gaps_and_alpha_one():
    """Over a long gap the weights shrink to nothing as pandas' do, and the next observation
    outweighs the old mean as in pandas (weights once rescaled to stay normal kept the old
    mean's share: off by 7e-9 after this gap of 2000 steps at alpha = 0.3, 2e-8 with
    adjust=False); with alpha = 1 a missing step leaves no weight at all, and the mean
    carries on."""
    x = np.full((3000, 2), np.nan)
    x[0], x[2500], x[2600] = 1.0, 2.0, 3.0
    x[336, 1], x[2336, 1] = 1.0, 5.0
    for options in (
        {"alpha": 0.5},
        {"alpha": 1.0},
        {"alpha": 0.5, "adjust": False},
        {"alpha": 0.3},
        {"alpha": 0.3, "adjust": False},
    ):
        expected = pandas_ewm_mean(x, 0, **options)
        np.testing.assert_allclose(ewm_mean(x, **options), expected, rtol=1e-15)


@pytest.mark.parametrize("decay", [{"alpha": 0.5}, {"span": 3}, {"alpha": 0.4}])
def test_weights_after_a_gap_are_pandas_documented_ones(decay):
    """pandas documents the weights of x0 and x2 in [x0, nan, x2] with adjust=False as
    (1 - alpha)**2 and alpha (pandas 2 computes them; 3.0-3.1 not for alpha = 0.5)."""
    alpha = decay.get("alpha", 0.5)
    old, new = (1 - alpha) ** 2, alpha
    result = ewm_mean(np.array([1.0, np.nan, 4.0]), adjust=False, **decay)
    np.testing.assert_allclose(result, [1.0, 1.0, (old * 1.0 + new * 4.0) / (old + new)])


def test_a_series_and_integers():
    prices = pd.Series([1, 2, 3, 5, 8])
    result = ewm_mean(prices.to_numpy(), span=3)
    np.testing.assert_allclose(result, prices.ewm(span=3).mean().to_numpy(), rtol=1e-15)
    assert result.dtype == np.float64


def test_pandas_in_pandas_out():
    """A Series or DataFrame gives back its type with its labels, in float64 as pandas' own
    (float32 and integer columns, missing values, a date index, a name)."""
    index = pd.date_range("2026-01-01", periods=6, freq="D")
    prices = pd.Series([1.0, 2.5, np.nan, 4.0, np.nan, 6.0], index=index, name="close")
    pd.testing.assert_series_equal(
        ewm_mean(prices.astype(np.float32), span=3), prices.astype(np.float32).ewm(span=3).mean()
    )
    frame = pd.DataFrame(
        {"a": prices.astype(np.float32), "b": np.arange(6), "c": -prices}, index=index
    )
    options = {"halflife": 2.0, "ignore_na": True, "min_periods": 2}
    pd.testing.assert_frame_equal(ewm_mean(frame, **options), frame.ewm(**options).mean())
    assert type(ewm_mean(frame.to_numpy(), span=3)) is np.ndarray


FOUR_DAYS = pd.date_range("2026-12-01", periods=4, freq="D")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({}, ValueError, "Must pass one of comass, span, halflife, or alpha"),
        ({"com": 1, "span": 3}, ValueError, "mutually exclusive"),
        ({"com": -1}, ValueError, "comass must satisfy: comass >= 0"),
        ({"span": 0.5}, ValueError, "span must satisfy: span >= 1"),
        ({"halflife": 0}, ValueError, "halflife must satisfy: halflife > 0"),
        ({"alpha": 0}, ValueError, r"alpha must satisfy: 0 < alpha <= 1"),
        ({"alpha": 1.5}, ValueError, r"alpha must satisfy: 0 < alpha <= 1"),
        ({"alpha": "0.5"}, TypeError, "alpha must be a real number"),
        ({"alpha": 0.5, "min_periods": "2"}, TypeError, "min_periods must be an integer"),
        ({"com": 1j}, TypeError, "com must be a real number"),
        ({"halflife": "-1 days", "times": FOUR_DAYS}, ValueError, "positive duration"),
        ({"halflife": "0 days", "times": FOUR_DAYS}, ValueError, "positive duration"),
        ({"alpha": 0.5, "axis": 2}, np.exceptions.AxisError, "axis"),
        ({"halflife": "1 day"}, ValueError, "halflife can only be a timedelta convertible"),
        ({"halflife": 2.0, "times": FOUR_DAYS}, ValueError, "halflife must be a timedelta"),
        (
            {"halflife": "1D", "times": FOUR_DAYS.to_numpy().astype("i8")},
            ValueError,
            "times must be datetime64 dtype",
        ),
        ({"halflife": "1D", "times": FOUR_DAYS[:3]}, ValueError, "times must be the same length"),
        (
            {"halflife": "1D", "times": FOUR_DAYS.insert(1, pd.NaT)[:4]},
            ValueError,
            "Cannot convert NaT values to integer",
        ),
        (
            {"halflife": "1D", "times": FOUR_DAYS[::-1]},
            ValueError,
            r"times must be monotonically increasing; times\[1\] comes before times\[0\]",
        ),
        (
            {"halflife": "1D", "span": 3, "times": FOUR_DAYS, "adjust": False},
            NotImplementedError,
            "None of com, span, or alpha can be specified",
        ),
    ],
)
def test_errors_as_pandas_words_them(options, error, match):
    with pytest.raises(error, match=match):
        ewm_mean(np.ones((4, 2)), **options)


@pytest.mark.parametrize(
    "options",
    [
        {"alpha": 0.5, "min_periods": None},
        {"alpha": 0.5, "min_periods": -1},
        {"alpha": 0.5, "min_periods": 2.7},
        {"com": True, "min_periods": np.int64(2)},
        {"com": decimal.Decimal("0.5")},
        {"span": np.float32(3)},
    ],
)
def test_parameters_pandas_accepts_are_accepted(options):
    """What pandas takes (``min_periods`` None, negative or a float; a bool or Decimal
    decay), taken alike, with pandas' result."""
    frame = pd.DataFrame([[1.0, np.nan], [np.nan, 2.0], [3.0, 4.0], [5.0, np.nan]])
    expected = frame.ewm(**options).mean()
    pd.testing.assert_frame_equal(ewm_mean(frame, **options), expected)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.ones(3, complex), TypeError, "real numbers"),
        (np.array(["a"]), TypeError, "not numeric"),
        (np.float64(1.0), ValueError, "time axis"),
    ],
)
def test_inputs_it_cannot_take(x, error, match):
    with pytest.raises(error, match=match):
        ewm_mean(x, alpha=0.5)


@st.composite
def filters(draw):
    length = draw(st.one_of(st.sampled_from(LENGTHS), st.integers(0, 200)))
    # 8 channels and more, time first: filtered as they lie (cpu.iir's *_steps kernels)
    sizes = st.one_of(st.integers(1, 4), st.sampled_from([8, 9, 13]))
    batch = tuple(draw(st.lists(sizes, max_size=2)))
    axis = draw(st.integers(0, len(batch)))
    return {
        "shape": batch[:axis] + (length,) + batch[axis:],
        "axis": axis - len(batch) - 1 if draw(st.booleans()) else axis,
        "b_size": draw(st.integers(1, 6)),
        "a_size": draw(st.integers(1, 6)),
        "a0": draw(st.sampled_from([1.0, 2.5, -0.5])),
        "sections": draw(st.integers(1, 4)),
        "dtype": draw(st.sampled_from(DTYPES)),
        "with_zi": draw(st.booleans()),
        "broadcast_zi": draw(st.booleans()),
        "strided": draw(st.booleans()),
        "spoiled": draw(st.sampled_from([0.0, 0.0, 0.0, 0.03])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def signal_of(problem, rng):
    shape = problem["shape"]
    x = rng.standard_normal(shape)
    if np.dtype(problem["dtype"]).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    spoiled = rng.random(shape) < problem["spoiled"]  # NaN, Inf and -Inf samples
    x[spoiled] = rng.choice([np.nan, np.inf, -np.inf], size=spoiled.sum())
    x = x.astype(problem["dtype"])
    if problem["strided"]:
        x = np.repeat(x, 2, axis=problem["axis"])[
            (slice(None),) * (problem["axis"] % x.ndim) + (slice(None, None, 2),)
        ]
    return x


def initial_conditions(problem, rng, shape):
    if not problem["with_zi"]:
        return None
    if problem["broadcast_zi"]:
        axis = problem["axis"] % len(problem["shape"])
        shape = tuple(size if k == axis else 1 for k, size in enumerate(shape))
    return rng.standard_normal(shape).astype(problem["dtype"])


def assert_matches(result, expected, exact):
    if exact:
        np.testing.assert_array_equal(result, expected)
    else:
        tolerance = 1e-4 if result.dtype in (np.float32, np.complex64) else 1e-11
        np.testing.assert_allclose(result, expected, rtol=tolerance, atol=tolerance)


@given(problem=filters())
def test_lfilter_is_scipys(problem):
    rng = np.random.default_rng(problem["seed"])
    x = signal_of(problem, rng)
    b = rng.uniform(-1, 1, problem["b_size"])
    a = np.concatenate([[problem["a0"]], rng.uniform(-0.3, 0.3, problem["a_size"] - 1)])
    a *= problem["a0"] if problem["a_size"] > 1 else 1.0
    axis = problem["axis"]
    order = max(len(a), len(b)) - 1
    zi_shape = list(x.shape)
    zi_shape[axis] = order
    zi_shape = tuple(zi_shape)
    zi = initial_conditions(problem, rng, zi_shape) if order else None
    x_copy = x.copy()

    result = lfilter(b, a, x, axis=axis, zi=zi)
    if not x.shape[axis]:
        # scipy's FIR path cannot convolve an empty signal, and its IIR path returns a zf
        # that is not zi: nothing was filtered, so the final conditions are the initial ones.
        assert (result if zi is None else result[0]).shape == x.shape
        if zi is not None:
            np.testing.assert_array_equal(result[1], np.broadcast_to(zi, zi_shape))
        return
    expected = scipy.signal.lfilter(b, a, x, axis=axis, zi=zi)

    # IIR filters run scipy's arithmetic; scipy's FIR path is a convolution (another order), and
    # a first-order IIR filter of few series is a linear recurrence (multiply-adds contracted);
    # complex ones are scipy's bit for bit where a[0] is 1 (sosfilt's), in the last bit otherwise.
    first_order = len(a) == 2 and len(b) == 1
    exact = len(a) > 1 and not first_order and np.dtype(problem["dtype"]).kind == "f"
    if zi is None:
        assert result.dtype == expected.dtype and result.shape == x.shape
        assert_matches(result, expected, exact)
    else:
        assert_matches(result[0], expected[0], exact)
        assert result[1].shape == expected[1].shape
        assert_matches(result[1], expected[1], exact)
    np.testing.assert_array_equal(x, x_copy)


@given(problem=filters())
def test_sosfilt_is_scipys(problem):
    rng = np.random.default_rng(problem["seed"])
    x = signal_of(problem, rng)
    sos = np.concatenate(
        [
            scipy.signal.butter(2, rng.uniform(0.05, 0.9), output="sos")
            for _ in range(problem["sections"])
        ]
    )
    axis = problem["axis"]
    zi = None
    if problem["with_zi"]:
        state = list(x.shape)
        state[axis] = 2
        zi = rng.standard_normal((len(sos), *state)).astype(problem["dtype"])

    result = sosfilt(sos, x, axis=axis, zi=zi)
    if not x.size:  # scipy's sosfilt cannot reshape an empty signal
        assert (result if zi is None else result[0]).shape == x.shape
        return
    scipy_result = scipy.signal.sosfilt(sos, x, axis=axis, zi=zi)

    exact = np.dtype(problem["dtype"]).kind in "fc"
    if zi is None:
        assert result.dtype == scipy_result.dtype
        assert_matches(result, scipy_result, exact)
    else:
        assert_matches(result[0], scipy_result[0], exact)
        assert_matches(result[1], scipy_result[1], exact)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [8, 13, 17])
def test_time_major_signals_are_filtered_as_they_lie_bit_for_bit(channels, dtype, monkeypatch):
    """``axis=0`` of a C array with 8 channels or more: the ``*_steps`` kernels, scipy's
    arithmetic (bit for bit for real IIR filters), a partial group of channels, steps beyond one
    buffer, NaN and Inf samples, and final conditions."""
    calls = []
    for name in ("lfilter_steps", "sosfilt_steps", "fir_steps"):
        kernel = getattr(cpu_iir, name)
        monkeypatch.setattr(cpu_iir, name, lambda *args, k=kernel: calls.append(k) or k(*args))
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((3 * cpu_iir.STEPS + 5, channels))
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(x.shape)
    x[[7, 100], [2, 5]] = np.nan, np.inf
    x = x.astype(dtype)
    b, a = scipy.signal.butter(3, 0.2)
    sos = scipy.signal.butter(4, [0.1, 0.4], "bandpass", output="sos")
    exact = np.dtype(dtype).kind in "fc"
    zi = rng.standard_normal((3, channels)).astype(dtype)
    found, expected = lfilter(b, a, x, axis=0, zi=zi), scipy.signal.lfilter(b, a, x, 0, zi)
    for ours, theirs in zip(found, expected, strict=True):
        assert_matches(ours, theirs, exact)
    zi = rng.standard_normal((len(sos), 2, channels)).astype(dtype)
    found, expected = sosfilt(sos, x, axis=0, zi=zi), scipy.signal.sosfilt(sos, x, 0, zi)
    for ours, theirs in zip(found, expected, strict=True):
        assert_matches(ours, theirs, exact)
    fir = scipy.signal.firwin(9, 0.3)  # scipy convolves: another order of the sums
    zi = rng.standard_normal((8, channels)).astype(dtype)
    found, expected = (
        lfilter(fir, [1.0], x, axis=0, zi=zi),
        scipy.signal.lfilter(fir, [1], x, 0, zi),
    )
    for ours, theirs in zip(found, expected, strict=True):
        assert_matches(ours, theirs, exact=False)
    assert len(calls) >= 3  # the FIR kernel once per task


@pytest.mark.parametrize("threads", [1, 3, 5, 16])
def test_time_major_kernels_share_the_channels_among_any_number_of_threads(threads):
    """The ``*_steps`` kernels cut the groups of 8 channels into one run per thread: any thread
    count, more than there are groups included, gives scipy's results and final delays."""
    rng = np.random.default_rng(threads)
    channels = 37  # 5 groups of 8, the last one partial
    x = read_only(rng.standard_normal((2 * cpu_iir.STEPS + 3, channels)))
    out = np.empty_like(x)
    b, a = scipy.signal.butter(3, 0.2)
    zi = rng.standard_normal((3, channels))
    state = np.ascontiguousarray(zi.T)
    cpu_iir.lfilter_steps(read_only(b), read_only(a), x, state, out, threads)
    expected, final = scipy.signal.lfilter(b, a, x, axis=0, zi=zi)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(state, final.T)
    sos = scipy.signal.butter(6, 0.3, output="sos")
    zi = rng.standard_normal((len(sos), 2, channels))
    state = np.ascontiguousarray(zi.transpose(2, 0, 1).reshape(channels, -1))
    cpu_iir.sosfilt_steps(read_only(sos), x, state, out, threads)
    expected, final = scipy.signal.sosfilt(sos, x, axis=0, zi=zi)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(state, final.transpose(2, 0, 1).reshape(channels, -1))


def test_a_stream_filtered_in_pieces_is_the_whole():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 1000))
    sos = scipy.signal.butter(6, [0.1, 0.3], btype="band", output="sos")
    b, a = scipy.signal.butter(3, 0.2)
    whole_sos, whole_ba = sosfilt(sos, x), lfilter(b, a, x)
    zi_sos, zi_ba = np.zeros((len(sos), 3, 2)), np.zeros((3, len(a) - 1))
    pieces_sos, pieces_ba = [], []
    for piece in np.array_split(x, [1, 7, 500], axis=-1):
        y, zi_sos = sosfilt(sos, piece, zi=zi_sos)
        pieces_sos.append(y)
        y, zi_ba = lfilter(b, a, piece, zi=zi_ba)
        pieces_ba.append(y)
    np.testing.assert_array_equal(np.concatenate(pieces_sos, axis=-1), whole_sos)
    np.testing.assert_array_equal(np.concatenate(pieces_ba, axis=-1), whole_ba)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("rows", [1, 3, 7])
def test_few_series_keep_their_delays_in_registers_bit_for_bit(rows, axis, dtype, monkeypatch):
    """Fewer series than the lockstep kernels walk together are filtered one at a time with
    their delays in registers (``scanlab.cpu.filter_registers``, in sizes of powers of two),
    time last or time first as they lie: every order of a direct form up to the largest they
    take and one beyond it (the lockstep kernel), cascades of one section to one more than a
    vector's lanes (the few one after the other, more advanced together in vector lanes, in
    groups over blocks of steps beyond a vector's lanes; more than one block), scipy's outputs
    and final delays bit for bit, with NaN and Inf samples and an infinite delay."""
    ran = []
    for module, name in [
        (filter_registers, "lfilter_registers"),
        (filter_registers, "sosfilt_registers"),
        (filter_wavefront, "sosfilt_wavefront"),
    ]:
        kernel = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, k=kernel: ran.append(k) or k(*args))
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 300))
    if np.dtype(dtype).kind == "c":  # complex products as scipy's: the textbook formula
        x = x + 1j * rng.standard_normal(x.shape)
    x[0, [10, 50, 51]] = np.nan, np.inf, -np.inf
    x = x.astype(dtype)
    if axis == 0:
        x = np.ascontiguousarray(x.T)  # time first, channels contiguous
    twist = 1 + 0.5j if np.dtype(dtype).kind == "c" else 1  # complex numerators then
    filters = [
        ("lfilter", [(b * twist).astype(dtype), a.astype(dtype)], order)
        for order in range(1, filter_registers.MAX_DELAYS + 2)
        for b, a in [scipy.signal.butter(order, 0.1 * order)]
    ]
    filters.append(("lfilter", [np.array([0.3], dtype), np.array([1.0, -0.9], dtype)], 1))
    for count in range(1, filter_wavefront.WAVE_LANES + 2):  # more than a vector's lanes
        sos = scipy.signal.butter(2 * count, 0.2, output="sos") * np.array([twist] * 3 + [1] * 3)
        filters.append(("sosfilt", [sos.astype(dtype)], 2 * count))
    with np.errstate(invalid="ignore", over="ignore"):
        for function, coefficients, delays in filters:
            before = len(ran)
            shape = [rows, rows]  # x's shape, the time axis of the delays' length
            shape[axis] = delays if function == "lfilter" else 2
            shape = shape if function == "lfilter" else [delays // 2, *shape]
            zi = rng.standard_normal(shape).astype(dtype)
            zi[..., 0, -1] = np.inf
            ours = getattr(signal_module, function)(*coefficients, x, axis=axis, zi=zi)
            theirs = getattr(scipy.signal, function)(*coefficients, x, axis=axis, zi=zi)
            for found, expected in zip(ours, theirs, strict=True):
                assert found.dtype == expected.dtype == dtype
                np.testing.assert_array_equal(found, expected)
            in_registers = function == "sosfilt" or delays <= filter_registers.MAX_DELAYS
            assert (len(ran) > before) == in_registers


COMPLEX_AFTER_FASTMATH = """
import numpy as np, scipy.signal, scanlab
from scanlab.signal import lfilter
x = np.random.default_rng(1).standard_normal((2, 300, 2)) @ np.array([1, 1j])
scanlab.linear_recurrence(0.5 * x[0], x[1], method="sequential")  # contracted multiply-adds
b, a = scipy.signal.butter(4, 0.4)
ours, theirs = lfilter(b * (1 + 0.5j), a, x), scipy.signal.lfilter(b * (1 + 0.5j), a, x)
assert np.array_equal(ours, theirs), abs(ours - theirs).max()
"""


def test_complex_filters_stay_scipys_after_a_fastmath_kernel_compiled_first(tmp_path):
    """Numba reuses its compiled complex operators across kernels: taken from Numba, the
    register kernels' complex products had contracted multiply-adds when a fastmath kernel
    with complex numbers was compiled first in the process (off scipy's in the last bit). A new
    process, a new Numba cache, that order."""
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    completed = subprocess.run(
        [sys.executable, "-c", COMPLEX_AFTER_FASTMATH], env=environment, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr


def test_one_section_may_be_one_dimensional_as_in_scipy():
    section = scipy.signal.butter(2, 0.2, output="sos")[0]
    x = np.random.default_rng(6).standard_normal(50)
    np.testing.assert_array_equal(sosfilt(section, x), scipy.signal.sosfilt(section, x))
    np.testing.assert_allclose(
        signal_module.sosfiltfilt(section, x),
        scipy.signal.sosfiltfilt(section, x),
        rtol=1e-12,
        atol=1e-12,
    )


def test_integers_are_filtered_in_float64():
    assert lfilter([1, 1], [2, 1], np.arange(5)).dtype == np.float64
    np.testing.assert_array_equal(
        lfilter([1, 1], [2, 1], np.arange(5)), scipy.signal.lfilter([1.0, 1], [2, 1], np.arange(5))
    )


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: lfilter([1.0], [0.0, 1.0], np.ones(3)), ValueError, r"a\[0\] must not be 0"),
        (lambda: lfilter([], [1.0], np.ones(3)), ValueError, "b must be a non-empty 1-D"),
        (lambda: lfilter([1.0], np.ones((2, 2)), np.ones(3)), ValueError, "a must be a non-empty"),
        (
            lambda: lfilter([1.0], [1.0, 0.5], np.ones((3, 4)), zi=np.ones(2)),
            ValueError,
            r"needs zi of shape \(3, 1\), got \(2,\)",
        ),
        (lambda: lfilter([1.0], [1.0, 0.5], 1.0), ValueError, "time axis"),
        (lambda: lfilter(["a"], [1.0], np.ones(3)), TypeError, "b"),
        (lambda: sosfilt(np.ones((2, 5)), np.ones(3)), ValueError, r"\(n_sections, 6\)"),
        (lambda: sosfilt(np.full((1, 6), 2.0), np.ones(3)), ValueError, "should be all ones"),
        (
            lambda: sosfilt(np.ones((1, 6)), np.ones((3, 4)), zi=np.ones((1, 3, 3))),
            ValueError,
            r"zi must have shape \(1, 3, 2\), got \(1, 3, 3\)",
        ),
        (lambda: sosfilt(np.ones((1, 6)), np.ones(3), axis=1), np.exceptions.AxisError, "axis"),
    ],
)
def test_filter_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("spoiled", [500, 99_999])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan, 1e308])
@pytest.mark.parametrize("zi", [None, [0.5]])
def test_first_order_filters_of_few_series_run_over_time_and_keep_scipys_inf_rule(
    spoiled, value, zi
):
    """b = [b0], a = [1, a1] of one long series is a linear recurrence, parallel over time;
    an infinite sample makes scipy's delay line NaN (0 * inf), and an overflow Inf: wherever
    NaN or Inf turns up (any block of the scaling pass), the series takes the loop."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(100_000)
    b, a = [0.1], [1.0, -0.9]
    for spoil in (False, True):
        if spoil:  # NaN and Inf where scipy has them, the rest to rounding
            x[spoiled] = value
            b = [1e10] if value == 1e308 else b
        x_copy = x.copy()
        with np.errstate(over="ignore", invalid="ignore"):
            expected = scipy.signal.lfilter(b, a, x, zi=zi)
            result = lfilter(b, a, x, zi=zi)
        if zi is None:
            result, expected = (result,), (expected,)
        for got, want in zip(result, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(x, x_copy)


@pytest.mark.parametrize(
    ("b", "a", "zi"),
    [
        ([0.0], [1.0, -0.9], [0.5]),  # b0 = 0: only zi's free response
        ([0.3], [1.0, 0.0], [0.5]),  # a1 = 0: zi reaches the first output only
        ([1e-200], [1.0, -1e-200], [0.5]),  # a1 b0 underflows
        ([0.3], [1.0, -0.9], [np.inf]),
        ([0.3], [1.0, -0.9], [np.nan]),
        ([0.3 + 0.1j], [1.0, -0.9j], [0.5 - 2j]),
    ],
)
def test_first_order_initial_conditions_of_every_kind(b, a, zi):
    """With ``zi`` a first-order filter of one series starts its recurrence from
    ``-zi / (a1 b0)``; where that cannot be (a zero or tiny ``a1 b0``, a non-finite ``zi``)
    the series takes the loop, and the answer is scipy's either way."""
    x = np.random.default_rng(4).standard_normal(50_000)
    with np.errstate(invalid="ignore"):
        expected = scipy.signal.lfilter(b, a, x, zi=zi)
    result = lfilter(b, a, x, zi=zi)
    for got, want in zip(result, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.fixture
def over_time(monkeypatch):
    """Few series of any length filtered in parallel over time (``auto`` choosing the scan)."""
    monkeypatch.setattr(config.cpu, "auto_scan_min_length", 1)
    monkeypatch.setattr(
        cpu_auto, "measured_choice", lambda *arguments, **keywords: contextlib.nullcontext("scan")
    )


OVER_TIME_FILTERS = {
    "Butterworth 8 as sections": ("sosfilt", (scipy.signal.butter(8, 0.1, output="sos"),)),
    "narrow band-pass sections": (
        "sosfilt",
        (scipy.signal.butter(6, [0.1, 0.102], btype="band", output="sos"),),
    ),
    "Chebyshev 4 as b, a": ("lfilter", scipy.signal.cheby1(4, 1, 0.05)),
    "FIR": ("lfilter", ([0.2, 0.3, 0.5], [1.0])),
    "unstable": ("lfilter", ([1.0, 0.5], [1.0, -1.0005, 0.2])),
}


@pytest.mark.parametrize("name", OVER_TIME_FILTERS)
@pytest.mark.parametrize("length", [1, 31, 33, 1000, 4099])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_filters_over_time_agree_with_scipy(name, length, dtype, over_time):
    """Few long series are cut into chunks filtered together; each chunk's start state is
    carried across, its free response added until it decays: scipy's result to rounding,
    stable, narrow-band and unstable filters alike, with zi and zf."""
    function, coefficients = OVER_TIME_FILTERS[name]
    rng = np.random.default_rng(length)
    x = rng.standard_normal((2, length)).astype(dtype)
    order = max(map(len, coefficients)) - 1
    zi_shape = (len(coefficients[0]), 2, 2) if function == "sosfilt" else (2, order)
    zi = rng.standard_normal(zi_shape).astype(dtype)
    for conditions in (None, zi):
        ours = getattr(signal_module, function)(*coefficients, x, zi=conditions)
        theirs = getattr(scipy.signal, function)(*coefficients, x, zi=conditions)
        for found, expected in zip(
            ours if conditions is not None else (ours,),
            theirs if conditions is not None else (theirs,),
            strict=True,
        ):
            scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
            tolerance = 1e-4 if dtype == np.float32 else 1e-9
            np.testing.assert_allclose(found, expected, rtol=0, atol=tolerance * scale)


@pytest.mark.parametrize("function", ["lfilter", "sosfilt"])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_a_start_state_is_judged_against_the_outputs_it_reaches(function, dtype, over_time):
    """The response to ``zi`` is added to the first chunk until it is negligible against the
    outputs it reaches: outputs of 1 at the start of the chunk, 1e30 at its end (or an
    unstable filter's growth) once made ``zi`` look negligible against the chunk's final
    state, and it was dropped. Each output within rounding of the largest before it."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 128_000)).astype(dtype)  # chunks of 2000 steps at least
    x[:, 1000:] *= 1e30
    b, a = [1.0, 0.5], [1.0, -0.9]
    if function == "lfilter":
        coefficients, zi = (b, a), np.array([[-0.5]], dtype)
    else:
        coefficients, zi = ([[*b, 0.0, *a, 0.0]],), np.array([[[-0.5, 0.0]]], dtype)
    ours = getattr(signal_module, function)(*coefficients, x, zi=zi)
    theirs = getattr(scipy.signal, function)(*coefficients, x, zi=zi)
    for found, expected in zip(ours, theirs, strict=True):
        scale = np.maximum.accumulate(np.abs(expected), axis=-1)
        assert np.all(np.abs(found - expected) <= 1e-12 * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_an_fir_filter_is_scipys_convolution_across_blocks_of_time(dtype):
    """``a = [1]``: scipy convolves, so a NaN or Inf sample reaches ``len(b)`` outputs and no
    more; scanlab's FIR kernel does the same in blocks of ``FIR_STEPS`` steps (the final
    delays from the last block, the initial ones added to the first)."""
    rng = np.random.default_rng(11)
    length = 3 * cpu_iir.FIR_STEPS + 5
    x = rng.standard_normal((2, length)).astype(dtype)
    x[0, [7, cpu_iir.FIR_STEPS - 1, cpu_iir.FIR_STEPS, length - 2]] = [
        np.nan,
        np.inf,
        -np.inf,
        np.nan,
    ]
    b = rng.standard_normal(4)
    zi = rng.standard_normal((2, 3)).astype(dtype)
    ours, theirs = lfilter(b, [1.0], x, zi=zi), scipy.signal.lfilter(b, [1.0], x, zi=zi)
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    for found, expected in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(found, expected, rtol=tolerance, atol=tolerance)
    assert np.isfinite(ours[0][0, 11 : cpu_iir.FIR_STEPS - 1]).all()


@pytest.mark.parametrize("value", [1e308, np.inf, np.nan])
def test_a_state_gone_infinite_or_nan_in_one_chunk_stays_so_in_the_next(value, over_time):
    """The free response of an infinite start state never decays (its tolerance is not
    infinite), as NaN's does not: the chunks after it hold what the loop holds."""
    x = np.random.default_rng(5).standard_normal((1, 4000))
    x[0, 100] = value
    for function, coefficients in (
        ("lfilter", ([1e10, 0.5], [1.0, -0.9])),
        ("sosfilt", (scipy.signal.butter(4, 0.1, output="sos") * [1e10, 1, 1, 1, 1, 1],)),
    ):
        with np.errstate(over="ignore", invalid="ignore"):
            ours = getattr(signal_module, function)(*coefficients, x)
            theirs = getattr(scipy.signal, function)(*coefficients, x)
        np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(theirs))
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))


@pytest.mark.parametrize(
    ("front_end", "call"),
    [
        (lfilter, lambda device: lfilter([1.0], [1.0, -0.5], np.ones(3), device=device)),
        (sosfilt, lambda device: sosfilt([[1.0, 0, 0, 1, -0.5, 0]], np.ones(3), device=device)),
        (ewm_mean, lambda device: ewm_mean(np.ones(3), alpha=0.5, device=device)),
    ],
    ids=["lfilter", "sosfilt", "ewm_mean"],
)
def test_device_is_a_keyword_and_an_unknown_one_is_refused(front_end, call):
    assert inspect.signature(front_end).parameters["device"].default == "auto"
    np.testing.assert_array_equal(call("cpu"), call("auto"))
    with pytest.raises(ValueError, match="device must be one of"):
        call("gpu")
