"""``mlipress compress``: compress a trained MTP with a low-rank radial tensor and refit it.

    mlipress compress trained.mtp --train train.cfg --valid valid.cfg --species Cu,Ag,Au \\
        --radial mf:8 -o compressed.mtp
    mlipress compress trained.mtp --train train.cfg --radial tt --fraction 0.5 -o half.mtp

``--radial``: ``mf:R`` | ``rmf:R`` | ``tt:R1,R2,R3`` | ``mfra:RMAX`` | ``ttra:R1,R2,R3`` |
``mfra:auto`` | ``ttra:auto`` | ``dense`` (sections II.C-D of the paper; ``auto``: grow the rank
while the validation loss decreases between augmentation points, or without ``--valid`` while
the training loss decreases by more than 1% between them); with ``--fraction F`` the rank may be left out (``mf``, ``tt``, ...) and
is chosen so that the radial part keeps ~F of the dense parameter count
(:func:`mlipress.models.layers.rank_for_compression`). Writes ``-o X.mtp`` (standard dense ``.mtp``,
usable by ``mlipress evaluate``) and ``X.mtp.factors.npz`` (the factors,
:mod:`mlipress.compress.files`); prints radial parameter counts (base vs compressed) and the
errors (validation set, else training set) before and after.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from mlipress.cli.common import coefficient_l2, coefficient_l2_option, read_data, species_option


def register(subparsers) -> None:
    p = subparsers.add_parser("compress", help="compress a trained MTP's radial tensor (MF, R-MF, TT, MFRA, TTRA) and refit")
    p.add_argument("potential", help="trained .mtp to compress (or an untrained one to fit in compressed form)")
    p.add_argument("--train", required=True, help="training configurations")
    p.add_argument("--valid", help="validation configurations (errors before/after)")
    species_option(p)
    p.add_argument("--radial", required=True, help="dense | mf:R | rmf:R | tt:R1,R2,R3 | mfra:RMAX | ttra:R1,R2,R3 | mfra:auto | ttra:auto "
                   "(auto: grow while the validation loss decreases, or without --valid while the training "
                   "loss gains > 1%% per augmentation; rank optional with --fraction)")
    p.add_argument("--fraction", type=float, help="pick the rank keeping ~this fraction of radial parameters (0.5 = 50%%)")
    p.add_argument("--max-iter", dest="max_iter", type=int, default=500, help="optimiser iterations (default 500)")
    p.add_argument("--seed", type=int, default=0, help="random seed (untrained start; default 0)")
    p.add_argument("--linear-solve-every", dest="linear_solve_every", type=int, default=50,
                   help="exact linear solve period for mf/tt (default 50, 0 = never)")
    p.add_argument("--log-every", dest="log_every", type=int, default=10, help="progress line period (0 = quiet)")
    p.add_argument("--log", help="JSON-lines log of the fit")
    p.add_argument("--max-time", dest="max_time", type=float, default=0.0,
                   help="stop after this many seconds of wall time (default 0 = no limit)")
    p.add_argument("--checkpoint", help="checkpoint file (.npz), written every --checkpoint-every iterations")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=None,
                   help="checkpoint period (default 50 when --checkpoint is given)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    coefficient_l2_option(p)
    p.add_argument("-o", "--output", required=True, help="output .mtp (the factors go to OUTPUT.factors.npz)")
    p.set_defaults(func=run)


def _spec(text: str, fraction, shape):
    from mlipress.models.layers import RadialSpec, parse_radial_spec, rank_for_compression

    kind = text.strip().lower().partition(":")[0]
    if fraction is not None and ":" not in text and kind != "dense":
        rank = rank_for_compression(shape, fraction, kind)
        return RadialSpec(kind, rank)
    if fraction is not None and ":" in text:
        raise ValueError("give either an explicit rank in --radial or --fraction, not both")
    return parse_radial_spec(text)


def _fmt_err(err: dict) -> str:
    return f"E {1e3 * err['energy_rmse']:.3f} meV/atom, F {err['force_rmse']:.4f} eV/A"


def run(args) -> int:
    from mlipress.compress.files import write_compressed
    from mlipress.compress.fit import fit_compressed
    from mlipress.io import read_potential
    from mlipress.loss import LossWeights, prepare
    from mlipress.fit import TrainSettings, rmse

    mtp = read_potential(args.potential)
    data = read_data(args.train, args.species, mtp)
    valid = read_data(args.valid, args.species, mtp) if args.valid else None
    spec = _spec(args.radial, args.fraction, mtp.radial_shape)
    every = args.checkpoint_every if args.checkpoint_every is not None else (50 if args.checkpoint else 0)
    settings = TrainSettings(weights=LossWeights(coefficient_l2=coefficient_l2(args.coefficient_l2, mtp)),
                             max_iter=args.max_iter, seed=args.seed, linear_solve_every=args.linear_solve_every,
                             log_every=args.log_every, log_file=args.log, max_time=args.max_time,
                             checkpoint=args.checkpoint, checkpoint_every=every, resume=args.resume)
    which = "validation" if valid is not None and len(valid) else "training"
    eval_set = prepare(valid if which == "validation" else data, mtp, settings.weights, max_atoms=settings.max_atoms)
    base_n = math.prod(mtp.radial_shape)
    print(f"compressing {args.potential} with {spec}: {len(data)} training configurations"
          + (f", {len(valid)} validation" if valid is not None else ""))
    if mtp.trained:
        print(f"{which} errors before: {_fmt_err(rmse(mtp, mtp.params(), eval_set))}")
    t0 = time.perf_counter()
    res = fit_compressed(mtp, data, spec, settings, valid_data=valid)
    out = Path(args.output)
    mtp_path, side = write_compressed(out, mtp, res.params, spec=str(spec))
    n = res.radial.num_params
    print(f"radial parameters: base {base_n}, compressed {n} ({100.0 * (1.0 - n / base_n):.1f}% compression)"
          + (f", final rank {res.radial.rank}" if spec.grows else ""))
    print(f"{which} errors after:  {_fmt_err(rmse(mtp, res.params, eval_set))}")
    print(f"wrote {mtp_path} and {side} ({time.perf_counter() - t0:.1f} s)")
    return 0
