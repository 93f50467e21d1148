"""The benchmarks' tables: formatted as text or Markdown, headed by the machine that measured them,
and recorded between the marker comments of ``benchmarks/RESULTS.md``."""

import datetime
import os
import pathlib
import platform
import re
import sys

import numba
import numpy as np
import scipy
from numba import cuda
from tabulate import tabulate

from scanlab import wisdom


def format_table(rows: list[dict], columns, markdown: bool = False) -> str:
    """``rows`` as an aligned text table, or a Markdown one; ``columns`` are (name, format),
    the format applied to numbers (a string, such as "skipped", is shown as it is). Every column
    is aligned to the right."""
    header = [name for name, _ in columns]
    cells = [
        [
            row[name] if isinstance(row[name], str) else template.format(row[name])
            for name, template in columns
        ]
        for row in rows
    ]
    return tabulate(
        cells,
        header,
        tablefmt="pipe" if markdown else "plain",
        colalign=("right",) * len(header),
        disable_numparse=True,
    )


def record_results(path, name: str, machine: str, table: str, notes=(), write=True) -> None:
    """Print the ``name`` block of RESULTS.md (machine, command, table, ``notes`` lines) and, if
    ``write``, replace the ``<!-- name:start -->`` ... ``<!-- name:end -->`` block of ``path``,
    or of the file named by the environment variable ``SCANLAB_RESULTS`` (a copy of RESULTS.md
    that comes back from a lent GPU: ``benchmarks/gpu_check.sh``)."""
    path = pathlib.Path(os.environ.get("SCANLAB_RESULTS") or path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    lines = [start, f"Measured {datetime.date.today()} on {machine}."]
    lines += [f"Command: `python {' '.join(sys.argv)}`", "", table]
    lines += ["", *notes] if notes else []
    block = "\n".join([*lines, end])
    print(block)
    if not write:
        return
    text = path.read_text()
    if start not in text:
        raise SystemExit(f"{path} has no {start} ... {end} block to replace")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    path.write_text(pattern.sub(lambda _: block, text))
    print(f"wrote {path}")


def cpu_description() -> str:
    """The CPU as Linux reports it (:func:`scanlab.wisdom.cpu_model`: name, family and model),
    the widest vector instructions and the data caches of one core."""
    flags = wisdom.cpu_fields().get("flags", "").split()
    vectors = next((name for flag, name in VECTOR_FLAGS if flag in flags), None)
    caches = [
        f"L{level}{'d' if kind == 'Data' else ''} {size // 1024}K"
        for level, kind, size in wisdom.cpu_caches()
        if kind != "Instruction"
    ]
    details = [text for text in (vectors, " ".join(caches)) if text]
    return ", ".join([wisdom.cpu_model(), *details])


#: The widest vector instructions a CPU flag announces, widest first.
VECTOR_FLAGS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("sse4_2", "SSE4.2"), ("asimd", "NEON"))


def machine_description() -> str:
    """CPU (:func:`cpu_description`), core count, threads and the versions that matter for the
    numbers."""
    try:
        layer = f"{numba.threading_layer()} layer"
    except ValueError:  # no parallel kernel has run yet
        layer = "threading layer not chosen yet"
    return (
        f"{cpu_description()}; {os.cpu_count()} cores, Numba {numba.__version__} with "
        f"{numba.get_num_threads()} threads ({layer}), "
        f"NumPy {np.__version__}, SciPy {scipy.__version__}, Python {platform.python_version()}"
    )


def gpu_description() -> str:
    """The GPU's name and compute capability, and the numba-cuda version."""
    if numba.config.ENABLE_CUDASIM:  # its device has no name
        return f"the CUDA simulator (NUMBA_ENABLE_CUDASIM=1), Numba {numba.__version__}"
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    return f"{name} (compute capability {device.compute_capability}), Numba {numba.__version__}"
