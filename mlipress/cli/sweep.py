"""``mlipress sweep``: validation loss of a compressed MTP against rank (Figure 2 of the paper).

    mlipress sweep --level 12 --species Nb,Mo,Ta,W --train train.json --valid test.json \\
        --kind mf --ranks 2,4,6,8 --seeds 3 --max-iter 500 -o sweep.json --plot sweep.png
    mlipress sweep --init untrained.mtp --train train.cfg --valid valid.cfg --kind tt --ranks 2,3,4

Fits an ensemble (``--seeds`` random starts) per rank (:func:`mlipress.compress.sweep.sweep`)
and, with ``--base``, the base (dense) MTP with the same seeds; prints a table of radial
parameters, compression and mean +- 1 sigma of the validation loss and RMSEs, and marks the
optimal rank (minimum validation loss with >= 20% compression, section III.B of the paper)
and the rank closest to 50% of the radial parameters. ``-o`` writes rows, aggregate and choice
as JSON; ``--plot`` the PNG (:func:`mlipress.compress.plot.plot_sweep`).
"""

from __future__ import annotations

import argparse
import json
import math
import time

from mlipress.cli.common import (check_data, coefficient_l2, coefficient_l2_option, fresh_potential_options, read_data,
                                 species_count, species_option)


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="rank sweep of a compressed MTP (validation loss vs rank, paper Fig. 2)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--init", help="starting .mtp (untrained template: ensembles; trained: compress + refit)")
    src.add_argument("--level", type=int, help="level of a fresh untrained MTP")
    species_option(p)
    fresh_potential_options(p)
    p.add_argument("--train", required=True, help="training configurations")
    p.add_argument("--valid", required=True, help="validation configurations")
    p.add_argument("--kind", required=True, choices=["mf", "rmf", "tt", "mfra"], help="factorisation")
    p.add_argument("--ranks", required=True, help="comma-separated ranks (tt: r means r,r,r; mfra: RMAX values)")
    p.add_argument("--seeds", type=int, default=3, help="ensemble size per rank (default 3)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--base", action="store_true", help="also fit the base (dense) MTP with the same seeds")
    p.add_argument("--max-iter", dest="max_iter", type=int, default=500, help="iterations per fit (default 500)")
    p.add_argument("--pretrain-iters", dest="pretrain_iters", type=int, default=0,
                   help="pre-training iterations of the base MTP, counted in --max-iter (default 0: same budget as compressed fits)")
    p.add_argument("--energy-weight", dest="energy_weight", type=float, default=1.0)
    p.add_argument("--force-weight", dest="force_weight", type=float, default=0.01)
    p.add_argument("--stress-weight", dest="stress_weight", type=float, default=0.0, help="w_S (default 0, as the paper)")
    coefficient_l2_option(p)
    p.add_argument("--max-atoms", dest="max_atoms", type=int, default=2048, help="atoms per evaluation chunk")
    p.add_argument("-o", "--output", help="JSON with rows, aggregate and chosen ranks")
    p.add_argument("--plot", help="PNG of validation loss vs rank")
    p.set_defaults(func=run)


def _fmt(ms, scale=1.0) -> str:
    if ms is None or ms.get("mean") is None:
        return f"{'n/a':>21s}"
    return f"{ms['mean'] * scale:11.4g} +- {ms['std'] * scale:<7.2g}"


def format_table(agg, chosen, base_radial: int) -> str:
    """The printed table: one line per rank, ``<- optimal`` / ``<- ~50%`` marks."""
    head = (f"{'spec':>12s} {'radial':>7s} {'compr.':>7s} {'n':>2s} {'validation loss f':>21s} "
            f"{'E RMSE meV/atom':>21s} {'F RMSE eV/A':>21s}")
    lines = [f"base radial parameters: {base_radial}", head, "-" * len(head)]
    for e in agg:
        marks = []
        if chosen.get("optimal") is e:
            marks.append("optimal")
        if chosen.get("half") is e:
            marks.append("~50%")
        lines.append(f"{e['spec']:>12s} {e['radial_params']:7d} {100 * e['compression']:6.1f}% "
                     f"{e['valid_loss']['n']:2d} {_fmt(e['valid_loss'])} {_fmt(e['energy_rmse_meV_per_atom'])} "
                     f"{_fmt(e['force_rmse_eV_per_A'])}" + (f"  <- {', '.join(marks)}" if marks else ""))
    return "\n".join(lines)


def run(args) -> int:
    from mlipress.models.mtp.basis import untrained_mtp
    from mlipress.compress.sweep import aggregate, choose_ranks, sweep
    from mlipress.io.atomic import atomic_write
    from mlipress.io import read_potential
    from mlipress.loss import LossWeights
    from mlipress.fit import TrainSettings

    train = read_data(args.train, args.species)
    valid = read_data(args.valid, args.species)
    if args.init:
        mtp = read_potential(args.init)
    else:
        mtp = untrained_mtp(args.level, species_count(args.species_count, args.species, train, valid), args.min_dist,
                            args.cutoff)
    check_data(mtp, train, args.train)
    check_data(mtp, valid, args.valid)
    ranks = [int(r) for r in args.ranks.split(",") if r.strip()]
    if not ranks or min(ranks) < 1:
        raise ValueError(f"--ranks must be positive integers, got {args.ranks!r}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    weights = LossWeights(args.energy_weight, args.force_weight, args.stress_weight,
                          coefficient_l2=coefficient_l2(args.coefficient_l2, mtp))
    settings = TrainSettings(weights=weights, max_iter=args.max_iter, seed=args.seed, log_every=0,
                             pretrain_iters=args.pretrain_iters, max_atoms=args.max_atoms)
    base_n = math.prod(mtp.radial_shape)
    print(f"sweep {args.kind} ranks {ranks} x {args.seeds} seeds: {len(train)} training, {len(valid)} validation "
          f"configurations; {base_n} base radial parameters", flush=True)
    t0 = time.perf_counter()

    def progress(row):
        print(f"  {row['spec']:>10s} seed {row['seed']}: {row['radial_params']} radial params, "
              f"valid f {row['valid_loss']:.5g} ({row['seconds']:.1f} s)", flush=True)

    rows = []
    if args.base:
        rows += sweep(mtp, train, valid, "dense", [None], args.seeds, settings, on_row=progress)
    rows += sweep(mtp, train, valid, args.kind, ranks, args.seeds, settings, on_row=progress)
    agg = aggregate(rows)
    comp = [e for e in agg if e["kind"] != "dense"]
    base = next((e for e in agg if e["kind"] == "dense"), None)
    chosen = choose_ranks(comp, base_n)
    print(format_table(agg, chosen, base_n))
    for key, text in (("optimal", "optimal rank (min validation loss, >= 20% compression)"),
                      ("half", "rank closest to 50% radial parameters")):
        e = chosen[key]
        print(f"{text}: " + ("none (no rank removes >= 20% of the parameters)" if e is None else
                             f"{e['spec']} ({e['radial_params']} radial params)"))
    if args.output:
        doc = {"kind": args.kind, "ranks": ranks, "seeds": args.seeds, "base_radial_params": base_n,
               "max_iter": args.max_iter, "rows": rows, "aggregate": agg,
               "optimal": chosen["optimal"]["spec"] if chosen["optimal"] else None,
               "half": chosen["half"]["spec"] if chosen["half"] else None}
        atomic_write(args.output, json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.output}")
    if args.plot:
        from mlipress.compress.plot import plot_sweep

        plot_sweep(comp, args.plot, base=base["valid_loss"] if base else None, chosen=chosen,
                   title=f"{args.kind} validation loss vs rank")
        print(f"wrote {args.plot}")
    print(f"done ({time.perf_counter() - t0:.1f} s)")
    return 0
