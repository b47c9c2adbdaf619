"""MD speed through ASE with the skin calculator against the bare evaluation cost (one thread).

Usage::

    python benchmarks/md.py [--repeat 8,8,6] [--steps 100] [--skin 0.5]

fcc Cu (8x8x6 cubic cells = 1536 atoms, a = 3.6 A) with the fitted level-10 Cu MTP of the
shared reference data (``cubic/10/pot.mtp``), NVE at 300 K, 1 fs. Reports, after compilation:

- bare: one jit-compiled energy+forces+stress evaluation on a prebuilt padded batch;
- plain calculator: ``MTPCalculator`` per MD step (vesin neighbour search every step);
- skin calculator: ``SkinMTPCalculator`` per MD step (search only when needed).

Writes ``benchmarks/results/md.json``.
"""

from __future__ import annotations


from _common import pin_one_core  # noqa: E402

pin_one_core()

import argparse  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

from _common import bare_evaluation_times, machine, shared_data, write_result  # noqa: E402  (puts the repo on sys.path)

from mlipress.calculator import MTPCalculator  # noqa: E402
from mlipress.simulate import SkinMTPCalculator, run_md  # noqa: E402


def md_rate(calc, repeat, steps) -> tuple[float, int]:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    run_md(atoms, calc, "nve", temperature=300, steps=5, interval=1000, progress=False)  # compile
    result = run_md(atoms, calc, "nve", temperature=300, steps=steps, interval=10**9, progress=False)
    return result.steps_per_second, len(atoms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", default="8,8,6")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--skin", type=float, default=0.5)
    args = parser.parse_args()
    repeat = tuple(int(x) for x in args.repeat.split(","))
    pot = shared_data() / "mlip-reference" / "cubic" / "10" / "pot.mtp"

    # Bare evaluation: prebuilt batch, jit-compiled efs only.
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    atoms.rattle(0.02, seed=0)
    bare_ms = 1000 * float(np.median(bare_evaluation_times(pot, atoms, ["Cu"], 10)))

    plain_rate, n = md_rate(MTPCalculator(pot, species=["Cu"]), repeat, args.steps)
    skin = SkinMTPCalculator(pot, species=["Cu"], skin=args.skin)
    skin_rate, _ = md_rate(skin, repeat, args.steps)

    rows = [
        ("bare evaluation (efs only)", 1000 / bare_ms, bare_ms),
        ("MD, MTPCalculator (search every step)", plain_rate, 1000 / plain_rate),
        (f"MD, SkinMTPCalculator (skin {args.skin} A)", skin_rate, 1000 / skin_rate),
    ]
    print(f"{n} atoms fcc Cu, level-10 MTP, NVE 300 K, 1 fs, {args.steps} steps, one thread")
    print(f"{'route':45s} {'steps/s':>9s} {'ms/step':>9s} {'us/atom':>9s}")
    for name, rate, ms in rows:
        print(f"{name:45s} {rate:9.2f} {ms:9.2f} {1000 * ms / n:9.2f}")
    print(f"skin calculator: {skin.rebuilds} neighbour searches in {skin.calls} calls; "
          f"MD overhead over bare evaluation {100 * (1000 / skin_rate / bare_ms - 1):.1f}%")
    out = {
        "machine": machine(),
        "atoms": n,
        "repeat": list(repeat),
        "potential": "cubic/10/pot.mtp (Cu, level 10, 5 A cutoff)",
        "steps": args.steps,
        "skin_A": args.skin,
        "bare_ms_per_call": bare_ms,
        "plain_md_steps_per_s": plain_rate,
        "skin_md_steps_per_s": skin_rate,
        "skin_rebuilds": skin.rebuilds,
        "skin_calls": skin.calls,
    }
    path = write_result("md.json", out)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
