"""Reinforcement-learning front ends: discounted returns and generalised advantage estimation
(GAE), the backward recurrences of every policy-gradient library, solved by scanlab's kernels.

They replace the loop found in RL code (``for t in reversed(range(T)): ...``), with the same
conventions: time along ``axis`` (0 by default), any batch axes beside it, ``done[t]`` true
when the episode ended at step ``t`` (no value is carried back across it).

On the CPU, GAE and returns with episode ends are one fused walk backwards over time, parallel over
blocks of environments and, for few environments, over chunks of time as well
(:mod:`scanlab.cpu.returns`): the loop's numbers bit for bit. With ``device="cuda"`` (or GPU arrays:
CuPy, PyTorch, Numba device arrays, read in place) both are reverse linear recurrences on the GPU:
the coefficients ``gamma (1 - done)`` (and GAE's temporal differences) in one elementwise kernel
(``scanlab.cuda.returns``), then the core elementwise solver's CUDA kernels, so that no second scan
is written for them. As with ``linear_recurrence``, GPU operands give Numba device arrays, NumPy
operands NumPy arrays. The GPU path is tested in Numba's CUDA simulator and compiled to PTX; its
speed is not measured.
"""

import math
import numbers
from functools import partial

import numba
import numpy as np

from scanlab._arrays import (
    as_time_major,
    check_broadcasts,
    initial_state,
    moved_axis,
    normalize_axis,
    numeric_array,
    real_array,
    result_dtype,
    stand_in,
)
from scanlab._devices import cuda_module, on_gpu, resolve_device
from scanlab.cpu import auto as cpu_auto
from scanlab.cpu import returns as cpu_returns
from scanlab.cpu.blocks import channel_block
from scanlab.linear import linear_recurrence

#: What to pass for ``dones`` instead of complex numbers.
DONES_INSTEAD = "pass booleans or 0 and 1"


def discounted_returns(
    rewards, gamma, *, dones=None, bootstrap=None, axis: int = 0, device: str = "auto"
):
    """Discounted returns ``G[t] = r[t] + gamma (1 - done[t]) G[t+1]``, ``G[T] = bootstrap``.

    It replaces the loop of RL code over reversed time; the one-line change is
    ``returns = discounted_returns(rewards, gamma, dones=dones, bootstrap=last_value)``.
    Measured (2 cores of AMD Zen 3, ``benchmarks/front_ends.py``): 1.2x a compiled Numba loop
    on (10**6, 16) rollouts and 3.0-3.1x on one rollout of 2**22 steps; with one of the two
    cores kept busy by another process, 1.1-2.3x.

    Parameters
    ----------
    rewards : array_like or GPU array
        Rewards, time along ``axis``; float32 or float64 (integers become float64).
    gamma : float
        The discount factor.
    dones : array_like of bool or numbers, optional
        ``done[t]`` true (1) where the episode ended at step ``t``: the return of step ``t``
        is then ``r[t]`` alone. Broadcasts against ``rewards``. None: no episode ends.
    bootstrap : array_like, optional
        ``G[T]``, the value of the state after the last step (e.g. a critic's estimate for a
        rollout cut short), of ``rewards``' shape without ``axis`` or broadcasting to it.
        Zeros by default.
    axis : int, optional
        The time axis.
    device : {"auto", "cpu", "cuda"}, optional
        Where to compute; ``"auto"`` follows the data (the GPU when an operand is a GPU array).

    Returns
    -------
    ndarray or numba.cuda.devicearray.DeviceNDArray
        The returns, of ``rewards``' shape; on the GPU when an operand is a GPU array.

    Raises
    ------
    TypeError
        A ``gamma`` that is not a real number, non-numeric operands, GPU operands with
        ``device="cpu"``.
    ValueError
        ``rewards`` without a time axis, ``dones`` or ``bootstrap`` of a shape that does not
        broadcast, an unknown ``device``.

    See Also
    --------
    gae : the advantages of a critic's values.
    scanlab.linear_recurrence : the recurrence, ``reverse=True``.

    Notes
    -----
    Without ``dones`` this is ``linear_recurrence(gamma, rewards, h0=bootstrap,
    reverse=True)``. With them, on the CPU, one fused walk backwards over time, parallel over
    blocks of environments and, where measured faster on this machine for problems of this size
    (measured the first time, kept in ``scanlab.wisdom``), over chunks of time as well: the
    loop's numbers bit for bit either way.

    Examples
    --------
    >>> import numpy as np
    >>> from scanlab.rl import discounted_returns
    >>> discounted_returns(np.array([1.0, 1.0, 1.0]), 0.5)
    array([1.75, 1.5 , 1.  ])
    >>> discounted_returns(np.array([1.0, 1.0, 1.0]), 0.5, dones=[False, True, False])
    array([1.5, 1. , 1. ])
    """
    gamma = real_number("gamma", gamma)
    device = resolve_device(device, rewards=rewards, dones=dones, bootstrap=bootstrap)
    series = time_series("rewards", rewards)
    shape = series.shape
    axis = normalize_axis(axis, series.ndim)
    state_shape = shape[:axis] + shape[axis + 1 :]
    if bootstrap is not None:
        bootstrap_shape = numeric_array("bootstrap", bootstrap, stand_in).shape
        check_broadcasts(
            "bootstrap",
            bootstrap_shape,
            state_shape,
            axis,
            f"rewards of shape {shape} need",
        )
    operands = (
        {"rewards": rewards} if bootstrap is None else {"rewards": rewards, "bootstrap": bootstrap}
    )
    dtype = real_dtype(result_dtype(**operands))
    if dones is None:
        return linear_recurrence(gamma, rewards, bootstrap, axis=axis, reverse=True, device=device)
    dones_shape = real_array("dones", dones, DONES_INSTEAD).shape
    check_broadcasts("dones", dones_shape, shape, axis, f"rewards of shape {shape} need")
    if device == "cuda":
        solve = partial(cuda_module("returns").solve_returns, gamma=gamma)
        results = on_device(solve, (rewards, dones), bootstrap, shape, axis, dtype)
        return results[0]
    rewards, dones = series, np.asarray(dones)
    length, channels = shape[axis], math.prod(state_shape)
    out = np.empty((length, channels), dtype)
    if out.size:
        rewards, dones = kernel_operands((rewards, dones), shape, axis, dtype)
        final = initial_state(bootstrap, state_shape, dtype, shape, axis)
        threads = numba.get_num_threads()
        with cpu_auto.measured_choice(
            "discounted_returns", length, channels, dtype, threads, returns_speeds
        ) as method:
            solve_returns(method, rewards, dones, final, dtype.type(gamma), out)
    return in_callers_layout(out, state_shape, axis)


def gae(rewards, values, dones, last_value, *, gamma, lam, axis: int = 0, device: str = "auto"):
    """Generalised advantage estimation (Schulman et al., 2016): ``(advantages, returns)``.

    ``delta[t] = r[t] + gamma (1 - done[t]) V[t+1] - V[t]`` with ``V[T] = last_value``,
    ``A[t] = delta[t] + gamma lam (1 - done[t]) A[t+1]`` with ``A[T] = 0``, and
    ``returns = A + V``: the loop of PPO implementations, in one fused pass per block of
    channels and, for few long series, per chunk of time. It replaces that loop; the
    one-line change is ``advantages, returns = gae(rewards, values, dones, last_value,
    gamma=gamma, lam=lam)``. Measured (2 cores of AMD Zen 3, ``benchmarks/front_ends.py``):
    3.4-4.2x (float32) and 1.3-1.7x (float64) a compiled Numba loop on (10**6, 16) rollouts,
    1.3-1.9x on (10**5, 16), 2.1-3.6x on one rollout of 2**22 steps, 240x the NumPy loop; with
    one of the two cores kept busy by another process, 1.2-3.3x the Numba loop.

    Parameters
    ----------
    rewards, values : array_like
        Rewards and the critic's values ``V[t]``, time along ``axis``, of one shape (or
        ``values`` broadcasting to ``rewards``' shape).
    dones : array_like of bool or numbers
        ``done[t]`` true (1) where the episode ended at step ``t``: nothing is carried back
        across it. Broadcasts against ``rewards``.
    last_value : array_like
        ``V[T]``, the critic's value of the state after the last step, of ``rewards``' shape
        without ``axis`` (or broadcasting to it).
    gamma, lam : float
        The discount factor and GAE's lambda.
    axis : int, optional
        The time axis.
    device : {"auto", "cpu", "cuda"}, optional
        Where to compute; ``"auto"`` follows the data (the GPU when an operand is a GPU array).

    Returns
    -------
    advantages, returns : ndarray or numba.cuda.devicearray.DeviceNDArray
        Each of ``rewards``' shape, in the promoted dtype of ``rewards``, ``values`` and
        ``last_value`` (float32 stays float32); on the GPU when an operand is a GPU array.

    Raises
    ------
    TypeError
        ``gamma`` or ``lam`` not a real number, non-numeric operands, GPU operands with
        ``device="cpu"``.
    ValueError
        ``rewards`` without a time axis, operands whose shapes do not broadcast, an unknown
        ``device``.

    See Also
    --------
    discounted_returns : returns without a critic.

    Notes
    -----
    On the CPU, one fused walk backwards over time, parallel over blocks of environments and,
    where measured faster on this machine for problems of this size (measured the first time,
    kept in ``scanlab.wisdom``, as ``linear_recurrence``'s ``method="auto"`` is), over chunks
    of time as well: each chunk walked from a zero advantage, then its end again from the true
    one until the two agree (a few hundred steps at the usual discounts; the whole chunk if
    nothing decays, which ``auto`` notices). The loop's numbers bit for bit either way.

    Examples
    --------
    >>> import numpy as np
    >>> from scanlab.rl import gae
    >>> advantages, returns = gae(
    ...     np.ones(3), np.zeros(3), np.zeros(3, bool), 0.0, gamma=0.5, lam=1.0
    ... )
    >>> advantages
    array([1.75, 1.5 , 1.  ])
    >>> returns
    array([1.75, 1.5 , 1.  ])
    """
    gamma = real_number("gamma", gamma)
    lam = real_number("lam", lam)
    device = resolve_device(
        device,
        rewards=rewards,
        values=values,
        dones=dones,
        last_value=last_value,
    )
    series = time_series("rewards", rewards)
    shape = series.shape
    axis = normalize_axis(axis, series.ndim)
    state_shape = shape[:axis] + shape[axis + 1 :]
    given = {"values": values, "dones": dones, "last_value": last_value}
    for name, value in given.items():
        target = state_shape if name == "last_value" else shape
        if name == "dones":
            given_shape = real_array(name, value, DONES_INSTEAD).shape
        else:
            given_shape = numeric_array(name, value, stand_in).shape
        check_broadcasts(name, given_shape, target, axis, f"rewards of shape {shape} need")
    dtype = real_dtype(result_dtype(rewards=rewards, values=values, last_value=last_value))
    if device == "cuda":
        solve = partial(cuda_module("returns").solve_advantages, gamma=gamma, lam=lam)
        return on_device(solve, (rewards, values, dones), last_value, shape, axis, dtype)
    rewards, values, dones, last_value = series, *map(np.asarray, given.values())
    length, channels = shape[axis], math.prod(state_shape)
    advantages = np.empty((length, channels), dtype)
    returns = np.empty((length, channels), dtype)
    if advantages.size:
        operands = kernel_operands((rewards, values, dones), shape, axis, dtype)
        final_values = initial_state(last_value, state_shape, dtype, shape, axis)
        scalars = (dtype.type(gamma), dtype.type(lam))
        threads = numba.get_num_threads()
        with cpu_auto.measured_choice(
            "gae", length, channels, dtype, threads, gae_speeds
        ) as method:
            solve_advantages(method, *operands, final_values, *scalars, advantages, returns)
    return tuple(in_callers_layout(result, state_shape, axis) for result in (advantages, returns))


def solve_advantages(
    method, rewards, values, dones, last_value, gamma, lam, advantages, returns
) -> None:
    """Write GAE's ``advantages`` and ``returns`` for ``(T, D)`` operands in kernel layout by
    ``method``: the fused loop backwards over time, parallel over blocks of channels
    (``"sequential"``), or the same over chunks of time as well (``"scan"``,
    :mod:`scanlab.cpu.returns`)."""
    block, chunks = channel_split(method, advantages)
    cpu_returns.advantages_backwards(
        rewards, values, dones, last_value, gamma, lam, advantages, returns, block, chunks
    )


def solve_returns(method, rewards, dones, bootstrap, gamma, out) -> None:
    """Write the discounted returns of ``(T, D)`` operands in kernel layout into ``out`` by
    ``method``: one fused pass backwards over time, parallel over blocks of channels
    (``"sequential"``), or the same over chunks of time as well (``"scan"``)."""
    block, chunks = channel_split(method, out)
    cpu_returns.returns_backwards(rewards, dones, bootstrap, gamma, out, block, chunks)


def channel_split(method: str, out: np.ndarray) -> tuple:
    """Channels per block and chunks of time of the fused passes by ``method`` into ``out``."""
    length, channels = out.shape
    threads = numba.get_num_threads()
    block = channel_block(channels, out.itemsize, threads)
    if method == "sequential":
        return block, 1
    return block, cpu_returns.time_chunks(length, -(-channels // block), threads)


def returns_speeds(dtype, channels: int, threads: int, elements: int) -> dict:
    """Nanoseconds per element of each method of :func:`solve_returns` on this machine, for
    random rollouts of ``channels`` environments and about ``elements`` elements."""
    length = cpu_auto.calibration_length(channels, elements)
    rng = np.random.default_rng(0)
    rewards = rng.standard_normal((length, channels)).astype(dtype)
    dones = (rng.random((length, channels)) < 0.005).astype(dtype)
    bootstrap, out = np.zeros(channels, dtype), np.empty_like(rewards)
    runs = {
        method: partial(solve_returns, method, rewards, dones, bootstrap, dtype.type(0.99), out)
        for method in cpu_auto.METHODS
    }
    return cpu_auto.median_speeds(runs, rewards.size, threads)


def gae_speeds(dtype, channels: int, threads: int, elements: int) -> dict:
    """Nanoseconds per element of each method of :func:`solve_advantages` on this machine, for
    random rollouts of ``channels`` environments and about ``elements`` elements
    (``method="auto"``'s measurement, kept in ``scanlab.wisdom``)."""
    length = cpu_auto.calibration_length(channels, elements)
    rng = np.random.default_rng(0)
    rewards, values = rng.standard_normal((2, length, channels)).astype(dtype)
    dones = (rng.random((length, channels)) < 0.005).astype(dtype)
    last_value = np.zeros(channels, dtype)
    advantages, returns = np.empty_like(rewards), np.empty_like(rewards)
    operands = (rewards, values, dones, last_value, dtype.type(0.99), dtype.type(0.95))
    runs = {
        method: partial(solve_advantages, method, *operands, advantages, returns)
        for method in cpu_auto.METHODS
    }
    return cpu_auto.median_speeds(runs, rewards.size, threads)


def on_device(solve, series, final, shape: tuple, axis: int, dtype) -> tuple:
    """The results of ``solve(*rows, final_rows)`` (a launcher of ``scanlab.cuda.returns``) on
    the GPU: each of ``series`` (host or GPU arrays broadcasting to ``shape``) as ``(T, D)``
    rows, ``final`` (None: zeros) as ``(D,)``; the results back in ``shape``, GPU arrays when
    an operand is one, else NumPy arrays."""
    arrays = cuda_module("arrays")
    rows = [arrays.time_first_rows(value, shape, axis, dtype) for value in series]
    state_shape = shape[:axis] + shape[axis + 1 :]
    final = 0 if final is None else final
    final_rows = arrays.moved_axes(final, state_shape, range(len(state_shape)), dtype)
    results = [
        arrays.from_time_first_rows(result, shape, axis)
        for result in solve(*rows, final_rows.reshape(-1))
    ]
    if not any(map(on_gpu, (*series, final))):
        results = [result.copy_to_host() for result in results]
    return tuple(results)


def kernel_operands(operands, shape: tuple, axis: int, dtype) -> list:
    """Each operand broadcast to ``shape`` and laid out ``(T, D)``, time first, C-contiguous,
    in ``dtype`` (the kernels read every element; no copy where one lies so already)."""
    state_shape = shape[:axis] + shape[axis + 1 :]
    return [
        as_time_major(
            operand if operand.shape == shape else np.broadcast_to(operand, shape),
            len(shape),
            axis,
            state_shape,
            dtype,
        )  # fmt: skip
        for operand in operands
    ]


def in_callers_layout(result: np.ndarray, state_shape: tuple, axis: int) -> np.ndarray:
    """A ``(T, D)`` result with time back at ``axis`` and the channels in ``state_shape``."""
    return moved_axis(result.reshape((len(result), *state_shape)), 0, axis)


def real_number(name: str, value) -> float:
    """``value`` as a float, or a TypeError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def real_dtype(dtype: np.dtype) -> np.dtype:
    """``dtype``, or a TypeError when an operand made it complex."""
    if dtype.kind == "c":
        raise TypeError(f"the operands promote to {dtype}; returns and advantages are real")
    return dtype


def time_series(name: str, value) -> np.ndarray:
    """``value`` as a real numeric array with at least one axis (the time axis)."""
    array = numeric_array(name, value, stand_in)
    if not array.shape:
        raise ValueError(f"{name} must have a time axis; got a scalar")
    if array.dtype.kind == "c":
        raise TypeError(f"{name} has dtype {array.dtype}; returns and advantages are real")
    return array


__all__ = ["discounted_returns", "gae"]
