"""Recurrences over Dask arrays chunked along time (and any other axis), on Dask's own
scheduler: ``pip install scanlab[dask]``.

Each chunk along time is solved by scanlab's in-memory kernels. A chunk is first summarised by its
composed coefficient and its result from a zero start (``(prod a, h_end)``: ``O(chunk)`` work, a
summary of one state per channel), the summaries are combined across chunks into each chunk's
initial state (a chain of tiny tasks), and each chunk is then solved from its initial state. Work
and data moved per chunk are ``O(chunk)``; every chunk is solved twice. A nonlinear recurrence
passes each chunk's last state to the next (:func:`nonlinear_recurrence`).

Examples
--------
>>> import dask.array as da
>>> import numpy as np
>>> import scanlab
>>> import scanlab.dask
>>> b = da.from_array(np.arange(10.0), chunks=3)
>>> h = scanlab.dask.linear_recurrence(0.5, b)
>>> bool(np.allclose(h.compute(), scanlab.linear_recurrence(0.5, np.arange(10.0))))
True
"""

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as error:  # scanlab itself works without Dask
    raise ImportError(
        "scanlab.dask needs Dask: pip install 'scanlab[dask]' (dask[array] and distributed)"
    ) from error

from scanlab import nonlinear
from scanlab._arrays import normalize_axis, result_dtype
from scanlab.cells import Cell
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
        times the number of chunks, would dominate (not measured).

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


def nonlinear_recurrence(cell, x, h0, *, params=None, method="auto", **options):
    """``h[t] = f(h[t-1], x[t])`` over a Dask array ``x`` chunked along time and batch: a lazy
    Dask array of the states.

    The chunks along time pass their last state to the next (a chain of tasks per batch chunk,
    the batch chunks in parallel); each chunk is solved by :func:`scanlab.nonlinear_recurrence`
    with ``method`` and ``options`` (e.g. ``tol``, ``max_iter``, ``on_fail``).

    Parameters
    ----------
    cell : Cell
        As for :func:`scanlab.nonlinear_recurrence`; it is serialised to the workers.
    x : dask.array.Array or array_like, shape (T, *batch, m)
        The inputs, time first; the result has its chunks along time and batch.
    h0 : array_like or None, shape (*batch, n)
        The states before the first step (zeros if None: the cell must know ``n``).
    params, method, options
        Passed to :func:`scanlab.nonlinear_recurrence` for every chunk.

    Returns
    -------
    h : dask.array.Array, shape (T, *batch, n)

    Notes
    -----
    Passing the carry keeps every chunk's work the plain solve of that chunk: on a CPU, where the
    compiled loop beats Newton's iterations by 5-50x (``benchmarks/RESULTS.md``), this is the
    fastest way whatever the number of workers, as long as the batch chunks keep them busy. A
    Newton iteration over the whole distributed sequence (each iteration one evaluation per chunk,
    one distributed linear scan and a global residual check) would let the time chunks of one
    sequence run in parallel; it pays only with many more workers than batch chunks, and is not
    implemented.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import scanlab
    >>> import scanlab.dask
    >>> gru = scanlab.cells.ParaGRU(4, 2, seed=0)
    >>> x = da.random.default_rng(0).standard_normal((1000, 3, 2), chunks=(300, 1, 2))
    >>> h = scanlab.dask.nonlinear_recurrence(gru, x, None)
    >>> h.chunks[:2], h.shape
    (((300, 300, 300, 100), (1, 1, 1)), (1000, 3, 4))
    >>> bool(np.allclose(h.compute(), scanlab.nonlinear_recurrence(gru, x.compute(), None)))
    True
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be made by scanlab.cell or scanlab.cells, got {cell!r}")
    dtype = result_dtype(x=dtype_stand_in(x), h0=dtype_stand_in(h0))
    x = da.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (T, *batch, m), time first, got {x.shape}")
    size = nonlinear.cell_state_size(
        cell, None if h0 is None else np.broadcast_to(0.0, np.shape(h0))
    )
    try:
        batch = np.broadcast_shapes(x.shape[1:-1], np.shape(h0)[:-1] if h0 is not None else ())
    except ValueError:
        raise ValueError(
            f"the batch shapes of x {x.shape} (T, *batch, m) and h0 {np.shape(h0)} (*batch, n) "
            "do not broadcast"
        ) from None
    x = da.broadcast_to(x.reshape(x.shape[:1] + (1,) * (len(batch) + 2 - x.ndim) + x.shape[1:]),
                        (x.shape[0], *batch, x.shape[-1]))  # fmt: skip
    x = x.rechunk(x.chunks[:-1] + ((x.shape[-1],),))
    if h0 is None:
        start = da.zeros((*batch, size), dtype, chunks=x.chunks[1:-1] + ((size,),))
    else:
        start = da.broadcast_to(da.asarray(h0).astype(dtype), (*batch, size))
        start = start.rechunk(x.chunks[1:-1] + ((size,),))
    x_blocks, start_blocks = x.to_delayed()[..., 0], start.to_delayed()[..., 0]
    solve = dask.delayed(solve_nonlinear_chunk, pure=True)
    last = dask.delayed(last_state, pure=True)
    blocks = np.empty(x_blocks.shape + (1,), object)
    for index in np.ndindex(x_blocks.shape[1:]):
        carry = start_blocks[index]
        for k in range(x_blocks.shape[0]):
            states = solve(cell, x_blocks[(k, *index)], carry, dtype, params, method, options)
            shape = tuple(x.chunks[axis][i] for axis, i in enumerate((k, *index))) + (size,)
            blocks[(k, *index, 0)] = da.from_delayed(states, shape, dtype)
            carry = last(states)
    return da.block(blocks.tolist())


def solve_nonlinear_chunk(cell, x, h0, dtype, params, method, options):
    """One chunk of :func:`nonlinear_recurrence`, from its initial states ``h0``."""
    return nonlinear.nonlinear_recurrence(
        cell, x.astype(dtype, copy=False), h0, params=params, method=method, **options
    )


def last_state(states):
    """A chunk's last states: the next chunk's initial ones."""
    return states[-1]


def dtype_stand_in(value):
    """What :func:`result_dtype` may see of ``value`` without computing a Dask array."""
    if isinstance(value, da.Array):
        return np.empty(0, value.dtype)
    return value


def chunked_solve(a, b, h0, axis, reverse, method, matrices):
    """Both solvers: summaries per chunk, carries across chunks, then each chunk solved."""
    check_method(method, METHODS)
    dtype = result_dtype(a=dtype_stand_in(a), b=dtype_stand_in(b), h0=dtype_stand_in(h0))
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
        start = da.zeros(rest, dtype, chunks=b.chunks[1:])
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
    advance = dask.delayed(next_carry, pure=True)
    compose = dask.delayed(compose_summaries, pure=True)
    solve = dask.delayed(solve_chunk, pure=True)
    solved = np.empty(b_blocks.shape, object)
    order = range(len(chunks[0]))
    for index in np.ndindex(b_blocks.shape[1:]):
        steps = [(k, *index) for k in (reversed(order) if reverse else order)]
        summaries = [summarise(a_blocks[k], b_blocks[k], reverse, matrices) for k in steps]
        carries = [start_blocks[index]]
        if method == "sequential":
            for summary in summaries[:-1]:
                carries.append(advance(summary, carries[-1]))
        else:
            prefixes = prefix_summaries(summaries[:-1], compose)
            carries += [advance(prefix, carries[0]) for prefix in prefixes]
        for block, carry in zip(steps, carries, strict=True):
            solved[block] = solve(a_blocks[block], b_blocks[block], carry, reverse, matrices)
    blocks = np.empty(solved.shape, object)
    for block in np.ndindex(solved.shape):
        shape = tuple(chunks[axis][i] for axis, i in enumerate(block)) + state
        blocks[block] = da.from_delayed(solved[block], shape, dtype)
    if state:
        blocks = blocks[..., None]
    return da.moveaxis(da.block(blocks.tolist()), 0, time_axis)


def chunk_summary(a, b, reverse: bool, matrices: bool):
    """A chunk's composed coefficient and its result at its far end from a zero start."""
    if not matrices:
        local = solve_elementwise(a, b, reverse=reverse)
        return np.prod(a, axis=0), local[0] if reverse else local[-1]
    local = solve_matrices(a, b, reverse=reverse)
    # The composition applied to each basis vector: the same recurrence with no input.
    n = b.shape[-1]
    identity = np.broadcast_to(np.eye(n, dtype=b.dtype), b.shape[1:-1] + (n, n))
    columns = solve_matrices(
        a[..., None, :, :], np.zeros(b.shape[:-1] + (n, n), b.dtype), identity, reverse=reverse
    )
    composed = (columns[0] if reverse else columns[-1]).swapaxes(-1, -2)
    return composed, local[0] if reverse else local[-1]


def next_carry(summary, carry):
    """The state after a chunk (before it, with ``reverse``), from the one before it."""
    composed, end = summary
    if composed.ndim == carry.ndim:
        return composed * carry + end
    return np.einsum("...ij,...j->...i", composed, carry) + end


def compose_summaries(earlier, later):
    """The summary of two consecutive chunks (in the order they are solved)."""
    composed = later[0] @ earlier[0] if later[0].ndim > later[1].ndim else later[0] * earlier[0]
    return composed, next_carry(later, earlier[1])


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


__all__ = ["linear_recurrence", "linear_recurrence_matrix", "nonlinear_recurrence"]
