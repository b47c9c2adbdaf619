"""The active set saved next to its potential, so grading does not recompute it.

``X.mtp`` -> ``X.mtp.active.npz`` (:func:`active_set_path`), a NumPy ``.npz`` (no pickles):

- ``header``: JSON ``{"format": "mlipress-active-set", "version": 1, "mode", "wrt",
  "init_threshold", "swap_threshold", "params_sha256", "train_sha256"}``;
- ``rows`` (n, n), ``sources`` (n,): the :class:`~mlipress.active.maxvol.ActiveSet`
  (sources: training indices, -1 placeholders).

The file is only valid for the same coefficients (``params_sha256``, over every parameter
array, so also a compressed potential's factors), the same training set (``train_sha256``,
over positions, types and cells) and the same settings; :func:`active_set_for` rebuilds and
rewrites it (atomically) otherwise. MLIP-2's ``.als`` (for MLIP-2 itself) is written by
:mod:`mlipress.active.als`; MLIP-3's ``#MVS_v1.1`` is not.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from mlipress.active.grade import GradeSettings, build_active_set
from mlipress.active.maxvol import ActiveSet
from mlipress.data import Configuration
from mlipress.io.atomic import atomic_write

__all__ = ["active_set_path", "params_sha256", "configs_sha256", "save_active_set", "load_active_set",
           "active_set_for", "read_potential"]

FORMAT = "mlipress-active-set"
VERSION = 1


def active_set_path(potential) -> Path:
    """``X.mtp`` -> ``X.mtp.active.npz``."""
    potential = Path(potential)
    return potential.with_name(potential.name + ".active.npz")


def params_sha256(params) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(params):
        a = np.ascontiguousarray(np.asarray(leaf, dtype=np.float64))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def configs_sha256(configs: Sequence[Configuration]) -> str:
    h = hashlib.sha256()
    for c in configs:
        for a in (c.positions, c.types, np.zeros(0) if c.cell is None else c.cell):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(b"|")
    return h.hexdigest()


def _header(settings: GradeSettings, params_sha: str, train_sha: str) -> dict:
    return {"format": FORMAT, "version": VERSION, "mode": settings.mode, "wrt": settings.wrt,
            "init_threshold": settings.init_threshold, "swap_threshold": settings.swap_threshold,
            "params_sha256": params_sha, "train_sha256": train_sha}


def save_active_set(path, active: ActiveSet, settings: GradeSettings, params_sha: str, train_sha: str) -> None:
    buf = io.BytesIO()
    np.savez(buf, header=np.array(json.dumps(_header(settings, params_sha, train_sha))), rows=active.rows,
             sources=active.sources)
    atomic_write(path, buf.getvalue())


def load_active_set(path, settings: GradeSettings, params_sha: str, train_sha: str) -> ActiveSet | None:
    """The saved set if ``path`` exists and was made for these coefficients, training set and
    settings; else None. A file that is not an active-set file is an error."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            rows, sources = z["rows"], z["sources"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not a readable {FORMAT} file ({exc})") from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ValueError(f"{path}: not a {FORMAT} v{VERSION} file")
    if header != _header(settings, params_sha, train_sha):
        return None
    return ActiveSet(rows, sources)


def active_set_for(potential_path, model, params, train: Sequence[Configuration],
                   settings: GradeSettings = GradeSettings()) -> tuple[ActiveSet, bool]:
    """``(active set, reused)``: the sidecar's set when valid, else a fresh one (saved)."""
    path = active_set_path(potential_path)
    psha, tsha = params_sha256(params), configs_sha256(train)
    active = load_active_set(path, settings, psha, tsha)
    if active is not None:
        return active, True
    active = build_active_set(model, params, train, settings)
    try:
        save_active_set(path, active, settings, psha, tsha)
    except OSError as exc:  # a read-only potential directory: grade anyway, recompute next time
        warnings.warn(f"active set not saved to {path}: {exc}", stacklevel=2)
    return active, False


def read_potential(path):
    """``(mtp, params)`` of ``path``: with its factored sidecar (a compressed potential,
    :mod:`mlipress.compress.files`) the factored params, else the ``.mtp``'s own."""
    from mlipress.compress.files import read_compressed, sidecar_path
    from mlipress.io.mtp import read_mtp

    if sidecar_path(path).exists():
        mtp, params, _ = read_compressed(path)
        return mtp, params
    mtp = read_mtp(path)
    return mtp, mtp.params()
