"""scanlab: recurrences solved in parallel over the sequence length, on CPUs and GPUs.

The public API is :func:`linear_recurrence` and :func:`linear_recurrence_matrix`, their
gradients :func:`linear_recurrence_vjp` and :func:`linear_recurrence_matrix_vjp`,
:func:`nonlinear_recurrence` (Newton's method over the sequence) and its gradient
:func:`nonlinear_recurrence_vjp`, with :func:`cell` and the
built-in cells of ``scanlab.cells``, and the elementary functions of ``scanlab.math`` for
compiled cells; ``scanlab.rl`` holds discounted returns and GAE, ``scanlab.signal`` pandas'
exponentially weighted mean; ``scanlab.config`` holds the kernels' tunables.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# Numba's OpenMP threads spin for GOMP's default 300000 rounds before they sleep, at the end of
# every parallel region. Next to a busy neighbour those spins take the core from the thread
# that still has work: the CPU scan ran 5x slower than the loop with both cores loaded, and
# 1.3x with 2000 rounds (benchmarks/RESULTS.md). Read when the OpenMP runtime loads, at the
# first parallel kernel; a value set by the user wins.
os.environ.setdefault("GOMP_SPINCOUNT", "2000")

from scanlab import cells, rl, signal
from scanlab.cells import cell
from scanlab.gradients import (
    linear_recurrence_matrix_vjp,
    linear_recurrence_vjp,
    nonlinear_recurrence_vjp,
)
from scanlab.linear import linear_recurrence, linear_recurrence_matrix
from scanlab.nonlinear import ConvergenceError, NonlinearInfo, nonlinear_recurrence

try:
    __version__ = version("scanlab")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "ConvergenceError",
    "NonlinearInfo",
    "cell",
    "cells",
    "rl",
    "signal",
    "nonlinear_recurrence",
    "nonlinear_recurrence_vjp",
    "linear_recurrence",
    "linear_recurrence_matrix",
    "linear_recurrence_matrix_vjp",
    "linear_recurrence_vjp",
    "__version__",
]
