"""Vector-Jacobian products (the backward pass) of the recurrence solvers.

The backward pass of ``h[t] = a[t] * h[t-1] + b[t]`` is the same recurrence run the other way:
the adjoint ``lam[t] = g[t] + a[t+1] * lam[t+1]`` (with matrices, ``A[t+1]`` transposed), from
which every gradient is a product with the forward states. So it runs on the same kernels, on
either device, in parallel over time; GPU operands stay on the GPU (:mod:`scanlab.cuda.gradients`).
A nonlinear recurrence's backward pass is the same adjoint with the transposed Jacobians of its
cell at the solution (the implicit function theorem).
"""

import string
from dataclasses import dataclass, replace

import numpy as np

from scanlab._arrays import (
    check_initial_state,
    initial_state,
    normalize_axis,
    result_dtype,
    stand_in,
)
from scanlab._devices import (
    cuda_module,
    gpu_leaf,
    on_gpu,
    placed_like,
    resolve_device,
    to_device,
    to_host,
)
from scanlab.cells import Cell
from scanlab.cpu import nonlinear as cpu_nonlinear
from scanlab.linear import check_flag, linear_recurrence, linear_recurrence_matrix
from scanlab.nonlinear import Problem, checked_tolerance, laid_out

#: Default largest scaled residual of a forward result that :func:`nonlinear_recurrence_vjp`
#: accepts as a solution, by dtype (ten times the solver's default tolerance and more).
SOLUTION_TOLERANCES = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-8}


def linear_recurrence_vjp(a, h, g, h0=None, *, axis=0, reverse=False, device="auto"):
    r"""Gradients of a loss through ``h = linear_recurrence(a, b, h0)``, given ``g = dL/dh``.

    Parameters
    ----------
    a : array_like
        The coefficients of the forward call (any shape that broadcasts to ``h``'s).
    h : array_like
        The forward result.
    g : array_like
        The gradient of the loss with respect to ``h``, same shape.
    h0 : array_like, optional
        The forward call's initial state (zeros if None).
    axis, reverse : optional
        As in the forward call.
    device : {"auto", "cpu", "cuda"}, optional
        Where the adjoint recurrence runs, as for :func:`scanlab.linear_recurrence`. With GPU
        operands (anything with ``__cuda_array_interface__``) every step runs on the GPU and
        the three results are Numba device arrays.

    Returns
    -------
    da : ndarray
        ``dL/da``, in ``a``'s shape: summed over the axes ``a`` was broadcast along (a scalar
        ``a`` gets a 0-d array).
    db : ndarray
        ``dL/db``, in ``h``'s shape (sum it over any axes ``b`` was broadcast along): the adjoint
        ``lam[t] = g[t] + a[t+1] * lam[t+1]``.
    dh0 : ndarray
        ``dL/dh0``, in ``h0``'s shape (or ``h``'s without ``axis`` when ``h0`` is None).

    Notes
    -----
    ``da[t] = lam[t] * h[t-1]`` (``h0`` for ``t = 0``) and ``dh0 = a[0] * lam[0]``; with
    ``reverse=True`` time runs the other way. Complex inputs get the products of the complex
    derivatives, unconjugated (JAX's convention for holomorphic maps); for PyTorch's, conjugate
    ``g`` and the results.

    See Also
    --------
    scanlab.linear_recurrence : the forward solver.
    linear_recurrence_matrix_vjp : the same with matrices.

    Examples
    --------
    The loss ``L = sum(h)`` of an exponential moving average:

    >>> import numpy as np
    >>> import scanlab
    >>> b = np.array([1.0, 2.0, 3.0])
    >>> h = scanlab.linear_recurrence(0.5, b)
    >>> da, db, dh0 = scanlab.linear_recurrence_vjp(0.5, h, np.ones(3))
    >>> db
    array([1.75, 1.5 , 1.  ])
    >>> float(da), float(dh0)
    (4.0, 0.875)
    """
    return adjoint_gradients(a, h, g, h0, axis, reverse, device, matrices=False)


def linear_recurrence_matrix_vjp(A, h, g, h0=None, *, axis=0, reverse=False, device="auto"):
    r"""Gradients of a loss through ``h = linear_recurrence_matrix(A, b, h0)``, given ``g``.

    Parameters
    ----------
    A : array_like, shape (..., n, n)
        The matrices of the forward call.
    h : array_like, shape (..., n)
        The forward result.
    g : array_like
        ``dL/dh``, same shape as ``h``.
    h0 : array_like, optional
        The forward call's initial state (zeros if None).
    axis, reverse : optional
        As in the forward call.
    device : {"auto", "cpu", "cuda"}, optional
        Where the adjoint recurrence runs, as for :func:`scanlab.linear_recurrence_matrix`; GPU
        operands as in :func:`linear_recurrence_vjp`.

    Returns
    -------
    dA : ndarray
        ``dL/dA`` in ``A``'s shape (summed over the axes ``A`` was broadcast along: a constant
        matrix gets the sum over every step, without a ``(T, n, n)`` temporary).
    db : ndarray
        ``dL/db`` in ``h``'s shape: the adjoint ``lam[t] = g[t] + A[t+1]^T lam[t+1]``.
    dh0 : ndarray
        ``dL/dh0`` in ``h0``'s shape (or ``h``'s without ``axis`` when ``h0`` is None).

    Notes
    -----
    ``dA[t] = outer(lam[t], h[t-1])`` and ``dh0 = A[0]^T lam[0]``; the adjoint runs on
    ``linear_recurrence_matrix`` with the transposed matrices as a view. Complex inputs follow
    the convention of :func:`linear_recurrence_vjp`.

    See Also
    --------
    scanlab.linear_recurrence_matrix : the forward solver.

    Examples
    --------
    >>> import numpy as np
    >>> import scanlab
    >>> A = np.array([[0.0, 1.0], [0.0, 0.0]])
    >>> h = scanlab.linear_recurrence_matrix(A, np.ones((2, 2)))
    >>> dA, db, dh0 = scanlab.linear_recurrence_matrix_vjp(A, h, np.ones((2, 2)))
    >>> db
    array([[1., 2.],
           [1., 1.]])
    >>> dA
    array([[1., 1.],
           [1., 1.]])
    """
    return adjoint_gradients(A, h, g, h0, axis, reverse, device, matrices=True)


@dataclass(frozen=True)
class AdjointLayout:
    """The shapes of a linear VJP's operands, checked against each other.

    ``h`` has shape ``leading + state`` (``state`` is ``(n,)`` with matrices, else empty) with
    time at ``time_axis``; the coefficients broadcast to ``leading + state * 2``.
    """

    dtype: np.dtype
    time_axis: int
    leading: tuple
    state: tuple
    coefficient_shape: tuple
    h0_shape: tuple | None

    @classmethod
    def of(cls, a, h, g, h0, axis, matrices: bool) -> "AdjointLayout":
        """Check the operands (host or GPU arrays: only their shapes are read)."""
        dtype = result_dtype(**{"A" if matrices else "a": a}, h=h, g=g, h0=h0)
        a, h, g = stand_in(a), stand_in(h), stand_in(g)
        if h.shape != g.shape:
            raise ValueError(f"g must have h's shape {h.shape}, got {g.shape}")
        state = h.shape[-1:] if matrices else ()
        if matrices and (a.ndim < 2 or a.shape[-2:] != state * 2):
            raise ValueError(f"A must have shape (..., n, n) with n = h.shape[-1], got {a.shape}")
        if not h.ndim > len(state):
            raise ValueError(f"h has no time axis: shape {h.shape}")
        time_axis = normalize_axis(axis, h.ndim)
        if time_axis >= h.ndim - len(state):
            raise ValueError(f"axis={axis} is the state axis of h (shape {h.shape})")
        leading = h.shape[: h.ndim - len(state)]
        coefficient_leading = a.shape[: a.ndim - 2 * len(state)]
        try:
            if np.broadcast_shapes(coefficient_leading, leading) != leading:
                raise ValueError
        except ValueError:
            name = "A" if matrices else "a"
            raise ValueError(
                f"{name} with shape {a.shape} does not broadcast to the forward result's shape "
                f"{h.shape}"
            ) from None
        layout = cls(dtype, time_axis, leading, state, a.shape, None)
        if h0 is not None:
            h0_shape = stand_in(h0).shape
            check_initial_state(h0_shape, layout.rest_shape, h.shape, time_axis)
            layout = replace(layout, h0_shape=h0_shape)
        return layout

    @property
    def rest_shape(self) -> tuple:
        """``h``'s shape without the time axis: the shape of a state."""
        return self.leading[: self.time_axis] + self.leading[self.time_axis + 1 :] + self.state

    @property
    def aligned_shape(self) -> tuple:
        """The coefficients' shape with leading axes of length 1 up to ``h``'s."""
        missing = len(self.leading) + 2 * len(self.state) - len(self.coefficient_shape)
        return (1,) * missing + self.coefficient_shape


def adjoint_gradients(a, h, g, h0, axis, reverse, device, matrices: bool):
    """Both VJPs: the adjoint recurrence on the forward solvers, then the gradients."""
    device = resolve_device(device, a=a, h=h, g=g, h0=h0)
    reverse = check_flag("reverse", reverse)
    layout = AdjointLayout.of(a, h, g, h0, axis, matrices)
    solve = linear_recurrence_matrix if matrices else linear_recurrence
    if any(on_gpu(value) for value in (a, h, g, h0)):
        return cuda_module("gradients").adjoint_gradients(a, h, g, h0, layout, reverse, solve)
    dtype, time_axis, state = layout.dtype, layout.time_axis, layout.state
    a, h, g = (np.asarray(value, dtype) for value in (a, h, g))
    rest_shape = layout.rest_shape
    start_full = initial_state(h0, rest_shape, dtype, h.shape, time_axis).reshape(rest_shape)

    # Time first; the coefficients aligned to h's leading axes (a view, never materialised).
    aligned = a.reshape(layout.aligned_shape)
    coefficients = np.moveaxis(aligned, time_axis, 0)
    states = np.moveaxis(h, time_axis, 0)
    gradient = np.moveaxis(g, time_axis, 0)
    length = states.shape[0]
    adjoint = np.empty(states.shape, dtype)
    # The adjoint runs against the forward direction. It starts at the forward's last step, where
    # it is g itself; the remaining steps are one linear recurrence whose coefficient at each step
    # is the forward's coefficient one step later (``following``).
    last, remaining = (0, slice(1, None)) if reverse else (-1, slice(None, -1))
    following = slice(None, -1) if reverse else slice(1, None)
    if length:
        adjoint[last] = gradient[last]
        if length > 1:
            shifted = coefficients if coefficients.shape[0] == 1 else coefficients[following]
            solve(
                shifted.swapaxes(-1, -2) if matrices else shifted,
                gradient[remaining],
                gradient[last],
                reverse=not reverse,
                device=device,
                out=adjoint[remaining],
            )
    first = -1 if reverse else 0
    da = coefficient_gradient(
        adjoint, states, start_full, reverse, aligned.shape, time_axis, matrices
    )
    if length:
        first_coefficient = np.broadcast_to(coefficients[first], rest_shape + state)
        if matrices:
            dh0 = np.einsum("...ji,...j->...i", first_coefficient, adjoint[first])
        else:
            dh0 = first_coefficient * adjoint[first]
    else:
        dh0 = np.zeros(rest_shape, dtype)
    db = np.moveaxis(adjoint, 0, time_axis)
    return da.reshape(a.shape), db, reduce_to(dh0, rest_shape if h0 is None else np.shape(h0))


def coefficient_gradient(adjoint, states, start, reverse, aligned_shape, time_axis, matrices):
    """``sum lam[t] * h[t-1]`` (outer products with matrices; ``h0`` before the first step) over
    the axes the coefficients were broadcast along, in their aligned shape.

    The first step and the others are two ``einsum`` calls into one result: no shifted copy of
    ``h`` and, when the coefficients are constant in time, no temporary as long as the sequence.
    """
    first, following, remaining = (
        (-1, slice(None, -1), slice(1, None)) if reverse else (0, slice(1, None), slice(None, -1))
    )
    leading = adjoint.ndim - (1 if matrices else 0)
    letters = string.ascii_lowercase[:leading]
    # The coefficients' shape with time first, like adjoint's.
    shape = list(aligned_shape)
    shape.insert(0, shape.pop(time_axis))
    kept = "".join(letter for letter, size in zip(letters, shape, strict=False) if size != 1)
    state_letters = ("y", "z", "yz") if matrices else ("", "", "")

    def subscripts(inputs, output):
        left, right, out = state_letters
        return f"{inputs}{left},{inputs}{right}->{output}{out}"

    kept_shape = [size for size in shape[:leading] if size != 1] + shape[leading:]
    if not adjoint.shape[0]:
        return np.zeros(shape, adjoint.dtype)
    step = subscripts(letters[1:], kept.replace("a", ""))
    steps = subscripts(letters, kept)
    if kept.startswith("a"):
        result = np.empty(kept_shape, adjoint.dtype)
        np.einsum(step, adjoint[first], start, out=result[first, ...])
        np.einsum(steps, adjoint[following], states[remaining], out=result[following])
    else:
        result = np.einsum(step, adjoint[first], start)
        result += np.einsum(steps, adjoint[following], states[remaining])
    return np.moveaxis(result.reshape(shape), 0, time_axis)


def nonlinear_recurrence_vjp(cell, x, h0, h, g, *, params=None, tol=None, device="auto"):
    r"""Gradients of a loss through ``h = nonlinear_recurrence(cell, x, h0, params=params)``,
    given ``g = dL/dh``.

    At a solution, the implicit function theorem makes the backward pass one reverse linear
    recurrence with the transposed Jacobians, the adjoint
    ``lam[t] = g[t] + J[t+1]^T lam[t+1]`` with ``J[t] = df/dh (h[t-1], x[t])``, solved in
    parallel over time like the forward's Newton steps; then ``dx[t] = (df/dx)^T lam[t]``,
    ``dparams = sum_t (df/dparams)^T lam[t]`` and ``dh0 = J[0]^T lam[0]``.

    Parameters
    ----------
    cell : Cell
        The forward call's cell.
    x : array_like, shape (T, *batch, m)
        The forward call's inputs.
    h0 : array_like or None, shape (*batch, n)
        The forward call's initial states.
    h : array_like, shape (T, *batch, n)
        The forward result. It must solve the recurrence: see ``tol``.
    g : array_like
        ``dL/dh``, in ``h``'s shape.
    params : optional
        The forward call's ``params`` (GPU arrays among them read where they lie, as there).
    tol : float, optional
        The largest scaled residual ``|h[t] - f(h[t-1], x[t])| / (1 + |f|)`` accepted: a larger
        one raises ValueError, since gradients at a point that is not a solution are wrong.
        Default 1e-4 for float32 and 1e-8 for float64 (any result of the solver that converged
        or was finished sequentially passes).
    device : {"auto", "cpu", "cuda"}, optional
        Where the Jacobians are evaluated and the adjoint solved (``"auto"``: the GPU when an
        array is a GPU array, CuPy, PyTorch or Numba's, which are read where they lie). On the
        GPU, a built-in cell's gradients through its inputs and parameters are computed there
        too (only ``dparams`` and ``O(batch)`` values come to the host); a cell of your own is
        differentiated through its inputs and parameters on the host.

    Returns
    -------
    dx : ndarray
        ``dL/dx`` in ``x``'s shape (summed over the axes ``x`` was broadcast along); a Numba
        device array when an array given is a GPU array, as ``dh0``.
    dh0 : ndarray
        ``dL/dh0`` in ``h0``'s shape (``(*batch, n)`` when ``h0`` is None).
    dparams
        ``dL/dparams``: for a built-in cell a dict with its three parameters (``params`` or
        not); for a cell of your own, ``params``' structure with an array or float for each
        real floating array or scalar (alone or in tuples) and None for the others (and for
        ``params=None``). Host values, but a Numba device array for each parameter given as
        a GPU array.

    Raises
    ------
    ValueError
        ``h`` is not a solution (its residual exceeds ``tol``; NaN and Inf where the
        recurrence puts them are fine), or shapes that do not fit.
    TypeError
        ``cell`` not a Cell, complex inputs.

    Notes
    -----
    The Jacobians ``df/dh`` are the ones the forward solver uses (the cell's own, or automatic).
    The built-in cells have analytic derivatives with respect to their inputs and parameters; a
    cell of your own is differentiated with respect to ``x`` and ``params`` by central
    differences in float64 (relative error about 1e-10). Inputs that no output shares (found by
    probing the step, like its structure) are perturbed together: two evaluations of every step
    for a cell whose outputs each read their own inputs, ``2 m`` when every output reads every
    input. Each parameter value costs two more evaluations of every step: pass few parameter
    values this way, or fold them into the inputs. Memory: the Jacobians of every step, as for
    one Newton iteration.

    See Also
    --------
    scanlab.nonlinear_recurrence : the forward solver.

    Examples
    --------
    The gradient of ``L = sum(h[-1])`` through a small ParaGRU, against a finite difference:

    >>> import numpy as np
    >>> import scanlab
    >>> gru = scanlab.cells.ParaGRU(3, 2, seed=0)
    >>> x = np.random.default_rng(1).standard_normal((50, 2))
    >>> h = scanlab.nonlinear_recurrence(gru, x, None, method="newton")
    >>> g = np.zeros_like(h)
    >>> g[-1] = 1.0
    >>> dx, dh0, dparams = scanlab.nonlinear_recurrence_vjp(gru, x, None, h, g)
    >>> sorted(dparams)
    ['bias', 'input_weights', 'recurrent_weights']
    >>> moved = x.copy()
    >>> moved[10, 0] += 1e-6
    >>> h_moved = scanlab.nonlinear_recurrence(gru, moved, None, method="sequential")
    >>> bool(np.isclose((h_moved[-1] - h[-1]).sum() / 1e-6, dx[10, 0], rtol=1e-4))
    True
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be made by scanlab.cell or scanlab.cells, got {cell!r}")
    device = resolve_device(device, x=x, h0=h0, h=h, g=g, params=gpu_leaf(params))
    resident = any(on_gpu(value) for value in (x, h0, h, g, gpu_leaf(params)))
    if device == "cuda":
        cuda_module("nonlinear")  # a clear error without a usable GPU, before anything else
    dtype = result_dtype(x=x, h0=h0, h=h, g=g)
    problem = Problem.of(cell, x, h0, params, dtype)
    length, batch, size = problem.length, problem.batch, problem.size
    shape = (length, *batch, size)
    for name, value in (("h", h), ("g", g)):
        if stand_in(value).shape != shape:
            raise ValueError(
                f"{name} must have the forward result's shape (T, *batch, n) = {shape} for x "
                f"{stand_in(x).shape} and h0 {np.shape(stand_in(h0))}, got "
                f"{stand_in(value).shape}"
            )
    tol = checked_tolerance(SOLUTION_TOLERANCES[dtype] if tol is None else tol)
    sequences = problem.h0.shape[0]
    states = laid_out(h, shape, dtype).reshape(length, sequences, size)
    gradient = laid_out(g, shape, dtype).reshape(length, sequences, size)
    if length == 0 or sequences == 0:
        adjoint, dh0 = to_host(gradient), np.zeros((sequences, size), dtype)
    else:
        adjoint, dh0 = solve_adjoint(cell, problem, states, gradient, tol, device)
    m = stand_in(x).shape[-1]
    x_shape = (length, *batch, m)
    new_axes = len(batch) + 2 - stand_in(x).ndim
    if on_gpu(adjoint) and cell.pullback_on_gpus:
        # The inputs on the GPU, broadcast to (T, *batch, m) and laid out as the kernels read.
        x_rows = laid_out(x if on_gpu(x) else to_device(np.asarray(x)), x_shape, dtype, new_axes)
        dx, dparams = cell.pullback(
            x_rows, problem.inputs, params, problem.step_params, states, problem.h0, adjoint
        )
    else:
        # The inputs broadcast as a view: only a built-in cell's pullback reads them (the
        # others differentiate the prepared inputs).
        x = to_host(x)
        x_batch = np.broadcast_to(problem.align_batch(x.astype(dtype, copy=False)), x_shape)
        dx, dparams = cell.pullback(
            x_batch, to_host(problem.inputs), params, problem.host_params, to_host(states),
            to_host(problem.h0), to_host(adjoint),
        )  # fmt: skip
    dx = dx.reshape(x_shape)
    x_given = stand_in(x).shape
    if x_given != x_shape:
        # x was broadcast along batch axes (its own aligned with the batch shape's last ones):
        # sum over them, where dx lies.
        aligned = (length, *(1,) * new_axes, *x_given[1:])
        if on_gpu(dx):
            dx = cuda_module("gradients").summed_to(dx, aligned)
        else:
            dx = reduce_to(dx, aligned)
        dx = dx.reshape(x_given)
    h0_shape = (*batch, size) if h0 is None else stand_in(h0).shape
    dh0 = reduce_to(dh0.reshape(*batch, size), h0_shape)
    dparams = placed_like(dparams, params)
    if resident:
        return (dx if on_gpu(dx) else to_device(dx)), to_device(dh0), dparams
    return to_host(dx), dh0, dparams


def solve_adjoint(cell, problem, states, gradient, tol, device):
    """The adjoint ``(T, B, n)`` (a device array when solved on the GPU) and ``dh0`` ``(B, n)``
    (on the host) at the solution ``states``, checked."""
    length, sequences, size = states.shape
    start = to_host(problem.h0[:1])[0]
    plan = cell.plan(size, problem.dtype, problem.probe_inputs(), problem.host_params, start)
    backend_module = cpu_nonlinear if device == "cpu" else cuda_module("nonlinear")
    backend = backend_module.Backend(
        cell, plan, problem.inputs, problem.step_params, problem.h0, False
    )
    on_device = backend.states()
    backend.load(on_device, states)
    iterate = backend.iterate(on_device)
    if (backend.evaluate(iterate, 0, tol).first_bad < length).any():
        residual = np.asarray(backend.residual_rows(iterate))
        failing = ~(residual <= tol)
        t, sequence = np.unravel_index(np.argmax(failing), failing.shape)
        raise ValueError(
            f"h does not solve the recurrence: its scaled residual |h[t] - f(h[t-1], x[t])| / "
            f"(1 + |f|) is {residual[t, sequence]:.3g} at step {t} of sequence {sequence} "
            f"(tol {tol:.3g}; {int(failing.sum())} steps exceed it), so its gradients would be "
            "wrong; pass the result of a converged nonlinear_recurrence (or a larger tol)"
        )
    adjoint, first_jacobians = backend.adjoint(iterate, gradient)
    period = plan.period
    blocks = first_jacobians.reshape(sequences, size // period, period, period)
    first = to_host(adjoint[0]).reshape(sequences, -1, period)
    dh0 = np.einsum("sbij,sbi->sbj", blocks, first)
    return adjoint, dh0.reshape(sequences, size)


def reduce_to(values, shape):
    """``values`` summed over the axes along which an array of ``shape`` was broadcast to them."""
    extra = values.ndim - len(shape)
    values = values.sum(axis=tuple(range(extra))) if extra else values
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and values.shape[i] != 1)
    return values.sum(axis=axes, keepdims=True).reshape(shape) if axes else values.reshape(shape)


__all__ = ["linear_recurrence_vjp", "linear_recurrence_matrix_vjp", "nonlinear_recurrence_vjp"]
