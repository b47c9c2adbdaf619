"""``mlipress evaluate``: energies, forces and stresses of configurations (role of ``mlp calc-efs``)."""

from __future__ import annotations

import time

from mlipress.cli.common import read_data, species_option


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="energies, forces, stresses of configurations (role of mlp calc-efs)")
    p.add_argument("potential", help=".mtp file")
    p.add_argument("input", help="configurations: .cfg, mlearn/maml .json, or anything ASE reads (extxyz, ...)")
    p.add_argument("output", help="output .cfg or .xyz (by suffix)")
    species_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mlipress.io import write_dataset
    from mlipress.io import read_potential
    from mlipress.predict import predict_dataset

    mtp = read_potential(args.potential)
    data = read_data(args.input, args.species, mtp)
    t0 = time.perf_counter()
    out = predict_dataset(mtp, data)
    write_dataset(out, args.output, species=data.species)
    dt = time.perf_counter() - t0
    print(f"evaluated {len(data)} configurations ({data.natoms} atoms) in {dt:.2f} s -> {args.output}")
    return 0
