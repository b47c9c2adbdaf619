"""Relaxation of collinear magnetic moments, at fixed positions or jointly with them.

Any ASE calculator that reads ``atoms.get_initial_magnetic_moments()`` and returns
``magmom_forces`` (-dE/ds_i, eV/mu_B) works: a magnetic MTP (:class:`mlipress.MTPCalculator`)
or the synthetic reference (:mod:`mlipress.synthetic_magnetic`). The energy is minimised by
SciPy's L-BFGS-B over the moments (and the Cartesian positions with ``positions=True``); the
moments are written back as the initial magnetic moments. Converged when every magnetic force
is <= ``mmax`` (and every atomic force <= ``fmax``) at a moment strictly inside the bounds.

``max_moment`` bounds |s_i|: a magnetic MTP's Chebyshev moment basis is polynomial, so outside
its interval the energy of a poorly fitted model can fall without limit and an unbounded
relaxation runs away; pass the basis' ``max_val`` there (a moment stuck at the bound is
reported as not converged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

__all__ = ["SpinRelaxResult", "relax_magmoms"]


@dataclass(frozen=True)
class SpinRelaxResult:
    """Outcome of :func:`relax_magmoms`: energy eV, largest |magnetic force| eV/mu_B and |force| eV/A."""

    converged: bool
    evaluations: int
    energy: float
    mmax: float
    fmax: float

    def summary(self) -> str:
        state = "converged" if self.converged else "NOT converged"
        return (f"{state} after {self.evaluations} evaluations: E = {self.energy:.6f} eV, "
                f"max |dE/ds| {self.mmax:.3g} eV/mu_B, max |F| {self.fmax:.3g} eV/A")


def relax_magmoms(atoms, positions: bool = False, mmax: float = 1e-4, fmax: float = 1e-3,
                  max_evaluations: int = 2000, max_moment: float | None = None) -> SpinRelaxResult:
    """Minimise the energy of ``atoms`` (with a calculator) over its collinear moments, and its
    positions too with ``positions=True``; ``atoms`` is updated in place (module docstring)."""
    n = len(atoms)
    x0 = np.asarray(atoms.get_initial_magnetic_moments(), dtype=np.float64)
    if x0.ndim != 1:
        raise ValueError("relax_magmoms needs collinear moments (one number per atom)")
    if positions:
        x0 = np.concatenate([x0, atoms.positions.reshape(-1)])
    count = [0]

    def set_state(x):
        atoms.set_initial_magnetic_moments(x[:n])
        if positions:
            atoms.positions = x[n:].reshape(n, 3)

    def value_and_grad(x):
        count[0] += 1
        set_state(x)
        energy = atoms.get_potential_energy()
        grad = -np.asarray(atoms.calc.get_property("magmom_forces", atoms))
        if positions:
            grad = np.concatenate([grad, -atoms.get_forces().reshape(-1)])
        return energy, grad

    # L-BFGS-B's own tests are on the projected gradient's max norm: the same as ours
    bounds = None
    if max_moment is not None:
        x0[:n] = np.clip(x0[:n], -max_moment, max_moment)
        bounds = [(-max_moment, max_moment)] * n + [(None, None)] * (len(x0) - n)
    res = minimize(value_and_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options=dict(maxfun=max_evaluations, maxiter=max_evaluations, gtol=min(mmax, fmax) * 1e-2,
                                ftol=1e-15, maxcor=30))
    set_state(res.x)
    energy, grad = value_and_grad(res.x)
    m = float(np.abs(grad[:n]).max()) if n else 0.0
    f = float(np.sqrt((grad[n:].reshape(-1, 3) ** 2).sum(axis=1)).max()) if positions and n else 0.0
    inside = max_moment is None or bool(np.all(np.abs(res.x[:n]) < max_moment))
    return SpinRelaxResult(m <= mmax and f <= fmax and inside, count[0], float(energy), m, f)
