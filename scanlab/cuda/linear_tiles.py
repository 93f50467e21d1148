"""The block-level steps of the tiled scans of the elementwise recurrence, on the GPU.

Both scans of :mod:`scanlab.cuda.linear` (the reduce-then-scan, and the single-pass look-back scan
of :mod:`scanlab.cuda.linear_single_pass`) cut time into tiles and solve each tile in a block of
``(lanes, rows)`` threads: a coalesced load of the tile of ``a`` and ``b`` into padded shared
memory (:func:`load_tile`), a sequential composition of each thread's chunk and Blelloch's
up-sweep over the chunk summaries (:func:`reduce_tile`), the down-sweep (:func:`down_sweep`), a
rerun of each chunk from its incoming state (:func:`run_chunk`) with the check of the state it
ends in against the next chunk's (:func:`check_within_tile`), and a coalesced store
(:func:`store_tile`); and the scan operator (:func:`compose`) and the grid of blocks over the
tiles (:func:`tile_grid`) they share. The device functions compile once each and NVVM inlines
them into the kernels (see :mod:`scanlab.cuda.linear`); the scalar helpers' IR is inlined.
"""

from numba import cuda, njit

from scanlab._scaled_products import agrees
from scanlab.cuda.kernel_layout import time_index

#: Shared-memory banks of a CUDA multiprocessor. Tiles in shared memory get one padding slot every
#: this many elements, so the threads of a warp walking down a column hit distinct banks.
SHARED_MEMORY_BANKS = 32


@njit(inline="always")
def advance(state, coefficient, offset):
    """One step of the recurrence: ``coefficient * state + offset``."""
    return coefficient * state + offset


@njit(inline="always")
def compose(first_a, first_b, second_a, second_b):
    """The scan operator: step ``(first_a, first_b)`` followed by step ``(second_a, second_b)``."""
    return second_a * first_a, advance(first_b, second_a, second_b)


@njit(inline="always")
def padded(index):
    """Slot in shared memory of element ``index`` of a padded tile."""
    return index + index // SHARED_MEMORY_BANKS


@njit(inline="always")
def shared_slots(count):
    """Slots a padded tile of ``count`` elements takes in shared memory."""
    return padded(count - 1) + 1


@cuda.jit(device=True)
def split_shared_memory(shared, items_per_thread):
    """Cut the block's dynamic shared memory into its ``a``/``b`` tiles and scan arrays.

    The tiles hold ``items_per_thread`` elements per thread, the scan arrays one per thread, all
    padded (see :func:`padded`) and row-major: element ``row * blockDim.x + lane``.
    """
    block_threads = cuda.blockDim.x * cuda.blockDim.y
    tile_end = shared_slots(items_per_thread * block_threads)
    scan_end = 2 * tile_end + shared_slots(block_threads)
    return (
        shared[:tile_end],
        shared[tile_end : 2 * tile_end],
        shared[2 * tile_end : scan_end],
        shared[scan_end : scan_end + shared_slots(block_threads)],
    )


@cuda.jit(device=True)
def tile_origin(channels, tile_rows, block):
    """The tile of the ``block``-th block, its first step and its first channel.

    Blocks enumerate the channel groups of a tile first, then the tiles.
    """
    channel_groups = (channels + cuda.blockDim.x - 1) // cuda.blockDim.x
    tile = block // channel_groups
    first_channel = (block % channel_groups) * cuda.blockDim.x
    return tile, tile * tile_rows, first_channel


@cuda.jit(device=True)
def load_tile(source, source_steps, shape, first_step, first_channel, reverse, tile, tile_rows):
    """Copy the block's tile of ``source`` (rows in step order) into shared ``tile``.

    ``shape`` is ``(T, D)`` of the result. Thread ``(lane, y)`` copies channel
    ``first_channel + lane`` of tile rows ``y, y + blockDim.y, ...``: consecutive threads read
    consecutive channels, then consecutive time rows, so a warp reads contiguous memory however
    few channels there are.
    """
    length, channels = shape
    row_step, column_step = source_steps
    channel = first_channel + cuda.threadIdx.x
    if channel < channels:
        for row in range(cuda.threadIdx.y, tile_rows, cuda.blockDim.y):
            step = first_step + row
            if step < length:
                t = time_index(step, length, reverse)
                element = source[t * row_step, channel * column_step]
                tile[padded(row * cuda.blockDim.x + cuda.threadIdx.x)] = element


@cuda.jit(device=True)
def store_tile(tile, out, first_step, first_channel, reverse, tile_rows):
    """Copy the block's tile back to ``out``, with the coalesced access pattern of ``load_tile``."""
    length, channels = out.shape
    channel = first_channel + cuda.threadIdx.x
    if channel < channels:
        for row in range(cuda.threadIdx.y, tile_rows, cuda.blockDim.y):
            step = first_step + row
            if step < length:
                t = time_index(step, length, reverse)
                out[t, channel] = tile[padded(row * cuda.blockDim.x + cuda.threadIdx.x)]


@cuda.jit(device=True)
def chunk_rows(shape, first_step, first_channel, items_per_thread):
    """First tile row of this thread's chunk and how many of its rows hold data (maybe 0)."""
    length, channels = shape
    first_row = cuda.threadIdx.y * items_per_thread
    if first_channel + cuda.threadIdx.x >= channels:
        return first_row, 0
    return first_row, max(0, min(items_per_thread, length - first_step - first_row))


@cuda.jit(device=True)
def up_sweep(scan_a, scan_b):
    """Blelloch's up-sweep, in place, over the ``blockDim.y`` pairs of every channel lane.

    Leaves partial compositions in the tree's nodes and the composition of all pairs in the last
    one. Every thread of the block calls it; it ends synchronised.
    """
    lane = cuda.threadIdx.x
    count = cuda.blockDim.y
    offset = 1
    while offset < count:
        right = (cuda.threadIdx.y + 1) * 2 * offset - 1
        if right < count:
            left_slot = padded((right - offset) * cuda.blockDim.x + lane)
            right_slot = padded(right * cuda.blockDim.x + lane)
            scan_a[right_slot], scan_b[right_slot] = compose(
                scan_a[left_slot], scan_b[left_slot], scan_a[right_slot], scan_b[right_slot]
            )
        cuda.syncthreads()
        offset *= 2


@cuda.jit(device=True)
def down_sweep(scan_a, scan_b, root_a, root_b):
    """Blelloch's down-sweep: turns the up-swept tree into exclusive prefixes, in place.

    Pair ``y`` of a lane ends as ``(root_a, root_b)`` composed with pairs ``0 .. y-1``: with the
    identity ``(1, 0)`` as root, the exclusive prefixes. The root is read from the lane's last
    thread (``threadIdx.y == blockDim.y - 1``). Every thread of the block calls it; it ends
    synchronised.
    """
    lane = cuda.threadIdx.x
    count = cuda.blockDim.y
    if cuda.threadIdx.y == count - 1:
        root = padded(cuda.threadIdx.y * cuda.blockDim.x + lane)
        scan_a[root] = root_a
        scan_b[root] = root_b
    cuda.syncthreads()
    offset = count // 2
    while offset > 0:
        right = (cuda.threadIdx.y + 1) * 2 * offset - 1
        if right < count:
            left_slot = padded((right - offset) * cuda.blockDim.x + lane)
            right_slot = padded(right * cuda.blockDim.x + lane)
            left_a, left_b = scan_a[left_slot], scan_b[left_slot]
            parent_a, parent_b = scan_a[right_slot], scan_b[right_slot]
            scan_a[left_slot], scan_b[left_slot] = parent_a, parent_b
            scan_a[right_slot], scan_b[right_slot] = compose(parent_a, parent_b, left_a, left_b)
        cuda.syncthreads()
        offset //= 2


@cuda.jit(device=True)
def reduce_tile(
    a, b, a_steps, b_steps, shape, reverse, items_per_thread, first_step, first_channel, shared
):
    """Stage the block's tile, compose each thread's chunk, and up-sweep the chunk summaries.

    ``shared`` is the ``(tile_a, tile_b, scan_a, scan_b)`` of :func:`split_shared_memory`. Each
    thread composes its ``items_per_thread`` consecutive steps sequentially into one pair
    ``(product of a, state reached from 0)``, its entry of ``scan_a``/``scan_b``; past the data,
    the identity ``(1, 0)``. Ends synchronised, with the composition of the whole tile in the last
    entry of each channel lane.
    """
    tile_a, tile_b, scan_a, scan_b = shared
    tile_rows = items_per_thread * cuda.blockDim.y
    load_tile(a, a_steps, shape, first_step, first_channel, reverse, tile_a, tile_rows)
    load_tile(b, b_steps, shape, first_step, first_channel, reverse, tile_b, tile_rows)
    cuda.syncthreads()
    first_row, row_count = chunk_rows(shape, first_step, first_channel, items_per_thread)
    product = tile_a.dtype.type(1)
    partial = tile_b.dtype.type(0)
    for row in range(first_row, first_row + row_count):
        slot = padded(row * cuda.blockDim.x + cuda.threadIdx.x)
        product, partial = compose(product, partial, tile_a[slot], tile_b[slot])
    summary = padded(cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x)
    scan_a[summary] = product
    scan_b[summary] = partial
    cuda.syncthreads()
    up_sweep(scan_a, scan_b)


@cuda.jit(device=True)
def run_chunk(state, shared, first_row, row_count):
    """Run this thread's chunk of the staged tile from ``state``, the state entering it, write
    its states over ``b``'s tile (``shared`` as in :func:`reduce_tile`), and return the state it
    ends in."""
    tile_a, tile_b, _, _ = shared
    for row in range(first_row, first_row + row_count):
        slot = padded(row * cuda.blockDim.x + cuda.threadIdx.x)
        state = advance(state, tile_a[slot], tile_b[slot])
        tile_b[slot] = state
    return state


@cuda.jit(device=True)
def check_chunk_end(end, next_incoming, checks, tile, channel):
    """Mark ``tile`` of ``channel`` in ``checks = (flags, rerun, bounds)`` (and the channel in
    ``rerun``) when ``end``, the state a thread's chunk ends in (the loop's, from its incoming
    state), disagrees with ``next_incoming``, the composed state the next chunk started from."""
    flags, rerun, bounds = checks
    if not agrees(end, next_incoming, bounds):
        flags[tile, channel] = 1
        rerun[channel] = 1


@cuda.jit(device=True)
def check_within_tile(end, scan_b, items_per_thread, first_step, length, checks, tile, channel):
    """After the block's chunks ran (synchronised), compare the state this thread's chunk ended
    in, ``end``, with the incoming state of the next thread's chunk, which ``scan_b`` holds in
    its slot, if that chunk has data (``check_chunk_end``)."""
    following = cuda.threadIdx.y + 1
    if following < cuda.blockDim.y and first_step + following * items_per_thread < length:
        next_incoming = scan_b[padded(following * cuda.blockDim.x + cuda.threadIdx.x)]
        check_chunk_end(end, next_incoming, checks, tile, channel)


def tile_grid(length: int, channels: int, tunables: tuple) -> tuple:
    """The scan's ``(block_shape, tile_count, block_count)`` for a ``(T, D)`` problem."""
    threads_per_block, items_per_thread, channels_per_block, _ = tunables
    lanes = min(channels_per_block, threads_per_block, 1 << (channels - 1).bit_length())
    block_shape = (lanes, threads_per_block // lanes)
    tile_rows = items_per_thread * block_shape[1]
    tile_count = (length + tile_rows - 1) // tile_rows
    return block_shape, tile_count, tile_count * ((channels + lanes - 1) // lanes)
