"""``mlipress grade`` and ``mlipress select``: MaxVol extrapolation grades (roles of
``mlp calc-grade`` and ``mlp select-add``; definitions in docs/active_learning.md).

Both build the active set of the training set once and keep it next to the potential
(``POT.active.npz``, :mod:`mlipress.active.state`), reused while the potential, the training
set and the options are unchanged.
"""

from __future__ import annotations

from mlipress.cli.common import read_data, species_option


def _common(p) -> None:
    p.add_argument("potential", help=".mtp file (with its .factors.npz sidecar: graded in the factors)")
    p.add_argument("train", help="training set whose active set defines the grade")
    species_option(p)
    p.add_argument("--mode", choices=("cfg", "nbh"), default="cfg",
                   help="configuration-wise (default, MLIP-2's) or neighbourhood-wise grades")
    p.add_argument("--wrt", choices=("all", "linear"), default="all",
                   help="derivatives w.r.t. all free coefficients (default, MLIP-2's) or the linear ones only")


def register(sub) -> None:
    p = sub.add_parser("grade", help="MaxVol extrapolation grades (role of mlp calc-grade)")
    _common(p)
    p.add_argument("input", help="configurations to grade")
    p.add_argument("output", help=".cfg (Feature MV_grade) or .xyz (info MV_grade, per-atom nbh_grades)")
    p.add_argument("--als-filename", default=None,
                   help="also write the active set as MLIP-2's .als (dense MTP, --mode cfg --wrt all), "
                        "for mlp calc-grade --als-filename")
    p.set_defaults(func=run_grade)
    q = sub.add_parser("select", help="configurations that enlarge the active set (role of mlp select-add)")
    _common(q)
    q.add_argument("candidates", help="candidate configurations")
    q.add_argument("-o", "--output", required=True, help="selected configurations (.cfg or .xyz)")
    q.add_argument("--threshold", type=float, default=2.0,
                   help="only candidates graded above this are considered (default 2.0)")
    q.add_argument("--max", type=int, default=None, dest="max_count",
                   help="select at most N, greedily by largest grade (default: all that MaxVol swaps in)")
    q.set_defaults(func=run_select)


def _setup(args, *paths):
    from mlipress.active import GradeSettings
    from mlipress.active.state import active_set_for, read_potential

    mtp, params = read_potential(args.potential)
    settings = GradeSettings(args.mode, args.wrt)
    train = read_data(args.train, args.species, mtp)
    data = [read_data(p, args.species or train.species, mtp) for p in paths]
    active, reused = active_set_for(args.potential, mtp, params, train.configurations, settings)
    print(f"active set: {active.size} rows, {active.size - active.placeholders()} from {args.train}"
          f" ({'reused' if reused else 'built and saved'})")
    return mtp, params, settings, active, train, data


def run_grade(args) -> int:
    from mlipress.active import grade
    from mlipress.active.files import write_graded

    mtp, params, settings, active, train, (data,) = _setup(args, args.input)
    if args.als_filename:
        from mlipress.active.als import write_als

        write_als(args.als_filename, mtp, params, active, train.configurations, settings)
        print(f"active set written as MLIP-2 .als -> {args.als_filename}")
    g = grade(mtp, params, active, data.configurations, settings)
    write_graded(data, g, args.output, per_atom=settings.mode == "nbh")
    worst = max((float(x.max()) for x in g), default=0.0)
    print(f"graded {len(data)} configurations: max grade {worst:.4g}, "
          f"{sum(float(x.max()) > 2.0 for x in g)} above 2 -> {args.output}")
    return 0


def run_select(args) -> int:
    from mlipress.active import select
    from mlipress.active.files import write_graded

    mtp, params, settings, active, _, (cands,) = _setup(args, args.candidates)
    chosen, new, g = select(mtp, params, active, cands.configurations, settings, args.threshold, args.max_count)
    write_graded(cands, [g[k:k + 1] for k in range(len(g))], args.output, keep=chosen)
    print(f"selected {len(chosen)} of {len(cands)} candidates (threshold {args.threshold:g}); "
          f"log volume {active.log_volume:.4g} -> {new.log_volume:.4g} -> {args.output}")
    return 0
