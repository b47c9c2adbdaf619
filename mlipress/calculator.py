"""ASE calculator for MTPs: ``MTPCalculator(path_or_potential, species=None, skin=0.0)``.

Follows ASE's contract exactly (energy and free_energy in eV, per-atom ``energies``, forces
in eV/A, stress in eV/A^3 with ASE's sign, Voigt xx yy zz yz xz xy), so every ASE optimiser,
cell filter and integrator works unchanged. ``.mtp`` files store type indices only; ``species``
gives the element of each type (``["Nb", "Mo", "Ta", "W"]``).

Neighbours come from a :class:`~mlipress.batch.SkinNeighborList` (one search per call with the
default ``skin=0``; with ``skin > 0`` a Verlet-skin list reused between MD steps, to rounding
the same results). Its padded shapes are kept between calls and only grow, so a molecular
dynamics run compiles once or twice instead of every time the neighbour count changes.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from mlipress.batch import SkinNeighborList
from mlipress.data import Configuration
from mlipress.models.base import jitted_efs
from mlipress.io import parse_species, symbols_to_types
from mlipress.models.mtp.model import MTP


def types_of(atoms, species: tuple[str, ...] | None, species_count: int) -> np.ndarray:
    """Type index of every atom from its chemical symbol."""
    symbols = atoms.get_chemical_symbols()
    if species is None:
        if species_count == 1:
            return np.zeros(len(symbols), np.int64)
        raise ValueError(
            f"the potential has {species_count} species: pass species=[...] (element of each type, in type order)"
        )
    return symbols_to_types(symbols, species)


def load_potential(potential, params=None) -> tuple[MTP, object]:
    """``(mtp, params)`` from an ``.mtp`` path or an :class:`MTP`; ``params`` (e.g. a factored
    radial part, see :mod:`mlipress.models.layers`) overrides the potential's own coefficients."""
    from mlipress.io import read_potential

    mtp = read_potential(potential) if isinstance(potential, (str, Path)) else potential
    return mtp, mtp.params() if params is None else params


class MTPCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, potential, species=None, params=None, skin: float = 0.0, **kwargs):
        """``potential``: path to an ``.mtp`` file or an :class:`MTP`; ``params`` optionally
        overrides its coefficients (e.g. a factored radial part, see :mod:`mlipress.models.layers`);
        ``skin`` (A): Verlet skin of the neighbour list (0: a fresh search every call)."""
        super().__init__(**kwargs)
        self.mtp, self.params = load_potential(potential, params)
        # a family whose file names its elements (ACE's .yaml) needs no species map
        self.species = parse_species(species) if species is not None else getattr(self.mtp, "elements", None)
        if self.species is not None and len(self.species) != self.mtp.n_species:
            raise ValueError(f"species {self.species} has {len(self.species)} entries, the potential {self.mtp.n_species}")
        self.efs = jitted_efs(self.mtp)
        self.neighbors = SkinNeighborList(self.mtp.cutoff, skin)

    @property
    def skin(self) -> float:
        return self.neighbors.skin

    @property
    def rebuilds(self) -> int:
        """Neighbour searches so far."""
        return self.neighbors.rebuilds

    @property
    def calls(self) -> int:
        """Evaluations so far."""
        return self.neighbors.calls

    def configuration(self, atoms) -> Configuration:
        """``atoms`` as a :class:`Configuration` of the potential's types (cell only if periodic)."""
        pbc = atoms.pbc
        if pbc.any() and not pbc.all():
            raise ValueError("mixed periodic boundary conditions are not supported; use all-periodic or none")
        return Configuration(
            atoms.positions,
            types_of(atoms, self.species, self.mtp.n_species),
            np.array(atoms.cell) if pbc.all() else None,
        )

    def evaluate(self, config: Configuration) -> dict:
        """Host arrays of the evaluator (``energy`` (1,), ``energies``, ``forces``, ``virial``
        (1, 3, 3); padded rows included) for ``config``, through the neighbour list."""
        return jax.device_get(self.efs(self.params, self.neighbors.batch(config)))

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        res = self.evaluate(self.configuration(atoms))
        n = len(atoms)
        energy = float(res["energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": np.asarray(res["energies"][:n]),
            "forces": np.asarray(res["forces"][:n]),
        }
        if atoms.pbc.all():
            sigma = -np.asarray(res["virial"][0]) / atoms.get_volume()
            self.results["stress"] = sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        elif "stress" in properties:
            raise PropertyNotImplementedError("stress is undefined for a non-periodic system")
