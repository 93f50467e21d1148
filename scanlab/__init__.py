"""scanlab: recurrences solved in parallel over the sequence length, on CPUs and GPUs.

The public API is :func:`linear_recurrence` and :func:`linear_recurrence_matrix`;
``scanlab.config`` holds the kernels' tunables.
"""

from importlib.metadata import PackageNotFoundError, version

from scanlab.linear import linear_recurrence, linear_recurrence_matrix

try:
    __version__ = version("scanlab")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["linear_recurrence", "linear_recurrence_matrix", "__version__"]
