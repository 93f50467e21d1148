"""The gates of the recurrent layers of :mod:`scanlab.nn.layers` on the GPU: from the
pre-activations to the gates and a linear recurrence's coefficients, and back from their
gradients to the pre-activations' gradients, each one elementwise pass.

Twin of :mod:`scanlab.cpu.layer_gates`, on the same ``(R, n)`` C-contiguous device arrays (``R``
steps times sequences, ``n`` the hidden size; the pre-activations ``(R, gates n)``, the gates
side by side), with the same arithmetic (:mod:`scanlab._gates`, in the arrays' precision),
walked in one grid-stride loop over the elements. The launchers return new device arrays and
do not wait for the GPU.
"""

from numba import cuda

from scanlab._gates import gilr_gate, gilr_gradient, lstm_gate, lstm_gradient
from scanlab.cuda.elementwise import launch_flat
from scanlab.cuda.kernel_layout import DTYPES


@cuda.jit
def gilr_gates_kernel(pre, gate, candidate, drive):
    """GILR's gates (:func:`scanlab._gates.gilr_gate`) of every element."""
    n = gate.shape[1]
    for k in range(cuda.grid(1), gate.size, cuda.gridsize(1)):
        r, j = k // n, k % n
        gate[r, j], candidate[r, j], drive[r, j] = gilr_gate(pre[r, j], pre[r, n + j])


@cuda.jit
def gilr_gradients_kernel(dgate, ddrive, gate, candidate, dpre):
    """GILR's pre-activations' gradients (:func:`scanlab._gates.gilr_gradient`)."""
    n = gate.shape[1]
    for k in range(cuda.grid(1), gate.size, cuda.gridsize(1)):
        r, j = k // n, k % n
        dpre[r, j], dpre[r, n + j] = gilr_gradient(
            dgate[r, j], ddrive[r, j], gate[r, j], candidate[r, j]
        )


@cuda.jit
def lstm_gates_kernel(pre, forget, input_gate, output_gate, candidate, drive):
    """GILR-LSTM's gates (:func:`scanlab._gates.lstm_gate`) of every element."""
    n = forget.shape[1]
    for k in range(cuda.grid(1), forget.size, cuda.gridsize(1)):
        r, j = k // n, k % n
        gates = lstm_gate(pre[r, j], pre[r, n + j], pre[r, 2 * n + j], pre[r, 3 * n + j])
        forget[r, j], input_gate[r, j], output_gate[r, j] = gates[0], gates[1], gates[2]
        candidate[r, j], drive[r, j] = gates[3], gates[4]


@cuda.jit
def lstm_gradients_kernel(
    dforget, dinput, dy, forget, input_gate, output_gate, candidate, cells, dpre
):
    """GILR-LSTM's pre-activations' gradients (:func:`scanlab._gates.lstm_gradient`)."""
    n = forget.shape[1]
    for k in range(cuda.grid(1), forget.size, cuda.gridsize(1)):
        r, j = k // n, k % n
        gradients = lstm_gradient(
            dforget[r, j], dinput[r, j], dy[r, j], forget[r, j], input_gate[r, j],
            output_gate[r, j], candidate[r, j], cells[r, j],
        )  # fmt: skip
        dpre[r, j], dpre[r, n + j] = gradients[0], gradients[1]
        dpre[r, 2 * n + j], dpre[r, 3 * n + j] = gradients[2], gradients[3]


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
