"""Time contiguous in memory (axis=-1 of C arrays, axis=0 of Fortran ones): the time-last kernel
reads the operands as they lie, and gives the loop's result."""

import contextlib

import numpy as np
import pytest
import reference
from conftest import DTYPES, assert_close, random_array
from hypothesis import given
from hypothesis import strategies as st

import scanlab
from scanlab import config, wisdom
from scanlab.cpu import auto as cpu_auto
from scanlab.cpu import linear_rows as cpu_linear_rows

LENGTHS = [0, 1, 2, 3, 7, 31, 64, 97, 251]


@pytest.fixture
def rows_calls(monkeypatch):
    """Count the launches of the time-last kernel."""
    calls = []
    kernel = cpu_linear_rows.linear_recurrence_rows

    def counted(*arguments):
        calls.append(arguments[3].shape)
        return kernel(*arguments)

    monkeypatch.setattr(cpu_linear_rows, "linear_recurrence_rows", counted)
    return calls


@st.composite
def time_last_problems(draw):
    length = draw(st.one_of(st.sampled_from(LENGTHS), st.integers(0, 300)))
    channels = draw(
        st.lists(st.integers(1, 6), min_size=1, max_size=2).filter(
            lambda sizes: int(np.prod(sizes)) >= 2
        )
    )
    fortran = draw(st.booleans())
    shape = (length, *channels) if fortran else (*channels, length)
    axis = 0 if fortran else len(shape) - 1
    time_only = tuple(length if i == axis else 1 for i in range(len(shape)))
    channel_only = tuple(1 if i == axis else size for i, size in enumerate(shape))
    return {
        "shape": shape,
        "axis": axis,
        "fortran": fortran,
        "a_shape": draw(st.sampled_from([(), shape, time_only, channel_only])),
        "dtype": draw(st.sampled_from(DTYPES)),
        "reverse": draw(st.booleans()),
        "with_h0": draw(st.booleans()),
        "with_out": draw(st.booleans()),
        "method": draw(st.sampled_from(["auto", "sequential", "scan"])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@given(problem=time_last_problems())
def test_time_last_matches_the_reference(problem, rows_calls):
    rows_calls.clear()  # the fixture outlives one example
    rng = np.random.default_rng(problem["seed"])
    dtype, axis, shape = problem["dtype"], problem["axis"], problem["shape"]
    order = "F" if problem["fortran"] else "C"
    a = random_array(rng, problem["a_shape"], dtype)
    b = np.asarray(random_array(rng, shape, dtype, -2.0, 2.0), order=order)
    rest = tuple(np.delete(shape, axis))
    h0 = random_array(rng, rest, dtype) if problem["with_h0"] else None
    out = np.empty(shape, dtype, order=order) if problem["with_out"] else None
    copies = [None if x is None else x.copy() for x in (a, b, h0)]

    result = scanlab.linear_recurrence(
        a, b, h0, axis=axis, reverse=problem["reverse"], method=problem["method"], out=out
    )

    assert_close(
        result, reference.linear_recurrence(a, b, h0, axis=axis, reverse=problem["reverse"]), dtype
    )
    # One step is contiguous in every layout: NumPy may give it either order's strides.
    time_contiguous = shape[axis] > 1 or b.strides[axis] == b.itemsize
    # The kernel for "sequential"; row by row for "scan"; "auto" measures (short rows: kernel).
    by_rows = b.size and time_contiguous and problem["method"] != "scan"
    assert len(rows_calls) == (1 if by_rows else 0)
    if out is not None:
        assert result is out
    elif b.size and shape[axis] > 1:
        assert result.strides[axis] == result.itemsize  # laid out like b: time contiguous
    for given_input, original in zip((a, b, h0), copies, strict=True):
        if given_input is not None:
            np.testing.assert_array_equal(given_input, original)


def test_in_place_over_b_and_a_c_ordered_out(rows_calls):
    rng = np.random.default_rng(4)
    b = rng.normal(size=(9, 300))
    expected = reference.linear_recurrence(0.9, b, axis=-1)
    same = scanlab.linear_recurrence(0.9, b, axis=-1, out=b)
    assert same is b
    assert_close(b, expected)
    fortran = np.asfortranarray(rng.normal(size=(300, 9)))
    out = np.empty((300, 9))  # C-ordered: the kernel writes a buffer, copied in
    assert_close(
        scanlab.linear_recurrence(0.5, fortran, out=out), reference.linear_recurrence(0.5, fortran)
    )
    assert len(rows_calls) == 2


def test_scan_and_what_auto_measured_go_row_by_row_as_they_lie(rows_calls, monkeypatch):
    """method="scan", or "auto" where the row-by-row scan was measured faster: each row is
    solved as a one-channel series, a view of the caller's memory (no transposing copy)."""
    solved = []
    solve = cpu_linear_rows.solve

    def recorded(a, b, h0, out, reverse, method):
        solved.append((b.shape, method))
        return solve(a, b, h0, out, reverse, method)

    monkeypatch.setattr(cpu_linear_rows, "solve", recorded)
    rng = np.random.default_rng(5)
    many = rng.normal(size=(9, 100))
    scanned = scanlab.linear_recurrence(0.9, many, axis=-1, method="scan", reverse=True)
    assert_close(scanned, reference.linear_recurrence(0.9, many, axis=-1, reverse=True))
    monkeypatch.setattr(
        cpu_auto, "measured_choice", lambda *arguments, **keywords: contextlib.nullcontext("scan")
    )
    few = rng.normal(size=(3, 100))
    measured = scanlab.linear_recurrence(0.9, few, axis=-1)
    assert_close(measured, reference.linear_recurrence(0.9, few, axis=-1))
    assert solved == [((100, 1), "scan")] * 12
    assert rows_calls == []


def test_auto_measures_the_time_last_layout_apart(tmp_path, monkeypatch):
    """Time-last problems are measured as their own kind (the kernel against the row-by-row
    scan), per size class, kept as wisdom; injected here, never timed in a test."""
    monkeypatch.setattr(config.cpu, "auto_scan_max_row_bytes", None)
    monkeypatch.setattr(config.cpu, "wisdom", str(tmp_path / "wisdom.json"))
    monkeypatch.setattr(config.cpu, "calibrate_after", 0.0)
    measure = cpu_linear_rows.measured_rows_speeds
    calls = []
    monkeypatch.setattr(
        cpu_linear_rows,
        "measured_rows_speeds",
        lambda *problem: calls.append(problem) or {"sequential": 1.0, "scan": 2.0},
    )
    try:
        x = np.random.default_rng(6).normal(size=(3, 20_000))
        result = scanlab.linear_recurrence(0.5, x, axis=-1)
        assert_close(result, reference.linear_recurrence(0.5, x, axis=-1))
        assert len(calls) == 1 and calls[0][1] == 4  # three rows: the class of 4 channels
        assert any(key.startswith("linear time-last float64") for key in wisdom.entries())
        speeds = measure(np.dtype(np.float32), 4, 2, 2**16)  # the real one runs
        assert set(speeds) == {"sequential", "scan"} and min(speeds.values()) > 0
    finally:
        wisdom.LOADED.clear()


def test_time_first_and_strided_time_keep_the_time_first_kernels(rows_calls):
    rng = np.random.default_rng(5)
    scanlab.linear_recurrence(0.9, rng.normal(size=(100, 9)), axis=0)  # time first
    scanlab.linear_recurrence(0.9, rng.normal(size=(9, 100))[:, ::2], axis=-1)  # strided time
    assert rows_calls == []


def test_nan_and_inf_stay_in_their_channel_from_their_step_on(rows_calls):
    b = np.ones((8, 50))
    b[2, 10] = np.nan
    b[5, 20] = np.inf
    result = scanlab.linear_recurrence(0.5, b, axis=-1)
    assert np.isnan(result[2, 10:]).all() and np.isfinite(result[2, :10]).all()
    assert np.isinf(result[5, 20:]).all() and np.isfinite(result[5, :20]).all()
    assert np.isfinite(np.delete(result, [2, 5], axis=0)).all()


@pytest.mark.parametrize("method", ["sequential", "scan", "auto"])
def test_an_empty_time_axis_into_a_given_out(method):
    """Rows of no steps, into an ``out`` whose strides make it C-contiguous (a case hypothesis
    found in test_aliasing): nothing to compute, no error."""
    empty = np.zeros(0)
    b = np.lib.stride_tricks.as_strided(empty, (2, 0), (8, 8))
    out = np.lib.stride_tricks.as_strided(empty, (2, 0), (8, 16))
    result = scanlab.linear_recurrence(b, b, axis=1, out=out, method=method)
    assert result is out and result.shape == (2, 0)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(("dtype", "length"), [(np.float32, 2048), (np.float64, 1024)])
def test_rows_a_multiple_of_4_kib_apart(dtype, length, reverse):
    """Rows 8 KiB apart (every row's loads and stores equal modulo 4 KiB), in tiles and in a
    last group of fewer rows: the results are the loop's."""
    rng = np.random.default_rng(11)
    b = rng.normal(size=(11, length)).astype(dtype)
    h0 = rng.normal(size=11).astype(dtype)
    assert b.strides[0] % 4096 == 0
    for a in (dtype(0.9), rng.uniform(-1, 1, b.shape).astype(dtype)):
        result = scanlab.linear_recurrence(a, b, h0, axis=-1, reverse=reverse, method="sequential")
        expected = reference.linear_recurrence(a, b, h0, axis=-1, reverse=reverse)
        assert_close(result, expected, dtype)


@given(
    tiles=st.integers(0, 3),
    extra_rows=st.integers(0, 5),
    length=st.one_of(st.sampled_from([0, 1, 15, 16, 17, 33]), st.integers(0, 120)),
    dtype=st.sampled_from(DTYPES),
    a_form=st.sampled_from(["full", "per step", "per row", "scalar"]),
    reverse=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_square_tiles_of_rows_match_the_reference(
    tiles, extra_rows, length, dtype, a_form, reverse, seed, monkeypatch
):
    """Rows in tiles of one vector (scanlab.cpu.row_tiles), with rows and steps left over, every
    way ``a`` broadcasts, both directions."""
    launched = []
    share_out = cpu_linear_rows.share_out
    monkeypatch.setattr(
        cpu_linear_rows,
        "share_out",
        lambda kernel, *rest: launched.append(kernel) or share_out(kernel, *rest),
    )
    units = 64 // np.dtype(dtype).itemsize
    channels = max(1, tiles * units + extra_rows)
    rng = np.random.default_rng(seed)
    a_shapes = {
        "full": (channels, length),
        "per step": (1, length),
        "per row": (channels, 1),
        "scalar": (),
    }
    a = random_array(rng, a_shapes[a_form], dtype)
    b = random_array(rng, (channels, length), dtype, -2.0, 2.0)
    h0 = random_array(rng, (channels,), dtype)

    result = scanlab.linear_recurrence(a, b, h0, axis=-1, reverse=reverse, method="sequential")

    expected = reference.linear_recurrence(a, b, h0, axis=-1, reverse=reverse)
    assert_close(result, expected, dtype)
    if channels > 1 and length > 0:  # else the time-first kernels take it
        assert launched == [cpu_linear_rows.run_row_tiles]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_in_tiles_stay_in_their_row_from_their_step_on(dtype):
    units = 64 // np.dtype(dtype).itemsize
    a = np.full((2 * units, 40), 0.5, dtype)
    b = np.ones((2 * units, 40), dtype)
    a[1, 5], b[3, 17], b[units, 20], a[units + 2, 31] = np.nan, np.inf, -np.inf, np.inf
    result = scanlab.linear_recurrence(a, b, axis=-1, method="sequential")
    assert_close(result, reference.linear_recurrence(a, b, axis=-1), dtype)
    assert np.isnan(result[1, 5:]).all() and np.isfinite(result[1, :5]).all()
    assert np.isfinite(np.delete(result, [1, 3, units, units + 2], axis=0)).all()
