"""Discounted returns and generalised advantage estimation on the GPU: the coefficients of
their backward linear recurrences in one elementwise pass, then the elementwise solver of
:mod:`scanlab.cuda.linear`.

Twin of :mod:`scanlab.cpu.returns` (the same problems; the CPU walks chunks of time, having too
few threads for a scan to pay): every operand is a C-contiguous ``(T, D)`` device array of one
dtype, time first, but ``(D,)`` final values; the launchers queue their kernels on the default
stream and return without waiting.
"""

from numba import cuda

from scanlab.cuda import elementwise, linear
from scanlab.cuda.arrays import launch_over
from scanlab.cuda.kernel_layout import DTYPES
from scanlab.cuda.memory import zeros


@cuda.jit
def return_coefficients_kernel(dones, gamma, decay):
    """``decay = gamma (1 - done)``, in the operands' precision, as on the CPU."""
    length, channels = decay.shape
    first, start = cuda.grid(2)
    across, down = cuda.gridsize(2)
    for t in range(start, length, down):
        for channel in range(first, channels, across):
            decay[t, channel] = gamma - gamma * dones[t, channel]


@cuda.jit
def advantage_coefficients_kernel(rewards, values, dones, last_value, gamma, lam, decay, deltas):
    """``decay = gamma lam (1 - done)`` and the temporal differences
    ``deltas[t] = r[t] + gamma (1 - done[t]) V[t+1] - V[t]``, ``V[T] = last_value``."""
    length, channels = decay.shape
    first, start = cuda.grid(2)
    across, down = cuda.gridsize(2)
    for t in range(start, length, down):
        for channel in range(first, channels, across):
            discount = gamma - gamma * dones[t, channel]
            following = values[t + 1, channel] if t + 1 < length else last_value[channel]
            deltas[t, channel] = rewards[t, channel] + discount * following - values[t, channel]
            decay[t, channel] = lam * discount


def solve_returns(rewards, dones, bootstrap, gamma) -> tuple:
    """The discounted returns ``G[t] = r[t] + gamma (1 - done[t]) G[t+1]`` from
    ``G[T] = bootstrap``, a new ``(T, D)`` device array (alone in a tuple): the discounts in one
    pass, then the scan backwards."""
    out = cuda.device_array_like(rewards)
    if not out.size:
        return (out,)
    decay = cuda.device_array_like(out)
    launch_over(return_coefficients_kernel, *out.shape)(dones, out.dtype.type(gamma), decay)
    linear.solve_on_device(decay, rewards, bootstrap, out, True, "auto")
    return (out,)


def solve_advantages(rewards, values, dones, last_value, gamma, lam) -> tuple:
    """GAE's ``advantages`` (``A[t] = delta[t] + gamma lam (1 - done[t]) A[t+1]``,
    ``A[T] = 0``) and ``returns = A + V``, new ``(T, D)`` device arrays: the coefficients in
    one pass, the scan backwards, the sum."""
    advantages, returns = cuda.device_array_like(rewards), cuda.device_array_like(rewards)
    if not rewards.size:
        return advantages, returns
    decay, deltas = cuda.device_array_like(advantages), cuda.device_array_like(advantages)
    scalars = (advantages.dtype.type(gamma), advantages.dtype.type(lam))
    launch_over(advantage_coefficients_kernel, *advantages.shape)(
        rewards, values, dones, last_value, *scalars, decay, deltas
    )
    start = zeros(advantages.shape[1], advantages.dtype)
    linear.solve_on_device(decay, deltas, start, advantages, True, "auto")
    elementwise.add(advantages, values, returns)
    return advantages, returns


def kernel_signatures():
    """List every kernel of this module with each signature its launchers compile.

    Returns
    -------
    list of (numba.cuda.dispatcher.CUDADispatcher, str)
        One entry per kernel and real dtype of :data:`scanlab.cuda.kernel_layout.DTYPES`;
        compile one to PTX without a GPU with ``cuda.compile_ptx(kernel.py_func, signature,
        cc=(9, 0))``.
    """
    signatures = []
    for dtype in DTYPES[:2]:
        matrix, vector = f"{dtype}[:, ::1]", f"{dtype}[::1]"
        signatures += [
            (return_coefficients_kernel, f"void({matrix}, {dtype}, {matrix})"),
            (
                advantage_coefficients_kernel,
                f"void({matrix}, {matrix}, {matrix}, {vector}, {dtype}, {dtype}, {matrix}, "
                f"{matrix})",
            ),
        ]
    return signatures
