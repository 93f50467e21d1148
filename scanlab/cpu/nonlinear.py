"""CPU kernels of the nonlinear recurrence ``h[t] = f(h[t-1], x[t])`` (``scanlab.nonlinear``).

Layout seen by every kernel (prepared by ``scanlab.nonlinear``): ``x`` is C-contiguous
``(T, B, m)`` (the cell's inputs, after its input projections), ``h`` and ``out`` ``(T, B, n)``,
``h0`` ``(B, n)``; time first, ``B`` independent sequences. ``step`` and ``jacobian`` are the
cell's compiled functions, passed as arguments so that one kernel serves every cell (Numba
compiles it once per cell).

Jacobians are stored flat per step and sequence, ``(T, B, n * period)``: entry ``(i, c)`` is
``df_i / dh_j`` for the ``j = (i // period) * period + c`` of the block holding ``i``. With
``period`` 1 that is the diagonal, with ``k`` the ``(n // k, k, k)`` blocks and with ``n`` the dense
``(n, n)`` matrix, each in C order.
"""

import numba
import numpy as np
from numba import njit, prange

from scanlab.config import FASTMATH
from scanlab.cpu import linear as cpu_linear
from scanlab.cpu import linear_matrix as cpu_linear_matrix
from scanlab.cpu.linear import is_finite

#: Sentinel residuals: a step whose iterate is not finite where ``f`` is (Newton diverged), and
#: one where ``f`` itself is not finite (the data, or a diverged previous step).
DIVERGED = np.inf
NOT_FINITE = np.nan


@njit(fastmath=FASTMATH)
def user_jacobian(step, jacobian, h_prev, x_t, params, period, spacing, matrix, work, complex_work):
    """The cell's own Jacobian, written into ``matrix`` (the cell's structured shape)."""
    jacobian(h_prev, x_t, params, matrix)


@njit(fastmath=FASTMATH)
def complex_step_jacobian(
    step, jacobian, h_prev, x_t, params, period, spacing, matrix, work, complex_work
):
    """The Jacobian by the complex step, ``Im f(h + i s e_j) / s``: exact to rounding.

    All the ``j`` with the same ``j % period`` are perturbed at once (one evaluation per colour),
    which the structure allows because no output depends on two of them.
    """
    n = h_prev.shape[0]
    flat = matrix.reshape(n * period)
    perturbed = complex_work[:n]
    values = complex_work[n:]
    for colour in range(period):
        for j in range(n):
            perturbed[j] = h_prev[j]
            if j % period == colour:
                perturbed[j] += 1j * spacing
        step(perturbed, x_t, params, values)
        for i in range(n):
            flat[i * period + colour] = values[i].imag / spacing


@njit(fastmath=FASTMATH)
def central_difference_jacobian(
    step, jacobian, h_prev, x_t, params, period, spacing, matrix, work, complex_work
):
    """The Jacobian by central differences with relative spacing ``spacing`` (one colour at a
    time, as :func:`complex_step_jacobian`): about ``eps ** (2/3)`` relative error."""
    n = h_prev.shape[0]
    flat = matrix.reshape(n * period)
    plus, minus, f_plus, f_minus = work[:n], work[n : 2 * n], work[2 * n : 3 * n], work[3 * n :]
    for colour in range(period):
        for j in range(n):
            plus[j] = h_prev[j]
            minus[j] = h_prev[j]
            if j % period == colour:
                offset = spacing * (1 + abs(h_prev[j]))
                plus[j] += offset
                minus[j] -= offset
        step(plus, x_t, params, f_plus)
        step(minus, x_t, params, f_minus)
        for i in range(n):
            j = (i // period) * period + colour
            flat[i * period + colour] = (f_plus[i] - f_minus[i]) / (plus[j] - minus[j])


@njit(inline="always")
def residual_of_step(f_t, h_t, rhs_t):
    """``rhs_t = f_t - h_t`` (zero where they agree, Inf and NaN included), and its scaled size.

    Returns ``max_i |f_i - h_i| / (1 + |f_i|)``, or ``NOT_FINITE`` where some ``f_i`` is not
    finite and ``h_i`` differs, or ``DIVERGED`` where ``f`` is finite and ``h_t`` is not.
    """
    worst = f_t[0].real * 0
    for i in range(f_t.shape[0]):
        value, iterate = f_t[i], h_t[i]
        if value == iterate or (value != value and iterate != iterate):
            rhs_t[i] = 0
            continue
        difference = value - iterate
        rhs_t[i] = difference
        if not is_finite(value):
            worst = NOT_FINITE
        elif not is_finite(difference):
            if worst == worst:
                worst = DIVERGED
        elif worst == worst:
            worst = max(worst, abs(difference) / (1 + abs(value)))
    return worst


@njit
def no_jacobian(h_prev, x_t, params, jacobian_out):
    """Stands in for the Jacobian of a cell that has none of its own (never called)."""


#: The routines that fill a Jacobian, by the method of ``scanlab.cells.JacobianPlan``.
JACOBIAN_KERNELS = {
    "analytic": user_jacobian,
    "complex-step": complex_step_jacobian,
    "central-differences": central_difference_jacobian,
}


@njit(parallel=True, fastmath=FASTMATH)
def evaluate(
    step, jacobian, fill_jacobian, x, params, h, h0, first, tasks,
    period, spacing, matrix_like, complex_like, quasi, rhs, jacobians, residual,
):  # fmt: skip
    """Evaluate the cell at every step from ``first`` on, in parallel over steps and sequences.

    Writes ``rhs[t] = f(h[t-1], x[t]) - h[t]``, the scaled ``residual[t]`` of each sequence (see
    :func:`residual_of_step`) and, unless ``jacobians`` is empty, the Jacobian
    ``df/dh (h[t-1], x[t])`` from ``fill_jacobian`` in the cell's structure (``matrix_like``
    has its shape), or only its diagonal if ``quasi``.
    """
    length, sequences, n = h.shape
    items = (length - first) * sequences
    with_jacobian = jacobians.size > 0
    for task in prange(tasks):
        f_t = np.empty(n, h.dtype)
        matrix = np.empty_like(matrix_like)
        flat = matrix.reshape(n * period)
        work = np.empty(4 * n, h.dtype)
        complex_work = np.empty(2 * n, complex_like.dtype)
        for item in range(task * items // tasks, (task + 1) * items // tasks):
            t = first + item // sequences
            sequence = item % sequences
            h_prev = h[t - 1, sequence] if t > 0 else h0[sequence]
            x_t = x[t, sequence]
            step(h_prev, x_t, params, f_t)
            residual[t, sequence] = residual_of_step(f_t, h[t, sequence], rhs[t, sequence])
            if with_jacobian:
                fill_jacobian(
                    step, jacobian, h_prev, x_t, params, period, spacing, matrix, work,
                    complex_work,
                )  # fmt: skip
                jacobian_t = jacobians[t, sequence]
                if quasi:
                    for i in range(n):
                        jacobian_t[i] = flat[i * period + i % period]
                else:
                    jacobian_t[:] = flat


@njit(parallel=True, fastmath=FASTMATH)
def run_sequential(step, x, params, h0, out, starts):
    """The plain loop ``out[t] = f(out[t-1], x[t])`` from step ``starts[s]`` of each sequence
    ``s`` on (``out[starts[s] - 1]`` already holds its state), in parallel over sequences."""
    length, sequences, n = out.shape
    for sequence in prange(sequences):
        for t in range(starts[sequence], length):
            h_prev = out[t - 1, sequence] if t > 0 else h0[sequence]
            step(h_prev, x[t, sequence], params, out[t, sequence])


def task_count(items: int) -> int:
    """Tasks for ``items`` independent evaluations: a few per thread, to balance the load."""
    return max(1, min(items, 4 * numba.get_num_threads()))


class Iterate:
    """A Newton iterate ``h`` with what :func:`evaluate` finds at it: ``rhs = f - h``, the
    Jacobians (diagonal only for ``quasi``) and the scaled residual of each step and sequence."""

    def __init__(self, h: np.ndarray, period: int, quasi: bool, with_jacobian: bool):
        length, sequences, n = h.shape
        self.h = h
        self.rhs = np.empty_like(h)
        width = n if quasi else n * period
        self.jacobians = np.empty((length, sequences, width if with_jacobian else 0), h.dtype)
        self.residual = np.empty((length, sequences), h.dtype)


class Backend:
    """The Newton solver's operations on the CPU, for one cell, its inputs and initial states.

    ``x`` is ``(T, B, m)``, ``h0`` ``(B, n)``, ``plan`` the cell's ``JacobianPlan`` (None for
    the sequential loop alone); the twin of ``scanlab.cuda.nonlinear.Backend``.
    """

    def __init__(self, cell, plan, x, params, h0, quasi: bool):
        self.step = cell.step
        self.jacobian = cell.jacobian if cell.jacobian is not None else no_jacobian
        self.plan, self.quasi = plan, quasi
        self.x, self.params, self.h0 = x, params, h0
        if plan is None:  # the sequential method differentiates nothing
            return
        self.fill_jacobian = JACOBIAN_KERNELS[plan.method]
        self.matrix_like = np.empty(plan.shape, h0.dtype)
        self.complex_like = np.empty(0, np.result_type(h0.dtype, np.complex64))

    def states(self) -> np.ndarray:
        """An uninitialised ``(T, B, n)`` array of states."""
        return np.empty((self.x.shape[0], *self.h0.shape), self.h0.dtype)

    def to_host(self, states: np.ndarray) -> np.ndarray:
        return states

    def load(self, states: np.ndarray, values: np.ndarray) -> None:
        """Copy the host array ``values`` into ``states``."""
        states[...] = values

    def iterate(self, h: np.ndarray, with_jacobian: bool = True) -> Iterate:
        return Iterate(h, self.plan.period, self.quasi, with_jacobian)

    def evaluate(self, iterate: Iterate, first: int) -> np.ndarray:
        """Evaluate the cell at ``iterate`` from step ``first`` on; the residual rows from there."""
        length, sequences, _ = iterate.h.shape
        evaluate(
            self.step, self.jacobian, self.fill_jacobian, self.x, self.params, iterate.h,
            self.h0, first, task_count((length - first) * sequences), self.plan.period,
            self.h0.dtype.type(self.plan.spacing), self.matrix_like, self.complex_like,
            self.quasi, iterate.rhs, iterate.jacobians, iterate.residual,
        )  # fmt: skip
        return iterate.residual[first:]

    def guess(self, h: np.ndarray) -> None:
        """``h[t] = f(h0, x[t])`` at every step: one parallel evaluation."""
        h[...] = self.h0
        start = self.iterate(h, with_jacobian=False)
        self.evaluate(start, 0)
        h += start.rhs

    def correct(self, iterate: Iterate, first: int, damping: float, frozen, into: Iterate):
        """``into.h = iterate.h + delta`` from step ``first`` on, where the Newton correction
        solves ``delta[t] = damping * J[t] delta[t-1] + rhs[t]`` (``delta[first-1] = 0``);
        sequences marked in ``frozen`` (a boolean ``(B,)``) keep their states."""
        rhs, jacobians = iterate.rhs[first:], iterate.jacobians[first:]
        if frozen.any():
            rhs[:, frozen] = 0
            jacobians[:, frozen] = 0
        if damping != 1:
            jacobians = jacobians * damping
        length, sequences, n = rhs.shape
        period = 1 if self.quasi else self.plan.period
        delta = np.empty_like(rhs)
        if period == 1:
            cpu_linear.solve(
                jacobians.reshape(length, -1), rhs.reshape(length, -1),
                np.zeros(sequences * n, rhs.dtype), delta.reshape(length, -1), False, "auto",
            )  # fmt: skip
        else:
            systems = sequences * n // period
            cpu_linear_matrix.solve(
                jacobians.reshape(length, systems, period, period),
                rhs.reshape(length, systems, period), np.zeros((systems, period), rhs.dtype),
                delta.reshape(length, systems, period), False, "auto",
            )  # fmt: skip
        if into is not iterate:
            into.h[:first] = iterate.h[:first]
        np.add(iterate.h[first:], delta, out=into.h[first:])

    def finish_sequentially(self, h: np.ndarray, starts: np.ndarray) -> None:
        """Run the plain loop on each sequence ``s`` from step ``starts[s]`` on."""
        run_sequential(self.step, self.x, self.params, self.h0, h, starts.astype(np.int64))
