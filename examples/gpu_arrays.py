"""Recurrences on data that already lives on the GPU: no round trip through the host.

``scanlab.linear_recurrence`` reads GPU arrays (CuPy arrays, PyTorch CUDA tensors, Numba device
arrays: anything with ``__cuda_array_interface__``) where they are, and its result stays on the
GPU: a Numba device array, which ``cupy.asarray`` or ``torch.as_tensor`` wrap without a copy.

1. Exponential moving averages of a batch of signals, time along the last axis (``axis=-1``,
   laid out for the kernels on the GPU).
2. Discounted returns of a batch of episodes (``reverse=True``), written into a preallocated GPU
   array (``out=``), time first (read in place).
3. The gradient of a loss of those returns with respect to the rewards and the discounts
   (``linear_recurrence_vjp``), on the GPU too.

Each is checked against the same call on the CPU. The arrays are CuPy's when CuPy is installed,
else Numba's. Needs an NVIDIA GPU (or Numba's CUDA simulator, ``NUMBA_ENABLE_CUDASIM=1``).

Run: python examples/gpu_arrays.py [--length N] [--batch B]
"""

import argparse

import numpy as np
from numba import cuda

import scanlab

try:
    import cupy
except ImportError:  # Numba's device arrays instead
    cupy = None


def to_gpu(array: np.ndarray):
    """``array`` copied to the GPU, as a CuPy array if CuPy is installed."""
    return cupy.asarray(array) if cupy is not None else cuda.to_device(array)


def to_host(array) -> np.ndarray:
    """A GPU array (CuPy's or Numba's) copied to the host."""
    return cupy.asnumpy(array) if cupy is not None else array.copy_to_host()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=1_000_000, help="steps per sequence")
    parser.add_argument("--batch", type=int, default=16, help="sequences")
    arguments = parser.parse_args()
    length, batch = arguments.length, arguments.batch
    rng = np.random.default_rng(0)
    print(f"GPU arrays from {'CuPy' if cupy is not None else 'Numba'}")

    # 1. EMAs of (batch, T) float32 signals: h[t] = 0.99 h[t-1] + 0.01 x[t].
    signals = rng.standard_normal((batch, length)).astype(np.float32)
    smoothed = scanlab.linear_recurrence(0.99, to_gpu(0.01 * signals), axis=-1)
    expected = scanlab.linear_recurrence(0.99, 0.01 * signals, axis=-1, device="cpu")
    print(f"EMA: {type(smoothed).__name__} of shape {smoothed.shape}, on the GPU; "
          f"max |GPU - CPU| = {np.max(np.abs(to_host(smoothed) - expected)):.1e}")  # fmt: skip

    # 2. Discounted returns G[t] = r[t] + gamma[t] G[t+1] of (T, batch) episodes, where gamma[t] is
    #    0 at the last step of each episode (episodes end at random steps).
    rewards = rng.standard_normal((length, batch)).astype(np.float32)
    discounts = np.where(rng.random((length, batch)) < 1e-3, 0.0, 0.99).astype(np.float32)
    returns = to_gpu(np.empty_like(rewards))
    result = scanlab.linear_recurrence(
        to_gpu(discounts), to_gpu(rewards), reverse=True, out=returns
    )
    expected = scanlab.linear_recurrence(discounts, rewards, reverse=True, device="cpu")
    difference = np.max(np.abs(to_host(returns) - expected)) / np.max(np.abs(expected))
    print(f"returns: written into out ({result is returns}); "
          f"max |GPU - CPU| / max |G| = {difference:.1e}")  # fmt: skip

    # 3. Gradients of L = sum(w * G), for weights w: the adjoint recurrence runs forwards in time.
    weights = rng.standard_normal((length, batch)).astype(np.float32)
    gradients = scanlab.linear_recurrence_vjp(
        to_gpu(discounts), returns, to_gpu(weights), reverse=True
    )
    expected = scanlab.linear_recurrence_vjp(discounts, to_host(returns), weights, reverse=True)
    difference = max(
        np.max(np.abs(to_host(gpu) - cpu)) / np.max(np.abs(cpu))
        for gpu, cpu in zip(gradients[:2], expected[:2], strict=True)
    )
    print(f"gradients: d/d discounts and d/d rewards on the GPU; "
          f"max |GPU - CPU| / max |gradient| = {difference:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
