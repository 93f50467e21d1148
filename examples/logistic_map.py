"""Newton's method on a chaotic recurrence, the logistic map ``h[t] = r h[t-1] (1 - h[t-1])``.

A batch of 64 sequences with random starts in (0.2, 0.8): ``h0`` of shape (64, 1) and ``x`` of
shape (T, 1, 0) (no inputs, broadcast over the batch). Each Newton iteration solves
``delta[t] = J[t] delta[t-1] + (f - h)[t]`` with ``J[t] = r (1 - 2 h[t-1])``, so an error at one
step is carried to later ones multiplied by the product of ``|r (1 - 2 h)|``; along the true
trajectory the mean of ``log |r (1 - 2 h)|`` is the Lyapunov exponent.

1. ``r = 2.8``: every sequence settles on the fixed point ``1 - 1/r``, where ``|J| = 0.8``
   (Lyapunov exponent ``log 0.8 < 0``). Newton converges in a few iterations from a guess near
   it (``guess=1 - 1/r``), and so does ``method="damped"``. The default guess does not do:
   it is ``f(0, x[t]) = 0`` after the first step, the repelling fixed point where ``|J| = r``,
   so the first correction grows like ``2.8^t`` and overflows.
2. ``r = 3.9``: chaos (Lyapunov exponent about 0.5), the products of ``|J|`` grow like
   ``e^(0.5 t)`` whatever the guess and Newton diverges. scanlab detects it (an iterate that
   is not finite where ``f`` is): ``on_fail="fallback"`` (the default) finishes each sequence
   with the loop from its first unsolved step, ``on_fail="raise"`` raises
   ``scanlab.ConvergenceError``, and ``method="damped"`` falls back to the Picard iteration
   ``h[t] = f(h[t-1])``, which solves about one more step per iteration, until ``max_iter``.
   After a fallback the result is the loop's bit for bit only if the prefix Newton solved is.
   Here Newton diverges at its first iteration, before it has solved a step inexactly, and the
   result is identical to the loop (``np.array_equal``). The damped method solves about thirty
   steps to rounding before its fallback; chaos amplifies that rounding difference to order 1
   within a hundred steps, yet its residual is at rounding level too: a trajectory as valid
   as the loop's.

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
    # Compile everything once on a short problem, so that the times below are the solves'.
    for method in ("sequential", "newton", "damped"):
        scanlab.nonlinear_recurrence(cell, x[:10], h0, params=2.8, method=method)

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
        h, _ = run("damped, guess = 1 - 1/r", cell, x, h0, r, method="damped", guess=fixed_point)
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
