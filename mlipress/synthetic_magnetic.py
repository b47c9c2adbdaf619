"""A SYNTHETIC magnetic reference model and dataset (no DFT): for tests, examples and benchmarks.

There is no public magnetic DFT set in the shared data, so magnetic fits are checked against a
made-up but smooth and physically shaped model: ASE's EMT (positions) plus a distance-dependent
Heisenberg (Ising) coupling of collinear moments and an on-site Landau term,

    E = E_EMT(x) + 1/2 sum_{i != j} J_{z_i z_j}(r_ij) s_i s_j + sum_i (a_{z_i} s_i^2 + b_{z_i} s_i^4),
    J_ab(r) = J0_ab exp(-(r - r0) / decay) fc(r),   fc(r) = (1 + cos(pi r / rc)) / 2 for r < rc.

:class:`HeisenbergLandauEMT` is an ASE calculator returning energy, forces, stress and
``magmom_forces`` (-dE/ds_i) from ``atoms.get_initial_magnetic_moments()``;
:func:`magnetic_dataset` labels random strained and rattled two-species fcc cells with random
collinear moments. Defaults (:data:`DEFAULT_PARAMETERS`): a "magnetic" species (Ni in EMT's
element table, but with Fe-like moments |s| ~ 2 mu_B from the Landau term a = -0.2, b = 0.025)
and a weakly polarisable one (Cu, a = 0.3); ferromagnetic couplings J0 < 0, so the relaxed
ferromagnetic state of a Ni-rich cell lies below the layered antiferromagnetic one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from mlipress.batch import pairs
from mlipress.data import Configuration, Dataset

__all__ = ["MagneticParameters", "DEFAULT_PARAMETERS", "HeisenbergLandauEMT", "magnetic_dataset", "SPECIES"]

#: The two species of the synthetic system, in type order.
SPECIES = ("Ni", "Cu")


@dataclass(frozen=True)
class MagneticParameters:
    """Coefficients of the synthetic model (module docstring); per species in ``SPECIES`` order.
    Energies in eV, moments in mu_B, lengths in Angstrom."""

    J0: tuple = ((-0.04, -0.01), (-0.01, 0.0))
    r0: float = 2.5
    decay: float = 0.8
    rc: float = 4.2
    a: tuple = (-0.2, 0.3)
    b: tuple = (0.025, 0.0)
    species: tuple = field(default=SPECIES)


DEFAULT_PARAMETERS = MagneticParameters()


def _coupling(r, J0, p: MagneticParameters):
    """J(r) and dJ/dr for pair distances ``r`` with prefactors ``J0``."""
    fc = np.where(r < p.rc, 0.5 * (1.0 + np.cos(np.pi * r / p.rc)), 0.0)
    dfc = np.where(r < p.rc, -0.5 * np.pi / p.rc * np.sin(np.pi * r / p.rc), 0.0)
    g = np.exp(-(r - p.r0) / p.decay)
    return J0 * g * fc, J0 * g * (dfc - fc / p.decay)


def magnetic_terms(config: Configuration, p: MagneticParameters = DEFAULT_PARAMETERS) -> dict:
    """The magnetic part of the energy: ``energy``, ``forces`` (n, 3), ``virial`` (3, 3) (MLIP's
    PlusStress, eV) and ``magmom_forces`` (n,) of a configuration with moments."""
    s, t = config.spins, config.types
    i, j, d = pairs(config, p.rc)
    r = np.linalg.norm(d, axis=1)
    J0 = np.asarray(p.J0)[t[i], t[j]]
    J, dJ = _coupling(r, J0, p)
    a, b = np.asarray(p.a)[t], np.asarray(p.b)[t]
    energy = 0.5 * np.sum(J * s[i] * s[j]) + np.sum(a * s**2 + b * s**4)
    D = (0.5 * dJ * s[i] * s[j] / np.where(r > 0, r, 1.0))[:, None] * d  # dE/dr_ij of each ordered pair
    n = config.natoms
    forces = np.zeros((n, 3))
    np.add.at(forces, i, D)
    np.add.at(forces, j, -D)
    dE_ds = np.bincount(i, weights=J * s[j], minlength=n) + 2.0 * a * s + 4.0 * b * s**3
    return {"energy": float(energy), "forces": forces, "virial": -D.T @ d, "magmom_forces": -dE_ds}


class HeisenbergLandauEMT(Calculator):
    """SYNTHETIC reference: EMT + Heisenberg coupling + Landau on-site term (module docstring).
    Moments from ``atoms.get_initial_magnetic_moments()``; results: energy, free_energy, forces,
    stress (ASE sign, periodic cells) and ``magmom_forces`` (-dE/ds_i, eV/mu_B)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress", "magmom_forces"]

    def __init__(self, parameters: MagneticParameters = DEFAULT_PARAMETERS, **kwargs):
        super().__init__(**kwargs)
        self.model = parameters
        self.emt = EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        base = atoms.copy()
        base.calc = self.emt
        types = np.array([self.model.species.index(x) for x in atoms.get_chemical_symbols()])
        periodic = bool(atoms.pbc.all())
        config = Configuration(atoms.positions, types, np.array(atoms.cell) if periodic else None,
                               magmoms=atoms.get_initial_magnetic_moments())
        mag = magnetic_terms(config, self.model)
        energy = base.get_potential_energy() + mag["energy"]
        self.results = {"energy": energy, "free_energy": energy, "forces": base.get_forces() + mag["forces"],
                        "magmom_forces": mag["magmom_forces"]}
        if periodic:
            sigma = -mag["virial"] / atoms.get_volume()
            self.results["stress"] = base.get_stress() + sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def random_cell(rng: np.random.Generator, repeat=(2, 2, 1), lattice: float = 3.56, strain: float = 0.03,
                rattle: float = 0.08, fraction_magnetic: float = 0.6, moment_range=(2.6, 0.5)):
    """A random fcc cell of both species (Atoms) with random collinear moments: uniform in
    [-m, m] with m = ``moment_range[type]``."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=lattice, cubic=True).repeat(repeat)
    n = len(atoms)
    types = (rng.random(n) >= fraction_magnetic).astype(int)
    atoms.set_chemical_symbols([SPECIES[t] for t in types])
    eps = rng.uniform(-strain, strain, (3, 3))
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
    atoms.positions += rng.normal(0.0, rattle, (n, 3))
    span = np.asarray(moment_range)[types]
    atoms.set_initial_magnetic_moments(rng.uniform(-1.0, 1.0, n) * span)
    return atoms


def magnetic_dataset(n_configs: int, seed: int = 0, parameters: MagneticParameters = DEFAULT_PARAMETERS,
                     **cell_options) -> Dataset:
    """``n_configs`` random cells (:func:`random_cell`) labelled by :class:`HeisenbergLandauEMT`:
    energy, forces, virial and magnetic forces; ``Dataset.species`` is :data:`SPECIES`."""
    from mlipress.io import from_atoms

    rng = np.random.default_rng(seed)
    calc = HeisenbergLandauEMT(parameters)
    configs = []
    for _ in range(n_configs):
        atoms = random_cell(rng, **cell_options)
        atoms.calc = calc
        configs.append(from_atoms(atoms, SPECIES))  # magmom_forces: the calculator's result
    return Dataset(tuple(configs), SPECIES)
