"""Training of MTPs: the ``mlp train`` procedure of MLIP-2 in JAX (REFERENCE.md section 3).

- :func:`train` / :class:`TrainSettings` / :class:`TrainResult` (:mod:`.trainer`): BFGS with
  periodic orthonormalisation + exact linear solve, scaling search and pre-training for
  untrained potentials, progress lines, JSON-lines logs, atomic checkpoints and resume.
- :func:`train_ensemble` (:mod:`.ensemble`): K seeds, mean +- sigma of validation errors.
- :func:`linear_solve`, :func:`orthonormalise_radial` (:mod:`.linear`): the exact weighted
  least-squares solve of the species and moment coefficients.
- :func:`initial_params`, :func:`scaling_search` (:mod:`.init`).
"""

from mlipress.training.init import initial_params, scaling_search
from mlipress.training.linear import linear_solve, orthonormalise_radial
from mlipress.training.trainer import TrainResult, TrainSettings, rmse, to_mtp, train

try:  # the ensemble module builds on train()
    from mlipress.training.ensemble import EnsembleResult, train_ensemble
except ImportError:  # pragma: no cover
    pass

__all__ = [
    "train",
    "TrainSettings",
    "TrainResult",
    "train_ensemble",
    "EnsembleResult",
    "linear_solve",
    "orthonormalise_radial",
    "initial_params",
    "scaling_search",
    "rmse",
    "to_mtp",
]
