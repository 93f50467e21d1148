"""Sequential references in float64 (complex128 for complex inputs), named like the API."""

import numpy as np


def linear_recurrence(a, b, h0=None, *, axis=0, reverse=False):
    """``h[t] = a[t] * h[t-1] + b[t]`` along ``axis``, one step at a time."""
    a = np.asarray(a)
    b = np.asarray(b)
    complex_ = any(np.iscomplexobj(x) for x in (a, b, np.asarray(0 if h0 is None else h0)))
    dtype = np.complex128 if complex_ else np.float64
    shape = np.broadcast_shapes(a.shape, b.shape)
    a = np.moveaxis(np.broadcast_to(a, shape).astype(dtype), axis, 0)
    b = np.moveaxis(np.broadcast_to(b, shape).astype(dtype), axis, 0)
    h = np.zeros(b.shape[1:], dtype)
    if h0 is not None:
        h = np.broadcast_to(h0, b.shape[1:]).astype(dtype)
    result = np.empty(b.shape, dtype)
    for t in reversed(range(len(b))) if reverse else range(len(b)):
        h = a[t] * h + b[t]
        result[t] = h
    return np.moveaxis(result, 0, axis)


def linear_recurrence_matrix(A, b, h0=None, *, axis=0, reverse=False):
    """``h[t] = A[t] @ h[t-1] + b[t]`` along ``axis`` (an axis of ``b``), one step at a time."""
    A = np.asarray(A)
    b = np.asarray(b)
    complex_ = any(np.iscomplexobj(x) for x in (A, b, np.asarray(0 if h0 is None else h0)))
    dtype = np.complex128 if complex_ else np.float64
    leading = np.broadcast_shapes(A.shape[:-2], b.shape[:-1])
    size = b.shape[-1]
    axis %= len(leading) + 1
    A = np.moveaxis(np.broadcast_to(A, leading + (size, size)).astype(dtype), axis, 0)
    b = np.moveaxis(np.broadcast_to(b, leading + (size,)).astype(dtype), axis, 0)
    h = np.zeros(b.shape[1:], dtype)
    if h0 is not None:
        h = np.broadcast_to(h0, b.shape[1:]).astype(dtype)
    result = np.empty(b.shape, dtype)
    for t in reversed(range(len(b))) if reverse else range(len(b)):
        h = np.einsum("...ij,...j->...i", A[t], h) + b[t]
        result[t] = h
    return np.moveaxis(result, 0, axis)


def linear_recurrence_vjp(a, h, g, h0=None, *, axis=0, reverse=False):
    """The backward pass, unrolled step by step: ``(da, db, dh0)`` in float64/complex128."""
    return _backward(a, h, g, h0, axis, reverse, matrices=False)


def linear_recurrence_matrix_vjp(A, h, g, h0=None, *, axis=0, reverse=False):
    """The backward pass of the matrix recurrence, unrolled step by step."""
    return _backward(A, h, g, h0, axis, reverse, matrices=True)


def _backward(a, h, g, h0, axis, reverse, matrices):
    a, h, g = np.asarray(a), np.asarray(h), np.asarray(g)
    complex_ = any(np.iscomplexobj(x) for x in (a, h, g, np.asarray(0 if h0 is None else h0)))
    dtype = np.complex128 if complex_ else np.float64
    state = h.shape[-1:] if matrices else ()
    leading = h.shape[: h.ndim - len(state)]
    axis %= len(leading) + len(state)
    full_a = np.broadcast_to(a, leading + state * 2).astype(dtype)
    a_t = np.moveaxis(full_a, axis, 0)
    h_t = np.moveaxis(h.astype(dtype), axis, 0)
    g_t = np.moveaxis(g.astype(dtype), axis, 0)
    rest = h_t.shape[1:]
    start = np.zeros(rest, dtype) if h0 is None else np.broadcast_to(h0, rest).astype(dtype)
    order = list(reversed(range(len(h_t)))) if reverse else list(range(len(h_t)))
    da = np.zeros(a_t.shape, dtype)
    db = np.zeros(h_t.shape, dtype)
    carried = np.zeros(rest, dtype)  # dL/dh[t] from the steps after t
    for position in reversed(range(len(order))):
        t = order[position]
        adjoint = g_t[t] + carried
        db[t] = adjoint
        before = start if position == 0 else h_t[order[position - 1]]
        if matrices:
            da[t] = adjoint[..., :, None] * before[..., None, :]
            carried = np.einsum("...ji,...j->...i", a_t[t], adjoint)
        else:
            da[t] = adjoint * before
            carried = a_t[t] * adjoint
    dh0 = carried
    da = np.moveaxis(da, 0, axis)
    # Sum over the axes a was broadcast along.
    extra = da.ndim - a.ndim
    da = da.sum(axis=tuple(range(extra)))
    da = da.sum(axis=tuple(i for i, n in enumerate(a.shape) if n == 1), keepdims=True)
    if h0 is not None:
        h0 = np.asarray(h0)
        extra = dh0.ndim - h0.ndim
        dh0 = dh0.sum(axis=tuple(range(extra)))
        dh0 = dh0.sum(axis=tuple(i for i, n in enumerate(h0.shape) if n == 1), keepdims=True)
    return da.reshape(a.shape), np.moveaxis(db, 0, axis), dh0


def nonlinear_recurrence(step, x, h0):
    """``h[t] = step(h[t-1], x[t])`` one step at a time in float64; ``step`` works on arrays of
    shape ``(*batch, n)`` and ``(*batch, m)``."""
    x = np.asarray(x, np.float64)
    batch = np.broadcast_shapes(x.shape[1:-1], np.shape(h0)[:-1])
    h = np.broadcast_to(np.asarray(h0, np.float64), batch + np.shape(h0)[-1:])
    states = np.empty((x.shape[0], *h.shape))
    for t in range(x.shape[0]):
        h = states[t] = step(h, np.broadcast_to(x[t], batch + x.shape[-1:]))
    return states


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def elman_step(cell):
    """The step of a ``scanlab.cells.ElmanRNN`` in NumPy, inputs unprojected."""
    return lambda h, x: np.tanh(h @ cell.recurrent_weights.T + x @ cell.input_weights.T + cell.bias)


def heads_mask(cell):
    """Which input weights of a built-in cell with ``cell.heads`` heads are read: channel ``i``
    reads input ``j`` when both fall in the same head."""
    n, m, heads = cell.hidden_size, cell.input_size, cell.heads
    channel_head = np.arange(n) // (n // heads)
    input_head = np.arange(m) // (m // heads) if m else np.arange(0)
    return channel_head[:, None] == input_head[None, :]


def gru_step(cell):
    """The step of a ``scanlab.cells.ParaGRU`` in NumPy."""
    a, bias = cell.recurrent_weights, cell.bias
    w = cell.input_weights * heads_mask(cell)

    def step(h, x):
        u = np.einsum("...m,gnm->...gn", x, w) + bias
        z = sigmoid(u[..., 0, :] + a[0] * h)
        r = sigmoid(u[..., 1, :] + a[1] * h)
        c = np.tanh(u[..., 2, :] + a[2] * r * h)
        return (1 - z) * h + z * c

    return step


def lstm_step(cell):
    """The step of a ``scanlab.cells.ParaLSTM`` in NumPy (state ``[c0, h0, c1, h1, ...]``),
    written from ParaRNN's CIFG-peephole equations."""
    a, p, bias = cell.recurrent_weights, cell.peephole_weights, cell.bias
    w = cell.input_weights * heads_mask(cell)

    def step(state, x):
        c, h = state[..., 0::2], state[..., 1::2]
        u = np.einsum("...m,gnm->...gn", x, w) + bias
        f = sigmoid(u[..., 0, :] + a[0] * h + p[0] * c)
        z = np.tanh(u[..., 1, :] + a[1] * h)
        c = f * c + (1 - f) * z
        o = sigmoid(u[..., 2, :] + a[2] * h + p[1] * c)
        return np.stack([c, o * np.tanh(c)], axis=-1).reshape(state.shape[:-1] + (-1,))

    return step


def elman_vjp(cell, x, h0, h, g):
    """The backward pass of a ``scanlab.cells.ElmanRNN`` unrolled one step at a time, in
    float64: ``(dx, dh0, dparams)`` for ``x`` ``(T, B, m)``, ``h0`` ``(B, n)``."""
    weights, input_weights = cell.recurrent_weights, cell.input_weights
    dparams = {name: np.zeros_like(value) for name, value in cell.params.items()}
    dx = np.empty(x.shape)
    carried = np.zeros(h0.shape)
    for t in reversed(range(x.shape[0])):
        d_total = (g[t] + carried) * (1 - h[t] ** 2)
        previous = h[t - 1] if t else h0
        dparams["recurrent_weights"] += d_total.T @ previous
        dparams["input_weights"] += d_total.T @ x[t]
        dparams["bias"] += d_total.sum(axis=0)
        dx[t] = d_total @ input_weights
        carried = d_total @ weights
    return dx, carried, dparams


def _time_first(operands, shape, axis):
    """Float64 (complex128) copies of ``operands`` broadcast to ``shape``, time first."""
    complex_ = any(np.iscomplexobj(x) for x in operands)
    dtype = np.complex128 if complex_ else np.float64
    return [np.moveaxis(np.broadcast_to(np.asarray(x, dtype), shape), axis, 0) for x in operands]


def discounted_returns(rewards, gamma, *, dones=None, bootstrap=None, axis=0):
    """``G[t] = r[t] + gamma (1 - done[t]) G[t+1]`` from ``G[T] = bootstrap``, as RL code
    writes it: a loop backwards over time."""
    shape = np.shape(rewards)
    rewards, dones = _time_first([rewards, 0.0 if dones is None else dones], shape, axis)
    following = np.broadcast_to(0.0 if bootstrap is None else bootstrap, rewards.shape[1:])
    result = np.empty(rewards.shape, rewards.dtype)
    for t in reversed(range(len(rewards))):
        following = rewards[t] + gamma * (1 - dones[t]) * following
        result[t] = following
    return np.moveaxis(result, 0, axis)


def gae(rewards, values, dones, last_value, *, gamma, lam, axis=0):
    """Generalised advantage estimation as PPO implementations loop it."""
    shape = np.shape(rewards)
    rewards, values, dones = _time_first([rewards, values, dones], shape, axis)
    dtype = np.result_type(rewards, values)
    next_value = np.broadcast_to(np.asarray(last_value, dtype), rewards.shape[1:])
    advantage = np.zeros(rewards.shape[1:], dtype)
    advantages = np.empty(rewards.shape, dtype)
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * (1 - dones[t]) * next_value - values[t]
        advantage = delta + gamma * lam * (1 - dones[t]) * advantage
        advantages[t] = advantage
        next_value = values[t]
    return np.moveaxis(advantages, 0, axis), np.moveaxis(advantages + values, 0, axis)
