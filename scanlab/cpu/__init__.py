"""Numba CPU kernels, one module per algorithm; the parallel ones are ``nogil`` workers that
take their tasks from a counter, run together on a thread pool (:mod:`scanlab.cpu.threads`)."""
