"""The gates of the recurrent layers of :mod:`scanlab.nn.layers` on the GPU: from the
pre-activations to the gates and a linear recurrence's coefficients, and back from their
gradients to the pre-activations' gradients, each one elementwise pass.

The GPU twins of the NumPy expressions in :class:`scanlab.nn.GILR` and
:class:`scanlab.nn.GILRLSTM`: every operand is a C-contiguous ``(R, n)`` device array (``R``
steps times sequences, ``n`` the hidden size; the pre-activations ``(R, gates n)``, the gates
side by side), walked in one grid-stride loop over its elements. Each element is computed in
float64 (by :mod:`scanlab.math`: exactly 0 or 1 where ``exp`` overflows, NaN where NumPy
gives NaN) and stored in the arrays' dtype. The launchers return new device arrays and do not
wait for the GPU.
"""

from numba import cuda

from scanlab import math as smath
from scanlab.cuda.elementwise import launch_flat
from scanlab.cuda.kernel_layout import DTYPES


@cuda.jit
def gilr_gates_kernel(pre, gate, candidate, drive):
    """``gate = sigmoid(pre[:, :n])``, ``candidate = tanh(pre[:, n:])`` and the recurrence's
    input ``drive = (1 - gate) candidate``."""
    n = gate.shape[1]
    for k in range(cuda.grid(1), gate.size, cuda.gridsize(1)):
        r, j = k // n, k % n
        g = smath.sigmoid(float(pre[r, j]))
        z = smath.tanh(float(pre[r, n + j]))
        gate[r, j], candidate[r, j], drive[r, j] = g, z, (1.0 - g) * z


@cuda.jit
def gilr_gradients_kernel(dgate, ddrive, gate, candidate, dpre):
    """The pre-activations' gradients from those of the coefficient ``gate`` and the input
    ``drive``, through the sigmoid and the tanh."""
    n = gate.shape[1]
    for k in range(cuda.grid(1), gate.size, cuda.gridsize(1)):
        r, j = k // n, k % n
        g, z, d = float(gate[r, j]), float(candidate[r, j]), float(ddrive[r, j])
        dpre[r, j] = (dgate[r, j] - d * z) * g * (1.0 - g)
        dpre[r, n + j] = d * (1.0 - g) * (1.0 - z * z)


@cuda.jit
def lstm_gates_kernel(pre, forget, input_gate, output_gate, candidate, drive):
    """The forget, input and output gates (sigmoids of the first three quarters of ``pre``),
    the candidate (tanh of the last) and the cells' input ``drive = input_gate candidate``."""
    n = forget.shape[1]
    for k in range(cuda.grid(1), forget.size, cuda.gridsize(1)):
        r, j = k // n, k % n
        i = smath.sigmoid(float(pre[r, n + j]))
        z = smath.tanh(float(pre[r, 3 * n + j]))
        forget[r, j] = smath.sigmoid(float(pre[r, j]))
        output_gate[r, j] = smath.sigmoid(float(pre[r, 2 * n + j]))
        input_gate[r, j], candidate[r, j], drive[r, j] = i, z, i * z


@cuda.jit
def lstm_gradients_kernel(
    dforget, dinput, dy, forget, input_gate, output_gate, candidate, cells, dpre
):
    """The pre-activations' gradients from those of the cells' coefficient (``dforget``) and
    input (``dinput``) and of the output ``h = output_gate cells`` (``dy``)."""
    n = forget.shape[1]
    for k in range(cuda.grid(1), forget.size, cuda.gridsize(1)):
        r, j = k // n, k % n
        f, i = float(forget[r, j]), float(input_gate[r, j])
        o, z = float(output_gate[r, j]), float(candidate[r, j])
        d = float(dinput[r, j])
        dpre[r, j] = dforget[r, j] * f * (1.0 - f)
        dpre[r, n + j] = d * z * i * (1.0 - i)
        dpre[r, 2 * n + j] = dy[r, j] * cells[r, j] * o * (1.0 - o)
        dpre[r, 3 * n + j] = d * i * (1.0 - z * z)


def gilr_gates(pre) -> tuple:
    """GILR's ``(gate, candidate, drive)`` from its pre-activations ``(R, 2 n)``."""
    rows, n = pre.shape[0], pre.shape[1] // 2
    outputs = tuple(cuda.device_array((rows, n), pre.dtype) for _ in range(3))
    if rows and n:
        launch_flat(gilr_gates_kernel, rows * n)(pre, *outputs)
    return outputs


def gilr_gradients(dgate, ddrive, gate, candidate):
    """GILR's pre-activations' gradients ``(R, 2 n)``."""
    rows, n = gate.shape
    dpre = cuda.device_array((rows, 2 * n), gate.dtype)
    if rows and n:
        launch_flat(gilr_gradients_kernel, rows * n)(dgate, ddrive, gate, candidate, dpre)
    return dpre


def lstm_gates(pre) -> tuple:
    """GILR-LSTM's ``(forget, input_gate, output_gate, candidate, drive)`` from its
    pre-activations ``(R, 4 n)``."""
    rows, n = pre.shape[0], pre.shape[1] // 4
    outputs = tuple(cuda.device_array((rows, n), pre.dtype) for _ in range(5))
    if rows and n:
        launch_flat(lstm_gates_kernel, rows * n)(pre, *outputs)
    return outputs


def lstm_gradients(dforget, dinput, dy, forget, input_gate, output_gate, candidate, cells):
    """GILR-LSTM's pre-activations' gradients ``(R, 4 n)``."""
    rows, n = forget.shape
    dpre = cuda.device_array((rows, 4 * n), forget.dtype)
    if rows and n:
        launch_flat(lstm_gradients_kernel, rows * n)(
            dforget, dinput, dy, forget, input_gate, output_gate, candidate, cells, dpre
        )
    return dpre


def kernel_signatures():
    """The kernels with each real dtype's signature, for ``cuda.compile_ptx``."""
    kernels = [
        (gilr_gates_kernel, 4),
        (gilr_gradients_kernel, 5),
        (lstm_gates_kernel, 6),
        (lstm_gradients_kernel, 9),
    ]
    return [
        (kernel, f"void({', '.join([f'{dtype}[:, ::1]'] * operands)})")
        for dtype in DTYPES[:2]
        for kernel, operands in kernels
    ]
