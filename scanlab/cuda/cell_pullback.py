"""The built-in cells' pullbacks on the GPU: twin of their compiled CPU pullbacks
(:func:`scanlab.cells.pararnn.gru_pullback`, :func:`~scanlab.cells.pararnn.lstm_pullback`).

Both run a cell's pullback at every step, sequence and channel (the same scalar function, e.g.
:func:`scanlab.cells.pararnn.gru_channel_gradients`). Here a cell's Python function of one
channel (e.g. :func:`scanlab.cells.pararnn.gru_channel_pullback`) writes the gradients of the
step's projected inputs and adds its channel's share of the gradients of the step's parameters
to a few sums; one thread takes the items of one channel along a grid-stride loop, keeps those
sums in registers and adds them to the result atomically once, so that the parameters'
gradients cost ``rows x threads`` atomic additions in all, not one per item.
"""

import numba
import numpy as np
from numba import cuda

from scanlab import config
from scanlab.cuda.arrays import on_device
from scanlab.cuda.memory import zeros

#: The most parameter rows a channel's sums may have (ParaLSTM's: 5), the size of a thread's
#: local sums.
MAX_ROWS = 8
#: The most threads a pullback is launched with; beyond, they loop over the items.
MAX_THREADS = 65536


def build_kernel(channel_function):
    """The pullback kernel of a cell's Python channel function, and the kernel's Python
    function (for ``cuda.compile_ptx``). The channel function is a device function that NVVM
    inlines, its sums kept in registers (see :func:`scanlab.cuda.nonlinear.build_kernels`)."""
    channel = cuda.jit(device=True)(channel_function)

    def pullback(u, params, states, h0, adjoint, threads, d_inputs, sums):
        """The gradients at every step, sequence and channel: of the projected inputs into
        ``d_inputs`` ``(T, B, m)``, of the parameters added to ``sums`` ``(rows, channels)``
        (float64). ``threads`` is a multiple of the channels, so that each thread's items
        share their channel."""
        thread = cuda.grid(1)
        length, sequences = states.shape[0], states.shape[1]
        rows, channels = sums.shape
        items = length * sequences * channels
        if thread >= threads or thread >= items:
            return
        local = cuda.local.array(MAX_ROWS, numba.float64)
        for row in range(MAX_ROWS):
            local[row] = 0.0
        for item in range(thread, items, threads):
            step = item // channels
            t = step // sequences
            sequence = step - t * sequences
            h_prev = states[t - 1, sequence] if t > 0 else h0[sequence]
            channel(u[t, sequence], params, h_prev, adjoint[t, sequence], item - step * channels,
                    d_inputs[t, sequence], local)  # fmt: skip
        for row in range(MAX_ROWS):  # unrolled: the sums stay in registers
            if row < rows:
                cuda.atomic.add(sums, (row, thread % channels), local[row])

    return cuda.jit(pullback), pullback


#: The kernels built so far, by channel function.
KERNELS = {}


def kernel_for(channel_pullback):
    """The pullback kernel of a cell's Python ``channel_pullback``, built once."""
    if channel_pullback not in KERNELS:
        KERNELS[channel_pullback] = build_kernel(channel_pullback)[0]
    return KERNELS[channel_pullback]


def pullback(channel_pullback, u, step_params, states, h0, adjoint, rows: int):
    """The gradients of the projected inputs ``u`` ``(T, B, m)``, a new device array, and the
    sums of the step parameters' gradients, ``(rows, channels)`` float64 on the host, where
    ``channels`` is the step parameters' second axis; ``u``, ``states``, ``h0`` and ``adjoint``
    host or device arrays (C-contiguous), ``step_params`` host arrays."""
    if rows > MAX_ROWS:
        raise ValueError(f"a cell's channel adds to at most {MAX_ROWS} sums, got {rows}")
    u, states, h0, adjoint = (on_device(value) for value in (u, states, h0, adjoint))
    channels = step_params[0].shape[1]
    d_inputs = cuda.device_array(u.shape, u.dtype)
    sums = zeros((rows, channels), np.float64)
    steps = states.shape[0] * states.shape[1]
    if steps:
        threads = channels * min(steps, max(1, MAX_THREADS // channels))
        per_block = config.cuda.threads_per_block
        kernel_for(channel_pullback)[-(-threads // per_block), per_block](
            u, tuple(cuda.to_device(value) for value in step_params), states, h0, adjoint,
            threads, d_inputs, sums,
        )  # fmt: skip
    return d_inputs, sums.copy_to_host()


def kernel_signatures(cell, dtype):
    """The Python function of a built-in ``cell``'s pullback kernel with the signature
    :func:`pullback` launches it with in ``dtype``, for ``cuda.compile_ptx``."""
    _, params = cell.prepare(np.zeros((1, cell.input_size)), None, np.dtype(dtype))
    states = np.zeros((1, 1, cell.state_size), dtype)
    inputs = np.zeros((1, 1, cell.gates * cell.hidden_size), dtype)
    arguments = (inputs, params, states, states[0], states, 1, inputs, np.zeros((1, 1), np.float64))
    function = build_kernel(cell.channel_pullback)[1]
    return [(function, numba.types.void(*map(numba.typeof, arguments)))]
