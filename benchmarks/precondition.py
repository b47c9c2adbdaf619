"""Plain vs Gauss-Newton-preconditioned BFGS when fitting from an untrained MTP.

Same data (the built-in Cu-Ag-Au EMT example, 24 configurations, 80/20 split), same untrained
level-10 potential, same seed and iteration budget; only the BFGS start differs (identity vs
inverse Gauss-Newton diagonal, see mlipress/training/precondition.py). Prints the loss every 20
iterations and writes ``benchmarks/results/precondition.json``.

Usage: ``python benchmarks/precondition.py [--level 10] [--pretrain 40] [--max-iter 100]``
"""

from __future__ import annotations

import argparse
import io
import time

from _common import machine, write_result  # puts the repo on sys.path

from mlipress.basis import untrained_mtp
from mlipress.examples import make_example_dataset, split
from mlipress.metrics import error_report, summary_row
from mlipress.optim import bfgs
from mlipress.predict import predict
from mlipress.training import TrainSettings, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--level", type=int, default=10)
    ap.add_argument("--pretrain", type=int, default=40)
    ap.add_argument("--max-iter", type=int, default=100)
    args = ap.parse_args()

    data, species = make_example_dataset(n_configs=24, seed=0)
    train_set, valid_set = split(data, 0.8, seed=0)
    mtp = untrained_mtp(args.level, len(species), 2.0, 5.0)
    settings = TrainSettings(max_iter=args.max_iter, pretrain_iters=args.pretrain, log_every=20, ftol=0.0)
    rows = {}
    for mode in ("plain", "preconditioned"):
        # plain: the trainer's BFGS without the preconditioner; preconditioned: the default
        factory = (lambda vg, v: bfgs(vg, v)) if mode == "plain" else None
        log = io.StringIO()
        t0 = time.perf_counter()
        result = train(mtp, train_set, settings, optimizer_factory=factory, out=log)
        wall = time.perf_counter() - t0
        pred, _ = predict(result.mtp, valid_set.configurations)
        rows[mode] = {
            "loss_history": [(r.get("phase"), r.get("iteration"), r.get("f")) for r in result.history],
            "final_f": result.history[-1]["f"],
            "validation": summary_row(error_report(valid_set.configurations, pred)),
            "wall_seconds": wall,
        }
        print(f"== {mode}\n{log.getvalue()}", flush=True)
    print(f"final training loss f: plain {rows['plain']['final_f']:.4g}, preconditioned {rows['preconditioned']['final_f']:.4g}")
    for mode, row in rows.items():
        v = row["validation"]
        print(f"{mode:15s} validation E RMSE {v['energy_rmse_meV_per_atom']:.2f} meV/atom, "
              f"F RMSE {v['force_rmse_eV_per_A_component']:.4f} eV/A, {row['wall_seconds']:.0f} s")
    out = write_result("precondition.json", {
        "benchmark": "precondition", "command": "python benchmarks/precondition.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "machine": machine(threads=0), "level": args.level, "pretrain_iters": args.pretrain,
        "max_iter": args.max_iter, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
