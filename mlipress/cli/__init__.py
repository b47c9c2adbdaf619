"""The ``mlipress`` command line. Commands are thin: parse arguments, call the library, print.

``mlipress --help`` lists the commands; ``mlipress COMMAND --help`` their options.

Contract of this room: one module per command (:mod:`.init`, :mod:`.evaluate`,
:mod:`.errors`, :mod:`.demo`, :mod:`.train`, :mod:`.compress`, :mod:`.sweep`, :mod:`.md`,
:mod:`.relax`, :mod:`.grade` (``grade`` and ``select``), :mod:`.learn`), each with ``register(subparsers)`` and ``run(args) -> exit status``; the
options and input reading they share are in :mod:`.common`. This package is the top of the
dependency order: it imports the library (lazily, so ``--help`` stays fast), nothing in the
library imports it. :func:`main` turns the library's ``ValueError`` / ``FileFormatError`` /
``FileNotFoundError`` into ``mlipress COMMAND: error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from mlipress.cli import compress, demo, errors, evaluate, grade, init, learn, md, relax, sweep, train

#: The commands in the order ``mlipress --help`` lists them.
COMMANDS = (init, evaluate, errors, demo, train, compress, sweep, md, relax, grade, learn)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlipress",
        description="Fit, compress and run Moment Tensor Potentials (MLIP-compatible .mtp/.cfg files).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv=None) -> int:
    from mlipress import parallel
    from mlipress.io.errors import FileFormatError

    parser = build_parser()
    args = parser.parse_args(argv)
    comm = parallel.from_environment()  # started by mpirun: data-parallel fit, rank 0 prints and writes
    if comm.rank:
        sys.stdout = open(os.devnull, "w")
    try:
        return args.func(args)
    except (FileFormatError, FileNotFoundError, ValueError) as exc:
        print(f"mlipress {args.command}: error: {exc}", file=sys.stderr)
        if comm.size > 1:
            comm.abort(2)
        return 2
