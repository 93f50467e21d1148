"""``scanlab.rl``: discounted returns and GAE against the loops RL code writes."""

import contextlib
import inspect

import numpy as np
import pytest
import reference
from conftest import assert_close, random_array
from hypothesis import given
from hypothesis import strategies as st

from scanlab import config, rl, wisdom
from scanlab.cpu import auto as cpu_auto
from scanlab.cpu import returns as cpu_returns
from scanlab.rl import discounted_returns, gae

LENGTHS = [0, 1, 2, 3, 7, 31, 97, 251]


@st.composite
def rollouts(draw):
    length = draw(st.one_of(st.sampled_from(LENGTHS), st.integers(0, 300)))
    batch = tuple(draw(st.lists(st.integers(1, 5), max_size=2)))
    axis = draw(st.integers(0, len(batch)))
    shape = batch[:axis] + (length,) + batch[axis:]
    state = batch
    return {
        "shape": shape,
        "axis": axis,
        "state_shape": draw(st.sampled_from([(), state, state[-1:] if state else ()])),
        "dones_shape": draw(st.sampled_from([shape, (), shape[axis:]])),
        "dtype": draw(st.sampled_from([np.float32, np.float64])),
        "done_rate": draw(st.sampled_from([0.0, 0.05, 0.5, 1.0])),
        "bool_dones": draw(st.booleans()),
        "gamma": draw(st.sampled_from([0.0, 0.5, 0.99, 1.0])),
        "lam": draw(st.sampled_from([0.0, 0.95, 1.0])),
        "method": draw(st.sampled_from(["auto", "sequential", "scan"])),
        "with_bootstrap": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def draw_operands(problem):
    rng = np.random.default_rng(problem["seed"])
    dtype, shape = problem["dtype"], problem["shape"]
    dones = rng.random(problem["dones_shape"]) < problem["done_rate"]
    if not problem["bool_dones"]:
        dones = dones.astype(np.float32)
    return (
        random_array(rng, shape, dtype, -2.0, 2.0),
        random_array(rng, shape, dtype, -2.0, 2.0),
        dones,
        random_array(rng, problem["state_shape"], dtype),
    )


@pytest.fixture(autouse=True)
def short_chunks(monkeypatch):
    """Chunks of time of a few steps, so that the chunked method cuts the tests' rollouts."""
    monkeypatch.setattr(cpu_returns, "MIN_CHUNK", 3)


@pytest.fixture
def forced_method(monkeypatch):
    """Make ``method="auto"``'s choice the one a test draws."""

    def force(method):
        if method != "auto":
            monkeypatch.setattr(
                cpu_auto,
                "measured_choice",
                lambda *arguments, **keywords: contextlib.nullcontext(method),
            )

    return force


@given(problem=rollouts())
def test_gae_matches_the_loop(problem, forced_method):
    forced_method(problem["method"])
    rewards, values, dones, last_value = draw_operands(problem)
    copies = [x.copy() for x in (rewards, values, dones, last_value)]
    options = {"gamma": problem["gamma"], "lam": problem["lam"], "axis": problem["axis"]}

    advantages, returns = gae(rewards, values, dones, last_value, **options)

    expected = reference.gae(rewards, values, dones, last_value, **options)
    assert_close(advantages, expected[0], problem["dtype"])
    assert_close(returns, expected[1], problem["dtype"])
    for given_input, original in zip((rewards, values, dones, last_value), copies, strict=True):
        np.testing.assert_array_equal(given_input, original)


@given(problem=rollouts())
def test_discounted_returns_match_the_loop(problem, forced_method):
    forced_method(problem["method"])
    rewards, _, dones, bootstrap = draw_operands(problem)
    with_dones = problem["done_rate"] > 0
    options = {
        "dones": dones if with_dones else None,
        "bootstrap": bootstrap if problem["with_bootstrap"] else None,
        "axis": problem["axis"],
    }
    copies = [rewards.copy(), dones.copy()]

    result = discounted_returns(rewards, problem["gamma"], **options)

    expected = reference.discounted_returns(rewards, problem["gamma"], **options)
    assert_close(result, expected, problem["dtype"])
    np.testing.assert_array_equal(rewards, copies[0])
    np.testing.assert_array_equal(dones, copies[1])


@given(problem=rollouts(), spoiled=st.sampled_from([None, np.nan, np.inf, -np.inf]))
def test_the_chunked_walk_is_the_loop_bit_for_bit(problem, spoiled):
    """Chunks of time walked from zero, then their ends again from the true carry until the
    states agree: the same numbers as one walk over time, NaN and Inf included, discounts of 1
    (nothing decays) included."""
    rewards, values, dones, last_value = draw_operands(problem)
    dtype = problem["dtype"]
    shape, axis = problem["shape"], problem["axis"]
    state_shape = shape[:axis] + shape[axis + 1 :]
    if spoiled is not None and rewards.size:
        rewards.flat[np.random.default_rng(problem["seed"]).integers(rewards.size)] = spoiled
    operands = rl.kernel_operands((rewards, values, dones), shape, axis, dtype)
    final = rl.initial_state(last_value, state_shape, dtype, shape, axis)
    scalars = (dtype(problem["gamma"]), dtype(problem["lam"]))
    results = {}
    for method in ("sequential", "scan"):
        advantages, returns, discounted = np.empty((3, *operands[0].shape), dtype)
        rl.solve_advantages(method, *operands, final, *scalars, advantages, returns)
        rl.solve_returns(method, operands[0], operands[2], final, scalars[0], discounted)
        results[method] = (advantages, returns, discounted)
    for walked, chunked in zip(results["sequential"], results["scan"], strict=True):
        np.testing.assert_array_equal(chunked, walked)


@pytest.mark.parametrize("length", [2, 3, 4, 5, 6, 7, 13, 24, 25])
@pytest.mark.parametrize("threads", [1, 2])
def test_chunks_of_every_length_cover_the_steps(length, threads):
    """Every step written once by the first walk, whatever the chunks' count and remainder."""
    chunks = cpu_returns.time_chunks(length, 1, threads)
    size = cpu_returns.chunk_length(length, chunks)
    rewards = np.arange(1.0, length + 1).reshape(length, 1)
    out = np.full_like(rewards, np.nan)
    cpu_returns.returns_backwards(rewards, np.zeros_like(rewards), np.zeros(1), 1.0, out, 1, chunks)
    np.testing.assert_array_equal(out[:, 0], np.cumsum(rewards[::-1, 0])[::-1])
    assert chunks == 1 or size < length


def test_float32_stays_float32_and_numbers_promote():
    rewards = np.ones((5, 2), np.float32)
    advantages, returns = gae(rewards, rewards, False, np.float32(0), gamma=0.9, lam=0.9)
    assert advantages.dtype == returns.dtype == np.float32
    assert discounted_returns(rewards, 0.9).dtype == np.float32
    assert discounted_returns(rewards, 0.9, dones=np.zeros((5, 2), bool)).dtype == np.float32
    assert discounted_returns([1, 2, 3], 0.5).dtype == np.float64


@pytest.mark.parametrize("method", ["sequential", "scan"])
def test_nan_flows_back_as_in_the_loop(method, forced_method):
    """A NaN reward reaches every earlier step, across episode ends too (the loop's
    ``(1 - done) * G[t+1]`` is ``0 * nan``), and no later one."""
    forced_method(method)
    rewards = np.ones(10)
    rewards[6] = np.nan
    dones = np.zeros(10, bool)
    dones[2] = True
    options = {"gamma": 0.9, "lam": 0.9}
    advantages, returns = gae(rewards, np.zeros(10), dones, 0.0, **options)
    expected = reference.gae(rewards, np.zeros(10), dones, 0.0, **options)
    assert_close(advantages, expected[0])
    assert_close(returns, expected[1])
    for result in (advantages, returns, discounted_returns(rewards, 0.9, dones=dones)):
        assert np.isnan(result[:7]).all() and np.isfinite(result[7:]).all()


def test_an_episode_end_cuts_the_bootstrap():
    rewards = np.array([1.0, 1.0])
    assert discounted_returns(rewards, 1.0, dones=[0, 1], bootstrap=100.0).tolist() == [2, 1]
    assert discounted_returns(rewards, 1.0, bootstrap=100.0).tolist() == [102, 101]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: discounted_returns(np.ones(3), [0.9]), TypeError, "gamma must be a real"),
        (lambda: discounted_returns(np.ones(3), True), TypeError, "gamma must be a real"),
        (lambda: discounted_returns(1.0, 0.9), ValueError, "rewards must have a time axis"),
        (lambda: discounted_returns(["a"], 0.9), TypeError, "rewards"),
        (lambda: discounted_returns(np.ones(3, complex), 0.9), TypeError, "are real"),
        (
            lambda: gae(np.ones(4), np.ones(4, complex), False, 0.0, gamma=0.9, lam=0.9),
            TypeError,
            "promote to complex128",
        ),
        (
            lambda: discounted_returns(np.ones((3, 2)), 0.9, dones=np.ones(3)),
            ValueError,
            r"need dones of shape \(3, 2\).*got \(3,\)",
        ),
        (
            lambda: discounted_returns(np.ones((3, 2)), 0.9, bootstrap=np.ones(3)),
            ValueError,
            r"need bootstrap of shape \(2,\).*got \(3,\)",
        ),
        (lambda: discounted_returns(np.ones(3), 0.9, axis=1), np.exceptions.AxisError, "axis"),
        (
            lambda: gae(np.ones((4, 2)), np.ones((4, 3)), False, 0.0, gamma=0.9, lam=0.9),
            ValueError,
            "need values of shape",
        ),
        (
            lambda: gae(np.ones((4, 2)), np.ones((4, 2)), False, np.ones(4), gamma=0.9, lam=0.9),
            ValueError,
            r"need last_value of shape \(2,\)",
        ),
        (
            lambda: gae(np.ones(4), np.ones(4), False, 0.0, gamma=0.9, lam="0.9"),
            TypeError,
            "lam must be a real",
        ),
        (
            lambda: gae(np.ones(4), np.ones(4), ["x"] * 4, 0.0, gamma=0.9, lam=0.9),
            TypeError,
            "dones",
        ),
        (
            lambda: gae(np.ones(4), np.ones(4), np.zeros(4, complex), 0.0, gamma=0.9, lam=0.9),
            TypeError,
            "dones has dtype complex128",
        ),
        (
            lambda: discounted_returns(np.ones(3), 0.9, dones=np.zeros(3, complex)),
            TypeError,
            "dones has dtype complex128",
        ),
        # Without dones too (the elementwise solver's path), in the front end's words.
        (lambda: discounted_returns(np.ones(3), 0.9, bootstrap=1j), TypeError, "are real"),
        (
            lambda: discounted_returns(np.ones(3, np.float16), 0.9),
            TypeError,
            r"\(rewards float16\)",
        ),
    ],
)
def test_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_auto_takes_the_method_measured_faster_for_gae(tmp_path, monkeypatch):
    """``gae``'s own measurement of its two methods, per size class, kept as wisdom (injected
    here: never timed in a test); the real measurement runs and names both methods."""
    monkeypatch.setattr(config.cpu, "auto_scan_max_row_bytes", None)
    monkeypatch.setattr(config.cpu, "wisdom", str(tmp_path / "wisdom.json"))
    monkeypatch.setattr(config.cpu, "calibrate_after", 0.0)
    calls, chosen = [], []
    monkeypatch.setattr(
        rl, "gae_speeds", lambda *problem: calls.append(problem) or {"sequential": 2, "scan": 1}
    )
    solve = rl.solve_advantages
    monkeypatch.setattr(
        rl,
        "solve_advantages",
        lambda method, *operands: chosen.append(method) or solve(method, *operands),
    )
    rng = np.random.default_rng(0)
    rewards, values = rng.standard_normal((2, 20_000, 2))
    dones = rng.random((20_000, 2)) < 0.01
    try:
        for _ in range(2):
            result = gae(rewards, values, dones, 0.0, gamma=0.9, lam=0.9, axis=0)
        assert chosen == ["scan", "scan"] and len(calls) == 1
        assert any(key.startswith("gae float64 channels<=4") for key in wisdom.entries())
        expected = reference.gae(rewards, values, dones, 0.0, gamma=0.9, lam=0.9)
        assert_close(result[0], expected[0])
        speeds = solve.__globals__["gae_speeds"](np.dtype(np.float32), 4, 2, 2**12)
        assert set(speeds) == {"sequential", "scan"} and min(speeds.values()) > 0
    finally:
        wisdom.LOADED.clear()


@pytest.mark.parametrize(
    ("front_end", "call"),
    [
        (discounted_returns, lambda device: discounted_returns(np.ones(3), 0.9, device=device)),
        (gae, lambda device: gae(np.ones(3), 1.0, False, 0.0, gamma=0.9, lam=0.9, device=device)),
    ],
    ids=["discounted_returns", "gae"],
)
def test_device_is_a_keyword_and_an_unknown_one_is_refused(front_end, call):
    assert inspect.signature(front_end).parameters["device"].default == "auto"
    np.testing.assert_array_equal(call("cpu"), call("auto"))
    with pytest.raises(ValueError, match="device must be one of"):
        call("gpu")
