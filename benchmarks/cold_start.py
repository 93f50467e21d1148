"""Benchmark the cold start: each solver's first call in a fresh process; record in RESULTS.md.

Usage: python benchmarks/cold_start.py [--write] [--repeats N]

A fresh Python process with an empty Numba cache and no wisdom (``NUMBA_CACHE_DIR`` and
``XDG_CACHE_HOME`` a new directory) runs a script that times ``import scanlab`` and the first
call of each solver a script would make, in order; then a second process on what the first one
left times the same calls again (warm). Each pair runs ``N`` times (2 by default), in new
folders; the table gives the range. The calls are small but for one long series (for which
``auto`` runs the loop until it has spent ``config.cpu.calibrate_after`` seconds on its kind),
so the times are compilation (cold) or loading compiled code (warm). The table replaces the
``cold-start-table`` block of benchmarks/RESULTS.md with ``--write``.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

from scanlab.bench.tables import format_table, machine_description, record_results

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")

#: Run in the fresh process: prints one JSON object, call -> seconds.
CALLS = r"""
import json, time
start = time.perf_counter()
import numpy as np
import scanlab
seconds = {"import scanlab": time.perf_counter() - start}

def timed(label, call):
    start = time.perf_counter()
    call()
    seconds[label] = time.perf_counter() - start

series = np.random.default_rng(0).standard_normal(2**20)  # long: auto measures, then scans
timed("linear_recurrence float64", lambda: scanlab.linear_recurrence(0.9, series))
single = series.astype(np.float32)
timed("linear_recurrence float32", lambda: scanlab.linear_recurrence(0.9, single))
x = np.random.default_rng(0).standard_normal((1000, 3))
A = np.full((1000, 3, 3), 0.1)
timed("linear_recurrence_matrix 3x3", lambda: scanlab.linear_recurrence_matrix(A, x))
gru = scanlab.cells.ParaGRU(8, 3, seed=0)
h0 = np.zeros(8)
timed("nonlinear ParaGRU newton", lambda: scanlab.nonlinear_recurrence(gru, x, h0, method="newton"))

def leaky(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = 0.5 * h_prev[i] + scanlab.math.tanh(x_t[i] - h_prev[i])

own = scanlab.cell(leaky, structure="diagonal")
for method in ("newton", "sequential"):
    timed(f"own cell {method}", lambda: scanlab.nonlinear_recurrence(own, x, x[0], method=method))
print(json.dumps(seconds))
"""
COLUMNS = (("call", "{}"), ("cold s", "{}"), ("warm s", "{}"))


def fresh_process(folder: str) -> dict:
    """The seconds of each call in a new Python process running the calls as a script in
    ``folder`` (a user's script: its cell is defined in a file), with ``folder`` as Numba's
    cache and the user's cache (wisdom)."""
    script = os.path.join(folder, "first_calls.py")
    if not os.path.exists(script):
        with open(script, "w") as file:
            file.write(CALLS)
    environment = {**os.environ, "NUMBA_CACHE_DIR": folder, "XDG_CACHE_HOME": folder}
    completed = subprocess.run(
        [sys.executable, script], env=environment, capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def spread(values: list) -> str:
    """``values`` as ``low-high`` seconds (or one value)."""
    low, high = min(values), max(values)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="record the table in RESULTS.md")
    parser.add_argument("--repeats", type=int, default=2, help="cold and warm pairs (default 2)")
    arguments = parser.parse_args()
    runs = []
    for _ in range(arguments.repeats):
        with tempfile.TemporaryDirectory() as folder:
            cold = fresh_process(folder)
            runs.append((cold, fresh_process(folder)))
    for cold, warm in runs:
        for seconds in (cold, warm):
            seconds["total"] = sum(seconds.values())
    rows = [
        {
            "call": call,
            "cold s": spread([cold[call] for cold, _ in runs]),
            "warm s": spread([warm[call] for _, warm in runs]),
        }
        for call in runs[0][0]
    ]
    record_results(
        RESULTS,
        "cold-start-table",
        machine_description(),
        format_table(rows, COLUMNS, markdown=True),
        write=arguments.write,
    )


if __name__ == "__main__":
    main()
