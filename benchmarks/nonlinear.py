"""Benchmark nonlinear_recurrence on the CPU and record it in RESULTS.md.

Usage: python benchmarks/nonlinear.py [--quick]

The built-in cells (ParaGRU, ParaLSTM, ElmanRNN) at T in 2**10, 2**14, 2**18 and n in 8, 64, 512,
one float64 sequence each: Newton's iterations and time against the compiled sequential loop and
a per-step NumPy loop; then the diagonal tanh cell against JAX's ``lax.scan`` and plain Numba
loops. The tables replace the ``nonlinear-cpu-table`` block of benchmarks/RESULTS.md; the
analysis around it is written by hand from the numbers.
"""

import argparse
import pathlib

from scanlab import benchmark, benchmark_nonlinear

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (does not write)")
    quick = parser.parse_args().quick
    table, notes = benchmark_nonlinear.cpu_report(quick=quick, markdown=True)
    benchmark.record_results(
        RESULTS,
        "nonlinear-cpu-table",
        benchmark.machine_description(),
        table,
        notes=notes,
        write=not quick,
    )


if __name__ == "__main__":
    main()
