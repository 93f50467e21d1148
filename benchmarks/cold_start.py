"""Benchmark the cold start: each solver's first call in a fresh process; record in RESULTS.md.

Usage: python benchmarks/cold_start.py [--write]

A fresh Python process with an empty Numba cache and no wisdom (``NUMBA_CACHE_DIR`` and
``XDG_CACHE_HOME`` a new directory) times ``import scanlab`` and the first call of each solver
a script would make, in order; then a second process on what the first one left times the same
calls again (warm). The calls are small (but for one long series, for which ``auto`` measures
the scan against the loop), so the times are compilation and measurement (cold) or loading
compiled code (warm). The table
replaces the ``cold-start-table`` block of benchmarks/RESULTS.md with ``--write``.
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
COLUMNS = (("call", "{}"), ("cold s", "{:.2f}"), ("warm s", "{:.2f}"))


def fresh_process(cache: str) -> dict:
    """The seconds of each call in a new Python process using ``cache`` as Numba's cache."""
    environment = {**os.environ, "NUMBA_CACHE_DIR": cache, "XDG_CACHE_HOME": cache}
    completed = subprocess.run(
        [sys.executable, "-c", CALLS], env=environment, capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="record the table in RESULTS.md")
    write = parser.parse_args().write
    with tempfile.TemporaryDirectory() as cache:
        cold = fresh_process(cache)
        warm = fresh_process(cache)
    rows = [{"call": call, "cold s": cold[call], "warm s": warm[call]} for call in cold]
    rows.append({"call": "total", "cold s": sum(cold.values()), "warm s": sum(warm.values())})
    record_results(
        RESULTS,
        "cold-start-table",
        machine_description(),
        format_table(rows, COLUMNS, markdown=True),
        write=write,
    )


if __name__ == "__main__":
    main()
