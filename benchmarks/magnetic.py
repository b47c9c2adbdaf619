"""Magnetic MTP: base (dense) vs MF- and TT-compressed radial tensors on the SYNTHETIC system.

Data: :mod:`mlipress.synthetic_magnetic` (EMT + Heisenberg coupling + Landau term, two species,
random strained/rattled 16-atom fcc cells with random collinear moments; labels E, F, virial and
magnetic forces -dE/ds). No DFT: the numbers test the machinery, not a material.

Every model starts untrained from the same magnetic MTP (level ``--level``, N_b = 8, N_s = 4 on
[-3, 3] mu_B) with random factors of seed s (variable projection, the same iteration budget);
ensembles of ``--seeds`` seeds. Compressed at about 50% and 80% fewer radial parameters:

- MF on the unfolding (N_T^2) x (N_mu N_b N_s^2) at the rank closest to the target;
- TT over (z_i, z_j, mu, beta, zeta, gamma), the five ranks (clipped to the mode sizes) whose
  count is closest to the target, preferring balanced ranks.

Reported per model (mean and 1 sigma over seeds): validation energy (meV/atom), force (eV/A per
component) and magnetic-force (eV/mu_B) RMSE, process CPU time of the fit, and the ferro vs
antiferro ordering energy ``E_AFM - E_FM`` (meV/atom) of one fixed Ni-rich cell, each state's
moments relaxed at fixed positions within the basis interval |s| <= 3 mu_B
(:func:`mlipress.simulate.spins.relax_magmoms`; a state whose moments end on the bound counts
as not converged and is reported) from +2 mu_B
on every magnetic atom (FM) or +-2 mu_B on alternating (001) planes (AFM), against the same
quantity of the reference model.

    nohup nice -n 3 python benchmarks/magnetic.py > magnetic.log 2>&1 &   # defaults: level 6, 60 training /
    # 30 validation cells of 8 atoms (magnetic moments uniform in +-3 mu_B, the relaxations' bound), at most
    # 300 iterations (stop when f fell by < 1e-4 of itself over 50), 3 seeds: estimated ~75 min of one core
    # (a 10-iteration dense fit took 20 s CPU incl. compilation). Each (model, seed) is written to
    # results/magnetic_runs/ as it finishes; rerunning the same command skips those (resume).
    # or in parallel: --only 0,1 --name magnetic_a, --only 2,3 --name magnetic_b, --only 4 --name magnetic_c,
    # then --merge magnetic_a,magnetic_b,magnetic_c
    python benchmarks/magnetic.py --level 6 --max-iter 20 --seeds 1 --train-configs 8   # smoke

Writes ``results/magnetic.json`` and ``results/magnetic.md``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, pin_one_core, write_result  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def tt_ranks_for(layer, shape, target: int):
    """Five TT ranks (clipped to the modes) whose parameter count is closest to ``target``;
    ties to the most balanced."""
    from mlipress.models.layers import clip_tt_ranks

    modes = layer.modes_for(shape)
    best = None
    for ranks in itertools.product(range(1, 9), repeat=5):
        ranks = clip_tt_ranks(modes, ranks)
        count = layer.param_count(shape, ranks)
        key = (abs(count - target), max(ranks) - min(ranks), count)
        if best is None or key < best[0]:
            best = (key, ranks)
    return best[1]


def variants(mtp):
    from mlipress.models.layers import MatrixFactorized, dense_param_count, parse_radial_spec

    shape = mtp.radial_shape
    full = dense_param_count(shape)
    out = [("dense", "dense")]
    tt = mtp.radial_layer(parse_radial_spec("tt:1"))
    for saving in (0.5, 0.8):
        target = (1 - saving) * full
        r = min(range(1, min(shape[0] ** 2, shape[2] * shape[3]) + 1),
                key=lambda r: abs(MatrixFactorized.param_count(shape, r) - target))
        out.append((f"MF -{saving:.0%}", f"mf:{r}"))
        out.append((f"TT -{saving:.0%}", "tt:" + ",".join(map(str, tt_ranks_for(tt, shape, target)))))
    return out


def ordering_cell(seed: int = 7):
    """The fixed cell of the ordering test: ideal fcc (2, 2, 1) cubic cells, 75% magnetic species."""
    from mlipress.synthetic_magnetic import random_cell

    return random_cell(np.random.default_rng(seed), strain=0.0, rattle=0.0, fraction_magnetic=0.75)


def ordering_energy(atoms, calc) -> tuple[float, dict]:
    """``E_AFM - E_FM`` (meV/atom) with moments relaxed at fixed positions, and the details."""
    from mlipress.simulate.spins import relax_magmoms

    magnetic = np.array([s == "Ni" for s in atoms.get_chemical_symbols()])
    planes = np.round(atoms.positions[:, 2] / (atoms.cell[2, 2] / 2)).astype(int) % 2  # (001) planes, a/2 apart
    starts = {"FM": np.where(magnetic, 2.0, 0.1), "AFM": np.where(magnetic, 2.0 * (1 - 2 * planes), 0.1)}
    out = {}
    for name, s0 in starts.items():
        a = atoms.copy()
        a.set_initial_magnetic_moments(s0)
        a.calc = calc
        res = relax_magmoms(a, mmax=1e-4, max_evaluations=500, max_moment=3.0)  # the basis interval
        out[name] = {"energy": res.energy, "converged": res.converged,
                     "mean |s| magnetic": float(np.abs(a.get_initial_magnetic_moments()[magnetic]).mean()),
                     "net moment": float(a.get_initial_magnetic_moments().sum())}
    return 1e3 * (out["AFM"]["energy"] - out["FM"]["energy"]) / len(atoms), out


def rmse_of(model, params, data) -> dict:
    from mlipress.metrics import error_report
    from mlipress.predict import predict

    pred, _ = predict(model, data, params=params)
    rep = error_report(list(data), pred)
    return {"energy_meV_per_atom": 1e3 * rep["energy_per_atom_eV"]["rmse"], "force_eV_per_A": rep["forces_eV_per_A"]["rmse"],
            "magmom_force_eV_per_muB": rep["magmom_forces_eV_per_muB"]["rmse"]}


def fit_one(mtp, train, valid, spec, seed, args):
    from mlipress.calculator import MTPCalculator
    from mlipress.compress import fit_compressed
    from mlipress.fit import TrainSettings
    from mlipress.loss import LossWeights

    weights = LossWeights(energy=1.0, force=0.01, stress=0.001, magnetic_force=args.magnetic_weight)
    s = TrainSettings(weights=weights, max_iter=args.max_iter, seed=seed, log_every=0, ftol=args.ftol, gtol=0.0,
                      ftol_window=args.ftol_window)
    t0 = time.process_time()
    res = fit_compressed(mtp, train, spec, s, valid_data=valid, out=io.StringIO())
    cpu = time.process_time() - t0
    calc = MTPCalculator(res.mtp, species=("Ni", "Cu"), params=res.params)
    d_order, detail = ordering_energy(ordering_cell(), calc)
    return {"seed": seed, "spec": spec, "radial_params": int(res.params.radial.num_params), "fit_cpu_s": cpu,
            "iterations": int(res.state.iteration), "stop_reason": str(res.stop_reason), "train": rmse_of(res.mtp, res.params, train),
            "valid": rmse_of(res.mtp, res.params, valid), "ordering_meV_per_atom": d_order, "ordering": detail}


def mean_sd(values):
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--level", type=int, default=6)
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--ftol", type=float, default=1e-4,
                    help="stop when f fell by less than this fraction over the last --ftol-window iterations")
    ap.add_argument("--ftol-window", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train-configs", type=int, default=60)
    ap.add_argument("--valid-configs", type=int, default=30)
    ap.add_argument("--repeat", default="2,1,1", help="fcc cubic cells per training/validation cell (4 atoms each)")
    ap.add_argument("--max-data-moment", type=float, default=3.0,
                    help="training moments of the magnetic species uniform in [-m, m] (the relaxations' bound is 3)")
    ap.add_argument("--magnetic-weight", type=float, default=0.01)
    ap.add_argument("--name", default="magnetic")
    ap.add_argument("--only", default="", help="indices of the variants to run (0 dense, 1 MF -50%%, 2 TT -50%%, "
                    "3 MF -80%%, 4 TT -80%%), for parallel runs")
    ap.add_argument("--merge", default="", help="combine the results of runs NAME1,NAME2,... into --name")
    args = ap.parse_args(argv)
    pin_one_core()
    if hasattr(os, "sched_setaffinity"):  # one thread, but on whichever core is free: the machine is shared
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))

    if args.merge:  # rows of parallel runs (--only) into one result
        parts = [json.loads((RESULTS / f"{name}.json").read_text()) for name in args.merge.split(",")]
        result = dict(parts[0], rows=[r for p in parts for r in p["rows"]], runs=[r for p in parts for r in p["runs"]],
                      parts=args.merge.split(","))
        order = [label for label, _ in variants_by_label(result)]
        result["rows"].sort(key=lambda r: order.index(r["label"]))
        return report(result, args.name)

    from mlipress.calculator import MTPCalculator  # noqa: F401  (import before timing)
    from mlipress.models.mtp.magnetic import magnetic_mtp
    from mlipress.synthetic_magnetic import HeisenbergLandauEMT, magnetic_dataset

    cells = {"repeat": tuple(int(x) for x in args.repeat.split(",")), "moment_range": (args.max_data_moment, 0.5)}
    train = magnetic_dataset(args.train_configs, seed=0, **cells)
    valid = magnetic_dataset(args.valid_configs, seed=1, **cells)
    runs_dir = RESULTS / f"{args.name}_runs"  # one file per (model, seed): a restarted run resumes
    mtp = magnetic_mtp(args.level, 2, 1.8, 5.0, 8, spin_basis_size=4, max_moment=3.0)
    ref_order, ref_detail = ordering_energy(ordering_cell(), HeisenbergLandauEMT())
    print(f"reference ordering E_AFM - E_FM = {ref_order:.2f} meV/atom; radial tensor {mtp.radial_shape}, "
          f"{mtp.num_params()['radial']} of {mtp.num_params()['total']} parameters radial", flush=True)
    chosen = variants(mtp)
    if args.only:
        chosen = [chosen[int(k)] for k in args.only.split(",")]
    rows, runs = [], []
    for label, spec in chosen:
        fits = []
        for seed in range(args.seeds):
            cached = runs_dir / f"{spec.replace(':', '_').replace(',', '-')}_seed{seed}.json"
            if cached.exists():
                r = json.loads(cached.read_text())
            else:
                r = json.loads(json.dumps(fit_one(mtp, train, valid, spec, seed, args), default=float))
                runs_dir.mkdir(parents=True, exist_ok=True)
                write_result(f"{runs_dir.name}/{cached.name}", r)
            fits.append(r)
            print(f"{label:8s} {spec:18s} seed {seed}: valid E {r['valid']['energy_meV_per_atom']:.2f} meV/atom, "
                  f"F {r['valid']['force_eV_per_A']:.4f}, M {r['valid']['magmom_force_eV_per_muB']:.4f}, "
                  f"order {r['ordering_meV_per_atom']:.2f} meV/atom, {r['fit_cpu_s']:.0f} s CPU", flush=True)
        runs.extend(dict(r, label=label) for r in fits)
        row = {"label": label, "spec": spec, "radial_params": fits[0]["radial_params"]}
        for key in ("energy_meV_per_atom", "force_eV_per_A", "magmom_force_eV_per_muB"):
            row[key] = mean_sd([f["valid"][key] for f in fits])
        row["fit_cpu_s"] = mean_sd([f["fit_cpu_s"] for f in fits])
        row["ordering_meV_per_atom"] = mean_sd([f["ordering_meV_per_atom"] for f in fits])
        rows.append(row)

    result = {"machine": machine(), "settings": vars(args), "radial_shape": list(mtp.radial_shape),
              "dense_radial_params": mtp.num_params()["radial"], "total_params": mtp.num_params()["total"],
              "reference_ordering_meV_per_atom": ref_order, "reference_ordering": ref_detail, "rows": rows, "runs": runs,
              "variants": chosen if not args.only else variants(mtp)}
    return report(json.loads(json.dumps(result, default=float)), args.name)


def variants_by_label(result):
    return [tuple(v) for v in result["variants"]]


def report(result: dict, name: str) -> int:
    """Write ``results/<name>.json`` and the markdown table ``results/<name>.md``."""
    from mlipress.io.atomic import atomic_write

    write_result(f"{name}.json", result)
    a = result["settings"]
    ref_order = result["reference_ordering_meV_per_atom"]
    lines = [
        "# Magnetic MTP: dense vs compressed radial tensor (synthetic data)", "",
        f"SYNTHETIC two-species system (EMT + Heisenberg + Landau, `mlipress.synthetic_magnetic`): "
        f"{a['train_configs']} training / {a['valid_configs']} validation cells of "
        f"{4 * math.prod(int(x) for x in a.get('repeat', '2,2,1').split(','))} atoms (magnetic-species moments "
        f"uniform in +-{a.get('max_data_moment', 2.6)} mu_B). Magnetic MTP level "
        f"{a['level']}, N_b = 8, N_s = 4 on [-3, 3] mu_B, radial tensor {tuple(result['radial_shape'])} "
        f"({result['dense_radial_params']} of {result['total_params']} parameters). Untrained start, at most "
        f"{a['max_iter']} iterations (stop when f fell by less than {a.get('ftol', 0.0):g} of itself over "
        f"{a.get('ftol_window', 50)}), weights E 1, F 0.01, S 0.001, magnetic force {a['magnetic_weight']}; "
        f"{a['seeds']} seeds (mean +- 1 sigma). One thread per process; the machine was shared and loaded "
        f"(1-min load {result['machine']['load_average_1min_at_start']:.1f} at start), so CPU times are indicative.",
        "",
        f"Ordering energy E_AFM - E_FM of the fixed 16-atom cell (moments relaxed at fixed positions): "
        f"reference {ref_order:.2f} meV/atom.", "",
        "E_AFM - E_FM: over the seeds whose FM and AFM relaxations both converged inside the bound "
        "(k/n); the others ran to the bound |s| = 3.", "",
        "| model | spec | radial params | valid E (meV/atom) | valid F (eV/A) | valid dE/ds (eV/mu_B) | "
        "E_AFM - E_FM (meV/atom) | converged | fit CPU (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda ms, d: f"{ms[0]:.{d}f} +- {ms[1]:.{d}f}"  # noqa: E731
    for r in result["rows"]:
        runs = [x for x in result["runs"] if x["label"] == r["label"]]
        good = [x["ordering_meV_per_atom"] for x in runs if all(st["converged"] for st in x["ordering"].values())]
        r["ordering_converged_meV_per_atom"] = mean_sd(good) if good else None
        order = fmt(r["ordering_converged_meV_per_atom"], 1) if good else "-"
        lines.append(f"| {r['label']} | `{r['spec']}` | {r['radial_params']} | {fmt(r['energy_meV_per_atom'], 2)} | "
                     f"{fmt(r['force_eV_per_A'], 4)} | {fmt(r['magmom_force_eV_per_muB'], 4)} | "
                     f"{order} | {len(good)}/{len(runs)} | {fmt(r['fit_cpu_s'], 0)} |")
    write_result(f"{name}.json", result)
    atomic_write(RESULTS / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
