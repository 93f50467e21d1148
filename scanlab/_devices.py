"""Device selection: which backend runs a solver, and the lazily loaded CUDA backend."""

import importlib

DEVICES = ("auto", "cpu", "cuda")


def on_gpu(value) -> bool:
    """Whether ``value`` is a GPU array (exposes ``__cuda_array_interface__``)."""
    return hasattr(value, "__cuda_array_interface__")


def resolve_device(device, **operands) -> str:
    """``"cpu"`` or ``"cuda"`` for ``device`` and the operands (name -> value or None).

    ``"auto"`` is the CPU: every operand is a host array, since GPU arrays (objects with
    ``__cuda_array_interface__``) are refused with a TypeError until their zero-copy path exists.
    """
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(map(repr, DEVICES))}; got {device!r}")
    gpu_operands = [name for name, value in operands.items() if on_gpu(value)]
    if gpu_operands:
        raise TypeError(
            f"{', '.join(gpu_operands)} live(s) on the GPU, and scanlab does not accept GPU "
            "arrays yet: copy them to the host (NumPy); device='cuda' then runs on the GPU"
        )
    return "cpu" if device == "auto" else device


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
