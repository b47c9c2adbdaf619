"""Molecular dynamics and relaxations with an MTP through ASE (and LAMMPS: :mod:`.lammps`).

Contract: these drivers take atoms and a calculator (or a potential, for LAMMPS) and return
results; they read no command lines (the ``md`` and ``relax`` commands are in
:mod:`mlipress.cli`) and get their neighbour lists from :mod:`mlipress.batch`.

- :class:`SkinMTPCalculator`: :class:`~mlipress.calculator.MTPCalculator` with a Verlet skin
  (0.5 A) by default, so the neighbour search runs only when an atom has moved more than
  ``skin / 2`` (or the cell changed); identical results to the plain calculator.
- :func:`run_md`: NVE / NVT / NPT with ASE integrators, an extxyz trajectory and a CSV log.
- :func:`relax`: positions (and cell) relaxation with ``FrechetCellFilter`` + FIRE or BFGS.
- :func:`block_average`: mean and standard error of a correlated time series.
"""

from mlipress.simulate.md import MDResult, MDSettings, MDUnstable, SkinMTPCalculator, run_md, stability_guard
from mlipress.simulate.relax import RelaxResult, RelaxSettings, relax
from mlipress.simulate.stats import BlockAverage, block_average

__all__ = [
    "BlockAverage",
    "MDResult",
    "MDSettings",
    "MDUnstable",
    "RelaxResult",
    "RelaxSettings",
    "SkinMTPCalculator",
    "block_average",
    "relax",
    "run_md",
    "stability_guard",
]
