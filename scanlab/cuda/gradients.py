"""The linear VJPs on GPU arrays: twin of the host path of :mod:`scanlab.gradients`.

The adjoint recurrence runs on the forward kernels, its operands and result being strided views
(:class:`scanlab.cuda.arrays.Strided`) of the given arrays: the coefficients one step later,
transposed for matrices, and the adjoint's remaining steps, without copies. Every gradient
is then a sum of products over the axes its operand was broadcast along (``da[t] = lam[t] *
h[t-1]``, ``dh0 = a[0] * lam[0]``, outer and matrix-vector products with matrices), which
:func:`reduce_products_kernel` computes from strided views of the same arrays.
"""

import math

import numpy as np
from numba import cuda

from scanlab import config
from scanlab._devices import on_gpu
from scanlab.cuda.arrays import Strided
from scanlab.cuda.memory import zeros

#: The most blocks :func:`reduce_products_kernel` is launched with; beyond, threads loop.
REDUCE_BLOCKS = 65535


@cuda.jit
def reduce_products_kernel(x, y, out, x_start, y_start, out_start, geometry, kept, chunks, parts):
    """``out[k] += sum over r of x[k, r] * y[k, r]`` over a strided index space.

    ``geometry`` holds the index space's shape and, per axis, the strides of ``x``, ``y`` and
    ``out`` in elements from ``x_start``, ``y_start`` and ``out_start`` (zero along an axis an
    operand repeats along). Its first ``kept`` axes index ``out`` (``k``), the others are summed
    (``r``). Each of ``chunks`` threads per ``k`` sums every ``chunks``-th ``r`` and adds its sum
    to ``out`` atomically. Consecutive threads take consecutive ``k`` of one chunk, or
    consecutive ``r`` when there is one ``k``: either way they read neighbouring elements when
    the innermost axis is contiguous. ``out`` is the result's memory as real numbers, ``parts``
    (1, or 2 for complex results) per element.
    """
    shape = geometry[0]
    axes = shape.shape[0]
    rows, reduced = 1, 1
    for axis in range(kept):
        rows *= shape[axis]
    for axis in range(kept, axes):
        reduced *= shape[axis]
    for task in range(cuda.grid(1), rows * chunks, cuda.gridsize(1)):
        chunk = task // rows
        row = task - chunk * rows
        x_row, y_row, out_row = x_start, y_start, out_start
        remainder = row
        for axis in range(kept - 1, -1, -1):
            index = remainder % shape[axis]
            remainder //= shape[axis]
            x_row += index * geometry[1, axis]
            y_row += index * geometry[2, axis]
            out_row += index * geometry[3, axis]
        total = x.dtype.type(0)
        for column in range(chunk, reduced, chunks):
            remainder = column
            x_at, y_at = x_row, y_row
            for axis in range(axes - 1, kept - 1, -1):
                index = remainder % shape[axis]
                remainder //= shape[axis]
                x_at += index * geometry[1, axis]
                y_at += index * geometry[2, axis]
            total += x[x_at] * y[y_at]
        cuda.atomic.add(out, parts * out_row, total.real)
        if parts == 2:
            cuda.atomic.add(out, parts * out_row + 1, total.imag)


def kernel_signatures():
    """List every kernel of this module with each signature its launchers compile.

    Returns
    -------
    list of (numba.cuda.dispatcher.CUDADispatcher, str)
        One entry per compute dtype; compile one to PTX without a GPU with
        ``cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))``.
    """
    signatures = []
    for name, real in (("float32", "float32"), ("float64", "float64"),
                       ("complex64", "float32"), ("complex128", "float64")):  # fmt: skip
        signatures.append(
            (
                reduce_products_kernel,
                f"void({name}[::1], {name}[::1], {real}[::1], int64, int64, int64, "
                "int64[:, ::1], int64, int64, int64)",
            )
        )
    return signatures


def reduce_geometry(shape: tuple, x_strides: tuple, y_strides: tuple, out_strides: tuple):
    """The ``geometry`` and ``kept`` arguments of :func:`reduce_products_kernel`.

    Axes of length 1 are dropped; the axes ``out`` steps along (kept) come first, those it
    repeats along (summed) after, each group in its order, and neighbouring axes that all three
    arrays step through as one are merged. A leading kept axis of length 1 makes ``k`` exist.
    """
    axes = [
        (size, x_stride, y_stride, out_stride)
        for size, x_stride, y_stride, out_stride in zip(
            shape, x_strides, y_strides, out_strides, strict=True
        )
        if size != 1
    ]
    groups = ([axis for axis in axes if axis[3]], [axis for axis in axes if not axis[3]])
    merged = []
    for group in groups:
        current = []
        for size, *strides in group:
            if current and all(
                outer == inner * size for outer, inner in zip(current[-1][1:], strides, strict=True)
            ):
                size *= current.pop()[0]
            current.append((size, *strides))
        merged.append(current)
    columns = [(1, 0, 0, 0), *merged[0], *merged[1]]
    return np.array(columns, np.int64).T.copy(), 1 + len(merged[0])


def reduce_products(x: Strided, y: Strided, out: Strided) -> None:
    """``out += x * y`` summed over the axes along which ``out`` repeats (stride 0); the three
    views share their shape and dtype, and ``out``'s memory is a contiguous device array."""
    geometry, kept = reduce_geometry(x.shape, x.strides, y.strides, out.strides)
    rows, reduced = int(np.prod(geometry[0, :kept])), int(np.prod(geometry[0, kept:]))
    chunks = max(1, min(reduced, -(-reduced // config.cuda.reduce_items_per_thread)))
    threads = config.cuda.threads_per_block
    blocks = max(1, min(REDUCE_BLOCKS, -(-rows * chunks // threads)))
    dtype = out.memory.dtype
    parts = 2 if dtype.kind == "c" else 1
    real = out.memory.view(np.dtype(dtype.char.lower()) if parts == 2 else dtype)
    reduce_products_kernel[blocks, threads](
        x.memory, y.memory, real, x.start, y.start, out.start, cuda.to_device(geometry), kept,
        chunks, parts,
    )  # fmt: skip


def summed_to(values, shape: tuple):
    """``values``, a C-contiguous device array, summed over the axes along which an array of
    ``shape`` (as many axes, each ``values``' length or 1) repeats to it: a new device array
    of ``shape``, summed on the GPU."""
    out = zeros(shape, values.dtype)
    if out.size and values.size:
        ones = Strided.of(cuda.to_device(np.ones(1, values.dtype))).expanded(values.shape)
        target = Strided.contiguous(out.reshape(-1), shape).expanded(values.shape)
        reduce_products(Strided.of(values), ones, target)
    return out


def device_view(value, shape: tuple, dtype) -> Strided:
    """``value`` (host or GPU, non-empty) on the GPU in ``dtype``, broadcast to ``shape``:
    the GPU array itself when it has that dtype, else a copy."""
    if on_gpu(value):
        view = Strided.of(value)
        if view.memory.dtype != dtype:
            view = Strided.of(view.as_contiguous(dtype))
    else:
        view = Strided.of(cuda.to_device(np.array(value, dtype, order="C")))
    return view.expanded(shape)


def adjoint_gradients(a, h, g, h0, layout, reverse: bool, solve):
    """``(da, db, dh0)`` of a linear VJP with GPU operands, as device arrays on the GPU.

    ``layout`` is the :class:`scanlab.gradients.AdjointLayout` of the checked operands;
    ``solve`` is the forward solver that runs the adjoint recurrence on GPU views
    (``scanlab.linear_recurrence`` or ``scanlab.linear_recurrence_matrix``, passed down by
    :func:`scanlab.gradients.adjoint_gradients`: this package stands below the public layer).
    """
    dtype, axis, state = layout.dtype, layout.time_axis, layout.state
    leading, rest = layout.leading, layout.rest_shape
    shape = leading + state
    adjoint = cuda.device_array(shape, dtype)
    da = zeros(layout.aligned_shape, dtype)
    dh0 = zeros(rest if layout.h0_shape is None else layout.h0_shape, dtype)
    length = shape[axis]
    if math.prod(shape) == 0:
        return da.reshape(layout.coefficient_shape), adjoint, dh0
    matrices = bool(state)
    coefficients = device_view(a, layout.aligned_shape, dtype)
    states, gradient = device_view(h, shape, dtype), device_view(g, shape, dtype)
    lam = Strided.contiguous(adjoint.reshape(-1), shape)
    # As on the host: the adjoint starts at the forward's last step, where it is g, and runs
    # back with the forward's coefficients one step later (``following``).
    last, first = (0, length - 1) if reverse else (length - 1, 0)
    remaining = (1, length) if reverse else (0, length - 1)
    following = (0, length - 1) if reverse else (1, length)
    gradient.at(axis, last).copy_into(lam.at(axis, last))
    varying = coefficients.shape[axis] != 1
    if length > 1:
        shifted = coefficients.sliced(axis, *following) if varying else coefficients
        if matrices:
            order = list(range(len(shifted.shape)))
            order[-2:] = order[-1], order[-2]
            shifted = shifted.permuted(order)
        solve(
            shifted, gradient.sliced(axis, *remaining), gradient.at(axis, last), axis=axis,
            reverse=not reverse, device="cuda", out=lam.sliced(axis, *remaining),
        )  # fmt: skip

    # dh0 = a[first] * lam[first] (A[first]^T lam[first]: summed over j of A[j, i] lam[j]).
    first_coefficient = coefficients.at(axis, first if varying else 0)
    gradient_h0 = Strided.contiguous(dh0.reshape(-1), dh0.shape).expanded(rest)
    first_adjoint = lam.at(axis, first)
    if matrices:
        n = state[0]
        first_adjoint = first_adjoint.with_axis(len(rest), n)
        gradient_h0 = gradient_h0.with_axis(len(rest) - 1, n)
    first_coefficient = first_coefficient.expanded(first_adjoint.shape)
    reduce_products(first_coefficient, first_adjoint, gradient_h0)

    # da[t] = lam[t] * h[t-1] (outer products with matrices), h0 before the first step.
    full = leading + state * 2
    gradient_a = Strided.contiguous(da.reshape(-1), layout.aligned_shape).expanded(full)
    adjoints, previous = lam, states
    if matrices:
        adjoints = lam.with_axis(len(shape), state[0])
        previous = states.with_axis(len(leading), state[0])
    if length > 1:
        reduce_products(
            adjoints.sliced(axis, *following),
            previous.sliced(axis, *remaining),
            gradient_a.sliced(axis, *following),
        )
    if h0 is not None:
        start = device_view(h0, rest, dtype)
        if matrices:
            start = start.with_axis(len(rest) - 1, state[0])
        reduce_products(adjoints.at(axis, first), start, gradient_a.at(axis, first))
    return da.reshape(layout.coefficient_shape), adjoint, dh0
