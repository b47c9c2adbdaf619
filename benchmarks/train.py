"""Speed of one training loss+gradient pass against MLIP-2 (REFERENCE.md section 4).

Usage::

    python benchmarks/train.py [--levels 10 16 20] [--repeat 5] [--data cubic/train21.cfg]
                               [--max-atoms 2048]

One thread (XLA flags set below, before JAX is imported). For each level, the fitted
``cubic/NN/pot.mtp`` and the 21 Cu configurations of ``cubic/train21.cfg`` (672 atoms, 5 A
cutoff, ~42 neighbours) are prepared once (:func:`mlipress.loss.prepare`), then
:meth:`mlipress.loss.Objective.value_and_grad` (MLIP-2 default weights, E/F/S residuals,
penalty 1e-9) is timed: the first call (JIT compilation + one pass) and the best of
``--repeat`` later calls. The energy+forces+stress evaluation of the same batch is timed too,
for the ratio pass / evaluation. Both wall-clock and process CPU time are recorded (the
latter is robust when other processes share the cores); the ratio to MLIP-2 uses wall time. Reported in microseconds per real atom next to MLIP-2's
67 / 384 / 1081 us/atom. Also checks that ``f`` equals MLIP-2's value. Writes
``benchmarks/results/train_pass.json``.
"""

from __future__ import annotations


from _common import pin_one_core  # noqa: E402

pin_one_core()

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

from _common import machine, shared_data, write_result  # noqa: E402  (puts the repo on sys.path)

import mlipress  # noqa: E402,F401  (float64)
from mlipress.models.mtp.evaluator import make_efs_fn  # noqa: E402
from mlipress.io import read_cfg  # noqa: E402
from mlipress.io.mtp import read_mtp  # noqa: E402
from mlipress.loss import Objective, prepare  # noqa: E402

MLIP2_PASS_US_PER_ATOM = {10: 67.0, 16: 384.0, 20: 1081.0}
MOTEP_C_PASS_US_PER_ATOM = {10: 209.0, 16: 1656.0, 20: 6106.0}
MLIP2_F = {10: 7.600390275199e-07, 16: 4.304363622260e-06, 20: 3.284599548693e-07}


def _best(fn, repeat: int) -> tuple[float, float]:
    """Best wall-clock and best process-CPU seconds of ``fn`` over ``repeat`` calls.

    With XLA on one thread the CPU time is the compute time even when other processes share
    the cores (the wall time then includes waiting for a core)."""
    walls, cpus = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn())
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def time_level(cubic: Path, data_file: Path, level: int, repeat: int, max_atoms: int) -> dict:
    mtp = read_mtp(cubic / f"{level:02d}" / "pot.mtp")
    dataset = read_cfg(data_file)
    n_atoms = dataset.natoms
    params = mtp.params()

    t0 = time.perf_counter()
    data = prepare(dataset, mtp, max_atoms=max_atoms)
    t_prepare = time.perf_counter() - t0
    data = type(data)(
        chunks=tuple(jax.device_put(c) for c in data.chunks),
        members=data.members, n_configs=data.n_configs, n_atoms=data.n_atoms,
        weights=data.weights, cutoff=data.cutoff,
    )  # fmt: skip
    obj = Objective(mtp, data)

    t0 = time.perf_counter()
    value, _ = obj.value_and_grad(params)
    t_first = time.perf_counter() - t0
    t_pass, cpu_pass = _best(lambda: obj.value_and_grad(params)[1], repeat)

    efs = jax.jit(make_efs_fn(mtp))
    t0 = time.perf_counter()
    for chunk in data.chunks:
        jax.block_until_ready(efs(params, chunk.batch))
    t_efs_jit = time.perf_counter() - t0
    t_efs, cpu_efs = _best(lambda: [efs(params, c.batch) for c in data.chunks], repeat)

    us = t_pass / n_atoms * 1e6
    us_efs = t_efs / n_atoms * 1e6
    row = {
        "level": level,
        "n_atoms": n_atoms,
        "n_configs": data.n_configs,
        "padded_shapes": sorted(data.shapes),
        "prepare_s": t_prepare,
        "jit_plus_first_pass_s": t_first,
        "pass_s": t_pass,
        "pass_us_per_atom": us,
        "pass_cpu_s": cpu_pass,
        "pass_cpu_us_per_atom": cpu_pass / n_atoms * 1e6,
        "mlip2_pass_us_per_atom": MLIP2_PASS_US_PER_ATOM.get(level),
        "ratio_to_mlip2": us / MLIP2_PASS_US_PER_ATOM[level] if level in MLIP2_PASS_US_PER_ATOM else None,
        "motep_c_pass_us_per_atom": MOTEP_C_PASS_US_PER_ATOM.get(level),
        "efs_us_per_atom": us_efs,
        "efs_cpu_us_per_atom": cpu_efs / n_atoms * 1e6,
        "efs_jit_s": t_efs_jit,
        "pass_over_efs": t_pass / t_efs,
        "f": value,
        "f_mlip2": MLIP2_F.get(level),
        "f_rel_diff": (value / MLIP2_F[level] - 1.0) if level in MLIP2_F else None,
    }
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[10, 16, 20])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data", default="cubic/train21.cfg", help="relative to mlip-reference/")
    ap.add_argument("--max-atoms", type=int, default=2048)
    ap.add_argument("--output", default="train_pass.json", help="file name in benchmarks/results/")
    args = ap.parse_args(argv)

    ref = shared_data() / "mlip-reference"
    cubic = ref / "cubic"
    rows = []
    header = (f"{'level':>5} {'atoms':>6} {'JIT+1st s':>10} {'pass ms':>9} {'us/atom':>9} "
              f"{'CPU us/at':>10} {'MLIP-2':>8} {'ratio':>6} {'EFS us/at':>10} {'pass/EFS':>9} {'f rel.diff':>11}")  # fmt: skip
    print(header)
    for level in args.levels:
        row = time_level(cubic, ref / args.data, level, args.repeat, args.max_atoms)
        rows.append(row)
        mlip = row["mlip2_pass_us_per_atom"]
        ratio = row["ratio_to_mlip2"]
        print(
            f"{level:>5} {row['n_atoms']:>6} {row['jit_plus_first_pass_s']:>10.1f} {row['pass_s'] * 1e3:>9.1f} "
            f"{row['pass_us_per_atom']:>9.1f} {row['pass_cpu_us_per_atom']:>10.1f} {mlip if mlip else float('nan'):>8.0f} "
            f"{ratio if ratio else float('nan'):>6.2f} {row['efs_us_per_atom']:>10.1f} "
            f"{row['pass_over_efs']:>9.2f} {row['f_rel_diff'] if row['f_rel_diff'] is not None else float('nan'):>11.1e}",
            flush=True,
        )
    result = {
        "benchmark": "MLIP-2 loss+gradient pass (E/F/S, default weights, penalty 1e-9), one thread",
        "data": args.data,
        "max_atoms": args.max_atoms,
        "repeat": args.repeat,
        "machine": machine(),
        "reference": "REFERENCE.md section 4: MLIP-2 pass 67/384/1081 us/atom (L10/L16/L20)",
        "results": rows,
    }
    out = write_result(Path(args.output).name, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
