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
