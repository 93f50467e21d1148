"""Numba CPU kernels, one module per algorithm. The parallel kernels of the solvers are ``nogil``
workers that take their tasks from a counter, run together on a thread pool
(:mod:`scanlab.cpu.threads`); the front ends' filters and EWM keep Numba's ``prange``, whose
loop bodies Numba compiles with its arrays marked not to alias (measured 1.4-1.5x faster there
than the same loop in a worker).
"""
