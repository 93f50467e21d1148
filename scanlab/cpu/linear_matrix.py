"""CPU kernels for the matrix linear recurrence ``h_t = A_t h_{t-1} + b_t``.

Layout seen by every kernel (prepared by ``scanlab._arrays``): ``out`` is C-contiguous ``(T, D, n)``
with time first, ``D`` independent *systems* and their ``n`` states; ``a`` is C-contiguous
``(T or 1, D or 1, n, n)`` and ``b`` ``(T or 1, D or 1, n)`` (a length-1 axis broadcasts); ``h0``
is ``(D, n)``; all share the result dtype. ``reverse`` runs time backwards. ``out`` never overlaps
``a``, ``b`` or ``h0``. Time is walked in steps, as in :mod:`scanlab.cpu.linear`.

Systems of 2 to 4 states keep their state, and in the scan a chunk's matrix product, in registers:
the kernels and the functions below them receive ``registers``, an empty array with an axis per
state (``register_marker``; one axis for other sizes, whose state lives in memory). Numba compiles
a function per argument type and reads ``registers.ndim`` before typing, so each size and dtype
compiles, on first use, only its own branch, in which ``zero_registers`` makes tuples whose
lengths Numba compiles as constants (so the loops over states unroll).

The scan keeps products as the elementwise scan does (:mod:`scanlab._scaled_products`): a chunk's
product of matrices is a double-precision mantissa times ``2**exponent``, its largest entry
brought back into ``[0.5, 1)`` by exact powers of two whenever a check every ``CHECK_PERIOD``
steps finds it outside ``[2**-64, 2**64]``, so that it never decays through the subnormal range
nor loses a state by underflowing and growing back. The loop is the reference: each chunk is
rerun from its incoming state, and where the state it ends in disagrees with the composed carry
the next chunk started from (``states_agree``), the chunks after it are rerun from the loop's
state (``settle_block``).
"""

import math

import numba
import numpy as np
from numba import njit, prange, uint64
from numba.cpython.unsafe.tuple import tuple_setitem

from scanlab import config
from scanlab._arrays import read_only
from scanlab._kernel_cache import njit_cached
from scanlab._recurrence_numerics import (
    broadcast_steps,
    is_finite,
    is_inf,
    time_direction,
    time_index,
)
from scanlab._scaled_products import (
    CHECK_PERIOD,
    agrees,
    halves_of_power,
    in_range,
    magnitude,
    normalising_shift,
    product_bounds,
    scaled,
)
from scanlab.config import FASTMATH, FASTMATH_DOT_PRODUCTS
from scanlab.cpu import atomics
from scanlab.cpu.threads import share_out

#: The state sizes kept in registers (see ``register_marker``).
REGISTER_SIZES = (2, 3, 4)


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
def store_matrix(values, target):
    """Copy the row-major tuple ``values`` into the square array ``target``."""
    size = target.shape[0]
    for i in range(size):
        for k in range(size):
            target[i, k] = values[i * size + k]


@njit(inline="always")
def load_matrix(source, like):
    """The square array ``source`` as a row-major tuple typed like ``like``."""
    size = source.shape[0]
    values = like
    for i in range(size):
        for k in range(size):
            values = tuple_setitem(values, i * size + k, source[i, k])
    return values


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


@njit(inline="always")
def largest_magnitude(values):
    """The largest ``magnitude`` in a 1-D array or tuple (with NaN among them, NaN or the
    largest of the others)."""
    largest = magnitude(values[0])
    for i in range(1, len(values)):
        largest = max(largest, magnitude(values[i]))
    return largest


@njit
def renormalise_rows(product, exponent, bounds):
    """Bring the largest entry of the 2-D array ``product`` (times ``2**exponent``) into
    ``[0.5, 1)`` in place if it left ``[2**-64, 2**64]``; the new exponent. Zero, NaN and Inf
    are left as they are."""
    largest = largest_magnitude(product[0])
    for i in range(1, product.shape[0]):
        largest = max(largest, largest_magnitude(product[i]))
    if not in_range(largest, bounds) and 0 < largest < math.inf:
        shift = normalising_shift(largest)
        first, second = halves_of_power(largest, -shift)
        for i in range(product.shape[0]):
            for k in range(product.shape[1]):
                product[i, k] = product[i, k] * first * second
        exponent += shift
    return exponent


def register_marker(size: int) -> np.ndarray:
    """The ``registers`` of a system of ``size`` states: an empty array with an axis per state for
    2 to 4, else with one axis (the state in memory).

    Numba compiles a function per argument type, so each size compiles its own code; unlike a
    tuple, an array crosses into a parallel loop, and unlike a literal integer (milliseconds a
    call) it is dispatched at full speed.
    """
    return np.empty((0,) * (size if size in REGISTER_SIZES else 1))


@njit
def zero_registers(registers, zero):
    """A tuple of ``registers.ndim`` (2 to 4) ``zero`` values."""
    if registers.ndim == 2:
        return (zero, zero)
    if registers.ndim == 3:
        return (zero, zero, zero)
    return (zero, zero, zero, zero)


@njit
def zero_product_registers(registers, zero):
    """A tuple of the square of ``registers.ndim`` (2 to 4) ``zero`` values (by concatenation:
    Numba cannot repeat a tuple)."""
    four = (zero, zero, zero, zero)
    if registers.ndim == 2:
        return four
    if registers.ndim == 3:
        return four + four + (zero,)
    return four + four + four + four


@njit_cached(fastmath=FASTMATH_DOT_PRODUCTS)
def run_steps(a, b, state, out, first_step, stop_step, reverse, system, registers):
    """Sequential recurrence of one ``system`` over steps ``[first_step, stop_step)``.

    ``state`` (``n``) enters as the state before the first step and leaves as the last one;
    ``registers`` is the ``register_marker`` of ``n``.
    """
    length, systems, _ = out.shape
    origin, direction = time_direction(length, reverse)
    a_row, a_system = broadcast_steps(a, length, systems)
    b_row, b_system = broadcast_steps(b, length, systems)
    a_index = uint64(system) * a_system
    b_index = uint64(system) * b_system
    if registers.ndim == 1:
        for step in range(first_step, stop_step):
            t = time_index(step, origin, direction)
            out_t = out[t, system]
            affine_row(a[t * a_row, a_index], state, b[t * b_row, b_index], out_t)
            copy_vector(out_t, state)
    else:
        h = load_tuple(state, zero_registers(registers, state.dtype.type(0)))
        for step in range(first_step, stop_step):
            t = time_index(step, origin, direction)
            h = affine_tuple(a[t * a_row, a_index], h, b[t * b_row, b_index])
            store_tuple(h, out[t, system])
        store_tuple(h, state)


@njit_cached(fastmath=FASTMATH_DOT_PRODUCTS)
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
            if registers.ndim == 1:
                affine_row(matrix, previous, offset, out[t, system])
            else:
                zeros = zero_registers(registers, out.dtype.type(0))
                h = affine_tuple(matrix, load_tuple(previous, zeros), offset)
                store_tuple(h, out[t, system])
        previous_t = t


@njit_cached(fastmath=FASTMATH)
def compose_chunk(
    a, b, shape, first_step, stop_step, reverse, system, product, partial, exponents, registers,
    bounds,
):  # fmt: skip
    """Summary of steps ``[first_step, stop_step)`` of one system of a ``shape`` ``(T, D)`` result.

    ``product`` (``n x n``) times ``2**exponents[system]`` becomes the product of the steps'
    matrices, the latest on the left, kept in range every ``CHECK_PERIOD`` steps, and
    ``partial`` (``n``) the state they reach from zero. Written once, at the end.
    """
    length, systems = shape
    size = partial.shape[0]
    origin, direction = time_direction(length, reverse)
    a_row, a_system = broadcast_steps(a, length, systems)
    b_row, b_system = broadcast_steps(b, length, systems)
    a_index = uint64(system) * a_system
    b_index = uint64(system) * b_system
    # An int64 zero, not the literal 0, for which Numba would compile renormalise_rows again.
    exponent = np.int64(0)
    if registers.ndim == 1:
        current_product = np.eye(size, dtype=product.dtype)
        current_partial = np.zeros(size, partial.dtype)
        next_product = np.empty_like(current_product)
        next_partial = np.empty_like(current_partial)
        for period_start in range(first_step, stop_step, CHECK_PERIOD):
            for step in range(period_start, min(period_start + CHECK_PERIOD, stop_step)):
                t = time_index(step, origin, direction)
                matrix = a[t * a_row, a_index]
                product_rows(matrix, current_product, next_product)
                affine_row(matrix, current_partial, b[t * b_row, b_index], next_partial)
                current_product, next_product = next_product, current_product
                current_partial, next_partial = next_partial, current_partial
            exponent = renormalise_rows(current_product, exponent, bounds)
        for i in range(size):
            copy_vector(current_product[i], product[i])
        copy_vector(current_partial, partial)
    else:
        zeros = zero_registers(registers, partial.dtype.type(0))
        p = zero_product_registers(registers, product.dtype.type(0))
        for i in range(len(zeros)):
            p = tuple_setitem(p, i * len(zeros) + i, 1)
        q = zeros
        for period_start in range(first_step, stop_step, CHECK_PERIOD):
            for step in range(period_start, min(period_start + CHECK_PERIOD, stop_step)):
                t = time_index(step, origin, direction)
                matrix = a[t * a_row, a_index]
                p = product_tuple(matrix, p, zeros)
                q = affine_tuple(matrix, q, b[t * b_row, b_index])
            if not in_range(largest_magnitude(p), bounds):
                # Rarely: through memory, so that one function rescales every size.
                store_matrix(p, product)
                exponent = renormalise_rows(product, exponent, bounds)
                p = load_matrix(product, p)
        store_matrix(p, product)
        store_tuple(q, partial)
    exponents[system] = exponent


@njit_cached(fastmath=FASTMATH)
def run_system(a, b, h0, out, reverse, system, registers):
    """The recurrence of one ``system`` over all steps from ``h0`` (``run_steps``).

    The state is copied here, in compiled code into which ``run_steps`` is inlined, so that LLVM
    sees a fresh array that ``out`` cannot alias: 15% faster at ``n`` of 12 and 16 than a copy
    made by the Python caller.
    """
    # An int64 zero, not the literal 0, for which Numba would compile run_steps again.
    start = np.int64(0)
    run_steps(a, b, h0[system].copy(), out, start, out.shape[0], reverse, system, registers)


@njit_cached(nogil=True, fastmath=FASTMATH)
def run_tasks(next_task, a, b, h0, out, reverse, systems_per_task, registers):
    """The tasks of ``linear_recurrence_matrix_sequential`` taken from the counter: one system
    keeps its state in registers (``run_system``), more advance a step at a time
    (``run_systems``)."""
    systems = h0.shape[0]
    task = atomics.fetch_add(next_task, 0, 1)
    while task * systems_per_task < systems:
        first = task * systems_per_task
        stop = min(systems, first + systems_per_task)
        if stop - first == 1:
            run_system(a, b, h0, out, reverse, first, registers)
        else:
            run_systems(a, b, h0, out, reverse, first, stop, registers)
        task = atomics.fetch_add(next_task, 0, 1)


def linear_recurrence_matrix_sequential(a, b, h0, out, reverse, systems_per_task, registers):
    """One pass over time, parallel over tasks of ``systems_per_task`` consecutive systems that
    threads take as they come free. ``registers`` is the ``register_marker`` of the state
    size."""
    tasks = -(-h0.shape[0] // systems_per_task)
    share_out(run_tasks, tasks, (a, b, h0, out, reverse, systems_per_task, registers))


@njit(inline="always")
def composable(product, partial, incoming):
    """Whether a chunk's summary is finite and ``incoming`` holds no Inf: composing Inf can make
    NaN (``inf * 0``) where the loop does not. A NaN state composes like the loop: NaN in every
    entry after a step."""
    size = incoming.shape[0]
    for i in range(size):
        if not (is_finite(partial[i]) and not is_inf(incoming[i])):
            return False
        for j in range(size):
            if not is_finite(product[i, j]):
                return False
    return True


@njit(inline="always")
def composed_carry(product, exponent, partial, incoming, state, bounds):
    """``state = product @ incoming * 2**exponent + partial``; ``state`` must not overlap
    ``incoming``."""
    size = incoming.shape[0]
    for i in range(size):
        value = product[i, 0] * incoming[0]
        for j in range(1, size):
            value += product[i, j] * incoming[j]
        state[i] = scaled(value, exponent, bounds) + partial[i]


@njit_cached(fastmath=FASTMATH)
def incoming_states(
    a, b, out, reverse, block_start, chunk_length, summaries, carry, ends, registers, bounds
):  # fmt: skip
    """Scan the chunk summaries of a block: each chunk's incoming state replaces its partial and
    is copied to ``ends``, from which the second pass runs it.

    ``carry`` (``D x n``) enters as the state before the block. A chunk with Inf or NaN in its
    composition, or Inf in its incoming state, is stepped through instead (``composable``).
    """
    summary_product, summary_partial, summary_exponents = summaries
    chunks, systems, size = summary_partial.shape
    incoming = np.empty(size, carry.dtype)
    for chunk in range(chunks):
        chunk_start = block_start + chunk * chunk_length
        for system in range(systems):
            state = carry[system]
            partial = summary_partial[chunk, system]
            copy_vector(state, incoming)
            if chunk + 1 < chunks:
                product = summary_product[chunk, system]
                if composable(product, partial, incoming):
                    exponent = summary_exponents[chunk, system]
                    composed_carry(product, exponent, partial, incoming, state, bounds)
                else:
                    run_steps(
                        a, b, state, out, chunk_start, chunk_start + chunk_length, reverse,
                        system, registers,
                    )  # fmt: skip
            copy_vector(incoming, partial)
            copy_vector(incoming, ends[chunk, system])


@njit(inline="always")
def states_agree(loop_state, carry, bounds):
    """Whether ``carry`` is the loop's state ``loop_state`` up to the rounding of composition,
    entry by entry (``scanlab._scaled_products.agrees``): an entry small beside the others may
    grow back to dominate the state in later steps."""
    for i in range(loop_state.shape[0]):
        if not agrees(loop_state[i], carry[i], bounds):
            return False
    return True


@njit_cached(fastmath=FASTMATH)
def settle_block(
    a, b, out, reverse, block_start, chunk_length, starts, ends, carry, registers, bounds
):  # fmt: skip
    """Rerun, from the loop's state, every chunk of a block whose incoming carry (``starts``)
    disagrees with the state the chunk before it ended in (``ends``), for as long as they
    disagree; ``carry`` becomes the loop's state after the block."""
    chunks, systems, _ = ends.shape
    for chunk in range(1, chunks):
        chunk_start = block_start + chunk * chunk_length
        for system in range(systems):
            if not states_agree(ends[chunk - 1, system], starts[chunk, system], bounds):
                state = ends[chunk, system]
                copy_vector(ends[chunk - 1, system], state)
                run_steps(
                    a, b, state, out, chunk_start, chunk_start + chunk_length, reverse, system,
                    registers,
                )  # fmt: skip
    for system in range(systems):
        copy_vector(ends[chunks - 1, system], carry[system])


@njit_cached(parallel=True, fastmath=FASTMATH)
def linear_recurrence_matrix_scan(
    a, b, h0, out, reverse, chunk_length, threads, bounds, product_dtype, registers
):  # fmt: skip
    """Parallel over time: a cache-blocked reduce-then-scan over chunks.

    Time is cut into blocks of ``threads`` chunks of ``chunk_length`` steps. Per block, each
    thread composes its chunk into ``(product of A, state from 0)`` summaries for every system
    (pass 1, ``O(n^3)`` per step; the products in ``product_dtype``, kept in range), a short
    sequential scan of the summaries gives each chunk's incoming state, and each thread reruns
    its chunk from there (pass 2, ``O(n^2)`` per step), reading ``a`` and ``b`` back from its
    cache. Then the state each chunk ended in is checked against the carry the next one started
    from (``settle_block``); the block's last state is the loop's. The fewer than ``threads``
    steps left at the end run sequentially.

    Notes
    -----
    Results are the loop's up to rounding: every state is computed by the loop from its chunk's
    incoming state, which is the composed carry only where that agrees with the loop's state
    entry by entry to ``bounds[4]`` (``sqrt(eps)`` at least). A state that overflows inside a
    chunk, one the loop loses to underflow, a product that lost bits (a step by a matrix with
    entries near ``1e-300`` can take it below the normal range between two checks) or terms
    that overflow although their sum would not, make the chunks after it rerun sequentially
    until the carries agree again. A chunk with Inf or NaN in its composition, or Inf in its
    incoming state, is stepped through (sequentially, then again in the second pass).
    ``registers`` is the ``register_marker`` of the state size.
    """
    length, systems, size = out.shape
    summaries = (
        np.empty((threads, systems, size, size), product_dtype),
        np.empty((threads, systems, size), out.dtype),
        np.empty((threads, systems), np.int64),
    )
    ends = np.empty((threads, systems, size), out.dtype)
    carry = h0.copy()
    block_start = np.int64(0)  # not the literal 0: one compiled incoming_states and settle_block
    while block_start + threads <= length:
        block_chunk_length = min(chunk_length, (length - block_start) // threads)
        # One parallel loop for both passes: Numba compiles each loop on its own (0.3 s more).
        for second_pass in (False, True):
            if second_pass:
                incoming_states(
                    a, b, out, reverse, block_start, block_chunk_length, summaries, carry, ends,
                    registers, bounds,
                )  # fmt: skip
            for thread in prange(threads):
                first_step = block_start + thread * block_chunk_length
                for system in range(systems):
                    if second_pass:
                        # Each chunk runs from its incoming state in ends.
                        run_steps(
                            a, b, ends[thread, system], out, first_step,
                            first_step + block_chunk_length, reverse, system, registers,
                        )  # fmt: skip
                    else:
                        compose_chunk(
                            a, b, (length, systems), first_step, first_step + block_chunk_length,
                            reverse, system, summaries[0][thread, system],
                            summaries[1][thread, system], summaries[2][thread], registers, bounds,
                        )  # fmt: skip
        settle_block(
            a, b, out, reverse, block_start, block_chunk_length, summaries[1], ends, carry,
            registers, bounds,
        )  # fmt: skip
        block_start += threads * block_chunk_length
    for system in range(systems):
        run_steps(a, b, carry[system], out, block_start, length, reverse, system, registers)


def choose_method(length: int, systems: int, size: int, threads: int) -> str:
    """What ``method="auto"`` runs on the CPU (thresholds in ``scanlab.config.cpu``)."""
    if length >= config.cpu.auto_scan_min_length and threads >= systems * (size + 2):
        return "scan"
    return "sequential"


def solve(a, b, h0, out, reverse: bool, method: str) -> None:
    """Run ``method`` ("auto", "sequential" or "scan") on arrays in kernel layout (``a``,
    ``b`` and ``h0`` handed to the kernels read-only: one specialisation, see
    :func:`scanlab._arrays.read_only`)."""
    a, b, h0 = read_only(a), read_only(b), read_only(h0)
    length, systems, size = out.shape
    threads = numba.get_num_threads()
    registers = register_marker(size)
    if method == "auto":
        method = choose_method(length, systems, size, threads)
    if method == "sequential":
        systems_per_task = max(1, config.cpu.channel_block_bytes // (size * out.itemsize))
        systems_per_task = min(systems_per_task, -(-systems // threads))
        # One task (one system, or few): run it without starting a parallel region.
        if systems == 1:
            run_system(a, b, h0, out, reverse, 0, registers)
        elif systems <= systems_per_task:
            run_systems(a, b, h0, out, reverse, 0, systems, registers)
        else:
            linear_recurrence_matrix_sequential(a, b, h0, out, reverse, systems_per_task, registers)
    else:
        step_bytes = systems * size * (size + 1) * out.itemsize
        chunk_length = max(1, config.cpu.cache_bytes // step_bytes)
        bounds = product_bounds(out.dtype, chunk_length)
        product_dtype = np.result_type(out.dtype, np.float64)
        linear_recurrence_matrix_scan(
            a, b, h0, out, reverse, chunk_length, threads, bounds, product_dtype, registers
        )
