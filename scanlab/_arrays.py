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


def as_time_major(
    array: np.ndarray, ndim: int, axis: int, rest: tuple, dtype, core: tuple = ()
) -> np.ndarray:
    """``array`` as a C-contiguous ``(T or 1, D or 1, *core)`` array for the kernels.

    ``array`` has ``core`` as its trailing shape, and its leading dimensions broadcast against
    a result with ``ndim`` leading dimensions whose non-time axes are ``rest``. An operand
    constant over all of them keeps a single column; one that varies over only some of them is
    expanded to all ``D`` channels.
    """
    leading = array.ndim - len(core)
    if leading < ndim:
        array = array.reshape((1,) * (ndim - leading) + array.shape)
    if axis:
        array = np.moveaxis(array, axis, 0)
    middle = array.shape[1:ndim]
    if middle != rest and any(size != 1 for size in middle):
        array = np.broadcast_to(array, array.shape[:1] + rest + core)
    # One copy at most: the cast and the layout change happen together, then a free reshape.
    contiguous = np.ascontiguousarray(array, dtype=dtype)
    return contiguous.reshape(contiguous.shape[0], math.prod(contiguous.shape[1:ndim]), *core)


@dataclass
class LinearProblem:
    """A linear recurrence in kernel layout, and where its result goes.

    Elementwise: ``a`` and ``b`` are ``(T or 1, D or 1)``, ``h0`` is ``(D,)`` and ``kernel_out``
    is ``(T, D)``. With matrices: ``a`` is ``(T or 1, D or 1, n, n)``, ``b`` is ``(T or 1, D or 1,
    n)``, ``h0`` is ``(D, n)`` and ``kernel_out`` is ``(T, D, n)``. All are C-contiguous in the
    result dtype. After the kernel ran, ``finish()`` returns the result.
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
    return lay_out(a, b, h0, shape, axis, (), dtype, out)


def prepare_linear_matrix(a, b, h0, axis, out) -> LinearProblem:
    """Check the arguments of ``linear_recurrence_matrix`` and lay them out for the kernels."""
    dtype = result_dtype(A=a, b=b, h0=h0)
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"A must have shape (..., n, n), got {a.shape}")
    size = a.shape[-1]
    if b.ndim < 1 or b.shape[-1] != size:
        raise ValueError(
            f"b must have shape (..., n) with n = {size}, the size of A's matrices "
            f"(A has shape {a.shape}); got b with shape {b.shape}"
        )
    try:
        leading = np.broadcast_shapes(a.shape[:-2], b.shape[:-1])
    except ValueError:
        raise ValueError(
            f"A with shape {a.shape} and b with shape {b.shape} do not broadcast together: "
            f"their leading shapes {a.shape[:-2]} and {b.shape[:-1]} must"
        ) from None
    if not leading:
        raise ValueError(
            f"A with shape {a.shape} and b with shape {b.shape} have no time axis: give b the "
            f"shape (T, n) or A the shape (T, n, n)"
        )
    shape = leading + (size,)
    time_axis = normalize_axis(axis, len(shape))
    if time_axis == len(leading):
        raise ValueError(
            f"axis={axis} is the state axis (the last) of the result, of shape {shape}; "
            f"time must run along one of the axes before it"
        )
    return lay_out(a, b, h0, shape, time_axis, (size,), dtype, out)


def lay_out(a, b, h0, shape: tuple, axis: int, state: tuple, dtype, out) -> LinearProblem:
    """The kernel layout of a recurrence whose result has ``shape``, time at ``axis``.

    ``state`` is ``()`` for an elementwise recurrence and ``(n,)`` for one with ``n x n``
    matrices, which then end ``a``'s shape (``state * 2``), ``b``'s and the result's.
    """
    leading = len(shape) - len(state)
    rest = shape[:axis] + shape[axis + 1 : leading]
    h0 = initial_state(h0, rest + state, dtype, shape, axis).reshape(math.prod(rest), *state)
    result = output_array(out, shape, dtype)
    kernel_a = as_time_major(a, leading, axis, rest, dtype, state * 2)
    kernel_b = as_time_major(b, leading, axis, rest, dtype, state)
    kernel_out = kernel_view(result, axis, len(state))
    writes_result = kernel_out is not None and not any(
        np.may_share_memory(kernel_out, operand) for operand in (kernel_a, kernel_b)
    )
    if not writes_result:
        kernel_out = np.empty((shape[axis], math.prod(rest), *state), dtype)
    return LinearProblem(kernel_a, kernel_b, h0, kernel_out, result, axis, writes_result)


def initial_state(h0, state_shape: tuple, dtype, shape: tuple, axis: int) -> np.ndarray:
    """``h0`` broadcast to ``state_shape`` (the result's shape without ``axis``), flattened."""
    if h0 is None:
        return np.zeros(math.prod(state_shape), dtype)
    h0 = np.asarray(h0)
    try:
        broadcast = np.broadcast_shapes(h0.shape, state_shape) == state_shape
    except ValueError:
        broadcast = False
    if not broadcast:
        raise ValueError(
            f"With axis={axis}, a result of shape {shape} needs h0 of shape {state_shape} "
            f"(or one that broadcasts to it), got {h0.shape}"
        )
    return np.ascontiguousarray(np.broadcast_to(h0, state_shape), dtype=dtype).reshape(-1)


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


def kernel_view(result: np.ndarray, axis: int, state_ndim: int = 0):
    """``result`` seen as a C-contiguous ``(T, D, *state)`` array without a copy, or None.

    ``state_ndim`` trailing axes of ``result`` are the state of a matrix recurrence.
    """
    moved = np.moveaxis(result, axis, 0) if axis else result
    if not moved.flags.c_contiguous:
        return None
    channels = math.prod(moved.shape[1 : moved.ndim - state_ndim])
    return moved.reshape(moved.shape[0], channels, *moved.shape[moved.ndim - state_ndim :])
