"""The gates of the recurrent layers of :mod:`scanlab.nn.layers` on the CPU: from the
pre-activations to the gates and a linear recurrence's coefficients, and back from their
gradients to the pre-activations' gradients, each one fused pass over the rows.

Twin of :mod:`scanlab.cuda.layer_gates`, on the same ``(R, n)`` layout (``R`` steps times
sequences, ``n`` the hidden size; the pre-activations ``(R, gates n)``, the gates side by side),
with the same arithmetic (:mod:`scanlab._gates`). Blocks of rows are shared out among Numba's
threads (:func:`scanlab.cpu.threads.share_out`); each row's loop over the channels vectorises.
The launchers take C-contiguous arrays of one dtype (read-only ones too, so that each kernel is
compiled once per dtype) and return new arrays.
"""

import numpy as np

from scanlab._arrays import read_only
from scanlab._gates import gilr_gate, gilr_gradient, lstm_gate, lstm_gradient
from scanlab._kernel_cache import njit_cached
from scanlab.config import FASTMATH
from scanlab.cpu import atomics
from scanlab.cpu.threads import share_out

#: Elements (rows times channels) per task: enough to repay taking a task, few enough that the
#: threads share a layer's rows evenly.
ELEMENT_BLOCK = 1 << 15


@njit_cached(nogil=True, fastmath=FASTMATH)
def gilr_gates_blocks(next_block, rows_per_block, pre, gate, candidate, drive):
    """GILR's gates of the blocks of rows taken from the counter."""
    rows, n = gate.shape
    block = atomics.fetch_add(next_block, 0, 1)
    while block * rows_per_block < rows:
        for r in range(block * rows_per_block, min(rows, (block + 1) * rows_per_block)):
            pre_r, gate_r, candidate_r, drive_r = pre[r], gate[r], candidate[r], drive[r]
            for j in range(n):
                gate_r[j], candidate_r[j], drive_r[j] = gilr_gate(pre_r[j], pre_r[n + j])
        block = atomics.fetch_add(next_block, 0, 1)


@njit_cached(nogil=True, fastmath=FASTMATH)
def gilr_gradients_blocks(next_block, rows_per_block, dgate, ddrive, gate, candidate, dpre):
    """GILR's pre-activations' gradients of the blocks of rows taken from the counter."""
    rows, n = gate.shape
    block = atomics.fetch_add(next_block, 0, 1)
    while block * rows_per_block < rows:
        for r in range(block * rows_per_block, min(rows, (block + 1) * rows_per_block)):
            dgate_r, ddrive_r, gate_r, candidate_r = dgate[r], ddrive[r], gate[r], candidate[r]
            dpre_r = dpre[r]
            for j in range(n):
                dpre_r[j], dpre_r[n + j] = gilr_gradient(
                    dgate_r[j], ddrive_r[j], gate_r[j], candidate_r[j]
                )
        block = atomics.fetch_add(next_block, 0, 1)


@njit_cached(nogil=True, fastmath=FASTMATH)
def lstm_gates_blocks(
    next_block, rows_per_block, pre, forget, input_gate, output_gate, candidate, drive
):
    """GILR-LSTM's gates of the blocks of rows taken from the counter."""
    rows, n = forget.shape
    block = atomics.fetch_add(next_block, 0, 1)
    while block * rows_per_block < rows:
        for r in range(block * rows_per_block, min(rows, (block + 1) * rows_per_block)):
            pre_r, forget_r, input_r = pre[r], forget[r], input_gate[r]
            output_r, candidate_r, drive_r = output_gate[r], candidate[r], drive[r]
            for j in range(n):
                gates = lstm_gate(pre_r[j], pre_r[n + j], pre_r[2 * n + j], pre_r[3 * n + j])
                forget_r[j], input_r[j], output_r[j], candidate_r[j], drive_r[j] = gates
        block = atomics.fetch_add(next_block, 0, 1)


@njit_cached(nogil=True, fastmath=FASTMATH)
def lstm_gradients_blocks(
    next_block, rows_per_block, dforget, dinput, dy, forget, input_gate, output_gate,
    candidate, cells, dpre,
):  # fmt: skip
    """GILR-LSTM's pre-activations' gradients of the blocks of rows taken from the counter."""
    rows, n = forget.shape
    block = atomics.fetch_add(next_block, 0, 1)
    while block * rows_per_block < rows:
        for r in range(block * rows_per_block, min(rows, (block + 1) * rows_per_block)):
            dforget_r, dinput_r, dy_r, dpre_r = dforget[r], dinput[r], dy[r], dpre[r]
            forget_r, input_r, output_r = forget[r], input_gate[r], output_gate[r]
            candidate_r, cells_r = candidate[r], cells[r]
            for j in range(n):
                gradients = lstm_gradient(
                    dforget_r[j], dinput_r[j], dy_r[j], forget_r[j], input_r[j], output_r[j],
                    candidate_r[j], cells_r[j],
                )  # fmt: skip
                dpre_r[j], dpre_r[n + j], dpre_r[2 * n + j], dpre_r[3 * n + j] = gradients
        block = atomics.fetch_add(next_block, 0, 1)


def run(kernel, rows: int, n: int, operands: tuple, results: tuple) -> tuple:
    """``kernel`` over the ``rows`` of ``n`` channels, shared out in blocks of rows:
    ``operands`` read-only and C-contiguous, then ``results`` written; ``results``."""
    rows_per_block = max(1, ELEMENT_BLOCK // max(n, 1))
    if rows and n:
        operands = tuple(read_only(np.ascontiguousarray(operand)) for operand in operands)
        share_out(kernel, -(-rows // rows_per_block), (rows_per_block, *operands, *results))
    return results


def gilr_gates(pre) -> tuple:
    """GILR's ``(gate, candidate, drive)`` from its pre-activations ``(R, 2 n)``."""
    rows, n = pre.shape[0], pre.shape[1] // 2
    results = tuple(np.empty((rows, n), pre.dtype) for _ in range(3))
    return run(gilr_gates_blocks, rows, n, (pre,), results)


def gilr_gradients(dgate, ddrive, gate, candidate):
    """GILR's pre-activations' gradients ``(R, 2 n)``."""
    rows, n = gate.shape
    dpre = np.empty((rows, 2 * n), gate.dtype)
    return run(gilr_gradients_blocks, rows, n, (dgate, ddrive, gate, candidate), (dpre,))[0]


def lstm_gates(pre) -> tuple:
    """GILR-LSTM's ``(forget, input_gate, output_gate, candidate, drive)`` from its
    pre-activations ``(R, 4 n)``."""
    rows, n = pre.shape[0], pre.shape[1] // 4
    results = tuple(np.empty((rows, n), pre.dtype) for _ in range(5))
    return run(lstm_gates_blocks, rows, n, (pre,), results)


def lstm_gradients(dforget, dinput, dy, forget, input_gate, output_gate, candidate, cells):
    """GILR-LSTM's pre-activations' gradients ``(R, 4 n)``."""
    rows, n = forget.shape
    dpre = np.empty((rows, 4 * n), forget.dtype)
    operands = (dforget, dinput, dy, forget, input_gate, output_gate, candidate, cells)
    return run(lstm_gradients_blocks, rows, n, operands, (dpre,))[0]
