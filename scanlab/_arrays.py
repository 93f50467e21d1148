"""Validation and layout: the one place where user arrays become kernel arrays.

Every kernel, on every device, sees the same layout: time first, the other axes flattened into
one channel axis, C-contiguous, in the result dtype. Here the public functions check their
arguments, work out the result's dtype and shape, and move ``axis`` to the front.
"""

import math
import operator
from dataclasses import dataclass

import numpy as np

#: The dtypes the kernels compute in; integers and bools are promoted to float64.
COMPUTE_DTYPES = tuple(np.dtype(name) for name in ("float32", "float64", "complex64", "complex128"))


def result_dtype(**operands) -> np.dtype:
    """NumPy's promotion of ``operands`` (name -> array, scalar or None), as a compute dtype.

    Python scalars are weak (``0.5`` keeps float32 arrays float32). Integers and bools become
    float64; any other dtype outside ``COMPUTE_DTYPES`` raises a TypeError naming the culprit.
    """
    given = {
        name: value if isinstance(value, (int, float, complex)) else np.asarray(value)
        for name, value in operands.items()
        if value is not None
    }
    for name, value in given.items():
        if np.asarray(value).dtype.kind not in "biufc":
            raise TypeError(
                f"{name} has dtype {np.asarray(value).dtype}, which is not numeric; scanlab "
                f"computes in {', '.join(map(str, COMPUTE_DTYPES))}"
            )
    dtype = np.result_type(*given.values())
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype not in COMPUTE_DTYPES:
        arrays = {name: value for name, value in given.items() if isinstance(value, np.ndarray)}
        found = ", ".join(f"{name} {value.dtype}" for name, value in arrays.items())
        raise TypeError(
            f"scanlab computes in {', '.join(map(str, COMPUTE_DTYPES))}, but the arguments "
            f"({found}) promote to {dtype}; convert them, e.g. with .astype(np.float64)"
        )
    return dtype


def normalize_axis(axis, ndim: int) -> int:
    """``axis`` as a non-negative int for an array of ``ndim`` dimensions."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer, got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim, "axis")
    return axis % ndim


def as_time_major(array: np.ndarray, ndim: int, axis: int, rest: tuple, dtype) -> np.ndarray:
    """``array`` as a C-contiguous ``(T or 1, D or 1)`` array for the kernels.

    ``array`` broadcasts against a result with ``ndim`` dimensions whose non-time axes are
    ``rest``; an operand constant over all of them keeps a single column, one that varies over
    only some of them is expanded to all ``D`` channels.
    """
    if array.ndim < ndim:
        array = array.reshape((1,) * (ndim - array.ndim) + array.shape)
    if axis:
        array = np.moveaxis(array, axis, 0)
    if array.shape[1:] != rest and any(size != 1 for size in array.shape[1:]):
        array = np.broadcast_to(array, array.shape[:1] + rest)
    # One copy at most: the cast and the layout change happen together, then a free reshape.
    contiguous = np.ascontiguousarray(array, dtype=dtype)
    return contiguous.reshape(contiguous.shape[0], math.prod(contiguous.shape[1:]))


@dataclass
class LinearProblem:
    """A linear recurrence in kernel layout, and where its result goes.

    ``a`` and ``b`` are ``(T or 1, D or 1)``, ``h0`` is ``(D,)``, ``kernel_out`` is ``(T, D)``;
    all C-contiguous in the result dtype. After the kernel ran, ``finish()`` returns the result.
    """

    a: np.ndarray
    b: np.ndarray
    h0: np.ndarray
    kernel_out: np.ndarray
    result: np.ndarray
    axis: int
    writes_result: bool

    @property
    def is_empty(self) -> bool:
        return self.kernel_out.size == 0

    def finish(self) -> np.ndarray:
        """Copy the kernel's output into ``result`` unless the kernel wrote there directly."""
        if not self.writes_result:
            moved = np.moveaxis(self.result, self.axis, 0)
            moved[...] = self.kernel_out.reshape(moved.shape)
        return self.result


def prepare_linear(a, b, h0, axis, out) -> LinearProblem:
    """Check the arguments of ``linear_recurrence`` and lay them out for the kernels."""
    dtype = result_dtype(a=a, b=b, h0=h0)
    a = np.asarray(a)
    b = np.asarray(b)
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"a with shape {a.shape} and b with shape {b.shape} do not broadcast together"
        ) from None
    if not shape:
        raise ValueError(
            "a and b are both scalars: give at least one of them a time axis (e.g. b of shape (T,))"
        )
    axis = normalize_axis(axis, len(shape))
    rest = shape[:axis] + shape[axis + 1 :]
    h0 = initial_state(h0, rest, dtype, shape, axis)
    result = output_array(out, shape, dtype)
    kernel_a = as_time_major(a, len(shape), axis, rest, dtype)
    kernel_b = as_time_major(b, len(shape), axis, rest, dtype)
    kernel_out = kernel_view(result, axis)
    writes_result = kernel_out is not None and not any(
        np.may_share_memory(kernel_out, operand) for operand in (kernel_a, kernel_b)
    )
    if not writes_result:
        kernel_out = np.empty((shape[axis], h0.size), dtype)
    return LinearProblem(kernel_a, kernel_b, h0, kernel_out, result, axis, writes_result)


def initial_state(h0, rest: tuple, dtype, shape: tuple, axis: int) -> np.ndarray:
    """``h0`` broadcast to the result's shape without ``axis``, flattened to ``(D,)``."""
    if h0 is None:
        return np.zeros(math.prod(rest), dtype)
    h0 = np.asarray(h0)
    try:
        broadcast = np.broadcast_shapes(h0.shape, rest) == rest
    except ValueError:
        broadcast = False
    if not broadcast:
        raise ValueError(
            f"With axis={axis}, a result of shape {shape} needs h0 of shape {rest} "
            f"(or one that broadcasts to it), got {h0.shape}"
        )
    return np.ascontiguousarray(np.broadcast_to(h0, rest), dtype=dtype).reshape(-1)


def output_array(out, shape: tuple, dtype) -> np.ndarray:
    """``out`` checked against the result's shape and dtype, or a new C-contiguous array."""
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, but the result has shape {shape}")
    if out.dtype != dtype:
        raise TypeError(
            f"out has dtype {out.dtype}, but the result has dtype {dtype}; "
            f"pass out=np.empty({shape}, dtype=np.{dtype})"
        )
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    return out


def kernel_view(result: np.ndarray, axis: int):
    """``result`` seen as a C-contiguous ``(T, D)`` array without a copy, or None."""
    moved = np.moveaxis(result, axis, 0) if axis else result
    if not moved.flags.c_contiguous:
        return None
    return moved.reshape(moved.shape[0], math.prod(moved.shape[1:]))
