"""``mlipress init``: write an untrained MTP of a given level (the role of MLIP's templates)."""

from __future__ import annotations

from mlipress.cli.common import fresh_potential_options, species_count, species_option


def register(sub) -> None:
    p = sub.add_parser("init", help="write an untrained MTP of a given level (role of MLIP's templates)")
    p.add_argument("--level", type=int, required=True, help="MTP level, even, 2..28")
    species_option(p)
    fresh_potential_options(p)
    p.add_argument("--radial-basis-size", type=int, default=8)
    p.add_argument("--radial-basis-type", default="RBChebyshev", choices=["RBChebyshev", "RBChebyshev_repuls"])
    p.add_argument("-o", "--output", required=True, help="output .mtp")
    p.set_defaults(func=run)


def run(args) -> int:
    from mlipress.models.mtp.basis import untrained_mtp
    from mlipress.io.mtp import write_mtp

    count = species_count(args.species_count, args.species)
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
