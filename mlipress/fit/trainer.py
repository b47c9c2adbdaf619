"""The one fitting loop (:func:`fit`, :class:`FitProblem`) and the dense fit on it (:func:`train`).

:func:`fit` runs any :class:`FitProblem` (a model of the contract, an optimiser over its own
variables, what to do between steps) under the stopping rules of :mod:`mlipress.optim.loop`,
with progress lines, JSON-lines log, checkpoints and bit-identical resume; the compressed
fits of :mod:`mlipress.compress.fit` are FitProblems too.

:func:`train` is MLIP-2's ``mlp train`` procedure for the base (dense) MTP, or any model of
the contract (REFERENCE.md section 3). :func:`train` minimises the objective of :class:`mlipress.loss.Objective`
(``f = (1/K) sum_k L_k + penalty P(C)``) over ``{radial, species, moment}`` (``scaling`` is
fixed between scaling searches; the objective reports a zero gradient for it). By default
(``variable_projection=True``) BFGS moves the radial part only and the species and moment
coefficients are solved exactly at every evaluation (:mod:`mlipress.fit.projection`):
on an untrained level-20 Mo fit this reached in 10 iterations a lower loss than MLIP's
scheme (below) in 165. ``variable_projection=False`` is MLIP's scheme:

1. untrained potential: random orthonormal radial functions (``seed``), exact linear solve
   and scaling search (:mod:`mlipress.fit.init`), ``pretrain_iters`` BFGS iterations
   (75, MLIP's number), then the scaling search again;
2. main phase: the rest of the ``max_iter`` optimiser iterations; every ``linear_solve_every``
   iterations the radial functions are orthonormalised and species + moment coefficients
   solved exactly (:mod:`mlipress.fit.linear`), and the optimiser is reset (its
   curvature belongs to the old point). Unlike MLIP, the orthonormalised candidate is kept
   only if it does not increase ``f``; otherwise the plain linear solve (radial unchanged) is
   used, and if that is also worse the iterate is kept: the loss never goes up at a solve.
   Under variable projection the period only tries the orthonormalised candidate (the
   linear part is exact already, so a plain solve would change nothing but reset BFGS).
3. stop at ``max_iter``, when ``|grad| <= gtol``, when the relative decrease of ``f`` over
   the last ``ftol_window`` iterations is below ``ftol``, or when the line search cannot
   decrease ``f`` even along the gradient.

The optimiser is pluggable: ``optimizer_factory(value_and_grad, value) -> Optimizer`` (an
``(init, step, reset)`` triple from :mod:`mlipress.optim`); the default is
:func:`mlipress.optim.bfgs` with the strong-Wolfe line search, started from the inverse
Gauss-Newton diagonal (``precondition=True``; :mod:`mlipress.fit.precondition`): without
it, fits from an untrained potential stall within tens of iterations.

Progress: a line every ``log_every`` iterations (iteration, f, training energy RMSE in
meV/atom, force RMSE per Cartesian component in eV/A (MLIP-2's convention), elapsed, ETA),
and, with ``log_file``, one JSON object per line with the same fields.

Checkpoints (``checkpoint_every`` > 0 and ``checkpoint`` path): one ``.npz`` written
atomically with the whole optimiser state (:mod:`mlipress.fit.checkpoint`: every array and
scalar, including BFGS's inverse Hessian) and a JSON header (iteration, history, elapsed
time, the recent values of ``f``). ``resume=True`` restarts from it and, for the same data and settings, ends at
bit-identical parameters to an uninterrupted run (tested).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from mlipress.data import as_dataset
from mlipress.models.base import jitted_efs
from mlipress.loss import LossWeights, Objective, TrainingData, prepare
from mlipress.metrics import error_statistics
from mlipress.models.mtp.model import MTP
from mlipress.optim import bfgs
from mlipress.optim.loop import StopRules, iterate
from mlipress.fit import checkpoint
from mlipress.fit.init import scaling_search
from mlipress.fit.linear import linear_solve
from mlipress.fit.precondition import inverse_gauss_newton_diagonal
from mlipress.fit.projection import optimisation_target

__all__ = ["TrainSettings", "TrainResult", "FitProblem", "fit", "train", "rmse", "prepare_sets", "exact_solve"]


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
    - ``scaling_grid``, ``scaling_refine``: see :func:`mlipress.fit.init.scaling_search`.
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
      coefficients solved exactly at every evaluation (:mod:`mlipress.fit.projection`;
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
    params: Any
    history: list
    state: Any = None
    stop_reason: str = ""


def rmse(model, params, data: TrainingData) -> dict:
    """Unweighted errors on prepared data, by :func:`mlipress.metrics.error_statistics` (the
    definition every error report uses): energy RMSE per atom (eV/atom), force RMSE per
    Cartesian component (eV/A, MLIP-2 convention), virial RMSE over the 6 independent
    components (eV)."""
    efs = jitted_efs(model)
    parts = []
    for ch in data.chunks:
        out = jax.device_get(efs(params, ch.batch))
        n = np.asarray(ch.natoms)
        he, hv = np.asarray(ch.has_energy), np.asarray(ch.has_virial)
        hf = np.concatenate([np.asarray(ch.has_forces), [False]])[np.asarray(ch.batch.config_index)]
        parts.append((((out["energy"] - np.asarray(ch.energy)) / np.where(n > 0, n, 1.0))[he],
                      (out["forces"] - np.asarray(ch.forces))[hf], (out["virial"] - np.asarray(ch.virial))[hv]))
    de, df, dv = zip(*data.gather(parts))
    rep = error_statistics(np.concatenate(de), np.concatenate(df), np.concatenate(dv))
    r = lambda x: x["rmse"] if x["rmse"] is not None else float("nan")  # noqa: E731
    return {"energy_rmse": r(rep["energy_per_atom_eV"]), "force_rmse": r(rep["forces_eV_per_A"]),
            "virial_rmse": r(rep["virial_eV"])}


def preconditioner(obj: Objective, settings: "TrainSettings"):
    """The ``precondition`` argument of :func:`mlipress.optim.bfgs` for these settings: the
    inverse Gauss-Newton diagonal of ``obj`` (reduced under variable projection), re-estimated
    at every reset, i.e. after each linear solve (:mod:`mlipress.fit.precondition`); None
    when ``settings.precondition`` is off."""
    if not settings.precondition:
        return None
    return inverse_gauss_newton_diagonal(obj, settings.precondition_probes, settings.seed,
                                         projected=settings.variable_projection)


# ------------------------------------------------------------------------------------------
# the fitting loop, for every model and optimiser
# ------------------------------------------------------------------------------------------


def _always(it: int) -> bool:
    return True


@dataclass(frozen=True, eq=False)
class FitProblem:
    """What :func:`fit` optimises.

    - ``model``: the model (:mod:`mlipress.models.base`) whose errors are logged.
    - ``optimizer``: an ``(init, step, reset)`` optimiser over its own variables (model
      params for BFGS, ``(xi, fixed-rank point)`` for R-BFGS, ``{xi, U, V}`` for MFRA).
    - ``start() -> (x0, events, message)``: the fresh start (may cost an exact solve), the log
      records and the line to print about it.
    - ``template() -> x0``: variables of the same structure, cheaply: a checkpoint is restored
      into ``optimizer.init(template())``.
    - ``to_params(variables) -> Params``: the model parameters (with exact linear part under
      variable projection).
    - ``between(state, iteration) -> (state, event or None, restart_window)``: run after every
      step (pre-training's end, MLIP's periodic exact solve); ``event`` is logged, its
      ``"message"`` printed.
    - ``finish(state) -> state``: after the last step (MLIP ends on an exact solve).
    - ``may_converge(iteration)``: False while the stopping tests must wait (pre-training).
    - ``phase(iteration)``: the phase name in progress lines and logs.
    - ``per_step(state) -> dict``: fields recorded after every step (MFRA's rank).
    - ``plan``: said after the size of the fit in the first progress line.
    """

    model: Any
    optimizer: Any
    start: Callable[[], tuple]
    template: Callable[[], Any]
    to_params: Callable[[Any], Any] = lambda x: x
    between: Callable | None = None
    finish: Callable | None = None
    may_converge: Callable[[int], bool] = _always
    phase: Callable[[int], str] = lambda it: "main"
    per_step: Callable | None = None
    plan: str = ""


def _fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def fit(problem: FitProblem, data: TrainingData, settings: "TrainSettings", valid: TrainingData | None = None,
        callback: Callable | None = None, out=None):
    """The one fitting loop: run ``problem`` on prepared ``data`` under ``settings``' stopping
    rules (:mod:`mlipress.optim.loop`), with progress lines, JSON-lines log, checkpoints and
    resume. Returns ``(state, history, stop_reason)``.

    ``valid``: prepared validation data (its errors are logged too); ``callback(record)`` at
    every log point, True stops; ``out``: stream of the progress lines (``sys.stdout``).
    A checkpoint (``settings.checkpoint``, every ``checkpoint_every`` iterations and at the end)
    holds the whole optimiser state (:mod:`mlipress.fit.checkpoint`); ``resume=True``
    continues from it to bit-identical parameters.
    """
    s = settings
    out = sys.stdout if out is None else out
    opt, model = problem.optimizer, problem.model
    t_start = time.perf_counter()
    history: list[dict] = []
    elapsed_before = 0.0
    ckpt = Path(s.checkpoint) if s.checkpoint else None
    log_fh = None
    rules = StopRules(s.max_iter, s.gtol, s.ftol, s.ftol_window, s.max_time)

    def elapsed() -> float:  # rank 0's clock on every MPI rank: time limits stop all ranks together
        return data.comm.bcast(elapsed_before + time.perf_counter() - t_start)

    def say(msg: str) -> None:
        if s.log_every:
            print(msg, file=out, flush=True)

    def emit(record: dict) -> bool:
        history.append(record)
        if log_fh is not None:
            log_fh.write(json.dumps(record) + "\n")
            log_fh.flush()
        return bool(callback(record)) if callback is not None else False

    resumed, done_reason, it, recent = False, "", 0, None
    if s.resume and ckpt is not None and ckpt.exists():
        header, state = checkpoint.load(ckpt, opt.init(problem.template()))
        if header.get("seed") != s.seed or header.get("n_configs") != data.n_configs:
            raise ValueError(f"checkpoint {ckpt} was written for a different seed or training set")
        it, recent = header["iteration"], [float(v) for v in header["recent"]]
        history.extend(header["history"])
        elapsed_before, done_reason, resumed = header["elapsed"], header.get("stop_reason", ""), True
        say(f"resumed from {ckpt}: iteration {it}")
    if s.log_file and data.comm.rank == 0:  # MPI: rank 0 logs
        log_fh = open(s.log_file, "a" if resumed else "w", encoding="utf-8")

    def record(kind: str, state, it: int) -> dict:
        params = problem.to_params(state.params)
        err = rmse(model, params, data)
        rec = {"event": kind, "phase": problem.phase(it), "iteration": it, "f": state.value,
               "grad_norm": float(state.grad_norm), "energy_rmse_meV_per_atom": 1e3 * err["energy_rmse"],
               "force_rmse_eV_per_A": err["force_rmse"], "virial_rmse_eV": err["virial_rmse"],
               "n_evals": int(state.n_evals), "elapsed": elapsed()}
        if valid is not None:
            v = rmse(model, params, valid)
            rec["valid_energy_rmse_meV_per_atom"] = 1e3 * v["energy_rmse"]
            rec["valid_force_rmse_eV_per_A"] = v["force_rmse"]
        if problem.per_step is not None:
            rec.update(problem.per_step(state))
        return rec

    def save(state, it: int, stop: str = "") -> None:
        header = {"iteration": it, "seed": s.seed, "n_configs": data.n_configs, "elapsed": elapsed(),
                  "history": history, "recent": [repr(float(v)) for v in recent[-(s.ftol_window + 1):]]}
        checkpoint.save(ckpt, state, {**header, "stop_reason": stop} if stop else header)

    try:
        if not resumed:
            x0, events, message = problem.start()
            say(message)
            for event in events:
                emit({**event, "elapsed": elapsed()})
            state = opt.init(x0)
            recent = [state.value]
        n_params = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(state.params))
        say(f"{data.n_configs} configurations ({data.n_atoms} atoms), {n_params} parameters, "
            f"at most {s.max_iter} iterations{problem.plan}")
        t_run, it0 = time.perf_counter(), it

        def between(state, it):
            if problem.between is None:
                return state, False
            state, event, restart = problem.between(state, it)
            if event is not None:
                message = event.pop("message", None)
                if message:
                    say(message)
                emit({**event, "phase": problem.phase(it), "iteration": it, "elapsed": elapsed()})
            return state, restart

        def after(state, it, reason):
            last = it >= s.max_iter or problem.phase(it) != problem.phase(it + 1)
            if s.log_every and (it % s.log_every == 0 or last or reason):
                rec = record("progress", state, it)
                rate = (time.perf_counter() - t_run) / (it - it0)
                extra = ""
                if valid is not None:
                    extra = (f"  valid E {rec['valid_energy_rmse_meV_per_atom']:8.3f} "
                             f"F {rec['valid_force_rmse_eV_per_A']:.4f}")
                say(f"{rec['phase'][:5]:5s} {it:6d}/{s.max_iter:<6d} f {rec['f']:.6e}  "
                    f"E {rec['energy_rmse_meV_per_atom']:9.3f} meV/atom  F {rec['force_rmse_eV_per_A']:.4f} eV/A{extra}"
                    f"  |g| {rec['grad_norm']:.2e}  {_fmt_time(rec['elapsed'])} elapsed, "
                    f"ETA {_fmt_time(rate * (s.max_iter - it))}")
                if emit(rec):
                    reason = reason or "callback"
            elif problem.per_step is not None:
                history.append({"event": "step", "iteration": it, "f": state.value, **problem.per_step(state)})
            if ckpt is not None and s.checkpoint_every and it % s.checkpoint_every == 0:
                save(state, it)
            return reason

        if done_reason:
            reason = done_reason
        else:
            state, it, reason = iterate(opt, state, rules, start=it, recent=recent, between=between, after=after,
                                        elapsed=elapsed, may_converge=problem.may_converge)
            if problem.finish is not None:
                state = problem.finish(state)
        if ckpt is not None and s.checkpoint_every:
            save(state, it, reason)
        rec = record("final", state, it)
        rec["stop_reason"] = reason
        emit(rec)
        say(f"done after {it} iterations ({reason}): f {state.value:.6e}, "
            f"E {rec['energy_rmse_meV_per_atom']:.3f} meV/atom, F {rec['force_rmse_eV_per_A']:.4f} eV/A, "
            f"{_fmt_time(rec['elapsed'])}")
    finally:
        if log_fh is not None:
            log_fh.close()
    return state, history, reason


def _initial_solve(model, params, data, s: TrainSettings):
    """Exact linear solve of a fresh start (``(params, data loss)``); MLIP's scaling search
    (an MTP's ``scaling``, :func:`scaling_search`) when the settings ask for more than the
    default single trial at scaling 1."""
    if tuple(s.scaling_grid) == (0.0,) and not s.scaling_refine:
        return linear_solve(model, params, data)
    p, loss, _ = scaling_search(model, params, data, s.scaling_grid, s.scaling_refine)
    return p, loss


def exact_solve(obj: Objective, params, f_now: float, normalise: bool = False, plain: bool = True):
    """The exact linear solve between optimiser steps, written once: ``(params, f, kind)`` with
    the linear coefficients solved exactly for the nonlinear part of ``params`` (first
    ``model.normalise``d when ``normalise``, MLIP's orthonormalisation, falling back to the
    plain solve if that does not lower ``f``), kept only if ``f`` does not rise above ``f_now``
    (``kind`` "kept" then, "solve" or "orthonormalise+solve" otherwise). ``plain=False`` drops
    the plain solve: under variable projection the linear part is exact already, so it could
    only reset the optimiser for nothing."""
    model, data = obj.model, obj.data
    candidates = []
    if normalise:
        p, loss = linear_solve(model, model.normalise(params), data)
        candidates.append((loss + obj.penalty(p), "orthonormalise+solve", p))
    if plain and (not candidates or candidates[0][0] > f_now):
        p, loss = linear_solve(model, params, data)
        candidates.append((loss + obj.penalty(p), "solve", p))
    if not candidates:
        return params, f_now, "kept"
    f_best, kind, p_best = min(candidates, key=lambda c: c[0])
    if not f_best <= f_now:
        return params, f_now, "kept"
    return p_best, f_best, kind


def prepare_sets(model, train_data, valid_data, s: "TrainSettings"):
    """Prepared training data and, if given and non-empty, validation data."""
    data = prepare(as_dataset(train_data), model, s.weights, max_atoms=s.max_atoms)
    if valid_data is None or not len(as_dataset(valid_data)):
        return data, None
    return data, prepare(as_dataset(valid_data), model, s.weights, max_atoms=s.max_atoms)


def train(
    mtp: MTP,
    train_data,
    settings: TrainSettings = TrainSettings(),
    valid_data=None,
    optimizer_factory: Callable | None = None,
    callback: Callable | None = None,
    out=None,
) -> TrainResult:
    """Fit ``mtp`` (any model of the contract, :mod:`mlipress.models.base`) to ``train_data``
    (a :class:`Dataset` or sequence of configurations).

    ``mtp`` may be untrained (random start, exact solve; pre-training under MLIP's scheme) or
    trained (continue from its coefficients). ``valid_data``: optional data whose RMSEs are
    logged too. ``optimizer_factory(value_and_grad, value) -> Optimizer``: see the module
    docstring. ``callback(record)`` runs at every log point; returning True stops training.
    ``out``: stream of the progress lines (default ``sys.stdout``). See the module docstring
    for the procedure, stopping rules and checkpoints (REFERENCE.md section 3).
    """
    s = settings
    model = mtp
    data, valid = prepare_sets(model, train_data, valid_data, s)
    obj = Objective(model, data)
    # current(params): the iterate with its linear coefficients (exact under variable projection)
    target, current = optimisation_target(obj, s.variable_projection)
    opt = (bfgs(target.value_and_grad, target.value, precondition=preconditioner(obj, s)) if optimizer_factory is None
           else optimizer_factory(target.value_and_grad, target.value))
    n_pre = 0 if model.trained else s.pretrain_count

    def start():
        if model.trained:
            return model.params(), [], (f"training a trained potential: {data.n_configs} configurations, "
                                        f"{data.n_atoms} atoms")
        params, loss = _initial_solve(model, model.init(s.seed), data, s)
        f0 = loss + obj.penalty(params)
        return (params, [{"event": "scaling_search", "iteration": 0, "f": f0}],
                f"untrained potential: random start (seed {s.seed}), linear solve, f = {f0:.6g}")

    def between(state, it):
        if n_pre and it == n_pre and it < s.max_iter:
            params, _ = _initial_solve(model, state.params, data, s)
            state = opt.reset(state, params)
            return state, {"event": "scaling_search", "f": state.value,
                           "message": f"pre-training done; linear solve, f = {state.value:.6g}"}, True
        if s.linear_solve_every and it > n_pre and (it - n_pre) % s.linear_solve_every == 0:
            p, _, kind = exact_solve(obj, state.params, state.value, normalise=True, plain=not s.variable_projection)
            if kind != "kept":
                state = opt.reset(state, p)
            return state, {"event": "linear_solve", "kind": kind, "f": state.value}, False
        return state, None, False

    def finish(state):  # MLIP ends on an exact solve (never increases f); nothing steps after it,
        # so the state takes the solved point without a reset (which would cost an evaluation and a
        # preconditioner); its gradient is that of the last iterate
        if s.linear_solve_every and not s.variable_projection:
            p, f, kind = exact_solve(obj, state.params, state.value)
            if kind != "kept":
                state = state._replace(params=p, value=f, prev_value=state.value)
        return state

    problem = FitProblem(
        model, opt, start, lambda: model.params() if model.trained else model.init(s.seed),
        to_params=current, between=between, finish=finish, may_converge=lambda it: it > n_pre,
        phase=lambda it: "pretrain" if it <= n_pre else "main",
        plan=f" ({n_pre} pre-training, then {s.max_iter - n_pre} main)" if n_pre else "",
    )
    state, history, reason = fit(problem, data, s, valid, callback=callback, out=out)
    params = current(state.params)
    return TrainResult(model.with_params(params), params, history, state, reason)
