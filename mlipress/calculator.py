"""ASE calculator for MTPs: ``MTPCalculator(path_or_potential, species=None, skin=0.0)``.

Follows ASE's contract exactly (energy and free_energy in eV, per-atom ``energies``, forces
in eV/A, stress in eV/A^3 with ASE's sign, Voigt xx yy zz yz xz xy), so every ASE optimiser,
cell filter and integrator works unchanged. A magnetic MTP takes the collinear moments from
``atoms.get_initial_magnetic_moments()`` and adds ``magmom_forces`` (-dE/ds_i, eV/mu_B). ``.mtp`` files store type indices only; ``species``
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
from mlipress.io import magmoms_of, parse_species, symbols_to_types
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
    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "magmom_forces"]

    def __init__(self, potential, species=None, params=None, skin: float = 0.0, grade: bool = False,
                 train=None, active_set=None, grade_settings=None, **kwargs):
        """``potential``: path to an ``.mtp`` file or an :class:`MTP`; ``params`` optionally
        overrides its coefficients (e.g. a factored radial part, see :mod:`mlipress.models.layers`);
        ``skin`` (A): Verlet skin of the neighbour list (0: a fresh search every call).

        ``grade=True`` adds the MaxVol extrapolation grade to every result: ``results["grade"]``
        (the configuration's; in ``nbh`` mode the maximum over atoms) and, in ``nbh`` mode,
        ``results["grades"]`` per atom. The active set is ``active_set``, else built from the
        configurations ``train`` (and kept next to a potential path); ``grade_settings`` a
        :class:`mlipress.active.GradeSettings` (default: MLIP-2's configuration-wise grade).
        See :mod:`mlipress.active.otf`."""
        super().__init__(**kwargs)
        self.mtp, self.params = load_potential(potential, params)
        # a family whose file names its elements (ACE's .yaml) needs no species map
        self.species = parse_species(species) if species is not None else getattr(self.mtp, "elements", None)
        if self.species is not None and len(self.species) != self.mtp.n_species:
            raise ValueError(f"species {self.species} has {len(self.species)} entries, the potential {self.mtp.n_species}")
        self.efs = jitted_efs(self.mtp)
        self.neighbors = SkinNeighborList(self.mtp.cutoff, skin)
        self.grader = None
        if grade:
            from mlipress.active.otf import Grader

            self.grader = Grader.for_potential(potential, self.mtp, self.params, active_set, train, grade_settings)

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
            magmoms=magmoms_of(atoms),
        )

    def evaluate(self, config: Configuration) -> dict:
        """Host arrays of the evaluator (``energy`` (1,), ``energies``, ``forces``, ``virial``
        (1, 3, 3); padded rows included) for ``config``, through the neighbour list; with
        grading on, also ``grades`` ((1,) or per atom)."""
        batch = self.neighbors.batch(config)
        res = dict(jax.device_get(self.efs(self.params, batch)))
        if self.grader is not None:
            res["grades"] = self.grader(batch, config.natoms)
        return res

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
        if "magmom_forces" in res:
            self.results["magmom_forces"] = np.asarray(res["magmom_forces"][:n])
        if self.grader is not None:
            self.results["grade"] = float(res["grades"].max())
            if self.grader.settings.mode == "nbh":
                self.results["grades"] = res["grades"]
        if atoms.pbc.all():
            sigma = -np.asarray(res["virial"][0]) / atoms.get_volume()
            self.results["stress"] = sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        elif "stress" in properties:
            raise PropertyNotImplementedError("stress is undefined for a non-periodic system")
