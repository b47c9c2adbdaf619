"""ACE with CP-decomposed couplings (``cp:R``) against the exact generalised CG coupling.

Three parts, one thread on one pinned core, process CPU time:

1. ``speed``: E+F+S microseconds per atom (best of ``--calls`` after the compiling call) of the
   same ACE with exact and ``cp:R`` couplings (``--speed-ranks``) on a rattled NbMoTaW bcc cell
   (``--repeat``^3 conventional cells), for two bases: the fit basis below and the full
   body-order-4 basis (N_rad = 3, L = 2 at ranks 2 and 3: 3806 B-functions per species), where
   the coupling dominates the cost. With the number of product terms of each.
2. ``fit``: the NbMoTaW subset (stratified over the non-``_Test`` groups, ``--train-configs``;
   validation: ``--valid-configs`` of the ``*_Test`` groups), the same ACE basis (body order 4,
   N_k = 9, N_rad = 3, L = 2, cutoff 5, ``--nmax-by-rank`` 2,1 and ``--lmax-by-rank`` 2,2) on the subsystem
   ``--elements`` (default Mo,W: the Mo, W and MoW groups) fitted with
   each coupling, ``--max-iter`` BFGS iterations with variable projection, seeds
   ``--seed-list`` (the same for every coupling), w_E = 1, w_F = 0.01, w_S = 0; validation
   RMSEs, mean +- 1 sigma.
3. ``agreement``: the exact fit of seed 0 evaluated with each CP coupling at the same
   coefficients on the validation set: relative energy and force differences per rank, and per
   coupling (ls, lint) the CP rank used, relative CP error and the invariance bound.

Each part writes its own JSON as rows come (``ace_coupling_speed.json``,
``ace_coupling_fit_<seeds>.json``: the fits of ``--seed-list``, with the agreement when seed 0 is
among them; a rerun skips fits already there), so parts and seeds can run as separate processes;
``--parts report`` merges every file into ``ace_coupling.json`` and ``ace_coupling.md``.

    nohup taskset -c 1 python benchmarks/ace_coupling.py --parts speed > speed.log 2>&1 &
    nohup taskset -c 0 python benchmarks/ace_coupling.py --parts fit,agreement --seed-list 0,1 > fit.log 2>&1 &
    python benchmarks/ace_coupling.py --parts report
"""

from __future__ import annotations

from _common import pin_one_core  # noqa: E402

pin_one_core()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from _common import NBMOTAW_SPECIES as SPECIES  # noqa: E402
from _common import RESULTS, machine, nbmotaw_groups, write_result  # noqa: E402
from compression_study import stratified  # noqa: E402

NAME = "ace_coupling.json"
SPEED = "ace_coupling_speed.json"


def _ints(text):
    return [int(x) for x in str(text).split(",") if x.strip()]


def _subset(groups: dict, elements) -> dict:
    """The groups whose elements (read from the group name, e.g. ``MoW_SS``) are all in
    ``elements``, with type indices renumbered to ``elements``."""
    import re
    from dataclasses import replace

    from mlipress.data import Dataset

    remap = np.array([elements.index(e) if e in elements else -1 for e in SPECIES])
    out = {}
    for name, data in groups.items():
        if set(re.findall("[A-Z][a-z]?", name.split("_")[0])) <= set(elements):
            configs = tuple(replace(c, types=remap[c.types]) for c in data.configurations)
            out[name] = Dataset(configs, tuple(elements), data.names)
    return out


def _cell(repeat: int, elements=SPECIES):
    from ase.build import bulk

    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat((repeat,) * 3)
    atoms.set_chemical_symbols(np.array(elements)[np.arange(len(atoms)) % len(elements)].tolist())
    atoms.rattle(0.05, seed=1)
    return atoms


def _cpu_us_per_atom(model, params, atoms, calls: int) -> float:
    import jax

    from mlipress.batch import build_batch
    from mlipress.io import from_atoms
    from mlipress.models.base import jitted_efs

    batch = build_batch([from_atoms(atoms, model.elements)], model.cutoff)
    efs = jitted_efs(model)
    jax.block_until_ready(efs(params, batch))
    best = np.inf
    for _ in range(calls):
        t = time.process_time()
        jax.block_until_ready(efs(params, batch))
        best = min(best, time.process_time() - t)
    return 1e6 * best / len(atoms)


def speed(ace_by_name, specs, args):
    import jax.numpy as jnp

    from mlipress.models.ace.coupling import product_table

    rows = []
    for name, ace in ace_by_name.items():
        atoms = _cell(args.repeat, ace.elements)
        p = ace.init(0)
        p = p.replace(coeffs=jnp.asarray(0.01 * np.random.default_rng(0).normal(size=p.coeffs.shape)))
        for spec in specs:
            model = ace.with_coupling(spec)
            table = product_table(model)
            row = {"basis": name, "functions": len(ace.functions), "coupling": spec, "terms": int(table.coef.size),
                   "expanded_base": table.n_x, "atoms": len(atoms),
                   "efs_us_per_atom": _cpu_us_per_atom(model, p, atoms, args.calls)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _differences(exact, cp, params, data):
    from mlipress.predict import predict

    ref, _ = predict(exact, data, params=params)
    got, _ = predict(cp, data, params=params)
    de = np.array([(g.energy - r.energy) / r.natoms for g, r in zip(got, ref)])
    e = np.array([r.energy / r.natoms for r in ref])
    df = np.concatenate([g.forces - r.forces for g, r in zip(got, ref)]).ravel()
    f = np.concatenate([r.forces for r in ref]).ravel()
    return {"energy_max_abs_meV_per_atom": 1e3 * float(np.abs(de).max()),
            "energy_rel_rms": float(np.sqrt(np.mean(de ** 2)) / np.sqrt(np.mean((e - e.mean()) ** 2))),
            "force_rms_eV_per_A": float(np.sqrt(np.mean(df ** 2))),
            "force_rel_rms": float(np.sqrt(np.mean(df ** 2) / np.mean(f ** 2)))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-configs", type=int, default=12)
    ap.add_argument("--valid-configs", type=int, default=24)
    ap.add_argument("--max-iter", type=int, default=8)
    ap.add_argument("--seed-list", default="0,1,2", help="fit seeds (the same for every coupling)")
    ap.add_argument("--fit-ranks", default="2,4", help="CP ranks fitted next to the exact coupling")
    ap.add_argument("--speed-ranks", default="2,4,8,16,21", help="CP ranks timed (21: exact for L = 2, v <= 3)")
    ap.add_argument("--agreement-ranks", default="1,2,4,8,21")
    ap.add_argument("--repeat", type=int, default=3, help="bcc cells per side of the timing cell (3: 54 atoms)")
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--parts", default="speed,fit,agreement,report")
    ap.add_argument("--elements", default="Mo,W", help="the subsystem fitted (groups of these elements only)")
    ap.add_argument("--nmax-by-rank", default="2,1", help="n_max of ranks 2, 3 of the fit basis")
    ap.add_argument("--lmax-by-rank", default="2,2", help="l_max of ranks 2, 3 of the fit basis")
    args = ap.parse_args()

    import mlipress  # noqa: F401  (float64)
    from mlipress.fit import TrainSettings, train
    from mlipress.fit.trainer import prepare_sets, rmse
    from mlipress.loss import LossWeights
    from mlipress.models.ace import untrained_ace

    parts = args.parts.split(",")
    elements = tuple(args.elements.split(","))
    fit_ace = untrained_ace(elements, 4, 9, 3, 2, 5.0, nmax=_ints(args.nmax_by_rank), lmax_by_rank=_ints(args.lmax_by_rank))
    command = "python benchmarks/ace_coupling.py " + " ".join(sys.argv[1:])
    if "speed" in parts:
        full = untrained_ace(SPECIES, 4, 9, 3, 2, 5.0)
        specs = ["exact"] + [f"cp:{r}" for r in _ints(args.speed_ranks)]
        bases = {f"{'-'.join(elements)}, n_max {args.nmax_by_rank}, l_max {args.lmax_by_rank}": fit_ace, "full body order 4 (NbMoTaW)": full}
        write_result(SPEED, {"command": command, "machine": machine(1), "speed": speed(bases, specs, args)})

    if "fit" in parts or "agreement" in parts:
        seeds = _ints(args.seed_list)
        name = f"ace_coupling_fit_{'-'.join(map(str, seeds))}.json"
        out = RESULTS / name
        doc = json.loads(out.read_text()) if out.exists() else {"fits": []}
        groups_train, groups_valid = (_subset(g, elements) for g in nbmotaw_groups())
        tr, _ = stratified(groups_train, args.train_configs, args.sample_seed)
        va, _ = stratified(groups_valid, args.valid_configs, args.sample_seed + 1)
        doc.update(command=command, machine=machine(1), elements=list(elements), groups_train=sorted(groups_train),
                   groups_valid=sorted(groups_valid), n_train=len(tr), n_train_atoms=tr.natoms, n_valid=len(va),
                   n_valid_atoms=va.natoms, functions_per_species=len(fit_ace.functions), max_iter=args.max_iter)
        settings = TrainSettings(weights=LossWeights(1.0, 0.01, 0.0), max_iter=args.max_iter, log_every=5, ftol=0.0)
        specs = ["exact"] + [f"cp:{r}" for r in _ints(args.fit_ranks)]
        done = {(r["coupling"], r["seed"]) for r in doc["fits"]}
        want_agreement = "agreement" in parts and 0 in seeds and "agreement" not in doc
        exact_seed0 = None
        for seed in seeds:
            for spec in specs:
                first = spec == "exact" and seed == 0 and want_agreement
                if (spec, seed) in done and not first:
                    continue
                model = fit_ace.with_coupling(spec)
                s = TrainSettings(**{**settings.__dict__, "seed": seed})
                print(f"fit {spec} seed {seed}", flush=True)
                c0 = time.process_time()
                res = train(model, tr, s, out=sys.stdout)
                if first:
                    exact_seed0 = res.params
                if (spec, seed) in done:
                    continue
                _, valid = prepare_sets(model, tr, va, s)
                err = rmse(model, res.params, valid)
                row = {"coupling": spec, "seed": seed, "train_loss": float(res.history[-1]["f"]) if res.history else None,
                       "valid_energy_rmse_meV_per_atom": 1e3 * float(err["energy_rmse"]),
                       "valid_force_rmse_eV_per_A": float(err["force_rmse"]),
                       "cpu_seconds": time.process_time() - c0, "iterations": int(res.state.iteration)}
                doc["fits"].append(row)
                write_result(name, doc)
                print(json.dumps(row), flush=True)
                if first:  # the agreement as soon as the exact fit is there
                    doc["agreement"] = agreement(fit_ace, exact_seed0, va, _ints(args.agreement_ranks))
                    write_result(name, doc)
    if "report" in parts:
        merged = {"command": command, "speed": None, "fits": [], "parts": []}
        files = [RESULTS / SPEED] + sorted(RESULTS.glob("ace_coupling_fit_*.json"))
        for file in files:
            if not file.exists():
                continue
            part = json.loads(file.read_text())
            merged["parts"].append({"file": file.name, "command": part["command"], "machine": part["machine"]})
            for key, value in part.items():
                if key == "fits":
                    merged["fits"] += value
                elif key not in ("command", "machine"):
                    merged[key] = value
        write_result(NAME, merged)
        (RESULTS / "ace_coupling.md").write_text(markdown(merged))
        print(markdown(merged))
    return 0


def agreement(fit_ace, params, data, ranks):
    from mlipress.models.ace.coupling import coupling_report

    rows = []
    for r in ranks:
        model = fit_ace.with_coupling(f"cp:{r}")
        row = {"coupling": model.coupling, **_differences(fit_ace, model, params, data),
               "couplings": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in c.items()}
                             for c in coupling_report(model)]}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "couplings"}), flush=True)
    return rows


def _mean_sd(values):
    values = np.asarray(values, dtype=np.float64)
    sd = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return f"{values.mean():.3g} +- {sd:.2g}"


def markdown(doc) -> str:
    lines = ["# ACE: CP coupling (cp:R) vs exact generalised Clebsch-Gordan coupling", ""]
    for part in doc["parts"]:
        m = part["machine"]
        lines.append(f"- `{part['file']}`: `{part['command']}`; {m['cpu']}, {m['threads']} thread on one pinned core, "
                     f"load {m['load_average_1min_at_start']} at start")
    lines += ["", "Shared, loaded machine: times are process CPU time; speed ratios are within one run.", ""]
    if doc.get("speed"):
        lines += ["## Evaluation speed (E+F+S, one thread)", "",
                  "| basis | B-functions/species | coupling | product terms | expanded base | us/atom | vs exact |",
                  "|---|---|---|---|---|---|---|"]
        ref = {r["basis"]: r["efs_us_per_atom"] for r in doc["speed"] if r["coupling"] == "exact"}
        for r in doc["speed"]:
            lines.append(f"| {r['basis']} | {r['functions']} | {r['coupling']} | {r['terms']} | {r['expanded_base']} | "
                         f"{r['efs_us_per_atom']:.1f} | {r['efs_us_per_atom'] / ref[r['basis']]:.2f} |")
        lines.append("")
    if doc.get("fits"):
        lines += [f"## Fit on the NbMoTaW subset {'-'.join(doc['elements'])}: {doc['n_train']} training configurations ({doc['n_train_atoms']} atoms), "
                  f"{doc['n_valid']} validation from `*_Test` ({doc['n_valid_atoms']} atoms)", "",
                  f"{doc['functions_per_species']} B-functions per species, {doc['max_iter']} BFGS iterations with "
                  "variable projection, the same seeds for every coupling; mean +- 1 sigma over seeds.", "",
                  "| coupling | seeds | train loss | valid E RMSE (meV/atom) | valid F RMSE (eV/A) | CPU s/fit |",
                  "|---|---|---|---|---|---|"]
        for spec in dict.fromkeys(r["coupling"] for r in doc["fits"]):
            rows = [r for r in doc["fits"] if r["coupling"] == spec]
            lines.append(f"| {spec} | {len(rows)} | {_mean_sd([r['train_loss'] for r in rows])} | "
                         f"{_mean_sd([r['valid_energy_rmse_meV_per_atom'] for r in rows])} | "
                         f"{_mean_sd([r['valid_force_rmse_eV_per_A'] for r in rows])} | "
                         f"{np.mean([r['cpu_seconds'] for r in rows]):.0f} |")
        lines.append("")
    if doc.get("agreement"):
        lines += ["## The exact fit (seed 0) evaluated with CP couplings, same coefficients, validation set", "",
                  "| coupling | max abs dE (meV/atom) | rel. RMS dE | RMS dF (eV/A) | rel. RMS dF | "
                  "largest CP error / bound (coupling) |", "|---|---|---|---|---|---|"]
        for r in doc["agreement"]:
            worst = max(r["couplings"], key=lambda c: c["cp_error"])
            lines.append(f"| {r['coupling']} | {r['energy_max_abs_meV_per_atom']:.3g} | {r['energy_rel_rms']:.2e} | "
                         f"{r['force_rms_eV_per_A']:.3g} | {r['force_rel_rms']:.2e} | {worst['cp_error']:.2e} / "
                         f"{worst['bound']:.2e} (ls {tuple(worst['ls'])}, lint {tuple(worst['lint'])}) |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
