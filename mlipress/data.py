"""The in-memory dataset: atomic configurations with optional DFT labels.

Everything downstream (batches, evaluator, losses, training, error reports) consumes these
two types; functions that accept "a Dataset or a sequence of configurations" normalise it with
:func:`as_dataset`. Readers in :mod:`mlipress.io` produce them; nothing here reads files or
imports another mlipress module (this room is the bottom of the dependency order).

Conventions (the same as MLIP's, so that ``.cfg`` files round-trip without conversion):

- ``types`` are 0-based type indices. ``Dataset.species`` maps them to element symbols
  (``species[t]`` is the element of type ``t``); it is ``None`` when the source only had
  type indices (``.cfg``) and nobody supplied a mapping.
- ``cell`` rows are the lattice vectors in Angstrom; ``None`` means a non-periodic
  configuration (a molecule or cluster).
- ``virial`` is MLIP's ``PlusStress`` as a full 3x3 matrix in eV:
  ``virial = -sum_ij dV_i/dr_ij (outer) r_ij = -volume * sigma_ASE``. Positive diagonal
  entries mean the configuration is compressed (it pushes outward).
- ``magmoms`` are collinear atomic magnetic moments s_i (Bohr magnetons, signed; an input of
  magnetic models, ignored by the others; ``None`` reads as zeros) and ``magmom_forces`` the
  magnetic forces ``-dE/ds_i`` (eV/mu_B; the sign of forces: MLIP-3's ``en_der_m`` columns are
  ``+dE/ds_i``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# Voigt order of MLIP's PlusStress line and of ASE's stress vector, as (row, col) pairs.
VOIGT_MLIP = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))  # xx yy zz yz xz xy


def voigt_to_matrix(values) -> np.ndarray:
    """(6,) in the order xx yy zz yz xz xy -> symmetric (3, 3)."""
    values = np.asarray(values, dtype=np.float64)
    m = np.zeros((3, 3))
    for v, (a, b) in zip(values, VOIGT_MLIP):
        m[a, b] = m[b, a] = v
    return m


def matrix_to_voigt(m) -> np.ndarray:
    """(3, 3) -> (6,) in the order xx yy zz yz xz xy (symmetric part)."""
    m = np.asarray(m, dtype=np.float64)
    return np.array([0.5 * (m[a, b] + m[b, a]) for a, b in VOIGT_MLIP])


@dataclass(frozen=True, eq=False)
class Configuration:
    """One atomic configuration, optionally labelled with energy, forces and virial.

    Shapes: ``positions`` (n, 3) Angstrom, ``types`` (n,) int, ``cell`` (3, 3) or None,
    ``forces`` (n, 3) eV/A, ``virial`` (3, 3) eV (MLIP PlusStress, see module docstring),
    ``magmoms`` (n,) mu_B and ``magmom_forces`` (n,) eV/mu_B or None.
    ``features`` keeps MLIP ``Feature name value`` lines verbatim, in order.
    """

    positions: np.ndarray
    types: np.ndarray
    cell: np.ndarray | None = None
    energy: float | None = None
    forces: np.ndarray | None = None
    virial: np.ndarray | None = None
    features: tuple[tuple[str, str], ...] = ()
    magmoms: np.ndarray | None = None
    magmom_forces: np.ndarray | None = None

    def __post_init__(self):
        pos = np.ascontiguousarray(self.positions, dtype=np.float64).reshape(-1, 3)
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "types", np.ascontiguousarray(self.types, dtype=np.int64).reshape(-1))
        if self.types.shape[0] != pos.shape[0]:
            raise ValueError(f"{self.types.shape[0]} types for {pos.shape[0]} atoms")
        if self.cell is not None:
            object.__setattr__(self, "cell", np.asarray(self.cell, dtype=np.float64).reshape(3, 3))
        if self.energy is not None:
            object.__setattr__(self, "energy", float(self.energy))
        if self.forces is not None:
            object.__setattr__(self, "forces", np.asarray(self.forces, dtype=np.float64).reshape(-1, 3))
        if self.virial is not None:
            v = np.asarray(self.virial, dtype=np.float64)
            object.__setattr__(self, "virial", voigt_to_matrix(v) if v.shape == (6,) else v.reshape(3, 3))
        for name in ("magmoms", "magmom_forces"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64)
                if value.shape != (pos.shape[0],):
                    raise ValueError(f"{name} has shape {value.shape}, expected ({pos.shape[0]},) (collinear moments)")
                object.__setattr__(self, name, value)

    @property
    def natoms(self) -> int:
        return self.positions.shape[0]

    @property
    def periodic(self) -> bool:
        return self.cell is not None

    @property
    def volume(self) -> float | None:
        return None if self.cell is None else abs(float(np.linalg.det(self.cell)))

    @property
    def spins(self) -> np.ndarray:
        """``magmoms``, zeros when absent."""
        return np.zeros(self.natoms) if self.magmoms is None else self.magmoms

    def with_labels(self, energy=None, forces=None, virial=None, magmom_forces=None) -> "Configuration":
        """A copy carrying new labels (e.g. a potential's predictions); the moments are kept."""
        return replace(self, energy=energy, forces=forces, virial=virial, magmom_forces=magmom_forces)


@dataclass(frozen=True, eq=False)
class Dataset:
    """An ordered collection of configurations sharing one species map."""

    configurations: tuple[Configuration, ...]
    species: tuple[str, ...] | None = None
    names: tuple[str, ...] = field(default=())  # optional per-configuration labels (e.g. group)

    def __post_init__(self):
        object.__setattr__(self, "configurations", tuple(self.configurations))
        if self.species is not None:
            object.__setattr__(self, "species", tuple(self.species))
        if self.names and len(self.names) != len(self.configurations):
            raise ValueError("names must have one entry per configuration")

    def __len__(self) -> int:
        return len(self.configurations)

    def __iter__(self):
        return iter(self.configurations)

    def __getitem__(self, index):
        if isinstance(index, slice) or not np.isscalar(index):
            idx = range(len(self))[index] if isinstance(index, slice) else list(index)
            return Dataset(
                tuple(self.configurations[i] for i in idx),
                self.species,
                tuple(self.names[i] for i in idx) if self.names else (),
            )
        return self.configurations[index]

    @property
    def natoms(self) -> int:
        return sum(c.natoms for c in self.configurations)

    @property
    def max_type(self) -> int:
        return max((int(c.types.max()) for c in self.configurations if c.natoms), default=-1)

    def __add__(self, other: "Dataset") -> "Dataset":
        if self.species and other.species and self.species != other.species:
            raise ValueError(f"species maps differ: {self.species} vs {other.species}")
        names = (self.names or ("",) * len(self)) + (other.names or ("",) * len(other))
        return Dataset(
            self.configurations + other.configurations,
            self.species or other.species,
            names if any(names) else (),
        )


def as_dataset(data) -> Dataset:
    """``data`` itself when it is a :class:`Dataset`, else a :class:`Dataset` (no species map) of
    its configurations: what every function taking "a Dataset or configurations" calls."""
    return data if isinstance(data, Dataset) else Dataset(tuple(data), None)
