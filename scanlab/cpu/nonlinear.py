"""CPU kernels of the nonlinear recurrence ``h[t] = f(h[t-1], x[t])`` (``scanlab.nonlinear``).

Layout seen by every kernel (prepared by ``scanlab.nonlinear``): ``x`` is C-contiguous
``(T, B, m)`` (the cell's inputs, after its input projections), ``h`` and ``out`` ``(T, B, n)``,
``h0`` ``(B, n)``; time first, ``B`` independent sequences. Jacobians are ``(T, B, width)``, flat
per step as ``scanlab._step_routines`` describes. The kernels are compiled per cell (they call
its step), once per cell, Jacobian method and dtype; :func:`kernels_for` keeps them.
"""

import types

import numba
import numpy as np
from numba import njit, prange

from scanlab._step_routines import differentiation, evaluation
from scanlab.config import FASTMATH
from scanlab.cpu import linear as cpu_linear
from scanlab.cpu import linear_matrix as cpu_linear_matrix


def build_kernels(step, jacobian, method):
    """The CPU kernels of a cell: ``evaluate`` (parallel over steps and sequences),
    ``run_sequential`` (parallel over sequences; ``run_sequence`` for one) and ``differentiate``
    (one step); ``method`` None for the loops only."""
    compile_routine = njit(fastmath=FASTMATH)

    def run_sequential(x, params, h0, out, starts):
        """The plain loop ``out[t] = f(out[t-1], x[t])`` from step ``starts[s]`` of each sequence
        ``s`` on (``out[starts[s] - 1]`` already holds its state)."""
        length, sequences, n = out.shape
        for sequence in prange(sequences):
            for t in range(starts[sequence], length):
                h_prev = out[t - 1, sequence] if t > 0 else h0[sequence]
                step(h_prev, x[t, sequence], params, out[t, sequence])

    # One sequence runs without a parallel region, whose start can cost more than a short loop.
    loops = types.SimpleNamespace(
        run_sequential=njit(parallel=True, fastmath=FASTMATH)(run_sequential),
        run_sequence=njit(fastmath=FASTMATH)(run_sequential),
    )
    if method is None:
        return loops
    differentiate = differentiation(step, jacobian, method, compile_routine)
    evaluate_at = evaluation(step, differentiate, compile_routine)

    @njit(parallel=True, fastmath=FASTMATH)
    def evaluate(
        x, params, h, h0, first, tasks, period, spacing, scratch_like, complex_like, in_place,
        structured, diagonal_only, rhs, jacobians, residual,
    ):  # fmt: skip
        """Evaluate the cell at every step from ``first`` on, in ``tasks`` parallel tasks: see
        ``evaluate_at``. ``in_place``: the cell's Jacobian writes into ``structured[t, s]`` (a
        structured view of ``jacobians``), else into per-task scratch like ``scratch_like``."""
        length, sequences, n = h.shape
        items = (length - first) * sequences
        for task in prange(tasks):
            scratch = np.empty_like(scratch_like)
            work = np.empty(4 * n, h.dtype)
            complex_work = np.empty(2 * n, complex_like.dtype)
            for item in range(task * items // tasks, (task + 1) * items // tasks):
                t = first + item // sequences
                sequence = item % sequences
                target = structured[t, sequence] if in_place else scratch
                evaluate_at(
                    t, sequence, x, params, h, h0, rhs, residual, period, spacing, target,
                    jacobians, diagonal_only, work, complex_work,
                )  # fmt: skip

    loops.evaluate, loops.differentiate = evaluate, differentiate
    return loops


#: The kernels built so far, by step, Jacobian and method: cells sharing their functions (every
#: instance of a built-in cell) share their kernels.
KERNELS = {}


def kernels_for(cell, method):
    """The CPU kernels of ``cell`` for a Jacobian ``method`` (None: the loops only), built once;
    every method shares the loops."""
    key = (cell.step, cell.jacobian, method)
    if key not in KERNELS:
        kernels = build_kernels(cell.step, cell.jacobian, method)
        if method is not None:
            loops = kernels_for(cell, None)
            kernels.run_sequential, kernels.run_sequence = loops.run_sequential, loops.run_sequence
        KERNELS[key] = kernels
    return KERNELS[key]


#: Relative spacing of the central differences of :func:`pullback_kernels`, in float64.
PULLBACK_SPACING = float(np.finfo(np.float64).eps ** (1 / 3))


def build_pullback_kernels(step):
    """The CPU kernels of a cell's pullback through its inputs and parameters: central
    differences in float64, parallel over steps and sequences (see :func:`pullback_kernels`)."""

    @njit(parallel=True, fastmath=FASTMATH)
    def input_gradients(x, params, h, h0, adjoint, colours, owners, tasks, dx):
        """``dx[t, s] = (df/dx)^T adjoint[t, s]`` at ``(h[t-1, s], x[t, s])``: the inputs of
        each colour (``colours[j]``) move together, and ``owners[c, i]`` is the input of colour
        ``c`` that output ``i`` depends on (-1: none)."""
        length, sequences, inputs = x.shape
        n = h.shape[2]
        items = length * sequences
        for task in prange(tasks):
            moved, spans = np.empty(inputs), np.empty(inputs)
            plus, minus = np.empty(n), np.empty(n)
            for item in range(task * items // tasks, (task + 1) * items // tasks):
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

    @njit(parallel=True, fastmath=FASTMATH)
    def parameter_difference(x, upper, lower, h, h0, adjoint, tasks, partial):
        """``partial[task] = sum (f(upper) - f(lower)) . adjoint`` over its share of steps and
        sequences, ``f`` with parameters ``upper`` and ``lower``."""
        length, sequences, _ = x.shape
        n = h.shape[2]
        items = length * sequences
        for task in prange(tasks):
            plus, minus = np.empty(n), np.empty(n)
            total = 0.0
            for item in range(task * items // tasks, (task + 1) * items // tasks):
                t, sequence = item // sequences, item % sequences
                h_prev = h[t - 1, sequence] if t > 0 else h0[sequence]
                step(h_prev, x[t, sequence], upper, plus)
                step(h_prev, x[t, sequence], lower, minus)
                for i in range(n):
                    total += (plus[i] - minus[i]) * adjoint[t, sequence, i]
            partial[task] = total

    return types.SimpleNamespace(
        input_gradients=input_gradients, parameter_difference=parameter_difference
    )


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


class Iterate:
    """A Newton iterate ``h`` with what ``evaluate`` finds at it: ``rhs = f - h``, the scaled
    residual of each step and sequence and the Jacobians (only their diagonals if
    ``diagonal_only``), flat and, as ``structured``, in the cell's shape ``plan.shape``."""

    def __init__(self, h, plan, diagonal_only: bool, with_jacobian: bool, empty=np.empty):
        length, sequences, n = h.shape
        self.h = h
        self.rhs = empty(h.shape, h.dtype)
        self.residual = empty((length, sequences), h.dtype)
        width = (n if diagonal_only else n * plan.period) if with_jacobian else 0
        self.jacobians = empty((length, sequences, width), h.dtype)
        self.in_place = with_jacobian and not diagonal_only
        self.structured = (
            self.jacobians.reshape(length, sequences, *plan.shape)
            if self.in_place
            else empty((1, 1, *plan.shape), h.dtype)
        )


class Backend:
    """The Newton solver's operations on the CPU, for one cell, its inputs and initial states.

    ``x`` is ``(T, B, m)``, ``h0`` ``(B, n)``, ``plan`` the cell's ``JacobianPlan`` (None for
    the sequential loop alone), ``quasi`` whether only the Jacobians' diagonals are used; the
    twin of ``scanlab.cuda.nonlinear.Backend``.
    """

    def __init__(self, cell, plan, x, params, h0, quasi: bool):
        self.plan, self.x, self.params, self.h0 = plan, x, params, h0
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

    def evaluate(self, iterate: Iterate, first: int) -> np.ndarray:
        """Evaluate the cell at ``iterate`` from step ``first`` on; the residual rows from there."""
        length, sequences, _ = iterate.h.shape
        self.kernels.evaluate(
            self.x, self.params, iterate.h, self.h0, first,
            task_count((length - first) * sequences), self.plan.period,
            self.h0.dtype.type(self.plan.spacing), self.scratch_like, self.complex_like,
            iterate.in_place, iterate.structured, self.diagonal_only, iterate.rhs,
            iterate.jacobians, iterate.residual,
        )  # fmt: skip
        return iterate.residual[first:]

    def guess(self, h: np.ndarray) -> None:
        """``h[t] = f(h0, x[t])`` at every step: one parallel evaluation."""
        h[...] = self.h0
        start = self.iterate(h, with_jacobian=False)
        self.evaluate(start, 0)
        h[...] = start.rhs

    def correct(self, iterate: Iterate, first: int, damping, frozen, into: Iterate):
        """``into.h = iterate.h + delta`` from step ``first`` on, where the Newton correction
        solves ``delta[t] = damping * J[t] delta[t-1] + rhs[t]`` (``delta[first-1] = 0``) with
        a factor per sequence in ``damping``; sequences marked in ``frozen`` (booleans) keep
        their states."""
        rhs, jacobians = iterate.rhs[first:], iterate.jacobians[first:]
        if frozen.any():
            rhs[:, frozen] = 0
            jacobians[:, frozen] = 0
        if (damping != 1).any():
            jacobians = jacobians * damping[:, None].astype(jacobians.dtype)
        delta = self.delta[first:]
        solve_correction(jacobians, rhs, delta, self.zeros, self.plan.period, self.diagonal_only)
        if into is not iterate:
            into.h[:first] = iterate.h[:first]
        np.add(iterate.h[first:], delta, out=into.h[first:])

    def keep(self, into: Iterate, source: Iterate, first: int, sequences) -> None:
        """Copy the steps from ``first`` on of the marked ``sequences`` from ``source`` into
        ``into`` (states, residuals and Jacobians)."""
        for name in ("h", "rhs", "jacobians", "residual"):
            getattr(into, name)[first:, sequences] = getattr(source, name)[first:, sequences]

    def finish_sequentially(self, h: np.ndarray, starts: np.ndarray) -> None:
        """Run the plain loop on each sequence ``s`` from step ``starts[s]`` on."""
        loop = self.kernels.run_sequence if h.shape[1] == 1 else self.kernels.run_sequential
        loop(self.x, self.params, self.h0, h, starts.astype(np.int64))

    def adjoint(self, iterate: Iterate, gradient: np.ndarray):
        """The adjoint ``lam[t] = gradient[t] + J[t+1]^T lam[t+1]`` of an evaluated iterate, and
        its first Jacobians ``J[0]`` (flat, ``(B, width)``), both on the host."""
        following = np.empty_like(iterate.jacobians)
        transpose_following(iterate.jacobians, self.plan.period, following)
        solve_correction(following, gradient, self.delta, self.zeros, self.plan.period, False,
                         reverse=True)  # fmt: skip
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


def solve_correction(
    jacobians, rhs, delta, zeros, period: int, diagonal_only: bool, solvers=None, reverse=False
):
    """``delta[t] = J[t] delta[t-1] + rhs[t]`` from ``zeros`` (``B * n`` of them), for flat
    Jacobians ``(T, B, width)``: elementwise for diagonals, else with ``(period, period)``
    blocks; ``reverse``: ``delta[t] = J[t] delta[t+1] + rhs[t]``. ``solvers`` are the
    elementwise and matrix solvers in kernel layout: the CPU's by default, the GPU's on device
    arrays."""
    elementwise, matrix = solvers or (cpu_linear.solve, cpu_linear_matrix.solve)
    length, sequences, n = rhs.shape
    if diagonal_only or period == 1:
        channels = sequences * n
        elementwise(
            jacobians.reshape(length, channels), rhs.reshape(length, channels), zeros,
            delta.reshape(length, channels), reverse, "auto",
        )  # fmt: skip
    else:
        systems = sequences * n // period
        matrix(
            jacobians.reshape(length, systems, period, period),
            rhs.reshape(length, systems, period), zeros.reshape(systems, period),
            delta.reshape(length, systems, period), reverse, "auto",
        )  # fmt: skip
