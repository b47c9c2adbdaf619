"""Fitting any model of the contract (:mod:`mlipress.models.base`): the ``mlp train``
procedure of MLIP-2 and its variable-projection form (REFERENCE.md section 3).

- :func:`fit` / :class:`FitProblem` (:mod:`.trainer`): the one fitting loop (stopping rules of
  :mod:`mlipress.optim.loop`, progress lines, JSON-lines logs, checkpoints and bit-identical
  resume) that dense and compressed fits, with any optimiser, run through.
- :func:`train` / :class:`TrainSettings` / :class:`TrainResult` (:mod:`.trainer`): the dense
  fit (BFGS; exact linear coefficients at every evaluation, or MLIP's periodic solves and
  pre-training).
- :func:`train_ensemble` (:mod:`.ensemble`): K seeds, mean +- sigma of validation errors.
- :func:`linear_solve` (:mod:`.linear`): the exact weighted least-squares solve of the linear
  coefficients; :mod:`.projection` (variable projection), :mod:`.precondition` (Gauss-Newton
  diagonal), :mod:`.checkpoint` (files of optimiser states), :mod:`.init` (MLIP's scaling
  search).
"""

from mlipress.fit.init import initial_params, scaling_search
from mlipress.fit.linear import linear_solve
from mlipress.fit.trainer import FitProblem, TrainResult, TrainSettings, fit, rmse, train

try:  # the ensemble module builds on train()
    from mlipress.fit.ensemble import EnsembleResult, train_ensemble
except ImportError:  # pragma: no cover
    pass

__all__ = [
    "train",
    "TrainSettings",
    "TrainResult",
    "train_ensemble",
    "EnsembleResult",
    "linear_solve",
    "fit",
    "FitProblem",
    "initial_params",
    "scaling_search",
    "rmse",
]
