"""Recurrent layers whose recurrence is nonlinear: :class:`NewtonLayer` and its
:class:`ParaGRULayer` and :class:`ParaLSTMLayer` (ParaRNN's cells of :mod:`scanlab.cells`),
solved by :func:`scanlab.nonlinear_recurrence` and differentiated by
:func:`scanlab.nonlinear_recurrence_vjp`, with the interface of :mod:`scanlab.nn.layers`.
"""

from typing import NamedTuple

import numpy as np

from scanlab import cells
from scanlab._arrays import stand_in
from scanlab._devices import cuda_module, on_gpu
from scanlab.gradients import nonlinear_recurrence_vjp, reduce_to
from scanlab.nn.layers import runs_on_gpu
from scanlab.nn.operands import (
    OneHot,
    check_dtype,
    check_input,
    check_output_gradient,
    initial_state,
)
from scanlab.nonlinear import NonlinearInfo, nonlinear_recurrence


class NewtonCache(NamedTuple):
    """What :meth:`NewtonLayer.backward` needs: the solve's inputs, its states and its info."""

    x: np.ndarray
    h0: np.ndarray | None
    h0_shape: tuple
    states: np.ndarray
    info: NonlinearInfo
    device: str


class NewtonLayer:
    """A layer whose recurrence is a built-in cell of :mod:`scanlab.cells`, solved by
    :func:`scanlab.nonlinear_recurrence` (Newton's method over the sequence, or the loop) and
    differentiated by :func:`scanlab.nonlinear_recurrence_vjp` (one reverse linear recurrence).

    ``params`` are the cell's (its :attr:`~scanlab.cells.builtin.BuiltinCell.parameter_names`,
    in the cell's layout), cast to ``dtype``; ``cache.info`` holds the solve's
    :class:`scanlab.NonlinearInfo` (iterations, convergence). ``method``, ``max_iter`` and
    ``on_fail`` are passed to the solver (``method="auto"``: the loop on a CPU of few cores,
    Newton on a GPU, see its docstring; ``max_iter=3, on_fail="accept"``: ParaRNN's fixed
    three Newton iterations per forward pass). A :class:`OneHot` input is made dense: the cells
    project their inputs themselves.
    """

    def __init__(self, cell, *, dtype, method: str, max_iter=None, on_fail: str = "fallback"):
        self.dtype = check_dtype(dtype)
        self.cell, self.method = cell, method
        self.max_iter, self.on_fail = max_iter, on_fail
        self.hidden_size = cell.hidden_size
        cell.params = {name: value.astype(self.dtype) for name, value in cell.params.items()}

    @property
    def params(self) -> dict:
        return self.cell.params

    def forward(self, x, h0=None, *, device: str = "auto"):
        """Every output, shape ``(T, *batch, hidden_size)``, and the cache. GPU arrays ``x``
        (and ``h0``) stay on the GPU: the solve runs there and ``y`` is a device array."""
        gpu = runs_on_gpu(x, h0, device)
        x = check_input(x, self.cell.input_size, self.dtype, 2, gpu)
        if isinstance(x, OneHot):
            x = x.dense(self.dtype)
        batch = stand_in(x).shape[1:-1]
        # On the GPU h0 keeps its shape: the solver broadcasts it, and its VJP sums dh0 back.
        size = self.cell.state_size
        h0, h0_shape = initial_state(h0, batch, size, self.dtype, gpu, broadcast=not gpu)
        states, info = nonlinear_recurrence(
            self.cell, x, h0, method=self.method, device=device, max_iter=self.max_iter,
            on_fail=self.on_fail, full_output=True,
        )  # fmt: skip
        return self.cell.output(states), NewtonCache(x, h0, h0_shape, states, info, device)

    def backward(self, cache: NewtonCache, dy, *, return_dh0: bool = False):
        """``dL/dx`` and the parameters' gradients (and ``dL/dh0``), given ``dy = dL/dy``;
        ``dL/dx`` and ``dL/dh0`` are device arrays where the forward pass ran on GPU arrays."""
        states_shape = stand_in(cache.states).shape
        shape = states_shape[:-1] + (self.hidden_size,)
        dy = check_output_gradient(dy, shape, self.dtype, on_gpu(cache.states))
        if on_gpu(cache.states):
            gradient = dy if states_shape == shape else self.device_gradient(dy, states_shape)
        else:
            gradient = np.zeros_like(cache.states)
            self.cell.output(gradient)[...] = dy
        # An iterate accepted unconverged (on_fail="accept") is differentiated where it is:
        # the adjoint's check of the residual allows what the forward pass reported.
        info = cache.info
        tol = None if info.converged or info.finished_sequentially.any() else 2 * info.residual
        dx, dh0, grads = nonlinear_recurrence_vjp(
            self.cell, cache.x, cache.h0, cache.states, gradient, tol=tol, device=cache.device
        )
        if not on_gpu(dh0):
            dh0 = reduce_to(dh0, cache.h0_shape)
        return (dx, grads, dh0) if return_dh0 else (dx, grads)

    def device_gradient(self, dy, states_shape: tuple):
        """The solver's ``g`` for ``dy`` (host or GPU, checked) given on the outputs of GPU
        states of another shape: a new device array, ``dy`` where the outputs lie, zero
        elsewhere."""
        gradient = cuda_module("memory").zeros(states_shape, self.dtype)
        if gradient.size:
            given = cuda_module("gradients").device_view(dy, stand_in(dy).shape, self.dtype)
            given.copy_into(cuda_module("arrays").Strided.of(self.cell.output(gradient)))
        return gradient


class ParaGRULayer(NewtonLayer):
    """A layer of ParaRNN's GRU (:class:`scanlab.cells.ParaGRU`: diagonal recurrent weights),
    solved by Newton's method over the sequence.

    Parameters
    ----------
    input_size, hidden_size : int
        Features in and out.
    seed : int, optional
        Seeds the initial weights.
    dtype : float32 or float64, optional
        The parameters' dtype, in which the layer computes.
    method : str, optional
        The solver's method (:func:`scanlab.nonlinear_recurrence`).
    max_iter : int, optional
        The solver's most Newton iterations (its default when None).
    on_fail : {"fallback", "raise", "accept"}, optional
        What the solver does with a sequence not converged within ``max_iter``.
    init : {"pararnn", "uniform"}, optional
        The cell's initialisation: ParaRNN's (the default) or uniform (see the cell).
    heads : int, optional
        Heads of the cell's block-diagonal input projection (1: dense); they must divide
        ``input_size`` and ``hidden_size``.

    Notes
    -----
    ``params``: ``"recurrent_weights"`` ``(3, hidden_size)``, ``"input_weights"``
    ``(3, hidden_size, input_size)`` (its gradient zero outside the heads' blocks) and
    ``"bias"`` ``(3, hidden_size)`` (update, reset and candidate gates). The interface is
    :mod:`scanlab.nn.layers`'; see :class:`NewtonLayer`.

    Examples
    --------
    >>> import numpy as np
    >>> from scanlab.nn import ParaGRULayer
    >>> layer = ParaGRULayer(4, 8, seed=0, method="newton")
    >>> x = np.random.default_rng(0).standard_normal((100, 2, 4)).astype(np.float32)
    >>> y, cache = layer.forward(x)
    >>> dx, grads = layer.backward(cache, np.ones_like(y))
    >>> y.shape, dx.shape, grads["input_weights"].shape, cache.info.converged
    ((100, 2, 8), (100, 2, 4), (3, 8, 4), True)
    """

    def __init__(self, input_size: int, hidden_size: int, *, seed=None, dtype=np.float32,
                 method: str = "auto", max_iter=None, on_fail: str = "fallback",
                 init: str = "pararnn", heads: int = 1):  # fmt: skip
        cell = cells.ParaGRU(hidden_size, input_size, seed, init=init, heads=heads)
        super().__init__(cell, dtype=dtype, method=method, max_iter=max_iter, on_fail=on_fail)


class ParaLSTMLayer(NewtonLayer):
    """A layer of ParaRNN's LSTM (:class:`scanlab.cells.ParaLSTM`: coupled input and forget
    gates, peepholes, diagonal recurrent weights, 2x2 Jacobian blocks), solved by Newton's
    method over the sequence; its outputs are the ``h`` part of the states.

    Parameters
    ----------
    input_size, hidden_size : int
        Features in and out.
    seed : int, optional
        Seeds the initial weights.
    dtype : float32 or float64, optional
        The parameters' dtype, in which the layer computes.
    method : str, optional
        The solver's method (:func:`scanlab.nonlinear_recurrence`).
    max_iter : int, optional
        The solver's most Newton iterations (its default when None).
    on_fail : {"fallback", "raise", "accept"}, optional
        What the solver does with a sequence not converged within ``max_iter``.
    init : {"pararnn", "uniform"}, optional
        The cell's initialisation: ParaRNN's (the default) or uniform (see the cell).
    heads : int, optional
        Heads of the cell's block-diagonal input projection (1: dense); they must divide
        ``input_size`` and ``hidden_size``.

    Notes
    -----
    ``params``: ``"recurrent_weights"`` ``(3, hidden_size)``, ``"peephole_weights"``
    ``(2, hidden_size)``, ``"input_weights"`` ``(3, hidden_size, input_size)`` (its gradient
    zero outside the heads' blocks) and ``"bias"`` ``(3, hidden_size)`` (forget gate,
    candidate, output gate; the peepholes of the forget and output gates). ``h0`` is the whole
    state ``(*batch, 2 * hidden_size)``, ``[c_0, h_0, c_1, h_1, ...]``. The interface is
    :mod:`scanlab.nn.layers`'; see :class:`NewtonLayer`.

    Examples
    --------
    >>> import numpy as np
    >>> from scanlab.nn import ParaLSTMLayer
    >>> layer = ParaLSTMLayer(4, 8, seed=0, heads=2)
    >>> x = np.random.default_rng(0).standard_normal((100, 2, 4)).astype(np.float32)
    >>> y, cache = layer.forward(x)
    >>> dx, grads = layer.backward(cache, np.ones_like(y))
    >>> y.shape, dx.shape, cache.states.shape, grads["peephole_weights"].shape
    ((100, 2, 8), (100, 2, 4), (100, 2, 16), (2, 8))
    """

    def __init__(self, input_size: int, hidden_size: int, *, seed=None, dtype=np.float32,
                 method: str = "auto", max_iter=None, on_fail: str = "fallback",
                 init: str = "pararnn", heads: int = 1):  # fmt: skip
        cell = cells.ParaLSTM(hidden_size, input_size, seed, init=init, heads=heads)
        super().__init__(cell, dtype=dtype, method=method, max_iter=max_iter, on_fail=on_fail)


__all__ = ["NewtonLayer", "ParaGRULayer", "ParaLSTMLayer"]
