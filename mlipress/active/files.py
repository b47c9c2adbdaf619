"""Graded configurations on disk: ``.cfg`` with MLIP-2's ``Feature MV_grade`` line, or
extended XYZ with ``MV_grade`` in the frame info and per-atom ``nbh_grades``.

MLIP-2 prints the grade with 6 decimals and ``9.9e99`` above 1e10; so does this writer.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from mlipress.data import Dataset
from mlipress.io import to_atoms, write_dataset
from mlipress.io.atomic import atomic_open

__all__ = ["format_grade", "write_graded"]


def format_grade(value: float) -> str:
    return "9.9e99" if value > 1e10 else f"{value:.6f}"


def write_graded(data: Dataset, grades: Sequence[np.ndarray], path, per_atom: bool = False,
                 keep: Sequence[int] | None = None) -> None:
    """Write ``data`` (only the indices ``keep`` if given) with each configuration's grade
    (the maximum of its array) and, with ``per_atom`` in ``.xyz``, the per-atom grades."""
    index = range(len(data)) if keep is None else list(keep)
    configs = []
    for k in index:
        c = data.configurations[k]
        features = tuple(f for f in c.features if f[0] != "MV_grade")
        configs.append(replace(c, features=features + (("MV_grade", format_grade(float(np.max(grades[k], initial=0.0)))),)))
    names = tuple(data.names[k] for k in index) if data.names else ()
    out = Dataset(tuple(configs), data.species, names)
    if Path(path).suffix.lower() not in (".xyz", ".extxyz"):
        write_dataset(out, path)
        return
    if data.species is None:
        raise ValueError(f"writing {path} needs element symbols: pass --species")
    import ase.io

    frames = []
    for k, c in zip(index, configs):
        atoms = to_atoms(c, data.species)
        atoms.info["MV_grade"] = float(np.max(grades[k], initial=0.0))
        if per_atom:
            atoms.arrays["nbh_grades"] = np.asarray(grades[k], dtype=np.float64)
        frames.append(atoms)
    with atomic_open(path) as handle:
        ase.io.write(handle, frames, format="extxyz")
