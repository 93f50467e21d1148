"""What every CUDA kernel of the linear recurrences shares: the dtypes it is compiled for, the type
of the scans' bounds, the shared memory a block may use, and how it walks the kernel layout.

The GPU forms of the time indexing of :mod:`scanlab._recurrence_numerics`: a signed
:func:`time_index` (the kernels' indices are int64: an unsigned one would make their products
floating point), and :func:`broadcast_steps` computed on the host and passed to the kernels.
"""

from numba import njit

#: Bytes of shared memory a block may use without a per-kernel opt-in.
SHARED_MEMORY_LIMIT = 48 * 1024


#: The dtypes the kernels are specialised for.
DTYPES = ("float32", "float64", "complex64", "complex128")


#: The Numba type of ``scanlab._scaled_products.product_bounds``, which the checks of the scans
#: take as it is.
BOUNDS_TYPE = "Tuple((float64, float64, int64, float64, float64))"


@njit(inline="always")
def time_index(step, length, reverse):
    """Row of ``out`` visited at the ``step``-th step of the recurrence."""
    return length - 1 - step if reverse else step


def broadcast_steps(array):
    """Index multipliers ``(row, column)`` of ``array``: 0 along a broadcast axis, else 1.

    Only the first two axes (time and channels or systems) broadcast.
    """
    return tuple(int(extent > 1) for extent in array.shape[:2])
