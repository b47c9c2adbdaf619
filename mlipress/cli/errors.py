"""``mlipress errors``: error statistics against reference labels (role of ``mlp calc-errors``)."""

from __future__ import annotations

import json

from mlipress.cli.common import read_data, species_option


def register(sub) -> None:
    p = sub.add_parser("errors", help="error statistics against reference labels (role of mlp calc-errors)")
    p.add_argument("potential", help=".mtp file")
    p.add_argument("data", help="labelled configurations (.cfg, .json, extxyz, ...)")
    species_option(p)
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.set_defaults(func=run)


def run(args) -> int:
    from mlipress.io.atomic import atomic_write
    from mlipress.io import read_potential
    from mlipress.metrics import error_report, format_report
    from mlipress.predict import predict_dataset

    mtp = read_potential(args.potential)
    data = read_data(args.data, args.species, mtp)
    pred = predict_dataset(mtp, data)
    report = error_report(data.configurations, pred.configurations)
    print(format_report(report, f"errors of {args.potential} on {args.data}"))
    if args.json:
        report.update(potential=str(args.potential), data=str(args.data))
        atomic_write(args.json, json.dumps(report, indent=2) + "\n")
    return 0
