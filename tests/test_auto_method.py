"""method="auto" on the CPU: the kernel measured faster on this machine, stored as wisdom."""

import numba
import numpy as np
import pytest

import scanlab
from scanlab import config, wisdom
from scanlab.cli import main
from scanlab.cpu import auto as cpu_auto
from scanlab.cpu import linear as cpu_linear


@pytest.fixture
def measured(tmp_path, monkeypatch):
    """``auto`` by measurement, kept in a file of its own; the measurements are injected and
    counted (never timed in a test)."""
    monkeypatch.setattr(config.cpu, "auto_scan_max_row_bytes", None)
    monkeypatch.setattr(config.cpu, "wisdom", str(tmp_path / "wisdom.json"))
    monkeypatch.setattr(config.cpu, "calibrate_after", 0.0)
    speeds, calls = {}, []

    def fake(dtype, channels, threads, elements):
        calls.append((np.dtype(dtype).name, channels, threads, elements))
        return speeds.get((channels, elements), speeds.get(channels))

    monkeypatch.setattr(cpu_linear, "measured_speeds", fake)
    yield speeds, calls
    wisdom.LOADED.clear()


def test_auto_takes_the_faster_kernel_and_remembers_it(measured):
    speeds, calls = measured
    speeds[1] = {"sequential": 1.3, "scan": 0.6}
    speeds[16] = {"sequential": 0.5, "scan": 0.9}
    choose = cpu_linear.choose_method
    assert choose(2**20, 1, np.float64, 2) == "scan"
    assert choose(2**20, 9, np.float64, 2) == "sequential"  # rounded up to 16 channels
    assert choose(2**22, 16, np.float64, 2) == "sequential"
    assert calls == [("float64", 1, 2, 2**20), ("float64", 16, 2, 2**20)]
    wisdom.LOADED.clear()  # as a new process: read back from the file, not measured again
    assert choose(2**20, 1, np.float64, 2) == "scan"
    assert len(calls) == 2
    assert "linear float64 channels<=1 elements<=1048576 threads=2" in wisdom.entries()


def test_auto_measures_each_size_of_problem_apart(measured):
    """A short series can favour the loop where a long one favours the scan: each size class
    (elements to the next power of 4, up to config.cpu.calibration_elements) is its own entry."""
    speeds, calls = measured
    speeds[1, 2**14] = {"sequential": 1.0, "scan": 3.0}
    speeds[1, 2**20] = {"sequential": 1.3, "scan": 0.6}
    choose = cpu_linear.choose_method
    assert choose(2**14, 1, np.float32, 2) == "sequential"
    assert choose(2**24, 1, np.float32, 2) == "scan"  # beyond the largest class: measured there
    assert choose(2**19 + 1, 1, np.float32, 2) == "scan"
    assert calls == [("float32", 1, 2, 2**14), ("float32", 1, 2, 2**20)]


def test_short_sequences_and_one_thread_are_never_measured(measured):
    _, calls = measured
    assert cpu_linear.choose_method(100, 1, np.float32, 2) == "sequential"
    assert cpu_linear.choose_method(2**20, 1, np.float32, 1) == "sequential"
    assert calls == []


def test_the_static_override_wins(measured):
    speeds, calls = measured
    config.cpu.auto_scan_max_row_bytes = 32
    assert cpu_linear.choose_method(2**20, 4, np.float64, 2) == "scan"
    assert cpu_linear.choose_method(2**20, 5, np.float64, 2) == "sequential"
    assert calls == []


@pytest.mark.parametrize("content", ["not json", "[1, 2]", ""])
def test_a_damaged_wisdom_file_is_measured_again(measured, content):
    speeds, calls = measured
    speeds[4] = {"sequential": 2.0, "scan": 1.0}
    with open(config.cpu.wisdom, "w") as damaged:
        damaged.write(content)
    assert cpu_linear.choose_method(2**20, 3, np.float64, 2) == "scan"
    assert calls == [("float64", 4, 2, 2**20)]


def test_an_unwritable_location_keeps_wisdom_in_memory(measured, tmp_path):
    speeds, calls = measured
    speeds[1] = {"sequential": 1.0, "scan": 2.0}
    blocker = tmp_path / "a file"
    blocker.write_text("")
    config.cpu.wisdom = str(blocker / "wisdom.json")  # its parent is a file: cannot be created
    assert cpu_linear.choose_method(2**20, 1, np.float64, 2) == "sequential"
    assert cpu_linear.choose_method(2**20, 1, np.float64, 2) == "sequential"
    assert len(calls) == 1


def test_auto_results_are_the_loop_whichever_kernel_is_measured_faster(measured):
    speeds, _ = measured
    rng = np.random.default_rng(1)
    a, b = rng.uniform(-1, 1, (2**15, 1)), rng.normal(size=(2**15, 1))
    expected = scanlab.linear_recurrence(a, b, method="sequential")
    for faster in ("scan", "sequential"):
        speeds[1] = {"sequential": 1.0, "scan": 0.5 if faster == "scan" else 2.0}
        wisdom.forget()
        np.testing.assert_allclose(scanlab.linear_recurrence(a, b), expected, rtol=1e-10)


def test_measured_speeds_times_both_kernels(monkeypatch):
    """The real measurement, on a tiny problem: a positive time for each kernel."""
    monkeypatch.setattr(config.cpu, "calibration_elements", 4096)
    monkeypatch.setattr(config.cpu, "auto_scan_min_length", 64)
    speeds = cpu_linear.measured_speeds(np.float64, 4, 2, 4096)
    assert set(speeds) == {"sequential", "scan"}
    assert all(value > 0 for value in speeds.values())


@pytest.mark.skipif(numba.get_num_threads() < 2, reason="one thread: auto never measures")
def test_tune_and_info_show_the_measurements(measured, capsys):
    speeds, _ = measured
    for channels in (1, 4, 16, 64, 256, 1024):
        speeds[channels] = {"sequential": 1.0, "scan": 0.5 if channels < 16 else 3.0}
    main(["tune"])
    tuned = capsys.readouterr().out
    assert "float64" in tuned and "scan" in tuned and "sequential" in tuned
    assert "elements" in tuned
    main(["info"])
    shown = capsys.readouterr().out
    assert "linear float32 channels<=1024" in shown and config.cpu.wisdom in shown


def test_a_kind_not_measured_runs_the_loop_until_it_has_spent_the_budget(measured, monkeypatch):
    """A script that solves a problem once never compiles the scan: the loop runs, timed, until
    it has spent ``config.cpu.calibrate_after`` seconds on the kind, which is then measured."""
    speeds, calls = measured
    speeds[1] = {"sequential": 2.0, "scan": 1.0}
    clock = iter(range(100))
    monkeypatch.setattr(cpu_auto.time, "perf_counter", lambda: float(next(clock)))
    monkeypatch.setattr(cpu_auto, "UNMEASURED_SECONDS", cpu_auto.collections.Counter())
    config.cpu.calibrate_after = 2.5  # each call below "takes" one second of the fake clock
    chosen = []
    for _ in range(5):
        with cpu_auto.measured_choice(
            "linear", 2**20, 1, np.float64, 2, cpu_linear.measured_speeds
        ) as method:
            chosen.append(method)
    assert chosen == ["sequential"] * 3 + ["scan"] * 2
    assert calls == [("float64", 1, 2, 2**20)]
    other = cpu_auto.measured_choice("linear", 2**20, 1, np.float32, 2, cpu_linear.measured_speeds)
    with other as method:  # another kind has its own account
        assert method == "sequential"
