"""Newton iterates in kernel layout, and the solve of their corrections: what the CPU and CUDA
backends of the nonlinear recurrence (``scanlab.cpu.nonlinear``, ``scanlab.cuda.nonlinear``)
share. States are ``(T, B, n)``, flat Jacobians ``(T, B, width)`` as ``scanlab._step_routines``
describes; host or device arrays alike.
"""

import numpy as np


class Iterate:
    """A Newton iterate ``h`` with what ``evaluate`` finds at it: ``rhs = f - h``, the scaled
    residual of each step and sequence and the Jacobians (only their diagonals if
    ``diagonal_only``), flat and, as ``structured``, in the cell's shape ``plan.shape``;
    ``empty`` makes the arrays (``np.empty``, or ``cuda.device_array`` on the GPU)."""

    def __init__(self, h, plan, diagonal_only: bool, with_jacobian: bool, empty=np.empty):
        length, sequences, n = h.shape
        self.h = h
        self.rhs = empty(h.shape, h.dtype)
        self.residual = empty((length, sequences), h.dtype)
        width = (n if diagonal_only else n * plan.period) if with_jacobian else 0
        self.jacobians = empty((length, sequences, width), h.dtype)
        self.in_place = with_jacobian and not diagonal_only
        self.structured = (
            self.jacobians.reshape(length, sequences, *plan.shape)
            if self.in_place
            else empty((1, 1, *plan.shape), h.dtype)
        )


def solve_correction(
    jacobians, rhs, delta, zeros, period: int, diagonal_only: bool, solvers, reverse=False
):
    """``delta[t] = J[t] delta[t-1] + rhs[t]`` from ``zeros`` (``B * n`` of them), for flat
    Jacobians ``(T, B, width)``: elementwise for diagonals, else with ``(period, period)``
    blocks; ``reverse``: ``delta[t] = J[t] delta[t+1] + rhs[t]``. ``solvers`` are the
    elementwise and matrix solvers in kernel layout, ``solve(a, b, h0, out, reverse, method)``:
    the CPU's on host arrays, the GPU's on device arrays."""
    elementwise, matrix = solvers
    length, sequences, n = rhs.shape
    if diagonal_only or period == 1:
        channels = sequences * n
        elementwise(
            jacobians.reshape(length, channels), rhs.reshape(length, channels), zeros,
            delta.reshape(length, channels), reverse, "auto",
        )  # fmt: skip
    else:
        systems = sequences * n // period
        matrix(
            jacobians.reshape(length, systems, period, period),
            rhs.reshape(length, systems, period), zeros.reshape(systems, period),
            delta.reshape(length, systems, period), reverse, "auto",
        )  # fmt: skip


def first_and_frozen(starts: np.ndarray, length: int) -> tuple:
    """From the step where each sequence's correction starts (``length``: it has none), the
    first step corrected and which sequences keep their states (booleans)."""
    return int(starts.min()), starts >= length
