"""Variable projection: optimise the radial part with the linear coefficients always exact.

The loss is linear least squares in theta = (species, moment) for a fixed radial part c
(:mod:`mlipress.fit.linear`), so the fit can be posed over c alone:

    F(c) = min_theta f(c, theta) = f(c, theta*(c)),     grad F(c) = d_c f(c, theta*(c))

(the derivative of theta* drops out because d_theta f = 0 at the minimum). Each value costs
one design matrix + QR, each gradient one more loss+gradient pass at theta*(c). MLIP instead
moves theta by BFGS and resets it exactly every 50 iterations; on an untrained level-20 Mo fit
one such solve lowered f by more than the 40 BFGS iterations before it, which is what
projecting at every evaluation exploits (benchmarks/training_schemes.py compares the schemes).
"""

from __future__ import annotations

from mlipress.loss import Objective
from mlipress.models.base import nonlinear_bytes
from mlipress.fit.linear import linear_solve

__all__ = ["ProjectedObjective", "optimisation_target"]


class ProjectedObjective:
    """``value`` / ``value_and_grad`` of F(c) over the same params pytree as :class:`Objective`
    (the linear fields, ``params.LINEAR``, are ignored on input and get a zero gradient, so an
    optimiser leaves them alone); ``complete(params)`` returns params with theta*(c)."""

    def __init__(self, objective: Objective):
        self.objective = objective
        self.model, self.data = objective.model, objective.data
        self._cache: list[tuple[bytes, object, float]] = []

    def _solve(self, params):
        key = nonlinear_bytes(params)
        for k, p, f in self._cache:
            if k == key:
                return p, f
        obj = self.objective
        p, loss = linear_solve(obj.model, params, obj.data)
        f = loss + obj.penalty(p)
        self._cache = [(key, p, f)] + self._cache[:3]
        return p, f

    def complete(self, params):
        return self._solve(params)[0]

    def value(self, params) -> float:
        return self._solve(params)[1]

    def value_and_grad(self, params):
        p, _ = self._solve(params)
        f, g = self.objective.value_and_grad(p)
        return f, g.zeroed(g.LINEAR)


def optimisation_target(objective: Objective, variable_projection: bool):
    """``(what the optimiser minimises, params -> params with their linear coefficients)``:
    ``objective`` and the identity, or its :class:`ProjectedObjective` and ``complete``."""
    if not variable_projection:
        return objective, lambda p: p
    proj = ProjectedObjective(objective)
    return proj, proj.complete
