"""Newton's iteration over the whole sequence, for every backend: the loop that evaluates the
residuals at an iterate, judges each sequence's convergence and solves the correction of those
still iterating, and the :class:`Backend` protocols that say what a backend provides for it.

Three backends implement them: ``scanlab.cpu.nonlinear.Backend`` and
``scanlab.cuda.nonlinear.Backend`` (the in-memory solver of :func:`scanlab.nonlinear_recurrence`,
host and device arrays), and ``scanlab.dask.nonlinear.ChunkedBackend``, whose steps are the
chunks along time of a Dask array (:func:`scanlab.dask.nonlinear_recurrence` with
``strategy="newton"``). The driver sees only a summary of the residual rows ``(steps,
sequences)``: ``O(sequences)`` values per evaluation, reduced where the rows are.
"""

from typing import Protocol

import numpy as np

from scanlab._row_summary import RowSummary

#: Sequence states of the Newton loop.
ITERATING, CONVERGED, DIVERGED, NOT_FINITE, EXHAUSTED = range(5)
#: The damped method's factor on the Jacobian after a rejected step, and the factor below which
#: it drops the Jacobian (the Picard iteration ``h[t] = f(h[t-1])``, which always advances).
DAMPING_SHRINK, DAMPING_FLOOR = 0.25, 1e-3


class Backend(Protocol):
    """What Newton's iteration needs of a backend: states, their evaluation and correction.

    ``h`` is a backend's states (e.g. a ``(T, B, n)`` array), an *iterate* ``h`` with what
    :meth:`evaluate` finds at it (``scanlab._iterates.Iterate`` in memory). Its residual rows
    ``(steps, B)``, one row per step (per chunk along time for Dask), stay with the backend:
    the driver sees their :class:`RowSummary`, ``O(B)`` values per evaluation.
    """

    def states(self):
        """Uninitialised states."""

    def guess(self, h) -> None:
        """``h[t] = f(h0, x[t])`` at every step: the initial iterate."""

    def iterate(self, h, with_jacobian: bool = True):
        """The iterate of the states ``h``, not yet evaluated."""

    def evaluate(self, iterate, first: int, tol: float = 0.0) -> RowSummary:
        """Evaluate the cell (and its Jacobian) at ``iterate`` from step ``first`` on, where it
        changed since its last evaluation; the :class:`RowSummary` of its residual rows (those
        before ``first`` as last evaluated). Raises the cell's exception where its step
        raised."""

    def correct(self, iterate, starts: np.ndarray, damping: np.ndarray, into) -> None:
        """One Newton step: ``into.h = iterate.h + delta``, the correction ``delta`` solving
        ``delta[t] = damping * J[t] delta[t-1] + (f - h)[t]`` from the step ``starts[s]`` of
        each sequence ``s`` on (its first step not within ``tol``; the number of steps for a
        sequence that keeps its states), where ``delta`` is zero. ``damping`` holds a factor
        per sequence (ones but for the damped method); ``into`` may be ``iterate``, else it
        takes the steps (and residual rows) before ``starts.min()`` from ``iterate``."""


class DampedBackend(Backend, Protocol):
    """A :class:`Backend` that can also run the damped method, which keeps two iterates."""

    def summarise(self, iterate, first: int, tol: float) -> RowSummary:
        """The :class:`RowSummary` of ``iterate``'s residual rows as last evaluated."""

    def keep(self, into, source, first: int, sequences: np.ndarray) -> None:
        """Copy the steps from ``first`` on of the ``sequences`` marked (booleans) from the
        iterate ``source`` into ``into``: their states, residuals and Jacobians."""

    def copy(self, states, source) -> None:
        """Copy the states ``source`` into ``states``."""


class InMemoryBackend(DampedBackend, Protocol):
    """A :class:`DampedBackend` holding the whole problem, on the host or the GPU: the solver
    of :func:`scanlab.nonlinear_recurrence` and its gradient."""

    def load(self, states, values: np.ndarray) -> None:
        """Copy the host array ``values`` into ``states``."""

    def to_host(self, states) -> np.ndarray:
        """The states as a host array."""

    def residual_rows(self, iterate) -> np.ndarray:
        """The residual rows ``(T, B)`` of an evaluated iterate as a host array."""

    def finish_sequentially(self, h, starts: np.ndarray) -> None:
        """Run the plain loop on each sequence ``s`` from step ``starts[s]`` on."""

    def adjoint(self, iterate, gradient: np.ndarray) -> tuple:
        """The adjoint ``lam[t] = gradient[t] + J[t+1]^T lam[t+1]`` of an evaluated iterate and
        its first Jacobians, both on the host."""


def iterate_newton(
    backend: Backend, h, method: str, tol: float, limit: int, info, *, stop_at_failure=False
):
    """Newton's iterations on ``h`` in place, at most ``limit`` corrections; the
    :class:`Progress` of each sequence.

    ``method`` is ``"newton"``, ``"quasi"`` or ``"damped"`` (which needs a
    :class:`DampedBackend`); ``info`` (a ``scanlab.NonlinearInfo``) receives ``iterations``,
    ``residual_history`` and ``residual``. ``stop_at_failure``: stop as soon as a sequence
    diverges or meets a non-finite residual, for a caller that can only raise then; else the
    other sequences go on (the in-memory solver finishes the failed ones with the loop).
    """
    current = backend.iterate(h)
    damped = method == "damped"
    trial = backend.iterate(backend.states()) if damped else current
    first = 0
    summary = backend.evaluate(current, first, tol)
    progress = Progress(summary.length, summary.sequences)
    damping = np.ones(summary.sequences)
    while True:
        judged = progress.statuses == ITERATING
        first = progress.judge(summary, first)
        info.residual_history.append(float(np.max(progress.worst[judged], initial=0.0)))
        iterating = progress.statuses == ITERATING
        failed = (progress.statuses == DIVERGED) | (progress.statuses == NOT_FINITE)
        if not iterating.any() or info.iterations >= limit or (stop_at_failure and failed.any()):
            break
        backend.correct(current, np.where(iterating, progress.exact, progress.length), damping,
                        trial)  # fmt: skip
        info.iterations += 1
        trial_summary = backend.evaluate(trial, first, tol)
        if damped:
            # Per sequence: a step that lowers the merit is taken and its damping relaxed; any
            # other keeps the sequence where it was, with the Jacobian's factor quartered.
            before = backend.summarise(current, first, tol)
            accepted = (trial_summary.merit < before.merit) | (damping == 0) | ~iterating
            damping = np.where(accepted, np.minimum(1.0, np.maximum(2 * damping, DAMPING_FLOOR)),
                               damping * DAMPING_SHRINK)  # fmt: skip
            damping[damping < DAMPING_FLOOR] = 0.0
            if not accepted.all():
                backend.keep(trial, current, first, ~accepted)
                trial_summary = trial_summary.where(accepted, before)
        current, trial, summary = trial, current, trial_summary
    statuses = progress.statuses
    statuses[statuses == ITERATING] = EXHAUSTED
    info.residual = float(np.max(progress.worst[statuses == CONVERGED], initial=0.0))
    if current.h is not h:
        backend.copy(h, current.h)
    return progress


class Progress:
    """Per sequence: its status, the length of its exact prefix (every step before it within
    ``tol``) and its largest scaled residual, over ``length`` steps."""

    def __init__(self, length: int, sequences: int):
        self.length = length
        self.statuses = np.full(sequences, ITERATING)
        self.exact = np.zeros(sequences, np.int64)
        self.worst = np.zeros(sequences)

    def judge(self, summary: RowSummary, first: int) -> int:
        """Update the iterating sequences from the :class:`RowSummary` of their residual rows
        evaluated from step ``first`` on; the first step still to solve."""
        iterating = self.statuses == ITERATING
        has_bad = summary.first_bad < self.length
        status = np.full(summary.sequences, ITERATING)
        status[~has_bad] = CONVERGED
        status[has_bad & summary.bad_is_nan] = NOT_FINITE
        status[has_bad & ~summary.bad_is_nan & ~summary.finite] = DIVERGED
        self.statuses[iterating] = status[iterating]
        self.exact[iterating] = summary.first_bad[iterating]
        self.worst[iterating] = summary.worst[iterating]
        still = self.statuses == ITERATING
        return int(self.exact[still].min()) if still.any() else first
