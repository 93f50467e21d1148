"""Simulate linear systems of ODEs with ``linear_recurrence_matrix``.

1. A chain of coupled, damped, driven oscillators ``x' = M x + B u(t)``, discretised exactly with
   the matrix exponential (zero-order hold): ``h[t] = A h[t-1] + b[t]`` with ``A = expm(M dt)``.
   Checked against ``scipy.signal.dlsim``, and the free response at the sample times against
   ``scipy.integrate.solve_ivp`` at tight tolerance.
2. A thousand independent oscillators with their own frequencies, each a 2-state system: a batch
   (block-diagonal) recurrence, ``A`` of shape ``(1000, 2, 2)``.
3. A time-varying system: the same chain with stiffness that drifts over time, one matrix per step.

Run: python examples/coupled_oscillators.py [--length N]
"""

import argparse
import time

import numpy as np
import scipy.integrate
import scipy.linalg
import scipy.signal

import scanlab


def timed(label, function):
    function()  # compile and warm up
    start = time.perf_counter()
    result = function()
    print(f"{label:<48} {1e3 * (time.perf_counter() - start):8.1f} ms")
    return result


def chain_dynamics(masses: int, stiffness: float, damping: float) -> np.ndarray:
    """``M`` of ``x' = M x`` for unit masses on springs; the state is (positions, velocities)."""
    laplacian = 2 * np.eye(masses) - np.eye(masses, k=1) - np.eye(masses, k=-1)
    return np.block(
        [
            [np.zeros((masses, masses)), np.eye(masses)],
            [-stiffness * laplacian, -damping * np.eye(masses)],
        ]
    )


def zero_order_hold(dynamics: np.ndarray, inputs: np.ndarray, dt: float):
    """Exact discretisation of ``x' = M x + B u`` with ``u`` constant over each step."""
    states, controls = inputs.shape
    augmented = np.zeros((states + controls, states + controls))
    augmented[:states, :states] = dynamics * dt
    augmented[:states, states:] = inputs * dt
    exponential = scipy.linalg.expm(augmented)
    return exponential[:states, :states], exponential[:states, states:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=1_000_000, help="time steps")
    length = parser.parse_args().length
    dt, masses = 1e-3, 4
    steps = np.arange(length) * dt

    # 1. Four masses on springs, the first one driven by a chirp.
    dynamics = chain_dynamics(masses, stiffness=50.0, damping=0.3)
    drive = np.zeros((2 * masses, 1))
    drive[masses] = 1.0
    A, B = zero_order_hold(dynamics, drive, dt)
    force = np.sin(2 * np.pi * (0.2 + 0.5 * steps) * steps)[:, None]
    x0 = np.zeros(2 * masses)
    x0[0] = 1.0
    # h[t] is the state after step t: x((t + 1) dt) = A x(t dt) + B u(t dt).
    states = timed(
        "scanlab.linear_recurrence_matrix (8 states)",
        lambda: scanlab.linear_recurrence_matrix(A, force @ B.T, x0),
    )
    system = (A, B, np.eye(2 * masses), np.zeros((2 * masses, 1)), dt)
    _, _, reference = timed("scipy.signal.dlsim", lambda: scipy.signal.dlsim(system, force, x0=x0))
    print(f"  max |scanlab - dlsim| = {np.max(np.abs(states[:-1] - reference[1:])):.2e}")
    # The free response (no force) against the continuous system, integrated tightly.
    horizon = min(length, 5_000)
    free = scanlab.linear_recurrence_matrix(A, np.zeros((horizon, 2 * masses)), x0)
    continuous = scipy.integrate.solve_ivp(
        lambda t, x: dynamics @ x,
        (0.0, horizon * dt),
        x0,
        method="DOP853",
        t_eval=np.arange(1, horizon + 1) * dt,
        rtol=1e-12,
        atol=1e-12,
    )
    difference = np.max(np.abs(free - continuous.y.T))
    print(f"  free response: max |scanlab - solve_ivp| over {horizon} steps = {difference:.2e}")

    # 2. A thousand independent damped oscillators: a batch of 2x2 systems.
    frequencies = np.random.default_rng(0).uniform(1.0, 20.0, 1000)
    oscillators = np.zeros((1000, 2, 2))
    oscillators[:, 0, 1] = 1.0
    oscillators[:, 1, 0] = -(frequencies**2)
    oscillators[:, 1, 1] = -0.1
    batch_A = np.stack([scipy.linalg.expm(m * dt) for m in oscillators])
    batch_length = min(length, 100_000)
    kicks = np.zeros((batch_length, 1000, 2))
    kicks[::10_000, :, 1] = 1.0
    batch = timed(
        f"1000 oscillators x {batch_length} steps",
        lambda: scanlab.linear_recurrence_matrix(batch_A, kicks),
    )
    one = scanlab.linear_recurrence_matrix(batch_A[7], kicks[:, 7])
    print(f"  oscillator 7 alone vs in the batch: max diff {np.max(np.abs(batch[:, 7] - one)):.1e}")

    # 3. Stiffness drifting from 50 to 80 over the run: one matrix per step.
    drift_length = min(length, 100_000)
    stiffness = np.linspace(50.0, 80.0, drift_length)
    varying = np.stack(
        [zero_order_hold(chain_dynamics(masses, k, 0.3), drive, dt)[0] for k in stiffness[::1000]]
    )
    per_step = np.repeat(varying, 1000, axis=0)[:drift_length]
    drifting = timed(
        f"time-varying chain, {drift_length} matrices",
        lambda: scanlab.linear_recurrence_matrix(per_step, force[:drift_length] @ B.T, x0),
    )
    energy = np.sum(drifting[:, masses:] ** 2, axis=1)
    print(f"  kinetic energy (x2) at the end: {energy[-1]:.3e}")


if __name__ == "__main__":
    main()
