"""Compressed ACE on NbMoTaW (section II.F, Figure 10 of the paper): base ACE vs MF ACE.

The paper's setting: N_k = 9, N_rad = 3, L = 2, cutoff 5 A, radial matrices per unordered
species pair ``Chat_p (N_k, N_rad (L+1)) = (9, 9)``: 10 pairs x 81 = 810 dense radial
parameters; MF rank 3 has ``10 x 3 (9 + 9) = 540`` (1.5x fewer), the paper's ratio. The paper
ran this on FLiNaK (not public here); NbMoTaW is the public multi-component set we have.

B-basis (the paper does not give it): body order ``--body-order`` (default 4) with n_max / l_max
per rank ``--nmax-by-rank`` / ``--lmax-by-rank`` (default 3,1 / 2,1: all rank-2 pairs of the
radial functions, a small rank-3 set). Training: a stratified subset of the non-``_Test`` groups
(``--train-configs``), validation: a subset of the ``*_Test`` groups (``--valid-configs``);
w_E = 1, w_F = 0.01, w_S = 0. Every model is an ensemble of ``--seeds`` random starts, each
``--max-iter`` BFGS iterations with variable projection (the same trainer as the MTP; MF:
:func:`mlipress.compress.fit_compressed`). Rows are appended to
``benchmarks/results/ace_compression.json`` after each fit (a partial run is usable; a rerun
skips rows already there); the markdown summary ``ace_compression.md`` gives mean +- 1 sigma.
At the end: E+F+S microseconds per atom of the fitted base ACE next to an MTP (level 16, same
species) on the same 128-atom cell, one thread.

    taskset -c 0 python benchmarks/ace_compression.py --train-configs 40 --valid-configs 60 --max-iter 40
"""

from __future__ import annotations

import os

from _common import ONE_THREAD, RESULTS, machine, nbmotaw_groups  # noqa: E402  (puts the repo on sys.path)
from _common import NBMOTAW_SPECIES as SPECIES  # noqa: E402

os.environ.setdefault("XLA_FLAGS", ONE_THREAD)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from compression_study import stratified  # noqa: E402

OUT = RESULTS / "ace_compression.json"


def _save(doc):
    tmp = OUT.with_name(OUT.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, OUT)


def _ints(text):
    return [int(x) for x in text.split(",")] if text else None


def _us_per_atom(model, params, atoms, calls=5):
    import jax

    from mlipress.batch import build_batch
    from mlipress.io import from_atoms
    from mlipress.models.base import jitted_efs

    batch = build_batch([from_atoms(atoms, SPECIES)], model.cutoff)
    efs = jitted_efs(model)
    jax.block_until_ready(efs(params, batch))
    best = min(_timed(lambda: jax.block_until_ready(efs(params, batch))) for _ in range(calls))
    return 1e6 * best / len(atoms)


def _timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-configs", type=int, default=40)
    ap.add_argument("--valid-configs", type=int, default=60)
    ap.add_argument("--max-iter", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ranks", default="3", help="MF ranks (3: 1.5x fewer radial parameters)")
    ap.add_argument("--body-order", type=int, default=4)
    ap.add_argument("--nmax-by-rank", default="3,1")
    ap.add_argument("--lmax-by-rank", default="2,1")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--skip-timing", action="store_true")
    args = ap.parse_args()

    from mlipress.compress import fit_compressed
    from mlipress.fit import TrainSettings, train
    from mlipress.fit.trainer import prepare_sets, rmse
    from mlipress.loss import LossWeights
    from mlipress.models.ace import untrained_ace

    groups_train, groups_valid = nbmotaw_groups()
    tr, _ = stratified(groups_train, args.train_configs, args.sample_seed)
    va, _ = stratified(groups_valid, args.valid_configs, args.sample_seed + 1)
    ace = untrained_ace(SPECIES, args.body_order, 9, 3, 2, 5.0, _ints(args.nmax_by_rank), _ints(args.lmax_by_rank))
    settings = TrainSettings(weights=LossWeights(1.0, 0.01, 0.0), max_iter=args.max_iter, log_every=5, ftol=0.0)
    doc = json.loads(OUT.read_text()) if OUT.exists() else {"rows": []}
    doc.update(command="python benchmarks/ace_compression.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if not isinstance(v, bool)),
        machine=machine(1), n_train=len(tr), n_valid=len(va), n_train_atoms=tr.natoms, n_valid_atoms=va.natoms,
        functions_per_species=len(ace.functions), radial_shape=list(ace.radial_shape),
        linear_params=ace.num_params()["species"] + ace.num_params()["coeffs"])
    done = {(r["spec"], r["seed"]) for r in doc["rows"]}
    print(f"ACE: {len(ace.functions)} B-functions per species, radial {ace.radial_shape}; "
          f"{len(tr)} training ({tr.natoms} atoms), {len(va)} validation configurations", flush=True)
    specs = ["dense"] + [f"mf:{r}" for r in _ints(args.ranks)]
    results = {}
    for seed in range(args.seeds):
        for spec in specs:
            if (spec, seed) in done:
                continue
            s = TrainSettings(**{**settings.__dict__, "seed": seed})
            t0 = time.perf_counter()
            print(f"fit {spec} seed {seed}", flush=True)
            res = (train(ace, tr, s, out=sys.stdout) if spec == "dense"
                   else fit_compressed(ace, tr, spec, s, out=sys.stdout))
            _, valid = prepare_sets(ace, tr, va, s)
            err = rmse(ace, res.params, valid)
            row = {"spec": spec, "seed": seed, "radial_params": int(res.params.radial.num_params),
                   "train_f": float(res.history[-1]["f"]) if res.history else None,
                   "valid_energy_rmse_meV_per_atom": 1e3 * float(err["energy_rmse"]),
                   "valid_force_rmse_eV_per_A": float(err["force_rmse"]), "seconds": time.perf_counter() - t0,
                   "iterations": int(res.state.iteration)}
            doc["rows"].append(row)
            _save(doc)
            results[(spec, seed)] = res
            print(json.dumps(row), flush=True)
    if not args.skip_timing:
        doc["timing"] = _timing(ace, results, tr)
        _save(doc)
    _report(doc)
    return 0


def _timing(ace, results, tr):
    from ase.build import bulk

    from mlipress.models.mtp import untrained_mtp

    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat((4, 4, 4))
    sym = np.array(SPECIES)[np.arange(len(atoms)) % 4]
    atoms.set_chemical_symbols(sym.tolist())
    atoms.rattle(0.05, seed=1)
    res = next((r for (spec, _), r in results.items() if spec == "dense"), None)
    params = res.params if res is not None else ace.init(0)
    mtp = untrained_mtp(16, 4, 2.0, 5.0)
    return {"atoms": len(atoms), "threads": 1,
            "ace_efs_us_per_atom": _us_per_atom(ace, params, atoms),
            "mtp16_efs_us_per_atom": _us_per_atom(mtp, mtp.init(0), atoms),
            "ace_params": ace.num_params()["total"], "mtp16_params": mtp.num_params()["total"]}


def _report(doc):
    rows = doc["rows"]
    lines = ["# Compressed ACE on NbMoTaW (section II.F, Figure 10)", "",
             f"Command: `{doc['command']}`  ", f"Machine: {doc['machine']['cpu']}, 1 thread, load "
             f"{doc['machine']['load_average_1min_at_start']} at start (shared, loaded machine).", "",
             f"ACE: N_k = 9, N_rad = 3, L = 2, cutoff 5 A, radial matrices {doc['radial_shape']}, "
             f"{doc['functions_per_species']} B-functions per species ({doc['linear_params']} linear parameters). "
             f"Training {doc['n_train']} configurations ({doc['n_train_atoms']} atoms), validation "
             f"{doc['n_valid']} from the `*_Test` groups ({doc['n_valid_atoms']} atoms).", "",
             "| model | radial params | n | valid E RMSE (meV/atom) | valid F RMSE (eV/A) | s/fit |",
             "|---|---|---|---|---|---|"]
    for spec in sorted({r["spec"] for r in rows}, key=lambda s: (s != "dense", s)):
        sel = [r for r in rows if r["spec"] == spec]
        e = np.array([r["valid_energy_rmse_meV_per_atom"] for r in sel])
        f = np.array([r["valid_force_rmse_eV_per_A"] for r in sel])
        sd = (lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else float("nan"))
        lines.append(f"| {'base ACE' if spec == 'dense' else 'MF ACE ' + spec} | {sel[0]['radial_params']} | {len(sel)} | "
                     f"{e.mean():.2f} +- {sd(e):.2f} | {f.mean():.4f} +- {sd(f):.4f} | "
                     f"{np.mean([r['seconds'] for r in sel]):.0f} |")
    if "timing" in doc:
        t = doc["timing"]
        lines += ["", f"E+F+S on a {t['atoms']}-atom NbMoTaW bcc cell, one thread: ACE {t['ace_efs_us_per_atom']:.1f} "
                  f"us/atom ({t['ace_params']} parameters), MTP level 16 {t['mtp16_efs_us_per_atom']:.1f} us/atom "
                  f"({t['mtp16_params']} parameters), same run."]
    lines += ["", "mean +- 1 sigma (sample standard deviation over seeds)."]
    (RESULTS / "ace_compression.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
