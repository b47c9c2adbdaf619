"""ASE calculator for MTPs: ``MTPCalculator(path_or_potential, species=None)``.

Follows ASE's contract exactly (energy and free_energy in eV, per-atom ``energies``, forces
in eV/A, stress in eV/A^3 with ASE's sign, Voigt xx yy zz yz xz xy), so every ASE optimiser,
cell filter and integrator works unchanged. ``.mtp`` files store type indices only; ``species``
gives the element of each type (``["Nb", "Mo", "Ta", "W"]``).

The padded array shapes are kept between calls and only grow, so a molecular dynamics run
compiles once or twice instead of every time the neighbour count changes.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from mlipress.data import Configuration
from mlipress.io import symbols_to_types
from mlipress.evaluator import jitted_efs, params_from_mtp
from mlipress.model import MTP
from mlipress.neighbors import _bucket, build_batch


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


class MTPCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, potential, species=None, params=None, **kwargs):
        """``potential``: path to an ``.mtp`` file or an :class:`MTP`; ``params`` optionally
        overrides its coefficients (e.g. a factored radial part, see :mod:`mlipress.radial`)."""
        super().__init__(**kwargs)
        from mlipress.io import parse_species
        from mlipress.io.mtp import read_mtp

        self.mtp: MTP = read_mtp(potential) if isinstance(potential, (str, Path)) else potential
        self.species = parse_species(species)
        if self.species is not None and len(self.species) != self.mtp.n_species:
            raise ValueError(f"species {self.species} has {len(self.species)} entries, the potential {self.mtp.n_species}")
        self.params = params_from_mtp(self.mtp) if params is None else params
        self._efs = jitted_efs(self.mtp)
        self._pad = (0, 0)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        pbc = atoms.pbc
        if pbc.any() and not pbc.all():
            raise ValueError("mixed periodic boundary conditions are not supported; use all-periodic or none")
        config = Configuration(
            atoms.positions,
            types_of(atoms, self.species, self.mtp.n_species),
            np.array(atoms.cell) if pbc.all() else None,
        )
        batch = self._batch(config)
        res = jax.device_get(self._efs(self.params, batch))
        n = len(atoms)
        energy = float(res["energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": np.asarray(res["energies"][:n]),
            "forces": np.asarray(res["forces"][:n]),
        }
        if pbc.all():
            sigma = -np.asarray(res["virial"][0]) / atoms.get_volume()
            self.results["stress"] = sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        elif "stress" in properties:
            raise PropertyNotImplementedError("stress is undefined for a non-periodic system")

    def _batch(self, config: Configuration):
        batch = build_batch([config], self.mtp.cutoff)
        A, K = batch.vectors.shape[:2]
        if A > self._pad[0] or K > self._pad[1]:
            # Grow with headroom so fluctuating neighbour counts reuse the compiled shape.
            self._pad = (max(A, self._pad[0]), max(_bucket(K + 4, 8, growth=1.0, multiple=4), self._pad[1]))
        return build_batch([config], self.mtp.cutoff, pad_atoms=self._pad[0], pad_neighbors=self._pad[1])
