"""``mlipress train``: the role of MLIP's ``mlp train`` (REFERENCE.md section 3).

    mlipress train --level 8 --train train.cfg --species Cu,Ag,Au -o trained.mtp
    mlipress train --init untrained.mtp --train train.cfg --valid valid.cfg -o trained.mtp
    mlipress train settings.toml [--max-iter 500 ...]

A TOML settings file uses the long option names with ``_`` or ``-`` (``level``, ``init``,
``train``, ``valid``, ``valid_fraction``, ``species`` (string or list), ``min_dist``,
``cutoff``, ``radial_basis_size``, ``energy_weight``, ``force_weight``, ``stress_weight``,
``weighting``, ``scale_by_force``, ``penalty``, ``coefficient_l2``, ``magnetic_force_weight``, ``max_iter``, ``max_time``, ``pretrain_iters``,
``linear_solve_every``, ``seed``, ``ensemble``, ``log``, ``log_every``, ``checkpoint``,
``checkpoint_every``, ``resume``, ``variable_projection``, ``output``, ``radial``); relative paths are relative to the TOML
file. Command-line flags override the file. Force errors are printed per Cartesian
component (MLIP-2) and per atom vector (MLIP-3).

``--radial SPEC`` fits a compressed MTP (sections II.C-D of the paper) with
:func:`mlipress.compress.fit_compressed`: ``mf:R`` / ``tt:R1,R2,R3`` (BFGS over the factors),
``rmf:R`` (Riemannian BFGS), ``mfra:RMAX`` (rank augmentation), ``ttra:R1,R2,R3`` (TT-rank
augmentation); ``mfra:auto`` / ``ttra:auto`` grow while the validation loss (with --valid or
--valid-fraction) decreases between augmentation points, or else while the training loss
decreases by more than 1% between them. The output is the standard
dense ``.mtp`` plus the factors in ``OUTPUT.factors.npz`` (:func:`mlipress.compress.
write_compressed`); with ``--ensemble K`` each member gets its own pair of files.

``--coupling cp:R`` (ACE; TOML ``coupling``): the B-functions coupled in rank-R CP form
(:mod:`mlipress.models.ace.coupling`) instead of the exact generalised CG (``exact``, the
default); with ``--init`` it re-couples the start, and the output file keeps the coupling.
``--radbase SBessel`` (fresh ACE only; TOML ``radbase``): pacemaker's simplified spherical Bessel
radial basis instead of ``ChebExpCos``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import tomllib
from pathlib import Path

from mlipress.cli.common import (COEFFICIENT_L2_HELP, FRESH_ACE, FRESH_POTENTIAL, SPECIES_HELP, ace_coupling, check_data,
                                 coefficient_l2, describe, flag, fresh_ace, read_data, species_count)

# option name -> (type, default, help); None default = not given
_OPTIONS: dict[str, tuple[type, object, str]] = {
    "level": (int, None, "MTP level of a fresh untrained potential (even, 2..28)"),
    "model": (str, "mtp", "family of a fresh potential: mtp (give --level) | ace (options --body-order ...)"),
    **FRESH_ACE,
    "init": (str, None, "start from this .mtp or ACE .yaml (untrained template or trained potential)"),
    "train": (str, None, "training configurations (.cfg, maml .json, extxyz, ...)"),
    "valid": (str, None, "validation configurations"),
    "valid_fraction": (float, None, "hold out this fraction of --train for validation (when no --valid)"),
    "species": (str, None, SPECIES_HELP),
    "min_dist": FRESH_POTENTIAL["min_dist"],
    "cutoff": FRESH_POTENTIAL["cutoff"],
    "radial_basis_size": (int, 8, "radial basis size of a fresh potential (default 8)"),
    "species_count": FRESH_POTENTIAL["species_count"],
    "energy_weight": (float, 1.0, "w_E (default 1)"),
    "force_weight": (float, 0.01, "w_F (default 0.01)"),
    "stress_weight": (float, 0.001, "w_S (default 0.001)"),
    "weighting": (str, "vibrations", "vibrations | molecules | structures (default vibrations)"),
    "scale_by_force": (float, 0.0, "s > 0: force weight w_F s/(|F|^2+s) (default 0, off)"),
    "penalty": (float, 1e-9, "radial orthonormality penalty (MLIP-2 1e-9, MLIP-3 1e-6)"),
    "coefficient_l2": (float, None, COEFFICIENT_L2_HELP),
    "magnetic_force_weight": (float, 0.0, "w_M of the magnetic forces -dE/ds (magnetic MTP; default 0)"),
    "max_iter": (int, 1000, "optimiser iterations in total, pre-training included (default 1000)"),
    "max_time": (float, 0.0, "stop after this many seconds of wall time (default 0 = no limit)"),
    "pretrain_iters": (int, None, "pre-training iterations of an untrained potential, counted in --max-iter "
                       "(default: 0 with variable projection, MLIP's 75 with --no-variable-projection)"),
    "linear_solve_every": (int, 50, "orthonormalise + exact linear solve period (default 50, 0 = never)"),
    "gtol": (float, 1e-10, "stop when |grad| <= gtol"),
    "ftol": (float, 1e-9, "stop when f decreased by < ftol relative over 50 iterations (0 = off)"),
    "seed": (int, 0, "random seed of the initial radial coefficients (default 0)"),
    "ensemble": (int, 1, "train K members with seeds seed..seed+K-1"),
    "log": (str, None, "JSON-lines training log"),
    "log_every": (int, 10, "progress line period (default 10)"),
    "checkpoint": (str, None, "checkpoint file (.npz)"),
    "checkpoint_every": (int, None, "checkpoint period (default 50 when --checkpoint is given)"),
    "max_atoms": (int, 2048, "atoms per evaluation chunk (memory bound)"),
    "output": (str, None, "output .mtp (with --ensemble K: OUTPUT.0.mtp ... and OUTPUT.summary.json)"),
    "radial": (str, "dense", "radial parametrisation: dense | mf:R | rmf:R | tt:R1,R2,R3 | mfra:RMAX | ttra:R1,R2,R3 | "
               "mfra:auto | ttra:auto (auto: grow the rank while the validation loss decreases, or without "
               "validation data while the training loss gains > 1%% per augmentation) "
               "(compressed fits also write OUTPUT.factors.npz; default dense)"),
}
_FLAGS = {
    "resume": "continue from --checkpoint if it exists",
    "variable_projection": "species and moment coefficients solved exactly at every evaluation, BFGS on the "
                           "radial part only (default; --no-variable-projection: MLIP's scheme)",
}
_PATHS = ("init", "train", "valid", "log", "checkpoint", "output")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="fit an MTP to energies, forces and stresses (role of mlp train)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("settings", nargs="?", help="optional TOML settings file (flags override it)")
    for name, (typ, _, text) in _OPTIONS.items():
        names = (flag(name), "-o") if name == "output" else (flag(name),)
        p.add_argument(*names, dest=name, type=typ, default=None, help=text)
    for name, text in _FLAGS.items():
        p.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
    p.set_defaults(func=run)


def _load_toml(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from None
    base = Path(path).resolve().parent
    out = {}
    known = set(_OPTIONS) | set(_FLAGS)
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ValueError(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
        if name == "species" and isinstance(value, list):
            value = ",".join(map(str, value))
        if name in _PATHS and isinstance(value, str):
            value = str(base / value)
        if name in _FLAGS:
            if not isinstance(value, bool):
                raise ValueError(f"{path}: {key} must be true or false")
        else:
            typ = _OPTIONS[name][0]
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, typ) or isinstance(value, bool):
                raise ValueError(f"{path}: {key} must be of type {typ.__name__}, got {value!r}")
        out[name] = value
    return out


def resolve_options(args) -> dict:
    """Defaults < TOML file < command-line flags; returns a plain dict of settings."""
    opts = {name: default for name, (_, default, _) in _OPTIONS.items()}
    opts.update(resume=False, variable_projection=True)
    if getattr(args, "settings", None):
        opts.update(_load_toml(args.settings))
    for name in list(_OPTIONS) + list(_FLAGS):
        value = getattr(args, name, None)
        if value is not None:
            opts[name] = value
    return opts


def run(args) -> int:
    from mlipress.models.mtp.basis import untrained_mtp
    from mlipress.examples import split
    from mlipress.io.atomic import atomic_write
    from mlipress.io import read_potential
    from mlipress.loss import LossWeights
    from mlipress.metrics import error_report, format_report
    from mlipress.predict import predict_dataset
    from mlipress.fit.ensemble import train_ensemble
    from mlipress.fit.trainer import TrainSettings, train

    o = resolve_options(args)
    if not o["train"]:
        raise ValueError("give the training data: --train DATA (or train = ... in the settings file)")
    if not o["output"]:
        raise ValueError("give the output potential: -o trained.mtp (or output = ... in the settings file)")
    fresh_mtp = o["level"] is not None
    if fresh_mtp + (o["model"] == "ace") + (o["init"] is not None) != 1 or o["model"] not in ("mtp", "ace"):
        raise ValueError("give exactly one of --level L (fresh MTP), --model ace (fresh ACE) or --init FILE")
    if o["valid"] and o["valid_fraction"] is not None:
        raise ValueError("give either --valid or --valid-fraction, not both")
    if o["ensemble"] < 1:
        raise ValueError(f"--ensemble must be >= 1, got {o['ensemble']}")

    from mlipress.models.layers import parse_radial_spec

    spec = parse_radial_spec(o["radial"] or "dense")
    start = read_potential(o["init"]) if o["init"] else None
    data = read_data(o["train"], o["species"], start)
    valid = read_data(o["valid"], o["species"], start) if o["valid"] else None
    if valid is None and o["valid_fraction"]:
        data, valid = split(data, 1.0 - o["valid_fraction"], seed=o["seed"])

    if o["radbase"] is not None and o["model"] != "ace":
        # the basis is part of the potential's structure: a start file or an MTP keeps its own
        raise ValueError("--radbase applies to a fresh ACE (--model ace); a start potential keeps its radial basis")
    if start is not None:
        mtp = start
        if o["coupling"] is not None:
            if not hasattr(start, "with_coupling"):
                raise ValueError(f"--coupling applies to ACE potentials; {o['init']} is a {type(start).__name__}")
            mtp = start.with_coupling(ace_coupling(o["coupling"]))
    elif o["model"] == "ace":
        mtp = fresh_ace(o["species"] or data.species, o["cutoff"], o)
    else:
        if o["coupling"] is not None:
            raise ValueError("--coupling applies to ACE potentials (--model ace or --init ACE.yaml)")
        count = species_count(o["species_count"], o["species"], data)
        mtp = untrained_mtp(o["level"], count, o["min_dist"], o["cutoff"], o["radial_basis_size"])
    check_data(mtp, data, o["train"])
    if valid is not None:
        check_data(mtp, valid, o["valid"] or o["train"])

    weights = LossWeights(o["energy_weight"], o["force_weight"], o["stress_weight"], o["weighting"],
                          o["scale_by_force"], o["penalty"], o["magnetic_force_weight"],
                          coefficient_l2(o["coefficient_l2"], mtp))
    ckpt_every = o["checkpoint_every"] if o["checkpoint_every"] is not None else (50 if o["checkpoint"] else 0)
    settings = TrainSettings(
        weights=weights, max_iter=o["max_iter"], max_time=o["max_time"], gtol=o["gtol"], ftol=o["ftol"], seed=o["seed"],
        linear_solve_every=o["linear_solve_every"], pretrain_iters=o["pretrain_iters"],
        log_every=o["log_every"], log_file=o["log"], checkpoint_every=ckpt_every,
        checkpoint=o["checkpoint"], resume=bool(o["resume"]), max_atoms=o["max_atoms"],
        variable_projection=bool(o["variable_projection"]),
    )
    print(
        f"training: {len(data)} configurations from {o['train']}"
        + (f", {len(valid)} validation" if valid is not None else "")
        + f"; {describe(mtp)}"
        + (f"; L2 of the linear coefficients {weights.coefficient_l2:g}" if weights.coefficient_l2 else "")
    )
    out_path = Path(o["output"])
    t0 = time.perf_counter()
    if spec.kind != "dense":
        return _train_compressed(mtp, data, valid, spec, settings, o, out_path, t0)
    if o["ensemble"] == 1:
        result = train(mtp, data, settings, valid_data=valid)
        result.mtp.write(out_path)
        print(f"wrote {out_path} ({time.perf_counter() - t0:.1f} s)")
        print(format_report(error_report(data.configurations, predict_dataset(result.mtp, data).configurations),
                            f"training errors ({o['train']})"))
        if valid is not None and len(valid):
            rep = error_report(valid.configurations, predict_dataset(result.mtp, valid).configurations)
            print(format_report(rep, "validation errors"))
        return 0

    ens = train_ensemble(mtp, data, settings, valid_data=valid, k=o["ensemble"])
    paths = []
    for i, res in enumerate(ens.results):
        path = out_path.with_name(f"{out_path.stem}.{i}{out_path.suffix}")
        res.mtp.write(path)
        paths.append(str(path))
    for i, rep in enumerate(ens.reports):
        if rep is not None:
            print(format_report(rep, f"validation errors, member {i} (seed {ens.seeds[i]})"))
    summary = {"members": paths, "seeds": list(ens.seeds), "validation": ens.summary,
               "sigma": "sample standard deviation (ddof=1)"}
    summary_path = out_path.with_name(f"{out_path.stem}.summary.json")
    atomic_write(summary_path, json.dumps(summary, indent=2) + "\n")
    for key, v in ens.summary.items():
        print(f"ensemble {key}: {v['mean']:.6g} +- {v['std']:.3g}")
    print(f"wrote {', '.join(paths)} and {summary_path} ({time.perf_counter() - t0:.1f} s)")
    return 0


def _train_compressed(mtp, data, valid, spec, settings, o, out_path: Path, t0: float) -> int:
    """``--radial`` other than dense: :func:`fit_compressed` per member, dense .mtp + sidecar."""
    from dataclasses import replace

    from mlipress.compress import fit_compressed, write_compressed
    from mlipress.io.atomic import atomic_write
    from mlipress.metrics import error_report, format_report
    from mlipress.predict import predict_dataset
    from mlipress.fit.ensemble import indexed_path, summarise

    if o["ensemble"] > 1 and mtp.trained:
        raise ValueError("an ensemble needs an untrained potential (members differ by their random start)")
    base_n = math.prod(mtp.radial_shape)
    k = o["ensemble"]
    paths, reports, seeds = [], [], []
    for i in range(k):
        seed = o["seed"] + i
        s = settings if k == 1 else replace(settings, seed=seed, checkpoint=indexed_path(settings.checkpoint, i),
                                            log_file=indexed_path(settings.log_file, i))
        path = out_path if k == 1 else out_path.with_name(f"{out_path.stem}.{i}{out_path.suffix}")
        res = fit_compressed(mtp, data, spec, s, valid_data=valid)
        mtp_path, side = write_compressed(path, mtp, res.params, spec=str(spec))
        n = res.radial.num_params
        print(f"wrote {mtp_path} and {side}: {spec}, radial parameters {n} of {base_n} "
              f"({100.0 * (1.0 - n / base_n):.1f}% compression)" + (f", final rank {res.radial.rank}"
                                                                     if spec.grows else ""))
        paths.append(str(mtp_path))
        seeds.append(seed)
        if k == 1:
            print(format_report(error_report(data.configurations, predict_dataset(res.mtp, data).configurations),
                                f"training errors ({o['train']})"))
        if valid is not None and len(valid):
            rep = error_report(valid.configurations, predict_dataset(res.mtp, valid).configurations)
            reports.append(rep)
            print(format_report(rep, "validation errors" + (f", member {i} (seed {seed})" if k > 1 else "")))
    if k > 1:
        summary = {"members": paths, "seeds": seeds, "radial": str(spec),
                   "validation": summarise(reports) if reports else {}, "sigma": "sample standard deviation (ddof=1)"}
        summary_path = out_path.with_name(f"{out_path.stem}.summary.json")
        atomic_write(summary_path, json.dumps(summary, indent=2) + "\n")
        print(f"wrote {summary_path}")
    print(f"done ({time.perf_counter() - t0:.1f} s)")
    return 0
