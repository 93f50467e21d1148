"""Newton's method on a chaotic recurrence, the logistic map ``h[t] = r h[t-1] (1 - h[t-1])``.

A batch of 64 sequences with random starts in (0.2, 0.8): ``h0`` of shape (64, 1) and ``x`` of
shape (T, 1, 0) (no inputs, broadcast over the batch). Each Newton iteration solves
``delta[t] = J[t] delta[t-1] + (f - h)[t]`` with ``J[t] = r (1 - 2 h[t-1])``, so an error at one
step is carried to later ones multiplied by the product of ``|r (1 - 2 h)|``; along the true
trajectory the mean of ``log |r (1 - 2 h)|`` is the Lyapunov exponent.

1. ``r = 2.8``: every sequence settles on the fixed point ``1 - 1/r``, where ``|J| = 0.8``
   (Lyapunov exponent ``log 0.8 < 0``), but the linearised recurrence contracts only where
   ``|J| = |r (1 - 2 h)| < 1``, for ``h`` in (0.32, 0.68). The default guess repeats the state
   after the first step, ``f(h0, x[t])``, at every step: Newton converges from it for 35 of the
   64 sequences, and the loop finishes the other 29, whose guess is above 0.68 (a start near
   0.5) or near 0.5 (a start near 0.2 or 0.8, from where Newton's first step lands near 0.7):
   their corrections grow like ``1.1^t`` and overflow. From ``guess=1 - 1/r`` Newton converges
   for every sequence, and so does ``method="damped"`` from the default guess: a sequence whose
   step does not lower its merit keeps its states and retries with more damping.
2. ``r = 3.9``: chaos (Lyapunov exponent about 0.5), the products of ``|J|`` grow like
   ``e^(0.5 t)`` whatever the guess and Newton diverges within two iterations. scanlab detects
   it (an iterate that is not finite where ``f`` is): ``on_fail="fallback"`` (the default)
   finishes each sequence with the loop from its first unsolved step, ``on_fail="raise"``
   raises ``scanlab.ConvergenceError``. ``method="damped"`` rejects steps until a sequence's
   damping reaches 0, the Picard iteration ``h[t] = f(h[t-1])`` (always taken), which solves
   one more step; chaos rejects about every other step after that, so at ``max_iter`` (50)
   about 28 steps of each sequence are solved and the loop finishes the rest (earlier for some
   sequences that wander outside (0, 1), where Picard steps square them until they overflow).
   After a fallback the result is the loop's bit for bit only if the solved prefix is. From
   ``guess=1 - 1/r`` Newton diverges at its first iteration, having solved only the first
   step, exactly, and the result is identical to the loop (``np.array_equal``). The default
   guess is ``f(h0)`` at the first step only to rounding, and the damped method solves its
   prefix to ``tol``: chaos amplifies such differences to order 1 within a hundred steps, yet
   the residuals stay within ``tol``: trajectories as valid as the loop's.

Run: python examples/logistic_map.py [--steps N]
"""

import argparse
import time

import numpy as np

import scanlab

SEQUENCES = 64


def logistic(h_prev, x_t, r, h_out):
    h_out[0] = r * h_prev[0] * (1.0 - h_prev[0])


def largest_residual(h: np.ndarray, h0: np.ndarray, r: float) -> float:
    """The largest scaled residual ``|h[t] - f(h[t-1])| / (1 + |f|)`` of a computed solution."""
    previous = np.concatenate([h0[None], h[:-1]])
    f = r * previous * (1 - previous)
    return float(np.max(np.abs(h - f) / (1 + np.abs(f))))


def run(label: str, cell, x, h0, r: float, **options):
    """Solve with ``options``, print one line about it, return the states and the info."""
    start = time.perf_counter()
    h, info = scanlab.nonlinear_recurrence(cell, x, h0, params=r, full_output=True, **options)
    seconds = time.perf_counter() - start
    print(
        f"  {label:<30} {1e3 * seconds:7.1f} ms  iterations {info.iterations:2d}  "
        f"converged {int(info.batch_converged.sum()):2d}/{SEQUENCES}  "
        f"finished sequentially {int(info.finished_sequentially.sum()):2d}/{SEQUENCES}  "
        f"last residual {info.residual_history[-1]:.1e}"
    )
    return h, info


def compare(h: np.ndarray, loop: np.ndarray, h0: np.ndarray, r: float) -> None:
    """How ``h`` compares with the sequential loop's ``loop``."""
    differs = np.flatnonzero(np.any(h != loop, axis=(1, 2)))
    where = ""
    if differs.size:
        first = differs[0]
        where = f", first at step {first} by {np.max(np.abs(h[first] - loop[first])):.0e}"
    print(
        f"    identical to the loop: {np.array_equal(h, loop)}{where}; "
        f"max |h - loop| = {np.max(np.abs(h - loop)):.1e}; "
        f"residual of h = {largest_residual(h, h0, r):.1e}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000, help="time steps (default 10**4)")
    steps = parser.parse_args(argv).steps
    cell = scanlab.cell(logistic, structure="diagonal")
    h0 = np.random.default_rng(0).uniform(0.2, 0.8, (SEQUENCES, 1))
    x = np.empty((steps, 1, 0))
    # Compile everything once on a short problem, so that the times below are the solves'
    # (max_iter=1 leaves steps unsolved: the loop that finishes them is compiled too).
    for method in ("sequential", "newton", "damped"):
        scanlab.nonlinear_recurrence(cell, x[:10], h0, params=2.8, method=method, max_iter=1)

    for r in (2.8, 3.9):
        fixed_point = 1 - 1 / r
        loop = scanlab.nonlinear_recurrence(cell, x, h0, params=r, method="sequential")
        settled = loop[min(100, steps - 1) :]
        lyapunov = np.mean(np.log(np.abs(r * (1 - 2 * settled))))
        print(
            f"r = {r}: {SEQUENCES} sequences x {steps} steps; Lyapunov exponent {lyapunov:+.2f}, "
            f"fixed point 1 - 1/r = {fixed_point:.3f} with |J| = {abs(2 - r):.1f}"
        )
        h, _ = run("newton, default guess", cell, x, h0, r, method="newton")
        compare(h, loop, h0, r)
        h, _ = run("newton, guess = 1 - 1/r", cell, x, h0, r, method="newton", guess=fixed_point)
        compare(h, loop, h0, r)
        h, _ = run("damped, default guess", cell, x, h0, r, method="damped")
        compare(h, loop, h0, r)
    try:
        scanlab.nonlinear_recurrence(cell, x, h0, params=3.9, method="newton", on_fail="raise")
        print("  on_fail='raise': no error (Newton converged)")
    except scanlab.ConvergenceError as error:
        print(f"  on_fail='raise': ConvergenceError: {error}")
        print(
            f"    .residual = {error.residual} (the unconverged sequences' largest), "
            f".info.iterations = {error.info.iterations}"
        )


if __name__ == "__main__":
    main()
