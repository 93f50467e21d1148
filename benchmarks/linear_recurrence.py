"""Benchmark linear_recurrence on the CPU and record the table in benchmarks/RESULTS.md.

Usage: python benchmarks/linear_recurrence.py [--quick]

The table replaces the block between the ``cpu-table`` markers of RESULTS.md; the analysis
around it is written by hand from the numbers.
"""

import argparse
import datetime
import pathlib
import re
import sys

from scanlab import benchmark

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")
START, END = "<!-- cpu-table:start -->", "<!-- cpu-table:end -->"


def per_dtype(rows: list[dict], column: str, template: str) -> str:
    """``column`` of each row, formatted with ``template`` and labelled with its dtype."""
    return ", ".join(f"{template.format(row[column])} ({row['dtype']})" for row in rows)


def targets(rows: list[dict]) -> list[str]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (does not write)")
    arguments = parser.parse_args()
    rows = benchmark.cpu_table(quick=arguments.quick)
    table = benchmark.format_table(rows, markdown=True)
    block = "\n".join(
        [
            START,
            f"Measured {datetime.date.today()} on {benchmark.machine_description()}.",
            f"Command: `python {' '.join(sys.argv)}`",
            "",
            table,
            "",
            "Targets of the foundation issue, from this table:",
            *targets(rows),
            END,
        ]
    )
    print(block)
    if arguments.quick:
        return
    text = RESULTS.read_text() if RESULTS.exists() else f"# Benchmark results\n\n{START}\n{END}\n"
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    RESULTS.write_text(pattern.sub(lambda _: block, text))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
