"""Ensembles of independently trained MTPs: K seeds, mean +- 1 sigma of validation errors.

Members differ only by the seed of the random radial start (:func:`initial_params`), so the
spread measures how much the fit depends on initialisation -- the usual way to report MTP
errors (the loss is non-convex in the radial coefficients). Sigma is the sample standard
deviation (ddof = 1; 0 for K = 1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mlipress.metrics import error_report
from mlipress.models.mtp.model import MTP
from mlipress.predict import predict_dataset
from mlipress.data import as_dataset
from mlipress.fit.trainer import TrainResult, TrainSettings, train

__all__ = ["EnsembleResult", "train_ensemble", "summarise"]

_KEYS = (
    ("energy_rmse_meV_per_atom", "energy_per_atom_eV", 1e3),
    ("force_rmse_eV_per_A", "forces_eV_per_A", 1.0),
    ("stress_rmse_GPa", "stress_GPa", 1.0),
)


@dataclass(frozen=True, eq=False)
class EnsembleResult:
    """``results[k]`` trained with seed ``seeds[k]``; ``reports[k]`` its validation
    :func:`error_report` (None without validation data); ``summary``: see :func:`summarise`."""

    results: tuple[TrainResult, ...]
    seeds: tuple[int, ...]
    reports: tuple
    summary: dict


def summarise(reports) -> dict:
    """``{quantity: {"mean", "std", "values"}}`` of RMSEs over the members' error reports."""
    out = {}
    for key, rkey, scale in _KEYS:
        vals = [r[rkey]["rmse"] for r in reports if r is not None and r[rkey]["rmse"] is not None]
        if vals:
            v = np.asarray(vals) * scale
            out[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                        "values": v.tolist()}
    return out


def train_ensemble(
    mtp: MTP, train_data, settings: TrainSettings = TrainSettings(), valid_data=None, k: int = 5, **kwargs
) -> EnsembleResult:
    """Train ``k`` members with seeds ``settings.seed + 0 .. k-1`` from the untrained ``mtp``.

    ``kwargs`` go to :func:`train` (``optimizer_factory``, ``callback``, ``out``). A checkpoint
    or log path in ``settings`` gets the member index inserted before its suffix. Starting
    from a trained potential would give k identical members, so ``mtp`` must be untrained.
    """
    if int(k) < 1:
        raise ValueError(f"ensemble size must be >= 1, got {k}")
    if mtp.trained:
        raise ValueError("an ensemble needs an untrained potential (members differ by their random start)")
    valid = as_dataset(valid_data) if valid_data is not None else None
    results, reports, seeds = [], [], []
    for i in range(int(k)):
        seed = settings.seed + i
        member = replace(
            settings,
            seed=seed,
            checkpoint=indexed_path(settings.checkpoint, i),
            log_file=indexed_path(settings.log_file, i),
        )
        res = train(mtp, train_data, member, valid_data=valid, **kwargs)
        results.append(res)
        seeds.append(seed)
        reports.append(error_report(valid.configurations, predict_dataset(res.mtp, valid).configurations) if valid is not None and len(valid) else None)
    return EnsembleResult(tuple(results), tuple(seeds), tuple(reports), summarise(reports))


def indexed_path(path, i):
    """``a/b.ext`` -> ``a/b.i.ext`` (a member's own checkpoint or log); None stays None."""
    if not path:
        return path
    from pathlib import Path

    p = Path(path)
    return str(p.with_name(f"{p.stem}.{i}{p.suffix}"))
