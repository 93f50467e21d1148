"""The ``scanlab`` command (also ``python -m scanlab``): ``info``, ``tune`` and ``bench``."""

import argparse
import importlib.util
import os
import platform
import sys

import numba
import numpy as np
import scipy
from numba.core.caching import FunctionCache

import scanlab
from scanlab import wisdom
from scanlab._devices import cuda_module


def cuda_status() -> str:
    """One line on the CUDA side: package, simulator, GPU."""
    try:
        from numba import cuda
    except ImportError:
        return "numba-cuda not installed (pip install numba-cuda): CPU only"
    if numba.config.ENABLE_CUDASIM:
        return "CUDA simulator (NUMBA_ENABLE_CUDASIM=1): kernels run as Python, for tests"
    if not cuda.is_available():
        return "no usable GPU (numba.cuda.is_available() is False): CPU only"
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    return f"GPU {name}, compute capability {device.compute_capability}"


def compiled_kernels() -> str:
    """Where Numba keeps scanlab's compiled CPU kernels (``cache=True``), and how many of the
    loaded modules' kernels are there already: a warm cache loads them instead of compiling."""
    caches = [
        value._cache
        for name, module in list(sys.modules.items())
        if name.startswith("scanlab.") and not name.startswith(("scanlab.cuda", "scanlab.bench"))
        for value in vars(module).values()
        if isinstance(getattr(value, "_cache", None), FunctionCache)
    ]
    if not caches:
        return "no cached kernels loaded"
    kept = sum(os.path.exists(cache._cache_file._index_path) for cache in caches)
    folders = sorted({cache._cache_path for cache in caches})
    where = folders[0] if len(folders) == 1 else f"{folders[0]} and {len(folders) - 1} more"
    return f"{kept} of the {len(caches)} loaded CPU kernels compiled and kept, in {where}"


def info(_arguments) -> None:
    print(f"scanlab   {scanlab.__version__}")
    print(f"python    {platform.python_version()} ({sys.executable})")
    print(f"numba     {numba.__version__}, {numba.get_num_threads()} threads")
    print(f"numpy     {np.__version__}")
    print(f"scipy     {scipy.__version__}")
    print(f"cuda      {cuda_status()}")
    print(f"cpu       {wisdom.cpu_model()}")
    print(f"compiled  {compiled_kernels()}")
    print(f"wisdom    {wisdom.path() or 'not kept (scanlab.config.cpu.wisdom is None)'}")
    for key, speeds in sorted(wisdom.entries().items()):
        measured = ", ".join(f"{method} {value:.2f}" for method, value in sorted(speeds.items()))
        print(f"  {key}: {measured} ns/element")


#: The dtypes and channel counts ``scanlab tune`` measures (``auto`` rounds channels up to the
#: next power of 4, and the elements of a problem too, up to ``config.cpu.calibration_elements``).
TUNED_DTYPES = ("float32", "float64", "complex64", "complex128")
TUNED_CHANNELS = (1, 4, 16, 64, 256, 1024)


def tune(_arguments) -> None:
    """Measure again what ``method="auto"`` chooses from, and store it."""
    from scanlab.cpu import auto as cpu_auto
    from scanlab.cpu import linear as cpu_linear

    wisdom.forget()
    threads = numba.get_num_threads()
    settings = scanlab.config.cpu
    settings.calibrate_after = 0.0  # measure at once
    print(f"{wisdom.cpu_model()}, {threads} threads; ns per element:")
    print(f"{'dtype':<11}{'channels':>9}{'elements':>10}{'sequential':>12}{'scan':>8}  auto")
    for dtype in TUNED_DTYPES:
        for channels in TUNED_CHANNELS:
            _, elements = cpu_auto.problem_class(settings.auto_scan_min_length, channels)
            while True:
                length = max(elements // channels, settings.auto_scan_min_length)
                method = cpu_linear.choose_method(length, channels, dtype, threads)
                key = cpu_auto.wisdom_key(dtype, channels, elements, threads)
                speeds = wisdom.entries().get(key, {})
                cells = (
                    f"{speeds[name]:.2f}" if name in speeds else "-"
                    for name in ("sequential", "scan")
                )
                print(
                    f"{dtype:<11}{channels:>9}{elements:>10}{next(cells):>12}{next(cells):>8}"
                    f"  {method}"
                )
                if elements >= settings.calibration_elements:
                    break
                elements *= 4
    print("streaming stores of large results (ns per element, with / without):")
    for dtype in TUNED_DTYPES:
        for method in ("sequential", "scan"):
            speeds = cpu_auto.measured_stores(method, dtype, cpu_linear.solve)
            if speeds is None:
                print(f"{dtype:<11}{method:>11}  {'-':>13}  (no room to measure)")
                continue
            faster = "streaming" if speeds["streaming"] < speeds["ordinary"] else "ordinary"
            shown = f"{speeds['streaming']:.2f} / {speeds['ordinary']:.2f}"
            print(f"{dtype:<11}{method:>11}  {shown:>13}  {faster} faster")
    print(
        f"stored in {wisdom.path()}" if wisdom.path() else "not stored (config.cpu.wisdom is None)"
    )


#: The modules the ``bench`` extra of pyproject.toml installs, which ``scanlab bench`` needs.
BENCH_EXTRA_MODULES = ("tqdm", "tabulate")


def check_bench_extra() -> None:
    """Exit with status 2 and one line naming the extra to install when it is missing."""
    missing = [name for name in BENCH_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"scanlab bench needs the bench extra ({', '.join(missing)} not installed): "
            "pip install 'scanlab[bench]'",
            file=sys.stderr,
        )
        raise SystemExit(2)


def bench(arguments) -> None:
    check_bench_extra()
    from scanlab.bench import linear, tables

    show_progress = not arguments.no_progress
    if arguments.device == "cuda":
        try:
            cuda_module("linear")
        except RuntimeError as error:
            raise SystemExit(f"scanlab bench --device cuda: {error}") from None
    if arguments.matrix:
        bench_matrix(arguments.device, arguments.quick, show_progress)
        return
    if arguments.nonlinear:
        bench_nonlinear(arguments.device, arguments.quick, show_progress)
        return
    if arguments.spread:
        bench_spread(arguments.quick, show_progress)
        return
    if arguments.device == "cuda":
        rows = linear.gpu_table(quick=arguments.quick, show_progress=show_progress)
        print(tables.gpu_description())
        print(tables.format_table(rows, linear.GPU_COLUMNS))
        print(
            "Operands on the GPU, times from CUDA events: 'ms' of the kernels, 'API ms' of the "
            "public call on the same device arrays (read in place), 'API time-last ms' of the "
            "public call on (D, T) arrays with axis=1 (laid out on the GPU). GB/s counts a, b "
            "and h once each; 'of copy' is the fraction of a device-to-device copy's bandwidth "
            "(read + write) on the same array; '1-pass' columns are of the single-pass "
            "look-back scan (config.cuda.single_pass_scan), 'diff' its largest difference from the "
            "reduce-then-scan relative to the largest state; 'x' columns are speedups (the "
            f"launch loop is timed on the first {linear.LAUNCH_LOOP_STEPS} steps and scaled; "
            "'x jax scan' and 'x cupy cumsum' are NaN without JAX and CuPy)."
        )
        return
    rows = linear.cpu_table(quick=arguments.quick, show_progress=show_progress)
    print(tables.machine_description())
    print(tables.format_table(rows, linear.CPU_COLUMNS))
    print(
        "GB/s counts a, b and h once each; 'of multiply' is the fraction of numpy.multiply's "
        "bandwidth on the same arrays; 'x' columns are speedups (the NumPy loop is timed on "
        f"the first {linear.NUMPY_LOOP_STEPS} steps and scaled; lfilter on a constant "
        "coefficient, against scanlab on the same)."
    )
    if arguments.plot:
        top = 20 if arguments.quick else 24
        lengths = [2**k for k in range(10, top + 1, 2)]
        series = linear.throughput_sweep(lengths, show_progress=show_progress)
        linear.plot_sweep(lengths, series, arguments.plot)
        print(f"plot written to {arguments.plot}")


def bench_spread(quick: bool, show_progress: bool) -> None:
    from scanlab.bench import spread, tables

    rows = spread.spread_table(quick=quick, show_progress=show_progress)
    print(tables.machine_description())
    print(tables.format_table(rows, spread.SPREAD_COLUMNS))
    print("\n".join(spread.spread_summary(rows, [])))
    print("\n".join(spread.headline_ratios(quick)))
    print(
        "Each row: the public call with method='auto', 'sequential' and 'scan' taking turns; "
        "'best' is the faster of the two methods. benchmarks/linear_recurrence.py --spread "
        "also runs the grid next to a busy core."
    )


def bench_matrix(device: str, quick: bool, show_progress: bool) -> None:
    from scanlab.bench import matrix, tables

    if device == "cuda":
        rows = matrix.gpu_table(quick=quick, show_progress=show_progress)
        print(tables.gpu_description())
        print(tables.format_table(rows, matrix.GPU_COLUMNS))
        print(
            "One float32 system, a matrix per step, operands on the GPU, times from CUDA events. "
            "GB/s counts A, b and h once each; 'of copy' is the fraction of a device-to-device "
            "copy's bandwidth on A; 'x' columns are speedups ('x jax scan' is NaN without JAX)."
        )
        return
    rows = matrix.cpu_table(quick=quick, show_progress=show_progress)
    print(tables.machine_description())
    print(tables.format_table(rows, matrix.CPU_COLUMNS))
    print(
        "One system of n states, float64. GB/s counts A, b and h once each; GFLOP/s the "
        "2 n^2 operations of a step; 'x' columns are speedups (the NumPy loop is timed on the "
        f"first {matrix.NUMPY_LOOP_STEPS} steps and scaled); 'scan speedup' is the "
        f"scan's speed relative to the sequential method on the first "
        f"{matrix.SCAN_STEPS} steps."
    )


def bench_nonlinear(device: str, quick: bool, show_progress: bool) -> None:
    from scanlab.bench import nonlinear

    machine, table, notes = nonlinear.device_report(device, quick, show_progress)
    print(machine)
    print(table)
    print("\n".join(notes))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="scanlab", description="Recurrences solved in parallel over the sequence length."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, threads, GPU or CUDA simulator").set_defaults(
        run=info
    )
    commands.add_parser(
        "tune", help="measure again the kernels that method='auto' chooses between"
    ).set_defaults(run=tune)
    bench_parser = commands.add_parser(
        "bench",
        help="benchmark linear_recurrence against bandwidth and baselines (needs scanlab[bench])",
    )
    bench_parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    solver = bench_parser.add_mutually_exclusive_group()
    solver.add_argument(
        "--matrix", action="store_true", help="benchmark linear_recurrence_matrix instead"
    )
    solver.add_argument(
        "--nonlinear", action="store_true", help="benchmark nonlinear_recurrence instead"
    )
    solver.add_argument(
        "--spread",
        action="store_true",
        help="linear_recurrence over coefficient distributions, channels and layouts (CPU)",
    )
    bench_parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    bench_parser.add_argument(
        "--plot", metavar="FILE.png", help="also plot GB/s against length (CPU)"
    )
    bench_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench_parser.set_defaults(run=bench)
    arguments = parser.parse_args(argv)
    plot_sweep = arguments.command == "bench" and arguments.plot
    if plot_sweep and (
        arguments.device == "cuda" or arguments.matrix or arguments.nonlinear or arguments.spread
    ):
        parser.error(
            "--plot draws the sweep of linear_recurrence on the CPU, without --matrix or "
            "--nonlinear"
        )
    arguments.run(arguments)
