"""Device selection: which backend runs a solver, and the lazily loaded CUDA backend."""

import importlib

import numpy as np

DEVICES = ("auto", "cpu", "cuda")
#: Types whose values live on the host: :func:`on_gpu` answers them without a look inside.
HOST_TYPES = frozenset({np.ndarray, float, int, complex, bool, list, tuple})


def on_gpu(value) -> bool:
    """Whether ``value`` is a GPU array: it exposes ``__cuda_array_interface__`` (CuPy, PyTorch,
    Numba device arrays) or is a device array of Numba's CUDA simulator."""
    if value is None or type(value) in HOST_TYPES:  # the common cases, answered at once
        return False
    if type(value).__module__.partition(".")[0] == "pandas":
        return False  # host data, whose attribute lookup searches the labels (3 us a call)
    return hasattr(value, "__cuda_array_interface__") or bool(
        getattr(type(value), "__cuda_ndarray__", False)
    )


def resolve_device(device, **operands) -> str:
    """``"cpu"`` or ``"cuda"`` for ``device`` and the operands (name -> value or None).

    ``"auto"`` follows the data: ``"cuda"`` when an operand is a GPU array, else ``"cpu"``.
    GPU operands with ``device="cpu"`` raise a TypeError that says what to do instead.
    """
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(map(repr, DEVICES))}; got {device!r}")
    if not any(map(on_gpu, operands.values())):
        return "cpu" if device == "auto" else device
    gpu_operands = ", ".join(name for name, value in operands.items() if on_gpu(value))
    if device == "cpu":
        raise TypeError(
            f"{gpu_operands} live(s) on the GPU, but device='cpu': pass device='cuda' (or "
            "'auto') to compute there, or copy them to the host (NumPy) first"
        )
    return "cuda"


def to_host(value):
    """``value`` as a NumPy array, copied from the GPU where it is a GPU array."""
    return cuda_module("arrays").to_host(value) if on_gpu(value) else np.asarray(value)


def to_device(array: np.ndarray):
    """A host array copied into a new device array (Numba's)."""
    return cuda_module("arrays").on_device(array)


def gpu_leaf(params):
    """The first GPU array among ``params``' leaves (itself, or the values of its tuples and
    dicts, nested), or None."""
    if isinstance(params, (tuple, dict)):
        values = params.values() if isinstance(params, dict) else params
        return next((leaf for leaf in map(gpu_leaf, values) if leaf is not None), None)
    return params if on_gpu(params) else None


def host_leaves(params):
    """``params`` with its GPU arrays (alone or in tuples and dicts) copied to the host; itself
    where it holds none."""
    if gpu_leaf(params) is None:
        return params
    if isinstance(params, dict):
        return {name: host_leaves(value) for name, value in params.items()}
    if isinstance(params, tuple):
        return tuple(host_leaves(value) for value in params)
    return to_host(params)


def placed_like(gradients, params):
    """``gradients`` (``params``' structure, a dict for a dict) with each leaf whose parameter
    is a GPU array copied to the GPU: a gradient lies where its parameter lies."""
    if gpu_leaf(params) is None or gradients is None:
        return gradients
    if isinstance(params, dict):
        return {name: placed_like(value, params.get(name)) for name, value in gradients.items()}
    if isinstance(params, tuple):
        return tuple(
            placed_like(value, given) for value, given in zip(gradients, params, strict=True)
        )
    return to_device(np.asarray(gradients))


def cuda_module(name: str):
    """``scanlab.cuda.<name>``, imported on first use, after checking that a GPU is usable."""
    try:
        from numba import cuda
    except ImportError as error:
        raise RuntimeError(
            f"device='cuda' needs the numba-cuda package ({error}); pip install numba-cuda, "
            "or run on the CPU with device='cpu'"
        ) from None
    if not cuda.is_available():
        raise RuntimeError(
            "device='cuda' needs an NVIDIA GPU with a working driver and the numba-cuda package "
            "(pip install numba-cuda), and none is usable here; run on the CPU with device='cpu'"
        )
    return importlib.import_module(f"scanlab.cuda.{name}")
