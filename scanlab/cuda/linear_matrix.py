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
states has a constant trip count that NVVM unrolls. Larger systems keep them in memory.
"""

import numpy as np
from numba import cuda

from scanlab import config
from scanlab.cpu.linear import is_finite
from scanlab.cuda import linear
from scanlab.cuda.linear import DTYPES, SHARED_MEMORY_LIMIT, broadcast_steps, time_index

#: Systems of at most this many states keep their state in registers (see the module docstring).
REGISTER_SIZE = 4
#: Entries of a padded matrix (a module constant: local array shapes must be literals).
REGISTER_ENTRIES = REGISTER_SIZE * REGISTER_SIZE


@cuda.jit(device=True, inline="always")
def affine(matrix, vector, offset, result):
    """``result = matrix @ vector + offset``; ``result`` must not overlap ``vector``."""
    size = vector.shape[0]
    for i in range(size):
        value = offset[i]
        for j in range(size):
            value += matrix[i, j] * vector[j]
        result[i] = value


@cuda.jit(device=True, inline="always")
def load_padded(matrix, offset, size, padded_matrix, padded_offset):
    """Copy ``matrix`` and ``offset`` of ``size`` states into ``REGISTER_SIZE``-padded local
    arrays (the matrix row-major), zeros beyond ``size``."""
    for i in range(REGISTER_SIZE):
        padded_offset[i] = offset[i] if i < size else 0
        for j in range(REGISTER_SIZE):
            inside = i < size and j < size
            padded_matrix[i * REGISTER_SIZE + j] = matrix[i, j] if inside else 0


@cuda.jit(device=True, inline="always")
def affine_padded(matrix, vector, offset, result):
    """``result = matrix @ vector + offset`` for padded local arrays (unrolled)."""
    for i in range(REGISTER_SIZE):
        value = offset[i]
        for j in range(REGISTER_SIZE):
            value += matrix[i * REGISTER_SIZE + j] * vector[j]
        result[i] = value


@cuda.jit(device=True, inline="always")
def padded_step(a, b, a_steps, b_steps, t, system, size, matrix, offset, state, next_state):
    """Load row ``t``'s matrix and offset of ``system`` into the padded ``matrix`` and ``offset``,
    and set ``next_state = matrix @ state + offset``."""
    a_row, a_system = a_steps
    b_row, b_system = b_steps
    load_padded(a[t * a_row, system * a_system], b[t * b_row, system * b_system], size,
                matrix, offset)  # fmt: skip
    affine_padded(matrix, state, offset, next_state)


@cuda.jit(device=True, inline="always")
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
                following[i * REGISTER_SIZE + k] = value
        for entry in range(REGISTER_ENTRIES):
            current[entry] = following[entry]
    # Constant indices only (the loops unroll): a run-time index would put the arrays in memory.
    for i in range(REGISTER_SIZE):
        if i < size:
            partial[i] = state[i]
        for k in range(REGISTER_SIZE):
            if i < size and k < size:
                product[i, k] = current[i * REGISTER_SIZE + k]


@cuda.jit(device=True, inline="always")
def apply_in_registers(a, b, a_steps, b_steps, incoming, out, reverse, steps, system):
    """Run ``steps`` of one system of at most ``REGISTER_SIZE`` states from ``incoming`` into
    ``out``, the state in padded local arrays."""
    length, _, size = out.shape
    matrix = cuda.local.array(REGISTER_ENTRIES, out.dtype)
    offset = cuda.local.array(REGISTER_SIZE, out.dtype)
    state = cuda.local.array(REGISTER_SIZE, out.dtype)
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
def sequential_kernel(a, b, a_steps, b_steps, h0, out, reverse):
    """Blocks of ``(lanes, systems)`` threads run the recurrence of ``blockDim.y`` systems.

    Thread ``(lane, y)`` computes rows ``lane, lane + lanes, ...`` of its system's state at every
    step. The states live in dynamic shared memory, two buffers of ``n`` per system that the
    steps alternate between, so one barrier per step separates each step's reads from the next
    one's writes.
    """
    length, systems, size = out.shape
    shared = cuda.shared.array(0, out.dtype)
    system = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    buffers = cuda.threadIdx.y * 2 * size
    active = system < systems
    if active:
        for i in range(cuda.threadIdx.x, size, cuda.blockDim.x):
            shared[buffers + i] = h0[system, i]
    cuda.syncthreads()
    a_row, a_system = a_steps
    b_row, b_system = b_steps
    for step in range(length):
        current = buffers + (step % 2) * size
        following = buffers + ((step + 1) % 2) * size
        if active:
            t = time_index(step, length, reverse)
            matrix = a[t * a_row, system * a_system]
            offset = b[t * b_row, system * b_system]
            for i in range(cuda.threadIdx.x, size, cuda.blockDim.x):
                value = offset[i]
                for j in range(size):
                    value += matrix[i, j] * shared[current + j]
                shared[following + i] = value
                out[t, system, i] = value
        cuda.syncthreads()


@cuda.jit
def chunk_totals_kernel(
    a, b, a_steps, b_steps, length, reverse, chunk_length, totals_a, totals_b, work_a, work_b
):
    """One thread per ``(chunk, system)`` composes the chunk's steps, the systems varying fastest.

    Row ``chunk`` of ``totals_a`` becomes the product of the chunk's matrices (the latest on the
    left) and of ``totals_b`` the state they reach from zero. Systems of more than
    ``REGISTER_SIZE`` states compose in memory: ``work_a``/``work_b``, shaped like the totals, hold
    each step's new product and state before they are copied over the old ones.
    """
    chunks, systems, size = totals_b.shape
    index = cuda.grid(1)
    if index < chunks * systems:
        chunk = index // systems
        system = index % systems
        first_step = chunk * chunk_length
        steps = (first_step, min(length, first_step + chunk_length))
        product = totals_a[chunk, system]
        partial = totals_b[chunk, system]
        if size <= REGISTER_SIZE:
            compose_in_registers(
                a, b, a_steps, b_steps, (length, size), reverse, steps, system, product, partial
            )
            return
        next_product = work_a[chunk, system]
        next_partial = work_b[chunk, system]
        for i in range(size):
            partial[i] = 0
            for k in range(size):
                product[i, k] = 1 if i == k else 0
        a_row, a_system = a_steps
        b_row, b_system = b_steps
        for step in range(steps[0], steps[1]):
            t = time_index(step, length, reverse)
            matrix = a[t * a_row, system * a_system]
            affine(matrix, partial, b[t * b_row, system * b_system], next_partial)
            for i in range(size):
                for k in range(size):
                    value = matrix[i, 0] * product[0, k]
                    for j in range(1, size):
                        value += matrix[i, j] * product[j, k]
                    next_product[i, k] = value
            for i in range(size):
                partial[i] = next_partial[i]
                for k in range(size):
                    product[i, k] = next_product[i, k]


@cuda.jit(device=True, inline="always")
def run_system(a, b, a_steps, b_steps, incoming, out, reverse, steps, system):
    """Run ``steps`` (first, stop) of one system from the state ``incoming`` into ``out``.

    Small systems keep the state in registers; larger ones read, at each step, the state the
    thread wrote to ``out`` one step before.
    """
    length, _, size = out.shape
    if size <= REGISTER_SIZE:
        apply_in_registers(a, b, a_steps, b_steps, incoming, out, reverse, steps, system)
        return
    a_row, a_system = a_steps
    b_row, b_system = b_steps
    previous = incoming
    for step in range(steps[0], steps[1]):
        t = time_index(step, length, reverse)
        state = out[t, system]
        matrix = a[t * a_row, system * a_system]
        affine(matrix, previous, b[t * b_row, system * b_system], state)
        previous = state


@cuda.jit
def chunk_apply_kernel(a, b, a_steps, b_steps, carries, out, reverse, chunk_length, rerun):
    """One thread per ``(chunk, system)`` runs the chunk from its incoming state ``carries``.

    A carry that is not finite (a product of matrices that overflowed, or Inf/NaN upstream)
    cannot be trusted: the thread marks its system in ``rerun`` for ``systems_kernel``.
    """
    length, systems, size = out.shape
    index = cuda.grid(1)
    chunks = (length + chunk_length - 1) // chunk_length
    if index < chunks * systems:
        chunk = index // systems
        system = index % systems
        first_step = chunk * chunk_length
        incoming = carries[chunk, system]
        for i in range(size):
            if not is_finite(incoming[i]):
                rerun[system] = 1
        steps = (first_step, min(length, first_step + chunk_length))
        run_system(a, b, a_steps, b_steps, incoming, out, reverse, steps, system)


@cuda.jit
def systems_kernel(a, b, a_steps, b_steps, h0, out, reverse, selected):
    """One thread per system runs the whole recurrence of the systems ``selected`` marks: all
    of them for the sequential method with small states, the scan's marked ones after it."""
    system = cuda.grid(1)
    if system < out.shape[1] and selected[system]:
        run_system(a, b, a_steps, b_steps, h0[system], out, reverse, (0, out.shape[0]), system)


def sequential_layout(size, systems, itemsize, threads_per_block):
    """``(block shape, shared bytes)`` of ``sequential_kernel`` for ``size`` states.

    The block's lanes cover the rows of a state (a power of two up to ``threads_per_block``), its
    remaining threads further systems, as many as fit in shared memory.
    """
    lanes = min(threads_per_block, 1 << (size - 1).bit_length())
    systems_per_block = max(1, min(threads_per_block // lanes, systems))
    while systems_per_block > 1 and 2 * size * itemsize * systems_per_block > SHARED_MEMORY_LIMIT:
        systems_per_block //= 2
    return (lanes, systems_per_block), 2 * size * itemsize * systems_per_block


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
    length, systems, size = out.shape
    a_steps, b_steps = broadcast_steps(a), broadcast_steps(b)
    if size <= REGISTER_SIZE:
        # One thread per system, the state in registers.
        block_count = (systems + threads_per_block - 1) // threads_per_block
        every_system = cuda.to_device(np.ones(systems, np.uint8))
        systems_kernel[block_count, threads_per_block](
            a, b, a_steps, b_steps, h0, out, reverse, every_system
        )
        return
    block, shared_bytes = sequential_layout(size, systems, out.dtype.itemsize, threads_per_block)
    if shared_bytes > SHARED_MEMORY_LIMIT:
        raise ValueError(
            f"{size} states of {out.dtype} need {shared_bytes} bytes of shared memory, more than "
            f"the {SHARED_MEMORY_LIMIT} a block may use; solve this system with device='cpu'"
        )
    block_count = (systems + block[1] - 1) // block[1]
    sequential_kernel[block_count, block, 0, shared_bytes](a, b, a_steps, b_steps, h0, out, reverse)


def linear_recurrence_matrix_scan(a, b, h0, out, reverse, threads_per_block, chunk_length):
    """Solve the recurrence in parallel over time: a hierarchical reduce-then-scan over chunks.

    Time is cut into chunks of ``chunk_length`` steps, one thread per chunk and system.
    ``chunk_totals_kernel`` composes each chunk into ``(product of A, state from 0)``
    (``O(n^3)`` per step); these totals form the same recurrence one level up, a chunk length
    times shorter, solved by a recursive call into ``carries`` (the state entering each chunk);
    then ``chunk_apply_kernel`` reruns every chunk from its carry (``O(n^2)`` per step). A
    sequence of one chunk is solved by the apply kernel alone, from ``h0``. There are
    ``ceil(log(T) / log(chunk_length))`` levels.

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
        If ``chunk_length`` is below 2.

    Notes
    -----
    The associative operator is ``(A1, b1) o (A2, b2) = (A2 A1, A2 b1 + b2)``. Temporaries per
    level: four ``(chunks, D, ...)`` arrays for the totals and their work space, two of
    ``n x n`` per chunk and system, and one ``(chunks + 1, D, n)`` of carries. A chunk whose carry
    is not finite (products of matrices that overflowed while the recursion did not, or Inf/NaN
    upstream) marks its system, and a last kernel reruns the marked systems step by step, so Inf
    and NaN land where the sequential loop puts them.

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
    systems = out.shape[1]
    rerun = cuda.to_device(np.zeros(systems, np.uint8))
    scan_level(a, b, h0, out, reverse, threads_per_block, chunk_length, rerun)
    block_count = (systems + threads_per_block - 1) // threads_per_block
    systems_kernel[block_count, threads_per_block](
        a, b, broadcast_steps(a), broadcast_steps(b), h0, out, reverse, rerun
    )


def scan_level(a, b, h0, out, reverse, threads_per_block, chunk_length, rerun):
    """One level of ``linear_recurrence_matrix_scan`` (and, recursively, those above it);
    ``rerun`` collects the systems whose carries were not finite."""
    length, systems, size = out.shape
    chunks = (length + chunk_length - 1) // chunk_length
    block_count = (chunks * systems + threads_per_block - 1) // threads_per_block
    a_steps, b_steps = broadcast_steps(a), broadcast_steps(b)
    if chunks == 1:
        carries = h0.reshape(1, systems, size)
    else:
        totals_a = cuda.device_array((chunks, systems, size, size), out.dtype)
        totals_b = cuda.device_array((chunks, systems, size), out.dtype)
        work_a = cuda.device_array_like(totals_a)
        work_b = cuda.device_array_like(totals_b)
        chunk_totals_kernel[block_count, threads_per_block](
            a, b, a_steps, b_steps, length, reverse, chunk_length,
            totals_a, totals_b, work_a, work_b,
        )  # fmt: skip
        carries = cuda.device_array((chunks + 1, systems, size), out.dtype)
        carries[0].copy_to_device(h0)
        scan_level(
            totals_a, totals_b, h0, carries[1:], False, threads_per_block, chunk_length, rerun
        )
    chunk_apply_kernel[block_count, threads_per_block](
        a, b, a_steps, b_steps, carries, out, reverse, chunk_length, rerun
    )


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
            (sequential_kernel, f"void({operands}, {dtype}[:, ::1], {states}, boolean)"),
            (
                chunk_totals_kernel,
                f"void({operands}, int64, boolean, int64, "
                f"{matrices}, {states}, {matrices}, {states})",
            ),
            (
                chunk_apply_kernel,
                f"void({operands}, {states}, {states}, boolean, int64, uint8[::1])",
            ),
            (
                systems_kernel,
                f"void({operands}, {dtype}[:, ::1], {states}, boolean, uint8[::1])",
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
