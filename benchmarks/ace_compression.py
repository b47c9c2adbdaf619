"""Compressed ACE on NbMoTaW (section II.F, Figure 10 of the paper): base ACE vs MF ACE.

The paper's claim: with N_k = 9, N_rad = 3, L = 2 an MF ACE needs 1.5x fewer radial parameters
for the same accuracy. Its setting here: radial matrices per unordered species pair
``Chat_p (N_k, N_rad (L+1)) = (9, 9)``, 10 pairs x 81 = 810 dense radial parameters; MF rank 3
has ``10 x 3 (9 + 9) = 540`` (1.5x fewer). The paper ran this on FLiNaK (not public here);
NbMoTaW is the public multi-component set we have.

B-basis (the paper does not give it): body order ``--body-order`` (default 4) with n_max / l_max
per rank ``--nmax-by-rank`` / ``--lmax-by-rank`` (default 3,1 / 2,1: every rank-2 pair of the
radial functions and a small rank-3 set; 330 B-functions per species, 2134 parameters).

Data: a stratified subset (:func:`compression_study.stratified`) of ``--train-configs`` of the
non-``_Test`` groups; validation: all ``*_Test`` configurations (``--valid-configs`` 0).
Weights w_E = 1, w_F = 0.01, w_S = 0 (paper). ACE fits carry an L2 term of the linear
coefficients (``--ace-coefficient-l2``, default the command line's 1e-8, species energies exempt):
without it the ~1300 coefficients fitted to ~130 configurations extrapolate to the binary test
groups by eV/atom (docs/ace.md, "Regularisation"). The MTP, as MLIP, has none.

Optimiser: MLIP's scheme for every model (BFGS on all coefficients from an untrained start,
exact linear solves every 50 iterations, no pre-training phase, ``--max-iter`` iterations), not
variable projection: an exact solve of the 1320 ACE coefficients costs ~13 training passes, so
solving at every evaluation would make each ACE iteration ~10x dearer than the MTP's. The MTP
of comparable size (``--mtp-level``, default 16) is fitted on the same data the same way.

Models, in order (seed-major, so a partial run has every model at fewer seeds): base ACE,
MF ACE ``mf:3``, the MTP; then the MF rank sweep (``--sweep-ranks``). Every fit appends a row
(validation metrics, learning curve) to ``benchmarks/results/ace_compression.json`` and saves
its potential in ``benchmarks/results/ace_models/``; a rerun skips the rows already there
(``--budget`` stops starting fits after that many seconds). ``--report-only`` rewrites
``ace_compression.md``: mean +- 1 sigma, median [IQR], learning curves, a verdict per model.
At the end: E+F+S microseconds per atom of the fitted ACE next to the MTP on a 128-atom cell.

    taskset -c 1 python benchmarks/ace_compression.py            # ~12 min per ACE fit, one core
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

from compression_study import _fmt, _verdict, robust_tables, save, stratified  # noqa: E402

OUT = RESULTS / "ace_compression.json"
MODELS = RESULTS / "ace_models"
MD = RESULTS / "ace_compression.md"


def _ints(text):
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def _label(row) -> str:
    if row["model"] != "ace":
        return f"MTP level {row['model'][3:]}"
    return "base ACE" if row["spec"] == "dense" else f"MF ACE (rank {row['rank']})"


def plan(seeds: int, sweep_ranks, mtp_level: int) -> list[tuple[str, str, str, int]]:
    """(model, role, spec, seed) in execution order."""
    jobs = []
    for seed in range(seeds):
        jobs += [("ace", "base", "dense", seed), ("ace", "half", "mf:3", seed), (f"mtp{mtp_level}", "mtp", "dense", seed)]
    for seed in range(seeds):
        jobs += [("ace", "sweep", f"mf:{r}", seed) for r in sweep_ranks if r != 3]
    return jobs


def run(args) -> dict:
    import mlipress  # noqa: F401  (float64)
    from mlipress.compress.sweep import fit_row
    from mlipress.fit import TrainSettings
    from mlipress.loss import LossWeights, prepare
    from mlipress.models.ace import untrained_ace
    from mlipress.models.mtp import untrained_mtp

    groups_train, groups_valid = nbmotaw_groups()
    tr, tr_counts = stratified(groups_train, args.train_configs, args.sample_seed)
    va, va_counts = stratified(groups_valid, args.valid_configs, args.sample_seed + 1)
    ace = untrained_ace(SPECIES, args.body_order, 9, 3, 2, 5.0, _ints(args.nmax_by_rank), _ints(args.lmax_by_rank))
    mtp = untrained_mtp(args.mtp_level, len(SPECIES), 2.0, 5.0)
    models = {"ace": ace, f"mtp{args.mtp_level}": mtp}
    config = {k: v for k, v in vars(args).items() if k not in ("report_only", "budget", "notes", "skip_timing")}
    config.update(weights={"energy": 1.0, "force": 0.01, "stress": 0.0}, variable_projection=False,
                  linear_solve_every=50, pretrain_iters=0)
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    if doc.get("config") and {k: doc["config"].get(k) for k in config} != config:
        sys.exit(f"{OUT} was made with other settings ({doc['config']}); move it away to start a new study")
    rows = doc.get("rows", [])
    doc = {"benchmark": "ace_compression", "config": config, "rows": rows, "machine": machine(1),
           "sizes": {"train": len(tr), "train_atoms": tr.natoms, "valid": len(va), "valid_atoms": va.natoms,
                     "train_groups": tr_counts, "valid_groups": va_counts},
           "ace": {"functions_per_species": len(ace.functions), "radial_shape": list(ace.radial_shape),
                   "params": ace.num_params()},
           "mtp": {"level": args.mtp_level, "radial_shape": list(mtp.radial_shape), "params": mtp.num_params()},
           **{k: doc[k] for k in ("timing",) if k in doc}}
    done = {(r["model"], r["spec"], r["seed"]) for r in rows}
    print(f"ACE: {len(ace.functions)} B-functions per species, radial {ace.radial_shape}, "
          f"{ace.num_params()['total']} parameters; MTP level {args.mtp_level}: {mtp.num_params()['total']}; "
          f"{len(tr)} training ({tr.natoms} atoms), {len(va)} validation ({va.natoms} atoms)", flush=True)
    weights = {name: LossWeights(1.0, 0.01, 0.0, coefficient_l2=args.ace_coefficient_l2 if name == "ace" else 0.0)
               for name in models}
    settings = {name: TrainSettings(weights=w, max_iter=args.max_iter, pretrain_iters=0, linear_solve_every=50,
                                    variable_projection=False, log_every=0, max_atoms=256, ftol=0.0)
                for name, w in weights.items()}
    prepared = {}
    MODELS.mkdir(exist_ok=True)
    t_start = time.perf_counter()
    for name, role, spec, seed in plan(args.seeds, _ints(args.sweep_ranks), args.mtp_level):
        if (name, spec, seed) in done:
            continue
        if args.budget and time.perf_counter() - t_start > args.budget:
            print(f"time budget {args.budget:g} s used up; stopping (partial study, rerun to continue)", flush=True)
            break
        model = models[name]
        if name not in prepared:
            prepared[name] = prepare(va, model, weights[name], max_atoms=256)
        path = MODELS / f"{name}_{spec.replace(':', '-')}_s{seed}.{'yaml' if name == 'ace' else 'mtp'}"
        row = fit_row(model, tr, va, spec, seed, settings[name], valid_prepared=prepared[name], save=path,
                      curve_every=max(args.max_iter // 20, 1))
        row.update(model=name, role=role)
        rows.append(row)
        save(OUT, doc)
        print(f"{_label(row):22s} seed {seed}: {row['radial_params']:4d} radial params  valid f {row['valid_loss']:.4e}  "
              f"E {row['energy_rmse_meV_per_atom']:8.2f} (MAE {row['energy_mae_meV_per_atom']:7.2f}) meV/atom  "
              f"F {row['force_rmse_eV_per_A']:.4f} eV/A  [{row['seconds']:.0f} s, total "
              f"{time.perf_counter() - t_start:.0f} s]", flush=True)
    else:
        if not args.skip_timing and "timing" not in doc:
            doc["timing"] = _timing(ace, mtp, args.mtp_level)
            save(OUT, doc)
    return doc


def _us_per_atom(model, atoms, calls=5):
    import jax

    from mlipress.batch import build_batch
    from mlipress.io import from_atoms
    from mlipress.models.base import jitted_efs

    batch = build_batch([from_atoms(atoms, SPECIES)], model.cutoff)
    efs = jitted_efs(model)
    params = model.params()
    jax.block_until_ready(efs(params, batch))
    best = float("inf")
    for _ in range(calls):
        t = time.perf_counter()
        jax.block_until_ready(efs(params, batch))
        best = min(best, time.perf_counter() - t)
    return 1e6 * best / len(atoms)


def _timing(ace, mtp, level: int) -> dict:
    """E+F+S of the seed-0 fitted ACE and MTP on the same rattled 128-atom bcc cell, one thread."""
    from ase.build import bulk

    from mlipress.io import read_potential

    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat((4, 4, 4))
    atoms.set_chemical_symbols(np.array(SPECIES)[np.arange(len(atoms)) % 4].tolist())
    atoms.rattle(0.05, seed=1)
    fitted = {}
    for key, default, suffix in (("ace", ace, "ace_dense_s0.yaml"), ("mtp", mtp, f"mtp{level}_dense_s0.mtp")):
        path = MODELS / suffix
        fitted[key] = read_potential(path) if path.exists() else default
    return {"atoms": len(atoms), "threads": 1, "machine": machine(1),
            "ace_efs_us_per_atom": _us_per_atom(fitted["ace"], atoms),
            "mtp_efs_us_per_atom": _us_per_atom(fitted["mtp"], atoms),
            "ace_params": ace.num_params()["total"], "mtp_params": mtp.num_params()["total"]}


def report(doc: dict, notes: str | None = None) -> None:
    from mlipress.compress.sweep import aggregate

    rows, cfg, sz = doc["rows"], doc["config"], doc["sizes"]
    a, m = doc["ace"], doc["mtp"]
    lines = [
        "# Compressed ACE on NbMoTaW (section II.F, Figure 10)", "",
        "Produced by `benchmarks/ace_compression.py` (rows: `ace_compression.json`, potentials: `ace_models/`). "
        f"Machine: {doc['machine']['cpu']}, one thread per fit, shared (load {doc['machine']['load_average_1min_at_start']:.1f} "
        "at start), so seconds are indicative.", "",
        f"- ACE: N_k = 9, N_rad = 3, L = 2 (ChebExpCos, cutoff 5 A), body order {cfg['body_order']}, n_max by rank "
        f"{cfg['nmax_by_rank']}, l_max by rank {cfg['lmax_by_rank']}: {a['functions_per_species']} B-functions per "
        f"species, radial matrices {tuple(a['radial_shape'])} = {np.prod(a['radial_shape'])} radial parameters, "
        f"{a['params']['total']} in total. MF rank 3: 540 radial parameters (1.5x fewer, the paper's ratio).",
        f"- MTP level {m['level']} for comparison: radial tensor {tuple(m['radial_shape'])} = "
        f"{np.prod(m['radial_shape'])} radial parameters, {m['params']['total']} in total.",
        f"- Training: {sz['train']} configurations ({sz['train_atoms']} atoms), stratified over the "
        f"{len(sz['train_groups'])} non-`_Test` groups (sample seed {cfg['sample_seed']}); validation: "
        f"{sz['valid']} configurations ({sz['valid_atoms']} atoms) of the `*_Test` groups.",
        f"- Every fit: untrained start (seed = ensemble member), {cfg['max_iter']} BFGS iterations on all "
        "coefficients with exact linear solves every 50 (MLIP's scheme; variable projection is ~10x dearer per "
        "ACE iteration, see the docstring), weights w_E = 1, w_F = 0.01, w_S = 0; ACE with L2 "
        f"{cfg.get('ace_coefficient_l2', 0)} of its linear coefficients (species energies exempt), the MTP with none.", "",
        "| model | radial params | total params | n | validation loss f | E RMSE (meV/atom) | F RMSE (eV/Å) | "
        "E MAE (meV/atom) | F MAE (eV/Å) | s/fit |", "|---|---|---|---|---|---|---|---|---|---|"]
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["spec"]), []).append(r)
    order = sorted(groups, key=lambda k: (k[0] != "ace", k[1] != "dense", k[1]))
    stats = {}
    for key in order:
        rs = groups[key]
        (e,) = aggregate(rs)
        stats[key] = e
        family = a if key[0] == "ace" else m
        total = family["params"]["total"] - int(np.prod(family["radial_shape"])) + e["radial_params"]
        lines.append(f"| {_label(rs[0])} | {e['radial_params']} | {total} | {e['valid_loss']['n']} | "
                     f"{_fmt(e['valid_loss'])} | {_fmt(e['energy_rmse_meV_per_atom'])} | {_fmt(e['force_rmse_eV_per_A'])} | "
                     f"{_fmt(e['energy_mae_meV_per_atom'])} | {_fmt(e['force_mae_eV_per_A'])} | "
                     f"{np.mean([r['seconds'] for r in rs]):.0f} |")
    lines += ["", "mean ± 1σ over the seeds (sample std, ddof = 1; column n).", ""]
    lines += robust_tables([r for r in rows if r["model"] == "ace"], "ACE", _label)
    lines += robust_tables([r for r in rows if r["model"] != "ace"], f"MTP level {m['level']}", _label)
    if "timing" in doc:
        t = doc["timing"]
        lines += [f"Speed: E+F+S on a {t['atoms']}-atom NbMoTaW bcc cell, one thread, same run: fitted base ACE "
                  f"{t['ace_efs_us_per_atom']:.1f} µs/atom ({t['ace_params']} parameters), MTP level {m['level']} "
                  f"{t['mtp_efs_us_per_atom']:.1f} µs/atom ({t['mtp_params']} parameters).", ""]
    base = stats.get(("ace", "dense"))
    lines += ["## What it shows", ""]
    if base:
        for key in order:
            if key == ("ace", "dense"):
                continue
            e = stats[key]
            for metric, name in (("valid_loss", "validation loss"), ("energy_rmse_meV_per_atom", "E RMSE"),
                                 ("force_rmse_eV_per_A", "F RMSE")):
                v, b = e[metric], base[metric]
                if v["mean"] is None or b["mean"] is None:
                    continue
                diff = v["mean"] - b["mean"]
                word = _verdict(diff, (v["std"] ** 2 + b["std"] ** 2) ** 0.5, v["n"], b["n"])
                lines.append(f"- {_label(groups[key][0])} ({e['radial_params']} radial params), {name}: "
                             f"{100 * diff / b['mean']:+.1f}% vs base ACE -> **{word}** (n = {v['n']} vs {b['n']})")
        lines.append("")
    if notes:
        lines += [open(notes).read()]
    from mlipress.io.atomic import atomic_write

    atomic_write(MD, "\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-configs", type=int, default=130)
    ap.add_argument("--valid-configs", type=int, default=0, help="0 = all *_Test configurations")
    ap.add_argument("--max-iter", type=int, default=400)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sweep-ranks", default="2,5", help="extra MF ranks after the main models ('' = none)")
    ap.add_argument("--mtp-level", type=int, default=16)
    ap.add_argument("--body-order", type=int, default=4)
    ap.add_argument("--nmax-by-rank", default="3,1")
    ap.add_argument("--lmax-by-rank", default="2,1")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--ace-coefficient-l2", type=float, default=1e-8,
                    help="L2 of the ACE linear coefficients (default 1e-8, as mlipress train; the MTP gets 0)")
    ap.add_argument("--notes", help="markdown file appended to the report (conclusions)")
    ap.add_argument("--budget", type=float, default=0, help="stop starting fits after this many seconds (0 = none)")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    doc = json.loads(OUT.read_text()) if args.report_only else run(args)
    report(doc, args.notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
