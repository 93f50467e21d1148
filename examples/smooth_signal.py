"""Smooth a long noisy signal with exponential moving averages (first-order IIR filters).

1. A constant smoothing factor: the classic EMA, checked against scipy.signal.lfilter.
2. Irregularly sampled data: the decay depends on the gap between samples,
   ``a[t] = exp(-(time[t] - time[t-1]) / tau)``, which lfilter cannot express but a linear
   recurrence can.
3. Eight sensors at once, time along the last axis (``axis=-1``), each with its own start value.

Run: python examples/smooth_signal.py [--length N]
"""

import argparse
import time

import numpy as np
import scipy.signal

import scanlab


def timed(label, function):
    function()  # compile and warm up
    start = time.perf_counter()
    result = function()
    print(f"{label:<44} {1e3 * (time.perf_counter() - start):8.1f} ms")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=10_000_000, help="samples per signal")
    length = parser.parse_args().length
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.exponential(1e-3, length))  # irregular sampling, 1 ms on average
    clean = np.sin(2 * np.pi * 0.5 * times)
    noisy = clean + rng.normal(scale=0.5, size=length)

    # 1. EMA with a constant factor: h[t] = (1 - alpha) h[t-1] + alpha x[t].
    alpha = 0.02
    ema = timed("scanlab EMA", lambda: scanlab.linear_recurrence(1 - alpha, alpha * noisy))
    reference = timed(
        "scipy.signal.lfilter EMA", lambda: scipy.signal.lfilter([alpha], [1, -(1 - alpha)], noisy)
    )
    print(f"  max |scanlab - lfilter| = {np.max(np.abs(ema - reference)):.2e}")
    print(f"  noise rms: raw {np.std(noisy - clean):.3f}, smoothed {np.std(ema - clean):.3f}")

    # 2. Irregular sampling: the weight of the past decays with the time elapsed.
    tau = 0.02
    decay = np.exp(-np.diff(times, prepend=times[0]) / tau)
    irregular = timed(
        "scanlab time-aware EMA (irregular samples)",
        lambda: scanlab.linear_recurrence(decay, (1 - decay) * noisy, h0=noisy[0]),
    )
    print(f"  noise rms after time-aware smoothing: {np.std(irregular - clean):.3f}")

    # 3. Eight sensors, shape (8, T): time is the last axis, each starts from its first sample.
    sensors = np.sin(2 * np.pi * 0.5 * times[: length // 8]) + rng.normal(
        scale=0.5, size=(8, length // 8)
    )
    smoothed = timed(
        "scanlab EMA of 8 sensors (axis=-1)",
        lambda: scanlab.linear_recurrence(1 - alpha, alpha * sensors, h0=sensors[:, 0], axis=-1),
    )
    expected, _ = scipy.signal.lfilter(
        [alpha], [1, -(1 - alpha)], sensors, axis=-1, zi=(1 - alpha) * sensors[:, :1]
    )
    print(f"  max |scanlab - lfilter| over 8 sensors = {np.max(np.abs(smoothed - expected)):.2e}")


if __name__ == "__main__":
    main()
