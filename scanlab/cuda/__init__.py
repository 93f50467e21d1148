"""CUDA kernels of scanlab, one module per algorithm, twins of those in ``scanlab.cpu``."""
