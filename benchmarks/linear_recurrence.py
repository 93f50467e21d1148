"""Benchmark linear_recurrence (or linear_recurrence_matrix) and record it in RESULTS.md.

Usage: python benchmarks/linear_recurrence.py [--device cpu|cuda] [--matrix | --spread] [--quick]

The table replaces the block between the ``cpu-table`` (``cuda-table``, ``matrix-cpu-table``,
``matrix-cuda-table``, ``spread-table``) markers of benchmarks/RESULTS.md; the analysis around
it is written by hand from the numbers.
"""

import argparse
import pathlib

from scanlab.bench import linear, matrix, spread, tables

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")


def per_dtype(rows: list[dict], column: str, template: str) -> str:
    """``column`` of each row, formatted with ``template`` and labelled with its dtype."""
    return ", ".join(f"{template.format(row[column])} ({row['dtype']})" for row in rows)


def gpu_targets(rows: list[dict]) -> list[str]:
    """The CUDA issue's target, checked against the measured rows."""
    lowest = min(row["of copy"] for row in rows)
    single_pass = min(row["1-pass of copy"] for row in rows)
    difference = max(row["1-pass diff"] for row in rows)
    return [
        f"- >= 0.7 of the device's copy bandwidth at every D: lowest {lowest:.2f}",
        f"- the single-pass look-back scan (config.cuda.single_pass_scan): lowest "
        f"{single_pass:.2f} of copy; largest difference from the reduce-then-scan "
        f"{difference:.1e} of the largest state",
    ]


def cpu_targets(rows: list[dict]) -> list[str]:
    """The foundation issue's CPU targets, checked against the measured rows."""
    wide = [row for row in rows if row["D"] >= 16]
    series = [row for row in rows if row["D"] == 1 and row["T"] == 2**24]
    loop = [row for row in rows if (row["T"], row["D"]) == (2**14, 64)]
    lowest = min(row["of multiply"] for row in wide)
    lines = [f"- >= 0.8 of numpy.multiply's bandwidth at every D >= 16: lowest {lowest:.2f}"]
    if series:
        measured = per_dtype(series, "x lfilter", "{:.1f}x")
        lines.append(f"- >= 1.5x scipy.signal.lfilter on one series of 2**24 steps: {measured}")
    if loop:
        measured = per_dtype(loop, "x NumPy loop", "{:.0f}x")
        lines.append(f"- >= 30x a per-step NumPy loop at T=2**14, D=64: {measured}")
    return lines


def matrix_targets(rows: list[dict]) -> list[str]:
    """The matrix issue's comparisons, summarised from the measured rows."""
    loop = ", ".join(f"{row['x Numba loop']:.2f}x (n={row['n']}, {row['A']})" for row in rows)
    scan = ", ".join(f"{row['scan speedup']:.2f} (n={row['n']}, {row['A']})" for row in rows)
    return [f"- against the sequential Numba loop: {loop}", f"- scan against sequential: {scan}"]


def matrix_gpu_summary(rows: list[dict]) -> list[str]:
    """The GPU rows of the matrix issue, summarised."""
    sequential = ", ".join(
        f"{row['x sequential kernel']:.1f}x (n={row['n']}, {row['method']})" for row in rows
    )
    return [f"- method='auto' against the sequential kernel: {sequential}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--matrix", action="store_true", help="linear_recurrence_matrix")
    parser.add_argument(
        "--spread", action="store_true", help="distributions x layouts x a busy core (CPU)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (does not write)")
    arguments = parser.parse_args()
    if arguments.spread:
        record_spread(arguments.quick)
        return
    table = arguments.device
    if arguments.matrix and arguments.device == "cuda":
        rows = matrix.gpu_table(quick=arguments.quick)
        machine, columns = tables.gpu_description(), matrix.GPU_COLUMNS
        targets, table = matrix_gpu_summary, "matrix-cuda"
    elif arguments.matrix:
        rows = matrix.cpu_table(quick=arguments.quick)
        machine, columns = tables.machine_description(), matrix.CPU_COLUMNS
        targets, table = matrix_targets, "matrix-cpu"
    elif arguments.device == "cuda":
        rows = linear.gpu_table(quick=arguments.quick)
        machine, columns, targets = tables.gpu_description(), linear.GPU_COLUMNS, gpu_targets
    else:
        rows = linear.cpu_table(quick=arguments.quick)
        machine, columns = tables.machine_description(), linear.CPU_COLUMNS
        targets = cpu_targets
    heading = "Summary, from this table:" if arguments.matrix else "Targets, from this table:"
    tables.record_results(
        RESULTS,
        f"{table}-table",
        machine,
        tables.format_table(rows, columns, markdown=True),
        notes=[heading, *targets(rows)],
        write=not arguments.quick,
    )


def record_spread(quick: bool) -> None:
    """The spread grid, quiet and next to a busy core, with the headline ratios."""
    quiet = spread.spread_table(quick=quick)
    busy = spread.spread_table(quick=quick, busy=True)
    for quiet_row, busy_row in zip(quiet, busy, strict=True):
        quiet_row["busy auto ms"] = busy_row["auto ms"]
        quiet_row["busy auto/best"] = busy_row["auto/best"]
    columns = spread.SPREAD_COLUMNS + (
        ("busy auto ms", "{:.2f}"),
        ("busy auto/best", "{:.2f}"),
    )
    notes = ["Targets, from this table:"]
    notes += spread.spread_summary(quiet, busy)
    notes += spread.headline_ratios(quick)
    tables.record_results(
        RESULTS,
        "spread-table",
        tables.machine_description(),
        tables.format_table(quiet, columns, markdown=True),
        notes=notes,
        write=not quick,
    )


if __name__ == "__main__":
    main()
