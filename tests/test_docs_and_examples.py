"""The docstring examples and the scripts in examples/ run and say what they claim."""

import doctest
import pathlib
import re
import subprocess
import sys

import pytest

import scanlab.gradients
import scanlab.linear

ROOT = pathlib.Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize("module", [scanlab.linear, scanlab.gradients], ids=lambda m: m.__name__)
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


def test_readme_quickstart_runs():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    # Every Python block but the call signatures, in order.
    runnable = [block for block in blocks if "h0=None, *" not in block]
    namespace = {}
    exec("\n".join(runnable), namespace)
    assert namespace["states"].shape == (10_000_000, 2)
    assert namespace["blocks"].shape == (5000, 1000, 2)
    assert namespace["filtered"].shape == (64, 100_000)
