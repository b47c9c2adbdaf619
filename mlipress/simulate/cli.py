"""``mlipress md`` and ``mlipress relax``: molecular dynamics and relaxation of a structure.

Structures are read with ``ase.io.read`` (any format ASE knows; the last frame of a
trajectory); the potential is an ``.mtp`` file and ``--species`` maps its types to elements.
"""

from __future__ import annotations

import argparse
import sys


def _repeat(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"--repeat wants N or NX,NY,NZ (positive), got {text!r}")
    return tuple(parts)


def _load(args):
    from ase.io import read

    from mlipress.simulate.md import SkinMTPCalculator

    atoms = read(args.structure, index=-1)
    if getattr(args, "repeat", None):
        atoms = atoms.repeat(args.repeat)
    calc = SkinMTPCalculator(args.potential, species=args.species, skin=args.skin)
    return atoms, calc


def cmd_md(args) -> int:
    """Run MD and print a summary (mean T, P, density over the second half)."""
    import numpy as np

    from mlipress.simulate.md import MDSettings, run_md
    from mlipress.simulate.stats import block_average

    settings = MDSettings(
        ensemble=args.ensemble, temperature=args.temperature, pressure=args.pressure, steps=args.steps,
        timestep_fs=args.timestep, interval=args.interval, seed=args.seed,
        tdamp_fs=args.tdamp, pdamp_fs=args.pdamp, npt_method=args.npt_method,
    )
    atoms, calc = _load(args)
    result = run_md(atoms, calc, trajectory=args.trajectory, log_csv=args.log, progress=not args.quiet, settings=settings)
    log = result.log
    half = slice(len(log["step"]) // 2, None)
    print(f"{len(atoms)} atoms, {args.steps} steps of {args.timestep} fs ({args.ensemble}): {result.steps_per_second:.1f} steps/s, "
          f"{calc.rebuilds} neighbour searches")
    for key, unit in (("temperature_K", "K"), ("pressure_GPa", "GPa"), ("density_g_cm3", "g/cm3"), ("etot_eV", "eV")):
        values = log[key][half]
        if len(values) and np.all(np.isfinite(values)):
            b = block_average(values)
            print(f"  {key:14s} {b.mean:.6g} +- {b.sem:.2g} {unit} (second half, block average)")
    if args.trajectory:
        print(f"trajectory: {args.trajectory}")
    if args.log:
        print(f"log: {args.log}")
    return 0


def cmd_relax(args) -> int:
    """Relax and write the result; exit status 1 if the tolerances were not reached."""
    from ase.io import write

    from mlipress.io import atomic_open
    from mlipress.simulate.relax import RelaxSettings, relax

    atoms, calc = _load(args)
    settings = RelaxSettings(fmax=args.fmax, smax=args.smax, max_steps=args.max_steps, cell=not args.fixed_cell,
                             pressure=args.pressure, optimizer=args.optimizer)
    result = relax(atoms, calc, settings=settings, logfile=None if args.quiet else "-")
    print(result.summary())
    with atomic_open(args.output) as f:
        write(f, atoms, format="extxyz")
    print(f"written: {args.output}")
    return 0 if result.converged else 1


def _common(p) -> None:
    p.add_argument("structure", help="structure file (any ase.io.read format)")
    p.add_argument("potential", help=".mtp potential file")
    p.add_argument("--species", default=None, help="element of each potential type, e.g. Cu or Nb,Mo,Ta,W")
    p.add_argument("--skin", type=float, default=0.5, help="neighbour list skin in A (default 0.5)")
    p.add_argument("--pressure", type=float, default=0.0, help="target pressure in GPa (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def register(sub) -> None:
    """Add the ``md`` and ``relax`` subcommands to an argparse subparsers object."""
    p = sub.add_parser("md", help="molecular dynamics (NVE, NVT, NPT) with an MTP through ASE")
    _common(p)
    p.add_argument("--ensemble", choices=("nve", "nvt", "npt"), default="nve")
    p.add_argument("--temperature", type=float, default=None, help="K: thermostat target and initial velocities")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--timestep", type=float, default=1.0, help="fs (default 1)")
    p.add_argument("--interval", type=int, default=10, help="log / trajectory every N steps (default 10)")
    p.add_argument("--trajectory", default=None, help="extxyz trajectory output")
    p.add_argument("--log", default=None, help="CSV log output")
    p.add_argument("--repeat", type=_repeat, default=None, help="supercell, e.g. 2,2,2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tdamp", type=float, default=100.0, help="thermostat time constant, fs")
    p.add_argument("--pdamp", type=float, default=1000.0, help="barostat time constant, fs")
    p.add_argument("--npt-method", choices=("langevin", "mtk"), default="langevin",
                   help="LangevinBAOAB barostat (default) or IsotropicMTKNPT")
    p.set_defaults(func=cmd_md)

    p = sub.add_parser("relax", help="relax positions and cell (FrechetCellFilter + FIRE/BFGS)")
    _common(p)
    p.add_argument("--fmax", type=float, default=0.01, help="force tolerance, eV/A (default 0.01)")
    p.add_argument("--smax", type=float, default=0.01, help="stress tolerance, GPa (default 0.01)")
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--optimizer", choices=("fire", "bfgs"), default="fire")
    p.add_argument("--fixed-cell", action="store_true", help="relax positions only")
    p.add_argument("--repeat", type=_repeat, default=None, help="supercell, e.g. 2,2,2")
    p.add_argument("-o", "--output", default="relaxed.xyz", help="output extxyz (default relaxed.xyz)")
    p.set_defaults(func=cmd_relax)


if __name__ == "__main__":  # pragma: no cover
    from mlipress.cli import main

    sys.exit(main(["md", *sys.argv[1:]]))
