"""CPU kernels of the nonlinear recurrence ``h[t] = f(h[t-1], x[t])`` (``scanlab.nonlinear``).

Layout seen by every kernel (prepared by ``scanlab.nonlinear``): ``x`` is C-contiguous
``(T, B, m)`` (the cell's inputs, after its input projections), ``h`` and ``out`` ``(T, B, n)``,
``h0`` ``(B, n)``; time first, ``B`` independent sequences. Jacobians are ``(T, B, width)``, flat
per step as ``scanlab._step_routines`` describes. The kernels are compiled per cell (they call
its step), once per cell, Jacobian method and dtype; :func:`kernels_for` keeps them in the
process, ``scanlab._kernel_cache`` in Numba's on-disk cache for later processes.
"""

import types

import numba
import numpy as np

from scanlab import _kernel_cache as kernel_cache
from scanlab._arrays import read_only
from scanlab._iterates import Iterate, first_and_frozen, solve_correction
from scanlab._row_summary import RowSummary
from scanlab._step_routines import (
    ANALYTIC,
    FAILED,
    differentiation,
    evaluation,
    failed_steps,
    sequence_loop,
)
from scanlab.config import FASTMATH
from scanlab.cpu import atomics
from scanlab.cpu import linear as cpu_linear
from scanlab.cpu import linear_matrix as cpu_linear_matrix
from scanlab.cpu.row_summary import summarise_rows
from scanlab.cpu.threads import share_out


def build_kernels(step, jacobian, method, step_with_jacobian=None):
    """The CPU kernels of a cell: ``evaluate`` (parallel over steps and sequences) and
    ``run_sequential`` (parallel over sequences); ``method`` None for the loop only;
    ``step_with_jacobian`` a built-in cell's step that also writes its analytic Jacobian
    (see :func:`scanlab._step_routines.evaluation`). The parallel kernels are workers that
    take tasks from a counter (:func:`scanlab.cpu.threads.share_out`)."""
    compile_routine = kernel_cache.jit(fastmath=FASTMATH)
    compile_worker = kernel_cache.jit(fastmath=FASTMATH, nogil=True)
    run_from = sequence_loop(step, compile_routine)

    def run_sequences(next_sequence, x, params, h0, out, starts, stopped):
        """The plain loop ``out[t] = f(out[t-1], x[t])`` from step ``starts[s]`` of each sequence
        ``s`` taken from the counter (``out[starts[s] - 1]`` already holds its state); a
        sequence whose step raises stops there, and ``stopped[s]`` says where (it is left
        alone otherwise)."""
        position = np.empty(1, np.int64)
        sequence = atomics.fetch_add(next_sequence, 0, 1)
        while sequence < out.shape[1]:
            try:
                run_from(x, params, h0, out, sequence, starts[sequence], position)
            except Exception:  # noqa: BLE001 - the host runs the step again to raise it
                stopped[sequence] = position[0]
            sequence = atomics.fetch_add(next_sequence, 0, 1)

    run_sequences = compile_worker(run_sequences)

    def run_sequential(x, params, h0, out, starts, stopped):
        """``run_sequences`` over every sequence, in parallel."""
        share_out(run_sequences, out.shape[1], (x, params, h0, out, starts, stopped))

    loops = types.SimpleNamespace(run_sequential=run_sequential)
    if method is None:
        return loops
    # The routines of one step are inlined into the kernel's loop by Numba, not compiled on
    # their own: LLVM optimises each compiled function, then again inside every caller, so
    # each level of calls cost 0.3-0.5 s of a cell's first solve.
    inline_routine = kernel_cache.jit(fastmath=FASTMATH, inline="always")
    differentiate = differentiation(step, jacobian, method, inline_routine)
    evaluate_at = evaluation(step, differentiate, inline_routine, step_with_jacobian)

    def evaluate_tasks(
        next_task, x, params, h, h0, first, tasks, period, spacing, scratch_like, complex_like,
        in_place, structured, diagonal_only, rhs, jacobians, residual,
    ):  # fmt: skip
        """The tasks of ``evaluate`` taken from the counter, each a share of the items (a step
        of a sequence)."""
        length, sequences, n = h.shape
        items = (length - first) * sequences
        scratch = np.empty_like(scratch_like)
        work, complex_work = np.empty(4 * n, h.dtype), np.empty(2 * n, complex_like.dtype)
        task = atomics.fetch_add(next_task, 0, 1)
        while task < tasks:
            for item in range(task * items // tasks, (task + 1) * items // tasks):
                t = first + item // sequences
                sequence = item % sequences
                target = structured[t, sequence] if in_place else scratch
                evaluate_at(
                    t, sequence, x, params, h, h0, rhs, residual, period, spacing, target,
                    jacobians, diagonal_only, work, complex_work,
                )  # fmt: skip
            task = atomics.fetch_add(next_task, 0, 1)

    evaluate_tasks = compile_worker(evaluate_tasks)

    def evaluate(x, params, h, h0, first, tasks, *arguments):
        """Evaluate the cell at every step from ``first`` on (each step and sequence an item),
        in ``tasks`` parallel tasks: see ``evaluate_at``. ``arguments``: ``period, spacing,
        scratch_like, complex_like, in_place, structured, diagonal_only, rhs, jacobians,
        residual``; ``in_place``: the cell's Jacobian writes into ``structured[t, s]`` (a
        structured view of ``jacobians``), else into per-thread scratch like ``scratch_like``.

        A step that raises stops its thread there, its residual left ``FAILED`` (the others
        finish the tasks; those of a caller left alone stay undone): its exception is dropped
        here, and the host runs that step again to raise it with the cell named. (A ``try`` in
        the kernel would cost a quarter of its compile time.)"""
        try:
            share_out(evaluate_tasks, tasks, (x, params, h, h0, first, tasks, *arguments))
        except Exception:
            if not (arguments[-1][first:] == FAILED).any():
                raise

    loops.evaluate = evaluate
    return loops


#: The kernels built so far, by step, Jacobian and method: cells sharing their functions (every
#: instance of a built-in cell) share their kernels.
KERNELS = {}


def kernels_for(cell, method):
    """The CPU kernels of ``cell`` for a Jacobian ``method`` (None: the loops only), built once;
    every method shares the loops."""
    fused = cell.step_with_jacobian if method == ANALYTIC else None
    key = (cell.step, cell.jacobian, method, fused)
    if key not in KERNELS:
        kernels = build_kernels(cell.step, cell.jacobian, method, fused)
        if method is not None:
            kernels.run_sequential = kernels_for(cell, None).run_sequential
        KERNELS[key] = kernels
    return KERNELS[key]


#: Relative spacing of the central differences of :func:`pullback_kernels`, in float64.
PULLBACK_SPACING = float(np.finfo(np.float64).eps ** (1 / 3))


def build_pullback_kernels(step):
    """The CPU kernels of a cell's pullback through its inputs and parameters: central
    differences in float64, parallel over steps and sequences (see :func:`pullback_kernels`).

    Each kernel runs a routine over a range of items (a step of a sequence, ``t * B + s``) per
    task, ``input_gradients_between`` or ``parameter_difference_between``, and marks in
    ``failures[task]`` the item where the step raised (-1: none), which the host runs again
    with the same routine."""
    compile_routine = kernel_cache.jit(fastmath=FASTMATH)

    def input_gradients_between(begin, end, x, params, h, h0, adjoint, colours, owners, dx,
                                position):  # fmt: skip
        """``dx[t, s] = (df/dx)^T adjoint[t, s]`` at ``(h[t-1, s], x[t, s])`` for the items
        ``begin`` to ``end - 1``: the inputs of each colour (``colours[j]``) move together,
        and ``owners[c, i]`` is the input of colour ``c`` that output ``i`` depends on (-1:
        none); ``position[0]`` holds the item being computed."""
        sequences, inputs = x.shape[1], x.shape[2]
        n = h.shape[2]
        moved, spans = np.empty(inputs), np.empty(inputs)
        plus, minus = np.empty(n), np.empty(n)
        for item in range(begin, end):
            position[0] = item
            t, sequence = item // sequences, item % sequences
            h_prev = h[t - 1, sequence] if t > 0 else h0[sequence]
            x_t, dx_t, weights = x[t, sequence], dx[t, sequence], adjoint[t, sequence]
            dx_t[:] = 0.0
            for colour in range(owners.shape[0]):
                for j in range(inputs):
                    moved[j] = x_t[j]
                    if colours[j] == colour:
                        moved[j] += PULLBACK_SPACING * (1 + abs(x_t[j]))
                        spans[j] = moved[j]
                step(h_prev, moved, params, plus)
                for j in range(inputs):
                    if colours[j] == colour:
                        moved[j] = x_t[j] - PULLBACK_SPACING * (1 + abs(x_t[j]))
                        spans[j] -= moved[j]
                step(h_prev, moved, params, minus)
                for i in range(n):
                    j = owners[colour, i]
                    if j >= 0:
                        dx_t[j] += (plus[i] - minus[i]) * weights[i] / spans[j]

    def parameter_difference_between(begin, end, x, upper, lower, h, h0, adjoint, partial,
                                     task, position):  # fmt: skip
        """``partial[task] = sum (f(upper) - f(lower)) . adjoint[t, s]`` over the items
        ``begin`` to ``end - 1``, ``f`` with parameters ``upper`` and ``lower``;
        ``position[0]`` holds the item being computed."""
        sequences, n = x.shape[1], h.shape[2]
        plus, minus = np.empty(n), np.empty(n)
        total = 0.0
        for item in range(begin, end):
            position[0] = item
            t, sequence = item // sequences, item % sequences
            h_prev = h[t - 1, sequence] if t > 0 else h0[sequence]
            step(h_prev, x[t, sequence], upper, plus)
            step(h_prev, x[t, sequence], lower, minus)
            for i in range(n):
                total += (plus[i] - minus[i]) * adjoint[t, sequence, i]
        partial[task] = total

    input_gradients_between = compile_routine(input_gradients_between)
    parameter_difference_between = compile_routine(parameter_difference_between)

    compile_worker = kernel_cache.jit(fastmath=FASTMATH, nogil=True)

    def input_gradient_tasks(next_task, x, params, h, h0, adjoint, colours, owners, tasks, dx,
                             failures):  # fmt: skip
        """The tasks of ``input_gradients`` taken from the counter."""
        items = x.shape[0] * x.shape[1]
        position = np.empty(1, np.int64)
        task = atomics.fetch_add(next_task, 0, 1)
        while task < tasks:
            failures[task] = -1
            try:
                input_gradients_between(
                    task * items // tasks, (task + 1) * items // tasks, x, params, h, h0,
                    adjoint, colours, owners, dx, position,
                )  # fmt: skip
            except Exception:  # noqa: BLE001 - the host runs the step again to raise it
                failures[task] = position[0]
            task = atomics.fetch_add(next_task, 0, 1)

    def parameter_difference_tasks(next_task, x, upper, lower, h, h0, adjoint, tasks, partial,
                                   failures):  # fmt: skip
        """The tasks of ``parameter_difference`` taken from the counter."""
        items = x.shape[0] * x.shape[1]
        position = np.empty(1, np.int64)
        task = atomics.fetch_add(next_task, 0, 1)
        while task < tasks:
            failures[task] = -1
            try:
                parameter_difference_between(
                    task * items // tasks, (task + 1) * items // tasks, x, upper, lower, h, h0,
                    adjoint, partial, task, position,
                )  # fmt: skip
            except Exception:  # noqa: BLE001 - the host runs the step again to raise it
                failures[task] = position[0]
            task = atomics.fetch_add(next_task, 0, 1)

    input_gradient_tasks = compile_worker(input_gradient_tasks)
    parameter_difference_tasks = compile_worker(parameter_difference_tasks)

    def input_gradients(x, params, h, h0, adjoint, colours, owners, tasks, dx, failures):
        """``input_gradients_between`` over every step and sequence, in ``tasks`` parallel
        tasks."""
        arguments = (x, params, h, h0, adjoint, colours, owners, tasks, dx, failures)
        share_out(input_gradient_tasks, tasks, arguments)

    def parameter_difference(x, upper, lower, h, h0, adjoint, tasks, partial, failures):
        """``partial[task] = sum (f(upper) - f(lower)) . adjoint`` over its share of steps and
        sequences (see ``parameter_difference_between``)."""
        arguments = (x, upper, lower, h, h0, adjoint, tasks, partial, failures)
        share_out(parameter_difference_tasks, tasks, arguments)

    return types.SimpleNamespace(
        input_gradients=input_gradients, parameter_difference=parameter_difference,
        input_gradients_between=input_gradients_between,
        parameter_difference_between=parameter_difference_between,
    )  # fmt: skip


#: The pullback kernels built so far, by step.
PULLBACKS = {}


def pullback_kernels(cell):
    """The pullback kernels of ``cell``'s step, built once (they take float64 arrays)."""
    if cell.step not in PULLBACKS:
        PULLBACKS[cell.step] = build_pullback_kernels(cell.step)
    return PULLBACKS[cell.step]


def task_count(items: int) -> int:
    """Tasks for ``items`` independent evaluations: a few per thread, to balance the load."""
    return max(1, min(items, 4 * numba.get_num_threads()))


#: The elementwise and matrix solvers of Newton's corrections, in kernel layout.
SOLVERS = (cpu_linear.solve, cpu_linear_matrix.solve)


class Backend:
    """The Newton solver's operations on the CPU, for one cell, its inputs and initial states.

    ``x`` is ``(T, B, m)``, ``h0`` ``(B, n)``, ``plan`` the cell's ``JacobianPlan`` (None for
    the sequential loop alone), ``quasi`` whether only the Jacobians' diagonals are used; the
    twin of ``scanlab.cuda.nonlinear.Backend``, an ``InMemoryBackend`` of :mod:`scanlab._newton`.
    """

    def __init__(self, cell, plan, x, params, h0, quasi: bool):
        self.cell, self.plan, self.params = cell, plan, params
        self.x, self.h0 = read_only(x), read_only(h0)
        self.kernels = kernels_for(cell, None if plan is None else plan.method)
        if plan is None:
            return
        # For a diagonal cell, quasi-Newton is Newton.
        self.diagonal_only = quasi and plan.period > 1
        self.scratch_like = np.empty(plan.shape, h0.dtype)
        self.complex_like = np.empty(0, np.result_type(h0.dtype, np.complex64))
        # The Newton correction's buffer and its zero initial state, for every iteration.
        self.delta = self.states()
        self.zeros = np.zeros(h0.size, h0.dtype)

    def states(self) -> np.ndarray:
        """An uninitialised ``(T, B, n)`` array of states."""
        return np.empty((self.x.shape[0], *self.h0.shape), self.h0.dtype)

    def to_host(self, states: np.ndarray) -> np.ndarray:
        return states

    def load(self, states: np.ndarray, values: np.ndarray) -> None:
        """Copy the host array ``values`` into ``states``."""
        states[...] = values

    def copy(self, states: np.ndarray, source: np.ndarray) -> None:
        """Copy the states ``source`` into ``states``."""
        states[...] = source

    def iterate(self, h: np.ndarray, with_jacobian: bool = True) -> Iterate:
        return Iterate(h, self.plan, self.diagonal_only, with_jacobian)

    def evaluate(self, iterate: Iterate, first: int, tol: float = 0.0) -> RowSummary:
        """Evaluate the cell at ``iterate`` from step ``first`` on; the summary of its residual
        rows (``scanlab._newton.Backend.evaluate``)."""
        length, sequences, _ = iterate.h.shape
        self.kernels.evaluate(
            self.x, self.params, iterate.h, self.h0, first,
            task_count((length - first) * sequences), self.plan.period,
            self.h0.dtype.type(self.plan.spacing), self.scratch_like, self.complex_like,
            iterate.in_place, iterate.structured, self.diagonal_only, iterate.rhs,
            iterate.jacobians, iterate.residual,
        )  # fmt: skip
        rows = iterate.residual[first:]
        if (rows < 0).any():  # a step raised (see scanlab._step_routines.FAILED)
            plan = self.plan if iterate.jacobians.shape[2] else None
            failed = failed_steps(rows, first)
            self.cell.raise_again(self.failures(iterate.h, failed), self.params, plan)
        return summarise_rows(iterate.residual, first, tol)

    def summarise(self, iterate: Iterate, first: int, tol: float) -> RowSummary:
        return summarise_rows(iterate.residual, first, tol)

    def residual_rows(self, iterate: Iterate) -> np.ndarray:
        return iterate.residual

    def failures(self, states: np.ndarray, steps):
        """``(t, sequence, h_prev, x_t)`` of each step of ``steps`` (``(t, sequence)`` pairs)
        where the cell's step raised, ``h_prev`` from ``states`` (or ``h0``)."""
        for t, sequence in steps:
            h_prev = states[t - 1, sequence] if t else self.h0[sequence]
            yield t, sequence, h_prev, self.x[t, sequence]

    def guess(self, h: np.ndarray) -> None:
        """``h[t] = f(h0, x[t])`` at every step: one parallel evaluation."""
        h[...] = self.h0
        start = self.iterate(h, with_jacobian=False)
        self.evaluate(start, 0)
        h[...] = start.rhs

    def correct(self, iterate: Iterate, starts: np.ndarray, damping, into: Iterate):
        """``into.h = iterate.h + delta`` from step ``first = starts.min()`` on, where the Newton
        correction solves ``delta[t] = damping * J[t] delta[t-1] + rhs[t]`` (``delta[first-1] =
        0``) with a factor per sequence in ``damping``; sequences whose start is ``T`` keep their
        states (see ``scanlab._newton.Backend.correct``)."""
        first, frozen = first_and_frozen(starts, iterate.h.shape[0])
        rhs, jacobians = iterate.rhs[first:], iterate.jacobians[first:]
        if frozen.any():
            rhs[:, frozen] = 0
            jacobians[:, frozen] = 0
        if (damping != 1).any():
            jacobians = jacobians * damping[:, None].astype(jacobians.dtype)
        delta = self.delta[first:]
        solve_correction(jacobians, rhs, delta, self.zeros, self.plan.period, self.diagonal_only,
                         SOLVERS)  # fmt: skip
        if into is not iterate:
            into.h[:first] = iterate.h[:first]
            into.residual[:first] = iterate.residual[:first]
        np.add(iterate.h[first:], delta, out=into.h[first:])

    def keep(self, into: Iterate, source: Iterate, first: int, sequences) -> None:
        """Copy the steps from ``first`` on of the marked ``sequences`` from ``source`` into
        ``into`` (states, residuals and Jacobians)."""
        for name in ("h", "rhs", "jacobians", "residual"):
            getattr(into, name)[first:, sequences] = getattr(source, name)[first:, sequences]

    def finish_sequentially(self, h: np.ndarray, starts: np.ndarray) -> None:
        """Run the plain loop on each sequence ``s`` from step ``starts[s]`` on."""
        length = h.shape[0]
        stopped = np.full(h.shape[1], length)
        self.kernels.run_sequential(
            self.x, self.params, self.h0, h, starts.astype(np.int64), stopped
        )
        failed = np.flatnonzero(stopped < length)
        if failed.size:
            steps = zip(stopped[failed], failed, strict=True)
            self.cell.raise_again(self.failures(h, steps), self.params)

    def adjoint(self, iterate: Iterate, gradient: np.ndarray):
        """The adjoint ``lam[t] = gradient[t] + J[t+1]^T lam[t+1]`` of an evaluated iterate, and
        its first Jacobians ``J[0]`` (flat, ``(B, width)``), both on the host."""
        following = np.empty_like(iterate.jacobians)
        transpose_following(iterate.jacobians, self.plan.period, following)
        solve_correction(following, gradient, self.delta, self.zeros, self.plan.period, False,
                         SOLVERS, reverse=True)  # fmt: skip
        return self.delta, iterate.jacobians[0]


def transpose_following(jacobians, period: int, out) -> None:
    """``out[t] = J[t+1]^T`` for ``t < T - 1`` and ``out[T-1] = 0``, flat Jacobians with
    ``(period, period)`` blocks (the adjoint's coefficients)."""
    length, sequences, width = jacobians.shape
    blocks = (width // period**2, period, period)
    out[:-1].reshape(length - 1, sequences, *blocks)[...] = (
        jacobians[1:].reshape(length - 1, sequences, *blocks).swapaxes(-1, -2)
    )
    out[-1] = 0
