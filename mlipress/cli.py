"""The ``mlipress`` command line. Commands are thin: parse arguments, call the library, print.

``mlipress --help`` lists the commands; ``mlipress COMMAND --help`` their options.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _species_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--species",
        help="element of each type index, in type order, e.g. Nb,Mo,Ta,W (.mtp and .cfg files store only indices)",
    )


def _load_data(path, species):
    from mlipress.io import parse_species, read_dataset

    return read_dataset(path, species=parse_species(species))


def cmd_init(args) -> int:
    from mlipress.basis import untrained_mtp
    from mlipress.io import parse_species
    from mlipress.io.mtp import write_mtp

    species = parse_species(args.species)
    count = args.species_count or (len(species) if species else None)
    if not count:
        raise SystemExit("mlipress init: give --species Nb,Mo,... or --species-count N")
    mtp = untrained_mtp(args.level, count, args.min_dist, args.cutoff, args.radial_basis_size, args.radial_basis_type)
    write_mtp(mtp, args.output)
    n = mtp.num_params()
    print(
        f"wrote {args.output}: level {args.level}, {count} species, {mtp.radial_funcs_count} radial functions, "
        f"{mtp.moments.count} moments, {len(mtp.moments.basic)} basic, {len(mtp.moments.times)} products, "
        f"{mtp.moments.scalar_count} basis functions; {n['total']} parameters ({n['radial']} radial)"
    )
    return 0


def cmd_evaluate(args) -> int:
    from mlipress.io import write_dataset
    from mlipress.io.mtp import read_mtp
    from mlipress.predict import check_types, predict_dataset

    mtp = read_mtp(args.potential)
    data = _load_data(args.input, args.species)
    check_types(mtp, data, args.input)
    t0 = time.perf_counter()
    out = predict_dataset(mtp, data)
    write_dataset(out, args.output, species=data.species)
    dt = time.perf_counter() - t0
    print(f"evaluated {len(data)} configurations ({data.natoms} atoms) in {dt:.2f} s -> {args.output}")
    return 0


def cmd_errors(args) -> int:
    from mlipress.io.atomic import atomic_write
    from mlipress.io.mtp import read_mtp
    from mlipress.metrics import error_report, format_report
    from mlipress.predict import check_types, predict_dataset

    mtp = read_mtp(args.potential)
    data = _load_data(args.data, args.species)
    check_types(mtp, data, args.data)
    pred = predict_dataset(mtp, data)
    report = error_report(data.configurations, pred.configurations)
    print(format_report(report, f"errors of {args.potential} on {args.data}"))
    if args.json:
        report.update(potential=str(args.potential), data=str(args.data))
        atomic_write(args.json, json.dumps(report, indent=2) + "\n")
    return 0


def cmd_demo(args) -> int:
    from mlipress.demo import run_demo

    return run_demo(Path(args.directory), quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlipress",
        description="Fit, compress and run Moment Tensor Potentials (MLIP-compatible .mtp/.cfg files).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="write an untrained MTP of a given level (role of MLIP's templates)")
    p.add_argument("--level", type=int, required=True, help="MTP level, even, 2..28")
    _species_arg(p)
    p.add_argument("--species-count", type=int, help="number of species when element names are not needed")
    p.add_argument("--cutoff", type=float, default=5.0, help="max_dist in Angstrom (default 5.0)")
    p.add_argument("--min-dist", type=float, default=1.5, help="min_dist in Angstrom (default 1.5)")
    p.add_argument("--radial-basis-size", type=int, default=8)
    p.add_argument("--radial-basis-type", default="RBChebyshev", choices=["RBChebyshev", "RBChebyshev_repuls"])
    p.add_argument("-o", "--output", required=True, help="output .mtp")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("evaluate", help="energies, forces, stresses of configurations (role of mlp calc-efs)")
    p.add_argument("potential", help=".mtp file")
    p.add_argument("input", help="configurations: .cfg, mlearn/maml .json, or anything ASE reads (extxyz, ...)")
    p.add_argument("output", help="output .cfg or .xyz (by suffix)")
    _species_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("errors", help="error statistics against reference labels (role of mlp calc-errors)")
    p.add_argument("potential", help=".mtp file")
    p.add_argument("data", help="labelled configurations (.cfg, .json, extxyz, ...)")
    _species_arg(p)
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.set_defaults(func=cmd_errors)

    p = sub.add_parser("demo", help="the whole workflow on a built-in Cu-Ag-Au EMT example")
    p.add_argument("--directory", default="example_run", help="where to write the demo's files")
    p.add_argument("--quick", action="store_true", help="smaller and faster (used by the tests)")
    p.set_defaults(func=cmd_demo)

    # Commands defined next to the library code they drive (each module has `register(sub)`).
    from mlipress.compress import cli as compress_cli
    from mlipress.compress import sweep_cli
    from mlipress.simulate import cli as simulate_cli
    from mlipress.training import cli as training_cli

    for module in (training_cli, compress_cli, sweep_cli, simulate_cli):
        module.register(sub)
    return parser


def main(argv=None) -> int:
    from mlipress.io.errors import FileFormatError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileFormatError, FileNotFoundError, ValueError) as exc:
        print(f"mlipress {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
