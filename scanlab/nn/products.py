"""The dense products of the layers of :mod:`scanlab.nn`, every step's as one matrix product
over all steps and sequences, where the layer's arrays lie.

On the host they are NumPy's (BLAS); for device arrays they run on the GPU, by
:mod:`scanlab.cuda.input_projection` (cuBLAS through CuPy where installed, else a kernel of
scanlab's own) and :mod:`scanlab.cuda.one_hot` for :class:`~scanlab.nn.OneHot` inputs.
Products of activations are arrays where their factors are; the weights' gradients are host
arrays, like the weights.
"""

import math

import numpy as np
import scipy.sparse

from scanlab._devices import cuda_module, on_gpu
from scanlab.nn.operands import OneHot


def rows_of(values):
    """``values`` (C-contiguous where it is a device array) as a 2-D array of its last axis'
    rows (also when that axis has length 0)."""
    *leading, last = values.shape  # not shape[-1]: the CUDA simulator's shapes refuse it
    return values.reshape(math.prod(leading), last)


def matrix_product(x, weight: np.ndarray, out=None):
    """``x @ weight`` over the last axis (on the GPU for a device ``x``), or added into ``out``
    (an array of the result's shape where ``x`` is) where given."""
    shape = x.shape[:-1] + weight.shape[1:]
    if not on_gpu(x):
        product = (rows_of(x) @ weight).reshape(shape)
        if out is None:
            return product
        out += product
        return out
    rows = cuda_module("input_projection").project(
        rows_of(x),
        np.ascontiguousarray(weight.T),
        np.zeros(weight.shape[1], weight.dtype),
        out=None if out is None else rows_of(out),
    )
    return rows.reshape(shape)


def input_product(x, weight: np.ndarray, bias: np.ndarray):
    """``x @ weight + bias``; for a :class:`OneHot` ``x``, a gather of rows of ``weight``. On
    the GPU for a device ``x`` or a ``OneHot`` of GPU indices."""
    if not isinstance(x, OneHot):
        if on_gpu(x):
            rows = cuda_module("input_projection").project(
                rows_of(x), np.ascontiguousarray(weight.T), bias
            )
            return rows.reshape(x.shape[:-1] + bias.shape)
        result = matrix_product(x, weight)
    elif x.on_gpu:
        arrays = cuda_module("arrays")
        shape = x.shape[:-1] + bias.shape
        result = arrays.batch_aligned(arrays.on_device(bias), shape, bias.dtype)
        indices, values = x.flat(weight.dtype)
        cuda_module("one_hot").gather_rows(
            indices, values, arrays.on_device(weight), rows_of(result)
        )
        return result
    else:
        result = weight[x.indices]
        if x.values is not None:
            result *= np.expand_dims(x.values, -1)
    result += bias
    return result


def input_backward(x, weight: np.ndarray, dpre):
    """``dL/dweight`` and ``dL/dx`` (None for a :class:`OneHot`) through ``x @ weight``."""
    flat = rows_of(dpre)
    if isinstance(x, OneHot) and x.on_gpu:
        indices, values = x.flat(dpre.dtype)
        return cuda_module("one_hot").scattered_rows(indices, values, flat, x.size), None
    if not isinstance(x, OneHot):
        return transposed_product(x, dpre), matrix_product(dpre, weight.T)
    count = flat.shape[0]
    values = np.broadcast_to(1 if x.values is None else x.values, x.indices.shape)
    # One nonzero per row: a sparse product sums the rows of dpre by index in O(count).
    rows = scipy.sparse.csr_array(
        (
            values.reshape(-1).astype(dpre.dtype),
            x.indices.reshape(-1).astype(np.intp),
            np.arange(count + 1),
        ),
        shape=(count, x.size),
    )
    return rows.T @ flat, None


def transposed_product(rows, columns) -> np.ndarray:
    """``rows.T @ columns`` summed over every axis but the last (``(..., p)`` and ``(..., q)``
    to ``(p, q)``: a weight's gradient), a host array; summed on the GPU for device arrays."""
    if on_gpu(rows):
        return cuda_module("input_projection").transposed_product(rows_of(rows), rows_of(columns))
    return rows_of(rows).T @ rows_of(columns)


def sum_over_steps(values) -> np.ndarray:
    """``values`` summed over every axis but the last (a bias gradient), a host array; summed
    on the GPU for a device array."""
    if on_gpu(values):
        return cuda_module("input_projection").column_sums(rows_of(values))
    return rows_of(values).sum(axis=0)
