"""The cell machinery: :class:`Cell`, a recurrence cell ``h[t] = f(h[t-1], x[t])`` holding a
compiled step (and optionally its Jacobian), :func:`cell` to make one from a step function, and
:class:`JacobianPlan`, how a cell's Jacobian is computed (checked and chosen at a cell's first
solve). The built-in cells are :mod:`scanlab.cells.builtin`.
"""

import contextlib
import operator
from dataclasses import dataclass
from functools import partial

import numba
import numpy as np

from scanlab import _kernel_cache as kernel_cache
from scanlab import math as scanlab_math
from scanlab._arrays import read_only
from scanlab._step_checks import (
    add_note,
    check_params,
    compile_error,
    finite_row,
    raise_from_reruns,
    unwritten_error,
    unwritten_outputs,
)
from scanlab._step_routines import ANALYTIC, CENTRAL_DIFFERENCES, COMPLEX_STEP
from scanlab.cells.finite_differences import float64_leaves, input_colouring, parameter_gradients
from scanlab.config import FASTMATH
from scanlab.cpu import nonlinear as cpu_nonlinear

#: Numba dispatchers made by :func:`compiled`, by Python function and ``exact_math``: cells made
#: again from the same function share their compiled kernels.
DISPATCHERS = {}


def compiled(function, name: str, exact_math: bool = False):
    """``function`` as a Numba CPU dispatcher (compiled with scanlab's fastmath policy, kept in
    Numba's on-disk cache where :mod:`scanlab._kernel_cache` can describe it), its ``math``
    functions :mod:`scanlab.math`'s unless ``exact_math`` (:func:`scanlab.math.vectorising`)."""
    if isinstance(function, numba.core.registry.CPUDispatcher):
        return function
    if not callable(function):
        raise TypeError(f"{name} must be a function, got {type(function).__name__}")
    key = (function, exact_math)
    if key not in DISPATCHERS:
        source = function if exact_math else scanlab_math.vectorising(function)
        DISPATCHERS[key] = kernel_cache.jit(fastmath=FASTMATH)(source)
    return DISPATCHERS[key]


def structure_period(structure) -> object:
    """``structure`` checked: ``"dense"``, ``"diagonal"`` or ``("block", k)`` with k >= 1."""
    if structure in ("dense", "diagonal"):
        return structure
    if isinstance(structure, tuple) and len(structure) == 2 and structure[0] == "block":
        try:
            size = operator.index(structure[1])
        except TypeError:
            size = 0
        if size >= 1:
            return ("block", size)
    raise ValueError(
        f"structure must be 'dense', 'diagonal' or ('block', k) with an integer k >= 1; "
        f"got {structure!r}"
    )


@dataclass(frozen=True)
class JacobianPlan:
    """How a cell's Jacobian is computed for one state size and dtype (see :meth:`Cell.plan`)."""

    method: str
    period: int
    shape: tuple
    spacing: float


class Cell:
    """A recurrence cell ``h[t] = step(h[t-1], x[t], params)``; make one with :func:`cell`.

    Attributes
    ----------
    step, jacobian : numba dispatcher
        The compiled step and Jacobian (None: computed automatically).
    structure : str or tuple
        ``"dense"``, ``"diagonal"`` or ``("block", k)``.
    state_size : int or None
        ``n``, if known (needed when ``h0`` is None).
    step_with_jacobian : numba dispatcher or None
        ``(h_prev, x_t, params, h_out, jacobian_out)``: the step that also writes its analytic
        Jacobian (a built-in cell's, its gates computed once for both), which Newton's
        evaluation then calls instead of the two; None for a cell of your own.
    pullback_on_gpus : bool
        Whether :meth:`pullback` takes device arrays and runs on the GPU (a built-in cell's);
        a cell of your own is differentiated on the host.
    """

    step_with_jacobian = None
    pullback_on_gpus = False

    def __init__(
        self, step, *, jacobian=None, structure="dense", state_size=None, exact_math=False
    ):
        self.step = compiled(step, "step", exact_math)
        self.jacobian = None if jacobian is None else compiled(jacobian, "jacobian", exact_math)
        self.structure = structure_period(structure)
        if state_size is not None:
            state_size = operator.index(state_size)
            if state_size < 1:
                raise ValueError(f"state_size must be at least 1, got {state_size}")
        self.state_size = state_size
        #: Per state size and dtype, how the Jacobian is computed (see :meth:`plan`).
        self.plans = {}
        #: The state sizes, dtypes and Numba types of params that :meth:`check_step` passed.
        self.checked = set()

    def __repr__(self) -> str:
        name = getattr(self.step, "__name__", "step")
        return f"scanlab.cell({name}, structure={self.structure!r})"

    def period(self, size: int) -> int:
        """Columns per row of the Jacobian's blocks: 1 (diagonal), k (blocks) or n (dense)."""
        if self.structure == "diagonal":
            return 1
        if self.structure == "dense":
            return size
        block = self.structure[1]
        if size % block:
            raise ValueError(
                f"structure=('block', {block}) needs a state size divisible by {block}, got {size}"
            )
        return block

    def jacobian_shape(self, size: int) -> tuple:
        """The shape of ``J_out``: ``(n,)``, ``(n // k, k, k)`` or ``(n, n)``."""
        period = self.period(size)
        return {"diagonal": (size,), "dense": (size, size)}.get(
            self.structure, (size // period, period, period)
        )

    def prepare(self, x: np.ndarray, params, dtype):
        """The step's inputs for every step and its ``params``: ``x`` and ``params`` as given
        (``params`` checked to be something a step can take)."""
        check_params(params)
        return x, params

    def check_step(self, h_prev: np.ndarray, x_t: np.ndarray, params) -> None:
        """Call the step once on the host before a kernel does, at ``h_prev`` and the first
        row of ``x_t`` ``(..., m)`` whose inputs are all finite, once per state size, dtype and
        Numba type of ``params``.

        Raises ValueError if the declared structure does not fit the state size (see
        :meth:`period`), TypeError naming ``params`` if the step does not compile for them
        (Numba's error chained), and ValueError if it leaves an entry of ``h_out`` unwritten:
        outputs set to NaN that stay NaN, and stay as they were when set to another value, are.
        """
        key = (h_prev.size, h_prev.dtype.str, numba.typeof(params))
        if key in self.checked:
            return
        self.period(h_prev.size)
        x_t = read_only(finite_row(x_t))
        try:
            unwritten, returned = unwritten_outputs(
                self.step, read_only(h_prev), x_t, params, np.empty_like(h_prev)
            )
        except numba.core.errors.TypingError as error:
            raise compile_error(self, error, h_prev, x_t, params) from error
        except Exception as error:
            add_note(error, f"raised by the step of {self!r}, run once on the host to check it")
            raise
        if unwritten.size:
            raise unwritten_error(self, unwritten, h_prev.size, returned)
        self.checked.add(key)

    def evaluate_once(self, h_prev, x_t, params, plan=None) -> None:
        """Evaluate the step (and its Jacobian as ``plan`` says, if given) at one step on the
        host: how a step that raised in a kernel is run again to raise its exception."""
        self.step(read_only(h_prev), read_only(x_t), params, np.empty_like(h_prev))
        if plan is not None:
            self.jacobian_with(plan.method, plan.shape, plan.period, h_prev, x_t, params,
                               plan.spacing)  # fmt: skip

    def raise_again(self, failures, params, plan=None) -> None:
        """Raise the exception of the step at the first of ``failures``, ``(t, sequence,
        h_prev, x_t)`` of each step where a kernel found that it raised, by evaluating it
        again there (see :meth:`evaluate_once` and
        :func:`scanlab._step_checks.raise_from_reruns`)."""
        raise_from_reruns(self, (
            (t, sequence, partial(self.evaluate_once, h_prev, x_t, params, plan))
            for t, sequence, h_prev, x_t in failures
        ))  # fmt: skip

    def pullback(self, x, inputs, params, step_params, states, h0, adjoint):
        """The gradients through the step's inputs and parameters, given the adjoint.

        With ``f`` evaluated at ``(states[t-1], inputs[t])`` (``h0`` before the first step),
        all ``(T, B, ...)`` (``x`` the inputs as given, broadcast to ``(T, *batch, m)``), returns
        ``dx[t] = (df/dx)^T adjoint[t]`` and ``dparams = sum_t (df/dparams)^T adjoint[t]``
        in ``params``' structure: an array or a float for each real floating leaf (alone or in
        tuples), None for the others. A cell of your own is differentiated by central
        differences in float64 (relative error about 1e-10): the inputs by colours (see
        :func:`scanlab.cells.finite_differences.input_colouring`), two evaluations of every
        step per colour; each parameter value two more.
        """
        kernels = cpu_nonlinear.pullback_kernels(self)
        wide = [np.ascontiguousarray(value, np.float64) for value in (inputs, states, h0, adjoint)]
        wide_params = float64_leaves(step_params)
        length, sequences, _ = inputs.shape
        colours, owners = input_colouring(self.step, wide[0], wide_params, wide[1], wide[2])
        tasks = cpu_nonlinear.task_count(length * sequences)
        dx = np.empty(inputs.shape)
        failures = np.empty(tasks, np.int64)
        position = np.empty(1, np.int64)  # where a routine run again on the host is
        kernels.input_gradients(wide[0], wide_params, *wide[1:], colours, owners, tasks, dx,
                                failures)  # fmt: skip

        def input_gradient(item):
            kernels.input_gradients_between(item, item + 1, wide[0], wide_params, *wide[1:],
                                            colours, owners, dx, position)  # fmt: skip

        self.raise_failed_items(failures, sequences, input_gradient)
        partial_sums = np.empty(tasks)

        def difference(upper, lower) -> float:
            kernels.parameter_difference(wide[0], upper, lower, *wide[1:], tasks, partial_sums,
                                         failures)  # fmt: skip

            def parameter_difference(item):
                kernels.parameter_difference_between(
                    item, item + 1, wide[0], upper, lower, *wide[1:], np.empty(1), 0, position
                )

            self.raise_failed_items(failures, sequences, parameter_difference)
            return float(partial_sums.sum())

        return dx.astype(x.dtype), parameter_gradients(wide_params, difference, x.dtype)

    def raise_failed_items(self, failures: np.ndarray, sequences: int, rerun) -> None:
        """After a pullback kernel, raise the step's exception if it raised at an item (a step
        of a sequence, ``t * sequences + s``, marked in ``failures``): ``rerun(item)`` runs
        the item again on the host."""
        failed = failures[failures >= 0]
        if failed.size:
            raise_from_reruns(self, ((item // sequences, item % sequences, partial(rerun, item))
                               for item in failed))  # fmt: skip

    def plan(self, size: int, dtype, x_t: np.ndarray, params, visited=None) -> JacobianPlan:
        """Check the step (and Jacobian) at a random state and choose how to differentiate it.

        ``x_t`` holds the inputs of one step ``(m,)``, or of many ``(..., m)``: the probes use
        the first step whose inputs are all finite. The first call for a state size and dtype
        checks the step (:meth:`check_step`), perturbs each state variable of a random state
        and checks that only the outputs the declared structure allows change; it then checks
        the cell's Jacobian (or the complex step, when the step compiles for complex states)
        against central differences. A complex step that disagrees (a step that is not
        complex-analytic, e.g. one using ``abs``) falls back to central differences.

        Where the step raises at the random state (outside its domain: a square root's), the
        probes start from ``visited``, a state the recurrence passes through (its initial
        state); a probe state where the step raises is left out, as one where it is NaN.
        A plan is kept for later calls only once its probes proved it: every output finite at
        the probe state, and central differences finite at one of the probe states at least.
        Otherwise (NaN in ``params``, or a step not finite at any probe) this call gets the
        cell's own Jacobian, or central differences, which need no proof. The built-in cells
        skip these probes (their :meth:`make_plan`). The host passes the step read-only
        ``h_prev`` and ``x_t``, as the kernels do, so that it does not compile for other types.
        """
        dtype = np.dtype(dtype)
        self.check_step(np.zeros(size, dtype), x_t, params)
        key = (size, dtype.str)
        if key not in self.plans:
            probe_inputs = read_only(finite_row(np.asarray(x_t)))
            plan, proven = self.make_plan(size, dtype, probe_inputs, params, visited)
            if not proven:
                return plan
            self.plans[key] = plan
        return self.plans[key]

    @contextlib.contextmanager
    def probing(self):
        """Note an exception of the cell's step or Jacobian, run on the host while :meth:`plan`
        probes them, with the cell it came from (as :meth:`check_step` and the kernels do)."""
        try:
            yield
        except Exception as error:
            add_note(error, f"raised by the step of {self!r}, run on the host to probe it")
            raise

    def make_plan(self, size: int, dtype: np.dtype, x_t: np.ndarray, params, visited=None):
        """The :class:`JacobianPlan` of :meth:`plan`, and whether its probes proved it."""
        period = self.period(size)
        shape = self.jacobian_shape(size)
        eps = float(np.finfo(dtype).eps)
        random = (np.random.default_rng(2024).standard_normal(size) * 0.5).astype(dtype)
        # Probed at a random state, or where the step raises there (outside its domain: a
        # square root's), at the state the recurrence starts from; raising at both, it raises.
        candidates = [random] + ([] if visited is None else [np.asarray(visited, dtype)])
        state, value = next(
            ((state, value) for state in candidates
             if (value := self.output_at(state, x_t, params)) is not None),
            (random, None),
        )  # fmt: skip
        if value is None:  # the step raises at every candidate: the random state's exception
            value = np.empty(size, dtype)
            with self.probing():
                self.step(read_only(random), x_t, params, value)
        # An output that is NaN at the probe cannot show what it depends on, nor one whose
        # state moved out of the step's domain.
        structure_proven = bool(np.isfinite(value).all())
        coupled = []
        for j in range(size):
            moved = state.copy()
            moved[j] += dtype.type(0.25) * (1 + abs(moved[j]))
            changed = self.output_at(moved, x_t, params)
            if changed is None:
                structure_proven = False
                continue
            rows = np.flatnonzero((changed != value) & ~(np.isnan(changed) & np.isnan(value)))
            coupled += [(i, j) for i in rows if i // period != j // period]
        if coupled:
            i, j = coupled[0]
            raise ValueError(
                f"the cell was declared structure={self.structure!r}, but at a probe "
                f"state its output {i} depends on h_prev[{j}] ({len(coupled)} such pairs of "
                f"{size} states): declare a structure that holds this coupling, e.g. "
                "structure='dense'"
            )
        # Jacobians are checked at states of both signs and two scales: a complex step through
        # a branch cut (Numba's complex power of a negative number) fails only at some.
        with self.probing():
            probes = self.finite_references(
                shape, period, (state, -np.abs(state), dtype.type(4) * state[::-1]), x_t, params
            )
        tolerance = 1e-2 if dtype == np.float32 else 1e-5
        if self.jacobian is not None:
            with self.probing():
                error = self.jacobian_error(ANALYTIC, shape, period, 0.0, probes, x_t, params)
            if not error <= tolerance:
                raise ValueError(
                    f"the cell's jacobian does not match its step: at a random probe state it "
                    f"differs from central differences by {error:.3g} (tolerance "
                    f"{tolerance:.3g}); check the jacobian's formula and that it writes every "
                    f"entry of J_out, shape {shape}"
                )
            return JacobianPlan(ANALYTIC, period, shape, 0.0), structure_proven and bool(probes)
        spacing = eps**2
        try:
            error = self.jacobian_error(COMPLEX_STEP, shape, period, spacing, probes, x_t, params)
        except Exception:  # noqa: BLE001 - the step does not compile or run for complex states
            error = np.inf
        if probes and error <= tolerance:
            return JacobianPlan(COMPLEX_STEP, period, shape, spacing), structure_proven
        central = JacobianPlan(CENTRAL_DIFFERENCES, period, shape, eps ** (1 / 3))
        return central, structure_proven and bool(probes)

    def finite_references(self, shape, period, states, x_t, params) -> list:
        """``(state, Jacobian)`` by central differences at each of ``states`` where it is finite
        (the others are outside the step's domain, e.g. a square root's, where it is NaN or
        the step raises, or NaN comes from ``params``): the probes a Jacobian is checked at."""
        difference = np.finfo(states[0].dtype).eps ** (1 / 3)
        probes = []
        for state in states:
            try:
                reference = self.jacobian_with(CENTRAL_DIFFERENCES, shape, period, state, x_t,
                                               params, spacing=difference)  # fmt: skip
            except Exception:  # noqa: BLE001 - outside the step's domain
                continue
            if np.isfinite(reference).all():
                probes.append((state, reference))
        return probes

    def output_at(self, state, x_t, params):
        """The step's output at ``state``, or None where it raises there."""
        value = np.empty(state.size, state.dtype)
        try:
            self.step(read_only(state), x_t, params, value)
        except Exception:  # noqa: BLE001 - the caller probes elsewhere, or raises it again
            return None
        return value

    def jacobian_error(self, method, shape, period, spacing, probes, x_t, params):
        """The largest difference between the Jacobians by ``method`` and by central differences
        at the ``probes`` (``(state, reference)`` pairs), relative to the reference's size; NaN
        if a Jacobian by ``method`` has a NaN."""
        error = 0.0
        for state, reference in probes:
            found = self.jacobian_with(method, shape, period, state, x_t, params, spacing)
            scale = 1 + np.abs(reference).max()
            # np.maximum, not max: a NaN (a Jacobian that writes NaN) must fail the check.
            error = np.maximum(error, np.abs(found - reference).max() / scale)
        return float(error)

    def jacobian_with(self, method, shape, period, state, x_t, params, spacing) -> np.ndarray:
        """The Jacobian at one ``state``, by ``method``, in the structured ``shape``; an entry
        that ``method`` does not write is NaN.

        Computed here by calling the cell's compiled step (or Jacobian) as the kernels'
        routines do (:func:`scanlab._step_routines.differentiation`: the states of one colour,
        ``j % period``, moved at once), not by compiling those routines to probe a cell: each
        cost 0.3-0.9 s of a new cell's first solve. The step gets read-only real states, as
        :meth:`check_step` gives it (one compiled version)."""
        state, x_t = read_only(np.asarray(state)), read_only(np.asarray(x_t))
        if method == ANALYTIC:
            target = np.full(shape, np.nan, state.dtype)
            self.jacobian(state, x_t, params, target)
            return target
        n = state.size
        rows = np.arange(n)
        flat = np.full(n * period, np.nan, state.dtype)
        for colour in range(period):
            moved = rows % period == colour
            if method == COMPLEX_STEP:
                perturbed = state.astype(np.result_type(state.dtype, np.complex64))
                perturbed[moved] += 1j * spacing
                values = np.empty_like(perturbed)
                self.step(perturbed, x_t, params, values)
                derivative = values.imag / state.dtype.type(spacing)
            else:
                offset = state.dtype.type(spacing) * (1 + np.abs(state))
                plus, minus = state.copy(), state.copy()
                plus[moved] += offset[moved]
                minus[moved] -= offset[moved]
                f_plus, f_minus = np.empty_like(state), np.empty_like(state)
                self.step(read_only(plus), x_t, params, f_plus)
                self.step(read_only(minus), x_t, params, f_minus)
                columns = (rows // period) * period + colour
                derivative = (f_plus - f_minus) / (plus[columns] - minus[columns])
            flat[rows * period + colour] = derivative
        return flat.reshape(shape)


def cell(
    step, *, jacobian=None, structure="dense", state_size: int | None = None,
    exact_math: bool = False,
) -> Cell:  # fmt: skip
    """A recurrence cell ``h[t] = f(h[t-1], x[t])`` from a step function, for
    :func:`scanlab.nonlinear_recurrence`.

    Parameters
    ----------
    step : function
        ``step(h_prev, x_t, params, h_out)``: writes ``f(h_prev, x_t)`` into every entry of
        ``h_out`` and returns nothing. ``h_prev`` and ``h_out`` are 1-D arrays of the state's
        length ``n`` (float32 or float64), ``x_t`` the inputs of one step (1-D, length ``m``),
        ``params`` whatever is passed to the solver: a number, a NumPy array, a tuple of those,
        or None (on the GPU, None arrives as 0.0, since CUDA kernels take no None). Plain Python
        that Numba compiles (``@numba.njit`` functions are taken as they are); for
        ``device="cuda"`` it must also compile with ``numba.cuda`` (use ``math`` or
        :mod:`scanlab.math`, not NumPy functions). It must not read ``h_out`` before writing
        it. At the first solve for a state size, dtype and type of ``params``, scanlab runs it
        once on the host: ``params`` it does not compile for raise a TypeError naming them, an
        entry of ``h_out`` left unwritten a ValueError. An exception it raises reaches the
        caller, from every method and device.
    jacobian : function, optional
        ``jacobian(h_prev, x_t, params, J_out)``: writes ``df/dh_prev`` into ``J_out``, of shape
        ``(n,)`` for ``structure="diagonal"``, ``(n // k, k, k)`` for ``("block", k)`` (block
        ``b`` holds rows and columns ``b*k`` to ``b*k + k - 1``) and ``(n, n)`` for ``"dense"``,
        every entry.
        Without it, scanlab differentiates ``step`` itself: by the complex step
        (``Im f(h + i s e_j) / s``, exact to rounding) when ``step`` compiles for complex
        states, else by central differences (relative error about ``eps ** (2/3)``, which only
        slows Newton's convergence: convergence is always judged on the true residual). Both
        perturb every ``j`` of one colour at once: 1 extra evaluation of ``step`` per step for
        a diagonal cell, ``k`` for blocks, ``n`` for dense (twice that for central differences).
    structure : {"dense", "diagonal"} or ("block", k), optional
        Which entries of the Jacobian can be nonzero. At the first solve for a state size and
        dtype, a random probe checks it (a cell that mixes channels but is declared diagonal
        raises ValueError) and checks a given ``jacobian`` against central differences (one
        that writes NaN or leaves an entry unwritten raises ValueError). NaN in the data or in
        ``params`` decides nothing: the probes take a step with finite inputs, and what they
        could not prove is probed again at the next solve.
    state_size : int, optional
        The state's length ``n``; needed only to call the solver with ``h0=None``.
    exact_math : bool, optional
        Keep the C library's ``math.exp``, ``math.expm1``, ``math.log``, ``math.log1p``,
        ``math.tanh``, ``math.sin`` and ``math.cos`` in ``step`` and ``jacobian``. By default
        scanlab compiles them with :mod:`scanlab.math`'s versions on float arguments
        (``sin`` and ``cos`` on float64 ones), which LLVM vectorises (3-20x faster loops) and
        which compute in the argument's precision, within 1-3 ulp of the exact result (the C
        library's are within 1), NaN, the infinities and -0 as the C library gives them. The
        functions are looked up in the step's module when the cell is made.

    Returns
    -------
    Cell

    Examples
    --------
    Explicit Euler of the logistic equation ``dh/dt = h (1 - h) + x``, one state per channel:

    >>> import numpy as np
    >>> import scanlab
    >>> def logistic(h_prev, x_t, dt, h_out):
    ...     for i in range(h_prev.shape[0]):
    ...         h_out[i] = h_prev[i] + dt * (h_prev[i] * (1 - h_prev[i]) + x_t[i])
    >>> def logistic_jacobian(h_prev, x_t, dt, J_out):
    ...     for i in range(h_prev.shape[0]):
    ...         J_out[i] = 1 + dt * (1 - 2 * h_prev[i])
    >>> growth = scanlab.cell(logistic, jacobian=logistic_jacobian, structure="diagonal")
    >>> h = scanlab.nonlinear_recurrence(growth, np.zeros((200, 1)), [0.01], params=0.1)
    >>> round(float(h[-1, 0]), 4)
    1.0
    """
    return Cell(
        step, jacobian=jacobian, structure=structure, state_size=state_size,
        exact_math=exact_math,
    )  # fmt: skip


__all__ = ["Cell", "JacobianPlan", "cell"]
