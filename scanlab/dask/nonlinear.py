"""Nonlinear recurrences ``h[t] = f(h[t-1], x[t])`` over Dask arrays: the front end, the choice
of strategy and the ``"carry"`` strategy (each chunk solved in memory from the previous one's last
state); the ``"newton"`` strategy is :mod:`scanlab.dask.newton`."""

import math

import dask
import dask.array as da
import numpy as np

from scanlab import config, nonlinear
from scanlab._arrays import result_dtype
from scanlab._devices import gpu_leaf
from scanlab.cells import Cell
from scanlab.dask.linear import array_of_blocks, check_known_chunks, dtype_stand_in
from scanlab.dask.newton import (
    chunk_origin,
    distributed_client,
    last_state,
    newton_over_chunks,
    noting_chunk,
)

STRATEGIES = ("auto", "carry", "newton")


def nonlinear_recurrence(
    cell: Cell, x, h0, *, params=None, method: str = "auto", strategy: str = "auto", **options
):
    """``h[t] = f(h[t-1], x[t])`` over a Dask array ``x`` chunked along time and batch: a Dask
    array of the states.

    Two strategies. ``"carry"``: the chunks along time pass their last state to the next (a
    chain of tasks per batch chunk, the batch chunks in parallel); each chunk is solved by
    :func:`scanlab.nonlinear_recurrence` with ``method`` and ``options`` (e.g. ``tol``,
    ``max_iter``, ``on_fail``), and the result is lazy. ``"newton"``: Newton's method over the
    whole sequence (DEER), iterated on the cluster from the in-memory solver's initial guess
    ``f(h0, x[t])``: each iteration evaluates the cell and its Jacobian on every chunk in
    parallel, solves the linearised recurrence for the correction, ``d[t] = J[t] d[t-1] +
    f(h[t-1], x[t]) - h[t]``, with the chunked scan of :func:`scanlab.dask.linear_recurrence`
    (or :func:`scanlab.dask.linear_recurrence_matrix`) and gathers the largest residual of each
    chunk and sequence on the client; the states stay on the workers (persisted), so this strategy
    computes eagerly and returns a Dask array of persisted chunks. The leading chunks within
    ``tol`` are final and not computed again.

    Parameters
    ----------
    cell : Cell
        As for :func:`scanlab.nonlinear_recurrence`; it is serialised to the workers.
    x : dask.array.Array or array_like, shape (T, *batch, m)
        The inputs, time first; the result has its chunks along time and batch.
    h0 : array_like or None, shape (*batch, n)
        The states before the first step (zeros if None: the cell must know ``n``).
    params : optional
        The cell's parameters, as for :func:`scanlab.nonlinear_recurrence`.
    method : str, optional
        ``"carry"``: the method of :func:`scanlab.nonlinear_recurrence` for every chunk.
        ``"newton"``: the Jacobian, ``"newton"`` (``"auto"``) in the cell's structure or
        ``"quasi"``, its diagonal only (more iterations, an elementwise scan).
    strategy : {"auto", "carry", "newton"}, optional
        ``"auto"`` is ``"carry"`` except on a ``distributed`` cluster with at least
        ``scanlab.config.cpu.dask_auto_newton_min_threads`` (32) worker threads per batch
        chunk and as many chunks along time, with ``method="auto"`` and no options but ``tol``
        and ``max_iter``: ``"newton"`` then, falling back to ``"carry"`` if it does not
        converge (see Notes).
    options
        ``"carry"``: passed to :func:`scanlab.nonlinear_recurrence` for every chunk.
        ``"newton"``: ``tol`` and ``max_iter``, with the meanings and defaults of
        :func:`scanlab.nonlinear_recurrence` (the scaled residual of every step, of every
        sequence, at most ``tol``), and ``full_output``.

    Returns
    -------
    h : dask.array.Array, shape (T, *batch, n)
    info : NonlinearInfo
        Only with ``strategy="newton"`` and ``full_output=True``: ``iterations`` and the
        residuals; ``finished_sequentially`` is all False.

    Raises
    ------
    ConvergenceError
        ``"newton"``: some sequence still above ``tol`` after ``max_iter`` iterations, or a
        non-finite residual (an iterate that overflowed, or NaN or Inf from the data, which
        ``"carry"`` puts where the sequential loop does).

    Notes
    -----
    ``"carry"`` keeps each chunk's work the plain solve of that chunk (the compiled loop), but
    the chunks of one sequence run one after another: its depth is the number of chunks.
    ``"newton"`` runs the chunks in parallel, at the price of a handful of iterations, each
    about 3 passes over every chunk (the cell and its Jacobian, the chunk's summary for the
    scan, the solve from its initial correction) and a round trip to the client; it holds the
    inputs, states, Jacobians and ``f - h`` of two iterates (for ParaGRU about 13 times the
    memory of the states). On a ``distributed`` cluster each chunk's tasks run on the worker
    that holds the chunk, so that chunks do not move between workers (unless Dask's work
    stealing judges a move worth it); the chunks of a worker lost during or after the
    iterations are recomputed on the others, as those of Dask's own collections are.

    Measured on 2 cores (``benchmarks/RESULTS.md``), ParaGRU with 8 states over 2**22 steps in
    32 chunks, from disk: ``"carry"`` 1.1 s and ``"newton"`` (5 iterations) 6.8-8.1 s on
    threads, 1.9 s and 14-15 s on 2 worker processes. Newton does 12-15 times the work of
    carrying there, so it can only win with more worker threads than that per batch chunk and as
    many chunks along time: ``"auto"`` waits for twice that (an extrapolation, not measured
    beyond 2 workers). With a batch of sequences to spread over the workers, ``"carry"`` wins.

    See Also
    --------
    scanlab.nonlinear_recurrence : the in-memory solver, the same Newton's method.
    scanlab.dask.linear_recurrence : the chunked scan of Newton's corrections.

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
    >>> expected = scanlab.nonlinear_recurrence(gru, x.compute(), None)
    >>> bool(np.allclose(h.compute(), expected))
    True
    >>> h, info = scanlab.dask.nonlinear_recurrence(gru, x, None, strategy="newton",
    ...                                             full_output=True)
    >>> info.converged, bool(np.allclose(h.compute(), expected))
    (True, True)
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be made by scanlab.cell or scanlab.cells, got {cell!r}")
    if not isinstance(strategy, str):
        raise TypeError(f"strategy must be a string, got {strategy!r}")
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(map(repr, STRATEGIES))}; got {strategy!r}"
        )
    if gpu_leaf(params) is not None:
        raise TypeError(
            "scanlab.dask solves on the workers' CPUs, but params holds a GPU array: pass "
            "NumPy arrays (copy it to the host first)"
        )
    x, start = aligned_inputs(cell, x, h0)
    chosen = choose_strategy(x, method, options) if strategy == "auto" else strategy
    if chosen == "newton":
        try:
            return newton_over_chunks(cell, x, start, params, method, options)
        except nonlinear.ConvergenceError:
            if strategy == "newton":
                raise
    return carry_passing(cell, x, start, params, method, options)


def aligned_inputs(cell: Cell, x, h0):
    """``x`` ``(T, *batch, m)`` broadcast to the batch shape of ``x`` and ``h0``, one chunk
    along ``m``, and the initial states ``(*batch, n)`` in the result's dtype, chunked like
    it."""
    check_known_chunks(x=x, h0=h0)
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
        return x, da.zeros((*batch, size), dtype=dtype, chunks=x.chunks[1:-1] + ((size,),))
    start = da.broadcast_to(da.asarray(h0).astype(dtype), (*batch, size))
    return x, start.rechunk(x.chunks[1:-1] + ((size,),))


def choose_strategy(x, method: str, options: dict) -> str:
    """The ``"auto"`` strategy of :func:`nonlinear_recurrence` for the aligned ``x``."""
    if method != "auto" or set(options) - {"tol", "max_iter"}:
        return "carry"
    columns = math.prod(len(chunks) for chunks in x.chunks[1:-1])
    enough = config.cpu.dask_auto_newton_min_threads
    if len(x.chunks[0]) >= enough and cluster_threads() >= enough * columns:
        return "newton"
    return "carry"


def cluster_threads() -> int:
    """The worker threads of the ``distributed`` client Dask computes on (0: none)."""
    client = distributed_client()
    return 0 if client is None else sum(client.nthreads().values())


def carry_passing(cell: Cell, x, start, params, method, options):
    """The ``"carry"`` strategy: each chunk solved in memory from the previous one's last
    state, lazily."""
    if options.get("full_output"):
        raise ValueError(
            "full_output=True needs strategy='newton' (with 'carry', each chunk is a separate "
            "solve with its own NonlinearInfo)"
        )
    x_blocks, start_blocks = x.to_delayed()[..., 0], start.to_delayed()[..., 0]
    solve = dask.delayed(solve_nonlinear_chunk, pure=True)
    last = dask.delayed(last_state, pure=True)
    dtype, size = start.dtype, start.shape[-1]
    blocks = np.empty(x_blocks.shape + (1,), object)
    for index in np.ndindex(x_blocks.shape[1:]):
        carry = start_blocks[index]
        for k in range(x_blocks.shape[0]):
            origin = chunk_origin(x.chunks, (k, *index))
            states = solve(
                cell, x_blocks[(k, *index)], carry, dtype, params, method, options, origin
            )
            blocks[(k, *index, 0)] = states
            carry = last(states, carry)
    return array_of_blocks("nonlinear_recurrence", blocks, x.chunks[:-1] + ((size,),), dtype)


def solve_nonlinear_chunk(cell, x, h0, dtype, params, method, options, origin):
    """One chunk of :func:`nonlinear_recurrence`, from its initial states ``h0`` (``origin``:
    its first element, for :func:`scanlab.dask.newton.noting_chunk`)."""
    with noting_chunk(origin):
        return nonlinear.nonlinear_recurrence(
            cell, x.astype(dtype, copy=False), h0, params=params, method=method, **options
        )
