"""scanlab: recurrences solved in parallel over the sequence length, on CPUs and GPUs.

The public API is :func:`linear_recurrence`; ``scanlab.config`` holds the kernels' tunables.
"""

from importlib.metadata import PackageNotFoundError, version

from scanlab.linear import linear_recurrence

try:
    __version__ = version("scanlab")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["linear_recurrence", "__version__"]
