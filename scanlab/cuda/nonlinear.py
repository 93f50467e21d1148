"""CUDA kernels of the nonlinear recurrence ``h[t] = f(h[t-1], x[t])`` (``scanlab.nonlinear``).

Twin of :mod:`scanlab.cpu.nonlinear`, with the same layout on device arrays: ``x`` ``(T, B, m)``,
states ``(T, B, n)``, ``h0`` ``(B, n)``, flat Jacobians ``(T, B, width)``. The cell's step (and
Jacobian) are compiled as device functions; ``evaluate_kernel`` runs one thread per step and
sequence (a grid-stride loop), ``sequential_kernel`` one thread per sequence, and the Newton
corrections are solved by :mod:`scanlab.cuda.linear` and :mod:`scanlab.cuda.linear_matrix` on the
device. The convergence test is reduced on the device too (:mod:`scanlab.cuda.row_summary`): an
iteration sends ``O(B)`` values to the host and back, and the solve's buffers are allocated
once.
"""

import math
import types

import numba
import numpy as np
from numba import cuda

from scanlab import config
from scanlab._devices import host_leaves, on_gpu
from scanlab._iterates import Iterate, first_and_frozen, solve_correction
from scanlab._row_summary import RowSummary
from scanlab._step_routines import (
    ANALYTIC,
    CENTRAL_DIFFERENCES,
    COMPLEX_STEP,
    differentiation,
    evaluation,
    failed_steps,
    sequence_loop,
)
from scanlab.cuda import linear as cuda_linear
from scanlab.cuda import linear_matrix as cuda_linear_matrix
from scanlab.cuda.arrays import on_device
from scanlab.cuda.memory import Scratch, numba_view
from scanlab.cuda.row_summary import RowSummariser
from scanlab.math import with_globals

#: Most threads of ``evaluate_kernel``, and most bytes of their per-thread scratch (automatic
#: Jacobians, or the quasi-Newton diagonal of a cell's own block or dense Jacobian).
MAX_EVALUATION_THREADS = 65536
MAX_SCRATCH_BYTES = 256 * 1024 * 1024


def with_gpu_forms(function, device_function):
    """``function`` with each function it calls that names a form for GPUs (its ``on_gpus``
    attribute, e.g. :func:`scanlab.cells.builtin.recurrent_sums`, whose CPU form is an
    ``overload`` for CPUs only) replaced by that form as a device function. ``function``
    itself if it calls none."""
    namespace = function.__globals__
    replaced = {
        name: device_function(namespace[name].on_gpus)
        for name in function.__code__.co_names
        if hasattr(namespace.get(name), "on_gpus")
    }
    return with_globals(function, replaced)


def build_kernels(step_function, jacobian_function, method, fused_function=None):
    """The CUDA kernels of a cell's Python step (and Jacobian, and the step that also writes
    its Jacobian, see :func:`scanlab._step_routines.evaluation`) for a Jacobian ``method``
    (None: the loop only), with the Python functions of the kernels for ``cuda.compile_ptx``.

    The step, the Jacobian and what they call (:mod:`scanlab.math` included) are device
    functions, each compiled once and inlined by NVVM: Numba copying their IR into every call
    site (``inline="always"``) made ParaLSTM's two kernels take 41 s to compile, 4.3 s as calls,
    the same PTX (2026-12-07, Zen 3 2-core VM). Compiling a device function asks the driver for
    the GPU's compute capability; ``tests/test_cuda_ptx.py`` compiles them to PTX without one.
    """
    device_function = cuda.jit(device=True)
    if not numba.config.ENABLE_CUDASIM:
        step_function, jacobian_function, fused_function = (
            None if function is None else with_gpu_forms(function, device_function)
            for function in (step_function, jacobian_function, fused_function)
        )
    step = device_function(step_function)

    run_from = sequence_loop(step, device_function)

    def sequential(x, params, h0, out, starts, stopped):
        """The plain loop, one thread per sequence, from step ``starts[s]`` of sequence ``s``;
        ``stopped[s]`` holds the step being run, ``T`` once done (a thread stops where its step
        raises)."""
        sequence = cuda.grid(1)
        if sequence < out.shape[1]:
            run_from(x, params, h0, out, sequence, starts[sequence],
                     stopped[sequence : sequence + 1])  # fmt: skip
            stopped[sequence] = out.shape[0]

    if method is None:
        return types.SimpleNamespace(sequential_kernel=cuda.jit(sequential), sequential=sequential)
    jacobian = None if jacobian_function is None else device_function(jacobian_function)
    differentiate = differentiation(step, jacobian, method, device_function)
    fused = None if fused_function is None else device_function(fused_function)
    evaluate_at = evaluation(step, differentiate, device_function, fused)

    def evaluate(
        x, params, h, h0, first, period, spacing, scratch, in_place, structured, diagonal_only,
        rhs, jacobians, residual, work, complex_work,
    ):  # fmt: skip
        """``evaluate_at`` at every step from ``first`` on, a grid-stride loop over steps and
        sequences (a thread stops where a step raises, leaving its residual ``FAILED``); each
        thread has a row of ``scratch``, ``work`` and ``complex_work`` (or shares their single
        row when its method does not use them)."""
        thread = cuda.grid(1)
        sequences = h.shape[1]
        items = (h.shape[0] - first) * sequences
        for item in range(thread, items, cuda.gridsize(1)):
            t = first + item // sequences
            sequence = item % sequences
            target = structured[t, sequence] if in_place else scratch[thread % scratch.shape[0]]
            evaluate_at(
                t, sequence, x, params, h, h0, rhs, residual, period, spacing, target, jacobians,
                diagonal_only, work[thread % work.shape[0]],
                complex_work[thread % complex_work.shape[0]],
            )  # fmt: skip

    return types.SimpleNamespace(
        sequential_kernel=cuda.jit(sequential),
        evaluate_kernel=cuda.jit(evaluate),
        sequential=sequential,
        evaluate=evaluate,
    )


#: The kernels built so far, by step, Jacobian and method (as ``scanlab.cpu.nonlinear.KERNELS``).
KERNELS = {}


def kernels_for(cell, method):
    """The CUDA kernels of ``cell`` for a Jacobian ``method`` (None: the loop only), built once."""
    fused = cell.step_with_jacobian if method == ANALYTIC else None
    key = (cell.step, cell.jacobian, method, fused)
    if key not in KERNELS:
        jacobian = None if cell.jacobian is None else cell.jacobian.py_func
        fused_function = None if fused is None else fused.py_func
        kernels = build_kernels(cell.step.py_func, jacobian, method, fused_function)
        if method is not None:
            kernels.sequential_kernel = kernels_for(cell, None).sequential_kernel
        KERNELS[key] = kernels
    return KERNELS[key]


def to_device(params):
    """``params`` with its host arrays (alone or in a tuple) copied to the GPU once and its GPU
    arrays as Numba's views of them (a kernel takes those in a tuple); None, which CUDA
    kernels cannot take, becomes 0.0."""
    if params is None:
        return 0.0
    if isinstance(params, np.ndarray):
        return cuda.to_device(params)
    if isinstance(params, tuple):
        return tuple(to_device(value) for value in params)
    return numba_view(params) if on_gpu(params) else params


@cuda.jit
def broadcast_rows_kernel(states, rows):
    """``states[t] = rows`` for every ``t``, both flattened (``T * width`` and ``width``)."""
    index = cuda.grid(1)
    if index < states.size:
        states[index] = rows[index % rows.shape[0]]


@cuda.jit
def add_kernel(result, first, second):
    """``result = first + second``, 1-D (``result`` may be ``first``)."""
    index = cuda.grid(1)
    if index < result.shape[0]:
        result[index] = first[index] + second[index]


@cuda.jit
def scale_kernel(result, values, factors):
    """``result[t, s] = factors[s] * values[t, s]`` (``(T, B, width)``, ``factors`` ``(B,)``)."""
    index = cuda.grid(1)
    sequences = values.shape[1]
    if index < values.shape[0] * sequences:
        t, sequence = index // sequences, index % sequences
        for i in range(values.shape[2]):
            result[t, sequence, i] = factors[sequence] * values[t, sequence, i]


@cuda.jit
def keep_kernel(into_h, into_rhs, into_jacobians, into_residual, h, rhs, jacobians, residual,
                sequences):  # fmt: skip
    """Copy step ``t`` of every sequence ``s`` marked in ``sequences`` from the source iterate
    (``h``, ``rhs``, ``jacobians``, ``residual``) into the target one (``into_*``)."""
    index = cuda.grid(1)
    count = h.shape[1]
    if index < h.shape[0] * count:
        t, sequence = index // count, index % count
        if sequences[sequence]:
            for i in range(h.shape[2]):
                into_h[t, sequence, i] = h[t, sequence, i]
                into_rhs[t, sequence, i] = rhs[t, sequence, i]
            for i in range(jacobians.shape[2]):
                into_jacobians[t, sequence, i] = jacobians[t, sequence, i]
            into_residual[t, sequence] = residual[t, sequence]


@cuda.jit
def freeze_kernel(rhs, jacobians, frozen):
    """Zero ``rhs[t, s]`` and ``jacobians[t, s]`` of every sequence ``s`` marked in ``frozen``."""
    index = cuda.grid(1)
    length, sequences = rhs.shape[0], rhs.shape[1]
    if index < length * sequences:
        t, sequence = index // sequences, index % sequences
        if frozen[sequence]:
            for i in range(rhs.shape[2]):
                rhs[t, sequence, i] = 0
            for i in range(jacobians.shape[2]):
                jacobians[t, sequence, i] = 0


@cuda.jit
def transpose_following_kernel(jacobians, period, out):
    """``out[t] = J[t+1]^T`` for ``t < T - 1`` and ``out[T-1] = 0``: flat Jacobians ``(T, B,
    width)`` with ``(period, period)`` blocks (``scanlab.cpu.nonlinear.transpose_following``)."""
    index = cuda.grid(1)
    length, sequences, width = out.shape
    if index < length * sequences * width:
        t, rest = index // (sequences * width), index % (sequences * width)
        sequence, entry = rest // width, rest % width
        if t + 1 < length:
            # Entry (i, c) of the transpose is entry (j, i % period) of J, j = i's block + c.
            row, colour = entry // period, entry % period
            column = (row // period) * period + colour
            out[t, sequence, entry] = jacobians[t + 1, sequence, column * period + row % period]
        else:
            out[t, sequence, entry] = 0


def launch(kernel, size: int, *args) -> None:
    """Run a one-thread-per-element ``kernel`` over ``size`` elements."""
    threads = config.cuda.threads_per_block
    kernel[max(1, math.ceil(size / threads)), threads](*args)


def flat(array):
    """A C-contiguous device array as 1-D."""
    return array.reshape(array.size)


#: The elementwise and matrix solvers of Newton's corrections, on device arrays.
SOLVERS = (cuda_linear.solve_on_device, cuda_linear_matrix.solve_on_device)


class Backend:
    """The Newton solver's operations on the GPU, for one cell, its inputs and initial states:
    the twin of ``scanlab.cpu.nonlinear.Backend`` (host inputs, device arrays inside), an
    ``InMemoryBackend`` of :mod:`scanlab._newton`."""

    def __init__(self, cell, plan, x, params, h0, quasi: bool):
        self.cell, self.plan, self.dtype = cell, plan, h0.dtype
        # The parameters on the host run a step again there where it raised on the GPU.
        self.given_params = params
        self.x, self.params, self.h0 = on_device(x), to_device(params), on_device(h0)
        self.shape = (x.shape[0], *h0.shape)
        self.kernels = kernels_for(cell, None if plan is None else plan.method)
        if plan is None:
            return
        self.diagonal_only = quasi and plan.period > 1
        length, sequences, n = self.shape
        complex_dtype = np.result_type(self.dtype, np.complex64)
        # Per-thread scratch only where the method uses it, and at most MAX_SCRATCH_BYTES.
        rows = {
            "scratch": n * plan.period if self.diagonal_only and plan.method == "analytic" else 0,
            "work": 4 * n if plan.method == CENTRAL_DIFFERENCES else 0,
            "complex_work": 2 * n if plan.method == COMPLEX_STEP else 0,
        }
        row_bytes = max(1, rows["scratch"] + rows["work"] + 2 * rows["complex_work"])
        self.threads = max(
            1,
            min(MAX_EVALUATION_THREADS, MAX_SCRATCH_BYTES // (row_bytes * self.dtype.itemsize)),
        )
        count = {name: self.threads if size else 1 for name, size in rows.items()}
        self.scratch = cuda.device_array((count["scratch"], *plan.shape), self.dtype)
        self.work = cuda.device_array((count["work"], 4 * n), self.dtype)
        self.complex_work = cuda.device_array((count["complex_work"], 2 * n), complex_dtype)
        # The buffers of every iteration: the Newton correction and its zero initial state, the
        # convergence test's, the sequences marked (frozen, kept), the damped Jacobians and the
        # linear scans' temporaries.
        self.delta = cuda.device_array(self.shape, self.dtype)
        self.zeros = cuda.to_device(np.zeros(sequences * n, self.dtype))
        self.summarise_rows = RowSummariser(length, sequences)
        self.marks = cuda.device_array(sequences, np.bool_)
        self.factors = cuda.device_array(sequences, self.dtype)
        self.damped = None
        self.temporaries = Scratch()

    def states(self):
        """An uninitialised ``(T, B, n)`` device array of states."""
        return cuda.device_array(self.shape, self.dtype)

    def to_host(self, states) -> np.ndarray:
        return states.copy_to_host()

    def load(self, states, values) -> None:
        """Copy ``values``, a host or C-contiguous device array, into ``states``."""
        flat(states).copy_to_device(flat(on_device(values)))

    def copy(self, states, source) -> None:
        """Copy the device states ``source`` into ``states``."""
        flat(states).copy_to_device(flat(source))

    def iterate(self, h, with_jacobian: bool = True) -> Iterate:
        return Iterate(h, self.plan, self.diagonal_only, with_jacobian, empty=cuda.device_array)

    def evaluate(self, iterate: Iterate, first: int, tol: float = 0.0) -> RowSummary:
        """Evaluate the cell at ``iterate`` from step ``first`` on; the summary of its residual
        rows, reduced on the device (``scanlab._newton.Backend.evaluate``)."""
        length, sequences, _ = self.shape
        items = (length - first) * sequences
        threads = config.cuda.threads_per_block
        blocks = max(1, math.ceil(min(items, self.threads) / threads))
        self.kernels.evaluate_kernel[blocks, threads](
            self.x, self.params, iterate.h, self.h0, first, self.plan.period,
            self.dtype.type(self.plan.spacing), self.scratch, iterate.in_place,
            iterate.structured, self.diagonal_only, iterate.rhs, iterate.jacobians,
            iterate.residual, self.work, self.complex_work,
        )  # fmt: skip
        summary, first_failed = self.summarise_rows(iterate.residual, first, tol)
        if (first_failed < length).any():  # a step raised (see scanlab._step_routines.FAILED)
            plan = self.plan if iterate.jacobians.shape[2] else None
            failed = failed_steps(iterate.residual[first:].copy_to_host(), first)
            self.cell.raise_again(
                self.failures(iterate.h, failed), host_leaves(self.given_params), plan
            )
        return summary

    def summarise(self, iterate: Iterate, first: int, tol: float) -> RowSummary:
        return self.summarise_rows(iterate.residual, first, tol)[0]

    def residual_rows(self, iterate: Iterate) -> np.ndarray:
        return iterate.residual.copy_to_host()

    def failures(self, states, steps):
        """As ``scanlab.cpu.nonlinear.Backend.failures``, with ``h_prev`` copied to the host."""
        for t, sequence in steps:
            h_prev = (states[t - 1] if t else self.h0)[sequence].copy_to_host()
            yield t, sequence, h_prev, self.x[t, sequence].copy_to_host()

    def guess(self, h) -> None:
        """``h[t] = f(h0, x[t])`` at every step: one parallel evaluation."""
        launch(broadcast_rows_kernel, h.size, flat(h), flat(self.h0))
        start = self.iterate(h, with_jacobian=False)
        self.evaluate(start, 0)
        flat(h).copy_to_device(flat(start.rhs))

    def correct(self, iterate: Iterate, starts: np.ndarray, damping, into: Iterate):
        """As ``scanlab.cpu.nonlinear.Backend.correct``, on the device."""
        first, frozen = first_and_frozen(starts, self.shape[0])
        rhs, jacobians = iterate.rhs[first:], iterate.jacobians[first:]
        if frozen.any():
            self.marks.copy_to_device(frozen)
            launch(freeze_kernel, rhs.shape[0] * rhs.shape[1], rhs, jacobians, self.marks)
        if (damping != 1).any():
            if self.damped is None:
                self.damped = cuda.device_array_like(iterate.jacobians)
            damped = self.damped[first:]
            self.factors.copy_to_device(damping.astype(self.dtype))
            launch(scale_kernel, rhs.shape[0] * rhs.shape[1], damped, jacobians, self.factors)
            jacobians = damped
        delta = self.delta[first:]
        with self.temporaries:
            solve_correction(
                jacobians, rhs, delta, self.zeros, self.plan.period, self.diagonal_only,
                SOLVERS,
            )  # fmt: skip
        if into is not iterate and first:
            into.h[:first].copy_to_device(iterate.h[:first])
            into.residual[:first].copy_to_device(iterate.residual[:first])
        launch(add_kernel, delta.size, flat(into.h[first:]), flat(iterate.h[first:]), flat(delta))

    def keep(self, into: Iterate, source: Iterate, first: int, sequences) -> None:
        """As ``scanlab.cpu.nonlinear.Backend.keep``, on the device."""
        names = ("h", "rhs", "jacobians", "residual")
        targets = [getattr(into, name)[first:] for name in names]
        sources = [getattr(source, name)[first:] for name in names]
        steps = (self.shape[0] - first) * self.shape[1]
        self.marks.copy_to_device(sequences)
        launch(keep_kernel, steps, *targets, *sources, self.marks)

    def finish_sequentially(self, h, starts: np.ndarray) -> None:
        """Run the plain loop on each sequence ``s`` from step ``starts[s]`` on."""
        length, sequences, _ = self.shape
        stopped = cuda.device_array(sequences, np.int64)
        launch(self.kernels.sequential_kernel, sequences, self.x, self.params, self.h0, h,
               cuda.to_device(starts.astype(np.int64)), stopped)  # fmt: skip
        stopped = stopped.copy_to_host()
        failed = np.flatnonzero(stopped < length)
        if failed.size:
            steps = zip(stopped[failed], failed, strict=True)
            self.cell.raise_again(self.failures(h, steps), host_leaves(self.given_params))

    def adjoint(self, iterate: Iterate, gradient: np.ndarray):
        """As ``scanlab.cpu.nonlinear.Backend.adjoint``: solved on the device, the adjoint
        returned there (a new device array), the first step's Jacobians on the host."""
        following = cuda.device_array(iterate.jacobians.shape, self.dtype)
        launch(transpose_following_kernel, following.size, iterate.jacobians, self.plan.period,
               following)  # fmt: skip
        solve_correction(
            following, on_device(gradient), self.delta, self.zeros, self.plan.period, False,
            SOLVERS, reverse=True,
        )  # fmt: skip
        return self.delta, iterate.jacobians[0].copy_to_host()


def kernel_signatures():
    """List every module-level kernel with each signature the backend compiles (float32 and
    float64); compile one to PTX with ``cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))``.
    The kernels of a cell are listed by :func:`cell_kernel_signatures`."""
    signatures = []
    for dtype in ("float32", "float64"):
        vector, states = f"{dtype}[::1]", f"{dtype}[:, :, ::1]"
        iterate = ", ".join([states, states, states, f"{dtype}[:, ::1]"])
        signatures += [
            (broadcast_rows_kernel, f"void({vector}, {vector})"),
            (add_kernel, f"void({vector}, {vector}, {vector})"),
            (scale_kernel, f"void({states}, {states}, {vector})"),
            (
                keep_kernel,
                f"void({iterate}, {iterate}, boolean[::1])",
            ),
            (freeze_kernel, f"void({states}, {states}, boolean[::1])"),
            (transpose_following_kernel, f"void({states}, int64, {states})"),
        ]
    return signatures


def cell_kernel_signatures(cell, size: int, inputs: int, dtype, method: str, quasi: bool):
    """The Python functions of ``cell``'s kernels for a Jacobian ``method`` with the signatures
    the backend launches them with, for states of ``size`` and ``inputs`` inputs per step."""
    dtype = np.dtype(dtype)
    kernels = kernels_for(cell, method)
    _, params = cell.prepare(np.zeros((1, inputs)), None, dtype)
    period, shape = cell.period(size), cell.jacobian_shape(size)
    states = np.zeros((1, 1, size), dtype)
    plan = types.SimpleNamespace(period=period, shape=shape)
    iterate = Iterate(states, plan, quasi and period > 1, True)
    complex_work = np.zeros((1, 2 * size), np.result_type(dtype, np.complex64))
    evaluate_args = (
        np.zeros((1, 1, inputs), dtype), params, states, states[0], 0, period, dtype.type(0),
        np.zeros((1, *shape), dtype), iterate.in_place, iterate.structured, quasi, iterate.rhs,
        iterate.jacobians, iterate.residual, np.zeros((1, 4 * size), dtype), complex_work,
    )  # fmt: skip
    marks = np.zeros(1, np.int64)
    sequential_args = (evaluate_args[0], params, states[0], states, marks, marks)
    return [
        (kernels.evaluate, numba.types.void(*map(numba.typeof, evaluate_args))),
        (kernels.sequential, numba.types.void(*map(numba.typeof, sequential_args))),
    ]
