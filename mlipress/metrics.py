"""Error reports between reference labels and predictions (the role of ``mlp calc-errors``).

Conventions, stated in every report because codes differ:

- energy errors are per atom (eV/atom) for each configuration;
- force RMSE is given per Cartesian component (MLIP-2's convention) and per atom vector
  (|F_pred - F_ref|, MLIP-3's convention, sqrt(3) larger for isotropic errors); force MAE
  and max are per component;
- virial errors are per configuration on the 6 independent components (eV, MLIP
  PlusStress), and as stress in GPa (virial / volume) for periodic configurations.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mlipress.data import Configuration, matrix_to_voigt

EV_PER_A3_TO_GPA = 160.21766208


def _stats(x: np.ndarray) -> dict:
    x = np.abs(np.asarray(x, dtype=np.float64).ravel())
    if x.size == 0:
        return {"n": 0, "mae": None, "rmse": None, "max": None}
    return {"n": int(x.size), "mae": float(x.mean()), "rmse": float(np.sqrt((x**2).mean())), "max": float(x.max())}


def error_statistics(energy_per_atom, force_diffs, virial_diffs, volumes=None) -> dict:
    """The report of :func:`error_report` from error arrays: ``energy_per_atom`` (n_E,) eV/atom,
    ``force_diffs`` (n_F, 3) eV/A, ``virial_diffs`` (n_V, 3, 3) eV and the ``volumes`` (n_V,)
    of those configurations (A^3; 0 or None for no stress). The one definition of the error
    statistics: the error reports of every command and the training log use it."""
    df = np.asarray(force_diffs, dtype=np.float64).reshape(-1, 3)
    dv = np.asarray(virial_diffs, dtype=np.float64).reshape(-1, 3, 3)
    dv = np.stack([matrix_to_voigt(m) for m in dv]) if len(dv) else np.zeros((0, 6))
    vol = np.zeros(len(dv)) if volumes is None else np.asarray(volumes, dtype=np.float64)
    forces = _stats(df)
    forces["rmse_per_atom_vector"] = _stats(np.linalg.norm(df, axis=1))["rmse"]
    return {
        "energy_per_atom_eV": _stats(energy_per_atom),
        "forces_eV_per_A": forces,
        "virial_eV": _stats(dv),
        "stress_GPa": _stats(dv[vol > 0] / vol[vol > 0, None] * EV_PER_A3_TO_GPA),
    }


def error_report(reference: Sequence[Configuration], predicted: Sequence[Configuration]) -> dict:
    """Energy, force and stress error statistics (see module docstring for conventions).

    Configurations lacking a reference label simply do not contribute to that quantity.
    """
    if len(reference) != len(predicted):
        raise ValueError(f"{len(reference)} reference vs {len(predicted)} predicted configurations")
    de, df, dv, vol, dm = [], [], [], [], []
    for ref, pred in zip(reference, predicted):
        if ref.magmom_forces is not None and pred.magmom_forces is not None:
            dm.append(pred.magmom_forces - ref.magmom_forces)
        if ref.energy is not None:
            de.append((pred.energy - ref.energy) / ref.natoms)
        if ref.forces is not None:
            df.append(pred.forces - ref.forces)
        if ref.virial is not None and pred.virial is not None:
            dv.append(pred.virial - ref.virial)
            vol.append(ref.volume or 0.0)
    cat = lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape)  # noqa: E731
    report = {
        "configurations": len(reference),
        "atoms": int(sum(c.natoms for c in reference)),
        **error_statistics(np.array(de), cat(df, (0, 3)), np.array(dv).reshape(-1, 3, 3), np.array(vol)),
    }
    if dm:  # magnetic models on data with magnetic forces (-dE/ds_i, eV/mu_B)
        report["magmom_forces_eV_per_muB"] = _stats(cat(dm, (0,)))
    return report


def format_report(report: dict, title: str = "") -> str:
    """A human-readable table of :func:`error_report`."""

    def fmt(v, scale=1.0):
        return "     n/a" if v is None else f"{v * scale:12.6g}"

    lines = [title] if title else []
    lines.append(f"{report['configurations']} configurations, {report['atoms']} atoms")
    lines.append(f"{'quantity':34s}{'MAE':>12s}{'RMSE':>12s}{'max':>12s}")
    rows = [
        ("energy per atom (meV/atom)", report["energy_per_atom_eV"], 1e3),
        ("forces per component (eV/A)", report["forces_eV_per_A"], 1.0),
        ("virial per component (eV)", report["virial_eV"], 1.0),
        ("stress per component (GPa)", report["stress_GPa"], 1.0),
    ]
    for name, s, scale in rows:
        if s["n"]:
            lines.append(f"{name:34s}{fmt(s['mae'], scale)}{fmt(s['rmse'], scale)}{fmt(s['max'], scale)}")
    f = report["forces_eV_per_A"]
    if f["n"]:
        lines.append(f"{'forces RMSE per atom vector (eV/A)':34s}{'':12s}{fmt(f['rmse_per_atom_vector'])}")
    return "\n".join(lines)


def summary_row(report: dict) -> dict:
    """The headline numbers of :func:`error_report` as one flat, JSON-friendly row
    (energies in meV/atom, forces in eV/A, stresses in GPa)."""
    return {
        "configurations": report["configurations"],
        "atoms": report["atoms"],
        "energy_mae_meV_per_atom": report["energy_per_atom_eV"]["mae"] * 1e3,
        "energy_rmse_meV_per_atom": report["energy_per_atom_eV"]["rmse"] * 1e3,
        "force_mae_eV_per_A": report["forces_eV_per_A"]["mae"],
        "force_rmse_eV_per_A_component": report["forces_eV_per_A"]["rmse"],
        "force_rmse_eV_per_A_atom_vector": report["forces_eV_per_A"]["rmse_per_atom_vector"],
        "stress_rmse_GPa": report["stress_GPa"]["rmse"],
    }
