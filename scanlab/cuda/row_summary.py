"""Newton's convergence judgement on the GPU: the :class:`scanlab._row_summary.RowSummary`
of an iterate's residual rows ``(T, B)`` reduced on the device, so that an iteration sends
``O(B)`` values to the host instead of ``T * B`` (the host twin is
:func:`scanlab.cpu.row_summary.summarise_rows`).

Two kernels, each on blocks of ``(lanes, depth)`` threads: ``lanes`` neighbouring sequences
(coalesced reads of a row) by ``depth`` threads that stride down the rows. ``partial_kernel``
cuts the rows into ``parts`` (a second grid axis, so that one long sequence still fills the
GPU) and writes a partial summary per part; ``summary_kernel`` combines the parts and looks up
whether each sequence's first bad residual is NaN. The quantities are float64 (step indices
are exact there), so that one copy brings them all to the host.
"""

import math

import numba
import numpy as np
from numba import cuda

from scanlab import config
from scanlab._row_summary import RowSummary

#: The rows of a partial and of a summary: a sequence's first step not within ``tol``, its
#: first step whose evaluation raised (residual ``FAILED``, negative), whether a residual from
#: ``first`` on is not finite, its largest residual (Inf if not finite), the sum of its squared
#: residuals from ``first`` on, and (the summary only) whether its first bad residual is NaN.
FIRST_BAD, FIRST_FAILED, NOT_FINITE, WORST, MERIT, BAD_IS_NAN = range(6)
PARTIAL_QUANTITIES = 5
#: Most threads per block, and the rows that each thread of ``partial_kernel`` reads, at least
#: (a block has no more threads than that leaves work for).
MAX_THREADS = 256
ROWS_PER_THREAD = 8
#: Most blocks of ``partial_kernel`` (its parts times its blocks of sequences).
MAX_BLOCKS = 4096


@cuda.jit(device=True)
def combine_in_block(first_bad, first_failed, not_finite, worst, merit):
    """The five quantities of the threads of a block combined over its ``depth`` axis (first
    steps by their minimum, flags and largest residuals by their maximum, merits by their sum);
    meaningful in the threads of row 0. The block's dynamic shared memory holds them, ``(5,
    threads)`` float64 (the simulator allocates a static shared array racily: threads of a
    block may get different ones)."""
    lane, row = cuda.threadIdx.x, cuda.threadIdx.y
    lanes, depth = cuda.blockDim.x, cuda.blockDim.y
    threads = lanes * depth
    shared = cuda.shared.array(0, numba.float64)
    index = row * lanes + lane
    shared[FIRST_BAD * threads + index] = first_bad
    shared[FIRST_FAILED * threads + index] = first_failed
    shared[NOT_FINITE * threads + index] = not_finite
    shared[WORST * threads + index] = worst
    shared[MERIT * threads + index] = merit
    cuda.syncthreads()
    stride = depth // 2
    while stride > 0:
        if row < stride:
            for quantity in range(PARTIAL_QUANTITIES):
                mine = quantity * threads + index
                other = shared[mine + stride * lanes]
                if quantity == FIRST_BAD or quantity == FIRST_FAILED:
                    shared[mine] = min(shared[mine], other)
                elif quantity == MERIT:
                    shared[mine] += other
                else:
                    shared[mine] = max(shared[mine], other)
        cuda.syncthreads()
        stride //= 2
    return (
        shared[FIRST_BAD * threads + lane],
        shared[FIRST_FAILED * threads + lane],
        shared[NOT_FINITE * threads + lane],
        shared[WORST * threads + lane],
        shared[MERIT * threads + lane],
    )


@cuda.jit
def partial_kernel(rows, first, tol, partials):
    """``partials[:, part, s]``: the quantities of sequence ``s`` over the rows of ``part``
    (``blockIdx.y``), with ``rows`` ``(T, B)`` evaluated from step ``first`` on."""
    length, sequences = rows.shape
    sequence = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    parts, part = cuda.gridDim.y, cuda.blockIdx.y
    span = (length + parts - 1) // parts
    first_bad = first_failed = float(length)
    not_finite = worst = merit = 0.0
    if sequence < sequences:
        stop = min(length, (part + 1) * span)
        for t in range(part * span + cuda.threadIdx.y, stop, cuda.blockDim.y):
            residual = rows[t, sequence]
            magnitude = float(residual) if math.isfinite(residual) else math.inf
            worst = max(worst, magnitude)
            if t >= first:
                if not residual <= tol:
                    first_bad = min(first_bad, float(t))
                if residual < 0:
                    first_failed = min(first_failed, float(t))
                if magnitude == math.inf:
                    not_finite = 1.0
                merit += magnitude * magnitude
    first_bad, first_failed, not_finite, worst, merit = combine_in_block(
        first_bad, first_failed, not_finite, worst, merit
    )
    if cuda.threadIdx.y == 0 and sequence < sequences:
        partials[FIRST_BAD, part, sequence] = first_bad
        partials[FIRST_FAILED, part, sequence] = first_failed
        partials[NOT_FINITE, part, sequence] = not_finite
        partials[WORST, part, sequence] = worst
        partials[MERIT, part, sequence] = merit


@cuda.jit
def summary_kernel(partials, rows, summary):
    """``summary[:, s]``: the partials of sequence ``s`` combined, and whether the residual at
    its first bad step is NaN."""
    parts, sequences = partials.shape[1], partials.shape[2]
    length = rows.shape[0]
    sequence = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    first_bad = first_failed = float(length)
    not_finite = worst = merit = 0.0
    if sequence < sequences:
        for part in range(cuda.threadIdx.y, parts, cuda.blockDim.y):
            first_bad = min(first_bad, partials[FIRST_BAD, part, sequence])
            first_failed = min(first_failed, partials[FIRST_FAILED, part, sequence])
            not_finite = max(not_finite, partials[NOT_FINITE, part, sequence])
            worst = max(worst, partials[WORST, part, sequence])
            merit += partials[MERIT, part, sequence]
    first_bad, first_failed, not_finite, worst, merit = combine_in_block(
        first_bad, first_failed, not_finite, worst, merit
    )
    if cuda.threadIdx.y == 0 and sequence < sequences:
        summary[FIRST_BAD, sequence] = first_bad
        summary[FIRST_FAILED, sequence] = first_failed
        summary[NOT_FINITE, sequence] = not_finite
        summary[WORST, sequence] = worst
        summary[MERIT, sequence] = merit
        bad = int(first_bad)
        summary[BAD_IS_NAN, sequence] = (
            1.0 if bad < length and math.isnan(rows[bad, sequence]) else 0.0
        )


class RowSummariser:
    """Summarises the residual rows ``(T, B)`` of one solve's iterates, its buffers (device
    partials and summary, and its host copy) allocated once. The host copy is plain (pageable)
    memory: pinning it (``cudaHostAlloc``) would cost more per solve than it saves on copies of
    ``6 B`` values."""

    def __init__(self, length: int, sequences: int):
        # No more threads than there are rows to read, ROWS_PER_THREAD each (a small solve's
        # summary takes one small block).
        work = max(1, length * sequences // ROWS_PER_THREAD)
        threads = 1 << int(math.log2(min(MAX_THREADS, config.cuda.threads_per_block, work)))
        lanes = min(32, threads, 1 << max(0, math.ceil(math.log2(max(1, sequences)))))
        self.block = (lanes, threads // lanes)
        self.columns = math.ceil(sequences / lanes)
        wanted = math.ceil(length / (self.block[1] * ROWS_PER_THREAD))
        self.parts = max(1, min(wanted, MAX_BLOCKS // self.columns))
        self.length = length
        self.partials = cuda.device_array((PARTIAL_QUANTITIES, self.parts, sequences), np.float64)
        self.summary = cuda.device_array((BAD_IS_NAN + 1, sequences), np.float64)
        self.host = np.empty((BAD_IS_NAN + 1, sequences), np.float64)

    def __call__(self, rows, first: int, tol: float) -> tuple:
        """The :class:`RowSummary` of ``rows`` evaluated from step ``first`` on, and the first
        step of each sequence whose evaluation raised (``T`` if none)."""
        shared = PARTIAL_QUANTITIES * self.block[0] * self.block[1] * 8
        partial_kernel[(self.columns, self.parts), self.block, 0, shared](
            rows, first, rows.dtype.type(tol), self.partials
        )
        summary_kernel[self.columns, self.block, 0, shared](self.partials, rows, self.summary)
        self.summary.copy_to_host(self.host)
        host = self.host
        summary = RowSummary(
            self.length,
            host[FIRST_BAD].astype(np.int64),
            host[BAD_IS_NAN] != 0,
            host[NOT_FINITE] == 0,
            host[WORST].copy(),
            host[MERIT].copy(),
        )
        return summary, host[FIRST_FAILED].astype(np.int64)


def kernel_signatures():
    """Each kernel with the signatures the solver launches (float32 and float64 rows), for
    ``cuda.compile_ptx``."""
    signatures = []
    for dtype in ("float32", "float64"):
        signatures += [
            (partial_kernel, f"void({dtype}[:, ::1], int64, {dtype}, float64[:, :, ::1])"),
            (summary_kernel, f"void(float64[:, :, ::1], {dtype}[:, ::1], float64[:, ::1])"),
        ]
    return signatures
