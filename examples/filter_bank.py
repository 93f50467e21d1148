"""A band-pass filter bank over a long multichannel recording, filtered as it streams in.

A 16-channel recording at 1 kHz (an EEG-like mix of rhythms and noise) is split into the
classic bands by 8th-order Butterworth band-passes in second-order sections. The recording
arrives in blocks; each block is filtered from the previous block's final conditions, by
scanlab and by scipy, and both equal filtering the whole recording at once.

Run: python examples/filter_bank.py [--seconds S]
"""

import argparse
import time

import numpy as np
import scipy.signal

from scanlab.signal import sosfilt

RATE = 1000.0  # samples per second
BANDS = {"theta": (4, 8), "alpha": (8, 13), "beta": (13, 30), "gamma": (30, 80)}


def recording(seconds: float, channels: int, rng) -> np.ndarray:
    """Channels of rhythms at 6, 10, 20 and 40 Hz with channel-dependent strength, plus noise."""
    t = np.arange(int(seconds * RATE)) / RATE
    strengths = rng.uniform(0.2, 2.0, (channels, len(BANDS)))
    rhythms = np.sin(2 * np.pi * np.array([6.0, 10.0, 20.0, 40.0])[:, None] * t)
    return strengths @ rhythms + rng.normal(scale=1.0, size=(channels, len(t)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the recording")
    parser.add_argument("--channels", type=int, default=16)
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    signal = recording(arguments.seconds, arguments.channels, rng)
    blocks = np.array_split(signal, 20, axis=-1)  # as the recording arrives
    print(f"{arguments.channels} channels x {signal.shape[1]} samples, in {len(blocks)} blocks")
    sosfilt(scipy.signal.butter(2, 0.1, output="sos"), blocks[0], zi=np.zeros((1, len(signal), 2)))
    for band, (low, high) in BANDS.items():
        sos = scipy.signal.butter(4, [low, high], btype="band", fs=RATE, output="sos")
        streamed, spent = stream(sosfilt, sos, blocks)
        scipy_streamed, scipy_spent = stream(scipy.signal.sosfilt, sos, blocks)
        whole = scipy.signal.sosfilt(sos, signal)
        power = np.mean(streamed[:, streamed.shape[1] // 10 :] ** 2, axis=-1)
        print(
            f"{band:>6} {low:>2}-{high:<2} Hz: scanlab {1e3 * spent:6.1f} ms, "
            f"scipy {1e3 * scipy_spent:6.1f} ms; max |streamed - scipy whole| = "
            f"{np.max(np.abs(streamed - whole)):.1e} (scipy streamed: "
            f"{np.max(np.abs(scipy_streamed - whole)):.1e}); power of channel 0 {power[0]:.3f}"
        )


def stream(filter_function, sos, blocks):
    """Each block filtered from the previous block's final conditions, and the seconds spent."""
    start = time.perf_counter()
    state = np.zeros((len(sos), len(blocks[0]), 2))
    pieces = []
    for block in blocks:
        filtered, state = filter_function(sos, block, zi=state)
        pieces.append(filtered)
    spent = time.perf_counter() - start
    return np.concatenate(pieces, axis=-1), spent


if __name__ == "__main__":
    main()
