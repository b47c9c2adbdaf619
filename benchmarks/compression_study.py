"""Compression study on NbMoTaW: does ~50% radial compression keep the base MTP's accuracy?

The paper's main claim (sections III.B-D): MF, R-MF, TF and MFRA MTPs with about half of
the radial parameters fit Mo-Nb-Ta-W as well as the base MTP (and better at the "optimal"
rank, the minimum validation loss with >= 20% compression), for levels >= 14; at level 12
compression is neutral or slightly worse.

Data: the public mlearn NbMoTaW set (``$MLIPRESS_SHARED_DATA/nbmotaw`` or
``/work/shared/data/nbmotaw``), types Nb Mo Ta W. Training: the groups not ending in
``_Test``; validation: the ``*_Test`` groups. Random subsets stratified over groups
(round-robin over shuffled groups, ``--sample-seed``) of ``--train-configs`` and
``--valid-configs`` configurations (0 = all). Weights w_E = 1, w_F = 0.01, w_S = 0 (paper).

Per level (``--levels``): the base MTP and MF, R-MF, TF, MFRA at the rank closest to 50% of
the radial parameters (:func:`mlipress.models.layers.rank_for_compression`), each an ensemble of
``--seeds`` random starts (untrained template, scaling search, ``--max-iter`` BFGS
iterations, no pre-training phase so that every model gets the same iteration budget; MFRA
interval auto = 4% of max_iter, r_min = delta_r = 2). Then, with ``--sweep-ranks``, an MF
rank sweep for the "optimal" rank (section III.B) and the Figure-2-like plot.

Every fit appends a row to ``benchmarks/results/compression_study.json`` (written after
each fit, so a partial study is usable, and a rerun skips the rows already there unless
``--fresh``). ``--report-only`` regenerates the plots and ``compression_study.md`` from it.

One thread (XLA flags set before importing JAX); run it as
``taskset -c 0 python benchmarks/compression_study.py``. Full-size rerun (GPU or cluster)::

    python benchmarks/compression_study.py --train-configs 0 --valid-configs 0 --max-iter 1500 \\
        --seeds 5 --levels 12,16 --sweep-ranks 2,4,6,8,10 --fresh
"""

from __future__ import annotations

import os

from _common import ONE_THREAD, RESULTS, nbmotaw_dir, nbmotaw_groups  # noqa: E402  (puts the repo on sys.path)
from _common import NBMOTAW_SPECIES as SPECIES  # noqa: E402

os.environ.setdefault("XLA_FLAGS", ONE_THREAD)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

KINDS = ("dense", "mf", "rmf", "tt", "mfra", "ttra")
VERDICT_METRICS = {"valid_loss": "validation loss", "energy_mae_meV_per_atom": "E MAE",
                   "force_mae_eV_per_A": "F MAE"}
LABEL = {"dense": "base", "mf": "MF", "rmf": "R-MF", "tt": "TF", "mfra": "MFRA", "ttra": "TFRA"}
#: the fixed-rank kind whose ~50% rank a rank-adaptive kind grows to
FIXED = {"mfra": "mf", "ttra": "tt"}


def stratified(groups: dict, n: int, seed: int):
    """Round-robin over the (shuffled) groups until ``n`` configurations (0 or more than
    available: all). Returns (Dataset, {group: count})."""
    import numpy as np

    from mlipress.data import Dataset

    rng = np.random.default_rng(seed)
    names = sorted(groups)
    order = {g: list(rng.permutation(len(groups[g]))) for g in names}
    total = sum(len(groups[g]) for g in names)
    n = total if n <= 0 or n >= total else n
    picked = {g: [] for g in names}
    count = 0
    while count < n:
        for g in names:
            if order[g] and count < n:
                picked[g].append(order[g].pop(0))
                count += 1
    configs, labels = [], []
    for g in names:
        for i in sorted(picked[g]):
            configs.append(groups[g].configurations[i])
            labels.append(g)
    return Dataset(tuple(configs), SPECIES, tuple(labels)), {g: len(picked[g]) for g in names if picked[g]}


def load(ddir: Path, n_train: int, n_valid: int, seed: int):
    train, valid = nbmotaw_groups(ddir)
    tr, tr_counts = stratified(train, n_train, seed)
    va, va_counts = stratified(valid, n_valid, seed + 1)
    return tr, va, tr_counts, va_counts


def key_of(row) -> tuple:
    return (row["level"], row["spec"], row["seed"])


def save(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def plan(levels, kinds, seeds, sweep_ranks, sweep_seeds=None, first_seed=0):
    """The fits in execution order: level by level; within a level the main models with seeds
    outer (a partial run has every model at fewer seeds rather than some models at none), then
    the MF rank sweep (``sweep_seeds`` seeds, default ``seeds``)."""
    from mlipress.models.mtp.basis import untrained_mtp
    from mlipress.compress.sweep import make_spec
    from mlipress.models.layers import rank_for_compression

    sweep_seeds = seeds if sweep_seeds is None else sweep_seeds
    jobs = []
    for level in levels:
        shape = untrained_mtp(level, len(SPECIES), 1.5, 5.0).radial_shape
        specs = []
        for kind in kinds:
            rank = None if kind == "dense" else rank_for_compression(shape, 0.5, FIXED.get(kind, kind))
            specs.append(("half" if kind != "dense" else "base", make_spec(kind, rank, shape)))
        for seed in range(first_seed, seeds):
            jobs += [(level, role, spec, seed) for role, spec in specs]
        half = rank_for_compression(shape, 0.5, "mf")
        for seed in range(sweep_seeds):
            jobs += [(level, "sweep", make_spec("mf", r, shape), seed) for r in sweep_ranks if r != half]
    return jobs


def run(args) -> None:
    import mlipress  # noqa: F401  (float64)
    from mlipress.models.mtp.basis import untrained_mtp
    from mlipress.compress.sweep import fit_row
    from mlipress.loss import LossWeights, prepare
    from mlipress.fit import TrainSettings

    out = RESULTS / args.json
    doc = json.loads(out.read_text()) if out.exists() and not args.fresh else {}
    config = {"command": " ".join(sys.argv), "ftol": args.ftol, "train_configs": args.train_configs, "valid_configs": args.valid_configs, "max_iter": args.max_iter,
              "seeds": args.seeds, "levels": args.levels, "sample_seed": args.sample_seed,
              "weights": {"energy": 1.0, "force": 0.01, "stress": 0.0}, "pretrain_iters": 0,
              "linear_solve_every": 50, "variable_projection": True, "max_atoms": args.max_atoms, "mfra_interval": "auto (4% of max_iter)", "kinds": args.kinds,
              "sweep_ranks": args.sweep_ranks}
    if doc and doc.get("config", {}).get("sizes") is not None:
        old = {k: doc["config"].get(k) for k in ("train_configs", "valid_configs", "max_iter", "sample_seed")}
        if old != {k: config[k] for k in old}:
            sys.exit(f"{out} was made with {old}; use --fresh or another --json")
    rows = doc.get("rows", [])
    done = {key_of(r) for r in rows}
    train, valid, tr_counts, va_counts = load(nbmotaw_dir(args.data), args.train_configs, args.valid_configs,
                                              args.sample_seed)
    config["sizes"] = {"train": len(train), "train_atoms": train.natoms, "valid": len(valid),
                       "valid_atoms": valid.natoms, "train_groups": tr_counts, "valid_groups": va_counts}
    import jax

    doc = {"benchmark": "compression_study", "config": config, "rows": rows,
           "machine": {"platform": platform.platform(), "jax": jax.__version__,
                       "xla_flags": os.environ.get("XLA_FLAGS", ""), "cpu_count": os.cpu_count(),
                       "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}}
    print(f"training {len(train)} configs ({train.natoms} atoms), validation {len(valid)} ({valid.natoms} atoms)",
          flush=True)
    weights = LossWeights(energy=1.0, force=0.01, stress=0.0)
    # variable projection (exact linear coefficients at every evaluation) for every model, so that
    # the study compares radial parametrisations with the same optimiser principle
    settings = TrainSettings(weights=weights, max_iter=args.max_iter, pretrain_iters=0, linear_solve_every=50,
                             log_every=0, max_atoms=args.max_atoms, variable_projection=True, ftol=args.ftol)
    mtps = {L: untrained_mtp(L, len(SPECIES), 1.5, 5.0) for L in args.levels}
    prepared = {}
    t_start = time.perf_counter()
    for level, role, spec, seed in plan(args.levels, args.kinds, args.seeds, args.sweep_ranks,
                                          args.sweep_seeds, args.first_seed):
        if (level, str(spec), seed) in done:
            continue
        if args.budget and time.perf_counter() - t_start > args.budget:
            print(f"time budget {args.budget} s used up; stopping (partial study)", flush=True)
            break
        mtp = mtps[level]
        if level not in prepared:
            prepared[level] = prepare(valid, mtp, weights, max_atoms=settings.max_atoms)
        models = RESULTS / "compression_models"
        models.mkdir(exist_ok=True)
        model_path = models / f"{Path(args.json).stem}_L{level}_{str(spec).replace(':', '-').replace(',', '-')}_s{seed}.mtp"
        row = fit_row(mtp, train, valid, spec, seed, settings, valid_prepared=prepared[level], save=model_path,
                      curve_every=args.curve_every or max(args.max_iter // 20, 1))
        row.update(level=level, role=role)
        rows.append(row)
        done.add(key_of(row))
        save(out, doc)
        print(f"L{level} {str(spec):10s} seed {seed}: {row['radial_params']:4d} radial params "
              f"({100 * row['compression']:5.1f}% compression)  valid f {row['valid_loss']:.4e}  "
              f"E {row['energy_rmse_meV_per_atom']:7.2f} (MAE {row['energy_mae_meV_per_atom']:6.2f}) meV/atom  "
              f"F {row['force_rmse_eV_per_A']:.4f} eV/A  "
              f"[{row['seconds']:.0f} s, {row['iterations']} it, total {time.perf_counter() - t_start:.0f} s]",
              flush=True)
    report(doc, args)


def _fmt(ms, scale=1.0, digits=3):
    if ms is None or ms.get("mean") is None:
        return "n/a"
    return f"{ms['mean'] * scale:.{digits}g} ± {ms['std'] * scale:.2g}"


def _verdict(diff: float, tol: float, n_model: int = 2, n_base: int = 2) -> str:
    """Mean difference (model - base) against the combined 1-sigma ``tol``.

    With a single seed on either side there is no spread to compare against, so no verdict."""
    if min(n_model, n_base) < 2:
        return f"no verdict yet: single seed (value {'lower' if diff < 0 else 'higher'})"
    if diff < -tol:
        return "better than base (beyond 1σ)"
    if diff > tol:
        return "worse than base (beyond 1σ)"
    return f"not distinguishable from base within 1σ (mean {'lower' if diff < 0 else 'higher'})"


def _quartiles(values) -> str:
    import numpy as np

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not v.size:
        return "n/a"
    q1, q2, q3 = np.percentile(v, [25, 50, 75])
    return f"{q2:.3g} [{q1:.3g}, {q3:.3g}]"


def robust_tables(rows: list, title: str, label=None) -> list:
    """Medians and interquartile ranges per model (robust to the single extrapolation failures
    that dominate the means), and the learning curves: median over seeds of the validation
    errors at the logged iterations. ``title``: what the rows are (e.g. "level 12");
    ``label(row)``: the model's name in the tables (default: the kind's)."""
    label = label or (lambda r: LABEL.get(r["kind"], r["kind"]))
    if not rows:
        return []
    specs = sorted({(r["kind"], r["spec"]) for r in rows}, key=lambda k: KINDS.index(k[0]) if k[0] in KINDS else 99)
    names = {r["spec"]: label(r) for r in rows}
    lines = [f"### {title[:1].upper() + title[1:]}: median [first quartile, third quartile] over seeds", "",
             "| model | spec | n | validation loss f | E RMSE (meV/atom) | F RMSE (eV/Å) | E MAE (meV/atom) | "
             "iterations | stop |", "|---|---|---|---|---|---|---|---|---|"]
    for kind, spec in specs:
        rs = [r for r in rows if r["spec"] == spec]
        stops = sorted({r.get("stop_reason", "") for r in rs})
        lines.append(f"| {names[spec]} | `{spec}` | {len(rs)} | {_quartiles(r['valid_loss'] for r in rs)} | "
                     f"{_quartiles(r['energy_rmse_meV_per_atom'] for r in rs)} | "
                     f"{_quartiles(r['force_rmse_eV_per_A'] for r in rs)} | "
                     f"{_quartiles(r['energy_mae_meV_per_atom'] for r in rs)} | "
                     f"{_quartiles(r['iterations'] for r in rs)} | {', '.join(stops)} |")
    curves = {spec: [r["curve"] for r in rows if r["spec"] == spec and r.get("curve")] for _, spec in specs}
    its = sorted({p[0] for cs in curves.values() for c in cs for p in c})
    if its:
        import numpy as np

        shown = its[:: max(len(its) // 8, 1)] + ([its[-1]] if its[:: max(len(its) // 8, 1)][-1] != its[-1] else [])
        lines += ["", f"Learning curves, {title}: median over seeds of the validation E RMSE (meV/atom) / "
                  "F RMSE (eV/Å) at iteration", "",
                  "| model | " + " | ".join(str(i) for i in shown) + " |", "|---|" + "---|" * len(shown)]
        for kind, spec in specs:
            cells = []
            for i in shown:
                pts = [p for c in curves[spec] for p in c if p[0] == i]
                cells.append(f"{np.median([p[2] for p in pts]):.3g} / {np.median([p[3] for p in pts]):.3g}" if pts else "-")
            lines.append(f"| {names[spec]} `{spec}` | " + " | ".join(cells) + " |")
    return lines + [""]


def report(doc: dict, args) -> None:
    """Plots per level and the markdown report from the JSON rows."""
    from mlipress.compress.plot import plot_sweep
    from mlipress.compress.sweep import aggregate, choose_ranks

    rows = doc["rows"]
    cfg = doc["config"]
    lines = ["# Compression study: NbMoTaW, base vs MF / R-MF / TF / MFRA", ""]
    sz = cfg.get("sizes", {})
    lines += [
        "Produced by `benchmarks/compression_study.py` (raw rows: `benchmarks/results/"
        f"{args.json}`). Reduced size, CPU, one thread:",
        "",
        f"- training: {sz.get('train')} configurations ({sz.get('train_atoms')} atoms), a random subset stratified "
        f"over the {len(sz.get('train_groups', {}))} non-`_Test` groups of the mlearn NbMoTaW set (sample seed "
        f"{cfg['sample_seed']});",
        f"- validation: {sz.get('valid')} configurations ({sz.get('valid_atoms')} atoms) from the "
        f"{len(sz.get('valid_groups', {}))} `*_Test` groups;",
        f"- every model: untrained start, scaling search, {cfg['max_iter']} iterations (no pre-training phase, so "
        "all models get the same budget) of BFGS (base, MF, TF) or Riemannian BFGS (R-MF, MFRA) on the radial "
        "part, the species and moment coefficients solved exactly at every evaluation (variable projection, "
        "the same for all five); MFRA interval auto (4% of max_iter), r_min = Δr = 2; weights w_E = 1, "
        "w_F = 0.01, w_S = 0;" if cfg.get("variable_projection") else
        f"- every model: untrained start, scaling search, {cfg['max_iter']} BFGS iterations (no pre-training "
        "phase, so all models get the same budget), exact linear solves every 50 iterations (base, MF, TF), "
        "MFRA interval auto (4% of max_iter), r_min = Δr = 2; weights w_E = 1, w_F = 0.01, w_S = 0;",
        f"- ensembles of up to {max((sum(1 for q in rows if key_of(q)[:2] == key_of(r)[:2]) for r in rows), default=0)}"
        " seeds; mean ± 1σ (sample std, ddof = 1) over the seeds that "
        "finished (column n).",
        "- validation loss f = the training objective (same weights, penalty included) on the validation set; "
        "energy RMSE per atom, force RMSE per Cartesian component; the MAEs show the typical error when a "
        "few badly extrapolated validation configurations dominate the loss and the RMSEs.",
        "",
    ]
    verdicts = []
    for level in sorted({r["level"] for r in rows}):
        lr = [r for r in rows if r["level"] == level]
        agg = aggregate(lr)
        base = next((e for e in agg if e["kind"] == "dense"), None)
        nbase = lr[0]["base_radial_params"]
        lines += [f"## Level {level} (base: {nbase} radial parameters)", "",
                  "| model | rank | radial params | compression | n | validation loss f | E RMSE (meV/atom) | "
                  "F RMSE (eV/Å) | E MAE (meV/atom) | F MAE (eV/Å) | train f |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        main = [e for e in agg if e["kind"] == "dense" or any(r["role"] == "half" and r["spec"] == e["spec"] for r in lr)]
        main.sort(key=lambda e: KINDS.index(e["kind"]))
        for e in main:
            rank = "-" if e["rank"] is None else (",".join(map(str, e["rank"])) if isinstance(e["rank"], list) else e["rank"])
            lines.append(f"| {LABEL[e['kind']]} | {rank} | {e['radial_params']} | {100 * e['compression']:.0f}% | "
                         f"{e['valid_loss']['n']} | {_fmt(e['valid_loss'])} | "
                         f"{_fmt(e['energy_rmse_meV_per_atom'])} | {_fmt(e['force_rmse_eV_per_A'])} | "
                         f"{_fmt(e['energy_mae_meV_per_atom'])} | {_fmt(e['force_mae_eV_per_A'])} | "
                         f"{_fmt(e['train_loss'])} |")
        lines.append("")
        mf = [e for e in agg if e["kind"] == "mf"]
        chosen = choose_ranks(mf, nbase) if len(mf) > 1 else {"optimal": None, "half": None}
        if len(mf) > 1:
            lines += [f"MF rank sweep (level {level}):", "",
                      "| MF rank | radial params | compression | n | validation loss f | E RMSE (meV/atom) | F RMSE (eV/Å) |",
                      "|---|---|---|---|---|---|---|"]
            for e in mf:
                tag = []
                if chosen["optimal"] is e:
                    tag.append("optimal")
                if chosen["half"] is e:
                    tag.append("~50%")
                lines.append(f"| {e['rank']}{' (' + ', '.join(tag) + ')' if tag else ''} | {e['radial_params']} | "
                             f"{100 * e['compression']:.0f}% | {e['valid_loss']['n']} | {_fmt(e['valid_loss'])} | "
                             f"{_fmt(e['energy_rmse_meV_per_atom'])} | {_fmt(e['force_rmse_eV_per_A'])} |")
            png = RESULTS / f"compression_L{level}_mf_ranks.png"
            plot_sweep(mf, png, base=base["valid_loss"] if base else None, chosen=chosen,
                       title=f"NbMoTaW, level {level}: MF validation loss vs rank")
            lines += ["", f"![MF rank sweep, level {level}]({png.name})", ""]
        # verdicts: compare each compressed model with the base within 1 sigma, per metric
        if base and base["valid_loss"]["mean"] is not None:
            named = [(LABEL[e["kind"]], e) for e in main if e["kind"] != "dense"]
            if chosen.get("optimal") is not None:
                named.append((f"MF optimal (r={chosen['optimal']['rank']})", chosen["optimal"]))
            for name, e in named:
                for metric in VERDICT_METRICS:
                    v, b = e[metric], base[metric]
                    if v["mean"] is None or b["mean"] is None:
                        continue
                    diff = v["mean"] - b["mean"]
                    tol = (v["std"] ** 2 + b["std"] ** 2) ** 0.5
                    verdicts.append((level, name, e["radial_params"], metric, diff / b["mean"], _verdict(diff, tol, v["n"], b["n"]),
                                     v["n"], b["n"]))
    for level in sorted({r["level"] for r in rows}):
        lines += robust_tables([r for r in rows if r["level"] == level and r["role"] != "sweep"], f"level {level}")
    lines += ["## What it shows", ""]
    if verdicts:
        lines += ["Each compressed ensemble relative to the base ensemble (difference of the means; \"within 1σ\" "
                  "= |difference| <= sqrt(σ_model² + σ_base²)):", ""]
        for level, name, n, metric, rel, word, nm, nb in verdicts:
            lines.append(f"- level {level}, {name} ({n} radial params), {VERDICT_METRICS[metric]}: {100 * rel:+.1f}% "
                         f"-> **{word}** (n = {nm} vs {nb} seeds)")
        lines.append("")
    if getattr(args, "notes", None):
        lines += ["", Path(args.notes).read_text()]
    (RESULTS / args.md).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="NbMoTaW directory (default: shared data)")
    p.add_argument("--levels", default="12,16", help="MTP levels (default 12,16)")
    p.add_argument("--kinds", default=",".join(KINDS), help="models (default dense,mf,rmf,tt,mfra,ttra)")
    p.add_argument("--seeds", type=int, default=3, help="ensemble size (default 3)")
    p.add_argument("--train-configs", dest="train_configs", type=int, default=60, help="0 = all")
    p.add_argument("--valid-configs", dest="valid_configs", type=int, default=80, help="0 = all")
    p.add_argument("--max-iter", dest="max_iter", type=int, default=120)
    p.add_argument("--sweep-ranks", dest="sweep_ranks", default="2,4,8",
                   help="extra MF ranks for the optimal-rank sweep (the ~50%% rank is always included; '' = none)")
    p.add_argument("--max-atoms", dest="max_atoms", type=int, default=256,
                   help="atoms per evaluation chunk (memory bound; default 256)")
    p.add_argument("--sweep-seeds", dest="sweep_seeds", type=int, help="seeds per sweep rank (default --seeds)")
    p.add_argument("--notes", help="markdown file appended to the report (conclusions)")
    p.add_argument("--sample-seed", dest="sample_seed", type=int, default=0)
    p.add_argument("--first-seed", dest="first_seed", type=int, default=0,
                   help="main models with seeds first-seed..seeds-1 only (to split a study over processes)")
    p.add_argument("--curve-every", dest="curve_every", type=int, default=0,
                   help="learning-curve period in iterations (default max_iter / 20)")
    p.add_argument("--ftol", type=float, default=0.0,
                   help="also stop a fit when f fell by less than ftol * |f| over 50 iterations (default: off)")
    p.add_argument("--budget", type=float, default=0, help="stop starting fits after this many seconds (0 = none)")
    p.add_argument("--json", default="compression_study.json")
    p.add_argument("--md", default="compression_study.md")
    p.add_argument("--fresh", action="store_true", help="ignore rows of an existing JSON")
    p.add_argument("--report-only", dest="report_only", action="store_true")
    args = p.parse_args(argv)
    args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    args.sweep_ranks = [int(x) for x in args.sweep_ranks.split(",") if x.strip()]
    if args.report_only:
        report(json.loads((RESULTS / args.json).read_text()), args)
    else:
        run(args)


if __name__ == "__main__":
    main()
