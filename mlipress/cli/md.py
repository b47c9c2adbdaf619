"""``mlipress md``: molecular dynamics of a structure with an MTP through ASE.

The structure is read with ``ase.io.read`` (any format ASE knows; the last frame of a
trajectory); the potential is an ``.mtp`` file and ``--species`` maps its types to elements
(:func:`mlipress.cli.common.load_structure`). The run is :func:`mlipress.simulate.run_md`.
"""

from __future__ import annotations

import sys

from mlipress.cli.common import load_structure, structure_options


def register(sub) -> None:
    p = sub.add_parser("md", help="molecular dynamics (NVE, NVT, NPT) with an MTP through ASE")
    structure_options(p)
    p.add_argument("--ensemble", choices=("nve", "nvt", "npt"), default="nve")
    p.add_argument("--temperature", type=float, default=None, help="K: thermostat target and initial velocities")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--timestep", type=float, default=1.0, help="fs (default 1)")
    p.add_argument("--interval", type=int, default=10, help="log / trajectory every N steps (default 10)")
    p.add_argument("--trajectory", default=None, help="extxyz trajectory output")
    p.add_argument("--log", default=None, help="CSV log output")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tdamp", type=float, default=100.0, help="thermostat time constant, fs")
    p.add_argument("--pdamp", type=float, default=1000.0, help="barostat time constant, fs")
    p.add_argument("--npt-method", choices=("langevin", "mtk"), default="langevin",
                   help="LangevinBAOAB barostat (default) or IsotropicMTKNPT")
    g = p.add_argument_group("extrapolation control (MaxVol grade on the fly, docs/active_learning.md)")
    g.add_argument("--train", default=None, help="training set of the potential: turns grading on")
    g.add_argument("--grade-mode", choices=("cfg", "nbh"), default="cfg")
    g.add_argument("--grade-threshold", type=float, default=2.0, help="save configurations graded above (default 2)")
    g.add_argument("--grade-break", type=float, default=10.0, help="stop the run above this grade (default 10)")
    g.add_argument("--save-extrapolative", default=None, help="file (.cfg/.xyz) for the configurations above --grade-threshold")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run MD and print a summary (mean T, P, density over the second half)."""
    import numpy as np

    from mlipress.simulate.md import MDSettings, MDUnstable, run_md
    from mlipress.simulate.stats import block_average

    settings = MDSettings(
        ensemble=args.ensemble, temperature=args.temperature, pressure=args.pressure, steps=args.steps,
        timestep_fs=args.timestep, interval=args.interval, seed=args.seed,
        tdamp_fs=args.tdamp, pdamp_fs=args.pdamp, npt_method=args.npt_method,
    )
    atoms, calc = load_structure(args)
    monitor = None
    if args.train or args.save_extrapolative:
        monitor = _monitor(args, calc)
    try:
        result = run_md(atoms, calc, trajectory=args.trajectory, log_csv=args.log, progress=not args.quiet,
                        settings=settings, observers=(monitor,) if monitor else ())
    except MDUnstable as exc:
        n = monitor.write() if monitor else 0
        kept = [p for p in (args.trajectory, args.log) if p] + ([args.save_extrapolative] if n else [])
        print(f"mlipress md: error: {exc}" + (f"; kept {', '.join(map(str, kept))}" if kept else ""), file=sys.stderr)
        return 2
    log = result.log
    half = slice(len(log["step"]) // 2, None)
    if monitor:
        n = monitor.write()
        print(f"max grade {monitor.max_grade:.4g}; {len(monitor.saved)} configurations above {args.grade_threshold:g}"
              + (f" -> {args.save_extrapolative}" if n else "")
              + (f"; stopped: {result.stopped}" if result.stopped else ""))
    print(f"{len(atoms)} atoms, {result.steps} steps of {args.timestep} fs ({args.ensemble}): {result.steps_per_second:.1f} steps/s, "
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


def _monitor(args, calc):
    """Grading on ``calc`` against ``--train`` and the observer that saves and stops."""
    from mlipress.active import GradeSettings
    from mlipress.active.otf import ExtrapolationMonitor, Grader
    from mlipress.cli.common import read_data

    if not args.train:
        raise ValueError("--save-extrapolative needs --train (the potential's training set)")
    train = read_data(args.train, args.species, calc.mtp)
    calc.grader = Grader.for_potential(args.potential, calc.mtp, calc.params, train=train,
                                       settings=GradeSettings(mode=args.grade_mode))
    return ExtrapolationMonitor(args.grade_threshold, args.grade_break, args.save_extrapolative, calc.species)
