"""A cell's work at one step, from one source for the CPU and the GPU.

:func:`differentiation` and :func:`evaluation` build, for a cell's ``step`` and ``jacobian``, the
routines that ``scanlab.cpu.nonlinear`` and ``scanlab.cuda.nonlinear`` call at every step and
sequence: ``jit`` is ``numba.njit`` for the CPU or ``cuda.jit(device=True)`` for the GPU, and
``step``/``jacobian`` are compiled for the same target.

Jacobians are stored flat per step and sequence: entry ``(i, c)`` at ``i * period + c`` is
``df_i / dh_j`` for the ``j = (i // period) * period + c`` of the block holding ``i``. With
``period`` 1 that is the diagonal, with ``k`` the ``(n // k, k, k)`` blocks and with ``n`` the
dense ``(n, n)`` matrix, each in C order. ``diagonal_only`` (quasi-Newton) stores only the
entries ``(i, i % period)``.

A cell's step may raise. A parallel kernel cannot say where (a CUDA thread just stops; a CPU
worker's exception names no step), so the routines leave marks instead: the residual ``FAILED``
at a step whose evaluation did not finish, and :func:`sequence_loop` the step where a sequence
stopped. The host then runs the step again there, alone, to raise its exception with the cell
and the step named (:meth:`scanlab.cells.Cell.raise_again`).
"""

import numpy as np

from scanlab._recurrence_numerics import is_finite

#: Sentinel residuals: a step whose iterate is not finite where ``f`` is (Newton diverged), and
#: one where ``f`` itself is not finite (the data, or a diverged previous step).
DIVERGED = np.inf
NOT_FINITE = np.nan
#: The residual of a step whose evaluation raised: written before the step is evaluated and
#: replaced by its residual (at least 0, or NaN or Inf) once it is.
FAILED = -1.0
#: How a Jacobian is computed: the cell's own function, or automatically.
ANALYTIC, COMPLEX_STEP, CENTRAL_DIFFERENCES = "analytic", "complex-step", "central-differences"


def residual_of_step(f_t, h_t, rhs_t):
    """``rhs_t = f_t - h_t`` (zero where they agree, Inf and NaN included; ``rhs_t`` may be
    ``f_t``), and its scaled size ``max_i |f_i - h_i| / (1 + |f_i|)``, or ``NOT_FINITE`` where
    some ``f_i`` is not finite and ``h_i`` differs, or ``DIVERGED`` where ``f`` is finite and
    ``h_t`` is not."""
    worst = type(h_t[0])(0)
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
            size = abs(difference) / (1 + abs(value))
            worst = size if size > worst else worst
    return worst


def differentiation(step, jacobian, method: str, jit):
    """``differentiate(h_prev, x_t, params, period, spacing, target, out, diagonal_only, work,
    complex_work)``: the Jacobian at one step into the flat row ``out`` (or its diagonal).

    ``ANALYTIC`` calls ``jacobian`` on ``target`` (the cell's structured shape: a view of ``out``,
    or scratch whose diagonal is then copied for ``diagonal_only``). ``COMPLEX_STEP`` takes
    ``Im f(h + i s e_j) / s`` (exact to rounding) and ``CENTRAL_DIFFERENCES`` central differences
    with relative spacing ``s``, both perturbing every ``j`` of one colour (``j % period``) at
    once, since no output depends on two of them; ``work`` holds ``4 n`` reals and
    ``complex_work`` ``2 n`` complex numbers.
    """
    if method == ANALYTIC:
        keep_diagonal = jit(diagonal_into)

        def differentiate(
            h_prev, x_t, params, period, spacing, target, out, diagonal_only, work, complex_work
        ):
            jacobian(h_prev, x_t, params, target)
            if diagonal_only:
                keep_diagonal(target, out, period)

    elif method == COMPLEX_STEP:

        def differentiate(
            h_prev, x_t, params, period, spacing, target, out, diagonal_only, work, complex_work
        ):
            n = h_prev.shape[0]
            perturbed = complex_work[:n]
            values = complex_work[n:]
            for colour in range(period):
                for j in range(n):
                    perturbed[j] = h_prev[j]
                    if j % period == colour:
                        perturbed[j] += 1j * spacing
                step(perturbed, x_t, params, values)
                for i in range(n):
                    derivative = values[i].imag / spacing
                    if not diagonal_only:
                        out[i * period + colour] = derivative
                    elif i % period == colour:
                        out[i] = derivative

    elif method == CENTRAL_DIFFERENCES:

        def differentiate(
            h_prev, x_t, params, period, spacing, target, out, diagonal_only, work, complex_work
        ):
            n = h_prev.shape[0]
            plus, minus = work[:n], work[n : 2 * n]
            f_plus, f_minus = work[2 * n : 3 * n], work[3 * n :]
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
                    derivative = (f_plus[i] - f_minus[i]) / (plus[j] - minus[j])
                    if not diagonal_only:
                        out[i * period + colour] = derivative
                    elif i % period == colour:
                        out[i] = derivative

    else:
        raise ValueError(f"unknown Jacobian method {method!r}")
    return jit(differentiate)


def diagonal_into(target, out, period):
    """The entries ``(i, i % period)`` of the structured Jacobian ``target`` into ``out``."""
    flat = target.reshape(out.shape[0] * period)
    for i in range(out.shape[0]):
        out[i] = flat[i * period + i % period]


def evaluation(step, differentiate, jit, step_with_jacobian=None):
    """``evaluate_at(t, sequence, x, params, h, h0, rhs, residual, period, spacing, target,
    jacobians, diagonal_only, work, complex_work)``: at step ``t`` of ``sequence``, write
    ``rhs[t] = f(h[t-1], x[t]) - h[t]`` and its scaled residual, and the Jacobian into the flat
    row ``jacobians[t, sequence]`` (see :func:`differentiation` for ``target``). Empty
    ``jacobians`` ask for ``f(h[t-1], x[t])`` itself in ``rhs[t]`` and a residual of 0 (the
    initial guess). The residual is ``FAILED`` until everything else is written.

    ``step_with_jacobian(h_prev, x_t, params, h_out, jacobian_out)``, a cell's step that also
    writes its analytic Jacobian into ``target`` (a built-in cell's: its gates computed once for
    both), replaces ``step`` and ``differentiate`` where the Jacobian is asked for."""
    measure = jit(residual_of_step)
    keep_diagonal = jit(diagonal_into)

    def evaluate_at(
        t, sequence, x, params, h, h0, rhs, residual, period, spacing, target, jacobians,
        diagonal_only, work, complex_work,
    ):  # fmt: skip
        residual[t, sequence] = FAILED
        h_prev = h[t - 1, sequence] if t > 0 else h0[sequence]
        x_t = x[t, sequence]
        f_t = rhs[t, sequence]
        step(h_prev, x_t, params, f_t)
        worst = type(residual[t, sequence])(0)
        if jacobians.shape[2] > 0:
            worst = measure(f_t, h[t, sequence], f_t)
            differentiate(
                h_prev, x_t, params, period, spacing, target, jacobians[t, sequence],
                diagonal_only, work, complex_work,
            )  # fmt: skip
        residual[t, sequence] = worst

    def evaluate_fused_at(
        t, sequence, x, params, h, h0, rhs, residual, period, spacing, target, jacobians,
        diagonal_only, work, complex_work,
    ):  # fmt: skip
        residual[t, sequence] = FAILED
        h_prev = h[t - 1, sequence] if t > 0 else h0[sequence]
        x_t = x[t, sequence]
        f_t = rhs[t, sequence]
        worst = type(residual[t, sequence])(0)
        if jacobians.shape[2] > 0:
            step_with_jacobian(h_prev, x_t, params, f_t, target)
            worst = measure(f_t, h[t, sequence], f_t)
            if diagonal_only:
                keep_diagonal(target, jacobians[t, sequence], period)
        else:
            step(h_prev, x_t, params, f_t)
        residual[t, sequence] = worst

    return jit(evaluate_at if step_with_jacobian is None else evaluate_fused_at)


def sequence_loop(step, jit):
    """``run_from(x, params, h0, out, sequence, start, position)``: the plain loop
    ``out[t] = f(out[t-1], x[t])`` of one sequence from step ``start`` on (``out[start - 1]``
    already holds its state); ``position[0]`` holds the step being run, so that it says where
    the loop stopped if a step raised."""

    def run_from(x, params, h0, out, sequence, start, position):
        for t in range(start, out.shape[0]):
            position[0] = t
            h_prev = out[t - 1, sequence] if t > 0 else h0[sequence]
            step(h_prev, x[t, sequence], params, out[t, sequence])

    return jit(run_from)


def failed_steps(residual_rows: np.ndarray, first: int) -> np.ndarray:
    """The ``(t, sequence)`` of each step whose evaluation raised, from the residual rows of the
    steps ``first`` on: those marked ``FAILED``, then any other negative residual (a GPU thread
    that stopped at a raise leaves its later steps unwritten)."""
    marked = residual_rows == FAILED
    failed = np.concatenate([np.argwhere(marked), np.argwhere((residual_rows < 0) & ~marked)])
    failed[:, 0] += first
    return failed
