"""Benchmark the vector-Jacobian products against their forward solves; record in RESULTS.md.

Usage: python benchmarks/gradients.py [--quick]

For each case, the forward solve and its VJP on the same arrays (operands in memory, float64),
and the VJP's cost as a multiple of the forward's. The table replaces the ``gradients-table``
block of benchmarks/RESULTS.md.
"""

import argparse
import pathlib
from functools import partial

import numpy as np

import scanlab
from scanlab import benchmark

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")
#: (label, solver, coefficient shape, result shape).
CASES = (
    ("elementwise, a per step", "linear_recurrence", (2**20, 16), (2**20, 16)),
    ("elementwise, scalar a", "linear_recurrence", (), (2**20, 16)),
    ("elementwise, one series", "linear_recurrence", (2**22,), (2**22,)),
    ("matrix n=4, A per step", "linear_recurrence_matrix", (2**18, 4, 4), (2**18, 4)),
    ("matrix n=16, constant A", "linear_recurrence_matrix", (16, 16), (2**16, 16)),
)
COLUMNS = (
    ("case", "{}"),
    ("shape", "{}"),
    ("forward ms", "{:.2f}"),
    ("vjp ms", "{:.2f}"),
    ("vjp / forward", "{:.1f}"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16x shorter (does not write)")
    quick = parser.parse_args().quick
    rng = np.random.default_rng(0)
    rows = []
    for label, solver, coefficient_shape, shape in CASES:
        if quick:
            if coefficient_shape[:1] == shape[:1]:  # coefficients per step
                coefficient_shape = (shape[0] // 16,) + coefficient_shape[1:]
            shape = (shape[0] // 16,) + shape[1:]
        size = shape[-1] if solver.endswith("matrix") else 1
        coefficients = rng.uniform(-0.9, 0.9, coefficient_shape) / np.sqrt(size)
        b = rng.standard_normal(shape)
        g = rng.standard_normal(shape)
        forward = getattr(scanlab, solver)
        h = forward(coefficients, b)
        times = benchmark.best_times(
            {
                "forward": partial(forward, coefficients, b, out=h),
                "vjp": partial(getattr(scanlab, f"{solver}_vjp"), coefficients, h, g),
            },
            repeats=5,
        )
        rows.append(
            {
                "case": label,
                "shape": "x".join(map(str, shape)),
                "forward ms": 1e3 * times["forward"],
                "vjp ms": 1e3 * times["vjp"],
                "vjp / forward": times["vjp"] / times["forward"],
            }
        )
    benchmark.record_results(
        RESULTS,
        "gradients-table",
        benchmark.machine_description(),
        benchmark.format_table(rows, COLUMNS, markdown=True),
        write=not quick,
    )


if __name__ == "__main__":
    main()
