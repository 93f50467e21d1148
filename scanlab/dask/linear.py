"""Linear recurrences over Dask arrays chunked along time: each chunk summarised, the summaries
carried across chunks by a chain or a tree of tiny tasks, each chunk solved from its initial state
and checked against the loop (see :mod:`scanlab.dask`)."""

import math

import dask
import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from scanlab._arrays import normalize_axis, result_dtype
from scanlab._scaled_products import carried_states, column_products, product_bounds, rows_agree
from scanlab.linear import check_method
from scanlab.linear import linear_recurrence as solve_elementwise
from scanlab.linear import linear_recurrence_matrix as solve_matrices

METHODS = ("auto", "sequential", "blelloch")


def linear_recurrence(a, b, h0=None, *, axis=0, reverse=False, method="auto"):
    """``h[t] = a[t] * h[t-1] + b[t]`` along ``axis`` of Dask arrays: a lazy Dask array.

    Parameters
    ----------
    a, b : dask.array.Array or array_like
        Broadcast against each other as by :func:`scanlab.linear_recurrence`; the result has
        ``b``'s chunks (``a``'s if ``b`` is not a Dask array), along time and any other axis.
    h0 : array_like or dask.array.Array, optional
        The state before the first step (after the last with ``reverse``), broadcastable to the
        result without ``axis``; zeros if None.
    axis : int, optional
        The time axis.
    reverse : bool, optional
        Run from the last step to the first.
    method : {"auto", "sequential", "blelloch"}, optional
        How the chunk summaries are combined across chunks: ``"sequential"``, a chain of one
        tiny task per chunk, or ``"blelloch"``, a tree of pairwise compositions (about twice the
        tiny tasks, ``2 log2(chunks)`` deep, so the chunks need not wait for each other);
        ``"auto"``: the chain. With threads on 2 cores both took the same time at 100 and 1000
        chunks (``benchmarks/RESULTS.md``); the tree is for clusters where a task's latency,
        times the number of chunks, would dominate (not measured). Either way, the check of
        each chunk's initial state against the loop's (:func:`settled_chunk`) is a chain of
        one tiny task per chunk after the chunks' solves.

    Returns
    -------
    h : dask.array.Array

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import scanlab.dask
    >>> b = da.ones((7, 2), chunks=(3, 1))
    >>> scanlab.dask.linear_recurrence(0.5, b, reverse=True).compute()[:4, 0]
    array([1.984375, 1.96875 , 1.9375  , 1.875   ])
    """
    return chunked_solve(a, b, h0, axis, reverse, method, matrices=False)


def linear_recurrence_matrix(A, b, h0=None, *, axis=0, reverse=False, method="auto"):
    """``h[t] = A[t] @ h[t-1] + b[t]`` along ``axis`` of Dask arrays: a lazy Dask array.

    ``A`` has shape ``(..., n, n)`` and ``b`` ``(..., n)``, their leading axes broadcast as by
    :func:`scanlab.linear_recurrence_matrix`; the state axis of the result is one chunk. Other
    arguments as :func:`linear_recurrence`.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import scanlab.dask
    >>> rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
    >>> b = da.zeros((4, 2), chunks=(3, 2))
    >>> scanlab.dask.linear_recurrence_matrix(rotation, b, [1.0, 0.0]).compute()
    array([[ 0.,  1.],
           [-1.,  0.],
           [ 0., -1.],
           [ 1.,  0.]])
    """
    return chunked_solve(A, b, h0, axis, reverse, method, matrices=True)


def dtype_stand_in(value):
    """What :func:`result_dtype` may see of ``value`` without computing a Dask array."""
    if isinstance(value, da.Array):
        return np.empty(0, value.dtype)
    return value


def check_known_chunks(**operands) -> None:
    """A ValueError naming the first Dask array of ``operands`` whose chunk sizes are unknown
    (NaN, as after boolean indexing): a solve needs them to place the chunks along time."""
    for name, value in operands.items():
        if isinstance(value, da.Array) and any(map(math.isnan, value.shape)):
            raise ValueError(
                f"{name} has unknown chunk sizes (shape {value.shape}): call "
                f"{name}.compute_chunk_sizes() first"
            )


def chunked_solve(a, b, h0, axis, reverse, method, matrices):
    """Both solvers: summaries per chunk, carries across chunks, then each chunk solved and
    checked against the loop."""
    check_method(method, METHODS)
    operands = {"A" if matrices else "a": a, "b": b, "h0": h0}
    check_known_chunks(**operands)
    dtype = result_dtype(**{name: dtype_stand_in(value) for name, value in operands.items()})
    follow_a = isinstance(a, da.Array) and not isinstance(b, da.Array)
    a, b = da.asarray(a).astype(dtype), da.asarray(b).astype(dtype)
    state = b.shape[-1:] if matrices else ()
    if matrices and (a.ndim < 2 or a.shape[-2:] != state * 2 or b.ndim < 1):
        raise ValueError(
            f"A must have shape (..., n, n) and b (..., n) with the same n, got A {a.shape} and "
            f"b {b.shape}"
        )
    try:
        leading = np.broadcast_shapes(
            a.shape[: a.ndim - 2 * len(state)], b.shape[: b.ndim - len(state)]
        )
    except ValueError:
        raise ValueError(f"a {a.shape} and b {b.shape} do not broadcast") from None
    if not leading:
        raise ValueError(f"the recurrence needs a time axis: a {a.shape}, b {b.shape}")
    time_axis = normalize_axis(axis, len(leading))
    # Time first, the coefficients broadcast to the leading shape, with the chunks of the input
    # the result follows (the state and matrix axes in one chunk).
    a = da.moveaxis(da.broadcast_to(a, leading + state * 2), time_axis, 0)
    b = da.moveaxis(da.broadcast_to(b, leading + state), time_axis, 0)
    chunks = (a if follow_a else b).chunks[: len(leading)]
    b = b.rechunk(chunks + tuple((size,) for size in state))
    a = a.rechunk(chunks + tuple((size,) for size in state * 2))
    rest = b.shape[1:]
    if h0 is None:
        start = da.zeros(rest, dtype=dtype, chunks=b.chunks[1:])
    else:
        try:
            start = da.broadcast_to(da.asarray(h0).astype(dtype), rest)
        except ValueError:
            raise ValueError(
                f"h0 with shape {np.shape(h0)} does not broadcast to the result's shape without "
                f"the time axis {rest}"
            ) from None
        start = start.rechunk(b.chunks[1:])
    a_blocks, b_blocks = a.to_delayed(), b.to_delayed()
    start_blocks = start.to_delayed()
    if matrices:
        a_blocks = a_blocks[..., 0, 0]
    if state:
        b_blocks, start_blocks = b_blocks[..., 0], start_blocks[..., 0]
    summarise = dask.delayed(chunk_summary, pure=True)
    solve = dask.delayed(solve_chunk, pure=True)
    settle = dask.delayed(settled_chunk, pure=True)
    end_state = dask.delayed(far_end, pure=True)
    # Rounding of composition grows with the steps composed, and with the states for matrices.
    bounds = product_bounds(dtype, max(max(chunks[0], default=1), 1) * (state[0] if state else 1))
    solved = np.empty(b_blocks.shape, object)
    order = range(len(chunks[0]))
    for index in np.ndindex(b_blocks.shape[1:]):
        steps = [(k, *index) for k in (reversed(order) if reverse else order)]
        summaries = [summarise(a_blocks[k], b_blocks[k], reverse, matrices) for k in steps]
        carries = chunk_carries(summaries, start_blocks[index], method)
        loop_state = None  # the state the loop reaches before the chunk, past the first
        for block, carry in zip(steps, carries, strict=True):
            states = solve(a_blocks[block], b_blocks[block], carry, reverse, matrices)
            if loop_state is not None:
                states = settle(
                    states, a_blocks[block], b_blocks[block], carry, loop_state, reverse,
                    matrices, bounds,
                )  # fmt: skip
            loop_state = end_state(states, carry if loop_state is None else loop_state, reverse)
            solved[block] = states
    name = "linear_recurrence_matrix" if matrices else "linear_recurrence"
    blocks = solved[..., None] if state else solved
    h = array_of_blocks(name, blocks, chunks + tuple((size,) for size in state), dtype)
    return da.moveaxis(h, 0, time_axis)


def array_of_blocks(name: str, blocks: np.ndarray, chunks: tuple, dtype) -> "da.Array":
    """The Dask array whose block at each index is the Delayed ``blocks[index]``, with
    ``chunks``: the empty ones too, which ``da.block`` would leave out."""
    name = f"{name}-{dask.base.tokenize(*blocks.flat)}"
    layer = {(name, *index): blocks[index].key for index in np.ndindex(blocks.shape)}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=list(blocks.flat))
    return da.Array(graph, name, chunks, dtype)


def chunk_summary(a, b, reverse: bool, matrices: bool):
    """A chunk's ``(product, exponent, end)``: its composed coefficient ``product *
    2**exponent`` (``exponent`` None for matrices) and its result at its far end from a zero
    start (an empty chunk: the identity and zeros, so that it passes its carry through).

    The product of ``a`` is kept in range (:func:`scaled_product`); that of matrices is the
    in-memory solver's, and the check against the loop (:func:`settled_chunk`) reruns what a
    product that underflowed or overflowed got wrong.
    """
    if not matrices:
        local = solve_elementwise(a, b, reverse=reverse)
        return *scaled_product(a), far_end(local, 0, reverse)
    local = solve_matrices(a, b, reverse=reverse)
    # The composition applied to each basis vector: the same recurrence with no input.
    n = b.shape[-1]
    identity = np.broadcast_to(np.eye(n, dtype=b.dtype), b.shape[1:-1] + (n, n))
    columns = solve_matrices(
        a[..., None, :, :], np.zeros(b.shape[:-1] + (n, n), b.dtype), identity, reverse=reverse
    )
    composed = far_end(columns, identity, reverse).swapaxes(-1, -2)
    return composed, None, far_end(local, 0, reverse)


def scaled_product(values) -> tuple:
    """``(mantissa, exponent)``: ``mantissa * 2**exponent`` is the product of ``values`` along
    its first axis, the mantissa in double precision and kept in range step by step
    (:mod:`scanlab._scaled_products`), so that a product that underflows and grows back keeps
    the state it carries."""
    rest = values.shape[1:]
    columns = np.reshape(values, (len(values), math.prod(rest)))
    mantissa = np.empty(columns.shape[1], np.result_type(values.dtype, np.float64))
    exponent = np.empty(columns.shape[1], np.int64)
    column_products(columns, product_bounds(values.dtype, 1), mantissa, exponent)
    return mantissa.reshape(rest), exponent.reshape(rest)


def far_end(states, start, reverse: bool) -> np.ndarray:
    """The last of a chunk's ``states`` (the first with ``reverse``), or ``start`` if the
    chunk is empty."""
    if not len(states):
        return np.broadcast_to(start, states.shape[1:]).astype(states.dtype)
    return states[0] if reverse else states[-1]


def chunk_carries(summaries: list, start, method: str) -> list:
    """Each chunk's initial state (Delayed): ``start`` (None: zeros) carried through the
    ``summaries`` of the chunks before it, by a chain (``"sequential"``) or a tree
    (``"blelloch"``) of tiny tasks."""
    advance = dask.delayed(next_carry, pure=True)
    carries = [start]
    if method == "sequential":
        for summary in summaries[:-1]:
            carries.append(advance(summary, carries[-1]))
    else:
        prefixes = prefix_summaries(summaries[:-1], dask.delayed(compose_summaries, pure=True))
        carries += [advance(prefix, start) for prefix in prefixes]
    return carries


def next_carry(summary, carry):
    """The state after a chunk (before it, with ``reverse``), from the one before it (None:
    zeros), as composition gives it."""
    product, exponent, end = summary
    if carry is None:
        return end
    if exponent is None:
        return np.einsum("...ij,...j->...i", product, carry) + end
    bounds = product_bounds(end.dtype, 1)
    incoming = np.broadcast_to(carry, end.shape)
    flat = (np.ravel(part) for part in (product, exponent, end, incoming))
    return carried_states(*flat, bounds).reshape(end.shape)


def compose_summaries(earlier, later):
    """The summary of two consecutive chunks (in the order they are solved)."""
    end = next_carry(later, earlier[2])
    if later[1] is None:
        return later[0] @ earlier[0], None, end
    mantissa, exponent = scaled_product(np.stack([earlier[0], later[0]]))
    return mantissa, exponent + earlier[1] + later[1], end


def prefix_summaries(summaries: list, compose) -> list:
    """The compositions of ``summaries[:k + 1]`` for every ``k``, by pairs then recursion: about
    ``2 n`` calls of ``compose``, ``2 log2(n)`` deep (Blelloch's scan)."""
    if len(summaries) <= 1:
        return list(summaries)
    pairs = [compose(summaries[i], summaries[i + 1]) for i in range(0, len(summaries) - 1, 2)]
    inner = prefix_summaries(pairs, compose)
    prefixes = [summaries[0]]
    for k in range(1, len(summaries)):
        prefixes.append(inner[k // 2] if k % 2 else compose(inner[k // 2 - 1], summaries[k]))
    return prefixes


def solve_chunk(a, b, carry, reverse: bool, matrices: bool):
    """A chunk solved from its initial state ``carry``."""
    solver = solve_matrices if matrices else solve_elementwise
    return solver(a, b, carry, reverse=reverse)


def settled_chunk(states, a, b, carry, loop_state, reverse: bool, matrices: bool, bounds):
    """A chunk's ``states``, solved from ``carry``, its initial state as the summaries composed
    it, rerun from ``loop_state``, the state the loop reaches before the chunk, in the sequences
    where the two disagree beyond rounding (``rows_agree``: a product that underflowed or
    overflowed, a state of the loop that overflowed inside an earlier chunk, a NaN that
    composition made from ``inf * 0``). Only those sequences are rerun, once each."""
    size = carry.shape[-1] if matrices else 1
    agreeing = rows_agree(
        np.reshape(loop_state, (-1, size)), np.reshape(carry, (-1, size)), bounds
    ).reshape(carry.shape[: carry.ndim - matrices])
    if not len(states) or agreeing.all():
        return states
    if not agreeing.any():
        return solve_chunk(a, b, loop_state, reverse, matrices)
    wrong = ~agreeing
    states = states.copy()
    states[:, wrong] = solve_chunk(a[:, wrong], b[:, wrong], loop_state[wrong], reverse, matrices)
    return states
