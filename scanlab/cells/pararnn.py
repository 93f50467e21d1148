r"""ParaRNN's cells (Danieli et al. 2025), :class:`ParaGRU` and :class:`ParaLSTM`: gates with
diagonal recurrent weights, so that their Jacobians are diagonal or 2x2 blocks per channel; their
compiled steps, analytic Jacobians and pullbacks, and ParaRNN's initialisation. They are
:class:`scanlab.cells.builtin.BuiltinCell`\ s and use :mod:`scanlab.math`, whose ``tanh`` and
``sigmoid`` vectorise.
"""

import numpy as np
from numba import njit, prange

from scanlab import math as smath
from scanlab._kernel_cache import njit_cached
from scanlab.cells.builtin import BuiltinCell
from scanlab.config import FASTMATH


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


@njit_cached(fastmath=FASTMATH)
def gru_step(h_prev, x_t, params, h_out):
    """ParaGRU: gates with diagonal recurrent weights (:class:`ParaGRU`)."""
    a = params[0]
    n = h_prev.shape[0]
    for i in range(n):
        h_out[i], _ = gru_channel(
            h_prev[i], x_t[i], x_t[n + i], x_t[2 * n + i], a[0, i], a[1, i], a[2, i]
        )


@njit_cached(fastmath=FASTMATH)
def gru_jacobian(h_prev, x_t, params, jacobian_out):
    """The diagonal of ParaGRU's Jacobian."""
    a = params[0]
    n = h_prev.shape[0]
    for i in range(n):
        _, jacobian_out[i] = gru_channel(
            h_prev[i], x_t[i], x_t[n + i], x_t[2 * n + i], a[0, i], a[1, i], a[2, i]
        )


@njit_cached(fastmath=FASTMATH)
def gru_step_with_jacobian(h_prev, x_t, params, h_out, jacobian_out):
    """:func:`gru_step` and :func:`gru_jacobian` at once (the gates computed once)."""
    a = params[0]
    n = h_prev.shape[0]
    for i in range(n):
        h_out[i], jacobian_out[i] = gru_channel(
            h_prev[i], x_t[i], x_t[n + i], x_t[2 * n + i], a[0, i], a[1, i], a[2, i]
        )


@njit(inline="always")
def lstm_channel(c, h, u_forget, u_candidate, u_output, a_forget, a_candidate, a_output,
                 p_forget, p_output):  # fmt: skip
    """One ParaLSTM channel with state ``(c, h)``: its forget gate, candidate, new cell state,
    output gate and the new cell state's tanh."""
    forget = smath.sigmoid(u_forget + a_forget * h + p_forget * c)
    candidate = smath.tanh(u_candidate + a_candidate * h)
    cell_state = candidate + forget * (c - candidate)
    output = smath.sigmoid(u_output + a_output * h + p_output * cell_state)
    return forget, candidate, cell_state, output, smath.tanh(cell_state)


@njit(inline="always")
def lstm_block(c, forget, candidate, output, squashed, a_forget, a_candidate, a_output,
               p_forget, p_output):  # fmt: skip
    """A channel's 2x2 block ``d(c, h) / d(c, h)``, row by row, from its gates
    (:func:`lstm_channel`) at the state ``(c, h)`` (scalars only, for the CUDA simulator)."""
    forget_slope = forget * (1 - forget) * (c - candidate)
    dcell_dc = forget + forget_slope * p_forget
    dcell_dh = forget_slope * a_forget + (1 - forget) * (1 - candidate * candidate) * a_candidate
    output_slope = output * (1 - output) * squashed
    # dh/dc through the new cell state: directly and through the output gate's peephole.
    dh_dcell = output_slope * p_output + output * (1 - squashed * squashed)
    return dcell_dc, dcell_dh, dh_dcell * dcell_dc, output_slope * a_output + dh_dcell * dcell_dh


@njit_cached(fastmath=FASTMATH)
def lstm_step(h_prev, x_t, params, h_out):
    """ParaLSTM, CIFG with peepholes: state ``[c_0, h_0, c_1, h_1, ...]`` (:class:`ParaLSTM`).

    Written out rather than through :func:`lstm_channel`, the form LLVM is known to vectorise
    (a step through a tuple-returning helper once ran 4x slower; this one takes about 12 ns per
    channel and step either way, n = 64 on Zen 4).
    """
    recurrent, peephole = params
    n = h_prev.shape[0] // 2
    for j in range(n):
        c, h = h_prev[2 * j], h_prev[2 * j + 1]
        forget = smath.sigmoid(x_t[j] + recurrent[0, j] * h + peephole[0, j] * c)
        candidate = smath.tanh(x_t[n + j] + recurrent[1, j] * h)
        cell_state = candidate + forget * (c - candidate)
        output = smath.sigmoid(x_t[2 * n + j] + recurrent[2, j] * h + peephole[1, j] * cell_state)
        h_out[2 * j] = cell_state
        h_out[2 * j + 1] = output * smath.tanh(cell_state)


@njit_cached(fastmath=FASTMATH)
def lstm_jacobian(h_prev, x_t, params, jacobian_out):
    """ParaLSTM's 2x2 blocks ``d(c, h)_j / d(c, h)_j``."""
    a, p = params
    n = h_prev.shape[0] // 2
    for j in range(n):
        c, h = h_prev[2 * j], h_prev[2 * j + 1]
        forget, candidate, _, output, squashed = lstm_channel(
            c, h, x_t[j], x_t[n + j], x_t[2 * n + j], a[0, j], a[1, j], a[2, j], p[0, j], p[1, j]
        )
        (
            jacobian_out[j, 0, 0], jacobian_out[j, 0, 1],
            jacobian_out[j, 1, 0], jacobian_out[j, 1, 1],
        ) = lstm_block(
            c, forget, candidate, output, squashed, a[0, j], a[1, j], a[2, j], p[0, j], p[1, j]
        )  # fmt: skip


@njit_cached(fastmath=FASTMATH)
def lstm_step_with_jacobian(h_prev, x_t, params, h_out, jacobian_out):
    """:func:`lstm_step` and :func:`lstm_jacobian` at once (the gates computed once)."""
    a, p = params
    n = h_prev.shape[0] // 2
    for j in range(n):
        c, h = h_prev[2 * j], h_prev[2 * j + 1]
        forget, candidate, cell_state, output, squashed = lstm_channel(
            c, h, x_t[j], x_t[n + j], x_t[2 * n + j], a[0, j], a[1, j], a[2, j], p[0, j], p[1, j]
        )
        h_out[2 * j] = cell_state
        h_out[2 * j + 1] = output * squashed
        (
            jacobian_out[j, 0, 0], jacobian_out[j, 0, 1],
            jacobian_out[j, 1, 0], jacobian_out[j, 1, 1],
        ) = lstm_block(
            c, forget, candidate, output, squashed, a[0, j], a[1, j], a[2, j], p[0, j], p[1, j]
        )  # fmt: skip


@njit(inline="always")
def gru_channel_gradients(h, weight, u_update, u_reset, u_candidate, a_update, a_reset,
                          a_candidate):  # fmt: skip
    """One ParaGRU channel's pullback of the adjoint ``weight`` at the state ``h``: the
    gradients of its three projected inputs, then its shares of the recurrent weights'
    (scalars only, for the CUDA simulator; the compiled loops over channels vectorise)."""
    update = smath.sigmoid(u_update + a_update * h)
    reset = smath.sigmoid(u_reset + a_reset * h)
    candidate = smath.tanh(u_candidate + a_candidate * reset * h)
    d_update = weight * (candidate - h) * update * (1 - update)
    d_candidate = weight * update * (1 - candidate * candidate)
    d_reset = d_candidate * a_candidate * h * reset * (1 - reset)
    return d_update, d_reset, d_candidate, d_update * h, d_reset * h, d_candidate * reset * h


@njit(inline="always")
def lstm_channel_gradients(c, h, d_c, d_h, u_forget, u_candidate, u_output, a_forget,
                           a_candidate, a_output, p_forget, p_output):  # fmt: skip
    """One ParaLSTM channel's pullback of the adjoints ``(d_c, d_h)`` at the state ``(c, h)``
    (as :func:`gru_channel_gradients`): the gradients of its three projected inputs, then its
    shares of the recurrent weights' and the peephole weights'."""
    forget, candidate, cell_state, output, squashed = lstm_channel(
        c, h, u_forget, u_candidate, u_output, a_forget, a_candidate, a_output, p_forget, p_output
    )
    # Gradients of the gates' pre-activations, the output's first: it reads c[t].
    d_output = d_h * squashed * output * (1 - output)
    d_cell = d_c + d_h * output * (1 - squashed * squashed) + d_output * p_output
    d_forget = d_cell * (c - candidate) * forget * (1 - forget)
    d_candidate = d_cell * (1 - forget) * (1 - candidate * candidate)
    return (
        d_forget, d_candidate, d_output,
        d_forget * h, d_candidate * h, d_output * h, d_forget * c, d_output * cell_state,
    )  # fmt: skip


@njit_cached(parallel=True, fastmath=FASTMATH)
def gru_pullback(u, params, states, h0, adjoint, tasks, d_inputs, partial):
    """ParaGRU's gradients at every step: of its projected inputs into ``d_inputs``, and of its
    recurrent weights, summed per task into ``partial`` ``(tasks, 3, n)`` (float64)."""
    a = params[0]
    length, sequences, n = states.shape
    items = length * sequences
    for task in prange(tasks):
        for item in range(task * items // tasks, (task + 1) * items // tasks):
            t, sequence = item // sequences, item % sequences
            h_prev = states[t - 1, sequence] if t > 0 else h0[sequence]
            u_t, d_t, adjoint_t = u[t, sequence], d_inputs[t, sequence], adjoint[t, sequence]
            for i in range(n):
                d_t[i], d_t[n + i], d_t[2 * n + i], w_update, w_reset, w_candidate = (
                    gru_channel_gradients(
                        h_prev[i], adjoint_t[i], u_t[i], u_t[n + i], u_t[2 * n + i], a[0, i],
                        a[1, i], a[2, i],
                    )
                )  # fmt: skip
                partial[task, 0, i] += w_update
                partial[task, 1, i] += w_reset
                partial[task, 2, i] += w_candidate


@njit_cached(parallel=True, fastmath=FASTMATH)
def lstm_pullback(u, params, states, h0, adjoint, tasks, d_inputs, partial):
    """ParaLSTM's gradients at every step (as :func:`gru_pullback`): ``partial`` ``(tasks, 5,
    n)`` holds the recurrent weights' rows, then the peephole weights'."""
    a, p = params
    length, sequences, width = states.shape
    n = width // 2
    items = length * sequences
    for task in prange(tasks):
        for item in range(task * items // tasks, (task + 1) * items // tasks):
            t, sequence = item // sequences, item % sequences
            h_prev = states[t - 1, sequence] if t > 0 else h0[sequence]
            u_t, d_t, adjoint_t = u[t, sequence], d_inputs[t, sequence], adjoint[t, sequence]
            for j in range(n):
                (
                    d_t[j], d_t[n + j], d_t[2 * n + j],
                    w_forget, w_candidate, w_output, w_forget_peephole, w_output_peephole,
                ) = lstm_channel_gradients(
                    h_prev[2 * j], h_prev[2 * j + 1], adjoint_t[2 * j], adjoint_t[2 * j + 1],
                    u_t[j], u_t[n + j], u_t[2 * n + j], a[0, j], a[1, j], a[2, j], p[0, j],
                    p[1, j],
                )  # fmt: skip
                partial[task, 0, j] += w_forget
                partial[task, 1, j] += w_candidate
                partial[task, 2, j] += w_output
                partial[task, 3, j] += w_forget_peephole
                partial[task, 4, j] += w_output_peephole


def gru_channel_pullback(u_t, params, h_prev, adjoint_t, i, d_t, sums):
    """:func:`gru_channel_gradients` at channel ``i`` of one step, on its rows: the body of the
    GPU's pullback kernel (:mod:`scanlab.cuda.cell_pullback`), which compiles it; ``sums[:3]``
    gains the channel's shares."""
    a = params[0]
    n = h_prev.shape[0]
    d_t[i], d_t[n + i], d_t[2 * n + i], w_update, w_reset, w_candidate = gru_channel_gradients(
        h_prev[i], adjoint_t[i], u_t[i], u_t[n + i], u_t[2 * n + i], a[0, i], a[1, i], a[2, i]
    )
    sums[0] += w_update
    sums[1] += w_reset
    sums[2] += w_candidate


def lstm_channel_pullback(u_t, params, h_prev, adjoint_t, j, d_t, sums):
    """:func:`lstm_channel_gradients` at channel ``j`` of one step, on its rows (as
    :func:`gru_channel_pullback`); ``sums[:5]`` gains the channel's shares."""
    a, p = params
    n = h_prev.shape[0] // 2
    (
        d_t[j], d_t[n + j], d_t[2 * n + j],
        w_forget, w_candidate, w_output, w_forget_peephole, w_output_peephole,
    ) = lstm_channel_gradients(
        h_prev[2 * j], h_prev[2 * j + 1], adjoint_t[2 * j], adjoint_t[2 * j + 1], u_t[j],
        u_t[n + j], u_t[2 * n + j], a[0, j], a[1, j], a[2, j], p[0, j], p[1, j],
    )  # fmt: skip
    sums[0] += w_forget
    sums[1] += w_candidate
    sums[2] += w_output
    sums[3] += w_forget_peephole
    sums[4] += w_output_peephole


#: The initialisations of :class:`ParaGRU` and :class:`ParaLSTM` (their ``init``).
INITIALISATIONS = ("pararnn", "uniform")


def diagonal_normal(rng, rows: int, n: int) -> np.ndarray:
    """ParaRNN's diagonal weights (its ``xlstm`` initialisation): ``(rows, n)`` values drawn
    from ``N(0, (2 / sqrt(5 n))^2)``."""
    return rng.normal(0.0, 2 / np.sqrt(5 * n), (rows, n))


def glorot_uniform(rng, shape: tuple, fan_in: int, fan_out: int) -> np.ndarray:
    """Uniform in ``+-sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio 2010)."""
    bound = np.sqrt(6 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape)


def first_gate_minus_linspace(gates: int, n: int) -> np.ndarray:
    """ParaRNN's biases ``(gates, n)``: zero, but ``-linspace(0, 1, n)`` for the first gate."""
    bias = np.zeros((gates, n))
    bias[0] = np.linspace(0.0, -1.0, n)
    return bias


class ParaGRU(BuiltinCell):
    """ParaRNN's GRU (Danieli et al. 2025): gates whose recurrent weights are diagonal, so its
    Jacobian is diagonal.

    With ``u = input_weights @ x[t] + bias`` (three gates) and ``a = recurrent_weights``::

        z = sigmoid(u[0] + a[0] h),  r = sigmoid(u[1] + a[1] h),
        c = tanh(u[2] + a[2] (r h)), h[t] = (1 - z) h + z c      (h = h[t-1], elementwise)

    Parameters
    ----------
    n, m : int
        State and input sizes.
    seed : int, optional
        Seed of the random initialisation.
    init : {"pararnn", "uniform"}, optional
        ``"pararnn"`` (the default) is ParaRNN's, as its code sets it: recurrent weights drawn
        from ``N(0, (2 / sqrt(5 n))^2)``, input weights uniform in ``+-sqrt(6 / (m / heads +
        n))`` (Glorot's bound with a head's inputs as fan-in and, as ParaRNN's GRU has it, the
        whole state as fan-out), biases zero but the update gate's, ``-linspace(0, 1, n)``.
        ``"uniform"`` (scanlab's earlier one): input weights and biases uniform in
        ``+-1/sqrt(n)``, recurrent weights in ``+-1``.
    heads : int, optional
        Heads of the block-diagonal input projection (see :class:`BuiltinCell`); they must
        divide ``n`` and ``m``. 1 (the default) is dense; ParaRNN's cells default to 2 and the
        language-model configurations in its repository set 4.

    Attributes
    ----------
    recurrent_weights : ndarray, shape (3, n)
        Diagonal recurrent weights of the update, reset and candidate gates.
    input_weights : ndarray, shape (3, n, m)
        Zero outside the heads' blocks.
    bias : ndarray, shape (3, n)

    Examples
    --------
    >>> import numpy as np
    >>> import scanlab
    >>> gru = scanlab.cells.ParaGRU(4, 2, seed=0)
    >>> gru.bias[0]  # the update gate's
    array([ 0.        , -0.33333333, -0.66666667, -1.        ])
    >>> x = np.random.default_rng(0).standard_normal((100, 2))
    >>> h, info = scanlab.nonlinear_recurrence(gru, x, None, method="newton", full_output=True)
    >>> h.shape, info.converged
    ((100, 4), True)
    """

    gates = 3
    initialisations = INITIALISATIONS
    pullback_kernel = staticmethod(gru_pullback)
    channel_pullback = staticmethod(gru_channel_pullback)

    def __init__(self, n: int, m: int, seed=None, *, init: str = "pararnn", heads: int = 1):
        super().__init__(gru_step, gru_jacobian, "diagonal", n, m, seed, init=init, heads=heads)
        self.step_with_jacobian = gru_step_with_jacobian

    def uniform_parameters(self, rng) -> dict:
        values = super().uniform_parameters(rng)
        return {**values, "recurrent_weights": rng.uniform(-1.0, 1.0, (3, self.hidden_size))}

    def pararnn_parameters(self, rng) -> dict:
        """``init="pararnn"`` (see the class)."""
        n, m = self.hidden_size, self.input_size
        return {
            "recurrent_weights": diagonal_normal(rng, 3, n),
            "input_weights": glorot_uniform(rng, (3, n, m), m // self.heads, n),
            "bias": first_gate_minus_linspace(3, n),
        }


class ParaLSTM(BuiltinCell):
    """ParaRNN's LSTM (Danieli et al. 2025): coupled input and forget gates (CIFG), peepholes
    and diagonal recurrent weights, so its Jacobian has a 2x2 block per channel.

    The state of ``n`` channels has length ``2 n``, ``[c_0, h_0, c_1, h_1, ...]`` (use
    :meth:`output` for the ``h`` part). With ``u = input_weights @ x[t] + bias`` (three gates),
    ``a = recurrent_weights`` and ``p = peephole_weights``, elementwise, ``(c, h)`` the state
    before the step::

        f = sigmoid(u[0] + a[0] h + p[0] c),   z = tanh(u[1] + a[1] h),
        c[t] = f c + (1 - f) z,                o = sigmoid(u[2] + a[2] h + p[1] c[t]),
        h[t] = o tanh(c[t])

    Parameters
    ----------
    n, m : int
        Channels (the state has ``2 n`` values) and input size.
    seed : int, optional
        Seed of the random initialisation.
    init : {"pararnn", "uniform"}, optional
        ``"pararnn"`` (the default) is ParaRNN's, as its code sets it: recurrent and peephole
        weights drawn from ``N(0, (2 / sqrt(5 n))^2)``, input weights uniform in
        ``+-sqrt(6 / (m / heads + n / heads))`` (Glorot's bound with a head's inputs and
        channels as fan-in and fan-out), biases zero but the forget gate's,
        ``-linspace(0, 1, n)``. ``"uniform"``: input weights and biases uniform in
        ``+-1/sqrt(n)``, recurrent and peephole weights in ``+-1``, and 1 added to the forget
        gate's biases.
    heads : int, optional
        Heads of the block-diagonal input projection (see :class:`BuiltinCell`); they must
        divide ``n`` and ``m``. 1 (the default) is dense; ParaRNN's cells default to 2 and the
        language-model configurations in its repository set 4.

    Attributes
    ----------
    recurrent_weights : ndarray, shape (3, n)
        Diagonal recurrent weights of the forget gate, the candidate and the output gate.
    peephole_weights : ndarray, shape (2, n)
        The forget gate's weights on ``c`` and the output gate's on ``c[t]``.
    input_weights : ndarray, shape (3, n, m)
        Zero outside the heads' blocks.
    bias : ndarray, shape (3, n)

    Notes
    -----
    ParaRNN's code stacks the gates as forget, output, candidate; here they are in the order
    of the equations (forget, candidate, output).

    Examples
    --------
    Two heads: the input weights of channels 0-1 read inputs 0-2 only.

    >>> import numpy as np
    >>> import scanlab
    >>> lstm = scanlab.cells.ParaLSTM(4, 6, seed=0, heads=2)
    >>> lstm.input_weights[0, :2, 3:]
    array([[0., 0., 0.],
           [0., 0., 0.]])
    >>> x = np.random.default_rng(0).standard_normal((100, 6))
    >>> hc, info = scanlab.nonlinear_recurrence(lstm, x, None, method="newton", full_output=True)
    >>> hc.shape, lstm.output(hc).shape, info.converged
    ((100, 8), (100, 4), True)
    """

    gates = 3
    states_per_channel = 2
    step_parameter_names = ("recurrent_weights", "peephole_weights")
    initialisations = INITIALISATIONS
    pullback_kernel = staticmethod(lstm_pullback)
    channel_pullback = staticmethod(lstm_channel_pullback)

    def __init__(self, n: int, m: int, seed=None, *, init: str = "pararnn", heads: int = 1):
        super().__init__(lstm_step, lstm_jacobian, ("block", 2), n, m, seed, init=init, heads=heads)
        self.step_with_jacobian = lstm_step_with_jacobian

    def uniform_parameters(self, rng) -> dict:
        values = super().uniform_parameters(rng)
        values["bias"][0] += 1.0
        n = self.hidden_size
        values["recurrent_weights"] = rng.uniform(-1.0, 1.0, (3, n))
        values["peephole_weights"] = rng.uniform(-1.0, 1.0, (2, n))
        return values

    def pararnn_parameters(self, rng) -> dict:
        """``init="pararnn"`` (see the class)."""
        n, m, heads = self.hidden_size, self.input_size, self.heads
        return {
            "recurrent_weights": diagonal_normal(rng, 3, n),
            "peephole_weights": diagonal_normal(rng, 2, n),
            "input_weights": glorot_uniform(rng, (3, n, m), m // heads, n // heads),
            "bias": first_gate_minus_linspace(3, n),
        }

    def output(self, states: np.ndarray) -> np.ndarray:
        """The hidden outputs ``h`` of every channel, ``states[..., 1::2]``."""
        return states[..., 1::2]


__all__ = ["ParaGRU", "ParaLSTM"]
