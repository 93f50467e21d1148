"""The ``"newton"`` strategy of :func:`scanlab.dask.nonlinear_recurrence`: Newton's method over
the whole sequence (:func:`scanlab._newton.iterate_newton`) on the chunks of a Dask array,
persisted on the workers (:class:`ChunkedBackend`), each correction a chunked linear scan
(:mod:`scanlab.dask.linear`)."""

import contextlib
import sys

import dask
import dask.array as da
import numpy as np

from scanlab import nonlinear
from scanlab._newton import CONVERGED, DIVERGED, NOT_FINITE, iterate_newton
from scanlab._row_summary import RowSummary
from scanlab._step_checks import add_note
from scanlab.cells import Cell, JacobianPlan
from scanlab.cpu import nonlinear as cpu_nonlinear
from scanlab.cpu.row_summary import summarise_rows
from scanlab.dask.linear import array_of_blocks, chunk_carries, chunk_summary, solve_chunk

#: The Jacobians of the ``"newton"`` strategy, and the options it takes.
NEWTON_METHODS = ("auto", "newton", "quasi")
NEWTON_OPTIONS = ("tol", "max_iter", "full_output")


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
        # The chunks (for the notes of a step that raised), the batch axes' chunk boundaries,
        # and from which chunk each batch chunk changed.
        self.chunks = x.chunks
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
                h[block] = guess(
                    self.cell, self.plan, self.problem[block], chunk_origin(self.chunks, block)
                )

    def iterate(self, h: np.ndarray, with_jacobian: bool = True) -> ChunkedIterate:
        return ChunkedIterate(h)

    def evaluate(self, iterate: ChunkedIterate, first: int, tol: float = 0.0) -> RowSummary:
        """Linearise the chunks that changed since the last evaluation at their states and
        persist them; the summary (on the client) of the rows of ``table``: the largest scaled
        residual of each chunk and sequence."""
        last = dask.delayed(last_state)
        linearise = dask.delayed(linearise_chunk, nout=3)
        for block in self.blocks_from(self.changed):
            previous = iterate.last[(block[0] - 1, *block[1:])] if block[0] else None
            with at_home(self.homes[block]):
                iterate.last[block] = last(iterate.h[block])
                iterate.linearisation[block], iterate.summary[block], iterate.worst[block] = (
                    linearise(self.cell, self.plan, self.quasi, self.problem[block],
                              chunk_origin(self.chunks, block), iterate.h[block], previous)
                )  # fmt: skip
        persist_blocks(iterate.h, iterate.last, iterate.linearisation, iterate.summary,
                       iterate.worst)  # fmt: skip
        self.changed[...] = self.problem.shape[0]
        values = np.empty(iterate.worst.shape, object)
        values.ravel()[:] = dask.compute(*iterate.worst.flat)
        self.table = np.stack([np.block(row.tolist()).reshape(-1) for row in values])
        return summarise_rows(self.table, first, tol)

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


def chunk_origin(chunks: tuple, block: tuple) -> tuple:
    """The index of the first element of chunk ``block`` of an array with ``chunks``."""
    return tuple(int(sum(sizes[:index])) for sizes, index in zip(chunks, block, strict=False))


@contextlib.contextmanager
def noting_chunk(origin: tuple):
    """Note on an exception of the user's step, raised while a chunk whose first element is at
    ``origin`` (step, then batch indices) is solved, that its step and sequence count from
    there (the in-memory solver's note counts within the chunk)."""
    try:
        yield
    except Exception as error:
        step, *batch = origin
        add_note(
            error,
            f"in the Dask chunk from step {step} and batch index {tuple(batch)}: the step and "
            "sequence above count from there",
        )
        raise


def plan_of(cell: Cell, problem) -> JacobianPlan:
    """How the cell is differentiated, chosen at the first input as the in-memory solver does."""
    start = problem.h0.reshape(-1, problem.size)[0]
    return cell.plan(problem.size, problem.dtype, problem.inputs, problem.step_params, start)


def first_guess(cell: Cell, plan: JacobianPlan, problem, origin: tuple) -> np.ndarray:
    """A chunk's initial iterate ``f(h0, x[t])``, ``(T, *batch, n)`` (``h0``: the sequence's
    initial states; ``origin``: the chunk's first element, for :func:`noting_chunk`)."""
    backend = cpu_nonlinear.Backend(
        cell, plan, problem.inputs, problem.step_params, problem.h0, False
    )
    h = backend.states()
    with noting_chunk(origin):
        backend.guess(h)
    return h.reshape(problem.length, *problem.batch, problem.size)


def linearise_chunk(cell: Cell, plan: JacobianPlan, quasi: bool, problem, origin, h, previous):
    """Newton's linearisation of a chunk at its states ``h``, after the ``previous`` chunk's
    last states (None: the first chunk, after ``h0``): the correction's coefficients and
    right-hand side ``f - h`` in the layout of :func:`solve_chunk`, the chunk's summary and the
    largest scaled residual of each sequence (``origin``: as for :func:`first_guess`)."""
    h0 = problem.h0 if previous is None else previous.reshape(problem.h0.shape)
    backend = cpu_nonlinear.Backend(cell, plan, problem.inputs, problem.step_params, h0, quasi)
    iterate = backend.iterate(h.reshape(problem.length, *problem.h0.shape))
    with noting_chunk(origin):
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


def distributed_client():
    """The ``distributed`` client Dask computes on, or None (a local scheduler)."""
    distributed = sys.modules.get("distributed")  # a client needs it imported
    if distributed is None:
        return None
    client = getattr(dask.base.get_scheduler(), "__self__", None)
    return client if isinstance(client, distributed.Client) else None


def last_state(states, initial=None):
    """A chunk's last states, the next chunk's initial ones; ``initial``, the chunk's own, if it
    is empty."""
    return states[-1] if len(states) else initial
