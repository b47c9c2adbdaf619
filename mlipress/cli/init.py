"""``mlipress init``: write an untrained MTP of a given level (the role of MLIP's templates), or
an untrained ACE (``--model ace``, a pacemaker B-basis ``.yaml``)."""

from __future__ import annotations

from mlipress.cli.common import FRESH_ACE, describe, flag, fresh_ace, fresh_potential_options, species_count, species_option


def register(sub) -> None:
    p = sub.add_parser("init", help="write an untrained MTP of a given level (role of MLIP's templates) or ACE")
    p.add_argument("--model", default="mtp", choices=["mtp", "ace"], help="potential family (default mtp)")
    p.add_argument("--level", type=int, help="MTP level, even, 2..28")
    for name, (typ, default, text) in FRESH_ACE.items():
        p.add_argument(flag(name), dest=name, type=typ, default=default, help=text)
    species_option(p)
    fresh_potential_options(p)
    p.add_argument("--radial-basis-size", type=int, default=8)
    p.add_argument("--radial-basis-type", default="RBChebyshev", choices=["RBChebyshev", "RBChebyshev_repuls"])
    p.add_argument("--magnetic", action="store_true",
                   help="a magnetic MTP of collinear moments (MLIP-3's magnetic .mtp layout; docs/magnetic.md)")
    p.add_argument("--spin-basis-size", type=int, default=4, help="magnetic: Chebyshev functions of s (default 4)")
    p.add_argument("--max-moment", type=float, default=3.0,
                   help="magnetic: the moment basis covers [-M, M] (mu_B, default 3.0)")
    p.add_argument("-o", "--output", required=True, help="output .mtp (ACE: .yaml)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mlipress.models.mtp.basis import untrained_mtp
    from mlipress.io.mtp import write_mtp

    if args.model == "ace":
        ace = fresh_ace(args.species, args.cutoff, vars(args))
        ace.write(args.output)
        print(f"wrote {args.output}: untrained {describe(ace)}, {len(ace.functions)} B-functions per species, "
              f"{ace.coupling} coupling, {ace.radial_basis.kind} radial basis")
        return 0
    if args.level is None:
        raise SystemExit("mlipress init: give --level L (MTP) or --model ace")
    count = species_count(args.species_count, args.species)
    if not count:
        raise SystemExit("mlipress init: give --species Nb,Mo,... or --species-count N")
    if args.magnetic:
        from mlipress.models.mtp.magnetic import magnetic_mtp

        mtp = magnetic_mtp(args.level, count, args.min_dist, args.cutoff, args.radial_basis_size,
                           args.spin_basis_size, args.max_moment, args.radial_basis_type)
        kind = f"magnetic ({args.spin_basis_size} spin functions on [-{args.max_moment:g}, {args.max_moment:g}]), "
    else:
        mtp = untrained_mtp(args.level, count, args.min_dist, args.cutoff, args.radial_basis_size,
                            args.radial_basis_type)
        kind = ""
    write_mtp(mtp, args.output)
    n = mtp.num_params()
    print(
        f"wrote {args.output}: {kind}level {args.level}, {count} species, {mtp.radial_funcs_count} radial functions, "
        f"{mtp.moments.count} moments, {len(mtp.moments.basic)} basic, {len(mtp.moments.times)} products, "
        f"{mtp.moments.scalar_count} basis functions; {n['total']} parameters ({n['radial']} radial)"
    )
    return 0
