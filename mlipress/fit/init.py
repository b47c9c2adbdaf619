"""Initialisation of an untrained MTP: random orthonormal radial functions and a scaling search.

REFERENCE.md section 3: MLIP-2 starts an untrained potential with a linear solve, a search over
``scaling`` (the factor of the radial basis ``Q_b``), 75 pre-training BFGS iterations and the
scaling search again. Here:

- :func:`initial_params`: radial coefficients drawn i.i.d. N(0, 1) with
  ``numpy.random.default_rng(seed)`` and orthonormalised (:func:`orthonormalise_radial`, so
  the radial penalty is zero and every radial function has unit norm); species and moment
  coefficients zero (they are solved exactly next); ``scaling`` 1.
- :func:`scaling_search`: for each trial scaling the linear coefficients are solved exactly
  (:func:`linear_solve`) and the resulting data loss compared; the trial is a grid in
  log10(scaling), refined by golden-section search on log10(scaling) inside the bracket
  around the best grid point. Deterministic: same inputs, same result.

Because the radial functions are ``f_mu = sum_b C_mu,b Q_b`` and ``Q_b`` is proportional to
``scaling``, scaling only sets the overall magnitude of orthonormal radial functions; a basis
function built from d radial functions then scales as ``scaling^d``, which is what the search
tunes.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from mlipress.loss import TrainingData
from mlipress.models.mtp.model import MTP
from mlipress.fit.linear import linear_solve

__all__ = ["initial_params", "scaling_search", "DEFAULT_LOG10_GRID"]

#: Trial values of log10(scaling) of the coarse grid (10^-3 .. 10^1, half-decade steps).
DEFAULT_LOG10_GRID: tuple[float, ...] = tuple(np.arange(-3.0, 1.01, 0.5).round(2).tolist())

_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


def initial_params(mtp: MTP, seed: int = 0, scaling: float = 1.0):
    """:meth:`MTP.init` (random orthonormal radial functions from ``seed``, species and moment
    coefficients zero) with the given ``scaling``. Reproducible for a seed."""
    return mtp.init(seed).replace(scaling=jnp.asarray(float(scaling), dtype=jnp.float64))


def scaling_search(
    mtp: MTP,
    params,
    data: TrainingData,
    grid=DEFAULT_LOG10_GRID,
    refine: int = 6,
) -> tuple[object, float, list[tuple[float, float]]]:
    """Best ``scaling`` for the radial part of ``params``, each trial with exact linear solve.

    Args:
      mtp: the potential's structure.
      params: parameter pytree; its radial part is kept, species/moment are re-solved.
      data: :func:`mlipress.loss.prepare` output (the training set).
      grid: trial log10(scaling) values, increasing.
      refine: golden-section iterations on log10(scaling) in the bracket around the best
        grid point (0: grid only).

    Returns ``(params at the best scaling with solved linear coefficients, its data loss,
    trials [(scaling, loss), ...] in evaluation order)``. Non-finite losses count as +inf.
    Cost: ``len(grid) + refine + 1`` linear solves.
    """
    trials: list[tuple[float, float]] = []
    cache: dict[float, tuple[dict, float]] = {}

    def f(log_s: float) -> float:
        if log_s not in cache:
            p, loss = linear_solve(mtp, params.replace(scaling=jnp.asarray(10.0**log_s, dtype=jnp.float64)), data)
            loss = loss if np.isfinite(loss) else np.inf
            cache[log_s] = (p, loss)
            trials.append((10.0**log_s, loss))
        return cache[log_s][1]

    grid = [float(g) for g in grid]
    if not grid:
        raise ValueError("empty scaling grid")
    values = [f(g) for g in grid]
    best = int(np.argmin(values))
    if refine > 0 and len(grid) > 1:
        lo = grid[max(best - 1, 0)]
        hi = grid[min(best + 1, len(grid) - 1)]
        a, b = lo, hi
        c, d = b - _INV_PHI * (b - a), a + _INV_PHI * (b - a)
        for _ in range(refine):
            if f(c) < f(d):
                b, d = d, c
                c = b - _INV_PHI * (b - a)
            else:
                a, c = c, d
                d = a + _INV_PHI * (b - a)
    log_best = min(cache, key=lambda k: (cache[k][1], k))
    p, loss = cache[log_best]
    return p, loss, trials
