"""Rank adaptation: TTRA vs fixed-rank TT vs MFRA vs ``mfra:auto`` (and ``ttra:auto``).

Every model is fitted from the same untrained MTP (random factors of seed ``s``, variable
projection, the same iteration budget) on the built-in EMT Cu-Ag-Au data (ASE's EMT, no
download), with a held-out validation set. Fixed-rank TT is fitted at the ranks TTRA ended
at (the test of the issue: does growing reach at least the loss of fitting at the final ranks
from the start?); MFRA at the MF rank with about the same number of radial parameters.

    python benchmarks/rank_adaptation.py                          # defaults below, ~30 min loaded
    python benchmarks/rank_adaptation.py --level 8 --max-iter 60 --seeds 2 --train-configs 16

Writes ``results/rank_adaptation.json`` and ``results/rank_adaptation.md``: final ranks, radial
parameter counts, final training loss, train/valid energy and force RMSE, per seed, and the
median over seeds. Timings are not the point here (the machine is shared and loaded).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, pin_one_core, write_result  # noqa: E402


def fit_one(mtp, train, valid, spec, seed, max_iter):
    from mlipress.compress import fit_compressed
    from mlipress.fit import TrainSettings, rmse
    from mlipress.fit.trainer import prepare_sets
    from mlipress.loss import Objective
    from mlipress.models.layers import dense_param_count

    s = TrainSettings(max_iter=max_iter, seed=seed, log_every=0, ftol=0.0, gtol=0.0)
    t0 = time.perf_counter()
    res = fit_compressed(mtp, train, spec, s, valid_data=valid, out=io.StringIO())
    wall = time.perf_counter() - t0
    data, vdata = prepare_sets(mtp, train, valid, s)
    tr, va = rmse(mtp, res.params, data), rmse(mtp, res.params, vdata)
    rank = res.radial.rank
    return {"spec": str(spec), "seed": seed, "final_rank": list(rank) if isinstance(rank, tuple) else rank,
            "radial_params": int(res.radial.num_params), "dense_radial_params": dense_param_count(mtp.radial_shape),
            "train_loss": float(Objective(mtp, data).value(res.params)),
            "valid_loss": float(Objective(mtp, vdata).value(res.params)),
            "train_energy_rmse_meV": 1e3 * tr["energy_rmse"], "train_force_rmse": tr["force_rmse"],
            "valid_energy_rmse_meV": 1e3 * va["energy_rmse"], "valid_force_rmse": va["force_rmse"],
            "rank_history": [[k, list(r) if isinstance(r, tuple) else r] for k, r in res.rank_history],
            "grown_until": int(getattr(res.state, "grown_until", 0)), "stop_reason": res.stop_reason,
            "wall_s": wall}


def mf_rank_like(shape, n_params):
    from mlipress.models.layers import MatrixFactorized

    return min(MatrixFactorized.rank_candidates(shape),
               key=lambda r: abs(MatrixFactorized.param_count(shape, r) - n_params))


def markdown(doc) -> str:
    import numpy as np

    cfg = doc["config"]
    lines = ["# Rank adaptation (`benchmarks/rank_adaptation.py`)", "",
             f"Level {cfg['level']} MTP, EMT Cu-Ag-Au: {cfg['train_configs']} training / {cfg['valid_configs']} "
             f"validation configurations, {cfg['max_iter']} iterations per fit (MFRA/TTRA interval 4% of it), "
             f"untrained start, variable projection, seeds {cfg['seeds']}; radial tensor {cfg['radial_shape']} "
             f"({cfg['dense_radial_params']} parameters). Command: `{cfg['command']}`; one thread, {cfg['machine']['cpu']}, "
             f"load average {cfg['machine']['load_average_1min_at_start']} at the start (shared machine).", "",
             "| model | seed | final rank | radial params | train loss | train E meV/atom | train F eV/A "
             "| valid E meV/atom | valid F eV/A |", "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        lines.append(f"| {r['model']} | {r['seed']} | {r['final_rank']} | {r['radial_params']} | {r['train_loss']:.4g} "
                     f"| {r['train_energy_rmse_meV']:.3f} | {r['train_force_rmse']:.4f} | {r['valid_energy_rmse_meV']:.3f} "
                     f"| {r['valid_force_rmse']:.4f} |")
    lines += ["", "Medians over seeds:", "", "| model | train loss | valid E meV/atom | valid F eV/A | radial params |",
              "|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in doc["rows"]):
        rows = [r for r in doc["rows"] if r["model"] == model]
        med = lambda k: float(np.median([r[k] for r in rows]))  # noqa: E731
        lines.append(f"| {model} | {med('train_loss'):.4g} | {med('valid_energy_rmse_meV'):.3f} "
                     f"| {med('valid_force_rmse'):.4f} | {med('radial_params'):.0f} |")
    pairs = [(a, b) for a in doc["rows"] if a["model"] == "ttra" for b in doc["rows"]
             if b["model"] == "tt (TTRA's final ranks)" and b["seed"] == a["seed"]]
    wins = sum(a["train_loss"] <= b["train_loss"] for a, b in pairs)
    lines += ["", f"TTRA reached a training loss at or below fixed-rank TT at its final ranks in {wins} of "
              f"{len(pairs)} seeds (same budget, same seed)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--level", type=int, default=10)
    p.add_argument("--train-configs", type=int, default=16)
    p.add_argument("--valid-configs", type=int, default=8)
    p.add_argument("--max-iter", type=int, default=75)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--ttra", default="3,4,3", help="TTRA's maximal ranks (default 3,4,3: ~50%% of the level-10 radial parameters)")
    p.add_argument("--name", default="rank_adaptation")
    args = p.parse_args(argv)
    pin_one_core()
    import mlipress  # noqa: F401  (float64)
    from mlipress.data import Dataset
    from mlipress.examples import make_example_dataset
    from mlipress.io.atomic import atomic_write
    from mlipress.models.layers import dense_param_count, parse_radial_spec
    from mlipress.models.mtp.basis import untrained_mtp

    ds, species = make_example_dataset(n_configs=args.train_configs + args.valid_configs, seed=7)
    confs = ds.configurations
    train = Dataset(tuple(confs[:args.train_configs]), species)
    valid = Dataset(tuple(confs[args.train_configs:]), species)
    mtp = untrained_mtp(args.level, len(species), 2.0, 5.0, 8)
    shape = mtp.radial_shape
    doc = {"config": {"command": " ".join(["python", "benchmarks/rank_adaptation.py", *sys.argv[1:]]),
                      "level": args.level, "train_configs": args.train_configs, "valid_configs": args.valid_configs,
                      "max_iter": args.max_iter, "seeds": list(range(args.seeds)), "radial_shape": list(shape),
                      "dense_radial_params": dense_param_count(shape), "machine": machine(1)}, "rows": []}
    path_json = f"{args.name}.json"
    for seed in range(args.seeds):
        ttra = fit_one(mtp, train, valid, parse_radial_spec(f"ttra:{args.ttra}"), seed, args.max_iter)
        jobs = [("ttra", None, ttra),
                ("tt (TTRA's final ranks)", "tt:" + ",".join(map(str, ttra["final_rank"])), None),
                ("mfra (~TTRA's params)", f"mfra:{mf_rank_like(shape, ttra['radial_params'])}", None),
                ("mfra:auto", "mfra:auto", None),
                ("ttra:auto", "ttra:auto", None)]
        for model, spec, row in jobs:
            if row is None:
                row = fit_one(mtp, train, valid, parse_radial_spec(spec), seed, args.max_iter)
            row["model"] = model
            doc["rows"].append(row)
            print(f"{model:26s} seed {seed} rank {row['final_rank']} params {row['radial_params']:4d} "
                  f"train loss {row['train_loss']:.4g} valid E {row['valid_energy_rmse_meV']:.3f} meV/atom "
                  f"F {row['valid_force_rmse']:.4f} eV/A ({row['wall_s']:.0f} s)", flush=True)
            write_result(path_json, doc)
            atomic_write(Path(__file__).resolve().parent / "results" / f"{args.name}.md", markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
