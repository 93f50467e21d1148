"""Solve a linear recurrence of 10**8 steps chunk by chunk from files on disk, with Dask.

``h[t] = a[t] * h[t-1] + b[t]``, a leaky integrator whose leak varies with time, over
``--steps`` steps. ``a``, ``b`` and the result ``h`` are stacks of ``.npy`` files on disk, one
per chunk of ``--chunk`` steps (``dask.array.to_npy_stack``; the inputs are written first if they
are missing). Each task reads its own chunk by file name (``dask.array.from_npy_stack``), so
neither the client nor any worker ever holds the whole sequence; ``scanlab.dask.linear_recurrence``
solves each chunk with scanlab's kernels and passes the chunks' summaries along. At 10**8 float64
steps the inputs and the result take 2.4 GB on disk.

With ``--cell paragru`` the recurrence is instead a ParaGRU of 8 states over 8 standard normal
inputs per step (the stack ``x``), solved by ``scanlab.dask.nonlinear_recurrence`` with
``--strategy carry`` (each chunk's last state passed to the next) or ``newton`` (Newton's
iterations over the whole sequence, on the cluster).

Prints the time, the peak memory (resident set size) of this process and, with
``--scheduler distributed``, of each worker, and, with ``--check``, the largest difference from
``scanlab.linear_recurrence`` (or the sequential loop of ``scanlab.nonlinear_recurrence``) on the
whole sequence in memory. ``--repeat`` solves it several times (the first run compiles the
cell's kernels in every process).

Run: python examples/dask_long_sequence.py [--steps N] [--chunk C] [--scheduler threads]
     [--workers W] [--directory DIR] [--check] [--cell paragru] [--strategy newton]
     [--repeat R]
"""

import argparse
import pathlib
import resource
import sys
import tempfile
import time

import dask.array as da
import numpy as np

import scanlab
import scanlab.dask

#: The cell of ``--cell paragru``: 8 states, 8 inputs.
PARAGRU = scanlab.cells.ParaGRU(8, 8, seed=0)


def peak_memory_mb() -> float:
    """This process's peak resident set size, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_inputs(directory: pathlib.Path, steps: int, chunk: int, cell: str) -> None:
    """The stacks ``a`` and ``b`` (or ``x``) of ``steps`` float64 steps, a chunk at a time."""
    rng = da.random.default_rng(0)
    if cell == "paragru":
        x = rng.standard_normal((steps, PARAGRU.input_size), chunks=(chunk, -1))
        da.to_npy_stack(directory / "x", x)
        return
    da.to_npy_stack(directory / "a", 1 - 10 ** rng.uniform(-4, -2, steps, chunks=chunk))
    da.to_npy_stack(directory / "b", rng.standard_normal(steps, chunks=chunk))


def load(directory: pathlib.Path, name: str):
    """The stack ``name`` as a Dask array read chunk by chunk (into memory, not mapped)."""
    return da.from_npy_stack(directory / name, mmap_mode=None)


def solve(directory: pathlib.Path, cell: str, strategy: str):
    """The states (a Dask array) and, for Newton, its iterations."""
    if cell == "linear":
        return scanlab.dask.linear_recurrence(load(directory, "a"), load(directory, "b")), None
    x = load(directory, "x")
    if strategy == "carry":
        return scanlab.dask.nonlinear_recurrence(PARAGRU, x, None, strategy="carry"), None
    h, info = scanlab.dask.nonlinear_recurrence(
        PARAGRU, x, None, strategy="newton", full_output=True
    )
    return h, info.iterations


def in_memory(directory: pathlib.Path, cell: str) -> np.ndarray:
    """The whole sequence solved in memory."""
    if cell == "linear":
        return scanlab.linear_recurrence(
            load(directory, "a").compute(), load(directory, "b").compute()
        )
    x = load(directory, "x").compute()
    return scanlab.nonlinear_recurrence(PARAGRU, x, None, method="sequential")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10**8)
    parser.add_argument("--chunk", type=int, default=10**7, help="steps per chunk (10**7)")
    parser.add_argument("--scheduler", choices=["threads", "distributed"], default="threads")
    parser.add_argument("--workers", type=int, default=2, help="distributed worker processes")
    parser.add_argument("--directory", type=pathlib.Path, help="for the files (default: a temp)")
    parser.add_argument("--check", action="store_true", help="compare with the in-memory solve")
    parser.add_argument("--cell", choices=["linear", "paragru"], default="linear")
    parser.add_argument("--strategy", choices=["carry", "newton"], default="carry",
                        help="of the nonlinear recurrence (--cell paragru)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="solves, each timed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.directory or pathlib.Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        first = "x" if args.cell == "paragru" else "a"
        chunks = da.core.normalize_chunks(args.chunk, (args.steps,))
        if not (directory / first).exists() or load(directory, first).chunks[:1] != chunks:
            write_inputs(directory, args.steps, args.chunk, args.cell)
        output = directory / "h"
        client = None
        if args.scheduler == "distributed":
            import distributed

            cluster = distributed.LocalCluster(
                n_workers=args.workers, threads_per_worker=1, dashboard_address=None
            )
            client = distributed.Client(cluster)
        for _ in range(args.repeat):
            # On the client's cluster if there is one, else threads; Newton iterates in solve.
            start = time.perf_counter()
            h, iterations = solve(directory, args.cell, args.strategy)
            da.to_npy_stack(output, h)
            seconds = time.perf_counter() - start
            how = "" if args.cell == "linear" else f" strategy={args.strategy}"
            how += "" if iterations is None else f" iterations={iterations}"
            print(
                f"steps={args.steps} chunks={len(h.chunks[0])} scheduler={args.scheduler} "
                f"cell={args.cell}{how} seconds={seconds:.2f} "
                f"steps_per_second={args.steps / seconds:.3g}"
            )
        print(f"peak memory: this process {peak_memory_mb():.0f} MB")
        if client is not None:
            workers = client.run(peak_memory_mb)
            for name, value in sorted(workers.items()):
                print(f"peak memory: worker {name} {value:.0f} MB")
            client.close()
            cluster.close()
        if args.check:
            solved = load(directory, "h").compute()
            difference = np.max(np.abs(solved - in_memory(directory, args.cell)))
            print(f"max |dask - in memory| = {difference:.3g}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
