"""``nonlinear_recurrence`` against JAX's ``lax.scan`` and a plain Numba loop on the CPU (issue 22).

Used by ``benchmarks/nonlinear.py --jax``. Each row is one cell, dtype and batch: the diagonal
tanh cell, a driven Lorenz system and phase oscillators, written by the user in plain Python
(``math.tanh``, ``math.sin``, arithmetic) and made a cell with ``scanlab.cell``, and the
built-in ``ParaGRU``, ``ParaLSTM`` and ``ElmanRNN``. Each is written a second time in JAX as a
JAX user would: a step on ``(..., n)`` arrays that broadcasts over the batch, ``lax.scan`` over
the ``(T, *batch, m)`` inputs, the whole scan under ``jax.jit`` (the built-in cells' input
projection and bias inside it, with the scanlab cell's own parameters). The solvers' outputs are
compared and a row whose JAX twin disagrees beyond its dtype's tolerance raises. JAX is optional
(the ``compare`` extra): without it :func:`jax_table` returns no rows and :func:`jax_notes` says
so.
"""

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
from numba import njit

import scanlab
from scanlab.bench.timing import best_times, measure_rows

#: Steps, state size of the tanh cell and the built-in cells, inputs per step of the built-in
#: cells, and the batches and dtypes of the rows.
LENGTH, STATE_SIZE, INPUT_SIZE = 2**15, 64, 16
BATCHES = (1, 16)
DTYPES = (np.float32, np.float64)
QUICK_LENGTH, QUICK_STATE_SIZE, QUICK_INPUT_SIZE = 2**8, 4, 2
#: The driven Lorenz system's parameters ``(sigma, rho, beta, dt)``: rho below the onset of
#: chaos (24.74), so that the state settles near a stable fixed point and two correct
#: implementations' rounding differences decay instead of growing.
LORENZ_PARAMETERS = (10.0, 10.0, 8.0 / 3.0, 0.01)


def tanh_step(h_prev, x_t, weights, h_out):
    """The diagonal tanh cell ``h[t] = tanh(weights * h[t-1] + x[t])``, as a user writes it."""
    for i in range(h_prev.shape[0]):
        h_out[i] = math.tanh(weights[i] * h_prev[i] + x_t[i])


def phase_step(h_prev, x_t, coupling, h_out):
    """Phase oscillators locked to their drive (Adler's equation, explicit Euler, dt = 0.1):
    ``h[t] = h[t-1] + 0.1 (x[t] - coupling sin h[t-1])``, as a user writes it."""
    for i in range(h_prev.shape[0]):
        h_out[i] = h_prev[i] + 0.1 * (x_t[i] - coupling[i] * math.sin(h_prev[i]))


def lorenz_step(h_prev, x_t, params, h_out):
    """One explicit-Euler step of the Lorenz system driven by the input ``x_t`` (3 values)."""
    sigma, rho, beta, dt = params[0], params[1], params[2], params[3]
    x, y, z = h_prev[0], h_prev[1], h_prev[2]
    h_out[0] = x + dt * (sigma * (y - x) + x_t[0])
    h_out[1] = y + dt * (x * (rho - z) - y + x_t[1])
    h_out[2] = z + dt * (x * y - beta * z + x_t[2])


def lorenz_fixed_point() -> np.ndarray:
    """The stable fixed point ``(s, s, rho - 1)``, ``s = sqrt(beta (rho - 1))``, the Lorenz
    rows' initial state."""
    _, rho, beta, _ = LORENZ_PARAMETERS
    side = math.sqrt(beta * (rho - 1))
    return np.array([side, side, rho - 1])


@njit
def sequential_loop(step, inputs, params, h0, out):
    """The plain loop: ``step`` from ``h0[sequence]`` over ``inputs`` ``(T, B, m)`` into ``out``
    ``(T, B, n)``, one sequence after another on one thread."""
    for sequence in range(inputs.shape[1]):
        step(h0[sequence], inputs[0, sequence], params, out[0, sequence])
        for t in range(1, inputs.shape[0]):
            step(out[t - 1, sequence], inputs[t, sequence], params, out[t, sequence])


def numba_loop_solve(cell, loop_step, x, h0, params):
    """What a user's plain Numba loop computes: the cell's inputs for every step (for a built-in
    cell its input projection, one NumPy matrix product), then :func:`sequential_loop` with
    ``loop_step``; the states ``(T, *batch, n)``."""
    inputs, step_params = cell.prepare(x, params, x.dtype)
    length, sequences = x.shape[0], math.prod(x.shape[1:-1])
    out = np.empty((length, sequences, h0.shape[-1]), x.dtype)
    flat_inputs = inputs.reshape(length, sequences, inputs.shape[-1])
    sequential_loop(loop_step, flat_inputs, step_params, h0.reshape(sequences, -1), out)
    return out.reshape(*x.shape[:-1], h0.shape[-1])


def jax_steps():
    """The cells' steps in JAX, by name: ``step(parameters, h, x_t) -> h`` on ``(..., n)`` states
    (``parameters`` a dict of JAX arrays; the built-in cells' ``x_t`` projected already)."""
    import jax
    import jax.numpy as jnp

    def tanh(parameters, h, x_t):
        return jnp.tanh(parameters["weights"] * h + x_t)

    def phase(parameters, h, x_t):
        return h + 0.1 * (x_t - parameters["coupling"] * jnp.sin(h))

    def lorenz(parameters, h, x_t):
        sigma, rho, beta, dt = parameters["lorenz"]
        x, y, z = h[..., 0], h[..., 1], h[..., 2]
        derivative = jnp.stack(
            [sigma * (y - x) + x_t[..., 0], x * (rho - z) - y + x_t[..., 1],
             x * y - beta * z + x_t[..., 2]],
            axis=-1,
        )  # fmt: skip
        return h + dt * derivative

    def gru(parameters, h, u):
        a = parameters["recurrent_weights"]
        u_update, u_reset, u_candidate = jnp.split(u, 3, axis=-1)
        update = jax.nn.sigmoid(u_update + a[0] * h)
        reset = jax.nn.sigmoid(u_reset + a[1] * h)
        candidate = jnp.tanh(u_candidate + a[2] * reset * h)
        return h + update * (candidate - h)

    def lstm(parameters, state, u):
        a, p = parameters["recurrent_weights"], parameters["peephole_weights"]
        c, h = state[..., 0::2], state[..., 1::2]
        u_forget, u_candidate, u_output = jnp.split(u, 3, axis=-1)
        forget = jax.nn.sigmoid(u_forget + a[0] * h + p[0] * c)
        candidate = jnp.tanh(u_candidate + a[1] * h)
        cell_state = forget * c + (1 - forget) * candidate
        output = jax.nn.sigmoid(u_output + a[2] * h + p[1] * cell_state)
        following = jnp.stack([cell_state, output * jnp.tanh(cell_state)], axis=-1)
        return following.reshape(state.shape)

    def elman(parameters, h, u):
        return jnp.tanh(h @ parameters["recurrent_weights"].T + u)

    return {"tanh": tanh, "phase": phase, "Lorenz": lorenz, "ParaGRU": gru, "ParaLSTM": lstm,
            "ElmanRNN": elman}  # fmt: skip


def jax_solver(name: str):
    """``solve(parameters, x, h0) -> h`` in JAX, jit-compiled: the built-in cells' input
    projection ``x @ W.T + bias`` for all steps, then ``lax.scan`` of the cell's JAX step."""
    import jax

    step = jax_steps()[name]

    def solve(parameters, x, h0):
        if "input_weights" in parameters:
            x = x @ parameters["input_weights"].T + parameters["bias"]

        def scan_step(h, x_t):
            following = step(parameters, h, x_t)
            return following, following

        return jax.lax.scan(scan_step, h0, x)[1]

    return jax.jit(solve)


@dataclass
class Problem:
    """One row's problem: scanlab's cell, inputs ``x`` ``(T, *batch, m)``, initial states ``h0``
    ``(*batch, n)`` and ``params``; the step the plain Numba loop calls; the JAX twin's
    parameters (NumPy arrays of ``x``'s dtype)."""

    cell: scanlab.cells.base.Cell
    x: np.ndarray
    h0: np.ndarray
    params: object
    loop_step: object
    jax_parameters: dict


def make_problem(name: str, dtype, batch: int, length: int, size: int, input_size: int):
    """The seeded :class:`Problem` of the row ``name``, ``dtype``, ``batch``: ``batch``
    sequences (one without a batch axis) of ``length`` steps, states of ``size`` values (three
    for Lorenz; ParaLSTM's ``2 size``); the built-in cells take ``input_size`` inputs."""
    rng = np.random.default_rng(0)
    batch_shape = () if batch == 1 else (batch,)
    if name == "tanh":
        params = rng.uniform(-1, 1, size).astype(dtype)
        h0 = np.zeros((*batch_shape, size), dtype)
        x = rng.standard_normal((length, *batch_shape, size)).astype(dtype)
        cell = scanlab.cell(tanh_step, structure="diagonal")
        return Problem(cell, x, h0, params, njit(tanh_step), {"weights": params})
    if name == "phase":
        params = rng.uniform(1.5, 2.5, size).astype(dtype)
        h0 = np.zeros((*batch_shape, size), dtype)
        x = rng.standard_normal((length, *batch_shape, size)).astype(dtype)
        cell = scanlab.cell(phase_step, structure="diagonal")
        return Problem(cell, x, h0, params, njit(phase_step), {"coupling": params})
    if name == "Lorenz":
        params = np.array(LORENZ_PARAMETERS, dtype)
        h0 = np.broadcast_to(lorenz_fixed_point(), (*batch_shape, 3)).astype(dtype)
        x = rng.standard_normal((length, *batch_shape, 3)).astype(dtype)
        cell = scanlab.cell(lorenz_step, structure="dense")
        return Problem(cell, x, h0, params, njit(lorenz_step), {"lorenz": params})
    cell = {
        "ParaGRU": scanlab.cells.ParaGRU,
        "ParaLSTM": scanlab.cells.ParaLSTM,
        "ElmanRNN": scanlab.cells.ElmanRNN,
    }[name](size, input_size, seed=0)
    x = rng.standard_normal((length, *batch_shape, input_size)).astype(dtype)
    h0 = np.zeros((*batch_shape, cell.state_size), dtype)
    parameters = {key: value.astype(dtype) for key, value in cell.params.items()}
    parameters["input_weights"] = cell.projection(cell.params).astype(dtype)
    parameters["bias"] = parameters["bias"].reshape(-1)
    return Problem(cell, x, h0, None, cell.step, parameters)


def tolerance(dtype, states: np.ndarray) -> float:
    """How far two correct solvers' states may differ: ``sqrt(eps)`` of ``dtype`` times the
    states' scale (at least 1)."""
    return math.sqrt(np.finfo(dtype).eps) * max(1.0, float(np.max(np.abs(states))))


def measure_row(name: str, dtype, batch: int, length: int, size: int, input_size: int,
                repeats: int) -> dict:  # fmt: skip
    """Time one row (JAX, scanlab ``method="auto"``, the plain Numba loop, taking turns) and
    compare the outputs; raise AssertionError if scanlab's and JAX's differ beyond
    :func:`tolerance`, or the plain loop's from scanlab's."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # float64 arrays stay float64

    problem = make_problem(name, dtype, batch, length, size, input_size)
    solve_jax = jax_solver(name)
    jax_arguments = (
        {key: jnp.asarray(value) for key, value in problem.jax_parameters.items()},
        jnp.asarray(problem.x),
        jnp.asarray(problem.h0),
    )
    jax_states = np.asarray(solve_jax(*jax_arguments))  # compiles it
    solve_auto = partial(
        scanlab.nonlinear_recurrence, problem.cell, problem.x, problem.h0, params=problem.params
    )
    solve_loop = partial(
        numba_loop_solve, problem.cell, problem.loop_step, problem.x, problem.h0, problem.params
    )
    times = best_times(
        {
            "JAX": lambda: solve_jax(*jax_arguments).block_until_ready(),
            "auto": solve_auto,
            "loop": solve_loop,
        },
        repeats,
    )
    states = solve_auto()
    limit = tolerance(dtype, states)
    difference = float(np.max(np.abs(states - jax_states)))
    loop_difference = float(np.max(np.abs(states - solve_loop())))
    label = f"{name}, {np.dtype(dtype).name}, batch {batch}"
    if not difference <= limit:  # NaN fails too
        raise AssertionError(f"{label}: scanlab and JAX differ by {difference:.1e} > {limit:.1e}")
    if not loop_difference <= limit:
        raise AssertionError(f"{label}: scanlab and the Numba loop differ by {loop_difference:.1e}")
    return {
        "cell": name,
        "n": problem.h0.shape[-1],
        "dtype": np.dtype(dtype).name,
        "batch": batch,
        "JAX ms": 1e3 * times["JAX"],
        "auto ms": 1e3 * times["auto"],
        "Numba loop ms": 1e3 * times["loop"],
        "JAX / auto": times["JAX"] / times["auto"],
        "max abs(auto - JAX)": difference,
    }


CELL_NAMES = ("tanh", "ParaGRU", "ParaLSTM", "ElmanRNN", "Lorenz", "phase")


def jax_available() -> bool:
    """Whether JAX can be imported."""
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def jax_table(quick: bool = False, repeats: int = 5, show_progress: bool = True) -> list[dict]:
    """The rows of the comparison (:func:`measure_row`), cells x dtypes x batches; none without
    JAX."""
    if not jax_available():
        return []
    sizes = (QUICK_LENGTH, QUICK_STATE_SIZE, QUICK_INPUT_SIZE) if quick else (
        LENGTH, STATE_SIZE, INPUT_SIZE)  # fmt: skip
    cases = [(name, dtype, batch) for name in CELL_NAMES for dtype in DTYPES for batch in BATCHES]
    return measure_rows(
        cases,
        lambda name, dtype, batch: measure_row(name, dtype, batch, *sizes, repeats),
        lambda name, dtype, batch: f"{name} {np.dtype(dtype).name} B={batch}",
        show_progress,
    )


JAX_COLUMNS = (
    ("cell", "{}"),
    ("n", "{:d}"),
    ("dtype", "{}"),
    ("batch", "{:d}"),
    ("JAX ms", "{:.2f}"),
    ("auto ms", "{:.2f}"),
    ("Numba loop ms", "{:.2f}"),
    ("JAX / auto", "{:.2f}"),
    ("max abs(auto - JAX)", "{:.0e}"),
)


def jax_notes(quick: bool = False, repeats: int = 5) -> str:
    """What the comparison measures (or that JAX is not installed)."""
    if not jax_available():
        return "JAX is not installed (`pip install -e '.[compare]'`): no rows measured."
    import jax

    length, size, input_size = (QUICK_LENGTH, QUICK_STATE_SIZE, QUICK_INPUT_SIZE) if quick else (
        LENGTH, STATE_SIZE, INPUT_SIZE)  # fmt: skip
    return (
        f"JAX {jax.__version__} (jaxlib on {jax.default_backend()}). T = {length} steps; batch 1 "
        "is one sequence without a batch axis. Cells: 'tanh', h = tanh(w h + x) with n = "
        f"{size} channels, and 'Lorenz', an explicit-Euler step (dt = {LORENZ_PARAMETERS[3]}) "
        f"of the Lorenz system (sigma, rho, beta = {LORENZ_PARAMETERS[0]:g}, "
        f"{LORENZ_PARAMETERS[1]:g}, {LORENZ_PARAMETERS[2]:.3g}) plus the input, from its stable "
        "fixed point, and 'phase', phase oscillators locked to their input (Adler's equation, "
        "h = h + 0.1 (x - k sin h), k uniform in (1.5, 2.5)) with n = "
        f"{size}, all three written by the user in plain Python (math.tanh, math.sin, "
        "arithmetic) and given to scanlab.cell unchanged; ParaGRU, ParaLSTM (state 2 n) and "
        f"ElmanRNN at n = {size}, m = {input_size}, seed 0, from zeros. Inputs standard normal. "
        "'JAX ms': jax.jit of the whole solve, lax.scan over the (T, batch, m) inputs with a "
        "step written on (batch, n) arrays (broadcasting, no vmap), the built-in cells' "
        "input projection x @ W.T + b inside with the scanlab cell's parameters; compiled "
        "before timing, the inputs already JAX arrays, timed to block_until_ready(). "
        "'auto ms': scanlab.nonlinear_recurrence(cell, x, h0, params) with the default "
        "method='auto', NumPy arrays in and out. 'Numba loop ms': a plain @njit loop over t "
        "calling the user's step compiled by numba.njit as written (math.tanh, no fastmath), "
        "or the built-in cell's own compiled step on the input projection computed by NumPy "
        "(included in the time), one sequence after another on one thread. 'JAX / auto': "
        "JAX's time over scanlab's (above 1: scanlab faster). 'max abs(auto - JAX)': the largest "
        "difference of the states; every row checks it within sqrt(eps) of the dtype times "
        "max(1, max |h|), and the Numba loop's states too. Times: the best of at least "
        f"{repeats} calls, the three taking turns, each timed call after an untimed one."
    )
