"""Three training schemes from the same untrained MTP, same data, seed and iteration budget.

- ``plain``: MLIP's scheme, BFGS on all coefficients from the identity, exact linear solves
  every 50 iterations;
- ``preconditioned``: the same, BFGS started from the inverse Gauss-Newton diagonal
  (mlipress/fit/precondition.py);
- ``variable projection``: the default, preconditioned BFGS on the radial part with the linear
  coefficients solved exactly at every evaluation (mlipress/fit/projection.py).

Data: the built-in Cu-Ag-Au EMT example, 24 configurations, 80/20 split. Prints the loss every
20 iterations, final training loss, validation errors and wall time (one thread), and writes
``benchmarks/results/training_schemes.json``.

Usage: ``python benchmarks/training_schemes.py [--level 10] [--pretrain 40] [--max-iter 100]``
"""

from __future__ import annotations

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import time  # noqa: E402

from _common import pin_one_core  # noqa: E402

pin_one_core()

from _common import machine, write_result  # noqa: E402  (puts the repo on sys.path)

from mlipress.models.mtp.basis import untrained_mtp
from mlipress.examples import make_example_dataset, split
from mlipress.metrics import error_report, summary_row
from mlipress.predict import predict
from mlipress.fit import TrainSettings, train


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
    modes = {"plain": dataclasses.replace(settings, precondition=False, variable_projection=False),
             "preconditioned": dataclasses.replace(settings, variable_projection=False),
             "variable projection": settings}
    for mode, s in modes.items():
        log = io.StringIO()
        t0 = time.perf_counter()
        result = train(mtp, train_set, s, out=log)
        wall = time.perf_counter() - t0
        pred, _ = predict(result.mtp, valid_set.configurations)
        rows[mode] = {
            "loss_history": [(r.get("phase"), r.get("iteration"), r.get("f")) for r in result.history],
            "final_f": result.history[-1]["f"],
            "validation": summary_row(error_report(valid_set.configurations, pred)),
            "wall_seconds": wall,
        }
        print(f"== {mode}\n{log.getvalue()}", flush=True)
    for mode, row in rows.items():
        v = row["validation"]
        print(f"{mode:20s} final f {row['final_f']:.4g}, validation E RMSE {v['energy_rmse_meV_per_atom']:.2f} meV/atom, "
              f"F RMSE {v['force_rmse_eV_per_A_component']:.4f} eV/A, {row['wall_seconds']:.0f} s")
    out = write_result("training_schemes.json", {
        "benchmark": "training_schemes", "command": "python benchmarks/training_schemes.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "machine": machine(threads=1), "level": args.level, "pretrain_iters": args.pretrain,
        "max_iter": args.max_iter, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
