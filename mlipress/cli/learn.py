"""``mlipress learn settings.toml``: the active-learning loop (:func:`mlipress.active.learn`).

The TOML file (keys: :func:`mlipress.active.learn.load_settings`)::

    workdir = "al"                          # state, training set, potential, log
    train = "initial.cfg"                   # labelled initial training set
    structures = "starts.xyz"               # MD starting structures (all frames)
    calculator = "ase.calculators.emt:EMT"  # module:function returning an ASE calculator
    test = "test.cfg"                       # optional: errors logged every iteration

    [learn]
    species = ["Cu", "Ag", "Au"]
    level = 8
    temperatures = [300, 900]
    md_steps = 200
    grade_threshold = 2.0
    grade_break = 10.0

Running the same command again resumes an interrupted loop.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("learn", help="active learning: MD with grades, select, label, refit, until no extrapolation")
    p.add_argument("settings", help="TOML settings file")
    p.set_defaults(func=run)


def run(args) -> int:
    from mlipress.active.learn import learn, load_settings

    result = learn(**load_settings(args.settings))
    if not result.converged:
        print(f"not converged after {len(result.log)} iterations ({len(result.train)} training configurations)")
        return 1
    return 0
