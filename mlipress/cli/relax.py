"""``mlipress relax``: relax the positions (and cell) of a structure with an MTP.

Inputs as for ``mlipress md`` (:func:`mlipress.cli.common.load_structure`); the relaxation is
:func:`mlipress.simulate.relax`; the result is written as extxyz. Exit status 1 when the
tolerances were not reached.
"""

from __future__ import annotations

from mlipress.cli.common import load_structure, structure_options


def register(sub) -> None:
    p = sub.add_parser("relax", help="relax positions and cell (FrechetCellFilter + FIRE/BFGS)")
    structure_options(p)
    p.add_argument("--fmax", type=float, default=0.01, help="force tolerance, eV/A (default 0.01)")
    p.add_argument("--smax", type=float, default=0.01, help="stress tolerance, GPa (default 0.01)")
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--optimizer", choices=("fire", "bfgs"), default="fire")
    p.add_argument("--fixed-cell", action="store_true", help="relax positions only")
    p.add_argument("-o", "--output", default="relaxed.xyz", help="output extxyz (default relaxed.xyz)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Relax and write the result; exit status 1 if the tolerances were not reached."""
    from ase.io import write

    from mlipress.io import atomic_open
    from mlipress.simulate.relax import RelaxSettings, relax

    atoms, calc = load_structure(args)
    settings = RelaxSettings(fmax=args.fmax, smax=args.smax, max_steps=args.max_steps, cell=not args.fixed_cell,
                             pressure=args.pressure, optimizer=args.optimizer)
    result = relax(atoms, calc, settings=settings, logfile=None if args.quiet else "-")
    print(result.summary())
    with atomic_open(args.output) as f:
        write(f, atoms, format="extxyz")
    print(f"written: {args.output}")
    return 0 if result.converged else 1
