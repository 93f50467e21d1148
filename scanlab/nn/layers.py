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
    scans run, as in :func:`scanlab.linear_recurrence`; the matrix products and elementwise
    functions run in NumPy on the host. ``cache`` holds what the backward pass needs (the
    input and the activations, ``O(T * batch * hidden_size)`` memory). The Newton layers
    (:class:`ParaGRULayer`, :class:`ParaLSTMLayer`) also take GPU arrays (CuPy, PyTorch,
    Numba): their forward and backward passes then run on the GPU, ``y``, ``dx`` and ``dh0``
    are device arrays and ``grads`` host arrays; the other layers take host arrays.
``dx, grads = layer.backward(cache, dy)``
    ``dy = dL/dy`` in ``y``'s shape; ``dx = dL/dx`` in ``x``'s shape (None for a
    :class:`OneHot` input, which has no gradient) and ``grads`` a dict with the keys and shapes
    of ``params``. The backward pass runs on the device of the forward pass.
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

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse

from scanlab._arrays import numeric_array, stand_in
from scanlab._devices import cuda_module, on_gpu
from scanlab.gradients import linear_recurrence_vjp, reduce_to
from scanlab.linear import linear_recurrence


@dataclass(frozen=True)
class OneHot:
    """One-hot vectors given by their indices, optionally scaled: ``values * e[indices]``.

    A layer's input product with a ``OneHot`` is a gather of rows of its input weights, so a
    sequence of one-hot vectors costs one integer per step instead of ``size`` floats.

    Parameters
    ----------
    indices : array_like of int, shape (T, *batch)
        The position of the nonzero entry of each vector, in ``[0, size)``.
    size : int
        The length of the vectors (the layer's ``input_size``).
    values : array_like of float, optional
        The nonzero entries, broadcastable to ``indices``' shape (ones by default): ``-1`` at a
        step makes its input ``-e[index]``.

    Examples
    --------
    >>> import numpy as np
    >>> from scanlab.nn import OneHot
    >>> x = OneHot(np.array([[2], [0]]), 3, values=np.array([[-1.0], [1.0]]))
    >>> x.shape
    (2, 1, 3)
    >>> x.dense(np.float64)
    array([[[ 0.,  0., -1.]],
    <BLANKLINE>
           [[ 1.,  0.,  0.]]])
    """

    indices: np.ndarray
    size: int
    values: np.ndarray | None = None

    def __post_init__(self):
        indices = np.asarray(self.indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"OneHot indices must be integers, got dtype {indices.dtype}")
        if not isinstance(self.size, (int, np.integer)) or self.size < 1:
            raise ValueError(f"OneHot size must be a positive integer, got {self.size!r}")
        if indices.size and (indices.min() < 0 or indices.max() >= self.size):
            raise ValueError(
                f"OneHot indices must lie in [0, {self.size}), got values from {indices.min()} "
                f"to {indices.max()}"
            )
        object.__setattr__(self, "indices", indices)
        if self.values is not None:
            values = np.asarray(self.values)
            if values.dtype.kind not in "biuf":
                raise TypeError(f"OneHot values must be real numbers, got dtype {values.dtype}")
            try:
                np.broadcast_to(values, indices.shape)
            except ValueError:
                raise ValueError(
                    f"OneHot values with shape {values.shape} do not broadcast to the indices' "
                    f"shape {indices.shape}"
                ) from None
            object.__setattr__(self, "values", values)

    @property
    def shape(self) -> tuple:
        """The shape of the dense array: ``indices.shape + (size,)``."""
        return self.indices.shape + (self.size,)

    def dense(self, dtype=np.float32) -> np.ndarray:
        """The one-hot vectors as a dense array of ``dtype``."""
        result = np.zeros(self.shape, dtype)
        values = 1 if self.values is None else self.values
        np.put_along_axis(result, self.indices[..., None], np.expand_dims(values, -1), axis=-1)
        return result


def check_dtype(dtype) -> np.dtype:
    """``dtype`` if it is float32 or float64, else a TypeError."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_input(x, input_size: int, dtype, min_ndim: int, gpu_arrays: bool = False):
    """``x`` as a float array of ``dtype`` (or a :class:`OneHot`) with ``input_size`` features:
    a GPU ``x`` stays a GPU array (a copy on the GPU in another dtype) where the layer takes
    GPU arrays (``gpu_arrays``), and is refused otherwise."""
    if isinstance(x, OneHot):
        if x.size != input_size:
            raise ValueError(
                f"x is a OneHot of size {x.size}, but the layer has input_size {input_size}"
            )
        if x.indices.ndim < min_ndim - 1:
            raise ValueError(f"x needs a time axis, shape (T, *batch); got indices {x.shape}")
        return x
    if on_gpu(x) and not gpu_arrays:
        raise TypeError(
            "x is a GPU array, but this layer takes host (NumPy) arrays (the Newton layers, "
            "ParaGRULayer and ParaLSTMLayer, take GPU arrays): copy it to the host first "
            "(device='cuda' still solves the recurrence on the GPU)"
        )
    view = numeric_array("x", x, stand_in)
    if view.dtype.kind != "f":
        raise TypeError(
            f"x must hold floats, got dtype {view.dtype}; for one-hot indices pass "
            "scanlab.nn.OneHot(indices, input_size), else convert with .astype(np.float32)"
        )
    layout = "(T, *batch, input_size)" if min_ndim == 2 else "(..., input_size)"
    if view.ndim < min_ndim or view.shape[-1] != input_size:
        raise ValueError(
            f"x must have shape {layout} with input_size={input_size}, got {view.shape}"
        )
    return in_dtype(x, view, dtype)


def broadcast_initial_state(h0, batch: tuple, hidden_size: int, dtype):
    """``h0`` broadcast to ``(*batch, hidden_size)`` in ``dtype`` (or None), and the shape of
    its gradient: ``h0``'s own, or the broadcast shape when it is None."""
    shape = batch + (hidden_size,)
    if h0 is None:
        return None, shape
    h0 = numeric_array("h0", h0)
    try:
        return np.broadcast_to(h0, shape).astype(dtype), h0.shape
    except ValueError:
        raise ValueError(
            f"h0 must broadcast to (*batch, hidden_size) = {shape} for x of batch shape {batch}, "
            f"got {h0.shape}"
        ) from None


def check_output_gradient(dy, shape: tuple, dtype, gpu_arrays: bool = False):
    """``dy`` in ``dtype``, checked to have the forward output's ``shape``; a GPU ``dy`` as
    :func:`check_input` takes a GPU ``x``."""
    if on_gpu(dy) and not gpu_arrays:
        raise TypeError(
            "dy is a GPU array, but this layer takes host (NumPy) arrays: copy it to the host first"
        )
    view = numeric_array("dy", dy, stand_in)
    if view.shape != shape:
        raise ValueError(f"dy must have the forward output's shape {shape}, got {view.shape}")
    return in_dtype(dy, view, dtype)


def in_dtype(value, view: np.ndarray, dtype):
    """``value`` (``view`` its :func:`scanlab._arrays.stand_in`) in ``dtype``: a GPU array
    laid out on the GPU (itself when it already is C-contiguous in ``dtype``), else NumPy's."""
    if on_gpu(value):
        return cuda_module("arrays").batch_aligned(value, view.shape, dtype)
    return view.astype(dtype, copy=False)


def sigmoid(x) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in ``x``'s dtype, as a new array.

    Stable without a branch: where ``exp(-x)`` overflows to Inf the result is exactly 0 (the
    overflow warning is silenced), and for large ``x`` it rounds to 1. About three times as fast
    as ``scipy.special.expit``.
    """
    result = np.negative(x)
    with np.errstate(over="ignore"):
        np.exp(result, out=result)
    result += 1
    return np.reciprocal(result, out=result)


def rows_of(values: np.ndarray) -> np.ndarray:
    """``values`` as a 2-D array of its last axis' rows (also when that axis has length 0)."""
    return values.reshape(math.prod(values.shape[:-1]), values.shape[-1])


def matrix_product(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``x @ weight`` over the last axis, as one 2-D product (not one per leading index)."""
    flat = rows_of(x) @ weight
    return flat.reshape(x.shape[:-1] + weight.shape[1:])


def input_product(x, weight: np.ndarray) -> np.ndarray:
    """``x @ weight``; for a :class:`OneHot` ``x``, a gather of rows of ``weight``."""
    if not isinstance(x, OneHot):
        return matrix_product(x, weight)
    result = weight[x.indices]
    if x.values is not None:
        result *= np.expand_dims(x.values, -1)
    return result


def input_backward(x, weight: np.ndarray, dpre: np.ndarray):
    """``dL/dweight`` and ``dL/dx`` (None for a :class:`OneHot`) through ``x @ weight``."""
    flat = rows_of(dpre)
    if not isinstance(x, OneHot):
        return rows_of(x).T @ flat, matrix_product(dpre, weight.T)
    count = flat.shape[0]
    values = np.broadcast_to(1 if x.values is None else x.values, x.indices.shape)
    # One nonzero per row: a sparse product sums the rows of dpre by index in O(count).
    rows = scipy.sparse.csr_array(
        (
            values.reshape(-1).astype(dpre.dtype),
            x.indices.reshape(-1).astype(np.intp),
            np.arange(count + 1),
        ),
        shape=(count, x.size),
    )
    return rows.T @ flat, None


def sum_over_steps(values: np.ndarray) -> np.ndarray:
    """``values`` summed over every axis but the last (a bias gradient)."""
    return rows_of(values).sum(axis=0)


def uniform_weights(rng, shape: tuple, fan: int, dtype) -> np.ndarray:
    """Uniform in ``[-1/sqrt(fan), 1/sqrt(fan)]`` (no weights to draw when ``fan`` is 0)."""
    bound = 1 / np.sqrt(max(fan, 1))
    return rng.uniform(-bound, bound, shape).astype(dtype)


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
        """``y = x @ weight + bias`` and the cache for :meth:`backward`."""
        x = check_input(x, self.params["weight"].shape[0], self.dtype, min_ndim=1)
        y = input_product(x, self.params["weight"])
        y += self.params["bias"]
        return y, LinearCache(x)

    def backward(self, cache: LinearCache, dy):
        """``dL/dx`` and the parameters' gradients, given ``dy = dL/dy``."""
        shape = cache.x.shape[:-1] + self.params["bias"].shape
        dy = check_output_gradient(dy, shape, self.dtype)
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
        x = check_input(x, self.params["input_weight"].shape[0], self.dtype, min_ndim=2)
        h0, h0_shape = broadcast_initial_state(h0, x.shape[1:-1], self.hidden_size, self.dtype)
        pre = input_product(x, self.params["input_weight"])
        pre += self.params["bias"]
        gate = sigmoid(pre[..., : self.hidden_size])
        candidate = np.tanh(pre[..., self.hidden_size :])
        drive = 1 - gate
        drive *= candidate
        states = linear_recurrence(gate, drive, h0, device=device)
        return states, GILRCache(x, h0, h0_shape, gate, candidate, states, device)

    def backward(self, cache: GILRCache, dy, *, return_dh0: bool = False):
        """``dL/dx`` and the parameters' gradients (and ``dL/dh0``), given ``dy = dL/dh``."""
        dy = check_output_gradient(dy, cache.states.shape, self.dtype)
        gate, candidate = cache.gate, cache.candidate
        dgate, ddrive, dh0 = linear_recurrence_vjp(
            gate, cache.states, dy, cache.h0, device=cache.device
        )
        dpre = np.empty(gate.shape[:-1] + (2 * self.hidden_size,), self.dtype)
        # Through the coefficient g and the input (1 - g) j, then the activations' derivatives.
        dpre[..., : self.hidden_size] = (dgate - ddrive * candidate) * gate * (1 - gate)
        dpre[..., self.hidden_size :] = ddrive * (1 - gate) * (1 - candidate * candidate)
        dweight, dx = input_backward(cache.x, self.params["input_weight"], dpre)
        grads = {"input_weight": dweight, "bias": sum_over_steps(dpre)}
        return (dx, grads, reduce_to(dh0, cache.h0_shape)) if return_dh0 else (dx, grads)


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
        x, h0 = surrogate_cache.x, surrogate_cache.h0
        recurrent_weight = self.params["recurrent_weight"]
        pre = input_product(x, self.params["input_weight"])
        pre += self.params["bias"]
        # The gates read h~_{t-1}: h0 at the first step, then the surrogate shifted by one.
        pre[1:] += matrix_product(surrogate[:-1], recurrent_weight)
        if h0 is not None and len(pre):
            pre[0] += matrix_product(h0, recurrent_weight)
        n = self.hidden_size
        forget, input_gate, output_gate = (sigmoid(pre[..., k * n : (k + 1) * n]) for k in range(3))
        candidate = np.tanh(pre[..., 3 * n :])
        cells = linear_recurrence(forget, input_gate * candidate, device=device)
        cache = GILRLSTMCache(surrogate_cache, forget, input_gate, output_gate, candidate, cells)
        return output_gate * cells, cache

    def backward(self, cache: GILRLSTMCache, dy, *, return_dh0: bool = False):
        """``dL/dx`` and the parameters' gradients (and ``dL/dh0``), given ``dy = dL/dh``."""
        dy = check_output_gradient(dy, cache.cells.shape, self.dtype)
        forget, input_gate, output_gate = cache.forget, cache.input_gate, cache.output_gate
        candidate, cells = cache.candidate, cache.cells
        surrogate_cache = cache.surrogate
        dforget, dinput, _ = linear_recurrence_vjp(
            forget, cells, dy * output_gate, device=surrogate_cache.device
        )
        n = self.hidden_size
        dpre = np.empty(cells.shape[:-1] + (4 * n,), self.dtype)
        dpre[..., :n] = dforget * forget * (1 - forget)
        dpre[..., n : 2 * n] = dinput * candidate * input_gate * (1 - input_gate)
        dpre[..., 2 * n : 3 * n] = dy * cells * output_gate * (1 - output_gate)
        dpre[..., 3 * n :] = dinput * input_gate * (1 - candidate * candidate)

        recurrent_weight = self.params["recurrent_weight"]
        surrogate = surrogate_cache.states
        drecurrent = surrogate[:-1].reshape(-1, n).T @ dpre[1:].reshape(-1, 4 * n)
        if surrogate_cache.h0 is not None and len(dpre):
            drecurrent += surrogate_cache.h0.reshape(-1, n).T @ dpre[0].reshape(-1, 4 * n)
        dsurrogate = np.zeros_like(surrogate)
        dsurrogate[:-1] = matrix_product(dpre[1:], recurrent_weight.T)
        dx_surrogate, surrogate_grads, dh0 = self.surrogate.backward(
            surrogate_cache, dsurrogate, return_dh0=True
        )
        if len(dpre):
            # h0 also feeds the gates of the first step.
            dh0 += reduce_to(matrix_product(dpre[0], recurrent_weight.T), surrogate_cache.h0_shape)
        dweight, dx = input_backward(surrogate_cache.x, self.params["input_weight"], dpre)
        if dx is not None:
            dx += dx_surrogate
        grads = {
            "surrogate_input_weight": surrogate_grads["input_weight"],
            "surrogate_bias": surrogate_grads["bias"],
            "recurrent_weight": drecurrent,
            "input_weight": dweight,
            "bias": sum_over_steps(dpre),
        }
        return (dx, grads, dh0) if return_dh0 else (dx, grads)


__all__ = ["GILR", "GILRLSTM", "Linear", "OneHot"]
