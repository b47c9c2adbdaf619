"""``mlipress demo``: the whole workflow on a built-in Cu-Ag-Au EMT example (:mod:`mlipress.demo`)."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole workflow on a built-in Cu-Ag-Au EMT example")
    p.add_argument("--directory", default="example_run", help="where to write the demo's files")
    p.add_argument("--quick", action="store_true", help="smaller and faster (used by the tests)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mlipress.demo import run_demo

    return run_demo(Path(args.directory), quick=args.quick)
