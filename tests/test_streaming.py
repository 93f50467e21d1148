"""The sequential kernel's streaming stores (``scanlab.cpu.streaming``) against the float64 loop
and against the same kernel with ordinary stores, and the rule that decides when they are used."""

from functools import partial

import numpy as np
import pytest
import reference
from conftest import DTYPES, assert_close, numba_threads, random_array
from hypothesis import given
from hypothesis import strategies as st

import scanlab
from scanlab import config, wisdom
from scanlab._arrays import RESULT_ALIGNMENT, aligned_empty
from scanlab.cpu import auto as cpu_auto
from scanlab.cpu import linear as cpu_linear
from scanlab.cpu import streaming


@pytest.fixture
def tunables():
    """Restore ``config.cpu`` after a test that changes it."""
    saved = dict(vars(config.cpu))
    yield config.cpu
    for name, value in saved.items():
        setattr(config.cpu, name, value)


def solve_both_ways(tunables, a, b, h0=None, reverse=False):
    """``linear_recurrence(..., method="sequential")`` with streaming stores everywhere and with
    none."""
    results = []
    for threshold in (0, 2**62):
        tunables.streaming_store_bytes = threshold
        results.append(scanlab.linear_recurrence(a, b, h0, reverse=reverse, method="sequential"))
    return results


@given(
    length=st.one_of(st.sampled_from([0, 1, 2, 3, 97]), st.integers(0, 200)),
    lines=st.integers(1, 5),
    dtype=st.sampled_from(DTYPES),
    a_form=st.sampled_from(["full", "per step", "per channel", "scalar"]),
    b_form=st.sampled_from(["full", "per channel"]),
    block_lines=st.integers(1, 3),
    reverse=st.booleans(),
    with_h0=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_streamed_results_match_the_loop(
    tunables, length, lines, dtype, a_form, b_form, block_lines, reverse, with_h0, seed
):
    lanes = streaming.LANE_BYTES // np.dtype(dtype).itemsize
    channels = lines * lanes
    # Blocks of one to three lines: several blocks, shared between threads, end mid-row.
    tunables.channel_block_bytes = block_lines * streaming.LANE_BYTES
    rng = np.random.default_rng(seed)
    a_shapes = {
        "full": (length, channels),
        "per step": (length, 1),
        "per channel": (1, channels),
        "scalar": (),
    }
    a = random_array(rng, a_shapes[a_form], dtype)
    b = random_array(rng, (length, channels) if b_form == "full" else (1, channels), dtype)
    b = np.broadcast_to(b, (length, channels))
    h0 = random_array(rng, (channels,), dtype) if with_h0 else None
    inputs = [np.array(x) for x in (a, b)]

    streamed, stored = solve_both_ways(tunables, a, b, h0, reverse)

    if np.dtype(dtype).kind == "f":
        # The same fused multiply-add per element: bit for bit.
        np.testing.assert_array_equal(streamed, stored)
    assert_close(streamed, reference.linear_recurrence(a, b, h0, reverse=reverse), dtype)
    for given_input, original in zip((a, b), inputs, strict=True):
        np.testing.assert_array_equal(given_input, original)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_streamed_blocks_on_any_thread_count(tunables, threads):
    tunables.channel_block_bytes = streaming.LANE_BYTES
    rng = np.random.default_rng(threads)
    a = rng.uniform(-1, 1, (301, 128))
    b = rng.uniform(-1, 1, (301, 128))
    with numba_threads(threads):
        streamed, stored = solve_both_ways(tunables, a, b)
    np.testing.assert_array_equal(streamed, stored)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate_as_in_the_loop(tunables, dtype):
    channels = 4 * streaming.LANE_BYTES // np.dtype(dtype).itemsize
    a = np.full((50, channels), 0.5, dtype)
    b = np.ones((50, channels), dtype)
    a[10, 3], b[20, 5], b[30, 7], a[40, 9] = np.nan, np.inf, -np.inf, np.inf
    a[45, 11], b[45, 11] = 0.0, np.nan

    streamed, stored = solve_both_ways(tunables, a, b)

    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(stored))
    assert_close(streamed, reference.linear_recurrence(a, b), dtype)


def test_results_start_on_a_cache_line():
    for shape, dtype in [((7, 3), np.float32), ((1000, 16), np.float64), ((0, 4), np.float32)]:
        array = aligned_empty(shape, dtype)
        assert array.shape == shape and array.dtype == dtype and array.flags.c_contiguous
        if array.size:
            assert array.ctypes.data % RESULT_ALIGNMENT == 0
    result = scanlab.linear_recurrence(0.5, np.ones((5, 3), np.float32))
    assert result.ctypes.data % RESULT_ALIGNMENT == 0


def test_which_results_are_streamed(tunables):
    tunables.streaming_store_bytes = 1024
    aligned = aligned_empty((64, 16), np.float32)
    assert streaming.streams(aligned, 1024)
    assert not streaming.streams(aligned[:8], 1024)  # smaller than the threshold
    assert streaming.streams(aligned_empty((64, 16), np.complex64), 1024)
    assert not streaming.streams(aligned_empty((64, 16), np.int64), 1024)
    assert not streaming.streams(aligned_empty((64, 20), np.float32), 1024)  # rows of 80 bytes
    assert not streaming.streams(aligned_empty((64, 32), np.float32), 24)  # blocks of 96 bytes
    unaligned = aligned_empty((65 * 16 + 1,), np.float32)[1:].reshape(65, 16)
    assert not streaming.streams(unaligned, 1024)
    tunables.streaming_store_bytes = None
    assert streaming.streaming_threshold() > 0


def test_unaligned_out_is_written_with_ordinary_stores(tunables):
    tunables.streaming_store_bytes = 0
    a = np.full((40, 16), 0.5, np.float32)
    b = np.ones((40, 16), np.float32)
    buffer = aligned_empty((40 * 16 + 1,), np.float32)
    out = buffer[1:].reshape(40, 16)
    result = scanlab.linear_recurrence(a, b, out=out, method="sequential")
    assert result is out
    assert_close(out, reference.linear_recurrence(a, b), np.float32)


def forget_what_was_seen(monkeypatch):
    """A process that has written no large result yet."""
    monkeypatch.setattr(cpu_auto, "UNMEASURED_SECONDS", cpu_auto.collections.Counter())
    observed = cpu_auto.collections.defaultdict(partial(cpu_auto.Observed, cpu_auto.STORES))
    monkeypatch.setattr(cpu_auto, "STREAMING_OBSERVED", observed)


def test_streaming_stores_are_used_where_they_were_measured_faster(tunables, monkeypatch, tmp_path):
    """Without ``config.cpu.streaming_store_bytes`` a large result is streamed only where this
    machine wrote one faster so (measured once per kernel and dtype, kept as wisdom, once the
    process has spent ``calibrate_after`` seconds on such results); with it, from that size on."""
    tunables.wisdom = str(tmp_path / "wisdom.json")
    tunables.calibrate_after = 0.0
    forget_what_was_seen(monkeypatch)
    speeds, calls = {}, []

    def fake(method, dtype, solver):
        calls.append((method, dtype.name))
        return speeds[method]

    def pays(method, dtype, possible=True):
        with cpu_auto.streaming_choice(method, dtype, cpu_linear.solve, possible, 2**20) as stream:
            return stream

    monkeypatch.setattr(cpu_auto, "streaming_speeds", fake)
    speeds["sequential"] = {"streaming": 1.2, "ordinary": 1.0}
    speeds["scan"] = {"streaming": 1.0, "ordinary": 1.1}
    tunables.streaming_store_bytes = None
    assert not pays("sequential", np.float32)
    assert pays("scan", np.float32)
    assert not pays("sequential", np.float32)  # remembered
    assert not pays("scan", np.float32, possible=False)  # the layout does not allow them
    assert calls == [("sequential", "float32"), ("scan", "float32")]
    tunables.streaming_store_bytes = 2**20
    assert pays("sequential", np.float64)
    assert len(calls) == 2
    wisdom.LOADED.clear()


def test_the_stores_seen_faster_on_the_results_themselves_win(tunables, monkeypatch, tmp_path):
    """The measurement (a smaller result) says streaming stores; on this size of result they
    are seen 1.6x slower (as on a Zen 4 VM): within two runs of each, ordinary stores."""
    tunables.wisdom = str(tmp_path / "wisdom.json")
    tunables.streaming_store_bytes = None
    tunables.calibrate_after = 0.0
    monkeypatch.setattr(
        cpu_auto, "streaming_speeds", lambda *_: {"streaming": 0.58, "ordinary": 0.67}
    )
    forget_what_was_seen(monkeypatch)
    now = [0.0]
    monkeypatch.setattr(cpu_auto.time, "perf_counter", lambda: now[0])
    per_run = {True: 0.66 * 2**25 * 1e-9, False: 0.42 * 2**25 * 1e-9}  # seconds
    chosen = []
    for _ in range(10):
        choice = cpu_auto.streaming_choice("sequential", np.float32, cpu_linear.solve, True, 2**25)
        with choice as stream:
            chosen.append(stream)
            now[0] += per_run[stream]
    assert chosen[-4:] == [False] * 4
    assert chosen.count(True) <= 3
    wisdom.LOADED.clear()


def test_a_script_that_writes_one_large_result_never_measures(tunables, monkeypatch, tmp_path):
    """Until the process has spent ``calibrate_after`` seconds writing large results, they are
    written with ordinary stores and nothing is measured."""
    tunables.wisdom = str(tmp_path / "wisdom.json")
    tunables.streaming_store_bytes = None
    tunables.calibrate_after = 2.5
    forget_what_was_seen(monkeypatch)
    clock = iter(range(100))
    monkeypatch.setattr(cpu_auto.time, "perf_counter", lambda: float(next(clock)))
    calls = []

    def fake(method, dtype, solver):
        calls.append(method)
        return {"streaming": 1.0, "ordinary": 2.0}

    monkeypatch.setattr(cpu_auto, "streaming_speeds", fake)
    chosen = []
    for _ in range(5):  # each "takes" a second of the fake clock
        with cpu_auto.streaming_choice("scan", np.float32, cpu_linear.solve, True, 2**20) as stream:
            chosen.append(stream)
    assert chosen == [False] * 3 + [True] * 2
    assert calls == ["scan"]
    wisdom.LOADED.clear()


@pytest.mark.parametrize("method", ["sequential", "scan"])
def test_the_measurement_times_both_stores_on_a_result_larger_than_the_threshold(
    tunables, monkeypatch, method
):
    monkeypatch.setattr(streaming, "streaming_threshold", lambda: 2**16)
    monkeypatch.setattr(cpu_auto, "STREAMING_WARM_UP", 0.0)
    speeds = cpu_auto.streaming_speeds(method, np.dtype(np.float32), cpu_linear.solve)
    assert set(speeds) == {"streaming", "ordinary"}
    assert all(value > 0 for value in speeds.values())


def test_no_room_for_the_measurement_means_ordinary_stores(tunables, monkeypatch, tmp_path):
    tunables.wisdom = str(tmp_path / "wisdom.json")
    tunables.streaming_store_bytes = None
    tunables.calibrate_after = 0.0

    def no_memory(method, dtype, solver):
        raise MemoryError

    monkeypatch.setattr(cpu_auto, "streaming_speeds", no_memory)
    choice = cpu_auto.streaming_choice("sequential", np.float64, cpu_linear.solve, True, 2**20)
    with choice as stream:
        assert not stream
    assert "streaming stores sequential float64" not in wisdom.entries()
    wisdom.LOADED.clear()
