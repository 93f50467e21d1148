"""Benchmarks of ``nonlinear_recurrence`` against the loops users would write.

Used by ``scanlab bench --nonlinear [--device cuda]`` and ``benchmarks/nonlinear.py`` (which
writes ``benchmarks/RESULTS.md``). Timing follows :mod:`scanlab.bench.timing`: the methods compared
take turns, each timed call after an untimed one, the best kept, compilation never timed.

Each CPU case is one float64 sequence of a built-in cell: Newton's method (and quasi-Newton where
its Jacobian differs) against the compiled sequential loop (``method="sequential"``, the honest
baseline) and the same cell written in NumPy one step at a time (the naive baseline). Each GPU
case is a float32 batch: Newton and quasi-Newton on the GPU against the sequential loop on the
GPU (one thread per sequence) and on the CPU; the GPU's times are of whole calls, copies between
host and device included, and those copies are timed alone too. Cases whose Jacobians would not
fit in memory, or whose calls would take too long, are reported as skipped. Each table is
followed by the diagonal tanh cell's comparison (:mod:`scanlab.bench.tanh_cell`).
"""

import math
import time
from functools import cache, partial

import numba
import numpy as np

import scanlab
from scanlab.bench.tables import format_table, gpu_description, machine_description
from scanlab.bench.tanh_cell import (
    TANH_COLUMNS,
    gpu_tanh_comparison,
    gpu_tanh_heading,
    tanh_comparison,
    tanh_heading,
)
from scanlab.bench.timing import best_time, best_times, copy_times, measure_rows

#: The built-in cells benchmarked, by name.
CELLS = {
    "ParaGRU": scanlab.cells.ParaGRU,
    "ParaLSTM": scanlab.cells.ParaLSTM,
    "ElmanRNN": scanlab.cells.ElmanRNN,
}
LENGTHS = (2**10, 2**14, 2**18)
SIZES = (8, 64, 512)
QUICK_LENGTHS = (2**6, 2**8)
QUICK_SIZES = (2, 8)
#: Inputs per step: a few features into a wide state, so that the input projection (one matrix
#: product, the same for every method) stays a small part of each time.
INPUT_SIZE = 8
#: The per-step NumPy loop runs at most this many steps; its time is scaled to the full length.
NUMPY_LOOP_STEPS = 2**10
#: A method is skipped where its Jacobians (``T * n * period`` values) would exceed this...
JACOBIAN_BYTES_LIMIT = 2**30
#: ...or where its time at the previous length, scaled linearly, exceeds this per call.
CALL_SECONDS_LIMIT = 5.0


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def elman_numpy_step(cell, h, x_t):
    """One step of :class:`scanlab.cells.ElmanRNN` in NumPy."""
    return np.tanh(cell.recurrent_weights @ h + cell.input_weights @ x_t + cell.bias)


def gru_numpy_step(cell, h, x_t):
    """One step of :class:`scanlab.cells.ParaGRU` in NumPy."""
    projected = cell.input_weights @ x_t + cell.bias
    recurrent = cell.recurrent_weights
    update = sigmoid(projected[0] + recurrent[0] * h)
    reset = sigmoid(projected[1] + recurrent[1] * h)
    candidate = np.tanh(projected[2] + recurrent[2] * reset * h)
    return h + update * (candidate - h)


def lstm_numpy_step(cell, state, x_t):
    """One step of :class:`scanlab.cells.ParaLSTM` in NumPy (state ``[c0, h0, c1, h1, ...]``)."""
    projected = cell.input_weights @ x_t + cell.bias
    recurrent, peephole = cell.recurrent_weights, cell.peephole_weights
    c, h = state[0::2], state[1::2]
    forget = sigmoid(projected[0] + recurrent[0] * h + peephole[0] * c)
    candidate = np.tanh(projected[1] + recurrent[1] * h)
    following = np.empty_like(state)
    following[0::2] = forget * c + (1 - forget) * candidate
    output = sigmoid(projected[2] + recurrent[2] * h + peephole[1] * following[0::2])
    following[1::2] = output * np.tanh(following[0::2])
    return following


NUMPY_STEPS = {
    scanlab.cells.ElmanRNN: elman_numpy_step,
    scanlab.cells.ParaGRU: gru_numpy_step,
    scanlab.cells.ParaLSTM: lstm_numpy_step,
}


def numpy_loop(cell, x, out, steps: int) -> None:
    """The naive baseline: the cell in NumPy one step at a time from zeros, over ``steps``."""
    step = NUMPY_STEPS[type(cell)]
    state = np.zeros(out.shape[1])
    for t in range(steps):
        state = step(cell, state, x[t])
        out[t] = state


@cache
def benchmark_cell(cell_name: str, size: int):
    """The seeded ``CELLS[cell_name](size, INPUT_SIZE)``, one per name and size: the solver
    compiles its kernels once per cell, so the lengths of a size share them."""
    return CELLS[cell_name](size, INPUT_SIZE, seed=0)


class TimeBudget:
    """Which methods may run at a length: each method's last time per call, scaled linearly to
    the new length, must stay within ``seconds``; a method skipped once stays skipped."""

    def __init__(self, seconds: float = CALL_SECONDS_LIMIT):
        self.seconds = seconds
        self.last = {}

    def allows(self, key, length: int) -> bool:
        if key not in self.last:
            return True
        last_length, last_seconds = self.last[key]
        return last_seconds * length / last_length <= self.seconds

    def record(self, key, length: int, seconds: float) -> None:
        self.last[key] = (length, seconds)


def jacobian_widths(cell) -> dict:
    """Jacobian values per state of each method; no ``"quasi"`` for a diagonal cell, whose
    quasi-Newton is Newton."""
    widths = {"sequential": 0, "newton": cell.period(cell.state_size), "quasi": 1}
    if cell.structure == "diagonal":
        del widths["quasi"]
    return widths


def time_methods(
    cell,
    x,
    methods: dict,
    budget: TimeBudget,
    case: tuple,
    repeats: int,
    jacobian_bytes_limit: int,
    probe_length: int | None = None,
):
    """Time ``nonlinear_recurrence(cell, x, None, method=method, device=device)`` for each
    ``label: (method, device)`` of ``methods`` whose Jacobians fit ``jacobian_bytes_limit`` and
    whose time fits ``budget`` (keys ``(*case, label)``). Return the seconds, the
    ``(h, info)`` and the skip marks, each by label.

    With ``probe_length``, a label the budget has no time for yet is first run twice on the
    first ``probe_length`` steps (the first call compiles, the second is timed), and the budget
    scales that time to the full length: a first length too slow for it is not run at all.
    """
    length, sequences = x.shape[0], math.prod(x.shape[1:-1])
    widths = jacobian_widths(cell)
    skipped, solves, results = {}, {}, {}
    for label, (method, device) in methods.items():
        key = (*case, label)
        jacobian_bytes = length * sequences * cell.state_size * widths[method] * x.itemsize
        if jacobian_bytes > jacobian_bytes_limit:
            skipped[label] = "skipped (memory)"
            continue
        if probe_length and key not in budget.last and length > probe_length:
            probe = partial(solve_into, {}, label, cell, x[:probe_length], method, device)
            probe()
            start = time.perf_counter()
            probe()
            budget.record(key, probe_length, time.perf_counter() - start)
        if budget.allows(key, length):
            solves[label] = partial(solve_into, results, label, cell, x, method, device)
        else:
            skipped[label] = "skipped (time)"
    times = best_times(solves, repeats) if solves else {}
    for label, seconds in times.items():
        budget.record((*case, label), length, seconds)
    return times, results, skipped


def newton_columns(
    row: dict, widths: dict, times: dict, results: dict, skipped: dict, reference: str
) -> None:
    """Fill ``row``'s iterations and milliseconds of Newton and quasi-Newton (labelled by their
    method) and its "max error": their largest difference from ``results[reference]``."""
    errors = []
    for method in ("newton", "quasi"):
        if method not in widths:
            row[f"{method} its"] = row[f"{method} ms"] = "= newton"
        elif method in skipped:
            row[f"{method} its"], row[f"{method} ms"] = "-", skipped[method]
        else:
            h, info = results[method]
            row[f"{method} its"] = str(info.iterations) + ("" if info.converged else " (fallback)")
            row[f"{method} ms"] = 1e3 * times[method]
            if reference in results:
                errors.append(float(np.max(np.abs(h - results[reference][0]))))
    row["max error"] = float(np.max(errors)) if errors else "-"  # NaN must show


def measure_case(
    cell_name: str,
    size: int,
    length: int,
    budget: TimeBudget,
    repeats: int,
    jacobian_bytes_limit: int = JACOBIAN_BYTES_LIMIT,
) -> dict:
    """Time one float64 sequence of ``CELLS[cell_name](size, INPUT_SIZE)`` of ``length`` steps
    by every method that fits ``budget`` and ``jacobian_bytes_limit``; return one table row."""
    cell = benchmark_cell(cell_name, size)
    x = np.random.default_rng(0).standard_normal((length, INPUT_SIZE))
    widths = jacobian_widths(cell)
    methods = {method: (method, "cpu") for method in widths}
    times, results, skipped = time_methods(
        cell, x, methods, budget, (cell_name, size), repeats, jacobian_bytes_limit
    )
    steps = min(length, NUMPY_LOOP_STEPS)
    out = np.empty((steps, cell.state_size))
    numpy_time = best_time(partial(numpy_loop, cell, x, out, steps), 1) * length / steps
    row = {"cell": cell_name, "n": size, "T": length}
    row["sequential ms"] = skipped.get("sequential") or 1e3 * times["sequential"]
    newton_columns(row, widths, times, results, skipped, "sequential")
    row["newton x seq"] = speedup(times, "sequential", "newton")
    row["quasi x seq"] = speedup(times, "sequential", "quasi")
    times["NumPy loop"] = numpy_time
    row["seq x NumPy"] = speedup(times, "NumPy loop", "sequential")
    row["newton x NumPy"] = speedup(times, "NumPy loop", "newton")
    return row


def solve_into(results: dict, label: str, cell, x, method: str, device: str) -> None:
    """Solve with ``method`` on ``device``, keeping ``(h, info)`` in ``results[label]``."""
    results[label] = scanlab.nonlinear_recurrence(
        cell, x, None, method=method, device=device, full_output=True
    )


def speedup(times: dict, baseline: str, method: str):
    """How many times faster ``method`` ran than ``baseline``; "-" if either did not run."""
    if baseline in times and method in times:
        return times[baseline] / times[method]
    return "-"


def cpu_table(quick: bool = False, show_progress: bool = True) -> list[dict]:
    """The CPU benchmark table of ``nonlinear_recurrence``: one float64 sequence per row."""
    cases = [
        (cell_name, size, length)
        for cell_name in CELLS
        for size in (QUICK_SIZES if quick else SIZES)
        for length in (QUICK_LENGTHS if quick else LENGTHS)
    ]
    return measure_rows(
        cases,
        partial(measure_case, budget=TimeBudget(), repeats=2),
        lambda cell_name, size, length: f"{cell_name} n={size} T={length}",
        show_progress,
    )


CPU_COLUMNS = (
    ("cell", "{}"),
    ("n", "{:d}"),
    ("T", "{:d}"),
    ("sequential ms", "{:.2f}"),
    ("newton its", "{}"),
    ("newton ms", "{:.2f}"),
    ("quasi its", "{}"),
    ("quasi ms", "{:.2f}"),
    ("newton x seq", "{:.2f}"),
    ("quasi x seq", "{:.2f}"),
    ("seq x NumPy", "{:.0f}"),
    ("newton x NumPy", "{:.1f}"),
    ("max error", "{:.0e}"),
)

CPU_NOTES = (
    f"One float64 sequence from zeros, {INPUT_SIZE} inputs per step (standard normal), the cells' "
    "seeded default initialisation (ParaRNN's for ParaGRU and ParaLSTM; ParaLSTM's state has 2 n "
    "values). 'its': linear solves to the default tolerance (scaled residual 1e-12); 'x' "
    "columns are speedups (below 1: slower) "
    "measured in the same run; 'seq x NumPy' and 'newton x NumPy' against the cell in NumPy one "
    f"step at a time, timed on the first {NUMPY_LOOP_STEPS} steps and scaled linearly to T; "
    "'max error' is the largest difference of Newton's (and quasi-Newton's) states from the "
    "sequential loop's. Times: the best of at least 2 calls, methods taking turns, each timed "
    "call after an untimed one. 'skipped (memory)': the Jacobians "
    f"would exceed {JACOBIAN_BYTES_LIMIT / 2**30:.0f} GiB; 'skipped (time)': the method's "
    f"time at the previous T, scaled to this T, exceeds {CALL_SECONDS_LIMIT:.0f} s per call."
)


def report(rows, columns, notes: str, heading: str, tanh_rows, markdown: bool):
    """A benchmark table, and the lines that follow it: its notes, then the tanh comparison."""
    tanh_table = format_table(tanh_rows, TANH_COLUMNS, markdown=markdown)
    return format_table(rows, columns, markdown=markdown), [notes, "", heading, "", tanh_table]


def cpu_report(
    quick: bool = False, show_progress: bool = True, markdown: bool = False
) -> tuple[str, list[str]]:
    """Measure both benchmarks: the table of the built-in cells, and the lines that follow it
    (its notes, then the tanh comparison)."""
    rows = cpu_table(quick=quick, show_progress=show_progress)
    tanh_rows = tanh_comparison(quick=quick)
    return report(rows, CPU_COLUMNS, CPU_NOTES, tanh_heading(quick), tanh_rows, markdown)


#: The iteration table: ParaRNN's cells at its initialisation, one sequence each, in both
#: precisions, against the iterations its paper reports (Danieli et al. 2025).
ITERATION_CELLS = ("ParaGRU", "ParaLSTM")
ITERATION_SIZES = (8, 64)
ITERATION_LENGTHS = (2**10, 2**14)
ITERATION_DTYPES = (np.float32, np.float64)
PAPER_ITERATIONS = "3-4"
#: ParaRNN trains with this many Newton iterations, whatever the residual.
PARARNN_FIXED_ITERATIONS = 3


def iteration_row(cell_name: str, size: int, length: int, dtype) -> dict:
    """Newton's iterations to the default tolerance for one sequence of ``length`` steps of
    ``CELLS[cell_name](size, INPUT_SIZE, init="pararnn")`` in ``dtype``, and the residual after
    ParaRNN's fixed number of iterations; one table row."""
    cell = CELLS[cell_name](size, INPUT_SIZE, seed=0, init="pararnn")
    x = np.random.default_rng(0).standard_normal((length, INPUT_SIZE)).astype(dtype)
    _, info = scanlab.nonlinear_recurrence(cell, x, None, method="newton", full_output=True)
    _, fixed = scanlab.nonlinear_recurrence(
        cell, x, None, method="newton", max_iter=PARARNN_FIXED_ITERATIONS, on_fail="accept",
        full_output=True,
    )  # fmt: skip
    return {
        "cell": cell_name, "n": size, "T": length, "dtype": np.dtype(dtype).name,
        "tol": info.tol,
        "newton its": str(info.iterations) + ("" if info.converged else " (fallback)"),
        f"residual at {PARARNN_FIXED_ITERATIONS} its": fixed.residual,
        "paper its": PAPER_ITERATIONS,
    }  # fmt: skip


def iteration_table(
    sizes=ITERATION_SIZES, lengths=ITERATION_LENGTHS, show_progress: bool = True
) -> list[dict]:
    """Newton's iterations for ParaRNN's cells at its initialisation (:func:`iteration_row`)."""
    cases = [
        (cell_name, size, length, dtype)
        for cell_name in ITERATION_CELLS
        for dtype in ITERATION_DTYPES
        for size in sizes
        for length in lengths
    ]
    return measure_rows(
        cases,
        iteration_row,
        lambda cell_name, size, length, dtype: f"{cell_name} n={size} T={length} {dtype.__name__}",
        show_progress,
    )


ITERATION_COLUMNS = (
    ("cell", "{}"),
    ("n", "{:d}"),
    ("T", "{:d}"),
    ("dtype", "{}"),
    ("tol", "{:.0e}"),
    ("newton its", "{}"),
    (f"residual at {PARARNN_FIXED_ITERATIONS} its", "{:.0e}"),
    ("paper its", "{}"),
)

ITERATION_NOTES = (
    f"One sequence from zeros, {INPUT_SIZE} inputs per step (standard normal), the cells at "
    "init='pararnn' (seed 0, heads=1). 'newton its': method='newton' to the solver's default "
    "tolerance 'tol' (the largest scaled residual |h[t] - f(h[t-1], x[t])| / (1 + |f|)); "
    f"'residual at {PARARNN_FIXED_ITERATIONS} its': that residual after "
    f"max_iter={PARARNN_FIXED_ITERATIONS}, on_fail='accept' (ParaRNN's fixed iterations in "
    "training); 'paper its': the iterations ParaRNN's paper reports for its cells. Counts, "
    "not times: they do not depend on the machine's load."
)


#: The GPU table (float32, the GPU's case): batches of sequences, and the quick table's sizes.
GPU_BATCHES = (1, 64)
QUICK_GPU_LENGTHS = (8, 16)
QUICK_GPU_SIZES = (2, 4)
QUICK_GPU_BATCHES = (1, 2)
#: On the GPU a method is skipped where its Jacobians would exceed this, and a whole case where
#: one call's inputs (after the cell's input projection) and states would.
GPU_BYTES_LIMIT = 4 * 2**30
#: Before its first length a GPU case times each method on this many first steps (compiling
#: first), so that the time budget can skip a first length that would take too long.
PROBE_LENGTH = 2**6
QUICK_PROBE_LENGTH = 4
#: The GPU table's limit on a call's time (see ``CALL_SECONDS_LIMIT``): lower than the CPU's, so
#: that the whole table runs in one 10-minute command (8.3 minutes on an H100, compilation
#: included; with the CPU's 5 s it ran past 10).
GPU_CALL_SECONDS_LIMIT = 2.0
#: What the GPU table times, by label: ``(method, device)``.
GPU_METHODS = {
    "CPU sequential": ("sequential", "cpu"),
    "GPU sequential": ("sequential", "cuda"),
    "newton": ("newton", "cuda"),
    "quasi": ("quasi", "cuda"),
}


def measure_gpu_case(
    cell_name: str,
    size: int,
    batch: int,
    length: int,
    budget: TimeBudget,
    repeats: int,
    bytes_limit: int = GPU_BYTES_LIMIT,
    probe_length: int | None = PROBE_LENGTH,
) -> dict:
    """Time ``batch`` float32 sequences of ``CELLS[cell_name](size, INPUT_SIZE)`` of ``length``
    steps by each of ``GPU_METHODS`` that fits ``budget`` and ``bytes_limit``, and the copies of
    the call's inputs and states; return one table row."""
    cell = benchmark_cell(cell_name, size)
    widths = jacobian_widths(cell)
    methods = {label: pair for label, pair in GPU_METHODS.items() if pair[0] in widths}
    dtype = np.dtype(np.float32)
    input_width = cell.prepare(np.zeros((1, INPUT_SIZE), dtype), None, dtype)[0].shape[-1]
    row = {"cell": cell_name, "n": size, "batch": batch, "T": length}
    row["copy in ms"] = row["copy out ms"] = "-"
    if length * batch * (input_width + cell.state_size) * dtype.itemsize > bytes_limit:
        times, results = {}, {}
        skipped = dict.fromkeys(methods, "skipped (memory)")
    else:
        x = np.random.default_rng(0).standard_normal((length, batch, INPUT_SIZE), dtype)
        times, results, skipped = time_methods(
            cell, x, methods, budget, (cell_name, size, batch), repeats, bytes_limit, probe_length
        )
        states_shape = (length, batch, cell.state_size)
        projected = cell.prepare(x, None, dtype)[0]  # what the solver copies to the GPU
        copies = copy_times(projected, states_shape, repeats)
        row["copy in ms"], row["copy out ms"] = (1e3 * seconds for seconds in copies)
    for device in ("CPU", "GPU"):
        label = f"{device} sequential"
        row[f"{device} seq ms"] = skipped.get(label) or 1e3 * times[label]
    reference = "GPU sequential" if "GPU sequential" in results else "CPU sequential"
    newton_columns(row, widths, times, results, skipped, reference)
    for method in ("newton", "quasi"):
        row[f"{method} x GPU seq"] = speedup(times, "GPU sequential", method)
        row[f"{method} x CPU seq"] = speedup(times, "CPU sequential", method)
    return row


def gpu_cases(quick: bool = False) -> list[tuple]:
    """The rows of :func:`gpu_table`: ``(cell_name, size, batch, length)``."""
    return [
        (cell_name, size, batch, length)
        for cell_name in CELLS
        for size in (QUICK_GPU_SIZES if quick else SIZES)
        for batch in (QUICK_GPU_BATCHES if quick else GPU_BATCHES)
        for length in (QUICK_GPU_LENGTHS if quick else LENGTHS)
    ]


def gpu_table(quick: bool = False, show_progress: bool = True, seconds=None) -> list[dict]:
    """The GPU benchmark table of ``nonlinear_recurrence``: float32, one batch per row (with
    ``seconds``, those that start within that many seconds)."""
    return measure_rows(
        gpu_cases(quick),
        partial(
            measure_gpu_case,
            budget=TimeBudget(GPU_CALL_SECONDS_LIMIT),
            repeats=1,
            probe_length=QUICK_PROBE_LENGTH if quick else PROBE_LENGTH,
        ),
        lambda cell_name, size, batch, length: f"GPU {cell_name} n={size} B={batch} T={length}",
        show_progress,
        seconds,
    )


GPU_COLUMNS = (
    ("cell", "{}"),
    ("n", "{:d}"),
    ("batch", "{:d}"),
    ("T", "{:d}"),
    ("CPU seq ms", "{:.2f}"),
    ("GPU seq ms", "{:.2f}"),
    ("newton its", "{}"),
    ("newton ms", "{:.2f}"),
    ("quasi its", "{}"),
    ("quasi ms", "{:.2f}"),
    ("newton x GPU seq", "{:.2f}"),
    ("newton x CPU seq", "{:.2f}"),
    ("quasi x GPU seq", "{:.2f}"),
    ("quasi x CPU seq", "{:.2f}"),
    ("copy in ms", "{:.3f}"),
    ("copy out ms", "{:.3f}"),
    ("max error", "{:.0e}"),
)


def gpu_notes(quick: bool = False) -> str:
    """What the GPU table measures."""
    batches = " and ".join(map(str, QUICK_GPU_BATCHES if quick else GPU_BATCHES))
    probe_length = QUICK_PROBE_LENGTH if quick else PROBE_LENGTH
    return (
        f"float32 (the GPU's case), batches of {batches} sequences from zeros, {INPUT_SIZE} "
        "inputs per step (standard normal), the cells' seeded default initialisation (ParaRNN's "
        "for ParaGRU and ParaLSTM; ParaLSTM's state has 2 n values). 'newton' and 'quasi': "
        "method='newton' and 'quasi' on device='cuda'; "
        "'GPU seq': method='sequential' on device='cuda' (one GPU thread per sequence); "
        "'CPU seq': the compiled loop on the CPU (parallel over sequences on "
        f"{numba.get_num_threads()} threads). 'its': linear solves to the default tolerance "
        "(scaled residual 1e-5); 'x' columns are speedups (below 1: slower) measured in the "
        "same run; 'max error' is the largest difference of Newton's (and quasi-Newton's) "
        "states from the GPU loop's (the CPU loop's where the GPU loop was skipped). "
        "Every time is of a whole call, which takes and returns NumPy arrays: it includes the "
        "input projection on the host (a NumPy matrix product), the copy of the projected "
        "inputs (T x batch x gates n values) to the GPU and of the states back; 'copy in ms' "
        "and 'copy out ms' are one such copy each way, timed with CUDA events in the same run, "
        "to subtract. Times: the host clock around each call (it returns with its result on "
        "the host), the best of at least 1 call after an untimed one (short calls repeated up "
        "to 0.2 s), methods taking turns. 'skipped (memory)': the Jacobians, or a call's inputs "
        f"and states, would exceed {GPU_BYTES_LIMIT / 2**30:.0f} GiB; 'skipped (time)': the "
        f"method's time at the previous T (before the first T: on its first {probe_length} "
        f"steps), scaled to this T, exceeds {GPU_CALL_SECONDS_LIMIT:.0f} s per call."
    )


def gpu_report(
    quick: bool = False, show_progress: bool = True, markdown: bool = False, seconds=None
) -> tuple[str, list[str]]:
    """As :func:`cpu_report`, on the GPU; the tanh comparison first, then the rows of the table
    that start within ``seconds`` of the start (all without)."""
    start = time.perf_counter()
    repeats = 2 if quick else 5
    tanh_rows = gpu_tanh_comparison(quick=quick, repeats=repeats)
    heading = gpu_tanh_heading(quick, repeats)
    left = None if seconds is None else max(0.0, seconds - (time.perf_counter() - start))
    rows = gpu_table(quick=quick, show_progress=show_progress, seconds=left)
    notes = gpu_notes(quick)
    cases = len(gpu_cases(quick))
    if len(rows) < cases:
        notes += (
            f" Only the first {len(rows)} of the {cases} rows were measured: the run was given "
            f"{seconds:.0f} s (--seconds)."
        )
    return report(rows, GPU_COLUMNS, notes, heading, tanh_rows, markdown)


def gpu_machine_description() -> str:
    """The GPU, and the CPU of the sequential loop it is compared with."""
    return f"{gpu_description()}; CPU loop on {machine_description()}"


def device_report(
    device: str, quick: bool = False, show_progress: bool = True, markdown: bool = False,
    seconds=None,
) -> tuple[str, str, list[str]]:  # fmt: skip
    """The benchmark on ``device`` ("cpu" or "cuda"): the machine it ran on, the table and the
    lines that follow it (on the GPU, the rows that start within ``seconds``)."""
    if device == "cuda":
        table, notes = gpu_report(
            quick=quick, show_progress=show_progress, markdown=markdown, seconds=seconds
        )
        return gpu_machine_description(), table, notes
    table, notes = cpu_report(quick=quick, show_progress=show_progress, markdown=markdown)
    return machine_description(), table, notes
