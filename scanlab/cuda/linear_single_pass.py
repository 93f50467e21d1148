"""The single-pass decoupled look-back scan of the elementwise recurrence, on the GPU.

An alternative to the reduce-then-scan of :func:`scanlab.cuda.linear.linear_recurrence_scan`,
which runs it with ``single_pass=True`` (``scanlab.config.cuda.single_pass_scan``): the same
blocks and tiles (:mod:`scanlab.cuda.linear_tiles`), but one launch, in which tiles are taken in
launch order and each block finds its incoming state by looking back at the tiles before it, so
``a`` and ``b`` are read once (Merrill & Garland 2016). Its carries are then checked and settled
as the reduce-then-scan's are.
"""

import numpy as np
from numba import cuda

from scanlab.cuda.kernel_layout import BOUNDS_TYPE, DTYPES, broadcast_steps
from scanlab.cuda.linear_tiles import (
    advance,
    check_within_tile,
    chunk_rows,
    compose,
    down_sweep,
    padded,
    reduce_tile,
    run_chunk,
    split_shared_memory,
    store_tile,
    tile_grid,
    tile_origin,
)
from scanlab.cuda.memory import scratch, zeros

#: Look-back flags of the single-pass scan: a tile (of one channel) has published nothing yet,
#: its aggregate (the composition of its steps), or its inclusive prefix (the state it ends in).
PENDING, AGGREGATE, INCLUSIVE = 0, 1, 2


@cuda.jit(device=True)
def raise_flag(flags, tile, channel, flag):
    """Set the look-back flag of ``tile`` of ``channel``, after the values it announces.

    The fence orders this thread's earlier writes before the flag for every thread of the GPU
    that sees the flag.
    """
    cuda.threadfence()
    cuda.atomic.exch(flags, (tile, channel), flag)


@cuda.jit(device=True)
def look_back(flags, aggregates_a, aggregates_b, inclusive, tile, channel):
    """The state entering ``tile`` of ``channel``, from the tiles before it (decoupled look-back).

    Walks back from ``tile - 1``, waiting for each tile to publish, composing the aggregates it
    meets until a tile has published its inclusive prefix. Tiles are handed out in launch order,
    so every tile waited on belongs to a block that is already running.
    """
    total_a = aggregates_a.dtype.type(1)
    total_b = aggregates_b.dtype.type(0)
    previous = tile - 1
    while True:
        flag = cuda.atomic.or_(flags, (previous, channel), 0)  # an atomic read
        if flag != PENDING:
            cuda.threadfence()
            if flag == INCLUSIVE:
                return advance(inclusive[previous, channel], total_a, total_b)
            total_a, total_b = compose(
                aggregates_a[previous, channel], aggregates_b[previous, channel], total_a, total_b
            )
            previous -= 1


@cuda.jit
def single_pass_kernel(
    a, b, a_steps, b_steps, h0, out, reverse, items_per_thread, marks, rerun, bounds, carries,
    flags, tiles_started, block_tiles, aggregates_a, aggregates_b, inclusive
):  # fmt: skip
    """Solve every tile in one pass: the decoupled look-back scan (Merrill & Garland 2016).

    Blocks take tiles in the order they start (``tiles_started`` counts them; a block's first
    thread hands its tile to the others through ``block_tiles``), stage and up-sweep their tile
    as ``scanlab.cuda.linear.tile_scan_kernel`` does, and publish its aggregate; each lane's last
    thread then looks back for the state entering the tile, publishes the state it leaves with,
    and roots the down-sweep at ``(0, carry)``, so every chunk's prefix holds its incoming state.
    ``a`` and ``b`` are read once. Each tile's carry goes to ``carries``, and the ends of its
    chunks are checked as in ``tile_scan_kernel``, into ``marks`` (its ``flags``: ``flags`` here
    are the look-back's) and ``rerun``.
    """
    shared = cuda.shared.array(0, out.dtype)
    tiles = split_shared_memory(shared, items_per_thread)
    _, tile_b, scan_a, scan_b = tiles
    shape = out.shape
    tile_rows = items_per_thread * cuda.blockDim.y
    # The block's tile goes through global memory, not a static shared array, which the CUDA
    # simulator allocates racily (its threads of a block may get different arrays).
    if cuda.threadIdx.x == 0 and cuda.threadIdx.y == 0:
        block_tiles[cuda.blockIdx.x] = cuda.atomic.add(tiles_started, 0, 1)
    cuda.syncthreads()
    tile, first_step, first_channel = tile_origin(shape[1], tile_rows, block_tiles[cuda.blockIdx.x])
    reduce_tile(
        a, b, a_steps, b_steps, shape, reverse, items_per_thread, first_step, first_channel, tiles
    )
    channel = first_channel + cuda.threadIdx.x
    root_a = out.dtype.type(0)
    root_b = out.dtype.type(0)
    if cuda.threadIdx.y == cuda.blockDim.y - 1 and channel < shape[1]:
        total = padded(cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x)
        total_a, total_b = scan_a[total], scan_b[total]
        if tile == 0:
            carry = h0[channel]
        else:
            aggregates_a[tile, channel] = total_a
            aggregates_b[tile, channel] = total_b
            raise_flag(flags, tile, channel, AGGREGATE)
            carry = look_back(flags, aggregates_a, aggregates_b, inclusive, tile, channel)
        inclusive[tile, channel] = advance(carry, total_a, total_b)
        raise_flag(flags, tile, channel, INCLUSIVE)
        carries[tile, channel] = carry
        root_b = carry
    down_sweep(scan_a, scan_b, root_a, root_b)
    first_row, row_count = chunk_rows(shape, first_step, first_channel, items_per_thread)
    end = out.dtype.type(0)
    if row_count > 0:
        prefix = padded(cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x)
        end = run_chunk(scan_b[prefix], tiles, first_row, row_count)
    cuda.syncthreads()
    if row_count > 0:
        check_within_tile(
            end, scan_b, items_per_thread, first_step, shape[0], (marks, rerun, bounds), tile,
            channel,
        )  # fmt: skip
    store_tile(tile_b, out, first_step, first_channel, reverse, tile_rows)


def single_pass_scan(a, b, h0, out, reverse, tunables, checks):
    """The single-pass variant of ``scanlab.cuda.linear.linear_recurrence_scan``: one launch of
    ``single_pass_kernel`` over every tile, its look-back flags cleared by a memset; the
    carries of its tiles, ``(tiles, D)``."""
    items_per_thread, shared_bytes = tunables[1], tunables[3]
    length, channels = out.shape
    block_shape, tile_count, block_count = tile_grid(length, channels, tunables)
    flags_and_counter = zeros(tile_count * channels + 1, np.int32, allocate=scratch)
    tiles_started = flags_and_counter[:1]
    flags = flags_and_counter[1:].reshape(tile_count, channels)
    aggregates_a, aggregates_b, inclusive, carries = (
        scratch((tile_count, channels), out.dtype) for _ in range(4)
    )
    block_tiles = scratch(block_count, np.int32)
    single_pass_kernel[block_count, block_shape, 0, shared_bytes](
        a, b, broadcast_steps(a), broadcast_steps(b), h0, out, reverse, items_per_thread, *checks,
        carries, flags, tiles_started, block_tiles, aggregates_a, aggregates_b, inclusive,
    )  # fmt: skip
    return carries


def kernel_signatures():
    """List every kernel of this module with each signature its launchers compile.

    Returns
    -------
    list of (numba.cuda.dispatcher.CUDADispatcher, str)
        One entry per kernel and dtype of :data:`scanlab.cuda.kernel_layout.DTYPES`; compile one
        to PTX without a GPU with ``cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))``.
    """
    checks = f"uint8[:, ::1], uint8[::1], {BOUNDS_TYPE}"
    signatures = []
    for dtype in DTYPES:
        matrix, vector = f"{dtype}[:, ::1]", f"{dtype}[::1]"
        coefficients = f"{matrix}, {matrix}, UniTuple(int64, 2), UniTuple(int64, 2)"
        signatures.append(
            (
                single_pass_kernel,
                f"void({coefficients}, {vector}, {matrix}, boolean, int64, {checks}, {matrix}, "
                f"int32[:, ::1], int32[::1], int32[::1], {matrix}, {matrix}, {matrix})",
            )
        )
    return signatures
