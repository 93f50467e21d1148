"""CPU kernels for the matrix linear recurrence ``h_t = A_t h_{t-1} + b_t``.

Layout seen by every kernel (prepared by ``scanlab._arrays``): ``out`` is C-contiguous ``(T, D, n)``
with time first, ``D`` independent *systems* and their ``n`` states; ``a`` is C-contiguous
``(T or 1, D or 1, n, n)`` and ``b`` ``(T or 1, D or 1, n)`` (a length-1 axis broadcasts); ``h0``
is ``(D, n)``; all share the result dtype. ``reverse`` runs time backwards. ``out`` never overlaps
``a``, ``b`` or ``h0``. Time is walked in steps, as in :mod:`scanlab.cpu.linear`.

Systems of 2 to 4 states keep their state, and in the scan a chunk's matrix product, in registers:
the functions below the parallel tasks (``run_task``) receive ``registers``, a pair of tuples of
``n`` and ``n * n`` zeros whose lengths Numba compiles as constants (so the loops over states
unroll); for other sizes it is None and the state lives in memory.
"""

import numba
import numpy as np
from numba import njit, prange, uint64
from numba.cpython.unsafe.tuple import tuple_setitem

from scanlab import config
from scanlab.config import FASTMATH, FASTMATH_DOT_PRODUCTS
from scanlab.cpu.linear import broadcast_steps, is_finite, is_inf, time_direction, time_index

#: The tasks of the parallel kernels (see ``run_task``).
SEQUENTIAL, COMPOSE, APPLY = 0, 1, 2


@njit(inline="always")
def load_tuple(source, like):
    """The first ``len(like)`` elements of the array ``source``, as a tuple typed like ``like``."""
    values = like
    for i in range(len(like)):
        values = tuple_setitem(values, i, source[i])
    return values


@njit(inline="always")
def store_tuple(values, target):
    """Copy the tuple ``values`` into the array ``target``."""
    for i in range(len(values)):
        target[i] = values[i]


@njit(inline="always")
def copy_vector(source, target):
    """``target[:] = source`` for 1-D arrays (a loop: Numba compiles slice assignment slowly)."""
    for i in range(source.shape[0]):
        target[i] = source[i]


@njit(inline="always")
def affine_tuple(matrix, vector, offset):
    """``matrix @ vector + offset`` for a ``vector`` held in a tuple."""
    result = vector
    for i in range(len(vector)):
        value = offset[i]
        for j in range(len(vector)):
            value += matrix[i, j] * vector[j]
        result = tuple_setitem(result, i, value)
    return result


@njit(inline="always")
def product_tuple(matrix, product, like):
    """``matrix @ product`` for ``product`` held in a row-major tuple; ``len(like)`` is ``n``."""
    size = len(like)
    result = product
    for i in range(size):
        for k in range(size):
            value = matrix[i, 0] * product[k]
            for j in range(1, size):
                value += matrix[i, j] * product[j * size + k]
            result = tuple_setitem(result, i * size + k, value)
    return result


@njit(inline="always")
def affine_row(matrix, vector, offset, result):
    """``result = matrix @ vector + offset`` for arrays; ``result`` must not overlap ``vector``."""
    size = vector.shape[0]
    for i in range(size):
        value = offset[i]
        for j in range(size):
            value += matrix[i, j] * vector[j]
        result[i] = value


@njit(inline="always")
def product_rows(matrix, product, result):
    """``result = matrix @ product`` for arrays; ``result`` must not overlap ``product``."""
    size = product.shape[0]
    for i in range(size):
        for k in range(size):
            result[i, k] = 0
        for j in range(size):
            coefficient = matrix[i, j]
            for k in range(size):
                result[i, k] += coefficient * product[j, k]


@njit(cache=True, fastmath=FASTMATH_DOT_PRODUCTS)
def run_steps(a, b, state, out, first_step, stop_step, reverse, system, registers):
    """Sequential recurrence of one ``system`` over steps ``[first_step, stop_step)``.

    ``state`` (``n``) enters as the state before the first step and leaves as the last one.
    """
    length, systems, _ = out.shape
    origin, direction = time_direction(length, reverse)
    a_row, a_system = broadcast_steps(a, length, systems)
    b_row, b_system = broadcast_steps(b, length, systems)
    a_index = uint64(system) * a_system
    b_index = uint64(system) * b_system
    if registers is None:
        for step in range(first_step, stop_step):
            t = time_index(step, origin, direction)
            out_t = out[t, system]
            affine_row(a[t * a_row, a_index], state, b[t * b_row, b_index], out_t)
            copy_vector(out_t, state)
    else:
        h = load_tuple(state, registers[0])
        for step in range(first_step, stop_step):
            t = time_index(step, origin, direction)
            h = affine_tuple(a[t * a_row, a_index], h, b[t * b_row, b_index])
            store_tuple(h, out[t, system])
        store_tuple(h, state)


@njit(cache=True, fastmath=FASTMATH_DOT_PRODUCTS)
def run_systems(a, b, h0, out, reverse, first_system, stop_system, registers):
    """Sequential recurrence of systems ``[first_system, stop_system)``, a step for all at a time.

    The state of each system is its previous row of ``out`` (or ``h0``), so the block's systems
    are independent chains that the CPU overlaps.
    """
    length, systems, _ = out.shape
    origin, direction = time_direction(length, reverse)
    a_row, a_system = broadcast_steps(a, length, systems)
    b_row, b_system = broadcast_steps(b, length, systems)
    previous_t = uint64(0)
    for step in range(length):
        t = time_index(step, origin, direction)
        for system in range(first_system, stop_system):
            previous = h0[system] if step == 0 else out[previous_t, system]
            matrix = a[t * a_row, uint64(system) * a_system]
            offset = b[t * b_row, uint64(system) * b_system]
            if registers is None:
                affine_row(matrix, previous, offset, out[t, system])
            else:
                h = affine_tuple(matrix, load_tuple(previous, registers[0]), offset)
                store_tuple(h, out[t, system])
        previous_t = t


@njit(cache=True, fastmath=FASTMATH)
def compose_chunk(a, b, shape, first_step, stop_step, reverse, system, product, partial, registers):
    """Summary of steps ``[first_step, stop_step)`` of one system of a ``shape`` ``(T, D)`` result.

    ``product`` (``n x n``) becomes the product of the steps' matrices, the latest on the left,
    and ``partial`` (``n``) the state they reach from zero; both are written once, at the end.
    """
    length, systems = shape
    size = partial.shape[0]
    origin, direction = time_direction(length, reverse)
    a_row, a_system = broadcast_steps(a, length, systems)
    b_row, b_system = broadcast_steps(b, length, systems)
    a_index = uint64(system) * a_system
    b_index = uint64(system) * b_system
    if registers is None:
        current_product = np.eye(size, dtype=product.dtype)
        current_partial = np.zeros(size, partial.dtype)
        next_product = np.empty_like(current_product)
        next_partial = np.empty_like(current_partial)
        for step in range(first_step, stop_step):
            t = time_index(step, origin, direction)
            matrix = a[t * a_row, a_index]
            product_rows(matrix, current_product, next_product)
            affine_row(matrix, current_partial, b[t * b_row, b_index], next_partial)
            current_product, next_product = next_product, current_product
            current_partial, next_partial = next_partial, current_partial
        for i in range(size):
            copy_vector(current_product[i], product[i])
        copy_vector(current_partial, partial)
    else:
        vector_zeros, matrix_zeros = registers
        p = matrix_zeros
        for i in range(len(vector_zeros)):
            p = tuple_setitem(p, i * len(vector_zeros) + i, 1)
        q = vector_zeros
        for step in range(first_step, stop_step):
            t = time_index(step, origin, direction)
            matrix = a[t * a_row, a_index]
            p = product_tuple(matrix, p, vector_zeros)
            q = affine_tuple(matrix, q, b[t * b_row, b_index])
        for i in range(len(vector_zeros)):
            for k in range(len(vector_zeros)):
                product[i, k] = p[i * len(vector_zeros) + k]
        store_tuple(q, partial)


@njit(cache=True, fastmath=FASTMATH)
def run_task_with(task, a, b, h0, out, reverse, first, stop, product, partial, registers):
    """One task of a parallel kernel; ``first`` and ``stop`` delimit its systems or steps.

    ``SEQUENTIAL``: the recurrence of systems ``[first, stop)`` over all steps; one system keeps
    its state in registers (``run_steps``), more advance a step at a time (``run_systems``).
    ``COMPOSE`` and ``APPLY``: the chunk of steps ``[first, stop)`` of every system, composed into
    ``product`` and ``partial`` (``compose_chunk``) or run from the incoming states that
    ``partial`` then holds (``run_steps``).
    """
    length, systems, _ = out.shape
    if task == SEQUENTIAL:
        if stop - first == 1:
            run_steps(a, b, h0[first].copy(), out, 0, length, reverse, first, registers)
        else:
            run_systems(a, b, h0, out, reverse, first, stop, registers)
        return
    for system in range(systems):
        if task == COMPOSE:
            compose_chunk(
                a, b, (length, systems), first, stop, reverse, system,
                product[system], partial[system], registers,
            )  # fmt: skip
        else:
            run_steps(a, b, partial[system], out, first, stop, reverse, system, registers)


@njit(cache=True, fastmath=FASTMATH)
def run_task(task, a, b, h0, out, reverse, first, stop, product, partial):
    """``run_task_with`` the ``registers`` of the state size: tuples of 2 to 4 and 4 to 16
    zeros, or None.

    Parallel loops cannot pass tuples to their bodies, so the tuples are made here (and by
    concatenation: Numba cannot repeat a tuple).
    """
    pair = (out.dtype.type(0),) + (out.dtype.type(0),)
    size = out.shape[2]
    if size == 2:
        registers = (pair, pair + pair)
        run_task_with(task, a, b, h0, out, reverse, first, stop, product, partial, registers)
    elif size == 3:
        triple = pair + pair[:1]
        registers = (triple, triple + triple + triple)
        run_task_with(task, a, b, h0, out, reverse, first, stop, product, partial, registers)
    elif size == 4:
        quad = pair + pair
        registers = (quad, quad + quad + quad + quad)
        run_task_with(task, a, b, h0, out, reverse, first, stop, product, partial, registers)
    else:
        run_task_with(task, a, b, h0, out, reverse, first, stop, product, partial, None)


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def linear_recurrence_matrix_sequential(a, b, h0, out, reverse, systems_per_task):
    """One pass over time, parallel over tasks of ``systems_per_task`` consecutive systems."""
    systems, size = h0.shape
    no_product = np.empty((0, size, size), out.dtype)
    no_partial = np.empty((0, size), out.dtype)
    task_count = (systems + systems_per_task - 1) // systems_per_task
    for task in prange(task_count):
        first = task * systems_per_task
        stop = min(systems, first + systems_per_task)
        run_task(SEQUENTIAL, a, b, h0, out, reverse, first, stop, no_product, no_partial)


@njit(cache=True, fastmath=FASTMATH)
def incoming_states(
    a, b, out, reverse, block_start, chunk_length, summary_product, summary_partial, carry
):
    """Scan the chunk summaries of a block: each chunk's incoming state replaces its partial.

    ``carry`` (``D x n``) enters as the state before the block and leaves as the state after it.
    """
    size = carry.shape[1]
    incoming = np.empty(size, carry.dtype)
    for chunk in range(summary_product.shape[0]):
        chunk_start = block_start + chunk * chunk_length
        for system in range(carry.shape[0]):
            product = summary_product[chunk, system]
            partial = summary_partial[chunk, system]
            state = carry[system]
            copy_vector(state, incoming)
            usable = True
            for i in range(size):
                usable &= is_finite(partial[i]) and not is_inf(incoming[i])
                for j in range(size):
                    usable &= is_finite(product[i, j])
            if usable:
                affine_row(product, incoming, partial, state)
            else:
                # An overflow, Inf or NaN in the chunk or an infinite state: composing can make
                # NaN (inf * 0) where the recursion does not, so step through the chunk.
                run_steps(
                    a, b, state, out, chunk_start, chunk_start + chunk_length, reverse, system,
                    None,
                )  # fmt: skip
            copy_vector(incoming, partial)


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def linear_recurrence_matrix_scan(a, b, h0, out, reverse, chunk_length, threads):
    """Parallel over time: a cache-blocked reduce-then-scan over chunks.

    Time is cut into blocks of ``threads`` chunks of ``chunk_length`` steps. Per block, each
    thread composes its chunk into ``(product of A, state from 0)`` summaries for every system
    (pass 1, ``O(n^3)`` per step), a short sequential scan of the summaries gives each chunk's
    incoming state, and each thread reruns its chunk from there (pass 2, ``O(n^2)`` per step),
    reading ``a`` and ``b`` back from its cache. The fewer than ``threads`` steps left at the
    end run sequentially.
    """
    length, systems, size = out.shape
    summary_product = np.empty((threads, systems, size, size), out.dtype)
    summary_partial = np.empty((threads, systems, size), out.dtype)
    carry = h0.copy()
    block_start = 0
    while block_start + threads <= length:
        block_chunk_length = min(chunk_length, (length - block_start) // threads)
        for task in (COMPOSE, APPLY):
            if task == APPLY:
                incoming_states(
                    a, b, out, reverse, block_start, block_chunk_length,
                    summary_product, summary_partial, carry,
                )  # fmt: skip
            for thread in prange(threads):
                first_step = block_start + thread * block_chunk_length
                run_task(
                    task, a, b, h0, out, reverse, first_step, first_step + block_chunk_length,
                    summary_product[thread], summary_partial[thread],
                )  # fmt: skip
        block_start += threads * block_chunk_length
    for system in range(systems):
        run_steps(a, b, carry[system], out, block_start, length, reverse, system, None)


def choose_method(length: int, systems: int, size: int, threads: int) -> str:
    """What ``method="auto"`` runs on the CPU (thresholds in ``scanlab.config.cpu``)."""
    if length >= config.cpu.auto_scan_min_length and threads >= systems * (size + 2):
        return "scan"
    return "sequential"


def solve(a, b, h0, out, reverse: bool, method: str) -> None:
    """Run ``method`` ("auto", "sequential" or "scan") on arrays in kernel layout."""
    length, systems, size = out.shape
    threads = numba.get_num_threads()
    if method == "auto":
        method = choose_method(length, systems, size, threads)
    if method == "sequential":
        systems_per_task = max(1, config.cpu.channel_block_bytes // (size * out.itemsize))
        systems_per_task = min(systems_per_task, -(-systems // threads))
        if systems <= systems_per_task:
            # One task: run it without starting a parallel region.
            no_product = np.empty((0, size, size), out.dtype)
            no_partial = np.empty((0, size), out.dtype)
            run_task(SEQUENTIAL, a, b, h0, out, reverse, 0, systems, no_product, no_partial)
        else:
            linear_recurrence_matrix_sequential(a, b, h0, out, reverse, systems_per_task)
    else:
        step_bytes = systems * size * (size + 1) * out.itemsize
        chunk_length = max(1, config.cpu.cache_bytes // step_bytes)
        linear_recurrence_matrix_scan(a, b, h0, out, reverse, chunk_length, threads)
