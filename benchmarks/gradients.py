"""Benchmark the vector-Jacobian products against their forward solves; record in RESULTS.md.

Usage: python benchmarks/gradients.py [--quick] [--device cuda]

For each case, the forward solve and its VJP on the same arrays (operands in memory, float64),
and the VJP's cost as a multiple of the forward's. The linear table replaces the
``gradients-table`` block of benchmarks/RESULTS.md, the nonlinear one (forward by the loop and by
Newton, against ``nonlinear_recurrence_vjp``) the ``nonlinear-gradients-table`` block.

``--device cuda``: the nonlinear cases on GPU arrays instead (float32, timed by CUDA events):
Newton's solve against its VJP, every gradient computed on the GPU (the built-in cells'
pullbacks), and a ParaGRULayer's forward and backward pass; the
``nonlinear-gradients-cuda-table`` block. Then a GILR-LSTM layer of the 1M-step task
(``examples/long_dependency.py``) forward and backward on GPU arrays, against the same layer on
host arrays with its scans on the GPU and on the CPU alone: the ``linear-layers-cuda-table``
block.
"""

import argparse
import pathlib
from functools import partial

import numpy as np

import scanlab
from scanlab import math as smath
from scanlab.bench import tables
from scanlab.bench.timing import best_time, best_times, gpu_best_time

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")
#: (label, solver, coefficient shape, result shape).
CASES = (
    ("elementwise, a per step", "linear_recurrence", (2**20, 16), (2**20, 16)),
    ("elementwise, scalar a", "linear_recurrence", (), (2**20, 16)),
    ("elementwise, one series", "linear_recurrence", (2**22,), (2**22,)),
    ("matrix n=4, A per step", "linear_recurrence_matrix", (2**18, 4, 4), (2**18, 4)),
    ("matrix n=16, constant A", "linear_recurrence_matrix", (16, 16), (2**16, 16)),
)
COLUMNS = (
    ("case", "{}"),
    ("shape", "{}"),
    ("forward ms", "{:.2f}"),
    ("vjp ms", "{:.2f}"),
    ("vjp / forward", "{:.1f}"),
)


def leaky_step(h_prev, x_t, params, h_out):
    """A cell of a user's own, differentiated by scanlab (complex step, central differences)."""
    for i in range(h_prev.shape[0]):
        h_out[i] = 0.5 * h_prev[i] + smath.tanh(x_t[i] - h_prev[i])


#: (label, cell, input size, T, sequences).
NONLINEAR_CASES = (
    ("ParaGRU n=64", scanlab.cells.ParaGRU(64, 16, seed=0), 16, 2**14, 4),
    ("ParaLSTM n=32", scanlab.cells.ParaLSTM(32, 16, seed=0), 16, 2**14, 4),
    ("ElmanRNN n=16", scanlab.cells.ElmanRNN(16, 16, seed=0), 16, 2**13, 4),
    ("own diagonal cell n=64", scanlab.cell(leaky_step, structure="diagonal"), 64, 2**14, 4),
)
NONLINEAR_COLUMNS = (
    ("case", "{}"),
    ("T x B", "{}"),
    ("loop ms", "{:.2f}"),
    ("newton ms", "{:.2f}"),
    ("vjp ms", "{:.2f}"),
    ("vjp / loop", "{:.1f}"),
)


def nonlinear_rows(quick: bool) -> list:
    """The forward loop, Newton and the VJP of each nonlinear case (float64)."""
    rng = np.random.default_rng(0)
    rows = []
    for label, cell, inputs, length, sequences in NONLINEAR_CASES:
        length = length // 16 if quick else length
        x = rng.standard_normal((length, sequences, inputs))
        h0 = np.zeros((sequences, cell.state_size or inputs))
        h = scanlab.nonlinear_recurrence(cell, x, h0, method="sequential")
        g = rng.standard_normal(h.shape)
        solve = partial(scanlab.nonlinear_recurrence, cell, x, h0)
        times = best_times(
            {
                "loop": partial(solve, method="sequential"),
                "newton": partial(solve, method="newton"),
                "vjp": partial(scanlab.nonlinear_recurrence_vjp, cell, x, h0, h, g),
            },
            repeats=3,
        )
        rows.append(
            {
                "case": label,
                "T x B": f"{length}x{sequences}",
                "loop ms": 1e3 * times["loop"],
                "newton ms": 1e3 * times["newton"],
                "vjp ms": 1e3 * times["vjp"],
                "vjp / loop": times["vjp"] / times["loop"],
            }
        )
    return rows


#: (label, cell, input size, T, sequences) of the GPU's nonlinear cases (float32).
GPU_CASES = (
    ("ParaGRU n=64", scanlab.cells.ParaGRU(64, 16, seed=0), 16, 2**16, 16),
    ("ParaLSTM n=32", scanlab.cells.ParaLSTM(32, 16, seed=0), 16, 2**16, 16),
)
GPU_COLUMNS = (
    ("case", "{}"),
    ("T x B", "{}"),
    ("newton ms", "{:.2f}"),
    ("vjp ms", "{:.2f}"),
    ("vjp / newton", "{:.1f}"),
    ("layer fwd+bwd ms", "{:.2f}"),
)


def gpu_rows(quick: bool) -> list:
    """Newton's solve, its VJP and a layer's forward and backward pass of each GPU case, on
    GPU arrays (float32)."""
    from numba import cuda

    from scanlab.nn import ParaGRULayer, ParaLSTMLayer

    rng = np.random.default_rng(0)
    rows = []
    for label, cell, inputs, length, sequences in GPU_CASES:
        if quick:  # sizes the CUDA simulator runs in seconds, to try the script
            cell, inputs, length, sequences = type(cell)(4, 2, seed=0), 2, 16, 2
        host_x = rng.standard_normal((length, sequences, inputs)).astype(np.float32)
        x = cuda.to_device(host_x)
        h = scanlab.nonlinear_recurrence(cell, x, None, method="newton")
        g = cuda.to_device(rng.standard_normal(h.shape).astype(np.float32))
        kind = ParaGRULayer if isinstance(cell, scanlab.cells.ParaGRU) else ParaLSTMLayer
        layer = kind(inputs, cell.hidden_size, seed=0, method="newton")

        def layer_step(layer=layer, x=x):
            y, cache = layer.forward(x)
            layer.backward(cache, y)

        repeats = 1 if quick else 3
        newton = gpu_best_time(partial(scanlab.nonlinear_recurrence, cell, x, None), repeats)
        vjp = gpu_best_time(partial(scanlab.nonlinear_recurrence_vjp, cell, x, None, h, g), repeats)
        rows.append(
            {
                "case": label,
                "T x B": f"{length}x{sequences}",
                "newton ms": 1e3 * newton,
                "vjp ms": 1e3 * vjp,
                "vjp / newton": vjp / newton,
                "layer fwd+bwd ms": 1e3 * gpu_best_time(layer_step, repeats),
            }
        )
    return rows


#: The GILR-LSTM layer case: hidden size, one-hot input size, T, sequences (float32).
LAYER_CASE = (64, 128, 2**15, 8)
LAYER_COLUMNS = (
    ("case", "{}"),
    ("T x B", "{}"),
    ("GPU arrays ms", "{:.2f}"),
    ("host arrays, scans on GPU ms", "{:.2f}"),
    ("CPU ms", "{:.1f}"),
    ("CPU / GPU arrays", "{:.0f}"),
)


def gpu_layer_rows(quick: bool) -> list:
    """A GILR-LSTM layer's forward and backward pass on one-hot GPU inputs, on the same inputs
    on the host with ``device="cuda"`` (the scans on the GPU, the rest in NumPy) and on the CPU."""
    from numba import cuda

    from scanlab.nn import GILRLSTM, OneHot

    hidden, symbols, length, sequences = (4, 8, 16, 2) if quick else LAYER_CASE
    rng = np.random.default_rng(0)
    layer = GILRLSTM(symbols, hidden, seed=0)
    x = OneHot(rng.integers(0, symbols, (length, sequences), dtype=np.uint8), symbols)
    dy = rng.standard_normal((length, sequences, hidden)).astype(np.float32)

    def step(x, dy, device):
        y, cache = layer.forward(x, device=device)
        layer.backward(cache, dy)

    repeats = 1 if quick else 3
    resident = gpu_best_time(partial(step, x.to_device(), cuda.to_device(dy), "cuda"), repeats)
    scans_only = gpu_best_time(partial(step, x, dy, "cuda"), repeats)
    cpu = best_time(partial(step, x, dy, "cpu"), repeats)
    return [
        {
            "case": f"GILRLSTM n={hidden}, one-hot of {symbols}",
            "T x B": f"{length}x{sequences}",
            "GPU arrays ms": 1e3 * resident,
            "host arrays, scans on GPU ms": 1e3 * scans_only,
            "CPU ms": 1e3 * cpu,
            "CPU / GPU arrays": cpu / resident,
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="16x shorter, on the GPU tiny (does not write)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    arguments = parser.parse_args()
    quick = arguments.quick
    if arguments.device == "cuda":
        machines = f"{tables.gpu_description()}; host {tables.machine_description()}"
        for block, rows, columns in (
            ("nonlinear-gradients-cuda-table", gpu_rows, GPU_COLUMNS),
            ("linear-layers-cuda-table", gpu_layer_rows, LAYER_COLUMNS),
        ):
            table = tables.format_table(rows(quick), columns, markdown=True)
            tables.record_results(RESULTS, block, machines, table, write=not quick)
        return
    rng = np.random.default_rng(0)
    rows = []
    for label, solver, coefficient_shape, shape in CASES:
        if quick:
            if coefficient_shape[:1] == shape[:1]:  # coefficients per step
                coefficient_shape = (shape[0] // 16,) + coefficient_shape[1:]
            shape = (shape[0] // 16,) + shape[1:]
        size = shape[-1] if solver.endswith("matrix") else 1
        coefficients = rng.uniform(-0.9, 0.9, coefficient_shape) / np.sqrt(size)
        b = rng.standard_normal(shape)
        g = rng.standard_normal(shape)
        forward = getattr(scanlab, solver)
        h = forward(coefficients, b)
        times = best_times(
            {
                "forward": partial(forward, coefficients, b, out=h),
                "vjp": partial(getattr(scanlab, f"{solver}_vjp"), coefficients, h, g),
            },
            repeats=5,
        )
        rows.append(
            {
                "case": label,
                "shape": "x".join(map(str, shape)),
                "forward ms": 1e3 * times["forward"],
                "vjp ms": 1e3 * times["vjp"],
                "vjp / forward": times["vjp"] / times["forward"],
            }
        )
    tables.record_results(
        RESULTS,
        "gradients-table",
        tables.machine_description(),
        tables.format_table(rows, COLUMNS, markdown=True),
        write=not quick,
    )
    tables.record_results(
        RESULTS,
        "nonlinear-gradients-table",
        tables.machine_description(),
        tables.format_table(nonlinear_rows(quick), NONLINEAR_COLUMNS, markdown=True),
        write=not quick,
    )


if __name__ == "__main__":
    main()
