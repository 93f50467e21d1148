"""Recurrences over Dask arrays chunked along time (and any other axis), on Dask's own
scheduler: ``pip install scanlab[dask]``.

Each chunk along time is solved by scanlab's in-memory kernels. A chunk is first summarised by its
composed coefficient (kept in range as mantissa and exponent) and its result from a zero start
(``(prod a, h_end)``: ``O(chunk)`` work, a summary of one state per channel), the summaries are
combined across chunks into each chunk's initial state (a chain of tiny tasks), and each chunk is
then solved from its initial state. Work and data moved per chunk are ``O(chunk)``; every chunk
is solved twice. The loop is the reference: a chain of tiny tasks checks the state each solved
chunk ends in against the initial state the next one was given, and reruns a chunk, in the
sequences where the two disagree, from the loop's state (:func:`settled_chunk`). A nonlinear
recurrence passes each chunk's last state to the next, or runs Newton's method over the whole
sequence, each iteration one such linear solve (:func:`nonlinear_recurrence`).

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

import contextlib
import math
import sys

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph
except ImportError as error:  # scanlab itself works without Dask
    raise ImportError(
        "scanlab.dask needs Dask: pip install 'scanlab[dask]' (dask[array] and distributed)"
    ) from error

from scanlab import config, nonlinear
from scanlab._arrays import normalize_axis, result_dtype
from scanlab._newton import CONVERGED, DIVERGED, NOT_FINITE, iterate_newton
from scanlab._scaled_products import carried_states, column_products, product_bounds, rows_agree
from scanlab.cells import Cell, JacobianPlan
from scanlab.cpu import nonlinear as cpu_nonlinear
from scanlab.linear import check_method
from scanlab.linear import linear_recurrence as solve_elementwise
from scanlab.linear import linear_recurrence_matrix as solve_matrices

METHODS = ("auto", "sequential", "blelloch")
STRATEGIES = ("auto", "carry", "newton")
#: The Jacobians of the ``"newton"`` strategy, and the options it takes.
NEWTON_METHODS = ("auto", "newton", "quasi")
NEWTON_OPTIONS = ("tol", "max_iter", "full_output")


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
    f(h[t-1], x[t]) - h[t]``, with the chunked scan of :func:`linear_recurrence` (or
    :func:`linear_recurrence_matrix`) and gathers the largest residual of each chunk and
    sequence on the client; the states stay on the workers (persisted), so this strategy
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
    linear_recurrence : the chunked scan of Newton's corrections.

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


def distributed_client():
    """The ``distributed`` client Dask computes on, or None (a local scheduler)."""
    distributed = sys.modules.get("distributed")  # a client needs it imported
    if distributed is None:
        return None
    client = getattr(dask.base.get_scheduler(), "__self__", None)
    return client if isinstance(client, distributed.Client) else None


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
            states = solve(cell, x_blocks[(k, *index)], carry, dtype, params, method, options)
            blocks[(k, *index, 0)] = states
            carry = last(states, carry)
    return array_of_blocks("nonlinear_recurrence", blocks, x.chunks[:-1] + ((size,),), dtype)


def solve_nonlinear_chunk(cell, x, h0, dtype, params, method, options):
    """One chunk of :func:`nonlinear_recurrence`, from its initial states ``h0``."""
    return nonlinear.nonlinear_recurrence(
        cell, x.astype(dtype, copy=False), h0, params=params, method=method, **options
    )


def last_state(states, initial=None):
    """A chunk's last states, the next chunk's initial ones; ``initial``, the chunk's own, if it
    is empty."""
    return states[-1] if len(states) else initial


def newton_over_chunks(cell: Cell, x, start, params, method, options):
    """The ``"newton"`` strategy: Newton's iterations (:func:`scanlab._newton.iterate_newton`)
    on the persisted chunks of the states, until every scaled residual is at most ``tol``."""
    if not isinstance(method, str) or method not in NEWTON_METHODS:
        raise ValueError(
            f"strategy='newton' takes method 'auto', 'newton' or 'quasi' (its Jacobian); got "
            f"{method!r} (the other methods need strategy='carry')"
        )
    method = "newton" if method == "auto" else method
    unknown = sorted(set(options) - set(NEWTON_OPTIONS))
    if unknown:
        raise TypeError(
            f"strategy='newton' takes the options {', '.join(NEWTON_OPTIONS)}; got "
            f"{', '.join(unknown)}"
        )
    dtype, size = start.dtype, start.shape[-1]
    length = x.shape[0]
    tol, limit = nonlinear.newton_settings(
        method, dtype, options.get("tol"), options.get("max_iter"), length
    )
    info = nonlinear.NonlinearInfo(method, tol=tol)
    batch = start.shape[:-1]
    info.finished_sequentially = np.zeros(batch, bool)
    if length == 0 or 0 in batch:
        info.batch_converged = np.ones(batch, bool)
        h = da.zeros((length, *batch, size), dtype=dtype, chunks=x.chunks[:-1] + ((size,),))
        return (h, info) if options.get("full_output") else h
    chunks = x.chunks[:-1] + ((size,),)
    # Empty chunks have no last state to pass on: the iteration leaves them out.
    x = x.rechunk(tuple(tuple(filter(None, sizes)) for sizes in x.chunks[:-1]) + x.chunks[-1:])
    start = start.rechunk(x.chunks[1:-1] + ((size,),))
    backend = ChunkedBackend(cell, x, start, params, method == "quasi")
    h = backend.states()
    backend.guess(h)
    statuses = iterate_newton(backend, h, method, tol, limit, info, stop_at_failure=True).statuses
    if not (statuses == CONVERGED).all():
        finite = not np.isin(statuses, (DIVERGED, NOT_FINITE)).any()
        worst = np.max(backend.table, axis=0).reshape(batch)
        raise convergence_error(method, info, worst, tol, finite)
    info.batch_converged = np.ones(batch, bool)
    h = backend.array(h, chunks, dtype)
    return (h, info) if options.get("full_output") else h


class ChunkedIterate:
    """A Newton iterate over chunks, persisted: per chunk (an object array ``(time chunks,
    *batch chunks)`` of Delayed each) its states ``h``, ``last`` states, ``linearisation``
    there and, from that, its ``summary`` for the correction's scan and largest scaled residual
    per sequence, ``worst``."""

    def __init__(self, h: np.ndarray):
        self.h = h
        self.last, self.linearisation = np.empty_like(h), np.empty_like(h)
        self.summary, self.worst = np.empty_like(h), np.empty_like(h)


class ChunkedBackend:
    """Newton's operations on the chunks of a Dask array, persisted on the workers: the
    :class:`scanlab._newton.Backend` of the ``"newton"`` strategy (undamped: ``"newton"`` or
    ``"quasi"``), whose steps are the chunks along time.

    Per chunk (an object array ``(time chunks, *batch chunks)`` of Delayed each) it holds the
    chunk's ``problem`` (:class:`scanlab.nonlinear.Problem`) and ``homes``, the worker that
    holds it; ``plan`` is the cell's :class:`~scanlab.cells.JacobianPlan`, chosen once, at the
    first input. Its residual rows are, per chunk along time and sequence, the largest scaled
    residual; ``table`` holds all of them, as last evaluated.
    """

    def __init__(self, cell: Cell, x, start, params, quasi: bool):
        x_blocks, start_blocks = x.to_delayed()[..., 0], start.to_delayed()[..., 0]
        prepare = dask.delayed(nonlinear.Problem.of)
        (self.cell,) = dask.persist(dask.delayed(cell, pure=True))
        problems = np.empty(x_blocks.shape, object)
        for block in np.ndindex(problems.shape):
            problems[block] = prepare(
                self.cell, x_blocks[block], start_blocks[block[1:]], params, start.dtype
            )
        persist_blocks(problems)
        self.problem, self.homes, self.quasi = problems, chunk_homes(problems), quasi
        with at_home(self.homes.flat[0]):
            (self.plan,) = dask.compute(dask.delayed(plan_of)(self.cell, problems.flat[0]))
        # The batch axes' chunk boundaries, and from which chunk each batch chunk changed.
        self.bounds = [np.cumsum((0, *sizes)) for sizes in x.chunks[1:-1]]
        self.changed = np.zeros(problems.shape[1:], int)
        self.table = None

    def states(self) -> np.ndarray:
        """An object array of chunks of states, not yet computed."""
        return np.empty(self.problem.shape, object)

    def guess(self, h: np.ndarray) -> None:
        """The initial iterate ``f(h0, x[t])`` at every step, as the in-memory solver's."""
        guess = dask.delayed(first_guess)
        for block in np.ndindex(h.shape):
            with at_home(self.homes[block]):
                h[block] = guess(self.cell, self.plan, self.problem[block])

    def iterate(self, h: np.ndarray, with_jacobian: bool = True) -> ChunkedIterate:
        return ChunkedIterate(h)

    def evaluate(self, iterate: ChunkedIterate, first: int) -> np.ndarray:
        """Linearise the chunks that changed since the last evaluation at their states and
        persist them; the largest scaled residual of each chunk from ``first`` on, per sequence
        (on the client)."""
        last = dask.delayed(last_state)
        linearise = dask.delayed(linearise_chunk, nout=3)
        for block in self.blocks_from(self.changed):
            previous = iterate.last[(block[0] - 1, *block[1:])] if block[0] else None
            with at_home(self.homes[block]):
                iterate.last[block] = last(iterate.h[block])
                iterate.linearisation[block], iterate.summary[block], iterate.worst[block] = (
                    linearise(self.cell, self.plan, self.quasi, self.problem[block],
                              iterate.h[block], previous)
                )  # fmt: skip
        persist_blocks(iterate.h, iterate.last, iterate.linearisation, iterate.summary,
                       iterate.worst)  # fmt: skip
        self.changed[...] = self.problem.shape[0]
        values = np.empty(iterate.worst.shape, object)
        values.ravel()[:] = dask.compute(*iterate.worst.flat)
        self.table = np.stack([np.block(row.tolist()).reshape(-1) for row in values])
        return self.table[first:]

    def correct(self, iterate: ChunkedIterate, starts: np.ndarray, damping, into) -> None:
        """One Newton step on each batch chunk from the first of its sequences' ``starts`` on
        (in chunks along time; the correction zero before), its sequences that keep their
        states (start: the number of chunks) left as they are; ``damping`` is ones and
        ``into`` is ``iterate``."""
        correct = dask.delayed(corrected_states)
        chunk_count = self.problem.shape[0]
        starts = starts.reshape(tuple(bounds[-1] for bounds in self.bounds))
        for column in np.ndindex(self.changed.shape):
            column_starts = starts[self.batch_slices(column)]
            self.changed[column] = first = column_starts.min()
            if first == chunk_count:  # every sequence keeps its states
                continue
            frozen = column_starts >= chunk_count
            summaries = [iterate.summary[(k, *column)] for k in range(first, chunk_count)]
            carries = chunk_carries(summaries, None, "sequential")
            for k, carry in zip(range(first, chunk_count), carries, strict=True):
                block = (k, *column)
                with at_home(self.homes[block]):
                    into.h[block] = correct(iterate.h[block], iterate.linearisation[block],
                                            carry, frozen if frozen.any() else None)  # fmt: skip

    def batch_slices(self, column: tuple) -> tuple:
        """The slices of the batch axes that the batch chunk ``column`` holds."""
        return tuple(
            slice(bounds[index], bounds[index + 1])
            for bounds, index in zip(self.bounds, column, strict=True)
        )

    def blocks_from(self, firsts: np.ndarray):
        """The chunks from ``firsts[column]`` on of each batch chunk, in time order."""
        for column in np.ndindex(firsts.shape):
            for k in range(firsts[column], self.problem.shape[0]):
                yield (k, *column)

    def array(self, h: np.ndarray, chunks: tuple, dtype) -> "da.Array":
        """The states ``h`` as a Dask array with ``chunks``: the persisted blocks, and an empty
        block for each empty chunk (which the iteration leaves out)."""
        blocks = np.empty(tuple(map(len, chunks)), object)
        blocks[np.ix_(*(np.flatnonzero(sizes) for sizes in chunks[:-1]), [0])] = h[..., None]
        empty = dask.delayed(np.empty, pure=True)
        for index in np.ndindex(blocks.shape):
            shape = tuple(sizes[i] for sizes, i in zip(chunks, index, strict=True))
            if 0 in shape[:-1]:
                blocks[index] = empty(shape, dtype)
        return array_of_blocks("nonlinear_recurrence", blocks, chunks, dtype)


def chunk_homes(blocks: np.ndarray) -> np.ndarray:
    """Per chunk, the ``distributed`` worker that holds its persisted block (None without a
    cluster, or if it was just lost): its later tasks run there, so that its data stays."""
    homes = np.full(blocks.shape, None, object)
    client = distributed_client()
    if client is not None:
        from distributed import wait

        futures = client.futures_of(list(blocks.flat))
        wait(futures)
        holders = client.who_has(futures)
        for block in np.ndindex(blocks.shape):
            homes[block] = next(iter(holders[blocks[block].key]), None)
    return homes


def at_home(home):
    """A context in which the tasks made run on the worker ``home`` (None: anywhere).

    Else the scheduler would balance the iterations' waves of tasks by moving chunks between
    workers. The restriction is loose, a preference: once ``home`` is lost, its tasks (those
    recomputing its lost chunks included) run elsewhere instead of waiting for it forever
    (and work stealing may move one where it judges that pays)."""
    if home is None:
        return contextlib.nullcontext()
    return dask.annotate(workers=[home], allow_other_workers=True)


def persist_blocks(*arrays: np.ndarray) -> None:
    """Persist the Delayed in the object ``arrays`` in one call, in place."""
    flat = [array.reshape(-1) for array in arrays]
    persisted = iter(dask.persist(*(value for values in flat for value in values)))
    for values in flat:
        values[:] = [next(persisted) for _ in values]


def plan_of(cell: Cell, problem) -> JacobianPlan:
    """How the cell is differentiated, chosen at the first input as the in-memory solver does."""
    return cell.plan(problem.size, problem.dtype, problem.inputs, problem.step_params)


def first_guess(cell: Cell, plan: JacobianPlan, problem) -> np.ndarray:
    """A chunk's initial iterate ``f(h0, x[t])``, ``(T, *batch, n)`` (``h0``: the sequence's
    initial states)."""
    backend = cpu_nonlinear.Backend(
        cell, plan, problem.inputs, problem.step_params, problem.h0, False
    )
    h = backend.states()
    backend.guess(h)
    return h.reshape(problem.length, *problem.batch, problem.size)


def linearise_chunk(cell: Cell, plan: JacobianPlan, quasi: bool, problem, h, previous):
    """Newton's linearisation of a chunk at its states ``h``, after the ``previous`` chunk's
    last states (None: the first chunk, after ``h0``): the correction's coefficients and
    right-hand side ``f - h`` in the layout of :func:`solve_chunk`, the chunk's summary and the
    largest scaled residual of each sequence."""
    h0 = problem.h0 if previous is None else previous.reshape(problem.h0.shape)
    backend = cpu_nonlinear.Backend(cell, plan, problem.inputs, problem.step_params, h0, quasi)
    iterate = backend.iterate(h.reshape(problem.length, *problem.h0.shape))
    backend.evaluate(iterate, 0)
    length, width = problem.length, iterate.jacobians.shape[-1]
    matrices = width > problem.size
    if matrices:
        period = plan.period
        coefficients = iterate.jacobians.reshape(length, -1, period, period)
        rhs = iterate.rhs.reshape(length, -1, period)
    else:
        coefficients = iterate.jacobians.reshape(length, -1)
        rhs = iterate.rhs.reshape(length, -1)
    worst = np.max(iterate.residual, axis=0).reshape(problem.batch)
    return (coefficients, rhs), chunk_summary(coefficients, rhs, False, matrices), worst


def corrected_states(h, linearisation, carry, frozen):
    """A chunk's next iterate ``h + delta``: the Newton correction ``delta`` from ``carry``,
    its value before the chunk (None: zero), but for the sequences marked in ``frozen``
    (booleans over the chunk's batch; None: none), which keep their states."""
    coefficients, rhs = linearisation
    matrices = coefficients.ndim > rhs.ndim
    corrected = h + solve_chunk(coefficients, rhs, carry, False, matrices).reshape(h.shape)
    if frozen is not None:
        corrected[:, frozen] = h[:, frozen]
    return corrected


def convergence_error(method: str, info, worst: np.ndarray, tol: float, finite: bool):
    """The :class:`~scanlab.ConvergenceError` of the ``"newton"`` strategy, ``worst`` the
    largest scaled residual of each sequence."""
    unconverged = ~(worst <= tol)
    info.converged = False
    info.batch_converged = np.asarray(~unconverged)
    residual = float(np.max(worst[unconverged]))
    reason = (
        f"did not converge in {info.iterations} iterations"
        if finite
        else f"met a non-finite residual at iteration {info.iterations} (an iterate that "
        "overflowed, or NaN or Inf from the data)"
    )
    return nonlinear.ConvergenceError(
        f"Newton ({method}) over the chunks {reason} for {int(unconverged.sum())} of "
        f"{unconverged.size} sequences (residual {residual:.3g}, tol {tol:.3g}); "
        "strategy='carry' solves each chunk with the sequential loop"
        + (", or try a larger max_iter" if finite else ""),
        info,
        residual,
    )


def dtype_stand_in(value):
    """What :func:`result_dtype` may see of ``value`` without computing a Dask array."""
    if isinstance(value, da.Array):
        return np.empty(0, value.dtype)
    return value


def chunked_solve(a, b, h0, axis, reverse, method, matrices):
    """Both solvers: summaries per chunk, carries across chunks, then each chunk solved and
    checked against the loop."""
    check_method(method, METHODS)
    operands = {"A" if matrices else "a": a, "b": b, "h0": h0}
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


__all__ = ["linear_recurrence", "linear_recurrence_matrix", "nonlinear_recurrence"]
