"""The training loop: MLIP-2's ``mlp train`` procedure on the base (dense) MTP.

REFERENCE.md section 3. :func:`train` minimises the objective of :class:`mlipress.loss.Objective`
(``f = (1/K) sum_k L_k + penalty P(C)``) over ``{radial, species, moment}`` (``scaling`` is
fixed between scaling searches; the objective reports a zero gradient for it). By default
(``variable_projection=True``) BFGS moves the radial part only and the species and moment
coefficients are solved exactly at every evaluation (:mod:`mlipress.training.projection`):
on an untrained level-20 Mo fit this reached in 10 iterations a lower loss than MLIP's
scheme (below) in 165. ``variable_projection=False`` is MLIP's scheme:

1. untrained potential: random orthonormal radial functions (``seed``), exact linear solve
   and scaling search (:mod:`mlipress.training.init`), ``pretrain_iters`` BFGS iterations
   (75, MLIP's number), then the scaling search again;
2. main phase: the rest of the ``max_iter`` optimiser iterations; every ``linear_solve_every``
   iterations the radial functions are orthonormalised and species + moment coefficients
   solved exactly (:mod:`mlipress.training.linear`), and the optimiser is reset (its
   curvature belongs to the old point). Unlike MLIP, the orthonormalised candidate is kept
   only if it does not increase ``f``; otherwise the plain linear solve (radial unchanged) is
   used, and if that is also worse the iterate is kept: the loss never goes up at a solve.
3. stop at ``max_iter``, when ``|grad| <= gtol``, when the relative decrease of ``f`` over
   the last ``ftol_window`` iterations is below ``ftol``, or when the line search cannot
   decrease ``f`` even along the gradient.

The optimiser is pluggable: ``optimizer_factory(value_and_grad, value) -> Optimizer`` (an
``(init, step, reset)`` triple from :mod:`mlipress.optim`); the default is
:func:`mlipress.optim.bfgs` with the strong-Wolfe line search, started from the inverse
Gauss-Newton diagonal (``precondition=True``; :mod:`mlipress.training.precondition`): without
it, fits from an untrained potential stall within tens of iterations.

Progress: a line every ``log_every`` iterations (iteration, f, training energy RMSE in
meV/atom, force RMSE per Cartesian component in eV/A (MLIP-2's convention), elapsed, ETA),
and, with ``log_file``, one JSON object per line with the same fields.

Checkpoints (``checkpoint_every`` > 0 and ``checkpoint`` path): one ``.npz`` written
atomically with the parameters, the optimiser state (every array and scalar of the state
NamedTuple, including BFGS's inverse Hessian) and a JSON header (phase, iteration, history,
elapsed time). ``resume=True`` restarts from it and, for the same data and settings, ends at
bit-identical parameters to an uninterrupted run (tested).
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mlipress.data import as_dataset
from mlipress.evaluator import jitted_efs
from mlipress.io.atomic import atomic_write
from mlipress.loss import LossWeights, Objective, TrainingData, prepare
from mlipress.metrics import error_statistics
from mlipress.model import MTP
from mlipress.optim import bfgs
from mlipress.training.init import scaling_search
from mlipress.training.linear import linear_solve
from mlipress.training.precondition import inverse_gauss_newton_diagonal
from mlipress.training.projection import optimisation_target

__all__ = ["TrainSettings", "TrainResult", "train", "to_mtp", "rmse", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainSettings:
    """Settings of :func:`train` (``mlp train`` options where they exist).

    - ``weights``: :class:`mlipress.loss.LossWeights` (w_E, w_F, w_S, weighting,
      scale_by_force, penalty).
    - ``max_iter``: optimiser iterations in total, pre-training included: ``max_iter=30``
      runs 30 iterations (MLIP's ``--max-iter`` counts only the main phase; a user who asks
      for 30 expects 30).
    - ``max_time``: stop after this many seconds of wall time, pre-training included and
      resumed runs counting their earlier time (0: no limit).
    - ``gtol``: stop when the gradient norm is <= gtol.
    - ``ftol``, ``ftol_window``: stop when f decreased by less than ``ftol * |f|`` over the last
      ``ftol_window`` iterations (0 disables).
    - ``seed``: random radial coefficients of an untrained potential.
    - ``linear_solve_every``: orthonormalise + exact linear solve period (0: never).
    - ``pretrain_iters``: BFGS iterations before the second scaling search (untrained only),
      part of ``max_iter``. None (default): 75 (MLIP's) for MLIP's scheme, 0 under variable
      projection, where the linear coefficients are exact at every evaluation, so the scaling
      search that pre-training prepares is a single exact solve that changes nothing.
    - ``scaling_grid``, ``scaling_refine``: see :func:`mlipress.training.init.scaling_search`.
      The default is a single exact solve at scaling 1, not MLIP's search: every radial function
      carries the scaling, so a basis function built from k moments scales as s^k; the exact
      linear solve absorbs that (the loss after it is the same to 1e-16 for s in 1e-3..10,
      checked), and the Gauss-Newton preconditioner absorbs it for BFGS. A search only costs
      ~15 linear solves (minutes at level 16). Pass MLIP's grid (``DEFAULT_LOG10_GRID``,
      refine 6) to reproduce it anyway.
    - ``log_every``: progress line period (0: silent); ``log_file``: JSON-lines log path.
    - ``checkpoint_every``, ``checkpoint``: checkpoint period and path; ``resume``: start from
      ``checkpoint`` if it exists.
    - ``max_atoms``: atoms per evaluation chunk (memory bound).
    - ``precondition``, ``precondition_probes``: Gauss-Newton diagonal start of BFGS.
    - ``variable_projection``: optimise the radial part only, with species and moment
      coefficients solved exactly at every evaluation (:mod:`mlipress.training.projection`;
      default). ``False`` gives MLIP's scheme: BFGS on all coefficients, exact solves every
      ``linear_solve_every`` iterations.
    """

    weights: LossWeights = field(default_factory=LossWeights)
    max_iter: int = 1000
    max_time: float = 0.0
    gtol: float = 1e-10
    ftol: float = 1e-9
    ftol_window: int = 50
    seed: int = 0
    linear_solve_every: int = 50
    pretrain_iters: int | None = None
    scaling_grid: tuple[float, ...] = (0.0,)
    scaling_refine: int = 0
    log_every: int = 10
    log_file: str | None = None
    checkpoint_every: int = 0
    checkpoint: str | None = None
    resume: bool = False
    max_atoms: int = 2048
    precondition: bool = True
    precondition_probes: int = 4
    variable_projection: bool = True

    def __post_init__(self):
        if not isinstance(self.weights, LossWeights):
            raise TypeError(f"weights must be a mlipress.loss.LossWeights, got {type(self.weights).__name__}")
        for name in ("max_iter", "ftol_window", "seed", "linear_solve_every", "pretrain_iters",
                     "scaling_refine", "log_every", "checkpoint_every", "max_atoms"):
            v = getattr(self, name)
            if v is None and name == "pretrain_iters":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if self.max_atoms < 1:
            raise ValueError(f"max_atoms must be >= 1, got {self.max_atoms}")
        for name in ("gtol", "ftol", "max_time"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        object.__setattr__(self, "scaling_grid", tuple(float(g) for g in self.scaling_grid))
        if not self.scaling_grid:
            raise ValueError("scaling_grid must not be empty")
        if self.checkpoint_every and not self.checkpoint:
            raise ValueError("checkpoint_every > 0 needs a checkpoint path")
        if self.resume and not self.checkpoint:
            raise ValueError("resume=True needs a checkpoint path")

    @property
    def pretrain_count(self) -> int:
        """Pre-training iterations of an untrained potential, at most ``max_iter``
        (``pretrain_iters``, or its scheme-dependent default when None)."""
        n = self.pretrain_iters if self.pretrain_iters is not None else (0 if self.variable_projection else 75)
        return min(n, self.max_iter)


@dataclass(frozen=True, eq=False)
class TrainResult:
    """``mtp``: the trained potential (write it with :func:`mlipress.io.write_mtp`);
    ``params``: its parameter pytree; ``history``: list of log records (dicts);
    ``state``: final optimiser state; ``stop_reason``: why training stopped."""

    mtp: MTP
    params: dict
    history: list
    state: Any = None
    stop_reason: str = ""


def to_mtp(mtp: MTP, params) -> MTP:
    """``mtp`` carrying ``params`` (``mtp.with_params(params)``; the dense C of a factored
    radial part)."""
    return mtp.with_params(params)


def rmse(model, params, data: TrainingData) -> dict:
    """Unweighted errors on prepared data, by :func:`mlipress.metrics.error_statistics` (the
    definition every error report uses): energy RMSE per atom (eV/atom), force RMSE per
    Cartesian component (eV/A, MLIP-2 convention), virial RMSE over the 6 independent
    components (eV)."""
    efs = jitted_efs(model)
    de, df, dv = [], [], []
    for ch in data.chunks:
        out = jax.device_get(efs(params, ch.batch))
        n = np.asarray(ch.natoms)
        he, hv = np.asarray(ch.has_energy), np.asarray(ch.has_virial)
        de.append(((out["energy"] - np.asarray(ch.energy)) / np.where(n > 0, n, 1.0))[he])
        hf = np.concatenate([np.asarray(ch.has_forces), [False]])[np.asarray(ch.batch.config_index)]
        df.append((out["forces"] - np.asarray(ch.forces))[hf])
        dv.append((out["virial"] - np.asarray(ch.virial))[hv])
    rep = error_statistics(np.concatenate(de), np.concatenate(df), np.concatenate(dv))
    r = lambda x: x["rmse"] if x["rmse"] is not None else float("nan")  # noqa: E731
    return {"energy_rmse": r(rep["energy_per_atom_eV"]), "force_rmse": r(rep["forces_eV_per_A"]),
            "virial_rmse": r(rep["virial_eV"])}


def preconditioner(obj: Objective, settings: "TrainSettings"):
    """The ``precondition`` argument of :func:`mlipress.optim.bfgs` for these settings: the
    inverse Gauss-Newton diagonal of ``obj`` (reduced under variable projection), re-estimated
    at every reset, i.e. after each linear solve (:mod:`mlipress.training.precondition`); None
    when ``settings.precondition`` is off."""
    if not settings.precondition:
        return None
    return inverse_gauss_newton_diagonal(obj, settings.precondition_probes, settings.seed,
                                         projected=settings.variable_projection)


# ------------------------------------------------------------------------------------------
# checkpoints: params + optimiser state (a NamedTuple) in one npz, written atomically
# ------------------------------------------------------------------------------------------


def _save_checkpoint(path, state, header: dict) -> None:
    arrays, meta = {}, {}
    for name, value in zip(state._fields, state):
        if value is None:
            meta[name] = {"kind": "none"}
        elif isinstance(value, (bool, int, float, str, np.bool_, np.integer, np.floating)) and not isinstance(value, np.ndarray):
            v = value.item() if hasattr(value, "item") else value
            meta[name] = {"kind": "scalar", "value": v if not isinstance(v, float) else repr(v)}
        else:
            leaves = jax.tree_util.tree_leaves(value)
            meta[name] = {"kind": "tree", "n": len(leaves)}
            for i, leaf in enumerate(leaves):
                arrays[f"{name}/{i}"] = np.asarray(leaf)
    header = {**header, "version": CHECKPOINT_VERSION, "state_type": type(state).__name__, "fields": meta}
    buf = io.BytesIO()
    np.savez(buf, __header__=np.array(json.dumps(header)), **arrays)
    atomic_write(path, buf.getvalue())


def _load_header(path) -> tuple[dict, Any]:
    z = np.load(path, allow_pickle=False)
    header = json.loads(str(z["__header__"]))
    if header.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path}: unsupported version {header.get('version')}")
    return header, z


def _restore_state(template, header: dict, z):
    """Fill a state NamedTuple of the same type as ``template`` from a checkpoint."""
    if header["state_type"] != type(template).__name__:
        raise ValueError(
            f"checkpoint holds a {header['state_type']} but the optimiser makes {type(template).__name__}"
        )
    values = {}
    for name, tmpl in zip(template._fields, template):
        m = header["fields"][name]
        if m["kind"] == "none":
            values[name] = None
        elif m["kind"] == "scalar":
            v = m["value"]
            values[name] = float(v) if isinstance(v, str) and isinstance(tmpl, float) else v
        else:
            leaves = [z[f"{name}/{i}"] for i in range(m["n"])]
            if tmpl is None or not jax.tree_util.tree_leaves(tmpl):
                values[name] = leaves[0] if len(leaves) == 1 else leaves
            else:
                treedef = jax.tree_util.tree_structure(tmpl)
                tl = jax.tree_util.tree_leaves(tmpl)
                conv = [jnp.asarray(a) if isinstance(t, jax.Array) else np.asarray(a) for a, t in zip(leaves, tl)]
                values[name] = jax.tree_util.tree_unflatten(treedef, conv)
    return type(template)(**values)


# ------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------


def _fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _initial_solve(model, params, data, s: TrainSettings):
    """Exact linear solve of a fresh start (``(params, data loss)``); MLIP's scaling search
    (an MTP's ``scaling``, :func:`scaling_search`) when the settings ask for more than the
    default single trial at scaling 1."""
    if tuple(s.scaling_grid) == (0.0,) and not s.scaling_refine:
        return linear_solve(model, params, data)
    p, loss, _ = scaling_search(model, params, data, s.scaling_grid, s.scaling_refine)
    return p, loss


def train(
    mtp: MTP,
    train_data,
    settings: TrainSettings = TrainSettings(),
    valid_data=None,
    optimizer_factory: Callable | None = None,
    callback: Callable | None = None,
    out=None,
) -> TrainResult:
    """Fit ``mtp`` to ``train_data`` (a :class:`Dataset` or sequence of configurations).

    ``mtp`` may be untrained (MLIP's template: random start, scaling search, pre-training) or
    trained (continue from its coefficients). ``valid_data``: optional data whose RMSEs are
    logged too. ``optimizer_factory(value_and_grad, value) -> Optimizer``: see the module
    docstring. ``callback(record)`` runs at every log point; returning True stops training.
    ``out``: stream of the progress lines (default ``sys.stdout``). See the module docstring
    for the procedure, stopping rules and checkpoints (REFERENCE.md section 3).
    """
    s = settings
    out = sys.stdout if out is None else out
    t_start = time.perf_counter()
    train_ds = as_dataset(train_data)
    data = prepare(train_ds, mtp, s.weights, max_atoms=s.max_atoms)
    valid = prepare(as_dataset(valid_data), mtp, s.weights, max_atoms=s.max_atoms) if valid_data is not None and len(as_dataset(valid_data)) else None
    obj = Objective(mtp, data)
    # current(params): the iterate with its linear coefficients (exact under variable projection)
    target, current = optimisation_target(obj, s.variable_projection)
    opt = (bfgs(target.value_and_grad, target.value, precondition=preconditioner(obj, s)) if optimizer_factory is None
           else optimizer_factory(target.value_and_grad, target.value))
    penalty_of = obj.penalty

    history: list[dict] = []
    elapsed_before = 0.0
    log_fh = None
    ckpt = Path(s.checkpoint) if s.checkpoint else None

    def emit(record: dict) -> bool:
        history.append(record)
        if log_fh is not None:
            log_fh.write(json.dumps(record) + "\n")
            log_fh.flush()
        return bool(callback(record)) if callback is not None else False

    def say(msg: str) -> None:
        if s.log_every:
            print(msg, file=out, flush=True)

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t_start

    def solve_step(params, f_now, orthonormalise=True):
        """Orthonormalise + exact linear solve; never increases f. Returns (params, f, kind)."""
        pen = penalty_of
        candidates = []
        if orthonormalise:
            p, loss = linear_solve(mtp, mtp.normalise(params), data)
            candidates.append((loss + pen(p), "orthonormalise+solve", p))
        if not candidates or candidates[0][0] > f_now:
            p, loss = linear_solve(mtp, params, data)
            candidates.append((loss + pen(p), "solve", p))
        f_best, kind, p_best = min(candidates, key=lambda c: c[0])
        if not f_best <= f_now:
            return params, f_now, "kept"
        return p_best, f_best, kind

    # ---------------- start or resume ----------------
    phase, phase_iter, total_iter, state = None, 0, 0, None
    resumed = False
    recent_restored: list[float] = []
    if s.resume and ckpt is not None and ckpt.exists():
        header, z = _load_header(ckpt)
        if header.get("seed") != s.seed or header.get("n_configs") != data.n_configs:
            raise ValueError(f"checkpoint {ckpt} was written for a different seed or training set")
        # the template only supplies the state's type and pytree structures
        template = opt.init(mtp.params() if mtp.trained else mtp.init(s.seed))
        state = _restore_state(template, header, z)
        recent_restored = [float(v) for v in header["recent"]]
        phase, phase_iter, total_iter = header["phase"], header["phase_iter"], header["total_iter"]
        history.extend(header["history"])
        elapsed_before = header["elapsed"]
        resumed = True
        say(f"resumed from {ckpt}: phase {phase}, iteration {total_iter}")

    if s.log_file:
        log_fh = open(s.log_file, "a" if resumed else "w", encoding="utf-8")

    try:
        if not resumed:
            if mtp.trained:
                params = mtp.params()
                phase = "main"
                say(f"training a trained potential: {data.n_configs} configurations, {data.n_atoms} atoms")
            else:
                params, loss = _initial_solve(mtp, mtp.init(s.seed), data, s)
                phase = "pretrain" if s.pretrain_count > 0 else "main"
                say(
                    f"untrained potential: random start (seed {s.seed}), linear solve, "
                    f"f = {loss + penalty_of(params):.6g}"
                )
                emit({"event": "scaling_search", "iteration": 0, "f": loss + penalty_of(params), "elapsed": elapsed()})
            state = opt.init(params)

        n_params = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(state.params))
        n_pre = s.pretrain_count if phase == "pretrain" else 0
        say(
            f"{data.n_configs} configurations ({data.n_atoms} atoms), {n_params} parameters, "
            f"at most {s.max_iter} iterations"
            + (f" ({n_pre} pre-training, then {s.max_iter - n_pre} main)" if n_pre else "")
        )

        recent: list[float] = recent_restored if resumed else [state.value]
        stop_reason = ""
        t_phase, it_phase0 = time.perf_counter(), phase_iter

        def record(kind: str) -> dict:
            nonlocal t_phase
            params = current(state.params)
            err = rmse(mtp, params, data)
            rec = {
                "event": kind, "phase": phase, "iteration": total_iter, "f": state.value,
                "grad_norm": state.grad_norm, "energy_rmse_meV_per_atom": 1e3 * err["energy_rmse"],
                "force_rmse_eV_per_A": err["force_rmse"], "virial_rmse_eV": err["virial_rmse"],
                "n_evals": int(state.n_evals), "elapsed": elapsed(),
            }
            if valid is not None:
                v = rmse(mtp, params, valid)
                rec["valid_energy_rmse_meV_per_atom"] = 1e3 * v["energy_rmse"]
                rec["valid_force_rmse_eV_per_A"] = v["force_rmse"]
            return rec

        def progress(rec: dict) -> None:
            done = phase_iter - it_phase0
            rate = (time.perf_counter() - t_phase) / done if done > 0 else float("nan")
            eta = rate * (s.max_iter - total_iter) if done > 0 else float("nan")
            extra = ""
            if "valid_energy_rmse_meV_per_atom" in rec:
                extra = f"  valid E {rec['valid_energy_rmse_meV_per_atom']:8.3f} F {rec['valid_force_rmse_eV_per_A']:.4f}"
            say(
                f"{phase[:5]:5s} {total_iter:6d}/{s.max_iter:<6d} f {rec['f']:.6e}  E {rec['energy_rmse_meV_per_atom']:9.3f} meV/atom"
                f"  F {rec['force_rmse_eV_per_A']:.4f} eV/A{extra}  |g| {rec['grad_norm']:.2e}"
                f"  {_fmt_time(rec['elapsed'])} elapsed, ETA {_fmt_time(eta)}"
            )

        def checkpoint() -> None:
            header = {"phase": phase, "phase_iter": phase_iter, "total_iter": total_iter, "seed": s.seed,
                      "n_configs": data.n_configs, "elapsed": elapsed(), "history": history,
                      "recent": [repr(float(v)) for v in recent[-(s.ftol_window + 1):]]}
            _save_checkpoint(ckpt, state, header)

        while phase in ("pretrain", "main"):
            # iterations are counted in total: pre-training takes its share of max_iter
            limit = s.pretrain_count if phase == "pretrain" else s.max_iter - (total_iter - phase_iter)
            stop_reason = f"max_iter ({s.max_iter})"
            while phase_iter < limit:
                state = opt.step(state)
                phase_iter += 1
                total_iter += 1
                recent.append(state.value)
                if phase == "main" and s.linear_solve_every and phase_iter % s.linear_solve_every == 0:
                    p, f, kind = solve_step(state.params, state.value)
                    if kind != "kept":
                        state = opt.reset(state, p)
                    emit({"event": "linear_solve", "phase": phase, "iteration": total_iter, "kind": kind,
                          "f": state.value, "elapsed": elapsed()})
                last = phase_iter >= limit
                stop = False
                if phase == "main":
                    if state.grad_norm <= s.gtol:
                        stop, stop_reason = True, f"gradient norm {state.grad_norm:.3g} <= gtol"
                    elif getattr(state, "status", "") in ("line_search_failed", "stationary"):
                        stop, stop_reason = True, f"optimiser status {state.status}"
                    elif s.ftol > 0 and s.ftol_window and len(recent) > s.ftol_window:
                        old = recent[-1 - s.ftol_window]
                        if old - state.value <= s.ftol * max(abs(old), abs(state.value), 1e-300):
                            stop, stop_reason = True, f"relative decrease < ftol over {s.ftol_window} iterations"
                if not stop and s.max_time and elapsed() >= s.max_time:
                    stop, stop_reason = True, f"time limit ({s.max_time:g} s)"
                if s.log_every and (phase_iter % s.log_every == 0 or last or stop):
                    rec = record("progress")
                    progress(rec)
                    if emit(rec):
                        stop, stop_reason = True, "callback"
                if ckpt is not None and s.checkpoint_every and total_iter % s.checkpoint_every == 0:
                    checkpoint()
                if stop:
                    phase = "done"
                    break
            if phase == "pretrain" and total_iter >= s.max_iter:
                phase = "done"
            elif phase == "pretrain":
                params, loss = _initial_solve(mtp, state.params, data, s)
                phase, phase_iter = "main", 0
                state = opt.reset(state, params)
                t_phase, it_phase0 = time.perf_counter(), 0
                recent = [state.value]
                say(f"pre-training done; linear solve, f = {state.value:.6g}")
                emit({"event": "scaling_search", "iteration": total_iter, "f": state.value, "elapsed": elapsed()})
            elif phase == "main":
                phase = "done"
        # a final exact solve, as MLIP ends on one (never increases f)
        if s.linear_solve_every and not s.variable_projection:
            p, f, kind = solve_step(state.params, state.value, orthonormalise=False)
            if kind != "kept":
                state = opt.reset(state, p)
        if ckpt is not None and s.checkpoint_every:
            phase = "done"
            checkpoint()
        rec = record("final")
        rec["stop_reason"] = stop_reason
        emit(rec)
        say(
            f"done after {total_iter} iterations ({stop_reason}): f {state.value:.6e}, "
            f"E {rec['energy_rmse_meV_per_atom']:.3f} meV/atom, F {rec['force_rmse_eV_per_A']:.4f} eV/A, "
            f"{_fmt_time(rec['elapsed'])}"
        )
    finally:
        if log_fh is not None:
            log_fh.close()
    params = current(state.params)
    return TrainResult(mtp.with_params(params), params, history, state, stop_reason)
