"""Validation and layout: the one place where user arrays become kernel arrays.

Every kernel, on every device, sees the same layout: time first, the other axes flattened into
one channel axis, C-contiguous, in the result dtype. Here the public functions check their
arguments, work out the result's dtype and shape (a :class:`Layout`), and move ``axis`` to the
front of host arrays; :mod:`scanlab.cuda.arrays` does the same on the GPU for GPU arrays.
"""

import ctypes
import math
import operator
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np

from scanlab._devices import on_gpu

#: The dtypes the kernels compute in; integers and bools are promoted to float64.
COMPUTE_DTYPES = tuple(np.dtype(name) for name in ("float32", "float64", "complex64", "complex128"))
COMPUTE_DTYPE_SET = frozenset(COMPUTE_DTYPES)


#: The operands that may be None (the initial state: zeros); any other None is a TypeError.
OPTIONAL_OPERANDS = frozenset({"h0"})


def result_dtype(**operands) -> np.dtype:
    """NumPy's promotion of ``operands`` (name -> array or scalar; None for ``h0``), as a
    compute dtype.

    Python scalars are weak (``0.5`` keeps float32 arrays float32). Integers and bools become
    float64. Every operand is checked by :func:`numeric_array` first, and a dtype outside
    ``COMPUTE_DTYPES`` raises a TypeError naming the culprit.
    """
    given = {}
    for name, value in operands.items():
        if value is None and name in OPTIONAL_OPERANDS:
            continue
        if type(value) is np.ndarray and value.dtype.kind in "biufc":
            given[name] = value  # checked as it is (a NumPy array of numbers)
            continue
        array = numeric_array(name, value, stand_in)
        given[name] = value if isinstance(value, (int, float, complex)) else array
    dtype = np.result_type(*given.values())
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype not in COMPUTE_DTYPE_SET:
        arrays = {name: value for name, value in given.items() if isinstance(value, np.ndarray)}
        found = ", ".join(f"{name} {value.dtype}" for name, value in arrays.items())
        raise TypeError(
            f"scanlab computes in {', '.join(map(str, COMPUTE_DTYPES))}, but the arguments "
            f"({found}) promote to {dtype}; convert them, e.g. with .astype(np.float64)"
        )
    return dtype


def numeric_array(name: str, value, convert=np.asarray) -> np.ndarray:
    """``value`` as an array by ``convert`` (:func:`stand_in` also takes GPU arrays), checked to
    hold numbers: a TypeError naming ``name`` for None or a non-numeric dtype (object, string,
    date), a ValueError for a ragged sequence."""
    if value is None:
        raise TypeError(f"{name} is None; pass an array (or a number)")
    try:
        array = convert(value)
    except ValueError as error:  # NumPy's "inhomogeneous shape"
        raise ValueError(f"{name} could not be read as an array ({error})") from None
    if array.dtype.kind not in "biufc":
        described = name if hasattr(value, "dtype") else f"{name} ({type(value).__name__})"
        raise TypeError(
            f"{described} has dtype {array.dtype}, which is not numeric; scanlab computes in "
            f"{', '.join(map(str, COMPUTE_DTYPES))}"
        )
    return array


def real_array(name: str, value, instead: str) -> np.ndarray:
    """``value`` as an array by :func:`numeric_array` (GPU arrays as stand-ins), or a TypeError
    naming ``name`` if it is complex (its imaginary part would be dropped), saying ``instead``
    what to pass."""
    array = numeric_array(name, value, stand_in)
    if array.dtype.kind == "c":
        raise TypeError(f"{name} has dtype {array.dtype}; {instead}")
    return array


def stand_in(value) -> np.ndarray:
    """``value`` as a NumPy array, for checks of its shape and dtype.

    A GPU array becomes a read-only zero-stride array of its shape and dtype: its data stays on
    the GPU, unread.
    """
    if not on_gpu(value):
        return np.asarray(value)
    interface = array_interface(value)
    return np.broadcast_to(np.zeros((), np.dtype(interface["typestr"])), interface["shape"])


def array_interface(value) -> dict:
    """The ``__cuda_array_interface__`` of a GPU array (shape, typestr, data, strides).

    Device arrays of Numba's CUDA simulator wrap a NumPy array and give its
    ``__array_interface__``, which has the same keys: their "device" memory is host memory.
    """
    interface = getattr(value, "__cuda_array_interface__", None)
    return interface if interface is not None else value.__array_interface__


def normalize_axis(axis, ndim: int) -> int:
    """``axis`` as a non-negative int for an array of ``ndim`` dimensions."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer, got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim, "axis")
    return axis % ndim


def moved_axis(array: np.ndarray, source: int, destination: int) -> np.ndarray:
    """``np.moveaxis(array, source, destination)`` for one axis of a host array, at a tenth of
    its cost (which the front ends pay several times a call): ``array`` itself where the axis
    stays where it is."""
    ndim = array.ndim
    source, destination = source % ndim, destination % ndim
    if source == destination:
        return array
    order = [k for k in range(ndim) if k != source]
    order.insert(destination, source)
    return array.transpose(order)


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
        array = moved_axis(array, axis, 0)
    middle = array.shape[1:ndim]
    if middle != rest and any(size != 1 for size in middle):
        array = np.broadcast_to(array, array.shape[:1] + rest + core)
    # One copy at most: the cast and the layout change happen together, then a free reshape.
    contiguous = np.ascontiguousarray(array, dtype=dtype)
    return read_only(
        contiguous.reshape(contiguous.shape[0], math.prod(contiguous.shape[1:ndim]), *core)
    )


class Layout(NamedTuple):
    """A checked recurrence: its result's ``shape`` and ``dtype``, the time ``axis``, and the
    ``state`` shape that ends the result's (``()`` elementwise, ``(n,)`` with matrices), and
    ``rest``, the shape of the channel axes (the leading ones other than time). A named tuple
    (:func:`checked_layout` makes one on every call, at a third of a dataclass's cost)."""

    shape: tuple
    axis: int
    state: tuple
    dtype: np.dtype
    rest: tuple

    @property
    def leading(self) -> int:
        """The number of axes before the state's."""
        return len(self.shape) - len(self.state)

    @property
    def initial_shape(self) -> tuple:
        """The shape of ``h0``: the result's without the time axis."""
        return self.rest + self.state


@dataclass
class LinearProblem:
    """A linear recurrence in kernel layout, and where its result goes.

    Elementwise: ``a`` and ``b`` are ``(T or 1, D or 1)``, ``h0`` is ``(D,)`` and ``kernel_out``
    is ``(T, D)``; or, with ``time_last``, ``(D or 1, T or 1)`` and ``(D, T)``. With matrices:
    ``a`` is ``(T or 1, D or 1, n, n)``, ``b`` is ``(T or 1, D or 1, n)``, ``h0`` is ``(D, n)``
    and ``kernel_out`` is ``(T, D, n)``. All are C-contiguous in the result dtype, host arrays.
    After the kernel ran, ``finish()`` returns the result.
    """

    a: np.ndarray
    b: np.ndarray
    h0: np.ndarray
    kernel_out: np.ndarray
    result: np.ndarray
    axis: int
    writes_result: bool
    time_last: bool = False
    on_device = False

    @property
    def is_empty(self) -> bool:
        return self.kernel_out.size == 0

    def finish(self) -> np.ndarray:
        """Copy the kernel's output into ``result`` unless the kernel wrote there directly."""
        if not self.writes_result:
            moved = moved_axis(self.result, self.axis, -1 if self.time_last else 0)
            moved[...] = self.kernel_out.reshape(moved.shape)
        return self.result


def check_linear(a, b, h0, axis) -> Layout:
    """Check the arguments of ``linear_recurrence`` (host or GPU arrays) and lay out the result."""
    dtype = result_dtype(a=a, b=b, h0=h0)
    a, b = stand_in(a), stand_in(b)
    try:
        # The shapes alike, the common case, cost nothing to broadcast (NumPy's takes 1.7 us).
        shape = a.shape if a.shape == b.shape else np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"a with shape {a.shape} and b with shape {b.shape} do not broadcast together"
        ) from None
    if not shape:
        raise ValueError(
            "a and b are both scalars: give at least one of them a time axis (e.g. b of shape (T,))"
        )
    return checked_layout(h0, shape, normalize_axis(axis, len(shape)), (), dtype)


def check_linear_matrix(a, b, h0, axis) -> Layout:
    """Check the arguments of ``linear_recurrence_matrix`` and lay out the result."""
    dtype = result_dtype(A=a, b=b, h0=h0)
    a, b = stand_in(a), stand_in(b)
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
    return checked_layout(h0, shape, time_axis, (size,), dtype)


def checked_layout(h0, shape: tuple, axis: int, state: tuple, dtype) -> Layout:
    """The layout of a result of ``shape``, after checking ``h0`` against it."""
    rest = shape[:axis] + shape[axis + 1 : len(shape) - len(state)]
    layout = Layout(shape, axis, state, dtype, rest)
    if h0 is not None:
        check_initial_state(stand_in(h0).shape, layout.initial_shape, shape, axis)
    return layout


def lay_out(a, b, h0, layout: Layout, out) -> LinearProblem:
    """The host kernel layout of a checked recurrence.

    With matrices (``layout.state`` is ``(n,)``), ``n x n`` matrices end ``a``'s shape, and
    ``n`` ends ``b``'s and the result's.
    """
    shape, axis, state, dtype = layout.shape, layout.axis, layout.state, layout.dtype
    leading, rest = layout.leading, layout.rest
    h0 = initial_state(h0, layout.initial_shape, dtype, shape, axis)
    h0 = h0.reshape(math.prod(rest), *state)
    result = output_array(out, shape, dtype)
    if out is not None and np.may_share_memory(h0, result):
        # The kernels read h0 while writing out's first rows: a copy of one row is cheap.
        h0 = h0.copy()
    kernel_a = as_time_major(np.asarray(a), leading, axis, rest, dtype, state * 2)
    kernel_b = as_time_major(np.asarray(b), leading, axis, rest, dtype, state)
    kernel_out = kernel_view(result, axis, len(state))
    writes_result = kernel_out is not None and (
        out is None  # a new result shares no memory
        or not any(np.may_share_memory(kernel_out, operand) for operand in (kernel_a, kernel_b))
    )
    if not writes_result:
        kernel_out = np.empty((shape[axis], math.prod(rest), *state), dtype)
    return LinearProblem(kernel_a, kernel_b, h0, kernel_out, result, axis, writes_result)


def check_initial_state(h0_shape: tuple, state_shape: tuple, shape: tuple, axis: int) -> None:
    """A ValueError unless ``h0_shape`` broadcasts to ``state_shape``, the result's without
    ``axis``."""
    check_broadcasts("h0", h0_shape, state_shape, axis, f"a result of shape {shape} needs")


def check_broadcasts(name: str, given: tuple, target: tuple, axis: int, whose: str) -> None:
    """A ValueError unless the shape ``given`` of the operand ``name`` broadcasts to ``target``;
    ``whose`` says what needs it ("a result of shape (3, 4) needs")."""
    if given == target or not given:  # the common cases, without NumPy's 1-2 us
        return
    try:
        fits = np.broadcast_shapes(given, target) == target
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"With axis={axis}, {whose} {name} of shape {target} (or one that broadcasts to "
            f"it), got {given}"
        )


def initial_state(h0, state_shape: tuple, dtype, shape: tuple, axis: int) -> np.ndarray:
    """``h0`` broadcast to ``state_shape`` (the result's shape without ``axis``), flattened."""
    if h0 is None:
        return read_only(np.zeros(math.prod(state_shape), dtype))
    h0 = np.asarray(h0)
    check_initial_state(h0.shape, state_shape, shape, axis)
    if not h0.ndim:
        return read_only(np.full(math.prod(state_shape), h0, dtype))
    return read_only(
        np.ascontiguousarray(np.broadcast_to(h0, state_shape), dtype=dtype).reshape(-1)
    )


def check_output(out, shape: tuple, dtype, read_only: bool) -> None:
    """A ValueError or TypeError unless ``out`` (host or GPU) can take a result of ``shape``
    and ``dtype``."""
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, but the result has shape {shape}")
    if out.dtype != dtype:
        raise TypeError(
            f"out has dtype {out.dtype}, but the result has dtype {dtype}; "
            f"pass out=np.empty({shape}, dtype=np.{dtype})"
        )
    if read_only:
        raise ValueError("out is read-only")


#: Bytes to which new results are aligned: a cache line, so that kernels can write whole lines
#: (:mod:`scanlab.cpu.streaming`).
RESULT_ALIGNMENT = 64


def aligned_empty(shape: tuple, dtype) -> np.ndarray:
    """``numpy.empty(shape, dtype)`` starting on a ``RESULT_ALIGNMENT`` boundary (NumPy aligns
    large arrays to 16 bytes only): a view of a slightly larger buffer."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    if size == 0:
        return np.empty(shape, dtype)
    buffer = np.empty(size + RESULT_ALIGNMENT, np.uint8)
    start = -address(buffer) % RESULT_ALIGNMENT
    return np.ndarray(shape, dtype, buffer, start)


def address(array: np.ndarray) -> int:
    """Where a writable contiguous host ``array`` starts in memory (ctypes' address of a
    character over its buffer: a third of the cost of ``array.ctypes.data``, which every new
    result asks for)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(array))


def output_array(out, shape: tuple, dtype) -> np.ndarray:
    """``out`` checked against the result's shape and dtype, or a new C-contiguous array
    (aligned: :func:`aligned_empty`)."""
    if out is None:
        return aligned_empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    check_output(out, shape, dtype, not out.flags.writeable)
    return out


def kernel_view(result: np.ndarray, axis: int, state_ndim: int = 0):
    """``result`` seen as a C-contiguous ``(T, D, *state)`` array without a copy, or None.

    ``state_ndim`` trailing axes of ``result`` are the state of a matrix recurrence.
    """
    moved = moved_axis(result, axis, 0)
    if not moved.flags.c_contiguous:
        return None
    channels = math.prod(moved.shape[1 : moved.ndim - state_ndim])
    return moved.reshape(moved.shape[0], channels, *moved.shape[moved.ndim - state_ndim :])


def read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array`` (itself where it is read-only already): how every operand
    that the kernels only read is handed over (the linear solvers' and front ends'
    coefficients, inputs and initial states, the nonlinear kernels' and a cell's probes' inputs
    and initial states).

    Numba compiles a kernel once per combination of writable and read-only arrays, and an
    operand is one or the other depending on where it came from (a broadcast view, a copy, the
    caller's array as it is): always read-only, it compiles once instead of up to
    ``2**operands`` times.
    """
    if not array.flags.writeable:
        return array
    view = array.view()
    view.flags.writeable = False
    return view


def time_runs_last(b, layout: Layout, min_channels: int) -> bool:
    """Whether an elementwise recurrence is solved time last: ``b`` is a host array of the
    result's shape that steps through time contiguously (time its axis of smallest stride: the
    last of a C-ordered array, the first of a Fortran-ordered one) for ``min_channels`` or more
    channels. Then the time-last kernel reads it as it is, with no transposing copy."""
    if layout.state or not isinstance(b, np.ndarray) or b.shape != layout.shape:
        return False
    return math.prod(layout.rest) >= min_channels and time_contiguous(b, layout.axis)


def time_contiguous(array: np.ndarray, axis: int) -> bool:
    """Whether ``array`` steps through time (``axis``) contiguously, time its axis of smallest
    stride (the last of a C-ordered array, the first of a Fortran-ordered one, a DataFrame's
    index): then :func:`as_time_last` reads it as it lies."""
    step, pairs = array.itemsize, zip(array.strides, array.shape, strict=True)
    strides = [abs(stride) for stride, size in pairs if size > 1]
    return array.strides[axis] == step and min(strides, default=step) == step


def as_time_last(array: np.ndarray, ndim: int, axis: int, rest: tuple, dtype) -> np.ndarray:
    """``array`` as a C-contiguous ``(D or 1, T or 1)`` array for the time-last kernel: the
    mirror of :func:`as_time_major`."""
    if array.ndim < ndim:
        array = array.reshape((1,) * (ndim - array.ndim) + array.shape)
    array = moved_axis(array, axis, -1)
    middle = array.shape[:-1]
    if middle != rest and any(size != 1 for size in middle):
        array = np.broadcast_to(array, rest + array.shape[-1:])
    contiguous = np.ascontiguousarray(array, dtype=dtype)
    return read_only(contiguous.reshape(math.prod(contiguous.shape[:-1]), contiguous.shape[-1]))


def lay_out_time_last(a, b, h0, layout: Layout, out) -> LinearProblem:
    """The host time-last layout of a checked elementwise recurrence (see
    :func:`time_runs_last`). A new result is laid out like ``b``: time contiguous."""
    shape, axis, dtype, rest = layout.shape, layout.axis, layout.dtype, layout.rest
    h0 = initial_state(h0, layout.initial_shape, dtype, shape, axis)
    if out is None:
        result = moved_axis(np.empty(rest + (shape[axis],), dtype), -1, axis)
    else:
        result = output_array(out, shape, dtype)
    if np.may_share_memory(h0, result):
        h0 = h0.copy()
    kernel_a = as_time_last(np.asarray(a), len(shape), axis, rest, dtype)
    kernel_b = as_time_last(np.asarray(b), len(shape), axis, rest, dtype)
    moved = moved_axis(result, axis, -1)
    rows = math.prod(rest)  # not -1: a length-0 time axis leaves it undetermined
    kernel_out = moved.reshape(rows, shape[axis]) if moved.flags.c_contiguous else None
    writes_result = kernel_out is not None and not any(
        np.may_share_memory(kernel_out, operand) for operand in (kernel_a, kernel_b)
    )
    if not writes_result:
        kernel_out = np.empty((rows, shape[axis]), dtype)
    return LinearProblem(
        kernel_a, kernel_b, h0, kernel_out, result, axis, writes_result, time_last=True
    )


def pandas_labels(x):
    """For a pandas Series or DataFrame ``x``, the function that labels an array of its shape
    as ``x`` is labelled (index, columns, name); else None."""
    kind = type(x).__name__
    if type(x).__module__.split(".")[0] != "pandas" or kind not in ("Series", "DataFrame"):
        return None
    if kind == "Series":
        return partial(type(x), index=x.index, name=x.name, copy=False)
    return partial(type(x), index=x.index, columns=x.columns, copy=False)
