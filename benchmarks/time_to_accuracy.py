"""Time to accuracy on NbMoTaW against MLIP-2 (issue 10).

The setting of the issue: training on every 8th configuration of each ``*_SS`` and ``*_AIMD``
group plus all ``*_Elastic`` and ``*_Surface`` groups of the mlearn NbMoTaW set (1132
configurations, 15464 atoms), validation on all ``*_Test`` groups (360 configurations, 8400
atoms); types Nb Mo Ta W, cutoff 5 A, min_dist 2.0 A, MLIP's default weights (w_E 1, w_F 0.01,
w_S 0.001), an untrained level-``--level`` start (seed ``--seed``) and mlipress's default
training (variable projection). MLIP-2 on one core of this machine kind reaches validation RMSE

- level 12: E 4.09 meV/atom, F 0.232 eV/A in 23 minutes (75 + 300 iterations),
- level 16: E 6.56 meV/atom, F 0.357 eV/A in 43 minutes (75 + 100 iterations).

The fit stops as soon as both validation errors are at or below MLIP-2's (checked every
``--check-every`` iterations), or at ``--max-iter``. The time to accuracy is the fit's own
time: the validation checks are timed separately (their process CPU and wall seconds) and
subtracted. Process CPU seconds are the figure to compare on a shared machine; wall seconds
are given too. Checkpoints every check, so an interrupted run resumes (rerun the same command).

One rank on one core::

    python benchmarks/time_to_accuracy.py --level 12

Two MPI ranks (each pinned to its own core; the result is the same fit, bit for bit)::

    mpirun -np 2 python benchmarks/time_to_accuracy.py --level 12

Writes ``benchmarks/results/time_to_accuracy.json`` (one entry per level and rank count, with the
validation curve) and ``time_to_accuracy.md``; ``--report-only`` rewrites the markdown.
"""

from __future__ import annotations

import os

from _common import ONE_THREAD, RESULTS, nbmotaw_groups  # noqa: E402  (puts the repo on sys.path)
from _common import NBMOTAW_SPECIES as SPECIES  # noqa: E402

os.environ["XLA_FLAGS"] = ONE_THREAD
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

#: MLIP-2's validation RMSE (meV/atom, eV/A per component) and minutes on one core (issue 10)
MLIP2 = {12: (4.09, 0.232, 23.0, "75 + 300"), 16: (6.56, 0.357, 43.0, "75 + 100")}


def rank_from_environment() -> int:
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def pin(rank: int) -> int:
    """Rank r on the r-th core of the affinity mask (``taskset`` chooses the cores)."""
    cores = sorted(os.sched_getaffinity(0))
    core = cores[rank % len(cores)]
    os.sched_setaffinity(0, {core})
    return core


def subset():
    """(training, validation) Datasets of the issue's setting."""
    from mlipress.data import Dataset

    train_groups, valid_groups = nbmotaw_groups()
    configs, labels = [], []
    for name, group in train_groups.items():
        picked = group.configurations[::8] if name.endswith(("_SS", "_AIMD")) else group.configurations
        configs += list(picked)
        labels += [name] * len(picked)
    vconfigs, vlabels = [], []
    for name, group in valid_groups.items():
        vconfigs += list(group.configurations)
        vlabels += [name] * len(group.configurations)
    return Dataset(tuple(configs), SPECIES, tuple(labels)), Dataset(tuple(vconfigs), SPECIES, tuple(vlabels))


def load_doc(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {"benchmark": "time_to_accuracy", "runs": {}}


def run(args) -> None:
    from mlipress import parallel

    comm = parallel.from_environment()
    core = pin(comm.rank if comm.size > 1 else rank_from_environment())
    if comm.rank:
        sys.stdout = open(os.devnull, "w")

    import mlipress  # noqa: F401  (float64)
    import mlipress.fit.trainer as trainer
    from mlipress.fit import TrainSettings, train
    from mlipress.loss import LossWeights
    from mlipress.io import write_mtp
    from mlipress.models.mtp.basis import untrained_mtp
    from _common import machine, write_result

    e_goal, f_goal, mlip_minutes, mlip_iters = MLIP2[args.level]
    key = f"L{args.level}_np{comm.size}_s{args.seed}"
    doc = load_doc(args.json)
    entry = doc["runs"].get(key, {})
    if entry.get("status") == "done" and not args.fresh:
        print(f"{key} is done; --fresh to rerun")
        return
    ckpt_dir = RESULTS / f"{args.json}_checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    ckpt = ckpt_dir / f"{key}.ckpt"
    if args.fresh:
        ckpt.unlink(missing_ok=True)
        entry = {}

    train_data, valid_data = subset()
    print(f"{key}: training {len(train_data)} configurations ({train_data.natoms} atoms), validation "
          f"{len(valid_data)} ({valid_data.natoms} atoms); goal E <= {e_goal} meV/atom and F <= {f_goal} eV/A "
          f"(MLIP-2: {mlip_minutes:g} min, {mlip_iters} iterations); rank {comm.rank} of {comm.size} on core {core}",
          flush=True)

    # the validation checks are the benchmark's, not the fit's: time them and subtract
    resumed = ckpt.exists() and bool(entry.get("curve"))
    monitor = {"cpu": 0.0, "wall": 0.0}
    cpu_before = wall_offset = 0.0
    curve = []
    if resumed:
        last = entry["curve"][-1]
        monitor = {"cpu": last["monitor_cpu_s"], "wall": last["monitor_wall_s"]}
        cpu_before = last["cpu_s"]
        curve = entry["curve"]
    cpu_start = time.process_time()
    rmse = trainer.rmse

    def timed_rmse(*a, **k):
        c, w = time.process_time(), time.perf_counter()
        out = rmse(*a, **k)
        monitor["cpu"] += time.process_time() - c
        monitor["wall"] += time.perf_counter() - w
        return out

    trainer.rmse = timed_rmse

    def cpu_all_ranks() -> float:
        """Process CPU seconds of this run summed over the ranks (checks included)."""
        return float(sum(comm.allgather(cpu_before + time.process_time() - cpu_start)))

    def save(status: str) -> None:
        entry.update(level=args.level, ranks=comm.size, seed=args.seed, status=status, curve=curve,
                     goal={"energy_rmse_meV_per_atom": e_goal, "force_rmse_eV_per_A": f_goal},
                     mlip2={"minutes": mlip_minutes, "iterations": mlip_iters},
                     n_train=len(train_data), n_train_atoms=train_data.natoms, n_valid=len(valid_data),
                     n_valid_atoms=valid_data.natoms, max_iter=args.max_iter, check_every=args.check_every,
                     command=" ".join(sys.argv), machine=machine(threads=1))
        doc["runs"][key] = entry
        if comm.rank == 0:
            write_result(f"{args.json}.json", doc)

    def callback(rec) -> bool:
        if rec.get("event") not in ("progress", "final") or "valid_force_rmse_eV_per_A" not in rec:
            return False
        cpu = cpu_all_ranks()
        mon_cpu = float(sum(comm.allgather(monitor["cpu"])))
        point = {"iteration": rec["iteration"], "f": rec["f"],
                 "valid_energy_rmse_meV_per_atom": rec["valid_energy_rmse_meV_per_atom"],
                 "valid_force_rmse_eV_per_A": rec["valid_force_rmse_eV_per_A"],
                 "wall_s": rec["elapsed"], "monitor_wall_s": monitor["wall"], "cpu_s": cpu, "monitor_cpu_s": mon_cpu,
                 "fit_wall_s": rec["elapsed"] - monitor["wall"], "fit_cpu_s": cpu - mon_cpu}
        curve[:] = [p for p in curve if p["iteration"] < point["iteration"]] + [point]
        reached = (point["valid_energy_rmse_meV_per_atom"] <= e_goal and point["valid_force_rmse_eV_per_A"] <= f_goal)
        if reached and "reached" not in entry:
            entry["reached"] = point
        save("running")
        return reached

    mtp = untrained_mtp(args.level, len(SPECIES), 2.0, 5.0)
    settings = TrainSettings(weights=LossWeights(energy=1.0, force=0.01, stress=0.001), max_iter=args.max_iter,
                             seed=args.seed, log_every=args.check_every, checkpoint=str(ckpt),
                             checkpoint_every=args.check_every, resume=True, max_atoms=args.max_atoms)
    result = train(mtp, train_data, settings, valid_data=valid_data, callback=callback)
    entry["stop_reason"] = result.stop_reason
    save("done")
    reached = entry.get("reached")
    if reached:
        print(f"{key}: reached E {reached['valid_energy_rmse_meV_per_atom']:.2f} meV/atom, "
              f"F {reached['valid_force_rmse_eV_per_A']:.4f} eV/A at iteration {reached['iteration']} after "
              f"{reached['fit_cpu_s'] / 60:.1f} CPU min ({reached['fit_wall_s'] / 60:.1f} wall min); "
              f"MLIP-2: {mlip_minutes:g} min")
    else:
        print(f"{key}: MLIP-2's validation errors not reached in {args.max_iter} iterations")
    if comm.rank == 0:
        (RESULTS / f"{args.json}_models").mkdir(exist_ok=True)
        write_mtp(result.mtp, RESULTS / f"{args.json}_models" / f"{key}.mtp")
        report(load_doc(args.json), args.json)


def report(doc: dict, name: str) -> None:
    lines = ["# Time to accuracy: mlipress vs MLIP-2 on the NbMoTaW subset (issue 10)", "",
             "Produced by `benchmarks/time_to_accuracy.py` (raw: `benchmarks/results/time_to_accuracy.json`). "
             "Training: every 8th configuration of each `*_SS` and `*_AIMD` group plus all `*_Elastic` and "
             "`*_Surface` groups (1132 configurations, 15464 atoms); validation: all `*_Test` groups (360, 8400 "
             "atoms). Nb Mo Ta W, cutoff 5 A, min_dist 2 A, weights 1 / 0.01 / 0.001, untrained start, mlipress's "
             "default training (variable projection, BFGS on the radial part). The goal is MLIP-2's validation RMSE "
             "(E per atom, F per Cartesian component) at the same level, from the MLIP-2 run of the issue (one core "
             "of this machine kind). Times exclude the benchmark's own validation checks (timed and subtracted); "
             "CPU = process CPU seconds summed over the ranks, the robust figure on a shared machine.", "",
             "| level | ranks | seed | reached at iteration | valid E / F at that point | fit CPU min | fit wall min "
             "| MLIP-2 min | CPU ratio | wall ratio | status | load at start |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(doc.get("runs", {})):
        e = doc["runs"][key]
        m = e["mlip2"]["minutes"]
        r = e.get("reached")
        load = e.get("machine", {}).get("load_average_1min_at_start")
        if r:
            cells = [str(r["iteration"]), f"{r['valid_energy_rmse_meV_per_atom']:.2f} / {r['valid_force_rmse_eV_per_A']:.4f}",
                     f"{r['fit_cpu_s'] / 60:.1f}", f"{r['fit_wall_s'] / 60:.1f}", f"{m:g}",
                     f"{r['fit_cpu_s'] / 60 / m:.2f}", f"{r['fit_wall_s'] / 60 / m:.2f}"]
        else:
            last = e["curve"][-1] if e.get("curve") else None
            got = (f"not yet: {last['valid_energy_rmse_meV_per_atom']:.2f} / {last['valid_force_rmse_eV_per_A']:.4f} "
                   f"at {last['iteration']}") if last else "-"
            cells = ["-", got, f"{last['fit_cpu_s'] / 60:.1f}" if last else "-",
                     f"{last['fit_wall_s'] / 60:.1f}" if last else "-", f"{m:g}", "-", "-"]
        lines.append(f"| {e['level']} | {e['ranks']} | {e['seed']} | " + " | ".join(cells)
                     + f" | {e['status']}{' (' + e['stop_reason'] + ')' if e.get('stop_reason') else ''} | "
                     + (f"{load:.1f}" if load is not None else "-") + " |")
    lines += ["", "Goals: " + "; ".join(f"level {L}: E {g[0]} meV/atom, F {g[1]} eV/A, MLIP-2 {g[2]:g} min ({g[3]} "
                                       f"iterations)" for L, g in MLIP2.items()), ""]
    for key in sorted(doc.get("runs", {})):
        e = doc["runs"][key]
        pts = e.get("curve", [])
        if not pts:
            continue
        step = max(1, len(pts) // 12)
        shown = pts[::step] + ([pts[-1]] if (len(pts) - 1) % step else [])
        lines += [f"Validation curve `{key}` (iteration: E meV/atom / F eV/A @ fit CPU min): "
                  + ", ".join(f"{p['iteration']}: {p['valid_energy_rmse_meV_per_atom']:.2f} / "
                              f"{p['valid_force_rmse_eV_per_A']:.3f} @ {p['fit_cpu_s'] / 60:.1f}" for p in shown), ""]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--level", type=int, default=12, choices=sorted(MLIP2))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-iter", dest="max_iter", type=int, default=1000)
    p.add_argument("--check-every", dest="check_every", type=int, default=10,
                   help="validation check (and checkpoint) period in iterations")
    p.add_argument("--max-atoms", dest="max_atoms", type=int, default=2048)
    p.add_argument("--fresh", action="store_true", help="discard this run's checkpoint and entry")
    p.add_argument("--json", default="time_to_accuracy", help="results name in benchmarks/results/")
    p.add_argument("--report-only", dest="report_only", action="store_true")
    args = p.parse_args()
    if args.report_only:
        report(load_doc(args.json), args.json)
        return
    run(args)


if __name__ == "__main__":
    main()
