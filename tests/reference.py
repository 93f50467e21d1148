"""Sequential references in float64 (complex128 for complex inputs), named like the API."""

import numpy as np


def linear_recurrence(a, b, h0=None, *, axis=0, reverse=False):
    """``h[t] = a[t] * h[t-1] + b[t]`` along ``axis``, one step at a time."""
    a = np.asarray(a)
    b = np.asarray(b)
    complex_ = any(np.iscomplexobj(x) for x in (a, b, np.asarray(0 if h0 is None else h0)))
    dtype = np.complex128 if complex_ else np.float64
    shape = np.broadcast_shapes(a.shape, b.shape)
    a = np.moveaxis(np.broadcast_to(a, shape).astype(dtype), axis, 0)
    b = np.moveaxis(np.broadcast_to(b, shape).astype(dtype), axis, 0)
    h = np.zeros(b.shape[1:], dtype)
    if h0 is not None:
        h = np.broadcast_to(h0, b.shape[1:]).astype(dtype)
    result = np.empty(b.shape, dtype)
    for t in reversed(range(len(b))) if reverse else range(len(b)):
        h = a[t] * h + b[t]
        result[t] = h
    return np.moveaxis(result, 0, axis)


def linear_recurrence_matrix(A, b, h0=None, *, axis=0, reverse=False):
    """``h[t] = A[t] @ h[t-1] + b[t]`` along ``axis`` (an axis of ``b``), one step at a time."""
    A = np.asarray(A)
    b = np.asarray(b)
    complex_ = any(np.iscomplexobj(x) for x in (A, b, np.asarray(0 if h0 is None else h0)))
    dtype = np.complex128 if complex_ else np.float64
    leading = np.broadcast_shapes(A.shape[:-2], b.shape[:-1])
    size = b.shape[-1]
    axis %= len(leading) + 1
    A = np.moveaxis(np.broadcast_to(A, leading + (size, size)).astype(dtype), axis, 0)
    b = np.moveaxis(np.broadcast_to(b, leading + (size,)).astype(dtype), axis, 0)
    h = np.zeros(b.shape[1:], dtype)
    if h0 is not None:
        h = np.broadcast_to(h0, b.shape[1:]).astype(dtype)
    result = np.empty(b.shape, dtype)
    for t in reversed(range(len(b))) if reverse else range(len(b)):
        h = np.einsum("...ij,...j->...i", A[t], h) + b[t]
        result[t] = h
    return np.moveaxis(result, 0, axis)


def linear_recurrence_vjp(a, h, g, h0=None, *, axis=0, reverse=False):
    """The backward pass, unrolled step by step: ``(da, db, dh0)`` in float64/complex128."""
    return _backward(a, h, g, h0, axis, reverse, matrices=False)


def linear_recurrence_matrix_vjp(A, h, g, h0=None, *, axis=0, reverse=False):
    """The backward pass of the matrix recurrence, unrolled step by step."""
    return _backward(A, h, g, h0, axis, reverse, matrices=True)


def _backward(a, h, g, h0, axis, reverse, matrices):
    a, h, g = np.asarray(a), np.asarray(h), np.asarray(g)
    complex_ = any(np.iscomplexobj(x) for x in (a, h, g, np.asarray(0 if h0 is None else h0)))
    dtype = np.complex128 if complex_ else np.float64
    state = h.shape[-1:] if matrices else ()
    leading = h.shape[: h.ndim - len(state)]
    axis %= len(leading) + len(state)
    full_a = np.broadcast_to(a, leading + state * 2).astype(dtype)
    a_t = np.moveaxis(full_a, axis, 0)
    h_t = np.moveaxis(h.astype(dtype), axis, 0)
    g_t = np.moveaxis(g.astype(dtype), axis, 0)
    rest = h_t.shape[1:]
    start = np.zeros(rest, dtype) if h0 is None else np.broadcast_to(h0, rest).astype(dtype)
    order = list(reversed(range(len(h_t)))) if reverse else list(range(len(h_t)))
    da = np.zeros(a_t.shape, dtype)
    db = np.zeros(h_t.shape, dtype)
    carried = np.zeros(rest, dtype)  # dL/dh[t] from the steps after t
    for position in reversed(range(len(order))):
        t = order[position]
        adjoint = g_t[t] + carried
        db[t] = adjoint
        before = start if position == 0 else h_t[order[position - 1]]
        if matrices:
            da[t] = adjoint[..., :, None] * before[..., None, :]
            carried = np.einsum("...ji,...j->...i", a_t[t], adjoint)
        else:
            da[t] = adjoint * before
            carried = a_t[t] * adjoint
    dh0 = carried
    da = np.moveaxis(da, 0, axis)
    # Sum over the axes a was broadcast along.
    extra = da.ndim - a.ndim
    da = da.sum(axis=tuple(range(extra)))
    da = da.sum(axis=tuple(i for i, n in enumerate(a.shape) if n == 1), keepdims=True)
    if h0 is not None:
        h0 = np.asarray(h0)
        extra = dh0.ndim - h0.ndim
        dh0 = dh0.sum(axis=tuple(range(extra)))
        dh0 = dh0.sum(axis=tuple(i for i, n in enumerate(h0.shape) if n == 1), keepdims=True)
    return da.reshape(a.shape), np.moveaxis(db, 0, axis), dh0
