"""Simulate a forced, damped Duffing oscillator with ``nonlinear_recurrence`` (Newton over time).

The oscillator ``x'' + c x' + k x + beta x^3 = F cos(w t)`` (a hardening spring, periodic
response) is discretised with explicit Euler on the state ``h = (x, x')``::

    h[t] = h[t-1] + dt * g(h[t-1], time[t]),   time[t] = t dt

a recurrence ``h[t] = f(h[t-1], x[t])`` with the time as its input. The example shows:

1. A cell written as a plain Python step (``math.cos`` inside), with its Jacobian computed by
   scanlab (the step also runs on complex states, so by the complex step) and given
   analytically; 10**6 steps solved by ``method="newton"`` and by the sequential loop. scanlab
   checks the complex step at probe states of both signs: written with ``position**3``, whose
   complex power Numba computes inexactly for negative positions, the step would be
   differentiated by central differences instead (Newton takes as many iterations here).
2. Why this damping (``c = 0.5``): each Newton iteration solves the linear recurrence
   ``delta[t] = J[t] delta[t-1] + (f - h)[t]`` with ``J = [[1, dt], [-dt (k + 3 beta x^2),
   1 - c dt]]``, whose eigenvalues have modulus about ``1 - c dt / 2``: it is contractive and
   forgets a correction after about ``2 / (c dt)`` steps, so the nonlinearity couples only a few
   thousand steps and Newton converges in a handful of iterations. With light damping
   (``c = 0.05``) the memory is ten times longer, the corrections of many steps add up, the
   iterate overflows, and scanlab finishes the sequence with the loop
   (``info.finished_sequentially``).
3. The discretisation error against ``scipy.integrate.solve_ivp`` (DOP853, rtol = atol = 1e-10)
   over 10 time units, shrinking like ``O(dt)``.

On the CPU the loop is much faster than Newton (each iteration costs several passes over the
sequence); Newton pays off on a GPU or when there are few sequences and many threads.

Run: python examples/forced_oscillator.py [--steps N]
"""

import argparse
import math
import time

import numpy as np
import scipy.integrate

import scanlab

#: Time step, damping c, stiffness k, cubic stiffness beta, forcing amplitude F and frequency w.
DUFFING = {"dt": 1e-3, "c": 0.5, "k": 1.0, "beta": 1.0, "F": 0.5, "w": 1.2}
START = np.array([1.0, 0.0])


def duffing(h_prev, x_t, params, h_out):
    """One explicit Euler step; ``x_t[0]`` is the time at the start of the step."""
    dt, c, k, beta, force, frequency = params
    position, velocity = h_prev[0], h_prev[1]
    # Not position**3: Numba's complex power loses the complex step at position < 0, and scanlab
    # would fall back to central differences.
    cube = position * position * position
    acceleration = force * math.cos(frequency * x_t[0]) - c * velocity - k * position - beta * cube
    h_out[0] = position + dt * velocity
    h_out[1] = velocity + dt * acceleration


def duffing_jacobian(h_prev, x_t, params, J_out):
    """``d h[t] / d h[t-1]``, a dense 2x2 matrix."""
    dt, c, k, beta, force, frequency = params
    J_out[0, 0] = 1.0
    J_out[0, 1] = dt
    J_out[1, 0] = -dt * (k + 3 * beta * h_prev[0] ** 2)
    J_out[1, 1] = 1.0 - c * dt


def vector_field(t, state, c, k, beta, force, frequency):
    position, velocity = state
    acceleration = force * np.cos(frequency * t) - c * velocity - k * position - beta * position**3
    return [velocity, acceleration]


def solve(cell, steps: int, params: dict, method: str):
    """States after steps 1..steps (``h[t]`` at time ``(t + 1) dt``), the info and the time."""
    times = (np.arange(steps) * params["dt"])[:, None]
    values = tuple(params.values())
    # Compile first (a few seconds per cell and method) on a short run, then time the full one;
    # max_iter=1 leaves steps unsolved, so the loop that finishes them is compiled too.
    scanlab.nonlinear_recurrence(cell, times[:100], START, params=values, method=method, max_iter=1)
    start = time.perf_counter()
    h, info = scanlab.nonlinear_recurrence(
        cell, times, START, params=values, method=method, full_output=True
    )
    return h, info, time.perf_counter() - start


def report(label: str, info, seconds: float) -> None:
    fallback = bool(info.finished_sequentially.any())
    # info.residual covers the converged sequences only; the history also has the others.
    residual = info.residual_history[-1] if info.residual_history else info.residual
    print(
        f"  {label:<28} {1e3 * seconds:8.1f} ms  iterations {info.iterations:2d}  "
        f"converged {info.converged!s:<5}  residual {residual:.1e}  "
        f"finished sequentially {fallback}"
    )
    if info.residual_history:
        history = " ".join(f"{value:.0e}" for value in info.residual_history)
        print(f"    residual after each iteration: {history}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000, help="time steps (default 10**6)")
    steps = parser.parse_args(argv).steps
    automatic = scanlab.cell(duffing, structure="dense")
    analytic = scanlab.cell(duffing, jacobian=duffing_jacobian, structure="dense")

    # 1. Newton with both Jacobians, and the loop.
    print(f"1. Duffing oscillator, {steps} Euler steps of dt = {DUFFING['dt']}, c = {DUFFING['c']}")
    loop, loop_info, loop_seconds = solve(automatic, steps, DUFFING, "sequential")
    report("sequential", loop_info, loop_seconds)
    for label, cell in [("automatic", automatic), ("analytic", analytic)]:
        h, info, seconds = solve(cell, steps, DUFFING, "newton")
        report(f"newton, {label} Jacobian", info, seconds)
        # Residuals of tol per step add up over the ~2 / (c dt) steps a correction survives.
        print(f"    max |newton - sequential| = {np.max(np.abs(h - loop)):.1e}")
    (plan,) = automatic.plans.values()
    print(f"  automatic Jacobian computed by: {plan.method}")
    print(f"  final state (x, x') = ({loop[-1, 0]:.6f}, {loop[-1, 1]:.6f})")

    # 2. Light damping: Newton's linearised recurrence barely contracts, and the iterate blows up
    # (on long runs; a short one still converges).
    light = {**DUFFING, "c": 0.05}
    print(f"2. light damping c = {light['c']}, {steps} steps")
    h, info, seconds = solve(automatic, steps, light, "newton")
    report("newton", info, seconds)
    light_loop, _, _ = solve(automatic, steps, light, "sequential")
    print(f"    max |newton - sequential| = {np.max(np.abs(h - light_loop)):.1e}")

    # 3. Euler's global error against a tight solve_ivp over 10 time units: O(dt).
    print("3. Euler vs solve_ivp (DOP853, rtol = atol = 1e-10) over 10 time units")
    horizon = 10.0
    previous = None
    for dt in (1e-2, 1e-3, 1e-4):
        count = round(horizon / dt)
        h, _, _ = solve(analytic, count, {**DUFFING, "dt": dt}, "newton")
        exact = scipy.integrate.solve_ivp(
            vector_field, (0.0, horizon), START, method="DOP853",
            t_eval=np.arange(1, count + 1) * dt, rtol=1e-10, atol=1e-10,
            args=tuple(DUFFING[name] for name in ("c", "k", "beta", "F", "w")),
        )  # fmt: skip
        error = np.max(np.abs(h - exact.y.T))
        ratio = "" if previous is None else f"  (error ratio {previous / error:.1f} for dt / 10)"
        print(f"  dt = {dt:.0e}: Euler error (largest over the horizon) {error:.2e}{ratio}")
        previous = error


if __name__ == "__main__":
    main()
