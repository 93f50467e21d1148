"""The docstring examples and the scripts in examples/ run and say what they claim."""

import doctest
import pathlib
import re
import subprocess
import sys

import pytest

import scanlab.cells
import scanlab.cells.base
import scanlab.cells.builtin
import scanlab.cells.pararnn
import scanlab.gradients
import scanlab.linear
import scanlab.nn.layers
import scanlab.nn.newton_layers
import scanlab.nn.optim
import scanlab.nonlinear
import scanlab.rl
import scanlab.signal

ROOT = pathlib.Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize(
    "module",
    [
        scanlab.linear,
        scanlab.gradients,
        scanlab.nonlinear,
        scanlab.cells,
        scanlab.cells.base,
        scanlab.cells.builtin,
        scanlab.cells.pararnn,
        scanlab.nn.layers,
        scanlab.nn.newton_layers,
        scanlab.nn.operands,
        scanlab.nn.optim,
        scanlab.rl,
        scanlab.signal,
    ],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_run(module):
    failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0
    assert failures == 0


def test_smoothing_example_agrees_with_lfilter():
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "smooth_signal.py"), "--length", "20000"],
        capture_output=True,
        text=True,
        check=True,
    )
    differences = [
        float(line.rsplit("=", 1)[1]) for line in completed.stdout.splitlines() if "max |" in line
    ]
    assert len(differences) == 2
    assert max(differences) < 1e-12


def test_oscillator_example_agrees_with_scipy():
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "coupled_oscillators.py"), "--length", "20000"],
        capture_output=True,
        text=True,
        check=True,
    )
    differences = [
        float(line.rsplit(" ", 1)[1])
        for line in completed.stdout.splitlines()
        if "max |" in line or "max diff" in line
    ]
    assert len(differences) == 3
    assert max(differences) < 1e-9, completed.stdout


def run_example(script: str, *args: str) -> str:
    """The standard output of ``examples/script`` run with ``args``."""
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, check=True
    )
    return completed.stdout


def test_forced_oscillator_example_claims():
    stdout = run_example("forced_oscillator.py", "--steps", "1000")
    heavy_damping = stdout.split("\n2. ")[0]
    newton = re.findall(r"newton, (\w+) Jacobian .* converged (\w+)", heavy_damping)
    assert newton == [("automatic", "True"), ("analytic", "True")], stdout
    differences = re.findall(r"max \|newton - sequential\| = (\S+)", heavy_damping)
    assert len(differences) == 2, stdout
    assert max(map(float, differences)) < 1e-9, stdout
    # Euler's global error is O(dt): about 10 times smaller for dt / 10.
    ratios = re.findall(r"error ratio (\S+) for dt / 10", stdout)
    assert len(ratios) == 2, stdout
    assert all(8 < float(ratio) < 12 for ratio in ratios), stdout


#: A run of examples/logistic_map.py: its line and the comparison with the loop below it.
LOGISTIC_RUN = re.compile(
    r"^  (?P<label>\S.*?)\s+[\d.]+ ms .* converged\s*(?P<converged>\d+)/(?P<sequences>\d+)"
    r"\s+finished sequentially\s*(?P<sequential>\d+)/\d+.*\n"
    r".*max \|h - loop\| = (?P<difference>\S+); residual of h = (?P<residual>\S+)$",
    re.MULTILINE,
)


def test_logistic_map_example_claims():
    stdout = run_example("logistic_map.py", "--steps", "1000")
    sections = dict(re.findall(r"^r = ([\d.]+):(.*?)(?=^r = |\Z)", stdout, re.M | re.S))
    runs = {
        r: {match["label"]: match for match in LOGISTIC_RUN.finditer(section)}
        for r, section in sections.items()
    }
    assert sorted(runs) == ["2.8", "3.9"] and all(len(each) == 3 for each in runs.values()), stdout
    # r = 2.8 from a guess at the fixed point: every sequence converges, close to the loop.
    near = runs["2.8"]["newton, guess = 1 - 1/r"]
    assert near["converged"] == near["sequences"], stdout
    assert float(near["difference"]) < 1e-9, stdout
    # r = 3.9 (chaos): every run leaves every sequence to the loop, with residuals within tol.
    for run in runs["3.9"].values():
        assert run["sequential"] == run["sequences"], stdout
        assert float(run["residual"]) <= 1e-12, stdout
    assert "on_fail='raise': ConvergenceError: " in stdout


def test_readme_quickstart_runs():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    # Every Python block but the call signatures, in order.
    runnable = [block for block in blocks if ", *," not in block]
    namespace = {}
    exec("\n".join(runnable), namespace)
    assert namespace["states"].shape == (10_000_000, 2)
    assert namespace["blocks"].shape == (5000, 1000, 2)
    assert namespace["filtered"].shape == (64, 100_000)
    assert namespace["info"].converged and namespace["angles"].shape == (5000, 2)
    assert namespace["outputs"].shape == (1000, 8, 64)
    assert namespace["dx"].shape == (500, 2, 3) and namespace["dh0"].shape == (2, 16)
    assert namespace["optimizer"].steps == 1 and namespace["out"].shape == (200, 4, 8)
    assert namespace["smoothed"].chunks == ((100_000,) * 10, (2, 2))
    assert namespace["advantages"].dtype == namespace["value_targets"].dtype == "float32"
    assert namespace["returns"].shape == (2048, 16)
    assert namespace["smoothed_frame"].shape == (100_000, 100)
    assert namespace["band_passed"].shape == (64, 10_000) and namespace["state"].shape == (8, 64, 2)


def test_the_readmes_guarantees_cite_tests_that_exist():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What scanlab guarantees", 1)[1].split("\n## ", 1)[0]
    sources = "\n".join(path.read_text() for path in (ROOT / "tests").glob("test_*.py"))
    files = re.findall(r"`(tests/[\w/]+\.py)`", section)
    names = re.findall(r"`(test_\w+)`", section)
    assert files and names
    assert [name for name in files if not (ROOT / name).is_file()] == []
    assert [name for name in names if f"def {name}(" not in sources] == []


def test_filter_bank_example_streams_exactly():
    stdout = run_example("filter_bank.py", "--seconds", "5", "--channels", "3")
    differences = re.findall(
        r"max \|streamed - scipy whole\| = (\S+) \(scipy streamed: (\S+)\)", stdout
    )
    assert len(differences) == 4, stdout
    assert all(float(ours) == 0.0 for ours, _ in differences), stdout


def test_price_example_agrees_with_pandas():
    stdout = run_example("price_ewm.py", "--days", "400", "--tickers", "7")
    differences = re.findall(r"max \|scanlab - pandas\| / max \|pandas\| = (\S+)", stdout)
    assert len(differences) == 2 and max(map(float, differences)) < 1e-12, stdout


def test_rollout_example_agrees_with_the_loop():
    stdout = run_example("rollout_gae.py", "--steps", "300", "--environments", "5")
    differences = re.findall(r"max \|[^|]+\| = (\S+)", stdout)
    assert len(differences) == 3 and max(map(float, differences)) < 1e-5, stdout
