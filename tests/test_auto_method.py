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
    streaming = {"streaming": 1.0, "ordinary": 1.2}
    monkeypatch.setattr(cpu_auto, "streaming_speeds", lambda method, dtype, solver: streaming)
    monkeypatch.setattr(cpu_auto, "OBSERVED", cpu_auto.collections.defaultdict(cpu_auto.Observed))
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


def test_each_cpu_generation_keeps_its_own_wisdom(monkeypatch):
    """Two CPUs that Linux names alike (AMD's VMs say "AMD EPYC" for Zen 4 and Zen 5) measure
    differently: the wisdom file's name holds the family and model numbers too."""
    paths = []
    for family, model in (("25", "17"), ("26", "2")):
        fields = {"model name": "AMD EPYC", "cpu family": family, "model": model}
        monkeypatch.setattr(wisdom, "cpu_fields", lambda fields=fields: fields)
        for cached in (wisdom.cpu_model, wisdom.default_path_under):
            cached.cache_clear()
        paths.append(wisdom.default_path_under("/cache", "/home"))
    for cached in (wisdom.cpu_model, wisdom.default_path_under):
        cached.cache_clear()
    assert paths[0].name.startswith("wisdom-amd-epyc-family-25-model-17-")
    assert paths[0] != paths[1]


def test_each_revision_of_the_kernels_keeps_its_own_wisdom(monkeypatch, tmp_path):
    """Measurements of earlier kernels do not decide for changed ones: the file's name holds a
    digest of the kernels' source (``cpu/``, and ``_filters.py``'s filtering over time)."""
    names = []
    revisions = [("pass", "pass"), ("return 1", "pass"), ("return 1", "return 2")]
    for kernel, driver in revisions:
        (tmp_path / "cpu").mkdir(exist_ok=True)
        (tmp_path / "cpu" / "kernel.py").write_text(f"def kernel(): {kernel}\n")
        (tmp_path / "_filters.py").write_text(f"def over_time(): {driver}\n")
        monkeypatch.setattr(wisdom, "__file__", str(tmp_path / "wisdom.py"))
        for cached in (wisdom.kernels_revision, wisdom.default_path_under):
            cached.cache_clear()
        names.append(wisdom.default_path_under("/cache", "/home").name)
    for cached in (wisdom.kernels_revision, wisdom.default_path_under):
        cached.cache_clear()
    assert len(set(names)) == len(revisions)
    assert wisdom.kernels_revision() in wisdom.default_path_under("/cache", "/home").name


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


def runs_with(monkeypatch, durations: dict, conditions: list, compiles=()) -> list:
    """The methods ``auto`` chooses for a (2**20, 1) float64 problem over a sequence of runs,
    each "taking" ``durations[condition][method]`` milliseconds of a fake clock, the
    condition of each run from ``conditions``; the runs numbered in ``compiles`` compile."""
    now = [0.0]
    monkeypatch.setattr(cpu_auto.time, "perf_counter", lambda: now[0])
    chosen = []
    for run, condition in enumerate(conditions):
        with cpu_auto.measured_choice(
            "linear", 2**20, 1, np.float64, 2, cpu_linear.measured_speeds
        ) as method:
            chosen.append(method)
            now[0] += durations[condition][method] / 1000
            cpu_auto.CompileCounter.count += run in compiles
    return chosen


def test_auto_turns_to_the_method_it_sees_faster_and_back(measured, monkeypatch):
    """Wisdom measured on a quiet machine says scan; a neighbour that takes a core makes the
    scan slower than the loop: auto turns within two runs, retries the scan (which the wisdom
    prefers) after 2, 4, ... (at most ``auto_recheck_runs``) runs times how much slower it was
    seen, and turns back when the core is free again."""
    speeds, _ = measured
    speeds[1] = {"sequential": 2.0, "scan": 1.0}
    monkeypatch.setattr(config.cpu, "auto_recheck_runs", 4)
    durations = {
        "quiet": {"scan": 1.0, "sequential": 2.0},
        "busy": {"scan": 5.0, "sequential": 2.0},
    }
    chosen = runs_with(monkeypatch, durations, ["quiet"] * 3 + ["busy"] * 13 + ["quiet"] * 12)
    quiet, busy, again = chosen[:3], chosen[3:16], chosen[16:]
    # The loop, measured 2x slower, is not tried (its first retry would come after 4 x 2 runs).
    assert quiet == ["scan"] * 3
    # Busy: the scan's median turns slow at its second busy run; from then on the loop runs,
    # and the scan, seen 2.5x slower than the loop (the wisdom's 2 ms), again after 2 x 2.5
    # runs, and, still slow then, after 4 x 2.5 (4: auto_recheck_runs, the most).
    assert busy == ["scan"] * 2 + ["sequential"] * 5 + ["scan"] + ["sequential"] * 5
    # Quiet again: the next retry forgets the scan's stale runs, sees it fast and keeps it (the
    # loop, slower by the wisdom too, would be retried after 4 x 2 runs).
    assert again == ["sequential"] * 5 + ["scan"] * 7


def test_a_slow_start_does_not_turn_the_choice_for_long(measured, monkeypatch):
    """The first calls of a process can run several times slower (a fresh VM whose memory the
    host backs at first touch: a filter of 10**7 samples at 10 ns per sample for half a
    second, where the scan takes 1.5 and the loop 7.7). Until the scan has run three times the
    wisdom's speed counts as one of its runs, so one slow run does not turn the choice; a
    slow start that did is retried after 2, 4, ... runs, not ``auto_recheck_runs``."""
    speeds, _ = measured
    speeds[1] = {"sequential": 7.7, "scan": 1.5}
    per_element = 1e6 / 2**20  # ns per element of a run of 1 ms (the problem has 2**20)
    durations = {
        "slow start": {"scan": 10.0 / per_element, "sequential": 11.0 / per_element},
        "quiet": {"scan": 1.5 / per_element, "sequential": 7.7 / per_element},
    }
    chosen = runs_with(monkeypatch, durations, ["slow start"] * 2 + ["quiet"] * 6)
    # The scan seen at 10 with the wisdom's 1.5 (median 5.75) stays ahead of the loop's 7.7,
    # close enough (1.5x) to try the loop once on this size (twice: its first run is not timed)
    assert chosen == ["scan"] * 2 + ["sequential"] * 2 + ["scan"] * 4
    monkeypatch.setattr(cpu_auto, "OBSERVED", cpu_auto.collections.defaultdict(cpu_auto.Observed))
    chosen = runs_with(monkeypatch, durations, ["slow start"] * 5 + ["quiet"] * 16)
    # Two slow runs of the scan (and the wisdom) turn the choice at run 5; its retries after
    # 3 and 6 runs (2 and 4 times 1.3, its ratio to the loop) find it fast, and at the second
    # the median of its last three runs does: the scan runs from run 15 on (without the
    # doubling: from run 47 on, after 32 x 1.3 runs of the loop)
    assert chosen[:5] == ["scan"] * 2 + ["sequential"] * 2 + ["scan"]
    assert chosen[15:] == ["scan"] * 6
    assert chosen[5:15].count("scan") == 1


def test_rechecks_of_a_much_slower_method_are_rare(measured, monkeypatch):
    """A method seen 10x slower is run again after 10x the recheck runs, so the rechecks cost
    ``1 / auto_recheck_runs`` of the time."""
    speeds, _ = measured
    per_element = 1e6 / 2**20  # ns per element of a run of 1 ms (the problem has 2**20)
    speeds[1] = {"sequential": per_element, "scan": 10 * per_element}
    monkeypatch.setattr(config.cpu, "auto_recheck_runs", 2)
    durations = {"quiet": {"scan": 10.0, "sequential": 1.0}}
    chosen = runs_with(monkeypatch, durations, ["quiet"] * 70)
    # 20 runs of the loop (20 ms), then one of the scan (10 ms): half of 20, 1 / 2 of the time.
    assert [run for run, method in enumerate(chosen) if method == "scan"] == [20, 41, 62]


def test_a_method_slower_by_the_wisdom_too_is_not_retried_early(measured, monkeypatch):
    """The quick retries are for a method the wisdom prefers: one it measured 3x slower, and
    seen so, waits ``auto_recheck_runs`` x 3 runs from the start."""
    speeds, _ = measured
    per_element = 1e6 / 2**20
    speeds[1] = {"sequential": per_element, "scan": 3 * per_element}
    monkeypatch.setattr(config.cpu, "auto_recheck_runs", 8)
    durations = {"quiet": {"scan": 3.0, "sequential": 1.0}}
    chosen = runs_with(monkeypatch, durations, ["quiet"] * 30)
    assert [run for run, method in enumerate(chosen) if method == "scan"] == [24]


def test_auto_tries_a_close_second_on_a_size_of_its_own(measured, monkeypatch):
    """Measured within 1.5x of each other at the calibration's size, both methods are run on a
    larger problem (each run once unseen, for its kernel may be loaded then), and the one seen
    faster there is kept."""
    speeds, _ = measured
    speeds[1] = {"sequential": 1.0, "scan": 1.2}
    durations = {"large": {"scan": 0.5, "sequential": 1.0}}
    chosen = runs_with(monkeypatch, durations, ["large"] * 7)
    assert chosen == ["sequential"] * 2 + ["scan"] * 5


def test_a_run_that_compiled_is_not_timed(measured, monkeypatch):
    speeds, _ = measured
    speeds[1] = {"sequential": 2.0, "scan": 1.0}
    durations = {"quiet": {"scan": 1.0, "sequential": 2.0}, "slow": {"scan": 500.0}}
    chosen = runs_with(monkeypatch, durations, ["quiet", "slow", "quiet", "quiet"], compiles={1})
    assert chosen == ["scan"] * 4
