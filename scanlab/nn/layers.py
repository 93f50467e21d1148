"""Recurrent layers in NumPy with their backward passes, their scans solved by scanlab.

The layers are framework-agnostic: plain NumPy arrays in and out, no automatic differentiation.
Every layer has the same interface:

``layer.params``
    A dict from names to the parameter arrays themselves: an optimiser
    (:class:`scanlab.nn.optim.Adam`) updates them in place, and so may the user (to set a gate's
    bias, say).
``y, cache = layer.forward(x, h0=None, *, device="auto")``
    ``x`` has time first, shape ``(T, *batch, input_size)``, and ``y`` has shape
    ``(T, *batch, hidden_size)``. ``h0`` is the state before the first step, of shape
    ``(*batch, hidden_size)`` or broadcastable to it (zeros by default). ``device`` is where the
    scans run, as in :func:`scanlab.linear_recurrence`. ``cache`` holds what the backward pass
    needs (the input and the activations, ``O(T * batch * hidden_size)`` memory): ``x`` and
    ``y`` themselves, not copies, so change neither in place before :meth:`backward` (copy
    ``y`` first; a changed one gives wrong gradients, or a Newton layer's "h does not solve
    the recurrence").

    With host (NumPy) arrays everything runs on the host: the dense products in NumPy (BLAS),
    the gates in compiled kernels on Numba's threads (:mod:`scanlab.cpu.layer_gates`);
    ``device="cuda"`` moves only the scans to the GPU. Given GPU arrays (CuPy, PyTorch,
    Numba; a :class:`OneHot` of GPU indices, see :meth:`OneHot.to_device`) for ``x`` or
    ``h0``, the whole forward and backward passes run on the GPU: ``y``, ``dx`` and ``dh0``
    are device arrays (Numba's), ``grads`` host arrays like ``params``, and only the weights
    and their gradients cross to and from the host.
``dx, grads = layer.backward(cache, dy)``
    ``dy = dL/dy`` in ``y``'s shape; ``dx = dL/dx`` in ``x``'s shape (None for a
    :class:`OneHot` input, which has no gradient) and ``grads`` a dict with the keys and shapes
    of ``params``. The backward pass runs where the forward pass ran (a host ``dy`` is copied
    to the GPU; a GPU ``dy`` for a forward pass on the host is a TypeError).
``dx, grads, dh0 = layer.backward(cache, dy, return_dh0=True)``
    Also ``dh0 = dL/dh0`` in the shape of the forward's ``h0`` (summed over the axes it was
    broadcast along), or ``(*batch, hidden_size)`` when it was None (the gradient with respect to
    the zero state): for a learned initial state, or one that an encoder computes.

:class:`Linear` (a dense layer applied at every step) has no state: its ``forward`` takes only
``x``, of shape ``(..., input_size)``.

Every step's dense products are one matrix product over all steps and sequences; the recurrences
that remain are linear in the state, so each is one :func:`scanlab.linear_recurrence` (parallel
over time) forward and one :func:`scanlab.linear_recurrence_vjp` backward (Martin & Cundy 2018).
:class:`ParaGRULayer` and :class:`ParaLSTMLayer` (ParaRNN's cells, Danieli et al. 2025) are
nonlinear: :func:`scanlab.nonlinear_recurrence` forward, :func:`scanlab.nonlinear_recurrence_vjp`
backward (:class:`NewtonLayer`, in :mod:`scanlab.nn.newton_layers`).

One-hot inputs need not be materialised: wrap their indices in :class:`OneHot` and the first
layer's input product becomes a gather of rows of its input weights.

Parameters are stored for ``x @ weight`` (shape ``(input_size, gates * hidden_size)``), the gates
side by side in the order of each layer's docstring, and initialised uniformly in
``[-1/sqrt(hidden_size), 1/sqrt(hidden_size)]`` as in PyTorch's recurrent layers (``Linear``:
``input_size``), biases at zero but where a layer says otherwise. :class:`ParaGRULayer` and
:class:`ParaLSTMLayer` keep their cells' layout and initialisation (ParaRNN's by default).
"""

from typing import NamedTuple

import numpy as np

from scanlab._devices import cuda_module, on_gpu, resolve_device
from scanlab.cpu import layer_gates as cpu_layer_gates
from scanlab.gradients import linear_recurrence_vjp, reduce_to
from scanlab.linear import linear_recurrence
from scanlab.nn.operands import (
    OneHot,
    check_dtype,
    check_input,
    check_output_gradient,
    initial_state,
)
from scanlab.nn.products import (
    input_backward,
    input_product,
    matrix_product,
    rows_of,
    sum_over_steps,
    transposed_product,
)


def uniform_weights(rng, shape: tuple, fan: int, dtype) -> np.ndarray:
    """Uniform in ``[-1/sqrt(fan), 1/sqrt(fan)]`` (no weights to draw when ``fan`` is 0)."""
    bound = 1 / np.sqrt(max(fan, 1))
    return rng.uniform(-bound, bound, shape).astype(dtype)


def runs_on_gpu(x, h0=None, device: str = "auto") -> bool:
    """Whether a layer given ``x`` and ``h0`` runs on the GPU: either is a GPU array (``x``, or
    the indices of a :class:`OneHot` ``x``). ``device`` is checked against them (GPU arrays
    with ``device="cpu"`` are a TypeError)."""
    indices_or_x = x.indices if isinstance(x, OneHot) else x
    resolve_device(device, x=indices_or_x, h0=h0)
    return on_gpu(indices_or_x) or on_gpu(h0)


def previous_states(states, h0):
    """The state before each step: ``h0`` (zeros when None), then ``states[:-1]``; a new
    array where ``states`` are."""
    if on_gpu(states):
        return cuda_module("elementwise").previous_states(states, h0)
    previous = np.empty_like(states)
    previous[1:] = states[:-1]
    if len(states):
        previous[0] = 0 if h0 is None else h0
    return previous


def following_gradients(dprevious):
    """The states' gradients from those of :func:`previous_states` (their ``states[:-1]``
    part): ``dprevious[1:]``, then zeros; a new array where ``dprevious`` is."""
    if on_gpu(dprevious):
        return cuda_module("elementwise").following_gradients(dprevious)
    gradients = np.empty_like(dprevious)
    gradients[:-1] = dprevious[1:]
    if len(gradients):
        gradients[-1] = 0
    return gradients


def multiply(first_factor, second_factor):
    """``first_factor * second_factor`` (arrays of one shape and dtype), where they are."""
    if on_gpu(first_factor):
        return cuda_module("elementwise").multiply(first_factor, second_factor)
    return first_factor * second_factor


def add_into(total, term) -> None:
    """``total += term`` (arrays of one shape and dtype), where they are."""
    if on_gpu(total):
        cuda_module("elementwise").add(total, term, total)
    else:
        total += term


def reduced_to(values, shape: tuple):
    """``values`` summed over the axes along which an array of ``shape`` was broadcast to
    them, where ``values`` are (:func:`scanlab.gradients.reduce_to` on the host)."""
    if not on_gpu(values):
        return reduce_to(values, shape)
    if tuple(values.shape) == tuple(shape):
        return values
    aligned = (1,) * (values.ndim - len(shape)) + tuple(shape)
    return cuda_module("gradients").summed_to(values, aligned).reshape(shape)


def gate_kernels(gpu: bool):
    """The layers' gate kernels where the layer runs: :mod:`scanlab.cuda.layer_gates` or its
    twin :mod:`scanlab.cpu.layer_gates` (rows of a ``(R, gates n)`` pre-activation array)."""
    return cuda_module("layer_gates") if gpu else cpu_layer_gates


class LinearCache(NamedTuple):
    """What :meth:`Linear.backward` needs: the input."""

    x: object


class Linear:
    """A dense layer ``y = x @ weight + bias``, applied over the last axis.

    Parameters
    ----------
    input_size, output_size : int
        Features in and out.
    seed : int or numpy.random.Generator, optional
        Seeds the initial weights (uniform in ``[-1/sqrt(input_size), 1/sqrt(input_size)]``).
    dtype : float32 or float64, optional
        The parameters' dtype, in which the layer computes.

    Notes
    -----
    ``params``: ``"weight"`` ``(input_size, output_size)``, ``"bias"`` ``(output_size,)``.
    ``forward(x)`` takes ``x`` of shape ``(..., input_size)`` (or a :class:`OneHot`, which makes
    the layer an embedding) and returns ``y, cache``; ``backward(cache, dy)`` returns
    ``dx, grads`` as for the recurrent layers (module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from scanlab.nn import Linear
    >>> layer = Linear(3, 2, seed=0)
    >>> y, cache = layer.forward(np.ones((4, 3), np.float32))
    >>> dx, grads = layer.backward(cache, np.ones((4, 2), np.float32))
    >>> y.shape, dx.shape, grads["weight"].shape
    ((4, 2), (4, 3), (3, 2))
    """

    def __init__(self, input_size: int, output_size: int, *, seed=None, dtype=np.float32):
        self.dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        self.params = {
            "weight": uniform_weights(rng, (input_size, output_size), input_size, self.dtype),
            "bias": np.zeros(output_size, self.dtype),
        }

    def forward(self, x):
        """``y = x @ weight + bias`` and the cache for :meth:`backward` (on the GPU for a GPU
        ``x``)."""
        x = check_input(x, self.params["weight"].shape[0], self.dtype, min_ndim=1)
        return input_product(x, self.params["weight"], self.params["bias"]), LinearCache(x)

    def backward(self, cache: LinearCache, dy):
        """``dL/dx`` and the parameters' gradients, given ``dy = dL/dy``."""
        shape = cache.x.shape[:-1] + self.params["bias"].shape
        dy = check_output_gradient(dy, shape, self.dtype, runs_on_gpu(cache.x))
        dweight, dx = input_backward(cache.x, self.params["weight"], dy)
        return dx, {"weight": dweight, "bias": sum_over_steps(dy)}


class GILRCache(NamedTuple):
    """What :meth:`GILR.backward` needs: the input, the activations, the states, the device."""

    x: object
    h0: np.ndarray | None
    h0_shape: tuple
    gate: np.ndarray
    candidate: np.ndarray
    states: np.ndarray
    device: str


class GILR:
    r"""Gated impulse linear recurrence (Martin & Cundy 2018), a linear surrogate RNN.

    .. math::

        g_t = \sigma(x_t V_g + b_g), \quad j_t = \tanh(x_t V_j + b_j), \quad
        h_t = g_t h_{t-1} + (1 - g_t) j_t

    The state depends on the past only through the gates, so the whole sequence is one
    :func:`scanlab.linear_recurrence`, parallel over time.

    Parameters
    ----------
    input_size, hidden_size : int
        Features in and out.
    seed : int or numpy.random.Generator, optional
        Seeds the initial weights.
    dtype : float32 or float64, optional
        The parameters' dtype, in which the layer computes.

    Notes
    -----
    ``params``: ``"input_weight"`` ``(input_size, 2 * hidden_size)`` holding ``[V_g, V_j]``,
    ``"bias"`` ``(2 * hidden_size,)`` holding ``[b_g, b_j]``, initially zero. The interface is the
    module docstring's; the backward pass is one :func:`scanlab.linear_recurrence_vjp`.

    See Also
    --------
    GILRLSTM : an LSTM whose gates read this layer's state.

    Examples
    --------
    >>> import numpy as np
    >>> from scanlab.nn import GILR
    >>> layer = GILR(4, 8, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((100, 2, 4)).astype(np.float32)
    >>> y, cache = layer.forward(x)
    >>> dx, grads = layer.backward(cache, np.ones_like(y))
    >>> y.shape, dx.shape, sorted(grads)
    ((100, 2, 8), (100, 2, 4), ['bias', 'input_weight'])
    """

    def __init__(self, input_size: int, hidden_size: int, *, seed=None, dtype=np.float32):
        self.dtype = check_dtype(dtype)
        self.hidden_size = hidden_size
        rng = np.random.default_rng(seed)
        shape = (input_size, 2 * hidden_size)
        self.params = {
            "input_weight": uniform_weights(rng, shape, hidden_size, self.dtype),
            "bias": np.zeros(2 * hidden_size, self.dtype),
        }

    def forward(self, x, h0=None, *, device: str = "auto"):
        """Every state ``h_t``, shape ``(T, *batch, hidden_size)``, and the cache."""
        gpu = runs_on_gpu(x, h0, device)
        x = check_input(x, self.params["input_weight"].shape[0], self.dtype, 2, gpu)
        n = self.hidden_size
        h0, h0_shape = initial_state(h0, x.shape[1:-1], n, self.dtype, gpu)
        pre = input_product(x, self.params["input_weight"], self.params["bias"])
        shape = pre.shape[:-1] + (n,)
        gate, candidate, drive = (
            value.reshape(shape) for value in gate_kernels(gpu).gilr_gates(rows_of(pre))
        )
        states = linear_recurrence(gate, drive, h0, device=device)
        return states, GILRCache(x, h0, h0_shape, gate, candidate, states, device)

    def backward(self, cache: GILRCache, dy, *, return_dh0: bool = False):
        """``dL/dx`` and the parameters' gradients (and ``dL/dh0``), given ``dy = dL/dh``."""
        gpu = on_gpu(cache.states)
        dy = check_output_gradient(dy, cache.states.shape, self.dtype, gpu)
        gate, candidate, n = cache.gate, cache.candidate, self.hidden_size
        dgate, ddrive, dh0 = linear_recurrence_vjp(
            gate, cache.states, dy, cache.h0, device=cache.device
        )
        dpre = gate_kernels(gpu).gilr_gradients(*map(rows_of, (dgate, ddrive, gate, candidate)))
        dpre = dpre.reshape(gate.shape[:-1] + (2 * n,))
        dweight, dx = input_backward(cache.x, self.params["input_weight"], dpre)
        grads = {"input_weight": dweight, "bias": sum_over_steps(dpre)}
        return (dx, grads, reduced_to(dh0, cache.h0_shape)) if return_dh0 else (dx, grads)


class GILRLSTMCache(NamedTuple):
    """What :meth:`GILRLSTM.backward` needs: the surrogate's cache, the gates and the cells."""

    surrogate: GILRCache
    forget: np.ndarray
    input_gate: np.ndarray
    output_gate: np.ndarray
    candidate: np.ndarray
    cells: np.ndarray


class GILRLSTM:
    r"""An LSTM whose gates read a GILR's state instead of its own (Martin & Cundy 2018).

    With :math:`\tilde h` the states of a :class:`GILR` on ``x``:

    .. math::

        f_t, i_t, o_t &= \sigma(\tilde h_{t-1} U_{f,i,o} + x_t V_{f,i,o} + b_{f,i,o}), \quad
        z_t = \tanh(\tilde h_{t-1} U_z + x_t V_z + b_z), \\
        c_t &= f_t c_{t-1} + i_t z_t, \quad h_t = o_t c_t

    with :math:`\tilde h_{-1} = h_0` (zeros by default) and :math:`c_{-1} = 0`. Nothing feeds
    back nonlinearly, so the layer is two :func:`scanlab.linear_recurrence` (``h~`` then ``c``)
    and matrix products over all steps.

    Parameters
    ----------
    input_size, hidden_size : int
        Features in and out.
    seed : int or numpy.random.Generator, optional
        Seeds the initial weights.
    dtype : float32 or float64, optional
        The parameters' dtype, in which the layer computes.

    Notes
    -----
    ``params``: ``"surrogate_input_weight"`` and ``"surrogate_bias"`` (the GILR's, see
    :class:`GILR`); ``"recurrent_weight"`` ``(hidden_size, 4 * hidden_size)`` holding
    ``[U_f, U_i, U_o, U_z]``; ``"input_weight"`` ``(input_size, 4 * hidden_size)`` holding
    ``[V_f, V_i, V_o, V_z]``; ``"bias"`` ``(4 * hidden_size,)`` holding ``[b_f, b_i, b_o, b_z]``,
    with ``b_f = 1`` (a forget gate open at the start, Jozefowicz et al. 2015) and the rest zero.
    For long memories set a larger ``b_f`` in place:
    ``layer.params["bias"][:hidden_size] = 3.0``.

    See Also
    --------
    GILR : the surrogate.

    Examples
    --------
    >>> import numpy as np
    >>> from scanlab.nn import GILRLSTM, OneHot
    >>> layer = GILRLSTM(16, 8, seed=0)
    >>> x = OneHot(np.random.default_rng(0).integers(0, 16, (100, 2)), 16)
    >>> y, cache = layer.forward(x)
    >>> dx, grads = layer.backward(cache, np.ones_like(y))
    >>> y.shape, dx, grads["recurrent_weight"].shape
    ((100, 2, 8), None, (8, 32))
    """

    def __init__(self, input_size: int, hidden_size: int, *, seed=None, dtype=np.float32):
        self.dtype = check_dtype(dtype)
        self.hidden_size = hidden_size
        rng = np.random.default_rng(seed)
        self.surrogate = GILR(input_size, hidden_size, seed=rng, dtype=dtype)
        gates = 4 * hidden_size
        bias = np.zeros(gates, self.dtype)
        bias[:hidden_size] = 1
        self.params = {
            "surrogate_input_weight": self.surrogate.params["input_weight"],
            "surrogate_bias": self.surrogate.params["bias"],
            "recurrent_weight": uniform_weights(rng, (hidden_size, gates), hidden_size, self.dtype),
            "input_weight": uniform_weights(rng, (input_size, gates), hidden_size, self.dtype),
            "bias": bias,
        }

    def forward(self, x, h0=None, *, device: str = "auto"):
        """Every output ``h_t``, shape ``(T, *batch, hidden_size)``, and the cache."""
        surrogate, surrogate_cache = self.surrogate.forward(x, h0, device=device)
        x, n = surrogate_cache.x, self.hidden_size
        pre = input_product(x, self.params["input_weight"], self.params["bias"])
        # The gates read h~_{t-1}: h0 at the first step, then the surrogate shifted by one.
        previous = previous_states(surrogate, surrogate_cache.h0)
        pre = matrix_product(previous, self.params["recurrent_weight"], out=pre)
        shape = pre.shape[:-1] + (n,)
        gates = gate_kernels(on_gpu(pre)).lstm_gates(rows_of(pre))
        forget, input_gate, output_gate, candidate, drive = (gate.reshape(shape) for gate in gates)
        del pre, previous
        cells = linear_recurrence(forget, drive, device=device)
        cache = GILRLSTMCache(surrogate_cache, forget, input_gate, output_gate, candidate, cells)
        return multiply(output_gate, cells), cache

    def backward(self, cache: GILRLSTMCache, dy, *, return_dh0: bool = False):
        """``dL/dx`` and the parameters' gradients (and ``dL/dh0``), given ``dy = dL/dh``."""
        gpu = on_gpu(cache.cells)
        dy = check_output_gradient(dy, cache.cells.shape, self.dtype, gpu)
        forget, input_gate, output_gate = cache.forget, cache.input_gate, cache.output_gate
        candidate, cells = cache.candidate, cache.cells
        surrogate_cache = cache.surrogate
        dforget, dinput, _ = linear_recurrence_vjp(
            forget, cells, multiply(dy, output_gate), device=surrogate_cache.device
        )
        n = self.hidden_size
        operands = (dforget, dinput, dy, forget, input_gate, output_gate, candidate, cells)
        dpre = gate_kernels(gpu).lstm_gradients(*map(rows_of, operands))
        dpre = dpre.reshape(cells.shape[:-1] + (4 * n,))
        del dforget, dinput

        recurrent_weight = self.params["recurrent_weight"]
        previous = previous_states(surrogate_cache.states, surrogate_cache.h0)
        drecurrent = transposed_product(previous, dpre)
        del previous
        dprevious = matrix_product(dpre, recurrent_weight.T)
        dx_surrogate, surrogate_grads, dh0 = self.surrogate.backward(
            surrogate_cache, following_gradients(dprevious), return_dh0=True
        )
        if len(dpre):
            # h0 also feeds the gates of the first step.
            add_into(dh0, reduced_to(dprevious[0], surrogate_cache.h0_shape))
        dweight, dx = input_backward(surrogate_cache.x, self.params["input_weight"], dpre)
        if dx is not None:
            add_into(dx, dx_surrogate)
        grads = {
            "surrogate_input_weight": surrogate_grads["input_weight"],
            "surrogate_bias": surrogate_grads["bias"],
            "recurrent_weight": drecurrent,
            "input_weight": dweight,
            "bias": sum_over_steps(dpre),
        }
        return (dx, grads, dh0) if return_dh0 else (dx, grads)


__all__ = ["GILR", "GILRLSTM", "Linear"]
