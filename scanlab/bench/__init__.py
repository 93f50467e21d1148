"""Benchmarks of scanlab's solvers, behind ``scanlab bench`` and the scripts in ``benchmarks/``.

Needs the ``bench`` extra (``pip install 'scanlab[bench]'``: tqdm's progress bars, tabulate's
tables). One module per thing measured: :mod:`~scanlab.bench.linear` (``linear_recurrence``),
:mod:`~scanlab.bench.matrix` (``linear_recurrence_matrix``), :mod:`~scanlab.bench.spread` (the
spread of ``linear_recurrence``'s speed over inputs and layouts), :mod:`~scanlab.bench.nonlinear`
(``nonlinear_recurrence`` with the built-in cells) and :mod:`~scanlab.bench.tanh_cell` (the
diagonal tanh cell against JAX), :mod:`~scanlab.bench.jax_comparison` (five cells
against JAX's ``lax.scan``, float32 and float64, batches of 1 and 16); under them
:mod:`~scanlab.bench.timing` (how a call is timed) and :mod:`~scanlab.bench.tables` (tables, the
machine, ``benchmarks/RESULTS.md``).
"""
