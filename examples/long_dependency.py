"""Learn a dependency across a whole sequence with a two-layer GILR-LSTM (Martin & Cundy 2018).

The task (Hochreiter & Schmidhuber's problem 2b, as in Martin & Cundy's 1M-step experiment):
each sequence of ``--length`` steps holds one-hot vectors in p = 128 dimensions, drawn
uniformly at random, except the first, which is ``+e_1`` or ``-e_1``. The class is the sign of
that first element, and the model reads the whole sequence before it answers: two GILR-LSTM layers
(``scanlab.nn.GILRLSTM``) and a linear readout of the last step's output, trained with the
logistic loss and Adam on fresh minibatches. The inputs are ``scanlab.nn.OneHot`` indices with
a sign at the first step, never dense (T, batch, 128) arrays.

The forget gates start open, with bias ``log(length)``: ``sigmoid(b)**length`` is then about
``1/e``, so the first step's cell and the gradient that reaches it survive the whole sequence
(with the usual bias of 1, they would shrink like ``0.73**length``).

Every layer's recurrences are solved by ``scanlab.linear_recurrence`` in parallel over time, and
their gradients by ``scanlab.linear_recurrence_vjp``; the rest is NumPy. With ``--device cuda``
the whole training step runs on the GPU: the minibatch's indices go there
(``OneHot.to_device``), the layers then compute on device arrays, and only the last step's
logits, the loss's gradient (a few numbers per sequence), the weights and their gradients
cross between host and GPU.

Training stops when it has converged, as in the paper: 5 consecutive minibatches classified
without error. The last line is machine-readable:
``converged=True iterations=123 seconds=45.6`` (the seconds of training, without the warm-up).

On a small machine, run long sequences with two settings in the environment (benchmarks/RESULTS.md
has the numbers): ``OPENBLAS_NUM_THREADS=1``, since OpenBLAS's threads, spinning between the
matrix products, fight Numba's and other processes' for the cores; and
``MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=68719476736``, which keeps glibc from
handing the arrays of each iteration back to the system only to fault them in again at the next.

The default settings are a quick run (128 steps, 32 units, a few minutes on a laptop). The
paper's are presets, ``--preset paper-1k``, ``paper-8k`` and ``paper-1m``: 1,024, 8,192 and
1,048,576 steps, two layers of 512 units (64 at 1M), Adam at 1e-3 without gradient clipping,
weights drawn from U(-0.05, 0.05), zero biases but the forget gates' at 5, minibatches of 8, and
no limit on the iterations (the paper reports about 14,000 at 1M, 9.7 hours on a K80). Where this
script differs from the paper: it trains in float32 NumPy and scanlab, on the CPU or (``--device
cuda``) on the GPU, not TensorFlow; the batch size of 8 is read
from the paper's table source (it reports a search over learning rate and batch size, not the
values); the readout is a linear unit on the last step's output of the second layer, as in its
figure 2. Any option given after a preset overrides it.

Run: python examples/long_dependency.py [--preset P] [--length N] [--hidden H] [--batch B]
     [--device cpu]
"""

import argparse
import math
import sys
import time

import numpy as np
from scipy.special import expit, log_expit

from scanlab.nn import GILRLSTM, Adam, Linear, OneHot

#: Dimensions of the one-hot inputs.
SYMBOLS = 128
#: Consecutive minibatches at 100% accuracy that count as converged.
STREAK = 5


def minibatch(rng, length: int, batch: int):
    """Inputs of shape (length, batch) as signed one-hot indices, and labels +1 / -1."""
    indices = rng.integers(0, SYMBOLS, (length, batch), dtype=np.uint8)
    indices[0] = 0
    labels = rng.choice(np.array([-1.0, 1.0], np.float32), batch)
    signs = np.ones((length, batch), np.float32)
    signs[0] = labels
    return OneHot(indices, SYMBOLS, values=signs), labels


#: The paper's settings (Martin & Cundy 2018, section 5.2, and their code), by preset; the
#: options left out keep the quick defaults of ``main``'s parser.
PAPER = {"hidden": 512, "batch": 8, "lr": 1e-3, "clip": None, "init_scale": 0.05,
         "forget_bias": 5.0, "max_iterations": None}  # fmt: skip
PRESETS = {
    "quick": {},
    "paper-1k": {**PAPER, "length": 1024},
    "paper-8k": {**PAPER, "length": 8192},
    "paper-1m": {**PAPER, "length": 2**20, "hidden": 64},
}


class Model:
    """Two GILR-LSTM layers and a linear readout of the last step: one logit per sequence.

    ``init_scale``: draw every weight from U(-init_scale, init_scale) and zero the biases (the
    paper's initialisation), instead of the layers' own; the forget gates' biases are then
    ``forget_bias`` either way."""

    def __init__(self, hidden: int, forget_bias: float, seed: int, init_scale=None):
        rng = np.random.default_rng(seed)
        self.layers = [GILRLSTM(SYMBOLS, hidden, seed=rng), GILRLSTM(hidden, hidden, seed=rng)]
        self.readout = Linear(hidden, 1, seed=rng)
        if init_scale is not None:
            for params in self.params:
                for name, value in params.items():
                    is_bias = name.endswith("bias")
                    value[...] = 0 if is_bias else rng.uniform(-init_scale, init_scale, value.shape)
        for layer in self.layers:
            layer.params["bias"][:hidden] = forget_bias

    @property
    def params(self) -> list:
        return [layer.params for layer in (*self.layers, self.readout)]

    def loss_and_gradients(self, x, labels, device: str):
        """The mean logistic loss, the accuracy and the gradients (the structure of params).
        With ``device="cuda"`` the layers run on the GPU: ``x`` goes there first."""
        if device == "cuda":
            x = x.to_device()
        caches = []
        for layer in self.layers:
            x, cache = layer.forward(x, device=device)
            caches.append(cache)
        logits, readout_cache = self.readout.forward(x[-1])
        margins = labels * to_host(logits)[:, 0]
        loss = -float(np.mean(log_expit(margins)))
        accuracy = float(np.mean(margins > 0))

        dlogits = (-labels * expit(-margins) / len(labels))[:, None]
        dlast, readout_grads = self.readout.backward(readout_cache, dlogits)
        # Only the last step's output is read: dL/dy is zero at every other step.
        if device == "cuda":
            from scanlab.cuda.memory import zeros  # numba.cuda: imported where it is used

            dy = zeros(x.shape, x.dtype)  # set on the GPU
            dy[-1].copy_to_device(dlast)
        else:
            dy = np.zeros_like(x)
            dy[-1] = dlast
        grads = []
        for layer, cache in zip(reversed(self.layers), reversed(caches), strict=True):
            dy, layer_grads = layer.backward(cache, dy)
            grads.insert(0, layer_grads)
        return loss, accuracy, grads + [readout_grads]


def to_host(values) -> np.ndarray:
    """``values`` as a NumPy array, copied from the GPU where they are a device array."""
    return values.copy_to_host() if hasattr(values, "copy_to_host") else values


class Progress:
    """One line on stderr: rewritten in place on a terminal, else printed every 10 seconds."""

    def __init__(self):
        self.in_place = sys.stderr.isatty()
        self.last_printed = -np.inf

    def show(self, text: str, force: bool = False) -> None:
        now = time.perf_counter()
        if self.in_place:
            print(f"\r{text}", end="", file=sys.stderr, flush=True)
        elif force or now - self.last_printed >= 10:
            print(text, file=sys.stderr, flush=True)
            self.last_printed = now

    def close(self) -> None:
        if self.in_place:
            print(file=sys.stderr)


def positive(text: str) -> int:
    """An argparse type: a positive integer."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="quick", help="quick, or the paper's settings"
    )
    parser.add_argument("--length", type=positive, default=128, help="steps per sequence (128)")
    parser.add_argument("--hidden", type=positive, default=32, help="units per layer (32)")
    parser.add_argument("--batch", type=positive, default=32, help="sequences per minibatch (32)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--max-iterations", type=positive, default=5000,
                        help="(5000; no limit for the paper's presets)")  # fmt: skip
    parser.add_argument("--time-limit", type=float, default=np.inf, help="seconds of training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's step size (3e-3)")
    parser.add_argument(
        "--clip", type=float, default=1.0, help="gradient-norm clipping (1.0; none: paper)"
    )
    parser.add_argument(
        "--init-scale", type=float, default=None, help="weights from U(-s, s), biases 0"
    )
    parser.add_argument(
        "--forget-bias",
        type=float,
        help="initial forget-gate bias (default log(length): a cell keeps 1/e over the sequence)",
    )
    preset = parser.parse_known_args(argv)[0].preset
    parser.set_defaults(**{name: value for name, value in PRESETS[preset].items()})
    args = parser.parse_args(argv)
    if args.forget_bias is None:
        args.forget_bias = math.log(args.length)
    if args.max_iterations is None:
        args.max_iterations = math.inf

    rng = np.random.default_rng(args.seed)
    model = Model(args.hidden, args.forget_bias, args.seed, args.init_scale)
    optimiser = Adam(model.params, lr=args.lr, max_grad_norm=args.clip)
    print(
        f"preset {args.preset}: length {args.length}, {SYMBOLS} symbols, 2 GILR-LSTM layers of "
        f"{args.hidden} units, batch {args.batch}, device {args.device}, lr {args.lr}, "
        f"clip {args.clip}, init {args.init_scale or 'the layers own'}, "
        f"forget-gate bias {args.forget_bias:.2f}"
    )
    # Warm-up on a tiny problem: loads (or compiles) the kernels outside the timed training.
    model.loss_and_gradients(*minibatch(np.random.default_rng(), 4, 2), args.device)

    progress = Progress()
    streak = iteration = 0
    accuracy = float("nan")
    start = time.perf_counter()
    while streak < STREAK and iteration < args.max_iterations:
        if time.perf_counter() - start >= args.time_limit:
            break
        x, labels = minibatch(rng, args.length, args.batch)
        loss, accuracy, grads = model.loss_and_gradients(x, labels, args.device)
        optimiser.step(grads)
        iteration += 1
        streak = streak + 1 if accuracy == 1 else 0
        seconds = time.perf_counter() - start
        progress.show(
            f"iteration {iteration}  loss {loss:.4f}  accuracy {accuracy:6.1%}  "
            f"streak {streak}  {seconds / iteration:.3f} s/iteration",
            force=streak == STREAK,
        )
    seconds = time.perf_counter() - start
    progress.close()
    converged = streak == STREAK
    if converged:
        print(f"converged after {iteration} iterations in {seconds:.1f} s")
    else:
        print(f"did not converge within {iteration} iterations ({seconds:.1f} s)")
    print(
        f"{seconds / max(iteration, 1):.3f} s per iteration, last minibatch accuracy {accuracy:.1%}"
    )
    print(f"converged={converged} iterations={iteration} seconds={seconds:.1f}")


if __name__ == "__main__":
    main()
