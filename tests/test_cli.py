"""The scanlab command and the benchmark helpers behind it."""

import subprocess
import sys

import numpy as np
import pytest

from scanlab import benchmark, cli


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


def test_unknown_command_is_refused():
    with pytest.raises(SystemExit):
        cli.main(["frobnicate"])


def test_one_benchmark_row_is_complete_and_consistent():
    row = benchmark.measure_cpu_case(1000, 3, np.float32, repeats=1)
    assert (row["T"], row["D"], row["dtype"]) == (1000, 3, "float32")
    assert row["method"] in ("sequential", "scan")
    for column in ("ms", "GB/s", "multiply GB/s", "of multiply", "x NumPy loop", "x Numba loop"):
        assert row[column] > 0
    assert row["GB/s"] == pytest.approx(3 * 1000 * 3 * 4 / (row["ms"] / 1e3) / 1e9)
    table = benchmark.format_table([row])
    assert table.splitlines()[0].split()[:2] == ["T", "D"]
    assert "| T | D |" in benchmark.format_table([row], markdown=True)


def test_numba_loop_baseline_is_the_recurrence():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, (50, 2)), rng.normal(size=(50, 2))
    out = np.empty_like(b)
    benchmark.numba_loop(a, b, out)
    expected = np.empty_like(b)
    benchmark.numpy_loop(a, b, expected, 50)
    np.testing.assert_allclose(out, expected)
