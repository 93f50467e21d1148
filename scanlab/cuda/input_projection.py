"""The built-in cells' input projection ``x @ W.T + bias`` of GPU inputs, on the GPU.

The product is a matrix product of every step's inputs ``(T B, m)`` by the input weights
``(G, m)``: cuBLAS does it best, so it goes through CuPy (``cupy.matmul``, on cuBLAS) where CuPy
is installed and a GPU is present. Numba has no matrix product for device arrays, and the CUDA
simulator runs none of CuPy, so :func:`projection_kernel`, a shared-memory tiled product of our
own, runs where CuPy is missing and under the simulator (where the tests check it against
NumPy). The kernel accumulates in float64, the inputs and result keep their dtype.
"""

import math

import numba
import numpy as np
from numba import cuda

#: The side of the square tiles of ``projection_kernel``: a block of ``TILE x TILE`` threads
#: computes that many outputs, reading tiles of the inputs and weights through shared memory.
TILE = 16


@cuda.jit
def projection_kernel(x, weights, bias, out):
    """``out[r, j] = sum_k x[r, k] * weights[j, k] + bias[j]``: blocks of ``TILE x TILE``
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
        out[row, output] = total + bias[output]


def project(x, weights: np.ndarray, bias: np.ndarray):
    """``x @ weights.T + bias`` for a C-contiguous device array ``x`` ``(rows, m)`` and host
    ``weights`` ``(G, m)`` and ``bias`` ``(G,)`` of its dtype: a new ``(rows, G)`` device
    array."""
    rows, outputs = x.shape[0], weights.shape[0]
    cupy = None if numba.config.ENABLE_CUDASIM else installed_cupy()
    if cupy is not None:
        product = cupy.matmul(cupy.asarray(x), cupy.asarray(weights).T)
        product += cupy.asarray(bias)
        return cuda.as_cuda_array(product)
    out = cuda.device_array((rows, outputs), x.dtype)
    if rows and outputs:
        grid = (math.ceil(rows / TILE), math.ceil(outputs / TILE))
        projection_kernel[grid, (TILE, TILE), 0, 2 * TILE * TILE * 8](
            x, cuda.to_device(weights), cuda.to_device(bias), out
        )
    return out


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
            f"void({dtype}[:, ::1], {dtype}[:, ::1], {dtype}[::1], {dtype}[:, ::1])",
        )
        for dtype in ("float32", "float64")
    ]
