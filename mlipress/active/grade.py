"""Extrapolation grades of configurations and neighbourhoods (MLIP-2's MaxVol definition).

Rows (the matrix MaxVol works on), for a model of the contract (:mod:`mlipress.models.base`)
with parameters theta:

- ``mode="cfg"`` (configuration-wise, MLIP-2's default): one row per configuration,
  ``dE/dtheta / N`` (N atoms; MLIP-2's "vibrations" weighting of the energy equation);
- ``mode="nbh"`` (neighbourhood-wise): one row per atom, the site-energy derivative
  ``dV_i/dtheta``.

theta (``wrt``):

- ``"all"`` (MLIP-2's choice): every coefficient no optimiser freezes -- for an MTP the radial
  coefficients, species and moment coefficients (41 columns for the level-10 one-species
  potential, as MLIP-2's ``.als`` holds); for a compressed MTP the *factors* of its radial layer
  (MF: U, V; TT: the cores) instead of the dense radial tensor, so the grade measures
  extrapolation in the coordinates the compressed potential is fitted in;
- ``"linear"``: ``params.linear`` only (species and moment coefficients of an MTP), the
  columns of the contract's ``features_fn``.

The active set is built by :func:`mlipress.active.maxvol.maxvol` from MLIP-2's start
(``init_threshold * I``) over the training rows; the grade of a row is max |c| of its
coefficients in the active rows, that of a configuration in ``nbh`` mode the maximum over
its atoms. Derivatives come from autodiff of the model's ``efs_fn`` (``jax.jacrev``), so every
model family and radial layer is covered.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Sequence

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from mlipress.active.maxvol import (INIT_THRESHOLD, SWAP_THRESHOLD, ActiveSet, grades, maxvol, mlip_start)
from mlipress.batch import chunk_batches
from mlipress.data import Configuration
from mlipress.models.base import StructureKey

__all__ = ["GradeSettings", "rows_fn", "energy_rows", "build_active_set", "grade", "select", "parameter_names"]

MODES = ("cfg", "nbh")
WRT = ("all", "linear")


@dataclass(frozen=True)
class GradeSettings:
    """What the rows are (``mode``, ``wrt``: module docstring) and MLIP-2's MaxVol thresholds."""

    mode: str = "cfg"
    wrt: str = "all"
    init_threshold: float = INIT_THRESHOLD
    swap_threshold: float = SWAP_THRESHOLD

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"grade mode must be one of {MODES}, got {self.mode!r}")
        if self.wrt not in WRT:
            raise ValueError(f"grade wrt must be one of {WRT}, got {self.wrt!r}")


def parameter_names(params, wrt: str) -> tuple[str, ...]:
    """The fields of ``params`` the rows differentiate by, in field order."""
    if wrt == "linear":
        return tuple(params.LINEAR)
    return tuple(f.name for f in dataclasses.fields(params) if f.name not in params.FROZEN)


@functools.lru_cache(maxsize=16)
def _rows_fn(key: StructureKey, names: tuple[str, ...], output: str):
    efs = key.model.efs_fn()

    def rows(params, batch):
        flat, unravel = ravel_pytree(tuple(getattr(params, n) for n in names))

        def out(theta):
            return efs(params.replace(**dict(zip(names, unravel(theta)))), batch)[output]

        return jax.jacrev(out)(flat)

    return jax.jit(rows)


def rows_fn(model, params, settings: GradeSettings = GradeSettings()):
    """``rows(params, batch)``: the jitted raw derivative rows of a padded batch, (C, P)
    energies (``cfg``; not yet divided by the atom counts) or (A, P) site energies (``nbh``)."""
    names = parameter_names(params, settings.wrt)
    return _rows_fn(StructureKey(model), names, "energy" if settings.mode == "cfg" else "energies")


def energy_rows(model, params, configs: Sequence[Configuration], mode: str = "cfg", wrt: str = "all",
                max_atoms: int = 256) -> list[np.ndarray]:
    """The MaxVol rows of each configuration: a list of (1, P) (``cfg``) or (n_atoms, P)
    (``nbh``) arrays (module docstring)."""
    fn = rows_fn(model, params, GradeSettings(mode, wrt))
    configs = list(configs)
    out: list[np.ndarray | None] = [None] * len(configs)
    for chunk, batch in chunk_batches(configs, model.cutoff, max_atoms):
        J = np.asarray(jax.device_get(fn(params, batch)))
        offset = 0
        for pos, k in enumerate(chunk):
            n = configs[k].natoms
            if mode == "cfg":
                out[k] = J[pos:pos + 1] / max(n, 1)
            else:
                out[k] = J[offset:offset + n]
            offset += n
    return out


def _stack(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All rows and the configuration index of each."""
    labels = np.concatenate([np.full(len(r), k) for k, r in enumerate(rows)]) if rows else np.zeros(0, int)
    return (np.concatenate(rows) if rows else np.zeros((0, 0))), labels


def build_active_set(model, params, train: Sequence[Configuration], settings: GradeSettings = GradeSettings()) -> ActiveSet:
    """MaxVol over the training rows from MLIP-2's start; sources are training indices."""
    width = ravel_pytree(tuple(getattr(params, n) for n in parameter_names(params, settings.wrt)))[0].shape[0]
    rows, labels = _stack(energy_rows(model, params, train, settings.mode, settings.wrt))
    active, _ = maxvol(mlip_start(width, settings.init_threshold), rows.reshape(-1, width), labels,
                       settings.swap_threshold)
    return active


def grade(model, params, active: ActiveSet, configs: Sequence[Configuration],
          settings: GradeSettings = GradeSettings()) -> list[np.ndarray]:
    """Grades of ``configs``: per configuration a (1,) array (``cfg``) or the per-atom
    grades (n_atoms,) (``nbh``; the configuration's grade is their maximum)."""
    rows = energy_rows(model, params, configs, settings.mode, settings.wrt)
    return [grades(active, r) for r in rows]


def select(model, params, active: ActiveSet, candidates: Sequence[Configuration],
           settings: GradeSettings = GradeSettings(), threshold: float = 2.0,
           max_count: int | None = None) -> tuple[list[int], ActiveSet, np.ndarray]:
    """The candidates that enlarge the active set's volume: ``(indices, new active set, grades)``.

    Candidates graded at most ``threshold`` are dropped (the potential interpolates there);
    the rest enter MaxVol together (MLIP-2's ``select-add``): the selected ones are those with
    a row in the final active set, each once, in input order. With ``max_count``, the
    selection is greedy instead: the candidate of largest grade is swapped in, the others are
    graded again, up to ``max_count`` times. In the new set, rows of candidate k have source
    ``-2 - k`` (training rows keep theirs, placeholders -1). ``grades``: each candidate's
    grade against ``active``.
    """
    rows = energy_rows(model, params, candidates, settings.mode, settings.wrt)
    g = np.array([grades(active, r).max(initial=0.0) for r in rows])
    keep = [k for k in range(len(rows)) if g[k] > threshold]

    def tag(k):  # candidate labels, disjoint from training sources and placeholders
        return -2 - k

    if max_count is None:
        B = np.concatenate([rows[k] for k in keep]) if keep else np.zeros((0, active.size))
        labels = np.concatenate([np.full(len(rows[k]), tag(k)) for k in keep]) if keep else np.zeros(0, int)
        new, _ = maxvol(active, B, labels, settings.swap_threshold)
    else:
        new, left = active, list(keep)
        for _ in range(max_count):
            if not left:
                break
            now = [grades(new, rows[k]).max() for k in left]
            best = int(np.argmax(now))
            if now[best] <= settings.swap_threshold:
                break
            k = left.pop(best)
            new, _ = maxvol(new, rows[k], np.full(len(rows[k]), tag(k)), settings.swap_threshold)
    chosen = sorted({-2 - int(s) for s in new.sources if s <= -2})
    return chosen, new, g
