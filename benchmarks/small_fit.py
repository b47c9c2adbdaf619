"""Whole-fit cost of small fits: start-up, JIT compile, per-iteration time and accuracy.

A new user's first fit is small: the built-in example (``mlipress demo``: 60 EMT Cu-Ag-Au cells
of 32 atoms, 80/20 split), level 8 or 10, a few hundred iterations from an untrained start.
There per-iteration overhead (start-up, compilation, the exact solve of variable projection)
matters as much as the bare pass. For each level and each scheme (variable projection, the
default; MLIP's scheme, ``--no-variable-projection``) this runs one fit of ``--max-iter``
iterations and records, at iterations 100/200/500 (progress records), the wall and CPU
seconds so far and the validation energy/force RMSE, plus

- start-up: wall seconds of ``python -m mlipress --help`` in a fresh process (imports), and of
  building the data (EMT labelling) and preparing it (neighbour lists, padding);
- compile: seconds XLA spent compiling during the fit (``jax.monitoring`` backend-compile
  events), and how many compilations;
- per iteration: CPU seconds per iteration between iteration 100 and the end (steady state),
  and objective evaluations per iteration.

One thread on one core (``pin_one_core``); the machine may be shared: process CPU time is the
robust figure. Writes ``benchmarks/results/small_fit.json`` and ``small_fit.md``.

    python benchmarks/small_fit.py [--levels 8,10] [--max-iter 500] [--seeds 1]
"""

from __future__ import annotations

from _common import RESULTS, machine, pin_one_core, write_result  # noqa: E402  (puts the repo on sys.path)

pin_one_core()

import os  # noqa: E402

# cold compilations: what a first fit pays (the persistent cache would hide them on a rerun)
os.environ["MLIPRESS_COMPILATION_CACHE"] = "0"

import argparse  # noqa: E402
import io  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

CHECKPOINTS = (100, 200, 500, 1000)


def startup_seconds() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlipress", "--help"], check=True, capture_output=True)
    return time.perf_counter() - t


def one_fit(level: int, scheme: str, train, valid, species, max_iter: int, seed: int) -> dict:
    import jax

    from mlipress.fit.trainer import TrainSettings, train as fit
    from mlipress.models.mtp.basis import untrained_mtp

    compiles = []

    def listen(event, duration, **_):
        if event.endswith("backend_compile_duration"):
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    # a structure of its own per fit, so that no fit reuses another's compilations
    offset = 1e-6 * (1 + seed + 10 * level + 1000 * (scheme == "mlip"))
    mtp = untrained_mtp(level, len(species), min_dist=2.0, max_dist=5.0 + offset)
    marks = {}
    t0, c0 = time.perf_counter(), time.process_time()

    def callback(rec):
        if rec.get("event") == "progress" and rec["iteration"] in CHECKPOINTS + (max_iter,):
            marks[rec["iteration"]] = {
                "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "n_evals": rec["n_evals"],
                "f": rec["f"], "valid_energy_rmse_meV_per_atom": rec["valid_energy_rmse_meV_per_atom"],
                "valid_force_rmse_eV_per_A": rec["valid_force_rmse_eV_per_A"],
            }
        return False

    settings = TrainSettings(max_iter=max_iter, log_every=50, seed=seed, ftol=0.0, gtol=0.0,
                             variable_projection=scheme == "vp")
    res = fit(mtp, train, settings, valid_data=valid, callback=callback, out=io.StringIO())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    jax.monitoring.clear_event_listeners()
    last = max(marks)
    first = min(k for k in marks if k >= 100) if any(k >= 100 for k in marks) else last
    steady = (marks[last]["cpu_s"] - marks[first]["cpu_s"]) / max(last - first, 1)
    evals = (marks[last]["n_evals"] - marks[first]["n_evals"]) / max(last - first, 1)
    return {"level": level, "scheme": scheme, "seed": seed, "iterations": last, "stop_reason": res.stop_reason,
            "wall_s": wall, "cpu_s": cpu, "compile_s": sum(compiles), "compilations": len(compiles),
            "cpu_s_per_iteration_steady": steady, "evals_per_iteration_steady": evals, "at": marks}


def report(result: dict) -> str:
    lines = ["# Whole-fit cost of small fits (`benchmarks/small_fit.py`)", "",
             f"Built-in example: {result['n_train']} training / {result['n_valid']} validation EMT Cu-Ag-Au "
             f"configurations ({result['train_atoms']} training atoms), untrained start, {result['max_iter']} "
             f"iterations, no early stop; one thread on one core; {result['machine']['cpu']}, load average "
             f"{result['machine']['load_average_1min_at_start']:.1f} at the start (shared machine: CPU seconds "
             "are the robust figure). `vp` = variable projection (the default), `mlip` = MLIP's scheme "
             "(`--no-variable-projection`: 75 pre-training iterations, BFGS on all coefficients, exact "
             "solve every 50).", "",
             f"Start-up: `python -m mlipress --help` {result['startup_s']:.2f} s wall; building the example "
             f"(EMT) {result['data_s']:.2f} s.", "",
             "| level | scheme | compile s (n) | CPU s/iteration (steady) | evals/iteration | total CPU s | "
             "valid E meV/atom @100 / 200 / 500 | valid F eV/A @100 / 200 / 500 | CPU s to 100 / 200 / 500 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["fits"]:
        at = r["at"]

        def col(key, fmt):
            return " / ".join(fmt.format(at[k][key]) if k in at else "-" for k in (100, 200, 500))

        lines.append(f"| {r['level']} | {r['scheme']} | {r['compile_s']:.1f} ({r['compilations']}) | "
                     f"{r['cpu_s_per_iteration_steady']:.3f} | {r['evals_per_iteration_steady']:.2f} | "
                     f"{r['cpu_s']:.1f} | {col('valid_energy_rmse_meV_per_atom', '{:.2f}')} | "
                     f"{col('valid_force_rmse_eV_per_A', '{:.4f}')} | {col('cpu_s', '{:.0f}')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="8,10")
    p.add_argument("--schemes", default="vp,mlip")
    p.add_argument("--max-iter", dest="max_iter", type=int, default=500)
    p.add_argument("--configs", type=int, default=60, help="example configurations (demo: 60)")
    p.add_argument("--seeds", type=int, default=1)
    a = p.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    from mlipress.examples import make_example_dataset, split

    startup = startup_seconds()
    t = time.perf_counter()
    data, species = make_example_dataset(n_configs=a.configs, seed=0)
    data_s = time.perf_counter() - t
    train, valid = split(data, 0.8, seed=0)
    result = {"machine": machine(), "startup_s": startup, "data_s": data_s, "n_train": len(train),
              "n_valid": len(valid), "train_atoms": int(sum(len(c.types) for c in train)),
              "max_iter": a.max_iter, "fits": []}
    for level in (int(x) for x in a.levels.split(",")):
        for scheme in a.schemes.split(","):
            for seed in range(a.seeds):
                r = one_fit(level, scheme, train, valid, species, a.max_iter, seed)
                result["fits"].append(r)
                print(f"level {level} {scheme} seed {seed}: {r['cpu_s']:.1f} CPU s, compile {r['compile_s']:.1f} s, "
                      f"{r['cpu_s_per_iteration_steady']:.3f} CPU s/iteration, valid "
                      f"{ {k: round(v['valid_energy_rmse_meV_per_atom'], 2) for k, v in r['at'].items()} }", flush=True)
                write_result("small_fit.json", result)
                (RESULTS / "small_fit.md").write_text(report(result))
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
