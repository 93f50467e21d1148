"""The diagonal tanh cell ``h[t] = tanh(a * h[t-1] + x[t])``: scanlab against JAX and plain loops.

The comparison point of the nonlinear benchmark (``scanlab bench --nonlinear``, after the table
of the built-in cells, see :mod:`scanlab.bench.nonlinear`): on the CPU, scanlab's sequential and
Newton solves of the cell written with ``scanlab.cell`` against JAX's ``lax.scan`` and plain
Numba loops (``benchmarks/math_functions.py`` times those loops too); on the GPU, scanlab's solves
against ``lax.scan`` and Newton written in JAX with ``lax.associative_scan``.
"""

import math
from functools import partial

import numpy as np
from numba import cuda, njit

import scanlab
from scanlab import math as smath
from scanlab.bench.linear import elementwise_combine
from scanlab.bench.timing import best_time, best_times, copy_times, gpu_best_time

#: The diagonal tanh cell of the JAX comparison: channels and steps.
TANH_SIZE, TANH_LENGTH = 64, 2**15
QUICK_TANH_LENGTH = 2**10

#: The quick GPU tanh comparison's channels and steps (small enough for the CUDA simulator).
QUICK_GPU_TANH_SIZE, QUICK_GPU_TANH_LENGTH = 4, 16


def tanh_step(h_prev, x_t, weights, h_out):
    """The diagonal tanh cell ``h[t] = tanh(weights * h[t-1] + x[t])``, for ``scanlab.cell``."""
    for i in range(h_prev.shape[0]):
        h_out[i] = smath.tanh(weights[i] * h_prev[i] + x_t[i])


def user_tanh_step(h_prev, x_t, weights, h_out):
    """:func:`tanh_step` as a user writes it, with the standard library's ``math.tanh``."""
    for i in range(h_prev.shape[0]):
        h_out[i] = math.tanh(weights[i] * h_prev[i] + x_t[i])


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


def tanh_problem(length: int, channels: int, dtype):
    """The diagonal tanh cell's seeded weights and inputs of ``dtype``, and its solver
    ``nonlinear_recurrence`` on them from zeros (options left to the call)."""
    rng = np.random.default_rng(0)
    weights = rng.uniform(-1, 1, channels).astype(dtype)
    x = rng.standard_normal((length, channels)).astype(dtype)
    cell = scanlab.cell(tanh_step, structure="diagonal")
    h0 = np.zeros(channels, dtype)
    return weights, x, partial(scanlab.nonlinear_recurrence, cell, x, h0, params=weights)


def tanh_comparison(quick: bool = False, repeats: int = 5) -> list[dict]:
    """The diagonal tanh cell of ``TANH_SIZE`` channels: JAX's ``lax.scan``, scanlab and plain
    Numba loops, each a row of milliseconds (NaN for JAX when it is not installed)."""
    length = QUICK_TANH_LENGTH if quick else TANH_LENGTH
    weights, x, solve = tanh_problem(length, TANH_SIZE, np.float64)
    out = np.empty_like(x)
    h0 = np.zeros(TANH_SIZE)
    user, exact = (
        scanlab.cell(user_tanh_step, structure="diagonal", exact_math=exact_math)
        for exact_math in (False, True)
    )
    times = best_times(
        {
            "scanlab sequential (scanlab.cell, scanlab.math.tanh)": partial(
                solve, method="sequential"
            ),
            "scanlab auto (scanlab.cell, the user's math.tanh)": partial(
                scanlab.nonlinear_recurrence, user, x, h0, params=weights
            ),
            "scanlab sequential (the user's math.tanh, exact_math=True)": partial(
                scanlab.nonlinear_recurrence, exact, x, h0, params=weights, method="sequential"
            ),
            "scanlab newton (scanlab.cell, scanlab.math.tanh)": partial(solve, method="newton"),
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


def jax_newton_time(weights: np.ndarray, x: np.ndarray, iterations: int, repeats: int) -> float:
    """Seconds of Newton's method (DEER) on the diagonal tanh cell in JAX: from scanlab's initial
    guess ``tanh(x)``, ``iterations`` linear recurrences by ``jax.lax.associative_scan``."""
    import jax
    import jax.numpy as jnp

    def solve(weights, inputs):
        def newton(_, h):
            h_prev = jnp.concatenate([jnp.zeros_like(h[:1]), h[:-1]])
            following = jnp.tanh(weights * h_prev + inputs)
            slope = weights * (1 - following * following)
            pairs = (slope, following - slope * h_prev)
            return jax.lax.associative_scan(elementwise_combine, pairs, axis=0)[1]

        return jax.lax.fori_loop(0, iterations, newton, jnp.tanh(inputs))

    solve = jax.jit(solve)
    weights_device, inputs = jnp.asarray(weights), jnp.asarray(x)
    return best_time(lambda: solve(weights_device, inputs).block_until_ready(), repeats)


def jax_rows(weights: np.ndarray, x: np.ndarray, iterations: int, repeats: int) -> list[dict]:
    """The JAX rows of the GPU tanh comparison: ``lax.scan``, and Newton in JAX with
    ``iterations`` associative scans; "JAX not installed" without JAX."""
    names = (
        "jax.lax.scan",
        f"jax.lax.associative_scan: Newton in JAX, {iterations} iterations over all steps",
    )
    try:
        import jax
    except ImportError:
        return [{"implementation": name, "ms": "JAX not installed"} for name in names]
    seconds = (
        jax_lax_scan_time(weights, x, repeats),
        jax_newton_time(weights, x, iterations, repeats),
    )
    return [
        {"implementation": f"{name} (on {jax.default_backend()})", "ms": 1e3 * time}
        for name, time in zip(names, seconds, strict=True)
    ]


def gpu_tanh_comparison(quick: bool = False, repeats: int = 5) -> list[dict]:
    """The diagonal tanh cell in float32: scanlab on the GPU (and its loop on the CPU) against
    JAX's ``lax.scan`` and Newton by ``lax.associative_scan``, and the copies scanlab's calls
    include, each a row of milliseconds."""
    length = QUICK_GPU_TANH_LENGTH if quick else TANH_LENGTH
    channels = QUICK_GPU_TANH_SIZE if quick else TANH_SIZE
    weights, x, solve = tanh_problem(length, channels, np.float32)
    resident = partial(
        scanlab.nonlinear_recurrence, solve.args[0], cuda.to_device(x), solve.args[2],
        params=weights, method="newton",
    )  # fmt: skip
    times = best_times(
        {
            "scanlab sequential, device='cuda' (one GPU thread)": partial(
                solve, method="sequential", device="cuda"
            ),
            "scanlab newton, device='cuda'": partial(solve, method="newton", device="cuda"),
            "scanlab sequential, device='cpu'": partial(solve, method="sequential", device="cpu"),
        },
        repeats,
    )
    times["scanlab newton, GPU arrays in and out (no copies)"] = gpu_best_time(resident, repeats)
    iterations = solve(method="newton", device="cuda", full_output=True)[1].iterations
    copies = copy_times(x, x.shape, repeats)
    rows = jax_rows(weights, x, iterations, repeats)
    rows += [{"implementation": name, "ms": 1e3 * seconds} for name, seconds in times.items()]
    for direction, seconds in zip(("x to the GPU", "h to the host"), copies, strict=True):
        rows.append({"implementation": f"one copy of {direction}", "ms": 1e3 * seconds})
    return rows


def gpu_tanh_heading(quick: bool = False, repeats: int = 5) -> str:
    """What the GPU tanh comparison measures."""
    length = QUICK_GPU_TANH_LENGTH if quick else TANH_LENGTH
    channels = QUICK_GPU_TANH_SIZE if quick else TANH_SIZE
    return (
        f"The diagonal tanh cell h[t] = tanh(a * h[t-1] + x[t]), {channels} channels, "
        f"T = {length}, float32, one sequence; best of {repeats} calls. scanlab's times include "
        "the copies of x to the GPU and of h back (the last two rows, to subtract), but for the "
        "row of GPU arrays in and out (timed by CUDA events); JAX's "
        "arrays are on its device before timing. Newton in JAX starts from scanlab's initial "
        "guess and runs scanlab's number of iterations, each over every step."
    )
