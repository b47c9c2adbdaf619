"""Real fits on the shared DFT data, next to published potentials (issue: training engine).

Targets (``--target``):

- ``mlearn-Li``, ``mlearn-Mo``, ``mlearn-Si``: Zuo et al. 2020 data; fit the same level as the
  published MTP (Li 16, Mo 20, Si 24) on ``training.json`` (or a random subset of it), report
  test MAE/RMSE next to the published MAEs (REFERENCE.md section 5);
- ``nbmotaw-16``: level 16, 4 species (Nb Mo Ta W), trained on the shared training groups (or a
  random subset), validated on the ``*_Test`` groups, next to the quaternary MTP of Yin et al.
  2021 evaluated on the same validation set.

Every fit runs from MLIP's untrained template of that level (our generator) with MLIP-2's
procedure (:func:`mlipress.fit.train`), one thread. ``--max-configs`` and
``--max-iter`` size a fit to the machine; the JSON records both, the wall time and the peak
memory, so a full-size rerun (``--max-configs 0``) is the same command.

Usage: ``python benchmarks/fit_reference.py --target mlearn-Li --max-configs 80 --max-iter 400``
-> ``benchmarks/results/fit_<target>.json`` and ``benchmarks/results/fit_<target>.mtp``.
"""

from __future__ import annotations

import os

from _common import ONE_THREAD  # noqa: E402

os.environ.setdefault("XLA_FLAGS", ONE_THREAD)

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from _common import NBMOTAW_SPECIES, RESULTS, machine, mlearn, mlearn_dir, nbmotaw, nbmotaw_dir, write_result  # noqa: E402

from mlipress.models.mtp.basis import untrained_mtp  # noqa: E402
from mlipress.data import Dataset  # noqa: E402
from mlipress.io.mtp import read_mtp, write_mtp  # noqa: E402
from mlipress.loss import LossWeights  # noqa: E402
from mlipress.metrics import error_report, summary_row  # noqa: E402
from mlipress.predict import predict  # noqa: E402
from mlipress.fit import TrainSettings, train  # noqa: E402

PUBLISHED = {"Li": (16, 0.49, 0.01), "Mo": (20, 2.83, 0.09), "Si": (24, 2.21, 0.06)}


def subset(data: Dataset, n: int, seed: int) -> Dataset:
    if n <= 0 or n >= len(data):
        return data
    idx = np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False))
    return data[list(idx)]


def load(target: str):
    """(train, validation, level, species, min_dist, cutoff, reference)"""
    if target.startswith("mlearn-"):
        element = target.split("-", 1)[1]
        level, e_pub, f_pub = PUBLISHED[element]
        zuo = read_mtp(mlearn_dir(element) / "zuo2020_fitted.mtp")
        train_set, test_set = mlearn(element, "training"), mlearn(element, "test")
        reference = {"name": "Zuo et al. 2020", "published_energy_mae_meV_per_atom": e_pub,
                     "published_force_mae_eV_per_A": f_pub, "potential": zuo}
        rb = zuo.radial_basis
        return train_set, test_set, level, (element,), rb.min_dist, rb.max_dist, reference
    if target == "nbmotaw-16":
        train_set, valid_set = nbmotaw()
        yin = read_mtp(nbmotaw_dir() / "quaternary_yin2021.mtp")
        reference = {"name": "Yin et al. 2021 quaternary MTP", "potential": yin}
        return train_set, valid_set, 16, NBMOTAW_SPECIES, 1.5, 5.0, reference
    raise SystemExit(f"unknown target {target!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, choices=["mlearn-Li", "mlearn-Mo", "mlearn-Si", "nbmotaw-16"])
    parser.add_argument("--max-configs", type=int, default=0, help="random training subset size (0 = all)")
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--max-time", type=float, default=0, help="wall-time limit of the fit in seconds (0 = none)")
    parser.add_argument("--variable-projection", action=argparse.BooleanOptionalAction, default=True,
                        help="exact species/moment coefficients at every evaluation (default; "
                             "--no-variable-projection: MLIP's scheme)")
    parser.add_argument("--tag", default="", help="suffix of the output names (fit_<target><tag>.*)")
    parser.add_argument("--pretrain-iters", type=int, default=75)
    parser.add_argument("--stress-weight", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    full_train, valid, level, species, min_dist, cutoff, reference = load(args.target)
    train_set = subset(full_train, args.max_configs, args.seed)
    print(f"{args.target}: level {level}, training {len(train_set)}/{len(full_train)} configurations "
          f"({train_set.natoms} atoms), validation {len(valid)} ({valid.natoms} atoms)", flush=True)

    mtp = untrained_mtp(level, len(species), min_dist, cutoff)
    out_dir = RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = TrainSettings(
        weights=LossWeights(stress=args.stress_weight),
        max_iter=args.max_iter,
        max_time=args.max_time,
        variable_projection=args.variable_projection,
        pretrain_iters=args.pretrain_iters,
        seed=args.seed,
        log_every=10,
        log_file=str(out_dir / f"fit_{args.target}{args.tag}.log.jsonl"),
        checkpoint=str(out_dir / f"fit_{args.target}{args.tag}.ckpt.npz"),
        checkpoint_every=25,
        resume=(out_dir / f"fit_{args.target}{args.tag}.ckpt.npz").exists(),
    )
    t0 = time.perf_counter()
    result = train(mtp, train_set, settings)
    wall = time.perf_counter() - t0
    write_mtp(result.mtp, out_dir / f"fit_{args.target}{args.tag}.mtp")

    pred, _ = predict(result.mtp, valid.configurations)
    ours = summary_row(error_report(valid.configurations, pred))
    ref_pot = reference.pop("potential")
    ref_pred, _ = predict(ref_pot, valid.configurations)
    reference["evaluated_here"] = summary_row(error_report(valid.configurations, ref_pred))

    record = {
        "target": args.target,
        "command": " ".join(sys.argv),
        "level": level,
        "species": species,
        "train_configurations": len(train_set),
        "train_atoms": train_set.natoms,
        "full_train_configurations": len(full_train),
        "max_iter": args.max_iter,
        "max_time": args.max_time,
        "variable_projection": args.variable_projection,
        "iterations_done": result.history[-1].get("iteration") if result.history else None,
        "pretrain_iters": args.pretrain_iters,
        "stop_reason": result.stop_reason,
        "final_loss": result.history[-1].get("f") if result.history else None,
        "wall_seconds": wall,
        "peak_memory_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "validation": ours,
        "reference": reference,
        "machine": machine(),
        "parameters": result.mtp.num_params(),
    }
    out = write_result(f"fit_{args.target}{args.tag}.json", record)
    print(json.dumps({"validation": ours, "reference": reference}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
