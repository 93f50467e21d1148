"""The built-in cells :class:`ElmanRNN`, :class:`ParaGRU` and :class:`ParaLSTM`: their compiled
steps, analytic Jacobians and pullbacks, and :class:`BuiltinCell`, a cell with its own parameters
whose input projections are computed for all steps at once (one matrix product), so that the step
sees only the projected inputs. They use :mod:`scanlab.math`, whose ``tanh`` and ``sigmoid``
vectorise.
"""

import operator

import numpy as np
from numba import njit, prange

from scanlab import math as smath
from scanlab._step_routines import ANALYTIC
from scanlab.cells.base import Cell, JacobianPlan
from scanlab.config import FASTMATH, FASTMATH_DOT_PRODUCTS
from scanlab.cpu import nonlinear as cpu_nonlinear


@njit(cache=True, fastmath=FASTMATH_DOT_PRODUCTS)
def elman_step(h_prev, x_t, params, h_out):
    """``h = tanh(W h_prev + u_t)``, ``u_t`` the projected input."""
    (weights,) = params
    for i in range(h_prev.shape[0]):
        total = x_t[i]
        for j in range(h_prev.shape[0]):
            total += weights[i, j] * h_prev[j]
        h_out[i] = smath.tanh(total)


@njit(cache=True, fastmath=FASTMATH_DOT_PRODUCTS)
def elman_jacobian(h_prev, x_t, params, jacobian_out):
    """``diag(1 - h^2) W``."""
    (weights,) = params
    for i in range(h_prev.shape[0]):
        total = x_t[i]
        for j in range(h_prev.shape[0]):
            total += weights[i, j] * h_prev[j]
        slope = 1 - smath.tanh(total) ** 2
        for j in range(h_prev.shape[0]):
            jacobian_out[i, j] = slope * weights[i, j]


@njit(inline="always")
def gru_channel(h, u_update, u_reset, u_candidate, a_update, a_reset, a_candidate):
    """One ParaGRU channel: the new state and its derivative with respect to ``h``."""
    update = smath.sigmoid(u_update + a_update * h)
    reset = smath.sigmoid(u_reset + a_reset * h)
    candidate = smath.tanh(u_candidate + a_candidate * reset * h)
    d_update = update * (1 - update) * a_update
    d_reset = reset * (1 - reset) * a_reset
    d_candidate = (1 - candidate * candidate) * a_candidate * (reset + h * d_reset)
    value = h + update * (candidate - h)
    slope = 1 - update + (candidate - h) * d_update + update * d_candidate
    return value, slope


# The steps and Jacobians below give their helpers scalars only: under the CUDA simulator they run
# as Python, and a compiled helper cannot take the simulator's arrays.


@njit(cache=True, fastmath=FASTMATH)
def gru_step(h_prev, x_t, params, h_out):
    """ParaGRU: gates with diagonal recurrent weights (:class:`ParaGRU`)."""
    a = params[0]
    n = h_prev.shape[0]
    for i in range(n):
        h_out[i], _ = gru_channel(
            h_prev[i], x_t[i], x_t[n + i], x_t[2 * n + i], a[0, i], a[1, i], a[2, i]
        )


@njit(cache=True, fastmath=FASTMATH)
def gru_jacobian(h_prev, x_t, params, jacobian_out):
    """The diagonal of ParaGRU's Jacobian."""
    a = params[0]
    n = h_prev.shape[0]
    for i in range(n):
        _, jacobian_out[i] = gru_channel(
            h_prev[i], x_t[i], x_t[n + i], x_t[2 * n + i], a[0, i], a[1, i], a[2, i]
        )


@njit(inline="always")
def lstm_gates(c, h, u_input, u_forget, u_output, u_candidate, a_input, a_forget, a_output,
               a_candidate):  # fmt: skip
    """One ParaLSTM channel with state ``(c, h)``: its gates (input, forget, output,
    candidate), the new cell state and its tanh."""
    input_gate = smath.sigmoid(u_input + a_input * h)
    forget = smath.sigmoid(u_forget + a_forget * h)
    output = smath.sigmoid(u_output + a_output * h)
    candidate = smath.tanh(u_candidate + a_candidate * h)
    cell_state = forget * c + input_gate * candidate
    return input_gate, forget, output, candidate, cell_state, smath.tanh(cell_state)


@njit(cache=True, fastmath=FASTMATH)
def lstm_step(h_prev, x_t, params, h_out):
    """ParaLSTM: state ``[c_0, h_0, c_1, h_1, ...]`` (:class:`ParaLSTM`).

    Written out rather than through :func:`lstm_gates`: LLVM vectorises this form, 4x faster.
    """
    recurrent = params[0]
    n = h_prev.shape[0] // 2
    for j in range(n):
        c, h = h_prev[2 * j], h_prev[2 * j + 1]
        cell_state = smath.sigmoid(x_t[n + j] + recurrent[1, j] * h) * c + smath.sigmoid(
            x_t[j] + recurrent[0, j] * h
        ) * smath.tanh(x_t[3 * n + j] + recurrent[3, j] * h)
        h_out[2 * j] = cell_state
        h_out[2 * j + 1] = smath.sigmoid(x_t[2 * n + j] + recurrent[2, j] * h) * smath.tanh(
            cell_state
        )


@njit(cache=True, fastmath=FASTMATH)
def lstm_jacobian(h_prev, x_t, params, jacobian_out):
    """ParaLSTM's 2x2 blocks ``d(c, h)_j / d(c, h)_j``."""
    a = params[0]
    n = h_prev.shape[0] // 2
    for j in range(n):
        c, h = h_prev[2 * j], h_prev[2 * j + 1]
        input_gate, forget, output, candidate, _, squashed = lstm_gates(
            c, h, x_t[j], x_t[n + j], x_t[2 * n + j], x_t[3 * n + j],
            a[0, j], a[1, j], a[2, j], a[3, j],
        )  # fmt: skip
        dc_dh = (
            c * forget * (1 - forget) * a[1, j]
            + candidate * input_gate * (1 - input_gate) * a[0, j]
            + input_gate * (1 - candidate * candidate) * a[3, j]
        )
        slope = output * (1 - squashed * squashed)
        jacobian_out[j, 0, 0] = forget
        jacobian_out[j, 0, 1] = dc_dh
        jacobian_out[j, 1, 0] = slope * forget
        jacobian_out[j, 1, 1] = output * (1 - output) * a[2, j] * squashed + slope * dc_dh


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def gru_pullback(u, a, states, h0, adjoint, tasks, d_inputs, partial):
    """ParaGRU's gradients at every step: of its projected inputs into ``d_inputs``, and of its
    recurrent weights, summed per task into ``partial`` ``(tasks, 3, n)`` (float64)."""
    length, sequences, n = states.shape
    items = length * sequences
    for task in prange(tasks):
        for item in range(task * items // tasks, (task + 1) * items // tasks):
            t, sequence = item // sequences, item % sequences
            h_prev = states[t - 1, sequence] if t > 0 else h0[sequence]
            u_t, d_t = u[t, sequence], d_inputs[t, sequence]
            for i in range(n):
                h, weight = h_prev[i], adjoint[t, sequence, i]
                update = smath.sigmoid(u_t[i] + a[0, i] * h)
                reset = smath.sigmoid(u_t[n + i] + a[1, i] * h)
                candidate = smath.tanh(u_t[2 * n + i] + a[2, i] * reset * h)
                d_update = weight * (candidate - h) * update * (1 - update)
                d_candidate = weight * update * (1 - candidate * candidate)
                d_reset = d_candidate * a[2, i] * h * reset * (1 - reset)
                d_t[i], d_t[n + i], d_t[2 * n + i] = d_update, d_reset, d_candidate
                partial[task, 0, i] += d_update * h
                partial[task, 1, i] += d_reset * h
                partial[task, 2, i] += d_candidate * reset * h


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def lstm_pullback(u, a, states, h0, adjoint, tasks, d_inputs, partial):
    """ParaLSTM's gradients at every step (as :func:`gru_pullback`, four gates)."""
    length, sequences, width = states.shape
    n = width // 2
    items = length * sequences
    for task in prange(tasks):
        for item in range(task * items // tasks, (task + 1) * items // tasks):
            t, sequence = item // sequences, item % sequences
            h_prev = states[t - 1, sequence] if t > 0 else h0[sequence]
            u_t, d_t, weights = u[t, sequence], d_inputs[t, sequence], adjoint[t, sequence]
            for j in range(n):
                c, h = h_prev[2 * j], h_prev[2 * j + 1]
                input_gate = smath.sigmoid(u_t[j] + a[0, j] * h)
                forget = smath.sigmoid(u_t[n + j] + a[1, j] * h)
                output = smath.sigmoid(u_t[2 * n + j] + a[2, j] * h)
                candidate = smath.tanh(u_t[3 * n + j] + a[3, j] * h)
                squashed = smath.tanh(forget * c + input_gate * candidate)
                d_h = weights[2 * j + 1]
                d_cell = weights[2 * j] + d_h * output * (1 - squashed * squashed)
                d_input = d_cell * candidate * input_gate * (1 - input_gate)
                d_forget = d_cell * c * forget * (1 - forget)
                d_output = d_h * squashed * output * (1 - output)
                d_candidate = d_cell * input_gate * (1 - candidate * candidate)
                d_t[j], d_t[n + j], d_t[2 * n + j], d_t[3 * n + j] = (
                    d_input, d_forget, d_output, d_candidate
                )  # fmt: skip
                partial[task, 0, j] += d_input * h
                partial[task, 1, j] += d_forget * h
                partial[task, 2, j] += d_output * h
                partial[task, 3, j] += d_candidate * h


def pullback_with(kernel, u, a, states, h0, adjoint):
    """Run a built-in cell's pullback ``kernel``: the gradients of ``u`` and of ``a``."""
    tasks = cpu_nonlinear.task_count(states.shape[0] * states.shape[1])
    d_inputs = np.empty_like(u)
    partial = np.zeros((tasks, *a.shape))
    kernel(u, a, states, h0, adjoint, tasks, d_inputs, partial)
    return d_inputs, partial.sum(axis=0).astype(u.dtype)


class BuiltinCell(Cell):
    """A cell with its own parameters: ``recurrent_weights``, ``input_weights`` and ``bias``.

    The input projection ``x @ input_weights.T + bias`` is computed for all steps at once (a
    matrix product, parallel over time); the step sees only its result and the recurrent weights.
    Parameters are float64 arrays, settable as attributes or through :attr:`params`;
    ``nonlinear_recurrence(..., params=dict)`` overrides some of them for one call.
    """

    #: Gates per channel (their input projections are stacked), and state variables per channel.
    gates = 1
    states_per_channel = 1
    parameter_names = ("recurrent_weights", "input_weights", "bias")

    def __init__(self, step, jacobian, structure, hidden_size: int, input_size: int, seed):
        hidden_size, input_size = operator.index(hidden_size), operator.index(input_size)
        if hidden_size < 1 or input_size < 0:
            raise ValueError(
                f"{type(self).__name__} needs n >= 1 and m >= 0, got n={hidden_size}, "
                f"m={input_size}"
            )
        super().__init__(
            step, jacobian=jacobian, structure=structure,
            state_size=self.states_per_channel * hidden_size,
        )  # fmt: skip
        self.hidden_size, self.input_size = hidden_size, input_size
        rng = np.random.default_rng(seed)
        bound = 1 / np.sqrt(hidden_size)
        shape = (self.gates, hidden_size) if self.gates > 1 else (hidden_size,)
        self.input_weights = rng.uniform(-bound, bound, (*shape, input_size))
        self.bias = rng.uniform(-bound, bound, shape)
        self.recurrent_weights = self.initial_recurrent_weights(rng)

    def __repr__(self) -> str:
        return f"scanlab.cells.{type(self).__name__}({self.hidden_size}, {self.input_size})"

    @property
    def params(self) -> dict:
        """The parameters by name (the arrays themselves)."""
        return {name: getattr(self, name) for name in self.parameter_names}

    @params.setter
    def params(self, values: dict) -> None:
        for name, value in self.merged(values).items():
            setattr(self, name, value)

    def merged(self, values) -> dict:
        """The cell's parameters with ``values`` (a dict by name) in their place, checked."""
        if not isinstance(values, dict):
            raise TypeError(
                f"params of a {type(self).__name__} is a dict with keys among "
                f"{self.parameter_names}, got {type(values).__name__}"
            )
        merged = self.params
        for name, value in values.items():
            if name not in merged:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {name!r}; its parameters are "
                    f"{', '.join(self.parameter_names)}"
                )
            try:
                value = np.asarray(value)
            except ValueError:  # a ragged sequence
                value = np.empty(0, object)
            if value.dtype.kind not in "biuf":
                raise TypeError(
                    f"params[{name!r}] of a {type(self).__name__} must be an array of real "
                    f"numbers, got {type(values[name]).__name__} (dtype {value.dtype})"
                )
            if value.shape != merged[name].shape:
                raise ValueError(
                    f"{type(self).__name__}.{name} has shape {merged[name].shape}, got "
                    f"{value.shape}"
                )
            merged[name] = value
        return merged

    def projection(self, values: dict) -> np.ndarray:
        """The input weights of ``values`` as one ``(gates * n, m)`` matrix (``m`` may be 0)."""
        return values["input_weights"].reshape(self.gates * self.hidden_size, self.input_size)

    def prepare(self, x: np.ndarray, params, dtype):
        values = self.params if params is None else self.merged(params)
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{self!r} takes inputs of size {self.input_size} (x of shape (T, ..., "
                f"{self.input_size})), got x of shape {x.shape}"
            )
        weights = self.projection(values).astype(dtype)
        projected = x.astype(dtype, copy=False) @ weights.T
        projected += values["bias"].reshape(-1).astype(dtype)
        return projected, (np.ascontiguousarray(values["recurrent_weights"], dtype),)

    def output(self, states: np.ndarray) -> np.ndarray:
        """The cell's output ``h`` from its states (the states themselves)."""
        return states

    def make_plan(self, size: int, dtype: np.dtype, x_t: np.ndarray, params) -> tuple:
        """Its analytic Jacobian, unprobed (see :meth:`Cell.plan`): a built-in cell's structure
        and Jacobian are known (``test_builtin_jacobians_match_finite_differences`` checks
        both), and the probes' central differences would compile its step once more."""
        return JacobianPlan(ANALYTIC, self.period(size), self.jacobian_shape(size), 0.0), True

    def pullback(self, x, inputs, params, step_params, states, h0, adjoint):
        """As :meth:`Cell.pullback`, analytic: the gradients of the projected inputs
        (:meth:`projected_pullback`) chained through the input projection; ``dparams`` a dict
        of the three parameters."""
        values = self.params if params is None else self.merged(params)
        d_inputs, d_recurrent = self.projected_pullback(inputs, step_params[0], states, h0, adjoint)
        weights = self.projection(values).astype(x.dtype)
        rows = d_inputs.reshape(-1, d_inputs.shape[-1])
        d_input_weights = rows.T @ x.reshape(rows.shape[0], self.input_size)
        return d_inputs @ weights, {
            "recurrent_weights": d_recurrent.reshape(values["recurrent_weights"].shape),
            "input_weights": d_input_weights.reshape(values["input_weights"].shape),
            "bias": rows.sum(axis=0).reshape(values["bias"].shape),
        }


class ElmanRNN(BuiltinCell):
    """The Elman RNN, ``h[t] = tanh(W h[t-1] + U x[t] + bias)``: dense Jacobian.

    Parameters
    ----------
    n, m : int
        State and input sizes.
    seed : int, optional
        Seed of the random initialisation (uniform in ``+-1/sqrt(n)``, as PyTorch).

    Attributes
    ----------
    recurrent_weights : ndarray, shape (n, n)
    input_weights : ndarray, shape (n, m)
    bias : ndarray, shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> import scanlab
    >>> rnn = scanlab.cells.ElmanRNN(4, 3, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((100, 3))
    >>> h, info = scanlab.nonlinear_recurrence(rnn, x, None, method="newton", full_output=True)
    >>> h.shape, info.converged
    ((100, 4), True)
    """

    def __init__(self, n: int, m: int, seed=None):
        super().__init__(elman_step, elman_jacobian, "dense", n, m, seed)

    def initial_recurrent_weights(self, rng):
        bound = 1 / np.sqrt(self.hidden_size)
        return rng.uniform(-bound, bound, (self.hidden_size, self.hidden_size))

    def projected_pullback(self, u, weights, states, h0, adjoint):
        """The gradients of the projected inputs ``u`` and of the recurrent weights."""
        h_prev = np.concatenate([h0[None], states[:-1]])
        d_total = adjoint * (1 - np.tanh(h_prev @ weights.T + u) ** 2)
        rows = d_total.reshape(-1, d_total.shape[-1])
        return d_total, rows.T @ h_prev.reshape(rows.shape)


class ParaGRU(BuiltinCell):
    """ParaRNN's GRU: gates whose recurrent weights are diagonal, so its Jacobian is diagonal.

    With ``u = input_weights @ x[t] + bias`` (three gates) and ``a = recurrent_weights``::

        z = sigmoid(u[0] + a[0] h),  r = sigmoid(u[1] + a[1] h),
        c = tanh(u[2] + a[2] (r h)), h[t] = (1 - z) h + z c      (h = h[t-1], elementwise)

    Parameters
    ----------
    n, m : int
        State and input sizes.
    seed : int, optional
        Seed of the random initialisation (uniform in ``+-1/sqrt(n)``; recurrent weights in
        ``+-1``).

    Attributes
    ----------
    recurrent_weights : ndarray, shape (3, n)
        Diagonal recurrent weights of the update, reset and candidate gates.
    input_weights : ndarray, shape (3, n, m)
    bias : ndarray, shape (3, n)
    """

    gates = 3

    def __init__(self, n: int, m: int, seed=None):
        super().__init__(gru_step, gru_jacobian, "diagonal", n, m, seed)

    def initial_recurrent_weights(self, rng):
        return rng.uniform(-1.0, 1.0, (self.gates, self.hidden_size))

    def projected_pullback(self, u, a, states, h0, adjoint):
        """The gradients of the projected inputs ``u`` and of the recurrent weights ``a``."""
        return pullback_with(gru_pullback, u, a, states, h0, adjoint)


class ParaLSTM(BuiltinCell):
    """ParaRNN's LSTM: diagonal recurrent weights, so its Jacobian has a 2x2 block per channel.

    The state of ``n`` channels has length ``2 n``, ``[c_0, h_0, c_1, h_1, ...]`` (use
    :meth:`output` for the ``h`` part). With ``u = input_weights @ x[t] + bias`` (four gates)
    and ``a = recurrent_weights``, elementwise::

        i = sigmoid(u[0] + a[0] h), f = sigmoid(u[1] + a[1] h), o = sigmoid(u[2] + a[2] h),
        g = tanh(u[3] + a[3] h),    c[t] = f c + i g,           h[t] = o tanh(c[t])

    Parameters
    ----------
    n, m : int
        Channels (the state has ``2 n`` values) and input size.
    seed : int, optional
        Seed of the random initialisation (uniform in ``+-1/sqrt(n)``, recurrent weights in
        ``+-1``, forget-gate bias ``+1``).

    Attributes
    ----------
    recurrent_weights : ndarray, shape (4, n)
        Diagonal recurrent weights of the input, forget, output and candidate gates.
    input_weights : ndarray, shape (4, n, m)
    bias : ndarray, shape (4, n)
    """

    gates = 4
    states_per_channel = 2

    def __init__(self, n: int, m: int, seed=None):
        super().__init__(lstm_step, lstm_jacobian, ("block", 2), n, m, seed)
        self.bias[1] += 1.0

    def initial_recurrent_weights(self, rng):
        return rng.uniform(-1.0, 1.0, (self.gates, self.hidden_size))

    def projected_pullback(self, u, a, states, h0, adjoint):
        """The gradients of the projected inputs ``u`` and of the recurrent weights ``a``."""
        return pullback_with(lstm_pullback, u, a, states, h0, adjoint)

    def output(self, states: np.ndarray) -> np.ndarray:
        """The hidden outputs ``h`` of every channel, ``states[..., 1::2]``."""
        return states[..., 1::2]


__all__ = ["BuiltinCell", "ElmanRNN", "ParaGRU", "ParaLSTM"]
