"""Energy+forces+stress speed of the evaluator against MLIP-2 (REFERENCE.md section 4).

Usage::

    python benchmarks/evaluate.py [--levels 10 16 20] [--repeat 5] [--check-all-levels]

Runs on one thread (XLA flags set below, before JAX is imported) on the 101 Cu configurations
of ``cubic/train101.cfg`` (3232 atoms, 5 A cutoff, ~42 neighbours), times the jit-compiled
evaluation after compilation (best of ``--repeat``), and reports microseconds per atom next to
MLIP-2's figures measured on this kind of machine. ``--check-all-levels`` also checks every
fitted cubic level (02-26) against MLIP's ``efs.mlip2.cfg`` (the slow part of the test suite).
Writes ``benchmarks/results/evaluate.json`` (and ``evaluate_agreement.json`` with the check).
"""

from __future__ import annotations


from _common import pin_one_core  # noqa: E402

pin_one_core()

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from _common import machine, shared_data, write_result  # noqa: E402  (puts the repo on sys.path)

from mlipress.data import matrix_to_voigt  # noqa: E402
from mlipress.models.base import jitted_efs  # noqa: E402
from mlipress.io import read_cfg  # noqa: E402
from mlipress.io.mtp import read_mtp  # noqa: E402
from mlipress.batch import build_batch  # noqa: E402
from mlipress.predict import predict  # noqa: E402

MLIP2_US_PER_ATOM = {10: 13.2, 16: 59.0, 20: 138.0}
MOTEP_C_US_PER_ATOM = {10: 16.0, 16: 58.0, 20: 142.0}


def time_level(cubic: Path, level: int, repeat: int) -> dict:
    mtp = read_mtp(cubic / f"{level:02d}" / "pot.mtp")
    configs = read_cfg(cubic / "train101.cfg").configurations
    n_atoms = sum(c.natoms for c in configs)
    t0 = time.perf_counter()
    batch = jax.device_put(build_batch(configs, mtp.cutoff))
    t_nl = time.perf_counter() - t0
    efs = jitted_efs(mtp)
    params = mtp.params()
    t0 = time.perf_counter()
    jax.block_until_ready(efs(params, batch))
    t_jit = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(efs(params, batch))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    us = min(times) / n_atoms * 1e6
    return {
        "level": level,
        "atoms": n_atoms,
        "padded_atoms": int(batch.vectors.shape[0]),
        "neighbour_slots": int(batch.vectors.shape[1]),
        "us_per_atom": us,
        "us_per_atom_median": float(np.median(times)) / n_atoms * 1e6,
        # CPU time of this process: less inflated than wall time when other jobs share the cores.
        "cpu_us_per_atom": min(cpu) / n_atoms * 1e6,
        "cpu_ratio_to_mlip2": min(cpu) / n_atoms * 1e6 / MLIP2_US_PER_ATOM[level] if level in MLIP2_US_PER_ATOM else None,
        "neighbour_list_us_per_atom": t_nl / n_atoms * 1e6,
        "jit_seconds": t_jit,
        "mlip2_us_per_atom": MLIP2_US_PER_ATOM.get(level),
        "ratio_to_mlip2": us / MLIP2_US_PER_ATOM[level] if level in MLIP2_US_PER_ATOM else None,
        "motep_c_us_per_atom": MOTEP_C_US_PER_ATOM.get(level),
    }


def check_all_levels(cubic: Path) -> list[dict]:
    configs = read_cfg(cubic / "train101.cfg").configurations
    rows = []
    for folder in sorted(p for p in cubic.iterdir() if p.is_dir()):
        ref_path = folder / "efs.mlip2.cfg"
        if not ref_path.exists():
            continue
        mtp = read_mtp(folder / "pot.mtp")
        ref = read_cfg(ref_path).configurations
        t0 = time.perf_counter()
        pred, _ = predict(mtp, configs)
        rows.append(
            {
                "level": int(folder.name),
                "max_energy_diff_eV": max(abs(p.energy - r.energy) for p, r in zip(pred, ref)),
                "max_force_diff_eV_per_A": max(float(np.abs(p.forces - r.forces).max()) for p, r in zip(pred, ref)),
                "max_stress_diff_eV": max(
                    float(np.abs(matrix_to_voigt(p.virial) - matrix_to_voigt(r.virial)).max()) for p, r in zip(pred, ref)
                ),
                "seconds_including_jit": time.perf_counter() - t0,
            }
        )
        print("  level {level:2d}: dE {max_energy_diff_eV:.1e} eV, dF {max_force_diff_eV_per_A:.1e} eV/A, "
              "dS {max_stress_diff_eV:.1e} eV ({seconds_including_jit:.0f} s)".format(**rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[10, 16, 20])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--check-all-levels", action="store_true")
    args = parser.parse_args()
    cubic = shared_data() / "mlip-reference" / "cubic"

    result_machine = machine()
    rows = [time_level(cubic, level, args.repeat) for level in args.levels]
    print(f"\nEnergy+forces+stress, Cu fcc, 5 A cutoff, {rows[0]['atoms']} atoms, one thread")
    print(f"load average at start: {result_machine['load_average_1min_at_start']}")
    print(f"{'level':>5} {'us/atom':>9} {'cpu us/atom':>12} {'MLIP-2':>8} {'ratio':>7} {'cpu ratio':>10} {'jit s':>7} {'nl us/atom':>11}")
    for r in rows:
        ref = f"{r['mlip2_us_per_atom']:8.1f}" if r["mlip2_us_per_atom"] else "     n/a"
        ratio = f"{r['ratio_to_mlip2']:7.2f}" if r["ratio_to_mlip2"] else "    n/a"
        cratio = f"{r['cpu_ratio_to_mlip2']:10.2f}" if r["cpu_ratio_to_mlip2"] else "       n/a"
        print(f"{r['level']:5d} {r['us_per_atom']:9.1f} {r['cpu_us_per_atom']:12.1f} {ref} {ratio} {cratio} "
              f"{r['jit_seconds']:7.1f} {r['neighbour_list_us_per_atom']:11.2f}")
    result = {"benchmark": "evaluate", "machine": result_machine, "command": " ".join(sys.argv), "rows": rows,
              "reference": "MLIP-2 figures from REFERENCE.md section 4 (measured on one core of this machine kind)"}
    if args.check_all_levels:
        print("\nagreement with MLIP-2 efs.mlip2.cfg on train101.cfg (cfg text precision: 1e-12 eV, 1e-6 eV/A, 1e-5 eV)")
        agreement = {"benchmark": "evaluate_agreement", "machine": result_machine, "command": " ".join(sys.argv),
                     "rows": check_all_levels(cubic)}
        print(f"wrote {write_result('evaluate_agreement.json', agreement)}")
    out = write_result("evaluate.json", result)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
