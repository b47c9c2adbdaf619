"""Speed of the exact linear solve's design matrix: chain rule with sparse product Jacobians
(mlipress.fit.linear) against forward-mode differentiation of the force pass.

Usage::

    python benchmarks/linear_solve.py [--levels 10 16 20 24] [--reference-levels 10 16 20]

One thread, one core. For each level, the fitted ``cubic/NN/pot.mtp`` and the 21 Cu
configurations of ``cubic/train21.cfg`` (672 atoms) in chunks of at most ``--max-atoms`` (the
reference needs ~35 MB per atom and basis function at level 20): the design matrix
d(E, F, virial)/d(moment coefficients) is timed (best of ``--repeat`` after the compiling
call; process CPU time, robust when other jobs share the machine), and the whole
``linear_solve`` (design + streaming QR + solve). The reference, measured in the same run, is
``jax.jacfwd`` of the evaluator's energies, forces and virials with respect to the moment
coefficients (S tangents through the reverse pass: the previous implementation); the two
must agree to 1e-10 relative. Writes ``benchmarks/results/linear_solve.json``.
"""

from __future__ import annotations

from _common import pin_one_core  # noqa: E402

pin_one_core()

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _common import machine, shared_data, write_result  # noqa: E402  (puts the repo on sys.path)

import mlipress  # noqa: E402,F401  (float64)
from mlipress.models.mtp.evaluator import make_efs_fn  # noqa: E402
from mlipress.io import read_cfg  # noqa: E402
from mlipress.io.mtp import read_mtp  # noqa: E402
from mlipress.loss import prepare  # noqa: E402
from mlipress.fit.linear import linear_solve, mtp_features_fn  # noqa: E402


def reference_design(mtp):
    efs = make_efs_fn(mtp)

    @jax.jit
    def design(params, batch):
        def lin(m):
            out = efs(params.replace(moment=m, species=jnp.zeros_like(params.species)), batch)
            return out["energy"], out["forces"], out["virial"]

        return jax.jacfwd(lin)(params.moment)

    return design


def cpu_time(fn, repeat: int) -> tuple[float, object]:
    c0 = time.process_time()
    out = jax.block_until_ready(fn())
    first = time.process_time() - c0
    best = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        out = jax.block_until_ready(fn())
        best = min(best, time.process_time() - c0)
    return first, best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", type=int, nargs="+", default=[10, 16, 20, 24])
    p.add_argument("--reference-levels", type=int, nargs="+", default=[10, 16, 20])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--max-atoms", type=int, default=160)
    args = p.parse_args()

    cubic = shared_data() / "mlip-reference" / "cubic"
    data = read_cfg(cubic / "train21.cfg")
    rows = []
    print(f"{'level':>5} {'S':>4} {'design s':>9} {'us/atom':>8} {'solve s':>8} {'reference s':>11} "
          f"{'speed-up':>8} {'max rel diff':>12} {'compile s':>9}")
    for level in args.levels:
        mtp = read_mtp(cubic / f"{level:02d}" / "pot.mtp")
        prepared = prepare(data, mtp, max_atoms=args.max_atoms)
        params = mtp.params()
        design = jax.jit(mtp_features_fn(mtp))
        first, best, cols = cpu_time(lambda: [design(params, ch.batch) for ch in prepared.chunks], args.repeat)
        _, solve, _ = cpu_time(lambda: linear_solve(mtp, params, prepared)[0].moment, 1)
        row = {"level": level, "basis_functions": mtp.moments.scalar_count, "atoms": data.natoms,
               "chunks": len(prepared.chunks),
               "design_cpu_s": best, "design_us_per_atom": 1e6 * best / data.natoms,
               "design_first_call_cpu_s": first, "linear_solve_cpu_s": solve}
        if level in args.reference_levels:
            ref = reference_design(mtp)
            _, ref_best, ref_cols = cpu_time(lambda: [ref(params, ch.batch) for ch in prepared.chunks], args.repeat)
            diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())
                       for new, old in zip(cols, ref_cols)
                       for a, b in zip((c[..., mtp.species_count:] for c in new), old))
            row.update(reference_cpu_s=ref_best, speedup=ref_best / best, max_relative_difference=diff)
            assert diff < 1e-10, f"design matrices differ at level {level}: {diff:.3g}"
        rows.append(row)
        ref_s = f"{row['reference_cpu_s']:11.2f}" if "reference_cpu_s" in row else f"{'-':>11}"
        sp = f"{row['speedup']:8.1f}" if "speedup" in row else f"{'-':>8}"
        dd = f"{row['max_relative_difference']:12.1e}" if "max_relative_difference" in row else f"{'-':>12}"
        print(f"{level:5d} {row['basis_functions']:4d} {best:9.2f} {row['design_us_per_atom']:8.0f} "
              f"{solve:8.2f} {ref_s} {sp} {dd} {first:9.1f}", flush=True)
    out = write_result("linear_solve.json", {"benchmark": "linear_solve", "command": " ".join(sys.argv),
                                             "data": "cubic/train21.cfg",
                                             "rows": rows, "machine": machine()})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
