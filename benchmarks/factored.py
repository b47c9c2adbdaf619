"""Factored vs dense radial parts: energy+forces+stress and the training pass, one core.

Usage::

    python benchmarks/factored.py [--levels 16 20] [--repeat 3] [--mf-rank 5] [--tt 4,8,4]

For a 4-species MTP of each level (the fitted NbMoTaW level-16 potential of
``mlip-reference/nbmotaw-quaternary``; a random level-20 one, since timings do not depend on the
values), the dense radial tensor and its MF (rank ``--mf-rank``) and TT (``--tt``) truncations are
timed on the same batch, ``mixed.cfg``: the jit-compiled E+F+S evaluation and one loss+gradient
pass (:class:`mlipress.loss.Objective`), in CPU microseconds per atom, best of ``--repeat``.
The paper's claim is that compression also reduces computation; this measures it end to end.
Writes ``benchmarks/results/factored.json``.
"""

from __future__ import annotations

from _common import pin_one_core  # noqa: E402

pin_one_core()

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

from _common import machine, shared_data, write_result  # noqa: E402

import mlipress  # noqa: E402,F401
from mlipress.batch import build_batch  # noqa: E402
from mlipress.io import read_cfg  # noqa: E402
from mlipress.io.mtp import read_mtp  # noqa: E402
from mlipress.loss import Objective, prepare  # noqa: E402
from mlipress.models.layers import MatrixFactorized, TensorTrain  # noqa: E402
from mlipress.models.mtp.basis import untrained_mtp  # noqa: E402


def cpu_best(fn, repeat: int) -> float:
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        jax.block_until_ready(fn())
        best = min(best, time.process_time() - c0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[16, 20])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mf-rank", type=int, default=5)
    parser.add_argument("--tt", default="4,8,4")
    args = parser.parse_args()
    folder = shared_data() / "mlip-reference" / "nbmotaw-quaternary"
    configs = read_cfg(folder / "mixed.cfg").configurations
    n_atoms = sum(c.natoms for c in configs)
    rows = []
    for level in args.levels:
        if level == 16:
            base = read_mtp(folder / "pot.mtp")
        else:
            fresh = untrained_mtp(level, 4, 2.0, 5.0)
            base = fresh.with_params(fresh.init(0))
        params = base.params()
        C = params.radial.dense()
        layers = {
            "dense": params.radial,
            f"mf:{args.mf_rank}": MatrixFactorized.from_dense(C, args.mf_rank),
            f"tt:{args.tt}": TensorTrain.from_dense(C, tuple(int(r) for r in args.tt.split(","))),
        }
        batch = jax.device_put(build_batch(configs, base.cutoff))
        for name, layer in layers.items():
            model = base.with_params(params.replace(radial=layer))
            p = model.params()
            efs = jax.jit(model.efs_fn())
            t_efs = cpu_best(lambda: efs(p, batch), args.repeat)
            obj = Objective(model, prepare(configs, model))
            t_pass = cpu_best(lambda: obj.value_and_grad(p)[1], args.repeat)
            rows.append({"level": level, "radial": name, "radial_params": int(sum(a.size for a in layer.arrays().values())),
                         "efs_cpu_us_per_atom": t_efs / n_atoms * 1e6, "pass_cpu_us_per_atom": t_pass / n_atoms * 1e6})
            print(f"level {level} {name:10s} params {rows[-1]['radial_params']:5d}  E+F+S {rows[-1]['efs_cpu_us_per_atom']:8.1f}"
                  f"  pass {rows[-1]['pass_cpu_us_per_atom']:8.1f} cpu us/atom", flush=True)
    for r in rows:
        dense = next(d for d in rows if d["level"] == r["level"] and d["radial"] == "dense")
        r["efs_ratio_to_dense"] = r["efs_cpu_us_per_atom"] / dense["efs_cpu_us_per_atom"]
        r["pass_ratio_to_dense"] = r["pass_cpu_us_per_atom"] / dense["pass_cpu_us_per_atom"]
    print(f"\n{'level':>5} {'radial':>10} {'params':>7} {'E+F+S/dense':>12} {'pass/dense':>11}")
    for r in rows:
        print(f"{r['level']:5d} {r['radial']:>10} {r['radial_params']:7d} {r['efs_ratio_to_dense']:12.2f} {r['pass_ratio_to_dense']:11.2f}")
    out = write_result("factored.json", {"benchmark": "factored", "machine": machine(), "command": " ".join(sys.argv),
                                         "atoms": n_atoms, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
