"""Scalar checks and time indexing shared by the kernels of both backends.

Finiteness of a real or complex value (:func:`is_finite`, :func:`is_inf`) and its identity
with another, NaN parts included (:func:`is_identical`), which the scaled
products, the CPU scans and the routines of a nonlinear cell's step all test, and how a kernel
walks the kernel layout of :mod:`scanlab._arrays`: time in *steps*, step ``s`` visiting row
``time_index(s, *time_direction(length, reverse))``, and the broadcast axes of an operand
(:func:`broadcast_steps`). Every function is a small ``@njit(inline="always")`` one, compiled
into the kernel that calls it: the checks also into the GPU's (through
:mod:`scanlab._scaled_products` and :mod:`scanlab._step_routines`), the indexing into the CPU's
only (:mod:`scanlab.cuda.kernel_layout` holds the GPU's).
"""

from numba import njit, uint64


@njit(inline="always")
def is_finite(value):
    """Whether a real or complex ``value`` is neither Inf nor NaN."""
    return value - value == 0


@njit(inline="always")
def is_inf(value):
    """Whether a real or complex ``value`` is infinite: neither finite nor NaN."""
    return not is_finite(value) and value == value


@njit(inline="always")
def is_identical(value, other):
    """Whether two real or complex values are the same number, NaN included: equal, or NaN
    where the other is NaN, a complex's real and imaginary parts apart (``nan + inf j`` and
    ``-inf + nan j``, both ``!= themselves``, are not the same)."""
    real, imaginary = value.real, value.imag
    other_real, other_imaginary = other.real, other.imag
    return (real == other_real or (real != real and other_real != other_real)) and (
        imaginary == other_imaginary
        or (imaginary != imaginary and other_imaginary != other_imaginary)
    )


@njit(inline="always")
def time_direction(length, reverse):
    """``(origin, direction)`` such that step ``s`` visits row ``origin + direction * s``."""
    return (length - 1, -1) if reverse else (0, 1)


@njit(inline="always")
def time_index(step, origin, direction):
    """Row of ``out`` visited at the ``step``-th step of the recurrence.

    Affine in ``step`` without a branch, so LLVM turns the indexing into pointer increments.
    """
    return uint64(origin + direction * step)


@njit(inline="always")
def broadcast_steps(array, length, channels):
    """Index multipliers ``(row, column)`` of ``array``: 0 along a broadcast axis, else 1.

    ``array``'s first two axes are time (``length`` or 1) and channels (``channels`` or 1).

    Unsigned, like every index they multiply, so Numba skips its negative-index check; computed
    by division rather than a comparison so that LLVM keeps them symbolic and versions the
    channel loops for a unit stride (vectorised) instead of giving up on them.
    """
    return uint64(array.shape[0] // length), uint64(array.shape[1] // channels)
