"""Benchmark nonlinear_recurrence on the CPU or the GPU and record it in RESULTS.md.

Usage: python benchmarks/nonlinear.py [--device cpu|cuda] [--quick] [--iterations | --jax]

The built-in cells (ParaGRU, ParaLSTM, ElmanRNN) at T in 2**10, 2**14, 2**18 and n in 8, 64, 512.
On the CPU, one float64 sequence each: Newton's iterations and time against the compiled
sequential loop and a per-step NumPy loop; then the diagonal tanh cell against JAX's ``lax.scan``
and plain Numba loops. On the GPU (``--device cuda``), float32 batches of 1 and 64 sequences:
Newton and quasi-Newton on the GPU against the sequential loop on the GPU and on the CPU, and the
host-device copies the calls include; then the tanh cell against JAX's ``lax.scan`` and Newton
by ``lax.associative_scan``. The tables replace the ``nonlinear-cpu-table`` block (on the GPU
``nonlinear-cuda-table``) of benchmarks/RESULTS.md; the analysis around it is written by hand
from the numbers. ``--quick``, and the GPU under the CUDA simulator, only print.

``--iterations`` instead counts Newton's iterations for ParaGRU and ParaLSTM at ParaRNN's
initialisation (``init="pararnn"``), float32 and float64, n in 8, 64 and T in 2**10, 2**14, one
sequence each, beside the 3-4 its paper reports, and replaces the ``nonlinear-iterations-table``
block (a few seconds; counts, not times).

``--seconds S`` (the GPU) measures the tanh comparison, then the table's rows that start within
``S`` seconds of the start (``benchmarks/gpu_check.sh`` fits the run to a lease so).

``--jax`` instead compares ``method="auto"`` with JAX's ``lax.scan`` and a plain Numba loop on
the CPU (issue 22): the tanh cell, ParaGRU, ParaLSTM, ElmanRNN and a driven Lorenz system, float32
and float64, batches of 1 and 16, T = 2**15 (:mod:`scanlab.bench.jax_comparison`; JAX from the
``compare`` extra), and replaces the ``nonlinear-jax-table`` block (about two minutes). Without
JAX it prints a note and writes nothing.
"""

import argparse
import pathlib

import numba

from scanlab.bench import jax_comparison, nonlinear, tables

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes (does not write)")
    parser.add_argument(
        "--iterations", action="store_true", help="Newton's iterations at ParaRNN's initialisation"
    )
    parser.add_argument(
        "--jax", action="store_true", help="method='auto' against JAX's lax.scan (CPU)"
    )
    parser.add_argument(
        "--seconds", type=float, help="GPU: start no row of the table after this many seconds"
    )
    arguments = parser.parse_args()
    device, quick = arguments.device, arguments.quick
    if arguments.iterations:
        rows = nonlinear.iteration_table()
        table = tables.format_table(rows, nonlinear.ITERATION_COLUMNS, markdown=True)
        tables.record_results(
            RESULTS, "nonlinear-iterations-table", tables.machine_description(), table,
            notes=[nonlinear.ITERATION_NOTES], write=not quick,
        )  # fmt: skip
        return
    if arguments.jax:
        rows = jax_comparison.jax_table(quick=quick)
        table = tables.format_table(rows, jax_comparison.JAX_COLUMNS, markdown=True)
        tables.record_results(
            RESULTS, "nonlinear-jax-table", tables.machine_description(), table,
            notes=[jax_comparison.jax_notes(quick)], write=bool(rows) and not quick,
        )  # fmt: skip
        return
    machine, table, notes = nonlinear.device_report(
        device, quick, markdown=True, seconds=arguments.seconds
    )
    simulated = device == "cuda" and numba.config.ENABLE_CUDASIM
    tables.record_results(
        RESULTS,
        f"nonlinear-{device}-table",
        machine,
        table,
        notes=notes,
        write=not (quick or simulated),
    )


if __name__ == "__main__":
    main()
