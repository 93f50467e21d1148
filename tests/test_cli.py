"""The scanlab command and the benchmark helpers behind it."""

import math
import os
import pathlib
import re
import runpy
import subprocess
import sys

import numba
import numpy as np
import pytest
import reference
from conftest import fast_thread_switching
from numba import cuda

import scanlab
from scanlab import cli, config
from scanlab.bench import linear, matrix, nonlinear, spread, tables, tanh_cell

SCRIPTS = pathlib.Path(__file__).parents[1] / "benchmarks"


def markdown_header(table: str) -> list[str]:
    """The column names of a Markdown table (its first line)."""
    return [name.strip() for name in table.splitlines()[0].strip("|").split("|")]


def test_info_reports_versions_and_devices(capsys):
    cli.main(["info"])
    printed = capsys.readouterr().out
    for name in ("scanlab", "numba", "numpy", "scipy", "cuda"):
        assert name in printed


def test_python_dash_m_runs_the_command():
    completed = subprocess.run(
        [sys.executable, "-m", "scanlab", "info"], capture_output=True, text=True, check=True
    )
    assert "threads" in completed.stdout


def test_info_says_where_the_compiled_kernels_are_kept(tmp_path):
    """Numba's cache folder (NUMBA_CACHE_DIR when set, else next to the source) and how many
    kernels it holds: none in a fresh folder, all of those a call compiled afterwards."""
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "scanlab", "info"]
    fresh = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    line = next(line for line in fresh.stdout.splitlines() if line.startswith("compiled"))
    assert str(tmp_path) in line and " 0 of the " in line, line
    solve = "import numpy, scanlab; scanlab.linear_recurrence(0.5, numpy.ones(10))"
    subprocess.run([sys.executable, "-c", solve], env=environment, check=True)
    warm = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    line = next(line for line in warm.stdout.splitlines() if line.startswith("compiled"))
    assert " 0 of the " not in line, line


def test_unknown_command_is_refused():
    with pytest.raises(SystemExit):
        cli.main(["frobnicate"])


@pytest.mark.parametrize("module", cli.BENCH_EXTRA_MODULES)
def test_bench_without_its_extra_names_it(capsys, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--quick"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.splitlines()
    assert len(message) == 1 and module in message[0] and "scanlab[bench]" in message[0]


def test_one_benchmark_row_is_complete_and_consistent():
    row = linear.measure_cpu_case(1000, 3, np.float32, repeats=1)
    assert (row["T"], row["D"], row["dtype"]) == (1000, 3, "float32")
    assert row["method"] in ("sequential", "scan")
    for column in ("ms", "GB/s", "multiply GB/s", "of multiply", "x NumPy loop", "x Numba loop"):
        assert row[column] > 0
    assert row["GB/s"] == pytest.approx(3 * 1000 * 3 * 4 / (row["ms"] / 1e3) / 1e9)
    table = tables.format_table([row], linear.CPU_COLUMNS)
    assert table.splitlines()[0].split()[:2] == ["T", "D"]
    markdown = tables.format_table([row], linear.CPU_COLUMNS, markdown=True).splitlines()
    assert markdown_header(markdown[0]) == [name for name, _ in linear.CPU_COLUMNS]
    assert re.fullmatch(r"(\|-+:)+\|", markdown[1])  # right-aligned, as in RESULTS.md
    assert len(markdown) == 3


def test_numba_loop_baseline_is_the_recurrence():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, (50, 2)), rng.normal(size=(50, 2))
    out = np.empty_like(b)
    linear.numba_loop(a, b, out)
    expected = np.empty_like(b)
    linear.numpy_loop(a, b, expected, 50)
    np.testing.assert_allclose(out, expected)


@pytest.mark.skipif(cuda.is_available(), reason="a CUDA device (or the simulator) is here")
@pytest.mark.parametrize("options", [[], ["--nonlinear"]])
def test_gpu_benchmark_without_a_gpu_says_so(options):
    with pytest.raises(SystemExit, match="device='cpu'"):
        cli.main(["bench", "--device", "cuda", "--quick", *options])


@pytest.mark.parametrize("per_step", [True, False])
def test_one_matrix_benchmark_row_is_complete_and_consistent(per_step):
    row = matrix.measure_cpu_case(3, 500, per_step, np.float64, repeats=1)
    assert (row["n"], row["T"], row["dtype"]) == (3, 500, "float64")
    assert row["A"] == ("per step" if per_step else "constant")
    for column in ("ms", "GB/s", "GFLOP/s", "x NumPy loop", "x Numba loop", "scan speedup"):
        assert row[column] > 0
    matrix_bytes = 8 * 9 * (500 if per_step else 1)
    assert row["GB/s"] == pytest.approx((matrix_bytes + 2 * 8 * 3 * 500) / row["ms"] / 1e6)
    table = tables.format_table([row], matrix.CPU_COLUMNS, markdown=True)
    assert markdown_header(table)[:2] == ["n", "T"]


@pytest.mark.parametrize("per_step", [True, False])
def test_matrix_baselines_are_the_recurrence(per_step):
    rng = np.random.default_rng(2)
    a = rng.uniform(-0.5, 0.5, (40 if per_step else 1, 3, 3))
    b = rng.normal(size=(40, 3))
    out, expected = np.empty_like(b), np.empty_like(b)
    matrix.numba_loop(a, b, out)
    matrix.numpy_loop(a, b, expected, 40)
    np.testing.assert_allclose(out, expected)
    np.testing.assert_allclose(out, scanlab.linear_recurrence_matrix(a if per_step else a[0], b))


@pytest.mark.parametrize("options", [["--matrix"], ["--nonlinear"], ["--device", "cuda"]])
def test_plot_is_only_for_the_elementwise_cpu_sweep(options):
    with pytest.raises(SystemExit, match="2"):
        cli.main(["bench", "--plot", "x.png", *options])


def test_nonlinear_and_matrix_benchmarks_exclude_each_other():
    with pytest.raises(SystemExit, match="2"):
        cli.main(["bench", "--nonlinear", "--quick", "--matrix"])


def test_one_nonlinear_benchmark_row_is_complete_and_consistent():
    row = nonlinear.measure_case("ElmanRNN", 3, 64, nonlinear.TimeBudget(), 1)
    assert (row["cell"], row["n"], row["T"]) == ("ElmanRNN", 3, 64)
    assert int(row["newton its"]) <= int(row["quasi its"])
    for column in ("sequential ms", "newton ms", "quasi ms", "newton x seq", "seq x NumPy"):
        assert row[column] > 0
    assert row["newton x seq"] == pytest.approx(row["sequential ms"] / row["newton ms"])
    assert row["max error"] < 1e-9
    table = tables.format_table([row], nonlinear.CPU_COLUMNS, markdown=True)
    assert markdown_header(table)[:3] == ["cell", "n", "T"]


def test_nonlinear_benchmark_marks_what_it_skips():
    budget = nonlinear.TimeBudget(seconds=0.0)
    row = nonlinear.measure_case("ElmanRNN", 3, 64, budget, 1, jacobian_bytes_limit=0)
    assert row["newton ms"] == row["quasi ms"] == "skipped (memory)"
    assert row["sequential ms"] > 0 and row["newton x seq"] == row["max error"] == "-"
    row = nonlinear.measure_case("ElmanRNN", 3, 128, budget, 1)
    assert row["sequential ms"] == "skipped (time)"
    assert row["newton ms"] > 0  # skipped for its memory at 64 steps: no time to scale
    assert "skipped (time)" in tables.format_table([row], nonlinear.CPU_COLUMNS)


def test_iteration_table_counts_newton_at_pararnns_initialisation(monkeypatch):
    monkeypatch.setattr(nonlinear, "ITERATION_CELLS", ("ParaLSTM",))
    rows = nonlinear.iteration_table(sizes=(2,), lengths=(16,), show_progress=False)
    assert [(row["dtype"], row["tol"]) for row in rows] == [("float32", 1e-5), ("float64", 1e-12)]
    for row in rows:
        assert list(row) == [name for name, _ in nonlinear.ITERATION_COLUMNS]
        assert (row["cell"], row["n"], row["T"], row["paper its"]) == ("ParaLSTM", 2, 16, "3-4")
        assert 1 <= int(row["newton its"]) <= 8 and row["residual at 3 its"] < 1e-3
    table = tables.format_table(rows, nonlinear.ITERATION_COLUMNS, markdown=True)
    assert markdown_header(table)[-1] == "paper its"


@pytest.mark.parametrize(
    "name, reference_step",
    [("ElmanRNN", reference.elman_step), ("ParaGRU", reference.gru_step),
     ("ParaLSTM", reference.lstm_step)],
)  # fmt: skip
def test_nonlinear_numpy_loops_are_the_cells(name, reference_step):
    cell = nonlinear.CELLS[name](4, 3, seed=1)
    x = np.random.default_rng(3).standard_normal((30, 3))
    out = np.empty((30, cell.state_size))
    nonlinear.numpy_loop(cell, x, out, 30)
    expected = reference.nonlinear_recurrence(reference_step(cell), x, np.zeros(cell.state_size))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)


def test_bench_nonlinear_quick_prints_both_tables(capsys, monkeypatch):
    monkeypatch.setattr(nonlinear, "CELLS", {"ParaGRU": scanlab.cells.ParaGRU})
    monkeypatch.setattr(nonlinear, "QUICK_LENGTHS", (32,))
    monkeypatch.setattr(tanh_cell, "QUICK_TANH_LENGTH", 64)
    cli.main(["bench", "--nonlinear", "--quick", "--no-progress"])
    printed = capsys.readouterr().out
    assert "ParaGRU" in printed and "= newton" in printed
    assert "jax.lax.scan" in printed and "Numba loop, math.tanh" in printed


def test_nonlinear_benchmark_probes_before_its_first_length():
    cell = nonlinear.benchmark_cell("ElmanRNN", 3)
    x = np.random.default_rng(0).standard_normal((64, 2, nonlinear.INPUT_SIZE))
    budget = nonlinear.TimeBudget(seconds=0.0)
    methods = {"loop": ("sequential", "cpu")}
    times, results, skipped = nonlinear.time_methods(
        cell, x, methods, budget, ("case",), 1, 2**30, probe_length=8
    )
    assert times == results == {} and skipped == {"loop": "skipped (time)"}
    probe_length, seconds = budget.last["case", "loop"]
    assert probe_length == 8 and seconds > 0


def test_gpu_nonlinear_benchmark_skips_what_does_not_fit():
    budget = nonlinear.TimeBudget()
    row = nonlinear.measure_gpu_case("ParaGRU", 3, 2, 64, budget, 1, bytes_limit=0)
    assert (row["cell"], row["n"], row["batch"], row["T"]) == ("ParaGRU", 3, 2, 64)
    assert row["CPU seq ms"] == row["GPU seq ms"] == row["newton ms"] == "skipped (memory)"
    assert row["quasi ms"] == "= newton"
    assert row["copy in ms"] == row["newton x CPU seq"] == row["max error"] == "-"
    table = tables.format_table([row], nonlinear.GPU_COLUMNS, markdown=True)
    assert markdown_header(table)[:4] == ["cell", "n", "batch", "T"]
    assert "skipped (memory)" in table


@pytest.mark.parametrize(
    "options, block, writes",
    [
        ([], "nonlinear-cpu-table", True),
        (["--quick"], "nonlinear-cpu-table", False),
        (["--device", "cuda"], "nonlinear-cuda-table", not numba.config.ENABLE_CUDASIM),
        (["--device", "cuda", "--quick"], "nonlinear-cuda-table", False),
    ],
)
def test_nonlinear_script_writes_only_full_measurements(monkeypatch, options, block, writes):
    script = runpy.run_path(str(SCRIPTS / "nonlinear.py"))
    monkeypatch.setattr(
        nonlinear, "device_report", lambda *_, **__: ("machine", "table", ["notes"])
    )
    recorded = []

    def record_results(path, name, machine, table, notes=(), write=True):
        recorded.append((name, write))

    monkeypatch.setattr(tables, "record_results", record_results)
    monkeypatch.setattr(sys, "argv", ["nonlinear.py", *options])
    script["main"]()
    assert recorded == [(block, writes)]


@pytest.mark.cuda
@pytest.mark.skipif(not cuda.is_available(), reason="needs a CUDA GPU or the simulator")
def test_one_gpu_benchmark_row_is_complete_and_consistent(small_chunks):
    with fast_thread_switching():
        row = linear.measure_gpu_case(24, 3, np.float32, repeats=1)
    assert (row["T"], row["D"], row["dtype"], row["method"]) == (24, 3, "float32", "scan")
    for column in ("ms", "API ms", "API time-last ms", "VJP ms", "GB/s", "copy GB/s", "of copy"):
        assert row[column] > 0
    for column in ("1-pass ms", "x sequential kernel", "x launch loop"):
        assert row[column] > 0
    assert row["of copy"] == pytest.approx(row["GB/s"] / row["copy GB/s"])
    assert row["1-pass of copy"] == pytest.approx(row["of copy"] * row["ms"] / row["1-pass ms"])
    assert row["1-pass diff"] < 1e-6  # two tiles of 16 (small_chunks): the look-back ran
    for column in ("x jax scan", "x cupy cumsum"):
        assert math.isnan(row[column]) or row[column] > 0
    table = tables.format_table([row], linear.GPU_COLUMNS, markdown=True)
    assert markdown_header(table)[:2] == ["T", "D"]


@pytest.mark.cuda
@pytest.mark.skipif(not cuda.is_available(), reason="needs a CUDA GPU or the simulator")
def test_one_gpu_matrix_benchmark_row_is_complete_and_consistent():
    with fast_thread_switching():
        row = matrix.measure_gpu_case(3, 20, np.float32, repeats=1)
    assert (row["n"], row["T"], row["dtype"]) == (3, 20, "float32")
    for column in ("ms", "GB/s", "copy GB/s", "of copy", "x sequential kernel"):
        assert row[column] > 0
    assert row["of copy"] == pytest.approx(row["GB/s"] / row["copy GB/s"])
    jax_ratio = row["x jax scan"]
    assert math.isnan(jax_ratio) or jax_ratio > 0
    table = tables.format_table([row], matrix.GPU_COLUMNS, markdown=True)
    assert markdown_header(table)[:2] == ["n", "T"]


@pytest.mark.cuda
@pytest.mark.skipif(not cuda.is_available(), reason="needs a CUDA GPU or the simulator")
def test_launch_loop_baseline_is_the_recurrence():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(-1, 1, (9, 3)), rng.normal(size=(9, 3))
    out = cuda.device_array((9, 3))
    with fast_thread_switching():
        linear.launch_loop(
            cuda.to_device(a), cuda.to_device(b), cuda.to_device(np.zeros(3)), out, 9
        )
    expected = np.empty_like(b)
    linear.numpy_loop(a, b, expected, 9)
    np.testing.assert_allclose(out.copy_to_host(), expected)


@pytest.mark.cuda
@pytest.mark.skipif(not cuda.is_available(), reason="needs a CUDA GPU or the simulator")
def test_one_gpu_nonlinear_benchmark_row_is_complete_and_consistent(monkeypatch):
    monkeypatch.setattr(config.cuda, "threads_per_block", 8)  # fewer simulated threads
    budget = nonlinear.TimeBudget()
    with fast_thread_switching():
        row = nonlinear.measure_gpu_case("ElmanRNN", 3, 2, 12, budget, 1, 2**30, 4)
    assert (row["cell"], row["n"], row["batch"], row["T"]) == ("ElmanRNN", 3, 2, 12)
    assert int(row["newton its"]) <= int(row["quasi its"])
    for column in ("CPU seq ms", "GPU seq ms", "newton ms", "quasi ms", "copy in ms"):
        assert row[column] > 0
    assert row["newton x GPU seq"] == pytest.approx(row["GPU seq ms"] / row["newton ms"])
    assert row["quasi x CPU seq"] == pytest.approx(row["CPU seq ms"] / row["quasi ms"])
    assert row["max error"] < 1e-4  # float32, to the default tolerance 1e-5
    assert [key[-1] for key in budget.last] == list(nonlinear.GPU_METHODS)


@pytest.mark.cuda
@pytest.mark.skipif(not cuda.is_available(), reason="needs a CUDA GPU or the simulator")
def test_bench_nonlinear_on_the_gpu_quick_prints_both_tables(capsys, monkeypatch):
    # ParaGRU's and ParaLSTM's steps call compiled helpers on arrays: the simulator cannot run them.
    monkeypatch.setattr(nonlinear, "CELLS", {"ElmanRNN": scanlab.cells.ElmanRNN})
    monkeypatch.setattr(config.cuda, "threads_per_block", 8)  # fewer simulated threads
    # No method skipped for time: the simulator's speed depends on the machine's load.
    monkeypatch.setattr(nonlinear, "GPU_CALL_SECONDS_LIMIT", float("inf"))
    with fast_thread_switching():
        cli.main(["bench", "--nonlinear", "--device", "cuda", "--quick", "--no-progress"])
    printed = capsys.readouterr().out
    table = printed.split("float32 (the GPU's case)")[0]
    assert table.count("ElmanRNN") == 8 and "skipped" not in table
    assert "GPU seq ms" in table and "copy out ms" in table
    assert "jax.lax.associative_scan" in printed and "one copy of h to the host" in printed


@pytest.mark.parametrize("layout", ["time-first", "time-last"])
def test_the_spread_rows_of_a_shape_are_complete_and_consistent(layout):
    rows = spread.measure_spread_shape(4, np.float64, layout, 2**12, 1)
    assert [row["a"] for row in rows] == list(spread.DISTRIBUTIONS)
    for row in rows:
        assert [name for name, _ in spread.SPREAD_COLUMNS] == list(row)
        assert row["best"] in ("sequential", "scan") and row["layout"] == layout
        assert 0 < row["best ms"] <= row["auto ms"] / row["auto/best"] * 1.0001


@pytest.mark.parametrize("distribution", ["0.9", "U(0.5,1)", "U(-1,1)", "complex, modulus<1"])
def test_spread_distributions_are_what_they_say(distribution):
    a = spread.coefficients(distribution, (1000, 2), np.float32, np.random.default_rng(0))
    assert a.shape == (1000, 2)
    assert a.dtype == (np.complex64 if distribution.startswith("complex") else np.float32)
    assert np.abs(a).max() < 1 and (np.abs(a).min() >= 0.5 or distribution == "U(-1,1)")
