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


def error_report(reference: Sequence[Configuration], predicted: Sequence[Configuration]) -> dict:
    """Energy, force and stress error statistics (see module docstring for conventions).

    Configurations lacking a reference label simply do not contribute to that quantity.
    """
    if len(reference) != len(predicted):
        raise ValueError(f"{len(reference)} reference vs {len(predicted)} predicted configurations")
    de, df, dfv, dv, ds = [], [], [], [], []
    for ref, pred in zip(reference, predicted):
        if ref.energy is not None:
            de.append((pred.energy - ref.energy) / ref.natoms)
        if ref.forces is not None:
            diff = pred.forces - ref.forces
            df.append(diff.ravel())
            dfv.append(np.linalg.norm(diff, axis=1))
        if ref.virial is not None and pred.virial is not None:
            d = matrix_to_voigt(pred.virial - ref.virial)
            dv.append(d)
            if ref.volume:
                ds.append(d / ref.volume * EV_PER_A3_TO_GPA)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)
    forces = _stats(cat(df))
    forces["rmse_per_atom_vector"] = _stats(cat(dfv))["rmse"]
    return {
        "configurations": len(reference),
        "atoms": int(sum(c.natoms for c in reference)),
        "energy_per_atom_eV": _stats(np.array(de)),
        "forces_eV_per_A": forces,
        "virial_eV": _stats(cat(dv)),
        "stress_GPa": _stats(cat(ds)),
    }


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
