"""Rank sweeps of compressed MTPs: the study behind Figure 2 and section III.B of the paper.

For one factorisation kind (MF, R-MF, TF or MFRA) and a list of ranks, :func:`sweep` fits an
ensemble (several seeds) per rank with :func:`mlipress.compress.fit_compressed` and records,
per fit, the number of radial parameters, the compression ``1 - n / (N_T^2 N_f N_b)`` and the
validation metrics: the loss ``f`` (the training :class:`~mlipress.loss.Objective`, same
weights, evaluated on the validation set) and the energy / force / stress RMSEs.
:func:`aggregate` reduces the rows to mean +- 1 sigma per rank (sample standard deviation,
ddof = 1, as :mod:`mlipress.fit.ensemble`), and :func:`choose_ranks` picks

- the *optimal* rank of the paper (section III.B): the minimum mean validation loss among the
  ranks that remove at least 20% of the base radial parameters (``n <= 0.8 n_base``, tested
  exactly in integers), and
- the rank whose parameter count is closest to 50% of the base (ties to the smaller count).

:func:`fit_row` (one fit -> one row) is also used for the base MTP (``kind="dense"``).
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import replace
from typing import Callable, Iterable, Sequence

import numpy as np

from mlipress.data import as_dataset
from mlipress.models.layers import RadialSpec, clip_tt_ranks, parse_radial_spec

__all__ = ["fit_row", "sweep", "aggregate", "choose_ranks", "make_spec", "evaluate_params", "METRICS",
           "OPTIMAL_MIN_COMPRESSION"]

#: Row keys that :func:`aggregate` reduces to mean +- sigma.
METRICS = ("valid_loss", "energy_rmse_meV_per_atom", "force_rmse_eV_per_A", "stress_rmse_GPa", "train_loss",
           "energy_mae_meV_per_atom", "force_mae_eV_per_A")

#: The paper's threshold (section III.B): an "optimal" rank must remove >= 20% of the radial parameters.
OPTIMAL_MIN_COMPRESSION = 0.2


def make_spec(kind: str, rank, shape=None) -> RadialSpec:
    """``RadialSpec`` of ``kind`` at ``rank``: an int for mf/rmf/mfra; an int r (-> (r, r, r),
    clipped to ``shape`` when given) or a triple for tt; ignored for dense."""
    kind = kind.lower()
    if kind == "dense":
        return RadialSpec("dense", None)
    if kind in ("tt", "ttra"):
        ranks = (int(rank),) * 3 if np.isscalar(rank) else tuple(int(r) for r in rank)
        if shape is not None:
            ranks = clip_tt_ranks(shape, ranks)
        return parse_radial_spec(f"{kind}:" + ",".join(map(str, ranks)))
    return parse_radial_spec(f"{kind}:{int(rank)}")


def _rank_label(spec: RadialSpec):
    if spec.rank is None:
        return None
    return list(spec.rank) if isinstance(spec.rank, tuple) else int(spec.rank)


def evaluate_params(mtp, params, valid, weights, max_atoms: int = 2048, prepared=None) -> dict:
    """Validation metrics of a fitted potential: ``valid_loss`` (Objective ``f`` with ``weights``,
    penalty included), energy (meV/atom), force (eV/A per component) and stress (GPa) RMSEs,
    and energy/force MAEs and largest errors (a few badly extrapolated configurations dominate
    the RMSE of an under-trained model; the MAE shows the typical error).

    ``params`` may have a factored radial part; the evaluation uses its dense form, which gives
    the same values (to round-off) and shares one compilation across ranks and kinds.
    ``prepared``: an already prepared validation set (:func:`mlipress.loss.prepare`).
    """
    from mlipress.loss import Objective, prepare
    from mlipress.metrics import error_report
    from mlipress.predict import predict_dataset

    dense_mtp = mtp.with_params(params)
    valid = as_dataset(valid)
    data = prepared if prepared is not None else prepare(valid, mtp, weights, max_atoms=max_atoms)
    loss = Objective(mtp, data, weights).value(dense_mtp.params())
    rep = error_report(valid.configurations, predict_dataset(dense_mtp, valid).configurations)
    def get(key, stat="rmse", scale=1.0):
        return None if rep[key][stat] is None else rep[key][stat] * scale

    return {
        "valid_loss": float(loss),
        "energy_rmse_meV_per_atom": get("energy_per_atom_eV", scale=1e3),
        "force_rmse_eV_per_A": get("forces_eV_per_A"),
        "stress_rmse_GPa": get("stress_GPa"),
        "energy_mae_meV_per_atom": get("energy_per_atom_eV", "mae", 1e3),
        "energy_max_meV_per_atom": get("energy_per_atom_eV", "max", 1e3),
        "force_mae_eV_per_A": get("forces_eV_per_A", "mae"),
        "force_max_eV_per_A": get("forces_eV_per_A", "max"),
    }


def fit_row(mtp, train, valid, spec: RadialSpec | str, seed: int, settings, out=None,
            mfra_interval="auto", valid_prepared=None, save=None, curve_every: int = 0) -> dict:
    """Fit ``mtp`` with radial parametrisation ``spec`` and seed ``seed``; return one row.

    Row keys: ``kind``, ``spec``, ``rank`` (int, [r1, r2, r3] or None), ``seed``,
    ``radial_params``, ``base_radial_params``, ``compression``, ``final_rank`` (MFRA),
    ``iterations``, ``seconds``, ``stop_reason``, ``train_loss`` and the validation metrics of
    :func:`evaluate_params`. ``out``: progress stream of the fit (default: silent).
    ``save``: path of a ``.mtp`` to write the fitted potential to (with its factors sidecar).
    ``curve_every`` > 0: also the learning curve, ``curve`` = ``[[iteration, train f, valid E
    RMSE meV/atom, valid F RMSE eV/A], ...]`` every ``curve_every`` iterations (the validation
    errors are then evaluated during the fit).
    """
    from mlipress.compress.files import write_compressed
    from mlipress.compress.fit import fit_compressed
    from mlipress.models.layers import compression

    spec = parse_radial_spec(spec) if isinstance(spec, str) else spec
    s = replace(settings, seed=int(seed), log_every=curve_every or settings.log_every)
    t0 = time.perf_counter()
    res = fit_compressed(mtp, train, spec, s, valid_data=valid if curve_every else None,
                         out=out if out is not None else io.StringIO(), mfra_interval=mfra_interval)
    seconds = time.perf_counter() - t0
    base = math.prod(mtp.radial_shape)
    n = int(res.radial.num_params)
    last = res.history[-1] if res.history else {}
    row = {
        "kind": spec.kind,
        "spec": str(spec),
        "rank": _rank_label(spec),
        "seed": int(seed),
        "radial_params": n,
        "base_radial_params": int(base),
        "compression": float(compression(res.radial)),
        "final_rank": _rank_label(RadialSpec(spec.kind, res.radial.rank)) if spec.kind in ("mfra", "ttra") else None,
        "iterations": int(last.get("iteration", 0)),
        "seconds": float(seconds),
        "stop_reason": res.stop_reason,
        "train_loss": float(last["f"]) if "f" in last else None,
    }
    if curve_every:
        row["curve"] = [[r["iteration"], r["f"], r["valid_energy_rmse_meV_per_atom"], r["valid_force_rmse_eV_per_A"]]
                        for r in res.history if r.get("event") in ("progress", "final") and "valid_force_rmse_eV_per_A" in r]
    row.update(evaluate_params(mtp, res.params, valid, s.weights, s.max_atoms, prepared=valid_prepared))
    if save is not None:
        write_compressed(save, mtp, res.params, str(spec))
    return row


def _seed_list(seeds, base_seed: int) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ValueError(f"need at least one seed, got {seeds}")
        return [base_seed + i for i in range(int(seeds))]
    out = [int(x) for x in seeds]
    if not out:
        raise ValueError("need at least one seed")
    return out


def sweep(mtp, train, valid, kind: str, ranks: Iterable, seeds, settings, out=None,
          on_row: Callable[[dict], None] | None = None, mfra_interval="auto") -> list[dict]:
    """Fit ``kind`` at every rank in ``ranks`` with every seed; one row per (rank, seed).

    ``mtp``: an untrained MTP (random factors per seed: an ensemble) or a trained one
    (truncated SVD / TT-SVD start, then refit; all seeds then start identically).
    ``kind``: ``mf``, ``rmf``, ``tt``, ``mfra`` (or ``dense``: ranks are ignored, one entry).
    ``ranks``: ints (TT: r -> (r, r, r), clipped) or TT triples; MFRA: RMAX values.
    ``seeds``: a count K (seeds ``settings.seed .. + K-1``) or an explicit list.
    ``settings``: :class:`mlipress.fit.TrainSettings` (weights, ``max_iter``, ...).
    ``on_row(row)`` is called after each fit (e.g. to save partial results).
    Rows: see :func:`fit_row`.
    """
    from mlipress.loss import prepare

    kind = kind.lower()
    rank_list = [None] if kind == "dense" else list(ranks)
    if not rank_list:
        raise ValueError("no ranks to sweep")
    specs = [make_spec(kind, r, mtp.radial_shape) for r in rank_list]
    seed_list = _seed_list(seeds, settings.seed)
    valid_prepared = prepare(as_dataset(valid), mtp, settings.weights, max_atoms=settings.max_atoms)
    rows = []
    for spec in specs:
        for seed in seed_list:
            row = fit_row(mtp, train, valid, spec, seed, settings, out=out, mfra_interval=mfra_interval,
                          valid_prepared=valid_prepared)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def _mean_std(values: Sequence[float]) -> dict:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def aggregate(rows: Iterable[dict]) -> list[dict]:
    """Mean +- 1 sigma (ddof = 1) of :data:`METRICS` per (kind, spec), sorted by radial parameters.

    Each entry: ``kind``, ``spec``, ``rank``, ``radial_params``, ``base_radial_params``,
    ``compression``, ``seeds`` (list) and ``{metric: {"mean", "std", "n"}}``. For MFRA the
    parameter count may differ between seeds (final rank); the entry reports the largest.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["kind"], row["spec"]), []).append(row)
    out = []
    for (kind, spec), rs in groups.items():
        n = max(int(r["radial_params"]) for r in rs)
        base = rs[0].get("base_radial_params")
        entry = {
            "kind": kind,
            "spec": spec,
            "rank": rs[0]["rank"],
            "radial_params": n,
            "base_radial_params": base,
            "compression": (1.0 - n / base) if base else None,
            "seeds": [r["seed"] for r in rs],
        }
        for m in METRICS:
            entry[m] = _mean_std([r.get(m) for r in rs])
        out.append(entry)
    out.sort(key=lambda e: (e["kind"], e["radial_params"]))
    return out


def choose_ranks(agg: Sequence[dict], base_radial: int, min_compression: float = OPTIMAL_MIN_COMPRESSION) -> dict:
    """``{"optimal": entry | None, "half": entry | None}`` from :func:`aggregate` entries.

    ``optimal``: the lowest mean ``valid_loss`` among entries with at least ``min_compression``
    of the ``base_radial`` parameters removed (``radial_params <= (1 - min_compression) *
    base_radial``; for the default 0.2 this is checked exactly as ``5 n <= 4 n_base``); ties go
    to fewer parameters. ``half``: the entry whose count is closest to ``base_radial / 2``
    (``|2 n - n_base|`` minimal; ties to fewer parameters). Dense entries are ignored.
    """
    base = int(base_radial)
    cands = [e for e in agg if e.get("kind") != "dense"]
    if min_compression == OPTIMAL_MIN_COMPRESSION:
        ok = lambda n: 5 * n <= 4 * base
    else:
        ok = lambda n: n <= (1.0 - min_compression) * base
    eligible = [e for e in cands if ok(int(e["radial_params"])) and e["valid_loss"]["mean"] is not None]
    optimal = min(eligible, key=lambda e: (e["valid_loss"]["mean"], e["radial_params"])) if eligible else None
    half = min(cands, key=lambda e: (abs(2 * int(e["radial_params"]) - base), e["radial_params"])) if cands else None
    return {"optimal": optimal, "half": half}
