"""CUDA kernels for the matrix linear recurrence ``h_t = A_t h_{t-1} + b_t``.

Twin of :mod:`scanlab.cpu.linear_matrix`, with the same launcher names and the same layout:
``out`` is a C-contiguous ``(T, D, n)`` device array with time first, ``D`` independent systems
and their ``n`` states; ``a`` is C-contiguous ``(T or 1, D or 1, n, n)`` and ``b``
``(T or 1, D or 1, n)`` (a length-1 axis broadcasts); ``h0`` is ``(D, n)``; all share one dtype.
``reverse`` runs time backwards. ``out`` never overlaps ``a`` or ``b``. The launchers queue their
kernels on the default stream and return without waiting.

The kernels take ``n`` from their arguments at run time: one specialisation per dtype. Systems of
at most ``REGISTER_SIZE`` states run one thread per system (and chunk) with the state, matrix and
chunk product in registers: padded with zeros to ``REGISTER_SIZE``, so that every loop over
states has a constant trip count that NVVM unrolls. Larger systems share each system (and
chunk) among a block's threads: the rows of its state (kept in shared memory) or the entries of
its chunk's matrix product (kept in global memory), one barrier per step.
"""

import numpy as np
from numba import cuda

from scanlab import config
from scanlab._scaled_products import product_bounds, state_agrees
from scanlab.cuda import linear
from scanlab.cuda.kernel_layout import (
    BOUNDS_TYPE,
    DTYPES,
    SHARED_MEMORY_LIMIT,
    broadcast_steps,
    time_index,
)
from scanlab.cuda.memory import filled, scratch, zeros

#: Systems of at most this many states keep their state in registers (see the module docstring).
REGISTER_SIZE = 4
#: Entries of a padded matrix (a module constant: local array shapes must be literals).
REGISTER_ENTRIES = REGISTER_SIZE * REGISTER_SIZE

#: ``scanlab._scaled_products.state_agrees`` compiled for the GPU: the same function, which the
#: CUDA simulator also runs on its arrays (a CPU-compiled function cannot take them).
state_agrees_on_device = cuda.jit(device=True)(state_agrees.py_func)


@cuda.jit(device=True)
def load_padded(matrix, offset, size, padded_matrix, padded_offset):
    """Copy ``matrix`` and ``offset`` of ``size`` states into ``REGISTER_SIZE``-padded local
    arrays (the matrix row-major), zeros beyond ``size``."""
    for i in range(REGISTER_SIZE):
        padded_offset[i] = offset[i] if i < size else 0
        for j in range(REGISTER_SIZE):
            inside = i < size and j < size
            padded_matrix[i * REGISTER_SIZE + j] = matrix[i, j] if inside else 0


@cuda.jit(device=True)
def affine_padded(matrix, vector, offset, size, result):
    """``result = matrix @ vector + offset`` for padded local arrays (unrolled), the padding
    rows kept 0: computed, ``0 * inf`` would make them NaN, and the next step's ``0 * NaN``
    every state."""
    for i in range(REGISTER_SIZE):
        value = offset[i]
        for j in range(REGISTER_SIZE):
            value += matrix[i * REGISTER_SIZE + j] * vector[j]
        result[i] = value if i < size else 0


@cuda.jit(device=True)
def padded_step(a, b, a_steps, b_steps, t, system, size, matrix, offset, state, next_state):
    """Load row ``t``'s matrix and offset of ``system`` into the padded ``matrix`` and ``offset``,
    and set ``next_state = matrix @ state + offset``."""
    a_row, a_system = a_steps
    b_row, b_system = b_steps
    load_padded(a[t * a_row, system * a_system], b[t * b_row, system * b_system], size,
                matrix, offset)  # fmt: skip
    affine_padded(matrix, state, offset, size, next_state)


@cuda.jit(device=True)
def compose_in_registers(a, b, a_steps, b_steps, shape, reverse, steps, system, product, partial):
    """``product`` and ``partial`` (arrays in memory) of the chunk of ``steps`` of one system of
    at most ``REGISTER_SIZE`` states, composed in padded local arrays."""
    length, size = shape
    matrix = cuda.local.array(REGISTER_ENTRIES, product.dtype)
    offset = cuda.local.array(REGISTER_SIZE, product.dtype)
    current = cuda.local.array(REGISTER_ENTRIES, product.dtype)
    following = cuda.local.array(REGISTER_ENTRIES, product.dtype)
    state = cuda.local.array(REGISTER_SIZE, product.dtype)
    next_state = cuda.local.array(REGISTER_SIZE, product.dtype)
    for i in range(REGISTER_SIZE):
        state[i] = 0
        for k in range(REGISTER_SIZE):
            current[i * REGISTER_SIZE + k] = 1 if i == k else 0
    for step in range(steps[0], steps[1]):
        t = time_index(step, length, reverse)
        padded_step(a, b, a_steps, b_steps, t, system, size, matrix, offset, state, next_state)
        for i in range(REGISTER_SIZE):
            state[i] = next_state[i]
            for k in range(REGISTER_SIZE):
                value = matrix[i * REGISTER_SIZE] * current[k]
                for j in range(1, REGISTER_SIZE):
                    value += matrix[i * REGISTER_SIZE + j] * current[j * REGISTER_SIZE + k]
                # The padding of the product is 0 (as affine_padded's): never NaN from 0 * inf.
                following[i * REGISTER_SIZE + k] = value if i < size and k < size else 0
        for entry in range(REGISTER_ENTRIES):
            current[entry] = following[entry]
    # Constant indices only (the loops unroll): a run-time index would put the arrays in memory.
    for i in range(REGISTER_SIZE):
        if i < size:
            partial[i] = state[i]
        for k in range(REGISTER_SIZE):
            if i < size and k < size:
                product[i, k] = current[i * REGISTER_SIZE + k]


@cuda.jit(device=True)
def apply_in_registers(a, b, a_steps, b_steps, incoming, out, reverse, steps, system, state):
    """Run ``steps`` of one system of at most ``REGISTER_SIZE`` states from ``incoming`` into
    ``out``, the state in the padded local array ``state``, where it ends."""
    length, _, size = out.shape
    matrix = cuda.local.array(REGISTER_ENTRIES, out.dtype)
    offset = cuda.local.array(REGISTER_SIZE, out.dtype)
    next_state = cuda.local.array(REGISTER_SIZE, out.dtype)
    for i in range(REGISTER_SIZE):
        state[i] = incoming[i] if i < size else 0
    for step in range(steps[0], steps[1]):
        t = time_index(step, length, reverse)
        padded_step(a, b, a_steps, b_steps, t, system, size, matrix, offset, state, next_state)
        for i in range(REGISTER_SIZE):
            state[i] = next_state[i]
            if i < size:
                out[t, system, i] = next_state[i]


@cuda.jit
def chunk_totals_kernel(a, b, a_steps, b_steps, length, reverse, chunk_length, totals_a, totals_b):
    """One thread per ``(chunk, system)`` of at most ``REGISTER_SIZE`` states composes the
    chunk's steps in registers, the systems varying fastest.

    Row ``chunk`` of ``totals_a`` becomes the product of the chunk's matrices (the latest on the
    left) and of ``totals_b`` the state they reach from zero.
    """
    chunks, systems, size = totals_b.shape
    index = cuda.grid(1)
    if index < chunks * systems:
        chunk = index // systems
        system = index % systems
        first_step = chunk * chunk_length
        steps = (first_step, min(length, first_step + chunk_length))
        compose_in_registers(
            a, b, a_steps, b_steps, (length, size), reverse, steps, system,
            totals_a[chunk, system], totals_b[chunk, system],
        )  # fmt: skip


@cuda.jit(device=True)
def check_chunk_end(end, carries, chunk, system, rerun, bounds):
    """Mark ``system`` in ``rerun`` when ``end``, the state its ``chunk`` ends in (the loop's,
    from the chunk's incoming state), disagrees with the carry the next chunk started from,
    ``carries[chunk + 1]`` (``state_agrees_on_device``), if there is one and ``rerun`` is not
    empty (the levels above the first, whose carries are only its guesses)."""
    if rerun.shape[0] > 0 and chunk + 1 < carries.shape[0]:
        if not state_agrees_on_device(end, carries[chunk + 1, system], carries.shape[2], bounds):
            rerun[system] = 1


@cuda.jit
def chunk_apply_kernel(a, b, a_steps, b_steps, carries, out, reverse, chunk_length, rerun, bounds):
    """One thread per ``(chunk, system)`` of at most ``REGISTER_SIZE`` states runs the chunk from
    its incoming state ``carries[chunk]``, the state in registers, and checks the state it ends
    in against the next chunk's carry (``check_chunk_end``): a disagreement (a product of
    matrices that underflowed or overflowed, a state of the loop that overflowed inside the
    chunk, NaN from ``inf * 0``) marks its system in ``rerun``.
    """
    length, systems, size = out.shape
    index = cuda.grid(1)
    chunks = (length + chunk_length - 1) // chunk_length
    if index < chunks * systems:
        chunk = index // systems
        system = index % systems
        first_step = chunk * chunk_length
        steps = (first_step, min(length, first_step + chunk_length))
        state = cuda.local.array(REGISTER_SIZE, out.dtype)
        apply_in_registers(
            a, b, a_steps, b_steps, carries[chunk, system], out, reverse, steps, system, state
        )
        check_chunk_end(state, carries, chunk, system, rerun, bounds)


@cuda.jit
def systems_kernel(a, b, a_steps, b_steps, h0, out, reverse, selected):
    """One thread per system of at most ``REGISTER_SIZE`` states runs the whole recurrence of the
    systems ``selected`` marks: all of them for the sequential method, the scan's marked ones
    after it."""
    system = cuda.grid(1)
    if system < out.shape[1] and selected[system]:
        state = cuda.local.array(REGISTER_SIZE, out.dtype)
        apply_in_registers(
            a, b, a_steps, b_steps, h0[system], out, reverse, (0, out.shape[0]), system, state
        )


@cuda.jit
def block_totals_kernel(
    a, b, a_steps, b_steps, length, reverse, chunk_length, totals_a, totals_b, work_a, work_b
):
    """One block per ``(chunk, system)`` composes the chunk's steps, as ``chunk_totals_kernel``
    does, for systems of any size, the systems varying fastest.

    At each step the block's threads share the ``n * n`` entries of the new product and the
    ``n`` of the new state: consecutive threads take consecutive columns of the product, reading
    the same row of the step's matrix and neighbouring elements of the product's rows. Products
    and states alternate between the totals and ``work_a``/``work_b`` (shaped like them), one
    barrier per step; the chunk starts in the work arrays when it has an odd number of steps, so
    that it ends in the totals.
    """
    chunks, systems, size = totals_b.shape
    entries = size * size
    chunk = cuda.blockIdx.x // systems
    system = cuda.blockIdx.x % systems
    first_step = chunk * chunk_length
    stop = min(length, first_step + chunk_length)
    product, partial = totals_a[chunk, system], totals_b[chunk, system]
    next_product, next_partial = work_a[chunk, system], work_b[chunk, system]
    if (stop - first_step) % 2:
        product, next_product = next_product, product
        partial, next_partial = next_partial, partial
    for entry in range(cuda.threadIdx.x, entries + size, cuda.blockDim.x):
        if entry < entries:
            row, column = entry // size, entry % size
            product[row, column] = 1 if row == column else 0
        else:
            partial[entry - entries] = 0
    cuda.syncthreads()
    a_row, a_system = a_steps
    b_row, b_system = b_steps
    for step in range(first_step, stop):
        t = time_index(step, length, reverse)
        matrix = a[t * a_row, system * a_system]
        offset = b[t * b_row, system * b_system]
        for entry in range(cuda.threadIdx.x, entries + size, cuda.blockDim.x):
            if entry < entries:
                row, column = entry // size, entry % size
                value = matrix[row, 0] * product[0, column]
                for j in range(1, size):
                    value += matrix[row, j] * product[j, column]
                next_product[row, column] = value
            else:
                row = entry - entries
                value = offset[row]
                for j in range(size):
                    value += matrix[row, j] * partial[j]
                next_partial[row] = value
        cuda.syncthreads()
        product, next_product = next_product, product
        partial, next_partial = next_partial, partial


@cuda.jit
def block_apply_kernel(
    a, b, a_steps, b_steps, carries, out, reverse, chunk_length, selected, rerun, bounds
):
    """Blocks of ``(lanes, items)`` threads run chunks of systems of any size from their
    incoming states ``carries[chunk]``: the sequential method (one chunk of ``T`` steps from
    ``h0``), the scan's last pass, and its rerun of the systems ``selected`` marks.

    Item ``blockIdx.x * blockDim.y + threadIdx.y`` is ``(chunk, system)``, the systems varying
    fastest; thread ``(lane, y)`` computes rows ``lane, lane + lanes, ...`` of the item's state
    at every step. The states live in dynamic shared memory, two buffers of ``n`` per item that
    the steps alternate between, so one barrier per step separates each step's reads from the
    next one's writes. The state each chunk ends in is checked against the next chunk's carry,
    as ``chunk_apply_kernel`` does.
    """
    length, systems, size = out.shape
    chunks = (length + chunk_length - 1) // chunk_length
    shared = cuda.shared.array(0, out.dtype)
    item = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    chunk = item // systems
    system = item % systems
    active = item < chunks * systems and selected[system] != 0
    if not cuda.syncthreads_or(1 if active else 0):
        return  # the whole block (uniformly): a rerun that selects none of its systems
    buffers = cuda.threadIdx.y * 2 * size
    first_step = chunk * chunk_length
    if active:
        incoming = carries[chunk, system]
        for i in range(cuda.threadIdx.x, size, cuda.blockDim.x):
            shared[buffers + i] = incoming[i]
    cuda.syncthreads()
    a_row, a_system = a_steps
    b_row, b_system = b_steps
    for step in range(min(chunk_length, length)):  # the same count for every item: barriers
        current = buffers + (step % 2) * size
        following = buffers + ((step + 1) % 2) * size
        if active and first_step + step < length:
            t = time_index(first_step + step, length, reverse)
            matrix = a[t * a_row, system * a_system]
            offset = b[t * b_row, system * b_system]
            for i in range(cuda.threadIdx.x, size, cuda.blockDim.x):
                value = offset[i]
                for j in range(size):
                    value += matrix[i, j] * shared[current + j]
                shared[following + i] = value
                out[t, system, i] = value
        cuda.syncthreads()
    if active and cuda.threadIdx.x == 0:
        end = buffers + (min(chunk_length, length - first_step) % 2) * size
        check_chunk_end(shared[end : end + size], carries, chunk, system, rerun, bounds)


def block_apply_layout(size, items, itemsize, threads_per_block):
    """``(block shape, shared bytes)`` of ``block_apply_kernel`` for ``items`` chunks of
    ``size`` states.

    The block's lanes cover the rows of a state (a power of two up to ``threads_per_block``), its
    remaining threads further items, as many as fit in shared memory.
    """
    lanes = min(threads_per_block, 1 << (size - 1).bit_length())
    items_per_block = max(1, min(threads_per_block // lanes, items))
    while items_per_block > 1 and 2 * size * itemsize * items_per_block > SHARED_MEMORY_LIMIT:
        items_per_block //= 2
    return (lanes, items_per_block), 2 * size * itemsize * items_per_block


def apply_in_blocks(a, b, carries, out, reverse, chunk_length, checks, threads_per_block):
    """Launch ``block_apply_kernel`` over every chunk of ``chunk_length`` steps of the systems
    ``selected`` marks (a ``uint8`` array of ``D``); ``checks`` is ``(selected, rerun, bounds)``.

    Raises
    ------
    ValueError
        If two states of ``n`` elements do not fit in a block's 48 KiB of shared memory.
    """
    length, systems, size = out.shape
    items = -(-length // chunk_length) * systems
    if items == 0:
        return
    block, shared_bytes = block_apply_layout(size, items, out.dtype.itemsize, threads_per_block)
    if shared_bytes > SHARED_MEMORY_LIMIT:
        raise ValueError(
            f"{size} states of {out.dtype} need {shared_bytes} bytes of shared memory, more than "
            f"the {SHARED_MEMORY_LIMIT} a block may use; solve this system with device='cpu'"
        )
    block_count = -(-items // block[1])
    block_apply_kernel[block_count, block, 0, shared_bytes](
        a, b, broadcast_steps(a), broadcast_steps(b), carries, out, reverse, chunk_length, *checks
    )


def run_selected(a, b, h0, out, reverse, selected, threads_per_block):
    """Run the whole recurrence of the systems ``selected`` marks, step by step: one thread per
    system of at most ``REGISTER_SIZE`` states, else a block's lanes per system."""
    length, systems, size = out.shape
    if size > REGISTER_SIZE:
        # One chunk of every step, from h0: nothing past a first chunk, so rerun is not written.
        carries = h0.reshape(1, systems, size)
        steps = max(length, 1)
        checks = (selected, selected, product_bounds(out.dtype, steps))
        apply_in_blocks(a, b, carries, out, reverse, steps, checks, threads_per_block)
        return
    block_count = (systems + threads_per_block - 1) // threads_per_block
    systems_kernel[block_count, threads_per_block](
        a, b, broadcast_steps(a), broadcast_steps(b), h0, out, reverse, selected
    )


def linear_recurrence_matrix_sequential(a, b, h0, out, reverse, threads_per_block):
    """Solve the recurrence with one thread or a block of threads per system, looping over time.

    Systems of at most ``REGISTER_SIZE`` states run one per thread, the state in registers.
    Larger ones split the rows of each state across up to ``threads_per_block`` threads (the
    next power of two of ``n``), the block's other threads taking further systems, the states in
    shared memory. Best for many systems or short sequences.

    Parameters
    ----------
    a : numba.cuda.devicearray.DeviceNDArray
        Matrices, C-contiguous, shape ``(T or 1, D or 1, n, n)``.
    b : numba.cuda.devicearray.DeviceNDArray
        Offsets, C-contiguous, shape ``(T or 1, D or 1, n)``.
    h0 : numba.cuda.devicearray.DeviceNDArray
        Initial states, shape ``(D, n)``.
    out : numba.cuda.devicearray.DeviceNDArray
        Result, C-contiguous ``(T, D, n)``, same dtype; every element is written.
    reverse : bool
        Run time backwards: ``h_t = A_t h_{t+1} + b_t`` with ``h0`` after the last step.
    threads_per_block : int
        Most threads per block.

    Raises
    ------
    ValueError
        If two states of ``n`` elements do not fit in a block's 48 KiB of shared memory.

    See Also
    --------
    scanlab.cpu.linear_matrix.linear_recurrence_matrix_sequential : The CPU twin.
    linear_recurrence_matrix_scan : Parallel over time, for long sequences of few systems.

    Examples
    --------
    >>> import numpy as np
    >>> from numba import cuda
    >>> a = cuda.to_device(np.array([[[[0.0, 1.0], [1.0, 0.0]]]]))
    >>> b = cuda.to_device(np.array([[[1.0, 0.0]]]))
    >>> h0 = cuda.to_device(np.zeros((1, 2)))
    >>> out = cuda.device_array((3, 1, 2))
    >>> linear_recurrence_matrix_sequential(a, b, h0, out, False, threads_per_block=32)
    >>> out.copy_to_host()[:, 0].tolist()
    [[1.0, 0.0], [1.0, 1.0], [2.0, 1.0]]
    """
    every_system = filled(out.shape[1], np.uint8, 1, allocate=scratch)
    run_selected(a, b, h0, out, reverse, every_system, threads_per_block)


def linear_recurrence_matrix_scan(a, b, h0, out, reverse, threads_per_block, chunk_length):
    """Solve the recurrence in parallel over time: a hierarchical reduce-then-scan over chunks.

    Time is cut into chunks of ``chunk_length`` steps. Each chunk is composed into ``(product of
    A, state from 0)`` (``O(n^3)`` per step); these totals form the same recurrence one level
    up, a chunk length times shorter, solved by a recursive call into ``carries`` (the state
    entering each chunk); then every chunk is rerun from its carry (``O(n^2)`` per step). A
    sequence of one chunk is solved by the rerun alone, from ``h0``. There are
    ``ceil(log(T) / log(chunk_length))`` levels. Systems of at most ``REGISTER_SIZE`` states run
    one thread per chunk and system (``chunk_totals_kernel``, ``chunk_apply_kernel``); larger
    ones a block per chunk and system for the products (``block_totals_kernel``, its threads
    sharing the entries) and a block's lanes per chunk and system for the rerun
    (``block_apply_kernel``, its lanes sharing the rows).

    Parameters
    ----------
    a, b, h0, out, reverse
        As for :func:`linear_recurrence_matrix_sequential`.
    threads_per_block : int
        Threads per block.
    chunk_length : int
        Steps per chunk, at least 2 (so that every level shrinks the sequence).

    Raises
    ------
    ValueError
        If ``chunk_length`` is below 2, or two states of ``n`` elements do not fit in a block's
        48 KiB of shared memory.

    Notes
    -----
    The associative operator is ``(A1, b1) o (A2, b2) = (A2 A1, A2 b1 + b2)``. Temporaries per
    level: four ``(chunks, D, ...)`` arrays for the totals and their work space, two of
    ``n x n`` per chunk and system, and one ``(chunks + 1, D, n)`` of carries.

    The loop is the reference, as in the elementwise scans (:mod:`scanlab._scaled_products`):
    at the first level, the state each chunk ends in (the loop's, from its incoming state) is
    checked against the carry the next chunk started from (``state_agrees``, relative to the
    state's largest entry); a disagreement beyond rounding (a product of matrices that
    underflowed or overflowed, a state of the loop that overflowed inside a chunk, NaN from
    ``inf * 0``) marks the system, and a last kernel reruns the marked systems step by step, so
    extreme states, Inf and NaN land where the sequential loop puts them. A simpler scheme than
    the elementwise scan's, which reruns only the tiles affected: products are not kept in
    range (subnormals run at full speed without fastmath, and the check finds what a product
    that left the range changed), and a marked system is rerun whole. Rounding rarely marks a
    system, its tolerance being relative to the whole state, not to an entry that cancels.

    See Also
    --------
    scanlab.cpu.linear_matrix.linear_recurrence_matrix_scan : The CPU twin.
    linear_recurrence_matrix_sequential : Parallel over systems and states only.

    Examples
    --------
    >>> import numpy as np
    >>> from numba import cuda
    >>> a = cuda.to_device(np.array([[[[0.0, 1.0], [1.0, 0.0]]]]))
    >>> b = cuda.to_device(np.array([[[1.0, 0.0]]]))
    >>> h0 = cuda.to_device(np.zeros((1, 2)))
    >>> out = cuda.device_array((5, 1, 2))
    >>> linear_recurrence_matrix_scan(a, b, h0, out, False, threads_per_block=32, chunk_length=2)
    >>> out.copy_to_host()[:, 0, 0].tolist()
    [1.0, 1.0, 2.0, 2.0, 3.0]
    """
    if chunk_length < 2:
        raise ValueError(f"chunk_length must be at least 2, got {chunk_length}")
    systems, size = out.shape[1:]
    rerun = zeros(systems, np.uint8, allocate=scratch)
    every_system = filled(systems, np.uint8, 1, allocate=scratch)
    # Rounding of composition grows with the steps composed and the states summed at each.
    bounds = product_bounds(out.dtype, chunk_length * size)
    checks = (every_system, rerun, bounds)
    scan_level(a, b, h0, out, reverse, threads_per_block, chunk_length, checks)
    run_selected(a, b, h0, out, reverse, rerun, threads_per_block)


def scan_level(a, b, h0, out, reverse, threads_per_block, chunk_length, checks):
    """One level of ``linear_recurrence_matrix_scan`` (and, recursively, those above it).

    ``checks`` is ``(every_system, rerun, bounds)``: ones for every system, the marks of the
    systems whose chunks disagree with their carries, and the tolerance of that check; the
    levels above the first get an empty ``rerun`` and check nothing.
    """
    length, systems, size = out.shape
    chunks = (length + chunk_length - 1) // chunk_length
    block_count = (chunks * systems + threads_per_block - 1) // threads_per_block
    a_steps, b_steps = broadcast_steps(a), broadcast_steps(b)
    if chunks == 1:
        carries = h0.reshape(1, systems, size)
    else:
        totals_a = scratch((chunks, systems, size, size), out.dtype)
        totals_b = scratch((chunks, systems, size), out.dtype)
        if size <= REGISTER_SIZE:
            chunk_totals_kernel[block_count, threads_per_block](
                a, b, a_steps, b_steps, length, reverse, chunk_length, totals_a, totals_b
            )
        else:
            work_a = scratch(totals_a.shape, totals_a.dtype)
            work_b = scratch(totals_b.shape, totals_b.dtype)
            threads = min(threads_per_block, 1 << (size * size + size - 1).bit_length())
            block_totals_kernel[chunks * systems, threads](
                a, b, a_steps, b_steps, length, reverse, chunk_length,
                totals_a, totals_b, work_a, work_b,
            )  # fmt: skip
        carries = scratch((chunks + 1, systems, size), out.dtype)
        carries[0].copy_to_device(h0)
        unchecked = (checks[0], zeros(0, np.uint8, allocate=scratch), checks[2])
        scan_level(
            totals_a, totals_b, h0, carries[1:], False, threads_per_block, chunk_length, unchecked
        )
    if size <= REGISTER_SIZE:
        chunk_apply_kernel[block_count, threads_per_block](
            a, b, a_steps, b_steps, carries, out, reverse, chunk_length, *checks[1:]
        )
    else:
        apply_in_blocks(a, b, carries, out, reverse, chunk_length, checks, threads_per_block)


def kernel_signatures():
    """List every kernel of this module with each signature its launchers compile.

    Returns
    -------
    list of (numba.cuda.dispatcher.CUDADispatcher, str)
        One entry per kernel and dtype of ``DTYPES``; compile one to PTX without a GPU with
        ``cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))``.
    """
    signatures = []
    for dtype in DTYPES:
        matrices, states = f"{dtype}[:, :, :, ::1]", f"{dtype}[:, :, ::1]"
        operands = f"{matrices}, {states}, UniTuple(int64, 2), UniTuple(int64, 2)"
        signatures += [
            (
                chunk_totals_kernel,
                f"void({operands}, int64, boolean, int64, {matrices}, {states})",
            ),
            (
                chunk_apply_kernel,
                f"void({operands}, {states}, {states}, boolean, int64, uint8[::1], {BOUNDS_TYPE})",
            ),
            (
                systems_kernel,
                f"void({operands}, {dtype}[:, ::1], {states}, boolean, uint8[::1])",
            ),
            (
                block_totals_kernel,
                f"void({operands}, int64, boolean, int64, "
                f"{matrices}, {states}, {matrices}, {states})",
            ),
            (
                block_apply_kernel,
                f"void({operands}, {states}, {states}, boolean, int64, uint8[::1], uint8[::1], "
                f"{BOUNDS_TYPE})",
            ),
        ]
    return signatures


def choose_method(length: int, systems: int, size: int) -> str:
    """What ``method="auto"`` runs on the GPU: the elementwise rule, with ``systems * n``
    channels (thresholds in ``scanlab.config.cuda``)."""
    return linear.choose_method(length, systems * size)


def solve(a, b, h0, out, reverse: bool, method: str) -> None:
    """Run ``method`` ("auto", "sequential" or "scan") on host arrays in kernel layout.

    The operands are copied to the GPU, the result back into ``out``.
    """
    linear.through_device(solve_on_device, a, b, h0, out, reverse, method)


def solve_on_device(a, b, h0, out, reverse: bool, method: str) -> None:
    """Run ``method`` on device arrays in kernel layout, with the tunables of ``config.cuda``."""
    length, systems, size = out.shape
    if method == "auto":
        method = choose_method(length, systems, size)
    settings = config.cuda
    if method == "sequential":
        linear_recurrence_matrix_sequential(a, b, h0, out, reverse, settings.threads_per_block)
    else:
        linear_recurrence_matrix_scan(
            a, b, h0, out, reverse, settings.threads_per_block, settings.matrix_chunk_length
        )
