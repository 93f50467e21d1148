"""Benchmark scanlab.math against the C library and NumPy, and record it in RESULTS.md.

Usage: python benchmarks/math_functions.py [--quick]

Each function runs in a compiled loop over 2**22 elements (what a cell does), next to the same
loop calling Python's ``math`` module (which Numba compiles to one C-library call per element)
and NumPy's ufunc; then the diagonal tanh cell ``h[t] = tanh(w * h[t-1] + x[t])`` of 64
channels over 2**15 steps, in float64. The table replaces the ``math-table`` block.
"""

import argparse
import math
import pathlib
from functools import partial

import numpy as np
from numba import njit

from scanlab import math as smath
from scanlab.bench import tables
from scanlab.bench.tanh_cell import tanh_loop
from scanlab.bench.timing import best_times

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")
#: name: (scanlab.math function, the math-module function a user would call, NumPy's ufunc).
FUNCTIONS = {
    "exp": (smath.exp, math.exp, np.exp),
    "expm1": (smath.expm1, math.expm1, np.expm1),
    "tanh": (smath.tanh, math.tanh, np.tanh),
    "log": (smath.log, math.log, np.log),
    "log1p": (smath.log1p, math.log1p, np.log1p),
    "sin": (smath.sin, math.sin, np.sin),
    "cos": (smath.cos, math.cos, np.cos),
    "sigmoid": (
        smath.sigmoid,
        njit(lambda x: 1.0 / (1.0 + math.exp(-x))),
        lambda x, out: np.divide(1.0, 1.0 + np.exp(-x), out=out),
    ),
}
COLUMNS = (
    ("function", "{}"),
    ("dtype", "{}"),
    ("scanlab ns", "{:.2f}"),
    ("math ns", "{:.2f}"),
    ("NumPy ns", "{:.2f}"),
    ("x math", "{:.1f}"),
)


def elementwise(function):
    """A compiled loop applying ``function`` to every element."""

    @njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = function(x[i])

    return apply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer elements (does not write)")
    quick = parser.parse_args().quick
    size = 2**18 if quick else 2**22
    rng = np.random.default_rng(0)
    rows = []
    for name, (ours, libm, ufunc) in FUNCTIONS.items():
        for dtype in (np.float32, np.float64):
            low = 0.0 if name.startswith("log") else -5.0  # the logarithms' domain
            x = rng.uniform(low, 5, size).astype(dtype)
            out = np.empty_like(x)
            times = best_times(
                {
                    "scanlab": partial(elementwise(ours), x, out),
                    "math": partial(elementwise(libm), x, out),
                    "NumPy": partial(ufunc, x, out=out),
                },
                repeats=5,
            )
            rows.append(
                {
                    "function": name,
                    "dtype": np.dtype(dtype).name,
                    **{f"{key} ns": 1e9 * value / size for key, value in times.items()},
                    "x math": times["math"] / times["scanlab"],
                }
            )
    weights = rng.uniform(-1, 1, 64)
    inputs = rng.standard_normal((2**15, 64))
    states = np.empty_like(inputs)
    cell = best_times(
        {
            "scanlab.math.tanh": partial(tanh_loop(smath.tanh), weights, inputs, states),
            "math.tanh": partial(tanh_loop(math.tanh), weights, inputs, states),
        },
        repeats=5,
    )
    tables.record_results(
        RESULTS,
        "math-table",
        tables.machine_description(),
        tables.format_table(rows, COLUMNS, markdown=True),
        notes=[
            "The sequential diagonal tanh cell, 64 channels, 2**15 steps, float64: "
            f"{1e3 * cell['scanlab.math.tanh']:.1f} ms with `scanlab.math.tanh`, "
            f"{1e3 * cell['math.tanh']:.1f} ms with `math.tanh`."
        ],
        write=not quick,
    )


if __name__ == "__main__":
    main()
