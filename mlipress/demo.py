"""``mlipress demo``: the whole workflow on a built-in Cu-Ag-Au EMT example.

Each step prints what it does and writes its files into one directory, so a new user can
reproduce every step with the command line afterwards (the equivalent commands are printed).
"""

from __future__ import annotations

import time
from pathlib import Path


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run_demo(directory: Path, quick: bool = False) -> int:
    from mlipress.models.mtp.basis import untrained_mtp
    from mlipress.examples import make_example_dataset, split
    from mlipress.io import write_dataset
    from mlipress.io.mtp import read_mtp, write_mtp
    from mlipress.metrics import error_report, format_report
    from mlipress.predict import predict_dataset
    from mlipress.fit import TrainSettings, train

    t0 = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    level, n_configs, max_iter = (6, 24, 40) if quick else (10, 60, 300)

    _step(f"1. example data: {n_configs} Cu-Ag-Au cells labelled with ASE's EMT (stands in for DFT)")
    data, species = make_example_dataset(n_configs=n_configs, seed=0)
    train_set, valid_set = split(data, 0.8, seed=0)
    write_dataset(train_set, directory / "train.cfg")
    write_dataset(valid_set, directory / "valid.cfg")
    write_dataset(data, directory / "all.xyz", species=species)
    print(f"{len(train_set)} training and {len(valid_set)} validation configurations "
          f"({train_set.natoms} + {valid_set.natoms} atoms) -> {directory}/train.cfg, valid.cfg, all.xyz")

    _step(f"2. untrained level-{level} MTP for {','.join(species)}")
    untrained = untrained_mtp(level, len(species), min_dist=2.0, max_dist=5.0)
    write_mtp(untrained, directory / "untrained.mtp")
    counts = untrained.num_params()
    print(f"{counts['total']} parameters ({counts['radial']} radial, {counts['moment']} moment, {counts['species']} species)")
    print(f"  same as: mlipress init --level {level} --species {','.join(species)} --min-dist 2.0 --cutoff 5.0 -o untrained.mtp")

    _step(f"3. training ({max_iter} BFGS iterations on the radial part, linear coefficients solved exactly)")
    settings = TrainSettings(max_iter=max_iter, log_every=20 if quick else 50,
                             log_file=str(directory / "train.log.jsonl"))
    result = train(untrained, train_set, settings, valid_data=valid_set)
    write_mtp(result.mtp, directory / "trained.mtp")
    print(f"-> {directory}/trained.mtp (stopped: {result.stop_reason})")
    print(f"  same as: mlipress train --init untrained.mtp --train train.cfg --valid valid.cfg "
          f"--max-iter {max_iter} -o trained.mtp")

    _step("4. validation errors")
    trained = read_mtp(directory / "trained.mtp")  # what a user gets back from the file
    predicted = predict_dataset(trained, valid_set)
    print(format_report(error_report(valid_set.configurations, predicted.configurations)))
    print("  same as: mlipress errors trained.mtp valid.cfg")

    _step("5. the potential as an ASE calculator: relax a random Cu-Ag-Au cell")
    import numpy as np
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    from mlipress.calculator import MTPCalculator
    from mlipress.examples import random_alloy

    atoms = random_alloy(np.random.default_rng(1))
    atoms.calc = MTPCalculator(trained, species=species)
    e0 = atoms.get_potential_energy() / len(atoms)
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=0.05, steps=40 if quick else 200)
    e1 = atoms.get_potential_energy() / len(atoms)
    print(f"energy {e0:.4f} -> {e1:.4f} eV/atom, max force {np.abs(atoms.get_forces()).max():.3f} eV/A, "
          f"volume {atoms.get_volume() / len(atoms):.2f} A^3/atom")

    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; files in {directory}/")
    return 0
