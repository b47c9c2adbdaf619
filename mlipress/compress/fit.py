"""Fitting compressed MTPs: MF, R-MF, TF, MFRA and TTRA (sections II.C-D of the paper, Algorithm 1).

:func:`fit_compressed` fits the coefficients ``{radial, species, moment}`` of an MTP whose
radial tensor ``C`` (eq. (5)) is parametrised according to a spec (:func:`mlipress.models.layers.
parse_radial_spec`):

- ``dense``: the base MTP, :func:`mlipress.fit.train` unchanged.
- ``mf:R`` (``C = reshape(U V^T)``, section II.C), ``tt:R1,R2,R3`` (tensor train, section
  II.C) and any other registered layer kind (:data:`mlipress.models.layers.LAYERS`): Euclidean BFGS
  (section II.D.2.a) over species, moment and the factors, with ``params.radial`` the spec's
  layer, e.g. :class:`~mlipress.models.layers.MatrixFactorized` /
  :class:`~mlipress.models.layers.TensorTrain` (the evaluator works in factored form). Every
  ``settings.linear_solve_every`` BFGS iterations the species/moment coefficients are solved
  exactly with the factors unchanged (no orthonormalisation: it would destroy the
  factorisation), accepted only if ``f`` does not increase, and BFGS is reset. A final plain
  linear solve follows (as MLIP ends on one). With ``settings.variable_projection``
  (the default) BFGS moves the factors only and the linear coefficients are exact at every
  evaluation (:mod:`mlipress.fit.projection`).
- ``rmf:R``: Riemannian BFGS on ``R^{n_xi} x M_r`` (section II.D.2.b, Algorithm 2 of the
  supplementary), through :func:`rmf_objective`, the adapter ``params <-> (xi, X)`` with
  ``xi = [species | moment]`` and ``X = to_matrix(C)`` (the (N_T^2, N_f N_b) unfolding).
- ``mfra:RMAX``: MF with rank augmentation (Algorithm 1, section II.D.3), paper defaults
  ``r_min = 2``, ``delta_r = 2``, interval ``"auto"`` (4% of ``max_iter``).
- ``ttra:R1,R2,R3``: TF with TT-rank augmentation (:mod:`mlipress.optim.ttra`): the TF fit
  above (same BFGS, preconditioner and exact solves) started at ranks ``min(2, R_k)``, each TT
  boundary enlarged by up to 2 every s iterations (MFRA's defaults) up to ``R_k``.
- ``mfra:auto``, ``ttra:auto``: the same, growing towards the largest ranks the shape allows
  while the validation loss decreases between augmentation points (or, without validation
  data, while the training loss decreases by more than :data:`AUTO_TRAIN_TOL`);
  ``growth_tol`` sets the tolerance, also for explicit maxima (:class:`mlipress.optim.augment.Growth`).

With ``settings.variable_projection`` (the default) every method optimises the radial part
only, the species and moment coefficients being solved exactly at every evaluation
(:mod:`mlipress.fit.projection`); for R-MF and MFRA the Riemannian variable is then
``X`` alone (``xi`` gets a zero gradient and is completed exactly). ``False`` gives the paper's
formulation on ``(xi, X)``.

Starting points (section II.D), from the spec's layer class (``model.radial_layer(spec)``)
at :meth:`~mlipress.models.layers.RadialSpec.initial_rank`: a *trained* dense MTP is compressed by the
layer's ``from_dense`` (truncated SVD of the unfolding for MF, R-MF, MFRA at rank ``r_min``;
TT-SVD for TF), the linear coefficients re-solved exactly, then refitted; an *untrained* MTP
gets the layer's ``random`` factors (seed ``settings.seed``) and the trainer's initialisation
(scaling search with an exact linear solve at every trial, :func:`mlipress.fit.scaling_search`).

Every method is a :class:`~mlipress.fit.trainer.FitProblem` of the one fitting loop
(:func:`mlipress.fit.trainer.fit`): the same stopping rules, progress lines, JSON-lines
log, checkpoints and bit-identical resume as the dense fit.

All results are :class:`CompressedResult`, a :class:`~mlipress.fit.TrainResult` extended
with the spec and the (factored) radial parametrisation; ``result.mtp`` holds the dense
``C = param.dense()`` so it can be written as a standard ``.mtp``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

import jax.numpy as jnp
import numpy as np

from mlipress.loss import Objective
from mlipress.models.mtp.model import MTP
from mlipress.optim import bfgs, mfra, rbfgs, ttra
from mlipress.optim.augment import Growth
from mlipress.models.layers import Dense, RadialSpec, clip_tt_ranks, parse_radial_spec
from mlipress.fit import TrainResult, TrainSettings, scaling_search, train
from mlipress.fit.projection import optimisation_target
from mlipress.fit.trainer import FitProblem, exact_solve, fit, prepare_sets, preconditioner

__all__ = [
    "CompressedResult",
    "fit_compressed",
    "initial_compressed_params",
    "rmf_objective",
    "join_xi",
    "MFRA_R_MIN",
    "MFRA_DELTA_R",
    "AUTO_VALID_TOL",
    "AUTO_TRAIN_TOL",
]

#: Paper defaults of Algorithm 1 (supplementary recommendations): initial rank and increment.
MFRA_R_MIN = 2
MFRA_DELTA_R = 2
#: ``mfra:auto`` / ``ttra:auto``: grow while the validation loss decreases at all between two
#: augmentation points, or, without a validation set, while the training loss decreases by more
#: than 1% (relative) between them (:class:`mlipress.optim.augment.Growth`).
AUTO_VALID_TOL = 0.0
AUTO_TRAIN_TOL = 1e-2


@dataclass(frozen=True, eq=False)
class CompressedResult(TrainResult):
    """:class:`TrainResult` plus ``spec`` (the parsed :class:`RadialSpec`), ``radial`` (the fitted
    parametrisation, also ``params.radial``) and, for MFRA / TTRA, ``rank_history`` ((k, r), ...)."""

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


def rmf_objective(obj: Objective, template, layer=None):
    """``(value_and_grad(xi, X), value(xi, X))`` over the Riemannian variables of R-MF.

    ``X`` is the R-MF layer's matrix of the radial tensor (``layer.matrices``: the dense unfolding
    ``Chat = to_matrix(C)`` (N_T^2, N_f N_b) of an MTP, the stacked pair matrices (P, N_k,
    N_rad (L+1)) of an ACE), ``xi`` as in :func:`join_xi`; the gradients are Euclidean,
    ``(dL/dxi, dL/dX)`` (the R-BFGS of Algorithm 2 projects ``dL/dX`` onto the tangent space of
    the fixed-rank manifold itself). ``obj`` may be a
    :class:`~mlipress.fit.projection.ProjectedObjective` (``dL/dxi = 0``). ``template``: params
    supplying everything else (the scaling). ``layer``: the model's MF layer class (default
    ``obj.model.radial_layer("rmf:1")``).
    """
    model = obj.model
    shape = model.radial_shape
    layer = model.radial_layer(parse_radial_spec("rmf:1")) if layer is None else layer
    dense = model.radial_layer(parse_radial_spec("dense"))
    template = template.replace(scaling=jnp.asarray(template.scaling, dtype=jnp.float64))

    def params_of(xi, X):
        radial = dense.from_dense(layer.dense_of_matrices(X, shape))
        return template.replace(radial=radial).with_linear(jnp.asarray(xi, dtype=jnp.float64))

    def value_and_grad(xi, X):
        f, g = obj.value_and_grad(params_of(xi, X))
        return f, (np.asarray(g.linear), layer.matrices(g.radial.dense()))

    def value(xi, X):
        return obj.value(params_of(xi, X))

    return value_and_grad, value


# ------------------------------------------------------------------------------------------
# starting points
# ------------------------------------------------------------------------------------------


def initial_compressed_params(mtp: MTP, data, spec: RadialSpec | str, settings: TrainSettings,
                              resolve: bool = True):
    """The starting :class:`~mlipress.models.mtp.model.MTPParams` of :func:`fit_compressed` (``radial`` is the
    spec's layer, ``mtp.radial_layer(spec)``, at ``spec.initial_rank(MFRA_R_MIN)``).

    Trained ``mtp``: the layer's truncation of its ``C`` (``from_dense``: truncated SVD for MF,
    R-MF and MFRA at ``r_min``, TT-SVD for TF), then, with ``resolve``, an exact linear solve of
    species + moment kept only if it lowers ``f``. Untrained: the layer's ``random`` factors
    (seed ``settings.seed``; a dense layer keeps the trainer's start, :meth:`MTP.init`) and the
    scaling search with exact linear solves. ``data``: prepared :class:`mlipress.loss.TrainingData`.
    """
    spec = parse_radial_spec(spec) if isinstance(spec, str) else spec
    layer, rank = mtp.radial_layer(spec), spec.initial_rank(MFRA_R_MIN)
    obj = Objective(mtp, data)
    if mtp.trained:
        base = mtp.params()
        params = base.replace(radial=layer.from_dense(np.asarray(base.radial.dense()), rank))
        if resolve:
            params, _, _ = exact_solve(obj, params, obj.value_and_grad(params)[0])  # the fit compiles this, not value
        return params
    params = mtp.init(settings.seed)
    if not isinstance(params.radial, layer):
        params = params.replace(radial=layer.random(settings.seed, mtp.radial_shape, rank))
    params, _, _ = scaling_search(mtp, params, data, settings.scaling_grid, settings.scaling_refine)
    return params


# ------------------------------------------------------------------------------------------
# the four compressed fits, each a FitProblem of the one fitting loop
# ------------------------------------------------------------------------------------------


def _fit(problem: FitProblem, data, valid, spec, s, out, callback, polish=None) -> CompressedResult:
    """Run ``problem``; ``polish(params, f) -> params`` on the result (MF/TF's final solve)."""
    state, history, reason = fit(problem, data, s, valid, callback=callback, out=out)
    params = problem.to_params(state.params)
    if polish is not None:
        params = polish(params, state.value)
    return CompressedResult(problem.model.with_params(params), params, history, state, reason, spec=spec,
                            radial=params.radial)


def _start(x0, spec, mtp):
    return lambda: (x0, [], f"{'compressing a trained' if mtp.trained else 'untrained'} potential: {spec}")


def _factored_optimiser(obj: Objective, target, s):
    """BFGS over the model parameters (species, moment and the layer's factors), started from
    the inverse Gauss-Newton diagonal, and the ``between`` step of MF/TF under MLIP's scheme:
    every ``linear_solve_every`` iterations an exact solve of species + moment with the factors
    unchanged, kept only if ``f`` does not increase (the optimiser is reset then), and a last
    solve at the end (``polish``). Under variable projection the linear part is exact at every
    evaluation, so there is nothing to solve between steps or at the end."""
    opt = bfgs(target.value_and_grad, target.value, precondition=preconditioner(obj, s))
    every = 0 if s.variable_projection else s.linear_solve_every

    def between(reset):
        def run(state, it):
            if every and it % every == 0:
                p, _, kind = exact_solve(obj, state.params, state.value)
                if kind != "kept":
                    return reset(state, p), {"event": "linear_solve", "kind": kind, "f": state.value}, False
            return state, None, False
        return run

    def polish(params, f):  # MLIP ends on an exact solve
        return exact_solve(obj, params, f)[0]

    return opt, between, polish if every else None


def _fit_factored(mtp, data, valid, spec, s, out, callback, **_) -> CompressedResult:
    """MF, TF (any layer without an optimiser of its own): :func:`_factored_optimiser` over the
    spec's layer at its rank, and one exact solve at the end."""
    obj = Objective(mtp, data)
    target, current = optimisation_target(obj, s.variable_projection)
    opt, between, polish = _factored_optimiser(obj, target, s)
    p0 = initial_compressed_params(mtp, data, spec, s)
    problem = FitProblem(mtp, opt, _start(p0, spec, mtp), lambda: p0, to_params=current, between=between(opt.reset))
    return _fit(problem, data, valid, spec, s, out, callback, polish)


def _fit_rmf(mtp, data, valid, spec, s, out, callback, **_) -> CompressedResult:
    """R-MF: Riemannian BFGS on ``R^{n_xi} x`` the layer's manifold (one fixed-rank matrix for an
    MTP, the product of one per pair for an ACE: ``layer.manifold()``)."""
    obj, finish = optimisation_target(Objective(mtp, data), s.variable_projection)
    layer = mtp.radial_layer(spec)
    p0 = initial_compressed_params(mtp, data, spec, s)
    vg, v = rmf_objective(obj, p0, layer)
    manifold = layer.manifold()
    opt = rbfgs(vg, spec.rank, v, manifold=manifold)
    x0 = (join_xi(p0), manifold.from_matrix(layer.matrices(p0.radial.dense()), p0.radial.rank))

    def to_params(variables):
        xi, point = variables
        return finish(p0.replace(radial=layer.from_point(point, mtp.radial_shape)).with_linear(jnp.asarray(xi)))

    problem = FitProblem(mtp, opt, _start(x0, spec, mtp), lambda: x0, to_params=to_params)
    return _fit(problem, data, valid, spec, s, out, callback)


def _growth(spec, valid, mtp, to_params, growth_tol) -> Growth | None:
    """The :class:`~mlipress.optim.augment.Growth` rule of a rank-adaptive fit: for a spec rank
    ``auto``, or when ``growth_tol`` is given. The monitored loss is the validation loss when a
    validation set is given (default tolerance :data:`AUTO_VALID_TOL`), the training loss
    otherwise (:data:`AUTO_TRAIN_TOL`)."""
    if spec.rank != "auto" and growth_tol is None:
        return None
    if valid is None:
        return Growth(AUTO_TRAIN_TOL if growth_tol is None else float(growth_tol))
    valid_obj = Objective(mtp, valid)
    return Growth(AUTO_VALID_TOL if growth_tol is None else float(growth_tol),
                  lambda x: valid_obj.value(to_params(x)))


def _max_rank(spec, shape, layer=None):
    """The spec's maximal rank, the largest the layer allows for ``auto`` (clipped TT ranks).
    ``layer``: the model's layer class (``mtp.radial_layer(spec)``; default the spec's)."""
    layer = spec.layer if layer is None else layer
    if spec.rank == "auto":
        return layer.rank_candidates(shape)[-1]
    if isinstance(spec.rank, tuple):
        return clip_tt_ranks(layer.modes_for(shape), layer.expand_ranks(spec.rank))
    return spec.rank


def _rank_history(res: CompressedResult) -> CompressedResult:
    as_rank = lambda r: tuple(int(x) for x in r) if isinstance(r, tuple) else int(r)  # noqa: E731
    return replace(res, rank_history=tuple((int(k), as_rank(r)) for k, r in res.state.rank_history))


def _per_step(state) -> dict:
    return {"rank": list(state.rank) if isinstance(state.rank, tuple) else int(state.rank)}


def _fit_mfra(mtp, data, valid, spec, s, out, callback, mfra_interval="auto", growth_tol=None) -> CompressedResult:
    obj, finish = optimisation_target(Objective(mtp, data), s.variable_projection)
    p0 = initial_compressed_params(mtp, data, spec, s)
    shape = mtp.radial_shape
    vg, v = rmf_objective(obj, p0)

    layer = mtp.radial_layer(spec)

    def to_params(p):
        return finish(p0.replace(radial=layer.from_factors(p["U"], p["V"], shape)).with_linear(jnp.asarray(p["xi"])))

    opt = mfra(vg, r_max=_max_rank(spec, shape, layer), r_min=spec.initial_rank(MFRA_R_MIN), delta_r=MFRA_DELTA_R,
               interval=mfra_interval, max_iter=max(s.max_iter, 1), value_dense=v,
               growth=_growth(spec, valid, mtp, to_params, growth_tol))
    x0 = {"xi": join_xi(p0), "U": p0.radial.U, "V": p0.radial.V}
    problem = FitProblem(mtp, opt, _start(x0, spec, mtp), lambda: x0, to_params=to_params, per_step=_per_step)
    return _rank_history(_fit(problem, data, valid, spec, s, out, callback))


def _fit_ttra(mtp, data, valid, spec, s, out, callback, mfra_interval="auto", growth_tol=None) -> CompressedResult:
    """TTRA (:mod:`mlipress.optim.ttra`): the TF fit of :func:`_fit_factored` (same BFGS,
    preconditioner and exact solves) started at TT ranks ``min(2, R_k)``, with TT-rank
    augmentation by ``MFRA_DELTA_R`` per boundary every s iterations up to the spec's ranks."""
    obj = Objective(mtp, data)
    target, current = optimisation_target(obj, s.variable_projection)
    inner, between, polish = _factored_optimiser(obj, target, s)
    p0 = initial_compressed_params(mtp, data, spec, s)
    layer, shape = type(p0.radial), mtp.radial_shape  # the model's TT class: its modes may split C's axes
    modes = layer.modes_for(shape)

    def with_dense(params, C):  # C over the TT's modes
        return params.replace(radial=Dense(jnp.asarray(C, dtype=jnp.float64).reshape(shape)))

    def value_and_grad_dense(params, C):
        f, g = target.value_and_grad(with_dense(params, C))
        return f, np.asarray(g.radial.C).reshape(modes)

    def with_cores(params, cores):
        return params.replace(radial=layer(tuple(jnp.asarray(g) for g in cores)))

    opt = ttra(inner, value_and_grad_dense, r_max=_max_rank(spec, shape, layer), delta_r=MFRA_DELTA_R,
               interval=mfra_interval, max_iter=max(s.max_iter, 1),
               value_dense=lambda params, C: target.value(with_dense(params, C)),
               cores_of=lambda params: params.radial.cores, with_cores=with_cores,
               growth=_growth(spec, valid, mtp, current, growth_tol))
    problem = FitProblem(mtp, opt, _start(p0, spec, mtp), lambda: p0, to_params=current,
                         between=between(opt.reset), per_step=_per_step)
    return _rank_history(_fit(problem, data, valid, spec, s, out, callback, polish))


# ------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------

#: Spec kinds fitted by an optimiser of their own. Every other spec kind but ``dense`` (the
#: dense trainer) is a layer fitted by Euclidean BFGS over its factors (:func:`_fit_factored`).
_OPTIMISERS = {"rmf": _fit_rmf, "mfra": _fit_mfra, "ttra": _fit_ttra}



def fit_compressed(mtp: MTP, train_data, spec: RadialSpec | str, settings: TrainSettings = TrainSettings(),
                   valid_data=None, out=None, mfra_interval="auto", callback=None,
                   growth_tol: float | None = None) -> CompressedResult:
    """Fit ``mtp`` with the radial tensor parametrised by ``spec`` (see the module docstring).

    ``mtp``: trained (compression of a fitted potential: truncated SVD / TT-SVD, then refit) or
    untrained (random factors + scaling search). ``settings``: :class:`TrainSettings`
    (``max_iter``, ``seed``, ``linear_solve_every``, tolerances, weights, logging).
    ``mfra_interval``: Algorithm 1's s for MFRA and TTRA ("auto" = 4% of ``max_iter``, paper
    default). ``growth_tol``: for MFRA/TTRA, stop growing the rank once the monitored loss (the
    validation loss if ``valid_data`` is given, else the training loss) decreased by at most
    this fraction since the previous augmentation (default: only for a spec rank ``auto``, with
    :data:`AUTO_VALID_TOL` / :data:`AUTO_TRAIN_TOL`).
    ``callback(record)`` at every log point, True stops (as in :func:`mlipress.fit.train`).
    Returns a :class:`CompressedResult` whose ``params.radial`` is the fitted parametrisation.
    """
    spec = parse_radial_spec(spec) if isinstance(spec, str) else spec
    out = sys.stdout if out is None else out
    mtp.radial_layer(spec)  # rejects a kind the model has no layer for
    if spec.kind == Dense.kind:
        res = train(mtp, train_data, settings, valid_data=valid_data, callback=callback, out=out)
        return CompressedResult(res.mtp, res.params, res.history, res.state, res.stop_reason, spec=spec,
                                radial=res.params.radial)
    data, valid = prepare_sets(mtp, train_data, valid_data, settings)
    fitter = _OPTIMISERS.get(spec.kind, _fit_factored)
    return fitter(mtp, data, valid, spec, settings, out, callback, mfra_interval=mfra_interval, growth_tol=growth_tol)
