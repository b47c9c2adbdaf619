"""Read the mlearn / maml JSON datasets (Zuo et al. 2020; Li et al. 2020 NbMoTaW).

These are the public DFT sets the project benchmarks on. Each file is a list of records:
``structure`` (a pymatgen Structure dict: ``lattice.matrix`` rows in A, ``sites[].xyz``
Cartesian A, ``sites[].species[0].element``), ``outputs.energy`` (eV, total),
``outputs.forces`` (eV/A) and the stress as ``outputs.stress`` or ``outputs.virial_stress``
(kbar, VASP sign = -sigma, order xx yy zz xy yz zx).

The stress is converted to the package's virial (MLIP PlusStress, eV, = -V sigma):
``value * V / 1602.1766208`` (1 eV/A^3 = 1602.1766208 kbar), reordered to xx yy zz yz xz xy.
"""

from __future__ import annotations

import json
import os

import numpy as np

from mlipress.data import Configuration, Dataset, voigt_to_matrix
from mlipress.io.errors import FileFormatError

__all__ = ["read_maml_json", "KBAR_PER_EV_A3", "stress_kbar_to_virial"]

KBAR_PER_EV_A3 = 1602.1766208
_VASP_TO_MLIP = (0, 1, 2, 4, 5, 3)  # xx yy zz xy yz zx -> xx yy zz yz xz(=zx) xy


def stress_kbar_to_virial(stress_kbar, volume: float) -> np.ndarray:
    """VASP-convention stress (kbar, -sigma, xx yy zz xy yz zx) -> 3x3 virial in eV (-V sigma)."""
    s = np.asarray(stress_kbar, dtype=np.float64).reshape(6)
    return voigt_to_matrix(s[list(_VASP_TO_MLIP)] * volume / KBAR_PER_EV_A3)


def _get(record, keys: str, path, index: int):
    value = record
    for key in keys.split("."):
        if not isinstance(value, dict) or key not in value:
            raise FileFormatError(path, f"record {index} has no {keys!r}", field=keys)
        value = value[key]
    return value


def _record_elements(record, path, index: int) -> list[str]:
    sites = _get(record, "structure.sites", path, index)
    try:
        return [site["species"][0]["element"] for site in sites]
    except (KeyError, IndexError, TypeError):
        raise FileFormatError(path, f"record {index}: a site lacks species[0].element", field="sites") from None


def _configuration(record, types, path, index: int) -> Configuration:
    try:
        cell = np.array(_get(record, "structure.lattice.matrix", path, index), dtype=np.float64).reshape(3, 3)
        sites = _get(record, "structure.sites", path, index)
        positions = np.array([site["xyz"] for site in sites], dtype=np.float64).reshape(-1, 3)
        outputs = record.get("outputs") or {}
        energy = outputs.get("energy")
        forces = outputs.get("forces")
        forces = None if forces is None or len(forces) == 0 else np.array(forces, dtype=np.float64).reshape(-1, 3)
        stress = outputs.get("stress", outputs.get("virial_stress"))
        virial = None
        if stress is not None and len(stress) == 6:
            virial = stress_kbar_to_virial(stress, abs(float(np.linalg.det(cell))))
        if forces is not None and forces.shape[0] != positions.shape[0]:
            raise ValueError(f"{forces.shape[0]} forces for {positions.shape[0]} sites")
        return Configuration(positions, types, cell, energy, forces, virial)
    except FileFormatError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(path, f"record {index}: {exc}", field="structure") from None


def read_maml_json(path, species=None) -> Dataset:
    """Read an mlearn/maml JSON list of records into a :class:`~mlipress.data.Dataset`.

    ``species`` (symbols in type order, or ``"Nb,Mo"``) fixes the type map; without it the
    elements present are ordered by atomic number. ``Dataset.names`` holds each record's
    ``group`` (or ``""``).
    """
    from ase.data import atomic_numbers

    from mlipress.io import parse_species

    path = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        try:
            records = json.load(handle)
        except json.JSONDecodeError as exc:
            raise FileFormatError(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list):
        raise FileFormatError(path, "expected a JSON list of records")
    elements = [_record_elements(r, path, i) for i, r in enumerate(records)]
    species = parse_species(species)
    if species is None:
        found = {e for els in elements for e in els}
        unknown = sorted(e for e in found if e not in atomic_numbers)
        if unknown:
            raise FileFormatError(path, f"unknown element symbol(s) {unknown}", field="element")
        species = tuple(sorted(found, key=atomic_numbers.__getitem__))
    type_of = {symbol: t for t, symbol in enumerate(species)}
    configs, names = [], []
    for index, (record, els) in enumerate(zip(records, elements)):
        missing = [e for e in dict.fromkeys(els) if e not in type_of]
        if missing:
            raise FileFormatError(
                path, f"record {index}: element {missing[0]!r} is not in species {species}", field="element"
            )
        types = np.array([type_of[e] for e in els], dtype=np.int64)
        configs.append(_configuration(record, types, path, index))
        names.append(str(record.get("group") or ""))
    return Dataset(tuple(configs), species, tuple(names))
