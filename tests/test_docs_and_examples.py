"""The docstring examples and the scripts in examples/ run and say what they claim."""

import doctest
import pathlib
import subprocess
import sys

import scanlab.linear

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"


def test_docstring_examples_run():
    failures, tried = doctest.testmod(scanlab.linear, optionflags=doctest.NORMALIZE_WHITESPACE)
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
