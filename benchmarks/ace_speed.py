"""ACE evaluation speed: mlipress (JAX) against python-ace (pacemaker's C++ evaluator), and the
MTP, on the same structures (issue 11).

python-ace is a peer installed only in a benchmark environment (``pip install python-ace``),
never a dependency; without it the python-ace column is empty. One thread on one pinned core,
process CPU time, best of ``--calls`` energy+forces+stress calls after a warm-up call:

- mlipress: the jit-compiled E+F+S of one prebuilt padded batch (the floor of an MD step, as in
  ``benchmarks/evaluate.py``), and the whole ASE calculator call (neighbour list included);
- python-ace: ``PyACECalculator`` on the same ``.yaml`` (the whole calculator call, with its
  neighbour list), the atoms displaced by 1e-6 A between calls so that nothing is cached;
- MTP level 16 (and 12) on the same cell, for the comparison at similar parameter counts.

Potentials: the paper's ACE setting (body order 4, N_k = 9, N_rad = 3, L = 2, cutoff 5 A) for
the four NbMoTaW species with the default limits, and a smaller basis (n_max 2,1), random
coefficients (speed does not depend on them). Structure: a rattled 128-atom equiatomic
NbMoTaW bcc cell (``--repeat``).

    python benchmarks/ace_speed.py            # writes benchmarks/results/ace_speed.{json,md}
"""

from __future__ import annotations

from _common import NBMOTAW_SPECIES as SPECIES  # noqa: E402  (puts the repo on sys.path)
from _common import RESULTS, bare_evaluation_times, machine, pin_one_core, write_result  # noqa: E402

pin_one_core()

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def _cell(repeat: int):
    from ase.build import bulk

    atoms = bulk("Mo", "bcc", a=3.2, cubic=True).repeat((repeat,) * 3)
    atoms.set_chemical_symbols([SPECIES[i % 4] for i in range(len(atoms))])
    atoms.rattle(0.05, seed=1)
    return atoms


def _best_cpu(call, atoms, calls: int) -> float:
    """Best process-CPU seconds of ``call(atoms)`` over ``calls`` calls after one warm-up call,
    the positions moved by 1e-6 A each time so no calculator reuses its last result."""
    call(atoms)
    best = float("inf")
    for k in range(calls):
        atoms.positions[0, 0] += 1e-6 * (-1) ** k
        t = time.process_time()
        call(atoms)
        best = min(best, time.process_time() - t)
    return best


def _efs(atoms):
    atoms.get_potential_energy()
    atoms.get_forces()
    atoms.get_stress()


def _calc_call(calc):
    def call(atoms):
        atoms.calc = calc
        calc.reset()
        _efs(atoms)

    return call


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=4, help="bcc cells per side (4: 128 atoms)")
    p.add_argument("--calls", type=int, default=5)
    args = p.parse_args()

    import jax.numpy as jnp

    import mlipress  # noqa: F401  (float64)
    from mlipress.calculator import MTPCalculator
    from mlipress.models.ace.model import untrained_ace
    from mlipress.models.mtp.basis import untrained_mtp

    try:
        from pyace import PyACECalculator
    except ImportError:
        PyACECalculator = None
        print("python-ace not installed: its column stays empty (pip install python-ace in a benchmark venv)")

    atoms = _cell(args.repeat)
    n = len(atoms)
    rows = []
    tmp = Path(tempfile.mkdtemp())
    bases = {"paper setting (n_max 3,3)": None, "small (n_max 2,1)": [2, 1]}
    for label, nmax in bases.items():
        ace = untrained_ace(SPECIES, body_order=4, n_k=9, nrad=3, lmax=2, cutoff=5.0, nmax=nmax)
        p0 = ace.init(0)
        coeffs = 0.01 * np.random.default_rng(0).standard_normal((ace.n_species, len(ace.functions)))
        ace = ace.with_params(replace(p0, coeffs=jnp.asarray(coeffs), species=jnp.zeros(ace.n_species)))
        path = tmp / "ace.yaml"
        ace.write(path)
        bare = min(bare_evaluation_times(ace, atoms, SPECIES, args.calls))
        ours = _best_cpu(_calc_call(MTPCalculator(ace, species=SPECIES)), atoms.copy(), args.calls)
        theirs = _best_cpu(_calc_call(PyACECalculator(str(path))), atoms.copy(), args.calls) if PyACECalculator else None
        rows.append({"model": f"ACE {label}", "functions_per_species": len(ace.functions),
                     "params": ace.num_params()["total"], "bare_us_per_atom": 1e6 * bare / n,
                     "calculator_us_per_atom": 1e6 * ours / n,
                     "pyace_us_per_atom": None if theirs is None else 1e6 * theirs / n})
        print(rows[-1], flush=True)
    for level in (12, 16):
        mtp = untrained_mtp(level, len(SPECIES), 2.0, 5.0)
        mtp = mtp.with_params(mtp.init(0))
        bare = min(bare_evaluation_times(mtp, atoms, SPECIES, args.calls))
        ours = _best_cpu(_calc_call(MTPCalculator(mtp, species=SPECIES)), atoms.copy(), args.calls)
        rows.append({"model": f"MTP level {level}", "functions_per_species": None,
                     "params": mtp.num_params()["total"], "bare_us_per_atom": 1e6 * bare / n,
                     "calculator_us_per_atom": 1e6 * ours / n, "pyace_us_per_atom": None})
        print(rows[-1], flush=True)

    version = None
    if PyACECalculator is not None:
        from importlib.metadata import version as v

        version = v("python-ace")
    doc = {"benchmark": "ace_speed", "atoms": n, "calls": args.calls, "python_ace": version, "rows": rows,
           "machine": machine(threads=1)}
    write_result("ace_speed.json", doc)
    lines = ["# ACE evaluation speed: mlipress vs python-ace, and the MTP (`benchmarks/ace_speed.py`)", "",
             f"{n}-atom rattled equiatomic NbMoTaW bcc cell, cutoff 5 A, energy + forces + stress, one thread on one "
             f"core, process CPU time, best of {args.calls} calls after a warm-up; "
             f"{doc['machine']['cpu']}, load {doc['machine']['load_average_1min_at_start']:.1f} at the start "
             f"(shared machine: compare within the table). python-ace {version or 'not installed'}. "
             "ACE: body order 4, N_k 9, N_rad 3, L 2, random coefficients; 'bare' = the compiled E+F+S of a prebuilt "
             "batch (no neighbour list), 'calculator' = the whole ASE call, as python-ace's is.", "",
             "| model | B-functions per species | parameters | mlipress bare us/atom | mlipress calculator us/atom "
             "| python-ace us/atom | mlipress / python-ace |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = (f"{r['calculator_us_per_atom'] / r['pyace_us_per_atom']:.2f}" if r["pyace_us_per_atom"] else "-")
        lines.append(f"| {r['model']} | {r['functions_per_species'] or '-'} | {r['params']} | {r['bare_us_per_atom']:.1f} "
                     f"| {r['calculator_us_per_atom']:.1f} | "
                     + (f"{r['pyace_us_per_atom']:.1f}" if r["pyace_us_per_atom"] else "-") + f" | {ratio} |")
    (RESULTS / "ace_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
