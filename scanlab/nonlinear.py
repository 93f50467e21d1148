"""Nonlinear recurrences ``h[t] = f(h[t-1], x[t])`` solved by Newton's method over the whole
sequence, each iteration a parallel linear recurrence (DEER, ParaRNN, quasi-DEER)."""

import math
from dataclasses import dataclass, field

import numba
import numpy as np

from scanlab import config
from scanlab._arrays import numeric_array, result_dtype, stand_in
from scanlab._devices import cuda_module, gpu_leaf, host_leaves, on_gpu, resolve_device, to_host
from scanlab._newton import CONVERGED, DIVERGED, EXHAUSTED, iterate_newton
from scanlab.cells import Cell
from scanlab.cpu import nonlinear as cpu_nonlinear
from scanlab.linear import check_flag, check_method

METHODS = ("auto", "newton", "quasi", "damped", "sequential")
ON_FAIL = ("fallback", "raise", "accept")
#: Default tolerances on the scaled residual, by dtype: about 100 and 5000 ulps.
TOLERANCES = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
#: Default iteration limits: Newton converges in a handful, quasi-Newton needs more.
MAX_ITERATIONS = {"newton": 50, "damped": 50, "quasi": 200}


class ConvergenceError(RuntimeError):
    """Newton's method did not converge (``on_fail="raise"``).

    ``residual`` is the largest scaled residual of the sequences that did not converge (Inf
    where an iterate diverged) and ``info`` the :class:`NonlinearInfo` so far.
    """

    def __init__(self, message: str, info: "NonlinearInfo", residual: float):
        super().__init__(message)
        self.info = info
        self.residual = residual


@dataclass
class NonlinearInfo:
    """How :func:`nonlinear_recurrence` solved a problem (``full_output=True``).

    Attributes
    ----------
    method : str
        The method that ran: ``"newton"``, ``"quasi"``, ``"damped"`` or ``"sequential"``.
    iterations : int
        Linear solves (Newton steps, including damped steps that some sequences rejected).
    converged : bool
        Whether every sequence reached ``tol`` by iteration. False if any was finished by the
        sequential loop (see ``finished_sequentially``).
    residual : float
        The largest scaled residual ``|h[t] - f(h[t-1], x[t])| / (1 + |f|)`` of the states
        returned from Newton's iterates: those of the sequences that converged, and with
        ``on_fail="accept"`` of every sequence (Inf for one that diverged); 0 for
        ``"sequential"``.
    residual_history : list of float
        After each evaluation, the largest scaled residual of the sequences it evaluated.
    batch_converged : ndarray of bool, shape batch
        Per sequence: converged by iteration.
    finished_sequentially : ndarray of bool, shape batch
        Per sequence: its states from the first unconverged step on come from the sequential
        loop (Newton diverged, reached ``max_iter``, or met a non-finite ``f``; never with
        ``on_fail="accept"``).
    tol : float
        The tolerance used.
    """

    method: str
    iterations: int = 0
    converged: bool = True
    residual: float = 0.0
    residual_history: list = field(default_factory=list)
    batch_converged: np.ndarray = None
    finished_sequentially: np.ndarray = None
    tol: float = 0.0


def nonlinear_recurrence(
    cell: Cell,
    x,
    h0,
    *,
    params=None,
    method: str = "auto",
    tol: float | None = None,
    max_iter: int | None = None,
    device: str = "auto",
    guess=None,
    on_fail: str = "fallback",
    full_output: bool = False,
):
    r"""Solve the nonlinear recurrence ``h[t] = f(h[t-1], x[t])`` for every step in parallel.

    The ``T`` equations ``h[t] - f(h[t-1], x[t]) = 0`` are one system, and Newton's method on
    it is a linear recurrence per iteration, ``delta[t] = J[t] delta[t-1] + (f - h)[t]`` with
    ``J[t] = df/dh (h[t-1], x[t])`` (DEER, Lim et al. 2023; ParaRNN, Danieli et al. 2025),
    solved by :func:`scanlab.linear_recurrence` or :func:`scanlab.linear_recurrence_matrix`.

    Parameters
    ----------
    cell : Cell
        From :func:`scanlab.cell`, or a built-in cell of :mod:`scanlab.cells`.
    x : array_like, shape (T, *batch, m)
        The inputs of every step (time first). ``m`` may be 0.
    h0 : array_like or None, shape (*batch, n)
        The states before the first step; None for zeros (the cell must then know ``n``).
        ``batch`` is the broadcast of the batch shapes of ``x`` and ``h0``.
    params : optional
        Passed to the cell's step as they are (arrays may be GPU arrays: on the GPU the step
        reads them where they lie, the host checks the step on a copy); a built-in cell uses
        its own parameters when None, or a dict overriding some of them (NumPy or GPU arrays,
        read to the host with the other weights: small next to ``x``).
    method : {"auto", "newton", "quasi", "damped", "sequential"}, optional
        ``"newton"``: Newton with the Jacobian in the cell's structure. ``"quasi"``: only its
        diagonal (quasi-DEER, Gonzalez et al. 2024): an elementwise scan and ``O(T n)`` memory
        whatever the structure, for more iterations. ``"damped"``: Newton whose Jacobian is
        scaled by a factor in ``[0, 1]`` per sequence, adapted from its merit function (the sum
        of its squared residuals): a step that does not lower the merit is rejected (the
        sequence stays where it was) and the factor quartered; an accepted one doubles it back
        towards 1. The factor 0 is the Picard iteration ``h[t] = f(h[t-1])``, always accepted
        (it may overflow where the cell does; the loop then finishes the sequence). A Newton or
        quasi-Newton step, and an accepted damped one, keeps the prefix already solved exact and
        solves at least one more step.
        ``"sequential"``: the compiled loop. ``"auto"``: ``"sequential"`` on the CPU unless
        the batch leaves threads idle and there are at least
        ``config.cpu.nonlinear_auto_newton_min_threads`` (each Newton iteration costs several
        sequential passes: ``benchmarks/RESULTS.md``), ``"newton"`` otherwise; on the GPU,
        ``"newton"`` when ``T * n`` is at least ``config.cuda.nonlinear_auto_newton_min_work``
        (``"quasi"`` for dense cells of more than 4 states, whose matrix scan is slow there),
        else the loop.
    tol : float, optional
        Convergence when the scaled residual ``|h[t] - f(h[t-1], x[t])| / (1 + |f|)`` is at
        most ``tol`` at every step, per sequence. Default 1e-5 for float32, 1e-12 for float64.
    max_iter : int, optional
        Most linear solves: default 50 (200 for ``"quasi"``), at most ``T`` except for
        ``"damped"``.
    device : {"auto", "cpu", "cuda"}, optional
        Where to compute (``"auto"``: the GPU when ``x``, ``h0``, ``guess`` or an array of
        ``params`` is a GPU array, else the CPU). GPU arrays (anything with
        ``__cuda_array_interface__``: CuPy, PyTorch, Numba device arrays) are read where they
        lie (one layout pass on the GPU unless they are time-first, C-contiguous and of the
        result's dtype), a built-in cell's input projection included; the result then stays
        on the GPU.
    guess : array_like, optional
        The initial iterate, broadcastable to ``(T, *batch, n)`` (e.g. the previous solution
        while training). Default: ``f(h0, x[t])`` at every step (exact at the first), one
        parallel evaluation. Unused by ``"sequential"``.
    on_fail : {"fallback", "raise", "accept"}, optional
        What to do with sequences that do not converge within ``max_iter`` or diverge (an
        iterate that is not finite where ``f`` is): ``"fallback"`` finishes them with the
        sequential loop from their first unconverged step (``info.finished_sequentially``);
        ``"raise"`` raises :class:`ConvergenceError`. With either, a step whose ``f`` is not
        finite at an exact state (NaN or Inf from the data) is finished sequentially, so NaN
        and Inf land where the loop puts them. ``"accept"`` returns the last iterate as it is,
        never running the loop: ParaRNN's fixed number of Newton iterations for training is
        ``max_iter=3, on_fail="accept"``. Its states are then only as accurate as
        ``info.residual`` says (``info.converged`` False where a sequence did not reach
        ``tol``), and :func:`scanlab.nonlinear_recurrence_vjp` at them is the implicit
        gradient of the exact solution evaluated at the inexact states, not the gradient of
        the ``max_iter`` iterations themselves (which ParaRNN's code does not take either).
    full_output : bool, optional
        Also return a :class:`NonlinearInfo`.

    Returns
    -------
    h : ndarray, shape (T, *batch, n)
        A Numba device array when an input is a GPU array (``cupy.asarray(h)`` or
        ``torch.as_tensor(h, device="cuda")`` wrap it without a copy).
    info : NonlinearInfo
        Only with ``full_output=True``.

    Raises
    ------
    TypeError
        ``cell`` not a Cell, complex or non-numeric dtypes (states are float32 or float64),
        ``params`` the step cannot take or does not compile for (named, Numba's error chained).
    ValueError
        Shapes that do not fit, an unknown ``method``, ``device`` or ``on_fail``, a cell whose
        declared structure or Jacobian does not match its step, or whose step leaves an entry
        of ``h_out`` unwritten.
    ConvergenceError
        With ``on_fail="raise"``, a sequence that did not converge.
    Exception
        Whatever the cell's step (or Jacobian) raises, on every method and device, with a note
        of the step and sequence where (the kernels cannot raise it: scanlab runs the step
        again there, alone, on the host).

    Notes
    -----
    After ``k`` iterations the first ``k`` steps are exact, so the solver only evaluates and
    solves from the first step whose residual is above ``tol``, and stops each sequence as soon
    as all its steps are. Each iteration evaluates the cell and its Jacobian at every remaining
    step (in parallel) and runs one linear scan; a dense Jacobian needs ``T n^2`` memory and
    ``O(n^3)`` scan work per step, a diagonal one ``T n``. The dtype is the promotion of ``x``
    and ``h0`` (the built-in cells' parameters are cast to it).

    See Also
    --------
    scanlab.cell : make a cell from a step function.
    scanlab.cells : built-in cells (Elman, ParaGRU, ParaLSTM).

    Examples
    --------
    A forced, damped pendulum, explicit Euler, solved by Newton and by the loop:

    >>> import math
    >>> import numpy as np
    >>> import scanlab
    >>> def pendulum(h_prev, x_t, dt, h_out):
    ...     angle, speed = h_prev[0], h_prev[1]
    ...     h_out[0] = angle + dt * speed
    ...     h_out[1] = speed + dt * (x_t[0] - 0.1 * speed - math.sin(angle))
    >>> swing = scanlab.cell(pendulum)
    >>> force = np.sin(np.linspace(0.0, 20.0, 2000))[:, None]
    >>> h, info = scanlab.nonlinear_recurrence(swing, force, [0.5, 0.0], params=0.01,
    ...                                        method="newton", full_output=True)
    >>> loop = scanlab.nonlinear_recurrence(swing, force, [0.5, 0.0], params=0.01,
    ...                                     method="sequential")
    >>> info.converged, bool(np.allclose(h, loop, atol=1e-9))
    (True, True)
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be made by scanlab.cell or scanlab.cells, got {cell!r}")
    device = resolve_device(device, x=x, h0=h0, guess=guess, params=gpu_leaf(params))
    resident = any(on_gpu(value) for value in (x, h0, guess, gpu_leaf(params)))
    backend_module = cpu_nonlinear if device == "cpu" else cuda_module("nonlinear")
    method = check_method(method, METHODS)
    check_method(on_fail, ON_FAIL)
    full_output = check_flag("full_output", full_output)
    dtype = result_dtype(x=x, h0=h0)
    problem = Problem.of(cell, x, h0, params, dtype)
    length, batch, size = problem.length, problem.batch, problem.size
    inputs, step_params, h0_array = problem.inputs, problem.step_params, problem.h0
    sequences = h0_array.shape[0]
    if method == "auto":
        method = choose_method(device, cell, length, sequences, size)
    tol, limit = newton_settings(method, dtype, tol, max_iter, length)
    info = NonlinearInfo(method, tol=tol)
    shape = (length, *batch, size)
    initial = None if guess is None else initial_guess(guess, shape, dtype)
    if length == 0 or sequences == 0:
        info.batch_converged = np.ones(batch, bool)
        info.finished_sequentially = np.zeros(batch, bool)
        h = cuda_module("memory").zeros(shape, dtype) if resident else np.empty(shape, dtype)
        return (h, info) if full_output else h
    probes, start = problem.probe_inputs(), to_host(h0_array[:1])[0]
    cell.check_step(start, probes, problem.host_params)
    plan = None
    if method != "sequential":
        plan = cell.plan(size, dtype, probes, problem.host_params, visited=start)
    backend = backend_module.Backend(cell, plan, inputs, step_params, h0_array, method == "quasi")
    h = backend.states()
    if method == "sequential":
        backend.finish_sequentially(h, np.zeros(sequences, np.int64))
        statuses = np.full(sequences, CONVERGED)
        finishing = np.zeros(sequences, bool)
    else:
        if initial is None:
            backend.guess(h)
        else:
            backend.load(h, initial.reshape(length, sequences, size))
        progress = iterate_newton(backend, h, method, tol, limit, info)
        statuses, starts = progress.statuses, progress.exact
        unconverged = (statuses == DIVERGED) | (statuses == EXHAUSTED)
        if on_fail == "raise" and unconverged.any():
            info.converged = False
            info.batch_converged = (statuses == CONVERGED).reshape(batch)
            residual = float(progress.worst[unconverged].max())
            raise ConvergenceError(
                f"Newton ({method}) did not converge for {int(unconverged.sum())} of "
                f"{sequences} sequences in {info.iterations} iterations (residual "
                f"{residual:.3g}, tol {tol:.3g}); pass on_fail='fallback' to finish them "
                "sequentially, or try method='damped' or a larger max_iter",
                info,
                residual,
            )
        finishing = (statuses != CONVERGED) & (on_fail != "accept")
        if on_fail == "accept":
            info.residual = float(progress.worst.max())
        if finishing.any():
            backend.finish_sequentially(h, np.where(finishing, starts, length))
    info.batch_converged = (statuses == CONVERGED).reshape(batch)
    info.finished_sequentially = finishing.reshape(batch)
    info.converged = bool(info.batch_converged.all())
    h = h.reshape(shape) if resident else backend.to_host(h).reshape(shape)
    return (h, info) if full_output else h


@dataclass
class Problem:
    """A solver call's arrays in kernel layout: the cell's ``inputs`` ``(T, B, m)`` (after its
    input projections), its ``step_params`` and ``h0`` ``(B, n)``, for ``B`` sequences of the
    broadcast ``batch`` shape; ``host_params`` are the ``step_params`` on the host, for the
    checks of the step there (a copy of those that are GPU arrays)."""

    inputs: np.ndarray
    step_params: object
    host_params: object
    h0: np.ndarray
    batch: tuple
    dtype: np.dtype

    @property
    def length(self) -> int:
        return self.inputs.shape[0]

    @property
    def size(self) -> int:
        return self.h0.shape[1]

    @classmethod
    def of(cls, cell: Cell, x, h0, params, dtype) -> "Problem":
        """Check ``x`` ``(T, *batch, m)`` and ``h0`` ``(*batch, n)`` or None against each other
        and the cell, and lay them out in ``dtype`` (real): NumPy arrays, or device arrays
        where they are GPU arrays."""
        x_view = stand_in(x)
        if x_view.ndim < 2:
            raise ValueError(
                f"x must have shape (T, *batch, m), time first and the inputs last, got "
                f"{x_view.shape}; a cell without inputs takes x of shape (T, 0)"
            )
        if dtype.kind == "c":
            raise TypeError(
                f"nonlinear_recurrence computes in float32 or float64, but the inputs promote "
                f"to {dtype}; pass real arrays"
            )
        length = x_view.shape[0]
        h0_view = None if h0 is None else stand_in(h0)
        size = cell_state_size(cell, h0_view)
        batch = batch_shape(x_view, h0_view)
        sequences = math.prod(batch)
        inputs, step_params = cell.prepare(x if on_gpu(x) else x_view, params, dtype)
        given = stand_in(inputs).shape
        inputs = laid_out(
            inputs, (length, *batch, given[-1]), dtype, new_axes=len(batch) + 2 - len(given)
        ).reshape(length, sequences, given[-1])
        h0_array = (
            np.zeros((sequences, size), dtype)
            if h0 is None
            else laid_out(h0, (*batch, size), dtype).reshape(sequences, size)
        )
        return cls(inputs, step_params, host_leaves(step_params), h0_array, batch, dtype)

    def probe_inputs(self) -> np.ndarray:
        """Host rows of the inputs ``(steps, B, m)`` for the cell's checks on the host: every
        step's, or from the GPU the first step's (every step's where none of those is
        finite: see :func:`scanlab._step_checks.finite_row`)."""
        if not on_gpu(self.inputs):
            return self.inputs
        first = to_host(self.inputs[:1])
        return first if np.isfinite(first).all(axis=-1).any() else to_host(self.inputs)

    def align_batch(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``(T, *batch_x, m)`` aligned to the batch shape (see :func:`align_batch`)."""
        return align_batch(x, len(self.batch))


def laid_out(value, shape: tuple, dtype, new_axes: int = 0):
    """``value`` with ``new_axes`` length-1 axes inserted after its first, broadcast to
    ``shape``, as a C-contiguous array of ``dtype``: a NumPy array, or a device array made on
    the GPU where ``value`` is a GPU array."""
    if on_gpu(value):
        return cuda_module("arrays").batch_aligned(value, shape, dtype, new_axes)
    value = np.asarray(value)
    value = value.reshape(value.shape[:1] + (1,) * new_axes + value.shape[1:])
    return np.ascontiguousarray(np.broadcast_to(value, shape), dtype)


def align_batch(x: np.ndarray, dimensions: int) -> np.ndarray:
    """``x`` ``(T, *batch_x, m)`` with ones inserted after ``T``, so that its batch axes align
    with the last of ``dimensions`` batch axes."""
    return x.reshape(x.shape[0], *(1,) * (dimensions + 2 - x.ndim), *x.shape[1:])


def cell_state_size(cell: Cell, h0) -> int:
    """The state's length, from ``h0`` or the cell, checked against each other."""
    if h0 is None:
        if cell.state_size is None:
            raise ValueError(
                "h0=None needs the state size: pass h0 (e.g. np.zeros(n)) or make the cell "
                "with scanlab.cell(..., state_size=n)"
            )
        return cell.state_size
    if h0.ndim == 0 or h0.shape[-1] == 0:
        raise ValueError(f"h0 must have shape (*batch, n) with n >= 1, got {h0.shape}")
    if cell.state_size is not None and h0.shape[-1] != cell.state_size:
        raise ValueError(
            f"{cell!r} has states of size {cell.state_size}, but h0 has shape {h0.shape}"
        )
    return h0.shape[-1]


def batch_shape(x: np.ndarray, h0) -> tuple:
    """The broadcast of the batch shapes of ``x`` (``(T, *batch, m)``) and ``h0``."""
    batch = x.shape[1:-1]
    if h0 is None:
        return batch
    try:
        return np.broadcast_shapes(batch, h0.shape[:-1])
    except ValueError:
        raise ValueError(
            f"the batch shapes of x {x.shape} (T, *batch, m) and h0 {h0.shape} (*batch, n) do "
            "not broadcast"
        ) from None


def initial_guess(guess, shape: tuple, dtype):
    """``guess`` broadcast to the result's shape, as a contiguous array of ``dtype`` (real; a
    device array where ``guess`` is a GPU array)."""
    view = numeric_array("guess", guess, stand_in)
    if view.dtype.kind == "c":
        raise TypeError(
            f"guess has dtype {view.dtype}, but the states are real ({dtype}); pass real values"
        )
    try:
        np.broadcast_to(view, shape)
    except ValueError:
        raise ValueError(
            f"guess must broadcast to the result's shape {shape}, got {view.shape}"
        ) from None
    return laid_out(guess if on_gpu(guess) else view, shape, dtype)


def checked_tolerance(tol) -> float:
    """``tol`` as a float, or a ValueError unless positive and finite (an infinite one would
    take any iterate for the solution)."""
    tol = float(tol)
    if not 0 < tol < math.inf:
        raise ValueError(f"tol must be positive and finite, got {tol}")
    return tol


def newton_settings(method: str, dtype, tol, max_iter, length: int) -> tuple:
    """The tolerance and iteration limit of ``method`` over ``length`` steps, from the ``tol``
    and ``max_iter`` given (None: the defaults for ``dtype`` and ``method``), checked."""
    tol = checked_tolerance(TOLERANCES[dtype] if tol is None else tol)
    if max_iter is not None and (
        not isinstance(max_iter, (int, np.integer)) or isinstance(max_iter, bool) or max_iter < 0
    ):
        raise ValueError(f"max_iter must be a non-negative integer, got {max_iter!r}")
    limit = MAX_ITERATIONS.get(method, 0) if max_iter is None else int(max_iter)
    if method != "damped":  # T steps solve every step (rejected damped steps solve none)
        limit = min(limit, length)
    return tol, limit


def choose_method(device: str, cell: Cell, length: int, sequences: int, size: int) -> str:
    """The ``"auto"`` method (see :func:`nonlinear_recurrence`)."""
    if device == "cuda":
        if length * size < config.cuda.nonlinear_auto_newton_min_work:
            return "sequential"
        return "quasi" if cell.structure == "dense" and size > 4 else "newton"
    threads = numba.get_num_threads()
    if sequences < threads and threads >= config.cpu.nonlinear_auto_newton_min_threads:
        return "newton"
    return "sequential"


__all__ = ["ConvergenceError", "NonlinearInfo", "nonlinear_recurrence"]
