"""Benchmarks of ``nonlinear_recurrence`` against the loops users would write.

Used by ``scanlab bench --nonlinear`` and ``benchmarks/nonlinear.py`` (which writes
``benchmarks/RESULTS.md``). Timing follows :mod:`scanlab.benchmark`: the methods compared take
turns, each timed call after an untimed one, the best kept, compilation never timed.

Each case is one float64 sequence of a built-in cell: Newton's method (and quasi-Newton where its
Jacobian differs) against the compiled sequential loop (``method="sequential"``, the honest
baseline) and the same cell written in NumPy one step at a time (the naive baseline). Cases whose
Jacobians would not fit in memory, or whose calls would take too long, are reported as skipped.
"""

import math
from functools import cache, partial

import numpy as np
from numba import njit

import scanlab
from scanlab import math as smath
from scanlab.benchmark import best_time, best_times, format_table, measure_rows

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
#: The diagonal tanh cell of the JAX comparison: channels and steps.
TANH_SIZE, TANH_LENGTH = 64, 2**15
QUICK_TANH_LENGTH = 2**10


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
    recurrent = cell.recurrent_weights
    h = state[1::2]
    input_gate = sigmoid(projected[0] + recurrent[0] * h)
    forget = sigmoid(projected[1] + recurrent[1] * h)
    output = sigmoid(projected[2] + recurrent[2] * h)
    candidate = np.tanh(projected[3] + recurrent[3] * h)
    following = np.empty_like(state)
    following[0::2] = forget * state[0::2] + input_gate * candidate
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
    state_size = cell.state_size
    widths = {"sequential": 0, "newton": cell.period(state_size), "quasi": 1}
    if cell.structure == "diagonal":  # its quasi-Newton is Newton
        del widths["quasi"]
    skipped, solves, results = {}, {}, {}
    for method, width in widths.items():
        if length * state_size * width * x.itemsize > jacobian_bytes_limit:
            skipped[method] = "skipped (memory)"
        elif not budget.allows((cell_name, size, method), length):
            skipped[method] = "skipped (time)"
        else:
            solves[method] = partial(solve_into, results, method, cell, x)
    times = best_times(solves, repeats) if solves else {}
    for method, seconds in times.items():
        budget.record((cell_name, size, method), length, seconds)
    steps = min(length, NUMPY_LOOP_STEPS)
    out = np.empty((steps, state_size))
    numpy_time = best_time(partial(numpy_loop, cell, x, out, steps), 1) * length / steps
    row = {"cell": cell_name, "n": size, "T": length}
    row["sequential ms"] = skipped.get("sequential") or 1e3 * times["sequential"]
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
            if "sequential" in results:
                errors.append(float(np.max(np.abs(h - results["sequential"][0]))))
    row["max error"] = max(errors) if errors else "-"
    row["newton x seq"] = speedup(times, "sequential", "newton")
    row["quasi x seq"] = speedup(times, "sequential", "quasi")
    times["NumPy loop"] = numpy_time
    row["seq x NumPy"] = speedup(times, "NumPy loop", "sequential")
    row["newton x NumPy"] = speedup(times, "NumPy loop", "newton")
    return row


def solve_into(results: dict, method: str, cell, x) -> None:
    """Solve with ``method``, keeping ``(h, info)`` in ``results[method]``."""
    results[method] = scanlab.nonlinear_recurrence(cell, x, None, method=method, full_output=True)


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
    "seeded initialisation (ParaLSTM's state has 2 n values). 'its': linear solves to the "
    "default tolerance (scaled residual 1e-12); 'x' columns are speedups (below 1: slower) "
    "measured in the same run; 'seq x NumPy' and 'newton x NumPy' against the cell in NumPy one "
    f"step at a time, timed on the first {NUMPY_LOOP_STEPS} steps and scaled linearly to T; "
    "'max error' is the largest difference of Newton's (and quasi-Newton's) states from the "
    "sequential loop's. Times: the best of at least 2 calls, methods taking turns, each timed "
    "call after an untimed one. 'skipped (memory)': the Jacobians "
    f"would exceed {JACOBIAN_BYTES_LIMIT / 2**30:.0f} GiB; 'skipped (time)': the method's "
    f"time at the previous T, scaled to this T, exceeds {CALL_SECONDS_LIMIT:.0f} s per call."
)


def tanh_step(h_prev, x_t, weights, h_out):
    """The diagonal tanh cell ``h[t] = tanh(weights * h[t-1] + x[t])``, for ``scanlab.cell``."""
    for i in range(h_prev.shape[0]):
        h_out[i] = smath.tanh(weights[i] * h_prev[i] + x_t[i])


def tanh_loop(tanh):
    """The diagonal tanh cell as a plain compiled loop from zeros, calling ``tanh``."""

    @njit
    def run(weights, x, out):
        state = np.zeros(x.shape[1])
        for t in range(x.shape[0]):
            for i in range(x.shape[1]):
                state[i] = tanh(weights[i] * state[i] + x[t, i])
                out[t, i] = state[i]

    return run


def jax_lax_scan_time(weights: np.ndarray, x: np.ndarray, repeats: int) -> float:
    """Seconds of ``jax.lax.scan`` over the diagonal tanh cell (float64), NaN without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return float("nan")
    jax.config.update("jax_enable_x64", True)

    def step(state, x_t):
        state = jnp.tanh(weights_device * state + x_t)
        return state, state

    weights_device, inputs = jnp.asarray(weights), jnp.asarray(x)
    scan = jax.jit(lambda inputs: jax.lax.scan(step, jnp.zeros_like(inputs[0]), inputs)[1])
    return best_time(lambda: scan(inputs).block_until_ready(), repeats)


def tanh_comparison(quick: bool = False, repeats: int = 5) -> list[dict]:
    """The diagonal tanh cell of ``TANH_SIZE`` channels: JAX's ``lax.scan``, scanlab and plain
    Numba loops, each a row of milliseconds (NaN for JAX when it is not installed)."""
    length = QUICK_TANH_LENGTH if quick else TANH_LENGTH
    rng = np.random.default_rng(0)
    weights = rng.uniform(-1, 1, TANH_SIZE)
    x = rng.standard_normal((length, TANH_SIZE))
    out = np.empty_like(x)
    cell = scanlab.cell(tanh_step, structure="diagonal")
    h0 = np.zeros(TANH_SIZE)
    solve = partial(scanlab.nonlinear_recurrence, cell, x, h0, params=weights)
    times = best_times(
        {
            "scanlab sequential (scanlab.cell, scanlab.math.tanh)": partial(
                solve, method="sequential"
            ),
            "scanlab newton (the same cell)": partial(solve, method="newton"),
            "Numba loop, math.tanh": partial(tanh_loop(math.tanh), weights, x, out),
            "Numba loop, scanlab.math.tanh": partial(tanh_loop(smath.tanh), weights, x, out),
        },
        repeats,
    )
    rows = [{"implementation": "jax.lax.scan", "ms": 1e3 * jax_lax_scan_time(weights, x, repeats)}]
    if math.isnan(rows[0]["ms"]):
        rows[0]["ms"] = "JAX not installed"
    rows += [{"implementation": name, "ms": 1e3 * seconds} for name, seconds in times.items()]
    return rows


TANH_COLUMNS = (("implementation", "{}"), ("ms", "{:.2f}"))


def tanh_heading(quick: bool = False) -> str:
    """What the tanh comparison measures."""
    length = QUICK_TANH_LENGTH if quick else TANH_LENGTH
    return (
        f"The diagonal tanh cell h[t] = tanh(a * h[t-1] + x[t]), {TANH_SIZE} channels, "
        f"T = {length}, float64, one sequence (the issue's comparison point); best of 5 calls."
    )


def cpu_report(
    quick: bool = False, show_progress: bool = True, markdown: bool = False
) -> tuple[str, list[str]]:
    """Measure both benchmarks: the table of the built-in cells, and the lines that follow it
    (its notes, then the tanh comparison)."""
    rows = cpu_table(quick=quick, show_progress=show_progress)
    tanh_rows = tanh_comparison(quick=quick)
    notes = [CPU_NOTES, "", tanh_heading(quick), ""]
    notes.append(format_table(tanh_rows, TANH_COLUMNS, markdown=markdown))
    return format_table(rows, CPU_COLUMNS, markdown=markdown), notes
