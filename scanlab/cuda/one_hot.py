"""One-hot inputs on the GPU: the range of their indices, their dense form, the gather of
weight rows that is their input product, and the scatter of gradient rows that is its
pullback.

A one-hot input ``values[r] e[indices[r]]`` (:class:`scanlab.nn.OneHot` with GPU indices)
multiplies a ``(size, G)`` weight matrix by picking one of its rows per input row
(:func:`gather_rows`); the weights' gradient sums the output gradient's rows by index
(:func:`scattered_rows`). Many rows share an index (a few symbols, millions of steps), so the
scatter adds into shared memory first: a block owns a tile of ``SYMBOLS`` indices by ``LANES``
columns in float64, reads a range of the rows, adds what falls into its tile there (atomics in
shared memory, which rarely collide across a warp's consecutive columns), and then adds the
tile to the result once (atomics in global memory). Indices beyond one tile are covered by more
tiles along the grid's y dimension, each reading the rows again.
"""

import math

import numba
import numpy as np
from numba import cuda

from scanlab.cuda.arrays import launch_over
from scanlab.cuda.elementwise import launch_flat
from scanlab.cuda.memory import zeros

#: Indices and columns of the shared-memory tile of :func:`scatter_kernel` (``SYMBOLS * LANES``
#: float64, 32 KiB), and the rows of threads of its blocks (``LANES`` by ``ROW_THREADS``).
SYMBOLS, LANES, ROW_THREADS = 128, 32, 8

#: Rows each block of :func:`scatter_kernel` reads at the least, and the most blocks along the
#: rows: enough blocks to fill a large GPU, few enough that the tiles' global atomics stay few.
SCATTER_ROWS, SCATTER_BLOCKS = 4096, 256

#: The index dtypes whose kernels :func:`kernel_signatures` lists (others compile on first use).
INDEX_DTYPES = ("uint8", "int64")


@cuda.jit
def bounds_kernel(indices, bounds):
    """``bounds[0] = min(indices)`` and ``bounds[1] = max(indices)`` (set beforehand to the
    largest and smallest int64), by atomics from a grid-stride loop."""
    low, high = bounds[0], bounds[1]
    start = cuda.grid(1)
    for r in range(start, indices.size, cuda.gridsize(1)):
        index = numba.int64(indices[r])
        low, high = min(low, index), max(high, index)
    cuda.atomic.min(bounds, 0, low)
    cuda.atomic.max(bounds, 1, high)


@cuda.jit
def gather_kernel(indices, values, table, out):
    """``out[r, j] += values[r] * table[indices[r], j]`` over ``out``'s ``(R, G)`` elements."""
    rows, columns = out.shape
    first, start = cuda.grid(2)
    across, down = cuda.gridsize(2)
    for r in range(start, rows, down):
        index, value = indices[r], values[r]
        for j in range(first, columns, across):
            out[r, j] += value * table[index, j]


@cuda.jit
def put_kernel(indices, values, out):
    """``out[r, indices[r]] = values[r]`` for every row ``r`` of ``out`` ``(R, size)``."""
    for r in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[r, indices[r]] = values[r]


@cuda.jit
def scatter_kernel(indices, values, rows, out, rows_per_block):
    """``out[s, j] += sum of values[r] * rows[r, j] over the r with indices[r] == s``, ``out``
    ``(size, G)`` float64: block ``(x, y, z)`` sums columns ``x LANES + lane``, indices from
    ``y SYMBOLS``, rows from ``z rows_per_block``, in a tile of dynamic shared memory."""
    tile = cuda.shared.array(0, numba.float64)
    lane, depth = cuda.threadIdx.x, cuda.threadIdx.y
    column = cuda.blockIdx.x * LANES + lane
    first_symbol = cuda.blockIdx.y * SYMBOLS
    for k in range(depth * LANES + lane, SYMBOLS * LANES, LANES * ROW_THREADS):
        tile[k] = 0.0
    cuda.syncthreads()
    count, columns = rows.shape
    start = cuda.blockIdx.z * rows_per_block
    stop = min(count, start + rows_per_block)
    if column < columns:
        for r in range(start + depth, stop, ROW_THREADS):
            symbol = numba.int64(indices[r]) - first_symbol
            if 0 <= symbol < SYMBOLS:
                product = numba.float64(values[r]) * numba.float64(rows[r, column])
                cuda.atomic.add(tile, symbol * LANES + lane, product)
    cuda.syncthreads()
    if column < columns:
        for symbol in range(depth, min(SYMBOLS, out.shape[0] - first_symbol), ROW_THREADS):
            total = tile[symbol * LANES + lane]
            if total != 0.0:
                cuda.atomic.add(out, (first_symbol + symbol, column), total)


def index_bounds(indices) -> tuple:
    """The smallest and largest of a non-empty 1-D device array of integers, found on the GPU."""
    bounds = cuda.to_device(np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min]))
    launch_flat(bounds_kernel, indices.size)(indices, bounds)
    low, high = bounds.copy_to_host()
    return int(low), int(high)


def gather_rows(indices, values, table, out) -> None:
    """``out[r] += values[r] * table[indices[r]]``: 1-D device ``indices`` and ``values``
    ``(R,)``, a C-contiguous device ``table`` ``(size, G)`` and ``out`` ``(R, G)``."""
    if out.size:
        launch_over(gather_kernel, *out.shape)(indices, values, table, out)


def dense(indices, values, shape: tuple, dtype):
    """The one-hot vectors ``values[r] e[indices[r]]`` as a new device array of ``shape``
    (``indices``' shape and the vectors' size) and ``dtype``: zeros and one put per row."""
    out = zeros((math.prod(shape[:-1]), shape[-1]), dtype)
    if out.size:
        launch_flat(put_kernel, out.shape[0])(indices, values, out)
    return out.reshape(shape)


def scattered_rows(indices, values, rows, size: int) -> np.ndarray:
    """``sum over r of values[r] * rows[r]`` into row ``indices[r]`` of a ``(size, G)`` result:
    the pullback of :func:`gather_rows` to its table, a host array of ``rows``' dtype (a
    weight's gradient), summed on the GPU in float64."""
    count, columns = rows.shape
    out = zeros((size, columns), np.float64)
    if count and columns:
        chunks = min(SCATTER_BLOCKS, math.ceil(count / SCATTER_ROWS))
        grid = (math.ceil(columns / LANES), math.ceil(size / SYMBOLS), chunks)
        shared = SYMBOLS * LANES * 8
        scatter_kernel[grid, (LANES, ROW_THREADS), 0, shared](
            indices, values, rows, out, math.ceil(count / chunks)
        )
    return out.copy_to_host().astype(rows.dtype)


def kernel_signatures():
    """The kernels with the signatures the launchers compile for float32 and float64 rows and
    the index dtypes :data:`INDEX_DTYPES`, for ``cuda.compile_ptx``."""
    signatures = []
    for index in INDEX_DTYPES:
        signatures.append((bounds_kernel, f"void({index}[::1], int64[::1])"))
        for dtype in ("float32", "float64"):
            matrix, vector = f"{dtype}[:, ::1]", f"{dtype}[::1]"
            signatures += [
                (put_kernel, f"void({index}[::1], {vector}, {matrix})"),
                (gather_kernel, f"void({index}[::1], {vector}, {matrix}, {matrix})"),
                (
                    scatter_kernel,
                    f"void({index}[::1], {vector}, {matrix}, float64[:, ::1], int64)",
                ),
            ]
    return signatures
