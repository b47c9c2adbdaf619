"""Grades on the fly: the per-step extrapolation grade in an ASE calculator and in MD.

:class:`Grader` grades the padded batch the calculator already built (no second neighbour
search): one extra reverse pass for ``dE/dtheta`` (``cfg``) or A of them (``nbh``), then a
solve with the active set's cached LU factors. :class:`ExtrapolationMonitor` is an MD
observer (:func:`mlipress.simulate.md.run_md` ``observers``): it collects the configurations
graded above ``threshold`` and stops the run (:class:`~mlipress.simulate.md.StopMD`) above
``break_threshold``, as MLIP's LAMMPS interface does with ``threshold-save`` and
``threshold-break``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from mlipress.active.grade import GradeSettings, rows_fn
from mlipress.active.maxvol import ActiveSet, grades

__all__ = ["Grader", "ExtrapolationMonitor"]


class Grader:
    """Grades of one configuration's padded batch against ``active``."""

    def __init__(self, model, params, active: ActiveSet, settings: GradeSettings = GradeSettings()):
        self.params, self.active, self.settings = params, active, settings
        self.rows = rows_fn(model, params, settings)

    @classmethod
    def for_potential(cls, potential, model, params, active=None, train=None,
                      settings: GradeSettings | None = None) -> "Grader":
        """``active`` as given, else the training set's (the sidecar of a potential path is
        used and kept, :func:`mlipress.active.state.active_set_for`)."""
        from mlipress.active.grade import build_active_set
        from mlipress.active.state import active_set_for

        settings = settings or GradeSettings()
        if active is None:
            if train is None:
                raise ValueError("grade=True needs the training set (train=...) or an active set (active_set=...)")
            train = list(getattr(train, "configurations", train))
            if isinstance(potential, (str, Path)):
                active, _ = active_set_for(potential, model, params, train, settings)
            else:
                active = build_active_set(model, params, train, settings)
        return cls(model, params, active, settings)

    def __call__(self, batch, n_atoms: int) -> np.ndarray:
        """(1,) configuration grade (``cfg``) or (n_atoms,) per-atom grades (``nbh``)."""
        J = np.asarray(jax.device_get(self.rows(self.params, batch)))
        rows = J[:1] / max(n_atoms, 1) if self.settings.mode == "cfg" else J[:n_atoms]
        return grades(self.active, rows)


@dataclass
class ExtrapolationMonitor:
    """MD observer on ``atoms.calc.results["grade"]`` (module docstring). ``saved`` holds
    ``(step, grade, atoms copy)`` of each configuration above ``threshold``; ``save`` (a
    path) gets them written (``.cfg`` or ``.xyz``, with ``MV_grade``) when the run ends."""

    threshold: float = 2.0
    break_threshold: float = 10.0
    save: str | Path | None = None
    species: tuple[str, ...] | None = None
    saved: list = field(default_factory=list)
    max_grade: float = 0.0
    steps: int = 0
    broke_at: int | None = None

    def __call__(self, atoms, step: int) -> None:
        from mlipress.simulate.md import StopMD

        g = float(atoms.calc.results["grade"])
        self.max_grade = max(self.max_grade, g)
        self.steps += 1
        if g > self.threshold:
            snapshot = atoms.copy()
            snapshot.calc = None
            self.saved.append((step, g, snapshot))
        if g > self.break_threshold:
            self.broke_at = step
            raise StopMD(f"grade {g:.3g} > {self.break_threshold:g} at step {step}")

    def write(self, path=None) -> int:
        """Write the saved configurations; returns how many."""
        from mlipress.active.files import write_graded
        from mlipress.data import Dataset
        from mlipress.io import from_atoms

        path = path or self.save
        if path is None or not self.saved:
            return 0
        species = self.species or tuple(dict.fromkeys(a for _, _, at in self.saved for a in at.get_chemical_symbols()))
        data = Dataset(tuple(from_atoms(at, species) for _, _, at in self.saved), species)
        write_graded(data, [np.array([g]) for _, g, _ in self.saved], path)
        return len(self.saved)
