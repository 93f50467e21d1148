"""Compiled kernels are kept in Numba's on-disk cache across processes: a cell's kernels under a
description of the step that changes when its source does (``scanlab._kernel_cache``), and
every kernel where the package's own folder cannot be written (site-packages, containers)."""

import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from scanlab import _kernel_cache as kernel_cache
from scanlab import math as scanlab_math

#: Run in a new process: a user's cell from the module ``decay`` next to it, solved by Newton
#: and by the loop; prints the results and the functions Numba compiled.
SCRIPT = """
import json
import numpy as np
import scanlab
from numba.core import event
from decay import step

compiled = []
class Recorder(event.Listener):
    def on_start(self, data):
        compiled.append(data.data["dispatcher"].py_func.__qualname__.rsplit(".", 1)[-1])
    def on_end(self, data):
        pass
event.register("numba:compile", Recorder())
cell = scanlab.cell(step, structure="diagonal")
x = np.linspace(-1.0, 1.0, 64).reshape(32, 2)
newton = scanlab.nonlinear_recurrence(cell, x, np.zeros(2), method="newton")
loop = scanlab.nonlinear_recurrence(cell, x, np.zeros(2), method="sequential")
print(json.dumps({"newton": newton.tolist(), "loop": loop.tolist(), "compiled": compiled}))
"""

STEP = """
def step(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = {factor} * h_prev[i] + x_t[i]
"""


def run_in_new_process(directory, factor: float) -> dict:
    """The script's report in a new process whose Numba cache is under ``directory``, with the
    step's factor ``factor`` (its module rewritten when the factor changes)."""
    module = directory / "decay.py"
    source = STEP.format(factor=factor)
    if not module.exists() or module.read_text() != source:
        module.write_text(source)
        os.utime(module, ns=(1, int(factor * 1e9)))  # a new stamp even within one clock tick
    environment = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(directory / "cache"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join([str(directory), os.environ.get("PYTHONPATH", "")]),
    }
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=directory, env=environment, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    return json.loads(completed.stdout.strip().splitlines()[-1])


def expected(factor: float) -> np.ndarray:
    x = np.linspace(-1.0, 1.0, 64).reshape(32, 2)
    h, states = np.zeros(2), []
    for x_t in x:
        h = factor * h + x_t
        states.append(h)
    return np.array(states)


def test_a_cells_kernels_load_from_the_cache_in_a_new_process_until_its_step_changes(tmp_path):
    first = run_in_new_process(tmp_path, 0.5)
    assert {"step", "evaluate_tasks", "run_sequences"} <= set(first["compiled"])
    again = run_in_new_process(tmp_path, 0.5)
    assert again["compiled"] == []  # everything comes from the cache
    edited = run_in_new_process(tmp_path, 0.25)  # the same kernels, another step
    assert {"step", "evaluate_tasks", "run_sequences"} <= set(edited["compiled"])
    for report, factor in ((first, 0.5), (again, 0.5), (edited, 0.25)):
        np.testing.assert_allclose(report["newton"], expected(factor), rtol=1e-12)
        np.testing.assert_allclose(report["loop"], expected(factor), rtol=1e-12)


def test_closures_over_other_values_are_compiled_in_each_process():
    array = np.ones(3)

    def reads_an_array(x):
        return x + array[0]

    with pytest.raises(kernel_cache.Uncacheable):
        kernel_cache.describe(reads_an_array)
    dispatcher = kernel_cache.jit()(reads_an_array)
    assert dispatcher._cache.__class__.__name__ == "NullCache"
    assert dispatcher(1.0) == 2.0


def test_descriptions_follow_the_code_and_the_values_closed_over():
    def make(scale):
        def scaled(x):
            return scale * x

        return scaled

    def other(x):
        return 2.0 * x

    describe = kernel_cache.describe
    assert describe(make(2.0)) == describe(make(2.0))
    assert describe(make(2.0)) != describe(make(3.0))
    assert describe(make(2)) != describe(make(2.0))  # another type compiles otherwise
    assert describe(other) != describe(make(2.0))
    assert "(int:1, str:'a')" in describe(make((1, "a")))


#: Run in a new process: the first linear solve of a script; prints what Numba compiled.
FIRST_SOLVE = """
import json
import numpy as np
from numba.core import event
import scanlab

compiled = []
class Recorder(event.Listener):
    def on_start(self, data):
        compiled.append(data.data["dispatcher"].py_func.__qualname__)
    def on_end(self, data):
        pass
event.register("numba:compile", Recorder())
result = scanlab.linear_recurrence(0.5, np.ones(100))
print(json.dumps({"file": scanlab.__file__, "last": float(result[-1]), "compiled": compiled}))
"""


def test_a_package_folder_that_cannot_be_written_caches_in_the_users_cache(tmp_path):
    """Where scanlab is installed read-only, Numba keeps its kernels in the user's cache folder
    (``$XDG_CACHE_HOME/numba``): a second process loads them. Each package folder's
    ``__pycache__`` is a file here, so that no folder can be made in it, even by root."""
    package = tmp_path / "site-packages" / "scanlab"
    source = pathlib.Path(__file__).parents[1] / "scanlab"
    shutil.copytree(source, package, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [package, *[path for path in package.rglob("*") if path.is_dir()]]:
        (folder / "__pycache__").write_text("not a folder")
    environment = {name: value for name, value in os.environ.items() if name != "NUMBA_CACHE_DIR"}
    environment.update(
        PYTHONPATH=str(package.parent), PYTHONDONTWRITEBYTECODE="1",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )  # fmt: skip

    def run() -> dict:
        completed = subprocess.run(
            [sys.executable, "-c", FIRST_SOLVE], cwd=tmp_path, env=environment,
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(completed.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert first["file"] == str(package / "__init__.py")
    assert "run_series" in first["compiled"] and second["compiled"] == []
    assert first["last"] == second["last"] == 1.0 + 0.5 * (1.0 - 0.5**99) / 0.5
    assert list((tmp_path / "cache" / "numba").rglob("*.nbi"))


def uses_math(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = math.tanh(h_prev[i]) + x_t[i]


def test_a_steps_description_follows_scanlab_math():
    """A step calling ``math.tanh`` runs scanlab.math's (through ``MATH_FOR_CELLS``): its
    cached kernels must be compiled again when scanlab/math.py changes."""
    description = kernel_cache.describe(scanlab_math.vectorising(uses_math))
    assert f"module:scanlab.math.for_cells[{kernel_cache.file_stamp(scanlab_math.__file__)}]" in (
        description
    )


def test_kernels_saved_at_once_by_two_processes_never_swap_their_code(tmp_path):
    """Two processes read the index before either saved, write their kernels' data, then their
    indexes, the second's first. With Numba's numbered data files both wrote file 1 and the
    index left mapped the first's kernel to the second's code (a cell's loop once ran another
    cell's step so). Each kernel's data file is named after its key: an entry may be lost (the
    last index written wins), never pointed at the other's code."""
    deferred = []
    first, second = (kernel_cache.KeyedFiles(str(tmp_path), "kernel", "stamp") for _ in range(2))
    for files in (first, second):
        files._load_index = dict  # the index as it was before either saved
        files._save_index = lambda overloads, files=files: deferred.append((files, overloads))
    first.save(("signature A",), "code A")
    second.save(("signature B",), "code B")
    for files, overloads in reversed(deferred):
        kernel_cache.KeyedFiles._save_index(files, overloads)
    reader = kernel_cache.KeyedFiles(str(tmp_path), "kernel", "stamp")
    assert reader.load(("signature A",)) == "code A"
    assert reader.load(("signature B",)) in (None, "code B")
