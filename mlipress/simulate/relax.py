"""Relaxation of positions (and cell) with ASE: ``FrechetCellFilter`` + FIRE or BFGS.

Convergence is judged here, not by the optimiser's own ``fmax`` test (which mixes atomic forces
with volume-scaled cell forces): the largest atomic force must be <= ``fmax`` (eV/A) and, when
the cell relaxes, the largest stress component, after subtracting the target hydrostatic
pressure, must be <= ``smax`` (GPa).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ase import units


@dataclass(frozen=True)
class RelaxSettings:
    """``fmax`` eV/A; ``smax`` and ``pressure`` GPa; ``optimizer`` "fire" or "bfgs"."""

    fmax: float = 0.01
    smax: float = 0.01
    max_steps: int = 1000
    cell: bool = True
    pressure: float = 0.0
    optimizer: str = "fire"

    def __post_init__(self):
        if self.fmax <= 0 or self.smax <= 0 or self.max_steps < 0:
            raise ValueError("fmax and smax must be > 0, max_steps >= 0")
        if self.optimizer.lower() not in ("fire", "bfgs"):
            raise ValueError(f"optimizer must be fire or bfgs, got {self.optimizer!r}")


@dataclass(frozen=True)
class RelaxResult:
    """Outcome of :func:`relax`: energy in eV, residual force eV/A and stress GPa."""

    converged: bool
    steps: int
    energy: float
    fmax: float
    smax: float

    def summary(self) -> str:
        state = "converged" if self.converged else "NOT converged"
        smax = "" if math.isnan(self.smax) else f", max |stress| {self.smax:.4g} GPa"
        return f"{state} after {self.steps} steps: E = {self.energy:.6f} eV, max |F| {self.fmax:.4g} eV/A{smax}"


def residuals(atoms, cell: bool, pressure: float = 0.0) -> tuple[float, float]:
    """(max atomic force eV/A, max |stress + pressure| component GPa or NaN without cell)."""
    forces = atoms.get_forces()
    fmax = float(np.sqrt((forces**2).sum(axis=1)).max()) if len(forces) else 0.0
    if not cell:
        return fmax, math.nan
    stress = atoms.get_stress(voigt=True) / units.GPa
    stress[:3] += pressure  # ASE stress is -pressure for a compressed cell
    return fmax, float(np.abs(stress).max())


def relax(
    atoms,
    calc=None,
    fmax: float = 0.01,
    smax: float = 0.01,
    max_steps: int = 1000,
    cell: bool = True,
    pressure: float = 0.0,
    optimizer: str = "fire",
    trajectory=None,
    logfile=None,
    settings: RelaxSettings | None = None,
) -> RelaxResult:
    """Relax ``atoms`` in place (positions, and the cell when ``cell``) under ``calc``.

    Stops when max |F| <= ``fmax`` eV/A and (with ``cell``) max |sigma + p| <= ``smax`` GPa,
    or after ``max_steps`` optimiser steps. ``trajectory``: optional ASE ``.traj`` path;
    ``logfile``: the optimiser's log (None: silent, "-": stdout).
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE

    s = settings or RelaxSettings(fmax=fmax, smax=smax, max_steps=max_steps, cell=cell, pressure=pressure, optimizer=optimizer)
    if calc is not None:
        atoms.calc = calc
    if s.cell and not atoms.pbc.all():
        raise ValueError("cell relaxation needs a fully periodic cell; use cell=False")
    target = FrechetCellFilter(atoms, scalar_pressure=s.pressure * units.GPa) if s.cell else atoms
    opt_cls = FIRE if s.optimizer.lower() == "fire" else BFGS
    opt = opt_cls(target, logfile=logfile, trajectory=trajectory)

    def done() -> bool:
        f, st = residuals(atoms, s.cell, s.pressure)
        return f <= s.fmax and (not s.cell or st <= s.smax)

    converged = done()
    steps = 0
    if not converged:
        # fmax=0 keeps the optimiser running; the tolerance test is ours.
        for _ in opt.irun(fmax=0.0, steps=s.max_steps):
            steps = opt.nsteps
            if done():
                converged = True
                break
    f, st = residuals(atoms, s.cell, s.pressure)
    return RelaxResult(converged=converged, steps=steps, energy=float(atoms.get_potential_energy()), fmax=f, smax=st)
