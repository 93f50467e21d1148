"""The products of GPU inputs by weights, and those of their pullbacks, on the GPU: the built-in
cells' input projections ``x @ W.T + bias``, and the dense products of the layers of
:mod:`scanlab.nn`.

The projection is a matrix product of every step's inputs ``(T B, m)`` by the input weights
``(G, m)``; its pullback, ``dx = du @ W``, ``dW = du.T @ x`` and ``dbias = du.sum(0)``, are two
more and a sum over the rows. cuBLAS does them best, so they go through CuPy (``cupy.matmul``,
on cuBLAS) where CuPy is installed and a GPU is present. Numba has no matrix product for device
arrays, and the CUDA simulator runs none of CuPy, so where CuPy is missing and under the
simulator (where the tests check them against NumPy) :func:`projection_kernel`, a shared-memory
tiled product of our own, computes ``x @ W.T`` (and ``du @ W``), and
:func:`scanlab.cuda.gradients.reduce_products` the sums over the rows. The kernel accumulates
in float64, the inputs and result keep their dtype.
"""

import math

import numba
import numpy as np
from numba import cuda

from scanlab.cuda.arrays import Strided
from scanlab.cuda.gradients import reduce_products, summed_to
from scanlab.cuda.memory import zeros

#: The side of the square tiles of ``projection_kernel``: a block of ``TILE x TILE`` threads
#: computes that many outputs, reading tiles of the inputs and weights through shared memory.
TILE = 16


@cuda.jit
def projection_kernel(x, weights, bias, out, accumulate):
    """``out[r, j] = sum_k x[r, k] * weights[j, k] + bias[j]`` (added to ``out[r, j]`` where
    ``accumulate``): blocks of ``TILE x TILE``
    threads, ``blockIdx.x`` along the rows ``r`` (many: ``T B``), ``blockIdx.y`` along the
    outputs ``j``; ``threadIdx.x`` along ``j`` and ``k``, ``threadIdx.y`` along ``r``. Dynamic
    shared memory holds a tile of ``x`` and one of ``weights``, ``2 TILE^2`` float64."""
    rows, inner = x.shape
    outputs = weights.shape[0]
    shared = cuda.shared.array(0, numba.float64)
    lane, depth = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.x * TILE + depth
    output = cuda.blockIdx.y * TILE + lane
    weight_row = cuda.blockIdx.y * TILE + depth
    total = 0.0
    for start in range(0, inner, TILE):
        k = start + lane
        inside = k < inner
        shared[depth * TILE + lane] = x[row, k] if inside and row < rows else 0.0
        shared[TILE * TILE + depth * TILE + lane] = (
            weights[weight_row, k] if inside and weight_row < outputs else 0.0
        )
        cuda.syncthreads()
        for q in range(TILE):
            total += shared[depth * TILE + q] * shared[TILE * TILE + lane * TILE + q]
        cuda.syncthreads()
    if row < rows and output < outputs:
        total += bias[output]
        out[row, output] = out[row, output] + total if accumulate else total


def project(x, weights: np.ndarray, bias: np.ndarray, out=None):
    """``x @ weights.T + bias`` for a C-contiguous device array ``x`` ``(rows, m)`` and host
    ``weights`` ``(G, m)`` and ``bias`` ``(G,)`` of its dtype: a new ``(rows, G)`` device
    array, or added into ``out`` (a C-contiguous ``(rows, G)`` device array) where given."""
    rows, outputs = x.shape[0], weights.shape[0]
    cupy = None if numba.config.ENABLE_CUDASIM else installed_cupy()
    if cupy is not None:
        product = cupy.matmul(cupy.asarray(x), cupy.asarray(weights).T)
        product += cupy.asarray(bias)
        if out is None:
            return cuda.as_cuda_array(product)
        cupy.asarray(out)[...] += product
        return out
    accumulate = out is not None
    if out is None:
        out = cuda.device_array((rows, outputs), x.dtype)
    if rows and outputs:
        grid = (math.ceil(rows / TILE), math.ceil(outputs / TILE))
        projection_kernel[grid, (TILE, TILE), 0, 2 * TILE * TILE * 8](
            x, cuda.to_device(weights), cuda.to_device(bias), out, accumulate
        )
    return out


def transposed_product(rows, columns) -> np.ndarray:
    """``rows.T @ columns`` for C-contiguous device arrays ``(R, p)`` and ``(R, q)`` of one
    dtype, summed over the ``R`` rows on the GPU: a ``(p, q)`` host array of their dtype (the
    gradients of weights, which are host arrays)."""
    cupy = None if numba.config.ENABLE_CUDASIM else installed_cupy()
    if cupy is not None:
        return cupy.matmul(cupy.asarray(rows).T, cupy.asarray(columns)).get()
    count, p = rows.shape
    q = columns.shape[1]
    out = zeros((p, q), rows.dtype)
    if count and p and q:
        # The index space (p, q, R): out[i, j] += rows[r, i] * columns[r, j].
        left = Strided.of(rows).permuted((1, 0)).with_axis(1, q)
        right = Strided.of(columns).permuted((1, 0)).with_axis(0, p)
        reduce_products(
            left, right, Strided.contiguous(out.reshape(-1), (p, q)).with_axis(2, count)
        )
    return out.copy_to_host()


def column_sums(rows) -> np.ndarray:
    """``rows.sum(axis=0)`` of a C-contiguous device array ``(R, p)``, summed on the GPU: a
    ``(p,)`` host array of its dtype."""
    return summed_to(rows, (1, rows.shape[1])).copy_to_host().reshape(-1)


def installed_cupy():
    """The ``cupy`` module, or None where it is not installed."""
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def kernel_signatures():
    """The kernel with the signatures :func:`project` launches (float32 and float64), for
    ``cuda.compile_ptx``."""
    return [
        (
            projection_kernel,
            f"void({dtype}[:, ::1], {dtype}[:, ::1], {dtype}[::1], {dtype}[:, ::1], boolean)",
        )
        for dtype in ("float32", "float64")
    ]
