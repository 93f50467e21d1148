"""CUDA kernels for the elementwise linear recurrence ``h_t = a_t * h_{t-1} + b_t``.

Twin of :mod:`scanlab.cpu.linear`, with the same launcher names and the same layout: ``out`` is a
C-contiguous ``(T, D)`` device array with time first; ``a`` and ``b`` are C-contiguous
``(T or 1, D or 1)`` device arrays (a length-1 axis broadcasts); ``h0`` is ``(D,)``; all share one
dtype (float32, float64, complex64 or complex128). ``reverse`` runs time backwards. ``out`` never
overlaps ``a`` or ``b``. The launchers queue their kernels on the default stream and return without
waiting: the results stay on the device.

The one-thread-per-channel loop, the hierarchical reduce-then-scan and the checks that settle a
scan's carries are here; the block-level steps the scans share are in
:mod:`scanlab.cuda.linear_tiles`, the single-pass look-back scan in
:mod:`scanlab.cuda.linear_single_pass`.

Every kernel reads its dtype from its arguments (``cuda.shared.array(0, out.dtype)``), so Numba
compiles one specialisation per dtype on first use; :func:`kernel_signatures` lists them. Every
helper is a device function, compiled once and inlined by NVVM: the same PTX as Numba copying
its IR into every call site (``inline="always"``, 2 of 48 kernels differing by a few moves),
compiled in 0.8 of the time. Compiling a device function asks the driver for the GPU's compute
capability (``tests/test_cuda_ptx.py`` names one to compile to PTX without a GPU). The kernels
compile without fastmath: NVVM still fuses multiply-adds, and NaN, Inf and subnormals behave as
IEEE 754 says.
"""

import numpy as np
from numba import cuda

from scanlab import config
from scanlab._scaled_products import agrees, product_bounds
from scanlab.cuda.kernel_layout import (
    BOUNDS_TYPE,
    DTYPES,
    SHARED_MEMORY_LIMIT,
    broadcast_steps,
    time_index,
)
from scanlab.cuda.linear_single_pass import single_pass_scan
from scanlab.cuda.linear_tiles import (
    advance,
    check_chunk_end,
    check_within_tile,
    chunk_rows,
    down_sweep,
    padded,
    reduce_tile,
    run_chunk,
    shared_slots,
    split_shared_memory,
    store_tile,
    tile_grid,
    tile_origin,
)
from scanlab.cuda.memory import scratch, zeros


@cuda.jit(device=True)
def run_steps(a, b, a_steps, b_steps, state, out, reverse, channel, steps):
    """Steps ``[steps[0], steps[1])`` of one channel from ``state``, one after another, written
    to ``out``; the state after them."""
    length = out.shape[0]
    a_row, a_column = a_steps
    b_row, b_column = b_steps
    for step in range(steps[0], steps[1]):
        t = time_index(step, length, reverse)
        coefficient = a[t * a_row, channel * a_column]
        state = advance(state, coefficient, b[t * b_row, channel * b_column])
        out[t, channel] = state
    return state


@cuda.jit
def sequential_kernel(a, b, a_steps, b_steps, h0, out, reverse):
    """One thread per channel runs the whole recurrence; a warp reads one row segment per step."""
    channel = cuda.grid(1)
    if channel < out.shape[1]:
        run_steps(a, b, a_steps, b_steps, h0[channel], out, reverse, channel, (0, out.shape[0]))


@cuda.jit
def tile_totals_kernel(
    a, b, a_steps, b_steps, length, reverse, items_per_thread, totals_a, totals_b
):
    """Write the composition of each tile's steps to row ``tile`` of ``totals_a``/``totals_b``.

    A block of ``(lanes, rows)`` threads covers ``items_per_thread * rows`` steps (in step order)
    of ``lanes`` channels, with the dynamic shared memory of :func:`split_shared_memory`.
    """
    shape = (length, totals_a.shape[1])
    shared = cuda.shared.array(0, totals_a.dtype)
    tiles = split_shared_memory(shared, items_per_thread)
    tile, first_step, first_channel = tile_origin(
        shape[1], items_per_thread * cuda.blockDim.y, cuda.blockIdx.x
    )
    reduce_tile(
        a, b, a_steps, b_steps, shape, reverse, items_per_thread, first_step, first_channel, tiles
    )
    channel = first_channel + cuda.threadIdx.x
    if cuda.threadIdx.y == cuda.blockDim.y - 1 and channel < shape[1]:
        _, _, scan_a, scan_b = tiles
        total = padded(cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x)
        totals_a[tile, channel] = scan_a[total]
        totals_b[tile, channel] = scan_b[total]


@cuda.jit
def tile_scan_kernel(
    a, b, a_steps, b_steps, carries, out, reverse, items_per_thread, flags, rerun, bounds
):
    """Solve every tile from its incoming state ``carries[tile]`` and write it to ``out``.

    Same blocks and tiles as ``tile_totals_kernel``. After the up-sweep, the down-sweep gives each
    thread the composition of the chunks before its own; applied to the tile's carry it is the
    state entering the thread's chunk, which the thread then reruns from the staged tile, writing
    the states over ``b``'s tile for a coalesced store. At the first level (``flags`` of one row
    per tile; empty above, where the carries are only the first level's guesses), the state each
    chunk ends in is checked against the one the next chunk of the tile started from
    (``check_within_tile``); a disagreement marks the tile in ``flags`` and its channel in
    ``rerun`` for ``settle_kernel``.
    """
    shared = cuda.shared.array(0, out.dtype)
    tiles = split_shared_memory(shared, items_per_thread)
    _, tile_b, scan_a, scan_b = tiles
    shape = out.shape
    tile_rows = items_per_thread * cuda.blockDim.y
    tile, first_step, first_channel = tile_origin(shape[1], tile_rows, cuda.blockIdx.x)
    reduce_tile(
        a, b, a_steps, b_steps, shape, reverse, items_per_thread, first_step, first_channel, tiles
    )
    down_sweep(scan_a, scan_b, 1, 0)
    first_row, row_count = chunk_rows(shape, first_step, first_channel, items_per_thread)
    channel = first_channel + cuda.threadIdx.x
    end = out.dtype.type(0)
    if row_count > 0:
        prefix = padded(cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x)
        incoming = advance(carries[tile, channel], scan_a[prefix], scan_b[prefix])
        scan_b[prefix] = incoming  # for the chunk before it to check against (its own slot)
        end = run_chunk(incoming, tiles, first_row, row_count)
    cuda.syncthreads()
    if row_count > 0 and flags.shape[0] > 0:
        check_within_tile(
            end, scan_b, items_per_thread, first_step, shape[0], (flags, rerun, bounds), tile,
            channel,
        )  # fmt: skip
    store_tile(tile_b, out, first_step, first_channel, reverse, tile_rows)


@cuda.jit
def check_tiles_kernel(out, carries, reverse, tile_rows, flags, rerun, bounds):
    """One thread per tile past the first and channel checks the state the tile before ended in
    (the loop's, from its incoming state) against the carry the tile started from,
    ``carries[tile]``, and marks a disagreement as ``check_chunk_end`` does; the channels vary
    fastest."""
    length, channels = out.shape
    index = cuda.grid(1)
    if index < (flags.shape[0] - 1) * channels:
        tile = index // channels + 1
        channel = index % channels
        end = out[time_index(tile * tile_rows - 1, length, reverse), channel]
        check_chunk_end(end, carries[tile, channel], (flags, rerun, bounds), tile, channel)


@cuda.jit
def settle_kernel(a, b, a_steps, b_steps, h0, out, reverse, tile_rows, carries, flags, rerun,
                  bounds):  # fmt: skip
    """One thread per channel that ``rerun`` marks walks its tiles in order and reruns, step by
    step from the loop's state, each tile ``flags`` marks, and each tile after a rerun one whose
    carry ``carries[tile]`` disagrees with the state the rerun ended in: the tiles the scan got
    wrong, and only those, end as the sequential loop has them."""
    length, channels = out.shape
    channel = cuda.grid(1)
    if channel < channels and rerun[channel]:
        state = h0[channel]
        rerun_before = False  # whether ``state`` is the end of the tile before, rerun
        for tile in range(flags.shape[0]):
            first_step = tile * tile_rows
            steps = (first_step, min(length, first_step + tile_rows))
            if flags[tile, channel] or (
                rerun_before and not agrees(state, carries[tile, channel], bounds)
            ):
                if not rerun_before and tile > 0:
                    state = out[time_index(first_step - 1, length, reverse), channel]
                state = run_steps(a, b, a_steps, b_steps, state, out, reverse, channel, steps)
                rerun_before = True
            else:
                rerun_before = False


def linear_recurrence_sequential(a, b, h0, out, reverse, threads_per_block):
    """Solve the recurrence with one thread per channel, looping over time.

    Best for many channels and short sequences; a warp loads each step's coefficients of 32
    consecutive channels in one coalesced transaction.

    Parameters
    ----------
    a, b : numba.cuda.devicearray.DeviceNDArray
        Coefficients and offsets, C-contiguous, shape ``(T or 1, D or 1)``.
    h0 : numba.cuda.devicearray.DeviceNDArray
        Initial state, shape ``(D,)``.
    out : numba.cuda.devicearray.DeviceNDArray
        Result, C-contiguous ``(T, D)``, same dtype; every element is written.
    reverse : bool
        Run time backwards: ``h_t = a_t * h_{t+1} + b_t`` with ``h0`` after the last step.
    threads_per_block : int
        Threads (channels) per block.

    See Also
    --------
    scanlab.cpu.linear.linear_recurrence_sequential : The CPU twin.
    linear_recurrence_scan : Parallel over time, for long sequences and few channels.

    Examples
    --------
    >>> import numpy as np
    >>> from numba import cuda
    >>> a = cuda.to_device(np.full((4, 1), 0.5))
    >>> b = cuda.to_device(np.ones((4, 1)))
    >>> h0 = cuda.to_device(np.zeros(1))
    >>> out = cuda.device_array((4, 1))
    >>> linear_recurrence_sequential(a, b, h0, out, False, threads_per_block=32)
    >>> out.copy_to_host().ravel().tolist()
    [1.0, 1.5, 1.75, 1.875]
    """
    channels = out.shape[1]
    block_count = (channels + threads_per_block - 1) // threads_per_block
    a_steps, b_steps = broadcast_steps(a), broadcast_steps(b)
    sequential_kernel[block_count, threads_per_block](a, b, a_steps, b_steps, h0, out, reverse)


def linear_recurrence_scan(
    a, b, h0, out, reverse, threads_per_block, items_per_thread, channels_per_block,
    single_pass=False,
):  # fmt: skip
    """Solve the recurrence in parallel over time: a hierarchical reduce-then-scan.

    Time is cut into tiles, and a block of ``threads_per_block`` threads solves one tile for up to
    ``channels_per_block`` channels, as a grid of ``(lanes, rows)`` threads with
    ``lanes = min(channels_per_block, next power of two >= D)`` channel lanes and
    ``rows = threads_per_block // lanes`` threads along time, each owning a chunk of
    ``items_per_thread`` consecutive steps; a tile is ``rows * items_per_thread`` steps.

    With one tile, ``tile_scan_kernel`` alone solves the sequence from ``h0``. With more,
    ``tile_totals_kernel`` writes each tile's composition ``(prod a, state from 0)``; these
    totals form the same recurrence one level up, solved by a recursive call into a ``carries``
    array (the state entering each tile); then ``tile_scan_kernel`` solves every tile from its
    carry. Each level is a tile length times shorter than the one below, so there are
    ``ceil(log(T) / log(tile length))`` levels and ``2 * levels - 1`` kernel launches.

    The loop is the reference, as in the CPU scan (:mod:`scanlab._scaled_products`): every chunk
    is rerun from its incoming state anyway, so the state it ends in is the loop's, and at the
    first level it is checked (``agrees``) against the composed state the next chunk started
    from, within a tile (``tile_scan_kernel``) and across tiles (``check_tiles_kernel``, against
    the next tile's carry). A disagreement beyond rounding (a product that underflowed and lost
    the state it carries, a state of the loop that overflowed inside a chunk, a NaN that
    composition made from ``inf * 0``) marks the tile; a last kernel, one thread per marked
    channel, reruns the marked tiles step by step from the loop's state, and the tiles after
    them until their carries agree again (``settle_kernel``), so Inf, NaN and extreme states land
    where the sequential loop puts them. That costs one thread per channel that finds nothing
    to do, and a pass over one state per tile and channel.

    Unlike the CPU scan, the products of ``a`` are left as plain numbers, not kept in range as
    mantissa and exponent: the kernels run without fastmath, so subnormals are not flushed, and
    the GPU computes with them at full speed; and a product that underflows or overflows changes
    a carry only where a state near the ends of the range meets it, which the check finds. Such
    data costs the reruns of the tiles it affects, never a wrong result.

    Within a block (both kernels): a coalesced load of the ``a`` and ``b`` tiles into shared
    memory; each thread composes its chunk sequentially; Blelloch's work-efficient up-sweep over the
    chunk summaries of each channel gives the tile's total, and the down-sweep gives each chunk's
    exclusive prefix, from which the thread reruns its chunk; the states go back to ``out`` through
    shared memory in a coalesced store. Blocks synchronise only through kernel boundaries (no
    single-pass look-back), so any launch order and any occupancy is safe.

    Parameters
    ----------
    a, b : numba.cuda.devicearray.DeviceNDArray
        Coefficients and offsets, C-contiguous, shape ``(T or 1, D or 1)``.
    h0 : numba.cuda.devicearray.DeviceNDArray
        Initial state, shape ``(D,)``.
    out : numba.cuda.devicearray.DeviceNDArray
        Result, C-contiguous ``(T, D)``, same dtype; every element is written.
    reverse : bool
        Run time backwards: ``h_t = a_t * h_{t+1} + b_t`` with ``h0`` after the last step.
    threads_per_block : int
        Threads per block, a power of two.
    items_per_thread : int
        Consecutive steps each thread composes sequentially before the block-wide scan, at least 2
        (so that every level shrinks the sequence).
    channels_per_block : int
        Most channels per block, a power of two; the block's other threads split time.
    single_pass : bool, optional
        Run the single-pass decoupled look-back scan instead
        (:mod:`scanlab.cuda.linear_single_pass`): the same blocks and tiles, but tiles are taken
        in launch order and each block finds its incoming state by looking back at the tiles
        before it, so ``a`` and ``b`` are read once (3 array passes instead of 5, the
        reduce-then-scan's ceiling being 0.6 of copy bandwidth). Not yet run on a GPU:
        ``scanlab.config.cuda.single_pass_scan`` keeps it off by default.

    Raises
    ------
    ValueError
        If ``threads_per_block`` or ``channels_per_block`` is not a power of two,
        ``items_per_thread`` is below 2, or a block would need more than 48 KiB of shared memory
        for this dtype.

    Notes
    -----
    The associative operator is ``(a1, b1) o (a2, b2) = (a2 * a1, a2 * b1 + b2)``: the
    reduce-then-scan of Martin & Cundy (ICLR 2018) on Blelloch's scan. Temporaries: two
    ``(tiles, D)`` totals and one ``(tiles + 1, D)`` carries array per level, and
    ``(tiles + 1) * D`` bytes of marks of the first level.

    See Also
    --------
    scanlab.cpu.linear.linear_recurrence_scan : The CPU twin.
    linear_recurrence_sequential : One thread per channel, for many channels or short sequences.

    Examples
    --------
    >>> import numpy as np
    >>> from numba import cuda
    >>> a = cuda.to_device(np.full((5, 1), 0.5))
    >>> b = cuda.to_device(np.ones((5, 1)))
    >>> h0 = cuda.to_device(np.zeros(1))
    >>> out = cuda.device_array((5, 1))
    >>> linear_recurrence_scan(a, b, h0, out, True, threads_per_block=2, items_per_thread=2,
    ...                        channels_per_block=1)
    >>> out.copy_to_host().ravel().tolist()
    [1.9375, 1.875, 1.75, 1.5, 1.0]
    """
    for name, value in (
        ("threads_per_block", threads_per_block),
        ("channels_per_block", channels_per_block),
    ):
        if value < 1 or value & (value - 1):
            raise ValueError(f"{name} must be a power of two, got {value}")
    if items_per_thread < 2:
        # Tiles of a single step would leave the tile totals as long as the sequence.
        raise ValueError(f"items_per_thread must be at least 2, got {items_per_thread}")
    shared_bytes = (
        out.dtype.itemsize
        * 2
        * (shared_slots(items_per_thread * threads_per_block) + shared_slots(threads_per_block))
    )
    if shared_bytes + 8 * bool(single_pass) > SHARED_MEMORY_LIMIT:  # + the tile index
        raise ValueError(
            f"threads_per_block={threads_per_block} with items_per_thread={items_per_thread} needs "
            f"{shared_bytes} bytes of shared memory per block for {out.dtype}, more than the "
            f"{SHARED_MEMORY_LIMIT} a block may use; lower items_per_thread or threads_per_block"
        )
    length, channels = out.shape
    tunables = (threads_per_block, items_per_thread, channels_per_block, shared_bytes)
    block_shape, tile_count, _ = tile_grid(length, channels, tunables)
    tile_rows = items_per_thread * block_shape[1]
    bounds = product_bounds(out.dtype, tile_rows)
    checks = (
        zeros((tile_count, channels), np.uint8, allocate=scratch),
        zeros(channels, np.uint8, allocate=scratch),
        bounds,
    )
    scan = single_pass_scan if single_pass else scan_level
    carries = scan(a, b, h0, out, reverse, tunables, checks)
    settle(a, b, h0, out, reverse, tile_rows, carries, checks, threads_per_block)


def scan_level(a, b, h0, out, reverse, tunables, checks):
    """One level of ``linear_recurrence_scan`` (and, recursively, those above it); the carries
    of its tiles, ``(tiles or more, D)``.

    ``tunables`` is ``(threads_per_block, items_per_thread, channels_per_block, shared_bytes)``;
    ``checks`` is ``(flags, rerun, bounds)`` of ``tile_scan_kernel``: the levels above the first
    get empty ``flags``.
    """
    items_per_thread, shared_bytes = tunables[1], tunables[3]
    length, channels = out.shape
    block_shape, tile_count, block_count = tile_grid(length, channels, tunables)
    a_steps, b_steps = broadcast_steps(a), broadcast_steps(b)
    if tile_count == 1:
        carries = h0.reshape(1, channels)
    else:
        totals_a = scratch((tile_count, channels), out.dtype)
        totals_b = scratch((tile_count, channels), out.dtype)
        tile_totals_kernel[block_count, block_shape, 0, shared_bytes](
            a, b, a_steps, b_steps, length, reverse, items_per_thread, totals_a, totals_b
        )
        carries = scratch((tile_count + 1, channels), out.dtype)
        carries[0].copy_to_device(h0)
        unchecked = (zeros((0, channels), np.uint8, allocate=scratch), *checks[1:])
        scan_level(totals_a, totals_b, h0, carries[1:], False, tunables, unchecked)
    tile_scan_kernel[block_count, block_shape, 0, shared_bytes](
        a, b, a_steps, b_steps, carries, out, reverse, items_per_thread, *checks
    )
    return carries


def settle(a, b, h0, out, reverse, tile_rows, carries, checks, threads_per_block):
    """Check the state each tile of ``tile_rows`` steps ends in against the next tile's carry
    (``check_tiles_kernel``), then rerun what the scan got wrong from the loop's states
    (``settle_kernel``); ``checks`` as for ``scan_level``, its flags filled within the tiles."""
    flags, rerun, bounds = checks
    tile_count, channels = flags.shape
    if tile_count > 1:
        boundaries = (tile_count - 1) * channels
        check_tiles_kernel[-(-boundaries // threads_per_block), threads_per_block](
            out, carries, reverse, tile_rows, flags, rerun, bounds
        )
    settle_kernel[-(-channels // threads_per_block), threads_per_block](
        a, b, broadcast_steps(a), broadcast_steps(b), h0, out, reverse, tile_rows, carries,
        flags, rerun, bounds,
    )  # fmt: skip


def kernel_signatures():
    """List every kernel of this module with each signature its launchers compile.

    Returns
    -------
    list of (numba.cuda.dispatcher.CUDADispatcher, str)
        One entry per kernel and dtype of :data:`scanlab.cuda.kernel_layout.DTYPES`; compile one
        to PTX without a GPU with ``cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))``.
    """
    signatures = []
    checks = f"uint8[:, ::1], uint8[::1], {BOUNDS_TYPE}"
    for dtype in DTYPES:
        matrix, vector = f"{dtype}[:, ::1]", f"{dtype}[::1]"
        coefficients = f"{matrix}, {matrix}, UniTuple(int64, 2), UniTuple(int64, 2)"
        signatures += [
            (sequential_kernel, f"void({coefficients}, {vector}, {matrix}, boolean)"),
            (
                tile_totals_kernel,
                f"void({coefficients}, int64, boolean, int64, {matrix}, {matrix})",
            ),
            (
                tile_scan_kernel,
                f"void({coefficients}, {matrix}, {matrix}, boolean, int64, {checks})",
            ),
            (
                check_tiles_kernel,
                f"void({matrix}, {matrix}, boolean, int64, {checks})",
            ),
            (
                settle_kernel,
                f"void({coefficients}, {vector}, {matrix}, boolean, int64, {matrix}, {checks})",
            ),
        ]
    return signatures


def choose_method(length: int, channels: int) -> str:
    """What ``method="auto"`` runs on the GPU (thresholds in ``scanlab.config.cuda``)."""
    if channels >= config.cuda.auto_sequential_min_channels:
        return "sequential"
    return "scan" if length >= config.cuda.auto_scan_min_length else "sequential"


def solve(a, b, h0, out, reverse: bool, method: str) -> None:
    """Run ``method`` ("auto", "sequential" or "scan") on host arrays in kernel layout.

    The operands are copied to the GPU, the result back into ``out``.
    """
    through_device(solve_on_device, a, b, h0, out, reverse, method)


def through_device(solve_on_device, a, b, h0, out, reverse: bool, method: str) -> None:
    """Copy host operands to the GPU, run ``solve_on_device`` there, copy the result to ``out``."""
    device_a, device_b, device_h0 = (cuda.to_device(array) for array in (a, b, h0))
    device_out = cuda.device_array(out.shape, out.dtype)
    solve_on_device(device_a, device_b, device_h0, device_out, reverse, method)
    device_out.copy_to_host(out)


def solve_on_device(a, b, h0, out, reverse: bool, method: str) -> None:
    """Run ``method`` on device arrays in kernel layout, with the tunables of ``config.cuda``."""
    length, channels = out.shape
    if method == "auto":
        method = choose_method(length, channels)
    settings = config.cuda
    if method == "sequential":
        linear_recurrence_sequential(a, b, h0, out, reverse, settings.threads_per_block)
    else:
        linear_recurrence_scan(
            a, b, h0, out, reverse,
            settings.threads_per_block, settings.items_per_thread, settings.channels_per_block,
            settings.single_pass_scan,
        )  # fmt: skip
