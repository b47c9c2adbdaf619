"""The talk's experiment: active learning of base and compressed MTPs on EMT Cu-Ag-Au.

For each radial parametrisation (dense = base MTP, MF, TT; the same level) and each seed, the
loop of :func:`mlipress.active.learn` runs from a small labelled initial set (``--initial``
random-alloy cells, slightly rattled) with MD from ``--starts`` random alloys at every
temperature, labelling with ASE's EMT, until an MD round has no configuration above the
grade threshold (or ``--max-iterations``). Reported per run: training-set size at
convergence, iterations, EMT test-set errors (an independent example set), wall time. Grades
are neighbourhood-wise by default (``--mode nbh``; configuration-wise needs about as many
configurations as coefficients before the placeholders of MaxVol's start are gone), with
respect to all free coefficients (for MF/TT: the factors).

Also measured: the cost of grading on the fly, ms per MD step with and without the grade, on
the final base potential (same run, same machine, one thread).

Results: ``benchmarks/results/active_learning.json`` (rewritten after every finished run, so
a partial run leaves its results) and ``active_learning.md``.

    python benchmarks/active_learning.py --seeds 3
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

from _common import RESULTS, machine, pin_one_core, write_result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--radial", default="dense,mf:2,tt:2", help="comma-separated radial specs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--only-seeds", default="", help="comma-separated seeds to run instead of 0..SEEDS-1 "
                                                     "(to spread seeds over processes; join with --merge)")
    p.add_argument("--level", type=int, default=8)
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--temperatures", default="300,900")
    p.add_argument("--md-steps", type=int, default=60)
    p.add_argument("--fit-iters", type=int, default=40)
    p.add_argument("--max-iterations", type=int, default=10)
    p.add_argument("--max-select", type=int, default=6)
    p.add_argument("--grade-break", type=float, default=1e4,
                   help="stop an MD run above this grade (default 1e4: runs go on and collect candidates)")
    p.add_argument("--mode", choices=("cfg", "nbh"), default="nbh")
    p.add_argument("--initial", type=int, default=4, help="initial training configurations")
    p.add_argument("--starts", type=int, default=1, help="MD starting structures")
    p.add_argument("--test", type=int, default=30, help="test configurations (EMT example set)")
    p.add_argument("--workdir", default="/tmp/mlipress_active_learning_bench")
    p.add_argument("--name", default="active_learning")
    p.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json and exit")
    p.add_argument("--merge", default="",
                   help="comma-separated result names (e.g. runs of different --radial in parallel processes): "
                        "join their runs into --name's .json and .md and exit")
    return p.parse_args(argv)


def initial_set(n: int, seed: int, species):
    import numpy as np
    from ase.calculators.emt import EMT

    from mlipress.examples import random_alloy
    from mlipress.io import from_atoms

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = random_alloy(rng)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        out.append(from_atoms(atoms, species))
    return out


def starts(n: int, seed: int):
    import numpy as np

    from mlipress.examples import random_alloy

    rng = np.random.default_rng(10_000 + seed)
    return [random_alloy(rng) for _ in range(n)]


def grading_overhead(mtp, params, train, atoms, species, steps: int = 40) -> dict:
    """Process CPU ms per MD step (NVT, 600 K, skin 0.5 A) without the grade and with it,
    both modes (CPU time: the machine is shared, wall time would measure the other jobs)."""
    from mlipress.active import GradeSettings, build_active_set
    from mlipress.simulate.md import MDSettings, SkinMTPCalculator, run_md

    out = {"atoms": len(atoms), "steps": steps, "clock": "process CPU time"}
    for label in ("plain", "cfg", "nbh"):
        kw = {}
        if label != "plain":
            g = GradeSettings(mode=label)
            kw = dict(grade=True, active_set=build_active_set(mtp, params, train, g), grade_settings=g)
        calc = SkinMTPCalculator(mtp, species=species, params=params, **kw)
        md = MDSettings(ensemble="nvt", temperature=600.0, steps=steps, interval=steps, seed=0)
        cpu = []
        for _ in range(3):  # the first pays compilation (also of neighbour-list shapes met on the way)
            c0 = time.process_time()
            run_md(atoms.copy(), calc, progress=False, settings=md)
            cpu.append(time.process_time() - c0)
        out[f"{label}_ms_per_step"] = 1e3 * min(cpu[1:]) / steps
    for mode in ("cfg", "nbh"):
        out[f"{mode}_ratio"] = out[f"{mode}_ms_per_step"] / out["plain_ms_per_step"]
    return out


def final_overhead(workdir: Path, species) -> dict | None:
    """:func:`grading_overhead` of the final dense potential of seed 0 in ``workdir``."""
    run = workdir / "dense_seed0"
    if not (run / "pot.mtp").exists():
        return None
    from mlipress.io.cfg import read_cfg
    from mlipress.io.mtp import read_mtp

    mtp = read_mtp(run / "pot.mtp")
    return grading_overhead(mtp, mtp.params(), read_cfg(run / "train.cfg").configurations, starts(1, 99)[0], species)


def summary(runs: list[dict]) -> dict:
    import numpy as np

    table = {}
    for radial in dict.fromkeys(r["radial"] for r in runs):
        rs = [r for r in runs if r["radial"] == radial]
        row = {"runs": len(rs), "converged": sum(r["converged"] for r in rs)}
        for key in ("train_size", "iterations", "test_energy_rmse_meV_per_atom", "test_force_rmse_eV_per_A_component",
                    "grade_columns", "cpu_s", "wall_s"):
            vals = np.array([r[key] for r in rs if r.get(key) is not None], dtype=float)
            if len(vals):
                row[key] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                            "values": vals.tolist()}
        table[radial] = row
    return table


def markdown(result: dict) -> str:
    lines = ["# Active learning of base and compressed MTPs (EMT Cu-Ag-Au)", "",
             f"Settings: {json.dumps(result['settings'])}", "",
             f"Machine: {result['machine'].get('cpu', '?')}, 1 thread, 1-min load average at start {result['machine'].get('load_average_1min_at_start', '?'):.1f} (shared machine)", "",
             "| radial | converged | final training set | iterations | grade columns | test E RMSE (meV/atom) | test F RMSE (eV/A, per component) | CPU (s) |",
             "|---|---|---|---|---|---|---|---|"]

    def fmt(row, key, digits=1):
        v = row.get(key)
        return "n/a" if v is None else f"{v['mean']:.{digits}f} +- {v['std']:.{digits}f}"

    for radial, row in result["summary"].items():
        lines.append(f"| {radial} | {row['converged']}/{row['runs']} | {fmt(row, 'train_size')} | "
                     f"{fmt(row, 'iterations')} | {fmt(row, 'grade_columns', 0)} | "
                     f"{fmt(row, 'test_energy_rmse_meV_per_atom', 2)} | "
                     f"{fmt(row, 'test_force_rmse_eV_per_A_component', 3)} | {fmt(row, 'cpu_s', 0)} |")
    base = result["summary"].get("dense", {}).get("train_size")
    if base:
        for radial, row in result["summary"].items():
            if radial != "dense" and row.get("train_size"):
                lines.append("")
                lines.append(f"{radial}: {row['train_size']['mean'] / base['mean']:.2f} x the base MTP's training set "
                             f"({row['train_size']['mean']:.1f} vs {base['mean']:.1f} configurations), "
                             f"{row['grade_columns']['mean']:.0f} vs {result['summary']['dense']['grade_columns']['mean']:.0f} "
                             "grade columns.")
    lines += ["", "Per run: training-set size at each iteration's fit (test E RMSE of that fit, meV/atom); "
                  "the last is the size at convergence.", ""]
    for r in sorted(result["runs"], key=lambda r: (r["radial"], r["seed"])):
        steps = [f"{rec['train_size']} ({rec.get('test_energy_rmse_meV_per_atom', float('nan')):.1f})" for rec in r["log"]]
        if r["log"] and r["log"][-1].get("selected"):
            steps.append(f"{r['train_size']} (not fitted)")
        lines.append(f"- {r['radial']} seed {r['seed']}: {' -> '.join(steps)}"
                     f"{'' if r['converged'] else ' (not converged)'}")
    if result.get("overhead"):
        o = result["overhead"]
        lines += ["", f"Grading on the fly (final base potential of seed 0, {o['atoms']} atoms, NVT, one thread, "
                      f"{o.get('clock', 'wall time')}): "
                      f"{o['plain_ms_per_step']:.2f} ms/step without the grade, {o['cfg_ms_per_step']:.2f} with the "
                      f"configuration grade ({o['cfg_ratio']:.2f}x), {o['nbh_ms_per_step']:.2f} with the "
                      f"neighbourhood grades ({o['nbh_ratio']:.2f}x)."]
    lines += ["", "Mean +- standard deviation over seeds (std of a sample). Training-set sizes include the "
                  f"{result['settings']['initial']} initial configurations; for runs that did not converge within "
                  f"{result['settings']['max_iterations']} iterations the final size is a lower bound of the size at "
                  "convergence. Test errors: the final potential on an independent EMT example set. CPU times "
                  "(process CPU time of the whole run: fits, MD, grading, labelling) include JIT compilation, "
                  "paid mostly by the first run of each process."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    pin_one_core()
    args = parse_args(argv)
    if args.markdown_only:
        result = json.loads((RESULTS / f"{args.name}.json").read_text())
        (RESULTS / f"{args.name}.md").write_text(markdown(result))
        return
    if args.merge:
        parts = [json.loads((RESULTS / f"{n}.json").read_text()) for n in args.merge.split(",")]
        runs = list({(r["radial"], r["seed"]): r for part in parts for r in part["runs"]}.values())
        # only seeds every radial finished: a slow unfinished run must not bias a mean
        radial_set = {r["radial"] for r in runs}
        complete = {s for s in {r["seed"] for r in runs} if {r["radial"] for r in runs if r["seed"] == s} == radial_set}
        runs = sorted((r for r in runs if r["seed"] in complete), key=lambda r: (r["seed"], r["radial"]))
        radials = ",".join(dict.fromkeys(r["radial"] for r in runs))
        result = {**parts[0], "settings": {**parts[0]["settings"], "radial": radials, "name": args.name},
                  "runs": runs, "summary": summary(runs),
                  "overhead": final_overhead(Path(args.workdir), parts[0]["settings"]["species"]),
                  "processes": [{"radial": p["settings"]["radial"], "machine": p["machine"]} for p in parts]}
        write_result(f"{args.name}.json", result)
        (RESULTS / f"{args.name}.md").write_text(markdown(result))
        print(markdown(result))
        return
    from ase.calculators.emt import EMT

    from mlipress.active.grade import parameter_names
    from mlipress.active.learn import LearnSettings, learn
    from mlipress.examples import SPECIES, make_example_dataset

    test, _ = make_example_dataset(args.test, seed=12345)
    temps = tuple(float(t) for t in args.temperatures.split(","))
    out_json = RESULTS / f"{args.name}.json"
    previous = json.loads(out_json.read_text()) if out_json.exists() else {}
    runs = [r for r in previous.get("runs", [])]
    done = {(r["radial"], r["seed"]) for r in runs}
    result = {"settings": {**vars(args), "species": SPECIES}, "machine": machine(1), "runs": runs}
    overhead = previous.get("overhead")
    seeds = [int(x) for x in args.only_seeds.split(",")] if args.only_seeds else range(args.seeds)
    for seed in seeds:
        for radial in args.radial.split(","):
            if (radial, seed) in done:
                continue
            s = LearnSettings(species=SPECIES, level=args.level, cutoff=args.cutoff, min_dist=2.0, radial=radial,
                              fit_iters=args.fit_iters, seed=seed, temperatures=temps, md_steps=args.md_steps,
                              grade_mode=args.mode, grade_break=args.grade_break, max_select=args.max_select, max_iterations=args.max_iterations)
            work = Path(args.workdir) / f"{radial.replace(':', '_').replace(',', '-')}_seed{seed}"
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                res = learn(work, initial_set(args.initial, seed, SPECIES), starts(args.starts, seed), EMT, s, test=test,
                            out=io.StringIO())
            except Exception as exc:  # noqa: BLE001  a failed run is reported, the others go on
                print(f"{radial} seed {seed} failed: {exc!r}", flush=True)
                continue
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            last = res.log[-1] if res.log else {}
            names = parameter_names(res.params, "all")
            import jax

            columns = sum(int(x.size) for n in names for x in jax.tree_util.tree_leaves(getattr(res.params, n)))
            run = {"radial": radial, "seed": seed, "converged": res.converged, "train_size": len(res.train),
                   "iterations": len(res.log), "grade_columns": columns,
                   "test_energy_rmse_meV_per_atom": last.get("test_energy_rmse_meV_per_atom"),
                   "test_force_rmse_eV_per_A_component": last.get("test_force_rmse_eV_per_A_component"),
                   "cpu_s": cpu, "wall_s": wall, "log": res.log}
            runs.append(run)
            print(f"{radial:8s} seed {seed}: converged {res.converged}, {len(res.train)} configurations, "
                  f"{len(res.log)} iterations, test E RMSE {run['test_energy_rmse_meV_per_atom']}, {cpu:.0f} s CPU",
                  flush=True)
            if overhead is None and radial == "dense":
                overhead = grading_overhead(res.mtp, res.params, res.train.configurations, starts(1, 99)[0], SPECIES)
                print(f"grading overhead: {overhead}", flush=True)
            result["overhead"] = overhead
            result["summary"] = summary(runs)
            write_result(f"{args.name}.json", result)
            (RESULTS / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
