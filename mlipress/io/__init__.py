"""File formats: MLIP ``.mtp``/``.cfg``, mlearn/maml JSON, and anything ASE reads.

The rest of the package only sees :class:`~mlipress.data.Dataset` and
:class:`~mlipress.models.mtp.model.MTP`; this layer is the single place that knows file layouts, unit
conventions (kbar, ASE stress sign) and the species <-> type-index map.

- :func:`read_dataset` / :func:`write_dataset` pick the format from the suffix.
- :func:`to_atoms` / :func:`from_atoms` convert single configurations to and from ASE.
- Malformed files raise :class:`FileFormatError` naming file, line and field.
"""

from __future__ import annotations

import io as _io
import os
from pathlib import Path

import numpy as np

from mlipress.data import Configuration, Dataset, matrix_to_voigt
from mlipress.io.atomic import atomic_open, atomic_write
from mlipress.io.errors import FileFormatError

__all__ = [
    "FileFormatError", "atomic_open", "atomic_write", "parse_species", "symbols_to_types",
    "read_dataset", "write_dataset", "to_atoms", "from_atoms",
    "magmoms_of", "MAGMOM_FORCES",
    "read_mtp", "write_mtp", "format_mtp", "read_ace", "write_ace", "read_potential", "read_cfg", "write_cfg", "format_cfg", "read_maml_json",
]  # fmt: skip


def parse_species(species) -> tuple[str, ...] | None:
    """Normalise a species map: ``("Nb", "Mo")``, ``["Nb", "Mo"]`` or ``"Nb,Mo"`` -> ``("Nb", "Mo")``.

    ``None`` (or an empty string) stays ``None``. Symbols must be distinct.
    """
    if species is None:
        return None
    if isinstance(species, str):
        species = [s for s in species.replace(" ", ",").split(",") if s]
        if not species:
            return None
    result = tuple(str(s).strip() for s in species)
    if any(not s for s in result):
        raise ValueError(f"empty element symbol in species {species!r}")
    if len(set(result)) != len(result):
        raise ValueError(f"species {result} lists an element twice")
    return result


def symbols_to_types(symbols, species) -> np.ndarray:
    """Type index of each element symbol under the species map ``species`` (symbols in type
    order); a clear error lists the elements the map lacks."""
    type_of = {s: t for t, s in enumerate(species)}
    missing = sorted(set(symbols) - set(type_of))
    if missing:
        raise ValueError(f"element(s) {missing} not in species map {list(species)}")
    return np.array([type_of[s] for s in symbols], dtype=np.int64)


# --------------------------------------------------------------------------- ASE bridge


def to_atoms(config: Configuration, species):
    """A :class:`ase.Atoms` for ``config``; labels travel as a SinglePointCalculator.

    ``species[t]`` is the element of type ``t``. Stress is ASE's ``sigma = -virial / V``
    (eV/A^3, Voigt xx yy zz yz xz xy); a non-periodic configuration gets ``pbc=False``,
    no cell and no stress. Collinear moments become the initial magnetic moments (extxyz
    ``initial_magmoms``), magnetic forces the per-atom array ``magmom_forces``.
    """
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    species = parse_species(species)
    if species is None:
        raise ValueError("to_atoms needs a species map (element symbols in type order)")
    if config.natoms and int(config.types.max()) >= len(species):
        raise ValueError(f"type {int(config.types.max())} has no element in species {species}")
    symbols = [species[t] for t in config.types.tolist()]
    if config.periodic:
        atoms = Atoms(symbols=symbols, positions=config.positions, cell=config.cell, pbc=True)
    else:
        atoms = Atoms(symbols=symbols, positions=config.positions, pbc=False)
    results = {}
    if config.energy is not None:
        results["energy"] = config.energy
    if config.forces is not None:
        results["forces"] = config.forces.copy()
    if config.virial is not None and config.periodic:
        results["stress"] = matrix_to_voigt(-config.virial / config.volume)
    if config.magmoms is not None:
        atoms.set_initial_magnetic_moments(config.magmoms)
    if config.magmom_forces is not None:
        atoms.arrays[MAGMOM_FORCES] = config.magmom_forces.copy()
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _result(atoms, getter):
    """A calculator property, or None when the calculator does not provide it."""
    from ase.calculators.calculator import PropertyNotImplementedError

    if atoms.calc is None:
        return None
    try:
        return getter()
    except (PropertyNotImplementedError, NotImplementedError, RuntimeError, KeyError, AttributeError):
        return None


#: The per-atom array (extxyz column) of magnetic forces -dE/ds_i, and the calculator result.
MAGMOM_FORCES = "magmom_forces"


def magmoms_of(atoms) -> np.ndarray | None:
    """Collinear moments of ``atoms``: its initial magnetic moments (extxyz ``initial_magmoms``),
    else its calculator's ``magmoms``, else None. Non-collinear (n, 3) moments are rejected."""
    moments = atoms.arrays.get("initial_magmoms")
    if moments is None:
        moments = _result(atoms, lambda: atoms.get_magnetic_moments())
    if moments is None:
        return None
    moments = np.asarray(moments, dtype=np.float64)
    if moments.ndim != 1:
        raise ValueError(f"magnetic moments of shape {moments.shape}: only collinear (one number per atom) are supported")
    return moments


def from_atoms(atoms, species) -> Configuration:
    """A :class:`Configuration` from an :class:`ase.Atoms` (labels from its calculator, if any).

    Fully periodic -> ``cell``; fully non-periodic -> ``cell=None``; mixed ``pbc`` is
    rejected (the package handles 3D-periodic or free systems only). ASE stress (sigma,
    eV/A^3) becomes the virial ``-V sigma``; moments come from :func:`magmoms_of`, magnetic
    forces from the array or calculator result ``magmom_forces``.
    """
    species = parse_species(species)
    if species is None:
        raise ValueError("from_atoms needs a species map (element symbols in type order)")
    types = symbols_to_types(atoms.get_chemical_symbols(), species)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all():
        cell = np.array(atoms.cell[:], dtype=np.float64)
    elif not pbc.any():
        cell = None
    else:
        raise ValueError(f"pbc={pbc.tolist()}: only fully periodic or fully free systems are supported")
    energy = _result(atoms, lambda: atoms.get_potential_energy())
    forces = _result(atoms, lambda: atoms.get_forces())
    virial = None
    if cell is not None:
        stress = _result(atoms, lambda: atoms.get_stress(voigt=False))
        if stress is not None:
            virial = -abs(float(np.linalg.det(cell))) * np.asarray(stress, dtype=np.float64).reshape(3, 3)
    return Configuration(
        positions=np.array(atoms.positions, dtype=np.float64),
        types=types,
        cell=cell,
        energy=energy,
        forces=None if forces is None else np.array(forces, dtype=np.float64),
        virial=virial,
        magmoms=magmoms_of(atoms),
        magmom_forces=atoms.arrays.get(MAGMOM_FORCES, _result(atoms, lambda: atoms.calc.results[MAGMOM_FORCES])),
    )


def _species_by_atomic_number(frames) -> tuple[str, ...]:
    from ase.data import atomic_numbers

    found = {s for atoms in frames for s in atoms.get_chemical_symbols()}
    return tuple(sorted(found, key=atomic_numbers.__getitem__))


# --------------------------------------------------------------------------- dispatch

_NAME_KEY = "config_type"  # the usual extxyz key for a configuration's group label


def read_dataset(path, species=None, fmt: str | None = None) -> Dataset:
    """Read a dataset, choosing the reader by suffix (or ``fmt``).

    ``.cfg`` -> :func:`read_cfg`; ``.json`` -> :func:`read_maml_json`; anything else goes
    through ``ase.io.read(path, index=":")`` (``fmt`` is then passed as ASE's ``format``).
    ``species`` (tuple or ``"Nb,Mo,Ta,W"``) fixes the type order; when absent, ``.cfg`` keeps
    bare types and other formats order the elements found by atomic number.
    """
    species = parse_species(species)
    kind = (fmt or Path(path).suffix.lstrip(".")).lower()
    if kind == "cfg":
        return read_cfg(path, species)
    if kind in ("json", "maml"):
        return read_maml_json(path, species)
    import ase.io

    frames = ase.io.read(os.fspath(path), index=":", format=fmt)
    if species is None:
        species = _species_by_atomic_number(frames)
    names = tuple(str(a.info.get(_NAME_KEY, "")) for a in frames)
    return Dataset(tuple(from_atoms(a, species) for a in frames), species, names if any(names) else ())


def write_dataset(dataset: Dataset, path, species=None) -> None:
    """Write a dataset by suffix: ``.cfg``, or ``.xyz``/``.extxyz`` (extended XYZ via ASE).

    extxyz needs element symbols: ``species`` overrides ``dataset.species``; with neither a
    ValueError is raised. Energies, forces and stress are written (stress as ASE's sigma);
    ``Dataset.names`` go to the ``config_type`` info key. Writes are atomic.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".cfg":
        write_cfg(dataset, path)
        return
    if suffix not in (".xyz", ".extxyz"):
        raise ValueError(f"cannot write {os.fspath(path)!r}: supported suffixes are .cfg, .xyz and .extxyz")
    species = parse_species(species) or dataset.species
    if species is None:
        raise ValueError(
            f"writing {os.fspath(path)!r} needs element symbols: the dataset has no species map, "
            "pass species=('Nb', 'Mo', ...) or 'Nb,Mo,...'"
        )
    import ase.io

    frames = []
    for k, config in enumerate(dataset.configurations):
        atoms = to_atoms(config, species)
        if dataset.names and dataset.names[k]:
            atoms.info[_NAME_KEY] = dataset.names[k]
        frames.append(atoms)
    buffer = _io.StringIO()
    ase.io.write(buffer, frames, format="extxyz")
    atomic_write(path, buffer.getvalue())


from mlipress.io.cfg import format_cfg, read_cfg, write_cfg  # noqa: E402
from mlipress.io.maml import read_maml_json  # noqa: E402
from mlipress.io.mtp import format_mtp, read_mtp, write_mtp  # noqa: E402
from mlipress.io.ace import read_ace, write_ace  # noqa: E402


def read_potential(path):
    """A potential file of any family, by content: pacemaker's B-basis ``.yaml`` (a
    ``speciesblock`` list) -> :class:`~mlipress.models.ace.ACE`, anything else -> MLIP's ``.mtp``."""
    from mlipress.io.ace import is_ace_yaml

    return read_ace(path) if is_ace_yaml(path) else read_mtp(path)
