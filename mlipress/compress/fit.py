"""Fitting compressed MTPs: MF, R-MF, TF and MFRA (sections II.C-D of the paper, Algorithm 1).

:func:`fit_compressed` fits the coefficients ``{radial, species, moment}`` of an MTP whose
radial tensor ``C`` (eq. (5)) is parametrised according to a spec (:func:`mlipress.radial.
parse_radial_spec`):

- ``dense``: the base MTP, :func:`mlipress.training.train` unchanged.
- ``mf:R`` (``C = reshape(U V^T)``, section II.C) and ``tt:R1,R2,R3`` (tensor train, section
  II.C): Euclidean BFGS (section II.D.2.a) over species, moment and the factors, run by
  :func:`mlipress.training.train` with ``params.radial`` a :class:`~mlipress.radial.
  MatrixFactorized` / :class:`~mlipress.radial.TensorTrain` (the evaluator works in factored
  form). The trainer's periodic step *orthonormalises* ``C`` before its linear solve, which is
  only meaningful for a dense ``C`` (and would destroy the factorisation), so it is switched off
  (``linear_solve_every = 0``) and replaced by :func:`_with_linear_solves`: every
  ``settings.linear_solve_every`` BFGS iterations the species/moment coefficients are solved
  exactly with the factors unchanged, accepted only if ``f`` does not increase, and BFGS is reset.
  A final plain linear solve follows (as MLIP ends on one). With ``settings.variable_projection``
  (the default) BFGS moves the factors only and the linear coefficients are exact at every
  evaluation (:mod:`mlipress.training.projection`).
- ``rmf:R``: Riemannian BFGS on ``R^{n_xi} x M_r`` (section II.D.2.b, Algorithm 2 of the
  supplementary), through :func:`rmf_objective`, the adapter ``params <-> (xi, X)`` with
  ``xi = [species | moment]`` and ``X = to_matrix(C)`` (the (N_T^2, N_f N_b) unfolding).
- ``mfra:RMAX``: MF with rank augmentation (Algorithm 1, section II.D.3), paper defaults
  ``r_min = 2``, ``delta_r = 2``, interval ``"auto"`` (4% of ``max_iter``).

With ``settings.variable_projection`` (the default) every method optimises the radial part
only, the species and moment coefficients being solved exactly at every evaluation
(:mod:`mlipress.training.projection`); for R-MF and MFRA the Riemannian variable is then
``X`` alone (``xi`` gets a zero gradient and is completed exactly). ``False`` gives the paper's
formulation on ``(xi, X)``.

Starting points (section II.D): a *trained* dense MTP is compressed by truncated SVD of the
unfolding (MF, R-MF, MFRA at rank ``r_min``) or TT-SVD (TF), the linear coefficients re-solved
exactly, then refitted; an *untrained* MTP gets random factors (:meth:`MatrixFactorized.random`,
:meth:`TensorTrain.random` with ``settings.seed``) and the trainer's initialisation (scaling
search with an exact linear solve at every trial, :func:`mlipress.training.scaling_search`).

All results are :class:`CompressedResult`, a :class:`~mlipress.training.TrainResult` extended
with the spec and the (factored) radial parametrisation; ``result.mtp`` holds the dense
``C = param.dense()`` so it can be written as a standard ``.mtp``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import jax.numpy as jnp
import numpy as np

from mlipress.data import as_dataset
from mlipress.loss import Objective, prepare
from mlipress.model import MTP
from mlipress.optim import bfgs, mfra, rbfgs
from mlipress.optim import fixed_rank as fr
from mlipress.radial import (
    Dense,
    MatrixFactorized,
    RadialSpec,
    TensorTrain,
    from_matrix,
    parse_radial_spec,
    to_matrix,
)
from mlipress.training import TrainResult, TrainSettings, linear_solve, rmse, scaling_search, train
from mlipress.training.projection import optimisation_target
from mlipress.training.trainer import preconditioner

__all__ = [
    "CompressedResult",
    "fit_compressed",
    "initial_compressed_params",
    "rmf_objective",
    "join_xi",
    "MFRA_R_MIN",
    "MFRA_DELTA_R",
]

#: Paper defaults of Algorithm 1 (supplementary recommendations): initial rank and increment.
MFRA_R_MIN = 2
MFRA_DELTA_R = 2


@dataclass(frozen=True, eq=False)
class CompressedResult(TrainResult):
    """:class:`TrainResult` plus ``spec`` (the parsed :class:`RadialSpec`), ``radial`` (the fitted
    parametrisation, also ``params.radial``) and, for MFRA, ``rank_history`` ((k, r), ...)."""

    spec: RadialSpec | None = None
    radial: Any = None
    rank_history: tuple = ()


# ------------------------------------------------------------------------------------------
# the (xi, X) adapter of R-MF
# ------------------------------------------------------------------------------------------


def join_xi(params) -> np.ndarray:
    """``xi = [species (N_T,) | moment (S,)]``: the linear parameters of section II.D.2.b
    (``params.linear``)."""
    return np.asarray(params.linear, np.float64)


def rmf_objective(obj: Objective, template):
    """``(value_and_grad(xi, X), value(xi, X))`` over the Riemannian variables of R-MF.

    ``X`` is the dense unfolding ``Chat = to_matrix(C)`` (N_T^2, N_f N_b), ``xi`` as in
    :func:`join_xi`; the gradients are Euclidean, ``(dL/dxi, dL/dX)`` (the R-BFGS of Algorithm 2
    projects ``dL/dX`` onto the tangent space of the fixed-rank manifold itself). ``obj`` may be
    a :class:`~mlipress.training.projection.ProjectedObjective` (``dL/dxi = 0``). ``template``:
    params supplying everything else (the MTP's scaling).
    """
    shape = obj.model.radial_shape
    template = template.replace(scaling=jnp.asarray(template.scaling))

    def params_of(xi, X):
        radial = Dense(from_matrix(jnp.asarray(X, dtype=jnp.float64), shape))
        return template.replace(radial=radial).with_linear(jnp.asarray(xi, dtype=jnp.float64))

    def value_and_grad(xi, X):
        f, g = obj.value_and_grad(params_of(xi, X))
        return f, (np.asarray(g.linear), np.asarray(to_matrix(jnp.asarray(g.radial.C))))

    def value(xi, X):
        return obj.value(params_of(xi, X))

    return value_and_grad, value


# ------------------------------------------------------------------------------------------
# starting points
# ------------------------------------------------------------------------------------------


def _random_param(spec: RadialSpec, shape, seed: int):
    if spec.kind == "dense":
        return None
    if spec.kind in ("mf", "rmf"):
        return MatrixFactorized.random(seed, shape, spec.rank)
    if spec.kind == "mfra":
        return MatrixFactorized.random(seed, shape, min(MFRA_R_MIN, spec.rank))
    if spec.kind == "tt":
        return TensorTrain.random(seed, shape, spec.rank)
    raise ValueError(f"unknown radial kind {spec.kind!r}")


def _truncate(spec: RadialSpec, C):
    """Compression of a fitted dense ``C``: truncated SVD (MF, R-MF; MFRA at ``r_min``) or TT-SVD."""
    if spec.kind in ("mf", "rmf"):
        return MatrixFactorized.from_dense(C, spec.rank)
    if spec.kind == "mfra":
        return MatrixFactorized.from_dense(C, min(MFRA_R_MIN, spec.rank))
    if spec.kind == "tt":
        return TensorTrain.from_dense(C, spec.rank)
    return Dense.from_dense(C)


def initial_compressed_params(mtp: MTP, data, spec: RadialSpec | str, settings: TrainSettings,
                              resolve: bool = True):
    """The starting :class:`~mlipress.model.MTPParams` of :func:`fit_compressed` (``radial`` is the
    chosen parametrisation).

    Trained ``mtp``: truncation of its ``C`` (:func:`_truncate`), then, with ``resolve``, an
    exact linear solve of species + moment kept only if it lowers ``f``. Untrained: random
    factors (seed ``settings.seed``) and the scaling search with exact linear solves.
    ``data``: prepared :class:`mlipress.loss.TrainingData`.
    """
    spec = parse_radial_spec(spec) if isinstance(spec, str) else spec
    obj = Objective(mtp, data)
    if mtp.trained:
        base = mtp.params()
        params = base.replace(radial=_truncate(spec, np.asarray(base.radial.dense())))
        if resolve:
            p, loss = linear_solve(mtp, params, data)
            if loss + obj.penalty(p) <= obj.value(params):
                params = p
        return params
    params = mtp.init(settings.seed).replace(radial=_random_param(spec, mtp.radial_shape, settings.seed))
    params, _, _ = scaling_search(mtp, params, data, settings.scaling_grid, settings.scaling_refine)
    return params


# ------------------------------------------------------------------------------------------
# MF / TF through the trainer
# ------------------------------------------------------------------------------------------


def _with_linear_solves(inner, radial0, obj: Objective, data, every: int):
    """Optimiser factory result wrapping BFGS for factored radial parts inside :func:`train`.

    ``init(params)``: a dense ``params.radial`` (what the trainer passes) is replaced by the
    prepared parametrisation ``radial0``. ``step``: one BFGS step, then every ``every``
    iterations an exact linear solve of species + moment with the factors unchanged, accepted
    (with a BFGS reset) only when ``f`` does not increase. The state is the plain
    :class:`~mlipress.optim.BFGSState`, so the trainer's logging/checkpoints work unchanged.
    """
    from mlipress.optim import Optimizer

    mtp = obj.model

    def init(params):
        if isinstance(params.radial, Dense) and not isinstance(radial0, Dense):
            params = params.replace(radial=radial0)
        return inner.init(params)

    def step(state):
        state = inner.step(state)
        if every and state.iteration % every == 0:
            p, loss = linear_solve(mtp, state.params, data)
            f = loss + obj.penalty(p)
            if f <= state.value:
                state = inner.reset(state, p)
        return state

    return Optimizer(init, step, inner.reset)


def _fit_via_trainer(mtp, train_data, spec, settings, valid_data, out) -> CompressedResult:
    s = settings
    data = prepare(as_dataset(train_data), mtp, s.weights, max_atoms=s.max_atoms)
    obj = Objective(mtp, data)
    params0 = initial_compressed_params(mtp, data, spec, s)
    radial0 = params0.radial
    # the trainer starts from a trained potential's dense C; hand it the dense form of params0,
    # the wrapper swaps in the factors (identical C) at init
    start = mtp.with_params(params0)
    every = s.linear_solve_every

    h0 = preconditioner(obj, s)

    def factory(value_and_grad, value):
        return _with_linear_solves(bfgs(value_and_grad, value, precondition=h0), radial0, obj, data, every)

    res = train(start, train_data, replace(s, linear_solve_every=0), valid_data=valid_data,
                optimizer_factory=factory, out=out)
    params = res.params
    if every:
        p, loss = linear_solve(mtp, params, data)
        if loss + obj.penalty(p) <= obj.value(params):
            params = p
    return CompressedResult(mtp.with_params(params), params, res.history, res.state, res.stop_reason,
                            spec=spec, radial=params.radial)


# ------------------------------------------------------------------------------------------
# R-MF and MFRA: own loop (their states are not parameter dicts)
# ------------------------------------------------------------------------------------------


def _loop(opt, x0, to_params, mtp, data, valid, s: TrainSettings, out, on_step=None):
    """Shared loop of R-MF / MFRA: ``max_iter`` steps, stop on ``gtol``, ``ftol`` over
    ``ftol_window``, or a failed line search (MFRA only once ``can_stop``); history records
    like the trainer's."""
    t0 = time.perf_counter()
    state = opt.init(x0)
    history, recent, stop_reason = [], [state.value], f"max_iter ({s.max_iter})"

    def record(kind, it):
        p = to_params(state)
        err = rmse(mtp, p, data)
        rec = {"event": kind, "iteration": it, "f": state.value, "grad_norm": float(state.grad_norm),
               "energy_rmse_meV_per_atom": 1e3 * err["energy_rmse"], "force_rmse_eV_per_A": err["force_rmse"],
               "elapsed": time.perf_counter() - t0}
        if valid is not None:
            v = rmse(mtp, p, valid)
            rec["valid_energy_rmse_meV_per_atom"] = 1e3 * v["energy_rmse"]
            rec["valid_force_rmse_eV_per_A"] = v["force_rmse"]
        if on_step is not None:
            rec.update(on_step(state))
        history.append(rec)
        if s.log_every and out is not None:
            print(f"iter {it:6d} f {rec['f']:.6e}  E {rec['energy_rmse_meV_per_atom']:9.3f} meV/atom  "
                  f"F {rec['force_rmse_eV_per_A']:.4f} eV/A  |g| {rec['grad_norm']:.2e}", file=out, flush=True)

    it = 0
    for it in range(1, s.max_iter + 1):
        state = opt.step(state)
        recent.append(state.value)
        can_stop = getattr(state, "can_stop", True)
        stop = False
        if can_stop:
            if state.grad_norm <= s.gtol:
                stop, stop_reason = True, f"gradient norm {state.grad_norm:.3g} <= gtol"
            elif state.status in ("line_search_failed", "stationary"):
                stop, stop_reason = True, f"optimiser status {state.status}"
            elif s.ftol > 0 and s.ftol_window and len(recent) > s.ftol_window:
                old = recent[-1 - s.ftol_window]
                if old - state.value <= s.ftol * max(abs(old), abs(state.value), 1e-300):
                    stop, stop_reason = True, f"relative decrease < ftol over {s.ftol_window} iterations"
        if s.log_every and (it % s.log_every == 0 or stop or it == s.max_iter):
            record("progress", it)
        elif on_step is not None:
            history.append({"event": "step", "iteration": it, "f": state.value, **on_step(state)})
        if stop:
            break
    record("final", it)
    history[-1]["stop_reason"] = stop_reason
    return state, history, stop_reason


def _fit_rmf(mtp, train_data, spec, s, valid_data, out) -> CompressedResult:
    data = prepare(as_dataset(train_data), mtp, s.weights, max_atoms=s.max_atoms)
    valid = _prepare_valid(valid_data, mtp, s)
    obj, finish = optimisation_target(Objective(mtp, data), s.variable_projection)
    p0 = initial_compressed_params(mtp, data, spec, s)
    vg, v = rmf_objective(obj, p0)
    opt = rbfgs(vg, spec.rank, v)
    x0 = (join_xi(p0), _mf_to_point(p0.radial))

    def to_params(state):
        xi, point = state.params
        return finish(p0.replace(radial=_point_to_mf(point, mtp.radial_shape)).with_linear(jnp.asarray(xi)))

    state, history, reason = _loop(opt, x0, to_params, mtp, data, valid, s, out)
    params = to_params(state)
    return CompressedResult(mtp.with_params(params), params, history, state, reason, spec=spec, radial=params.radial)


def _mf_to_point(param: MatrixFactorized):
    """``U V^T`` as a :class:`fixed_rank.FixedRankPoint` (thin SVD of the rank-r product)."""
    X = np.asarray(param.U) @ np.asarray(param.V).T
    return fr.from_matrix(X, param.rank)


def _point_to_mf(point, shape) -> MatrixFactorized:
    """A fixed-rank point ``U diag(s) V^T`` as balanced MF factors ``U sqrt(s)``, ``V sqrt(s)``
    (exactly the same ``Chat``)."""
    s = np.asarray(point.s, dtype=np.float64)
    root = np.sqrt(np.abs(s))
    U = np.asarray(point.U) * (np.sign(s) * root)
    V = np.asarray(point.V) * root
    return MatrixFactorized.checked(U, V, shape)


def _prepare_valid(valid_data, mtp, s):
    if valid_data is None or not len(as_dataset(valid_data)):
        return None
    return prepare(as_dataset(valid_data), mtp, s.weights, max_atoms=s.max_atoms)


def _fit_mfra(mtp, train_data, spec, s, valid_data, out, interval="auto") -> CompressedResult:
    data = prepare(as_dataset(train_data), mtp, s.weights, max_atoms=s.max_atoms)
    valid = _prepare_valid(valid_data, mtp, s)
    obj, finish = optimisation_target(Objective(mtp, data), s.variable_projection)
    p0 = initial_compressed_params(mtp, data, spec, s)
    shape = mtp.radial_shape
    vg, v = rmf_objective(obj, p0)
    r_min = min(MFRA_R_MIN, spec.rank)
    opt = mfra(vg, r_max=spec.rank, r_min=r_min, delta_r=MFRA_DELTA_R, interval=interval,
               max_iter=max(s.max_iter, 1), value_dense=v)
    x0 = {"xi": join_xi(p0), "U": p0.radial.U, "V": p0.radial.V}

    def to_params(state):
        p = state.params
        return finish(p0.replace(radial=MatrixFactorized.checked(p["U"], p["V"], shape)).with_linear(jnp.asarray(p["xi"])))

    state, history, reason = _loop(opt, x0, to_params, mtp, data, valid, s, out,
                                   on_step=lambda st: {"rank": int(st.rank)})
    params = to_params(state)
    return CompressedResult(mtp.with_params(params), params, history, state, reason, spec=spec,
                            radial=params.radial, rank_history=tuple(state.rank_history))


# ------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------


def fit_compressed(mtp: MTP, train_data, spec: RadialSpec | str, settings: TrainSettings = TrainSettings(),
                   valid_data=None, out=None, mfra_interval="auto") -> CompressedResult:
    """Fit ``mtp`` with the radial tensor parametrised by ``spec`` (see the module docstring).

    ``mtp``: trained (compression of a fitted potential: truncated SVD / TT-SVD, then refit) or
    untrained (random factors + scaling search). ``settings``: :class:`TrainSettings`
    (``max_iter``, ``seed``, ``linear_solve_every``, tolerances, weights, logging).
    ``mfra_interval``: Algorithm 1's s ("auto" = 4% of ``max_iter``, paper default).
    Returns a :class:`CompressedResult` whose ``params.radial`` is the fitted parametrisation.
    """
    spec = parse_radial_spec(spec) if isinstance(spec, str) else spec
    out = sys.stdout if out is None else out
    if spec.kind == "dense":
        res = train(mtp, train_data, settings, valid_data=valid_data, out=out)
        return CompressedResult(res.mtp, res.params, res.history, res.state, res.stop_reason, spec=spec,
                                radial=res.params.radial)
    if spec.kind in ("mf", "tt"):
        return _fit_via_trainer(mtp, train_data, spec, settings, valid_data, out)
    if spec.kind == "rmf":
        return _fit_rmf(mtp, train_data, spec, settings, valid_data, out)
    if spec.kind == "mfra":
        return _fit_mfra(mtp, train_data, spec, settings, valid_data, out, mfra_interval)
    raise ValueError(f"unknown radial kind {spec.kind!r}")
