"""Solve a linear recurrence of 10**8 steps chunk by chunk from files on disk, with Dask.

``h[t] = a[t] * h[t-1] + b[t]``, a leaky integrator whose leak varies with time, over
``--steps`` steps. ``a``, ``b`` and the result ``h`` are stacks of ``.npy`` files on disk, one
per chunk of ``--chunk`` steps (``dask.array.to_npy_stack``; the inputs are written first if they
are missing). Each task reads its own chunk by file name (``dask.array.from_npy_stack``), so
neither the client nor any worker ever holds the whole sequence; ``scanlab.dask.linear_recurrence``
solves each chunk with scanlab's kernels and passes the chunks' summaries along. At 10**8 float64
steps the inputs and the result take 2.4 GB on disk.

Prints the time, the peak memory (resident set size) of this process and, with
``--scheduler distributed``, of each worker, and, with ``--check``, the largest difference from
``scanlab.linear_recurrence`` on the whole sequence in memory.

Run: python examples/dask_long_sequence.py [--steps N] [--chunk C] [--scheduler threads]
     [--workers W] [--directory DIR] [--check]
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


def peak_memory_mb() -> float:
    """This process's peak resident set size, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_inputs(directory: pathlib.Path, steps: int, chunk: int) -> None:
    """The stacks ``a`` and ``b`` of ``steps`` float64 values, generated a chunk at a time."""
    rng = da.random.default_rng(0)
    da.to_npy_stack(directory / "a", 1 - 10 ** rng.uniform(-4, -2, steps, chunks=chunk))
    da.to_npy_stack(directory / "b", rng.standard_normal(steps, chunks=chunk))


def load(directory: pathlib.Path, name: str):
    """The stack ``name`` as a Dask array read chunk by chunk (into memory, not mapped)."""
    return da.from_npy_stack(directory / name, mmap_mode=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10**8)
    parser.add_argument("--chunk", type=int, default=10**7, help="steps per chunk (10**7)")
    parser.add_argument("--scheduler", choices=["threads", "distributed"], default="threads")
    parser.add_argument("--workers", type=int, default=2, help="distributed worker processes")
    parser.add_argument("--directory", type=pathlib.Path, help="for the files (default: a temp)")
    parser.add_argument("--check", action="store_true", help="compare with the in-memory solve")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.directory or pathlib.Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        chunks = da.core.normalize_chunks(args.chunk, (args.steps,))
        if not (directory / "a").exists() or load(directory, "a").chunks != chunks:
            write_inputs(directory, args.steps, args.chunk)
        h = scanlab.dask.linear_recurrence(load(directory, "a"), load(directory, "b"))
        output = directory / "h"
        client = None
        if args.scheduler == "distributed":
            import distributed

            cluster = distributed.LocalCluster(
                n_workers=args.workers, threads_per_worker=1, dashboard_address=None
            )
            client = distributed.Client(cluster)
        start = time.perf_counter()
        da.to_npy_stack(output, h)  # on the client's cluster if there is one, else threads
        seconds = time.perf_counter() - start
        print(
            f"steps={args.steps} chunks={len(h.chunks[0])} scheduler={args.scheduler} "
            f"seconds={seconds:.2f} steps_per_second={args.steps / seconds:.3g}"
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
            expected = scanlab.linear_recurrence(
                load(directory, "a").compute(), load(directory, "b").compute()
            )
            print(f"max |dask - in memory| = {np.max(np.abs(solved - expected)):.3g}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
