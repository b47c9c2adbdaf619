"""Optimisers for fitting (compressed) MTPs.

Every optimiser is an :class:`Optimizer` ``(init, step, reset)`` over a parameter pytree with an
immutable NamedTuple state (``params, value, prev_value, grad_norm, n_evals, iteration, status``):

- :func:`bfgs` -- Euclidean BFGS with a dense inverse Hessian and a strong-Wolfe (or Armijo)
  line search (MF / TF / base MTP training, REFERENCE.md section 3).
- :func:`rbfgs` -- Riemannian BFGS on R^{n_xi} x M_r (Algorithm 2 of the supplementary material,
  R-MF), built on :mod:`mlipress.optim.fixed_rank` (Propositions IV.1 / IV.2).
- :func:`mfra` -- BFGS on (xi, U, V) with rank augmentation (Algorithm 1, MFRA).
- :func:`ttra` -- any optimiser over tensor-train cores with TT-rank augmentation (TTRA);
  both run the loop of :mod:`.augment` (:func:`augment.rank_adaptive`).

:mod:`.loop`: :func:`iterate`, the one loop, and :func:`stop_reason`, the one set of stopping
rules (:class:`StopRules`), under which the fitting workflow and :func:`minimize` run.
"""

from mlipress.optim import fixed_rank, linesearch
from mlipress.optim.bfgs import BFGSState, Optimizer, bfgs, bfgs_update
from mlipress.optim.loop import StopRules, converged, iterate, minimize, stop_reason
from mlipress.optim.fixed_rank import FixedRankPoint
from mlipress.optim.mfra import Augmentation, MFRAState, mfra, random_factors
from mlipress.optim.rbfgs import RBFGSState, rbfgs
from mlipress.optim.augment import Growth, RankAdaptState
from mlipress.optim.ttra import ttra

__all__ = [
    "Optimizer",
    "BFGSState",
    "RBFGSState",
    "MFRAState",
    "Augmentation",
    "FixedRankPoint",
    "bfgs",
    "bfgs_update",
    "rbfgs",
    "mfra",
    "ttra",
    "Growth",
    "RankAdaptState",
    "random_factors",
    "converged",
    "minimize",
    "iterate",
    "stop_reason",
    "StopRules",
    "fixed_rank",
    "linesearch",
]
