"""Diagonal preconditioning of the MTP fit: a Gauss-Newton diagonal from random probes.

Why: MTP basis functions B_alpha span many orders of magnitude (products of up to four
moments), so their coefficients and the radial gradients they induce do too. Plain BFGS
starting from the identity spends hundreds of iterations discovering these scales and, in
practice, stalls (f flat, |g| ~ 1e4) from an untrained start. MLIP-2 also works in
preconditioned variables for the moment coefficients (REFERENCE.md section 4).

How: the data part of the loss is ``(1/K) sum_j w_j r_j(theta)^2`` (weighted E/F/S residuals,
and the magnetic-force residuals of a magnetic model).
Shifting every reference label by ``v_j / sqrt(w_j)`` (Rademacher v) changes the gradient by
exactly ``-(2/K) J^T W^(1/2) v``, because the labels enter the residuals linearly. The mean
square of that change over a few probes estimates ``diag(J^T W J)``, the Gauss-Newton
diagonal, for every parameter of any parametrisation (dense, MF, TT) at the cost of a few
gradient passes. BFGS then starts from ``H0 = diag(1 / GN)`` (see ``precondition`` in
:func:`mlipress.optim.bfgs`).

Under variable projection (``projected=True``) the probes go through
:class:`~mlipress.fit.projection.ProjectedObjective`, so the linear coefficients are
re-solved for the shifted labels and the estimate is the diagonal of the *reduced* Gauss-Newton
matrix ``J_c^T (I - P_theta) W J_c`` (P_theta: projector onto the linear columns). Estimated at
fixed theta instead, it was ~1e10 times too large for the radial coefficients of a level-20 Mo
fit: the linear coefficients absorb most of a radial change, and the steps BFGS took from it
changed f by less than its round-off, so the line search failed.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mlipress.loss import Objective
from mlipress.fit.linear import linear_solves


def _probe_signs(chunk, members, seed: int, probe: int):
    """Rademacher signs of one probe for a chunk's energy (C,), forces (A, 3), virial
    (C, 3, 3) and magnetic-force (A,) labels, drawn per configuration from ``(seed, probe,
    configuration index)`` (the magnetic ones from a stream of their own, so the others do not
    depend on whether a model is magnetic): the same probes however the data are chunked or
    shared out over MPI ranks."""
    e, f, v = np.zeros(chunk.energy.shape), np.zeros(chunk.forces.shape), np.zeros(chunk.virial.shape)
    m = np.zeros(chunk.magmom_forces.shape)
    offset = 0
    for slot, (k, n) in enumerate(zip(members, np.asarray(chunk.natoms, dtype=np.int64))):
        signs = np.random.default_rng([seed, probe, k]).choice([-1.0, 1.0], size=10 + 3 * n)
        e[slot], v[slot] = signs[0], signs[1:10].reshape(3, 3)
        f[offset : offset + n] = signs[10:].reshape(n, 3)
        m[offset : offset + n] = np.random.default_rng([seed, probe, k, 1]).choice([-1.0, 1.0], size=n)
        offset += n
    return e, f, v, m


def _perturbed_chunk(chunk, signs, eps: float = 1.0):
    def shift(labels, v, weights, valid):
        w = np.asarray(weights, dtype=np.float64).reshape(weights.shape + (1,) * (labels.ndim - weights.ndim))
        scale = np.where(np.asarray(valid).reshape(w.shape) & (w > 0), 1.0 / np.sqrt(np.where(w > 0, w, 1.0)), 0.0)
        return jnp.asarray(np.asarray(labels) + eps * v * scale)

    atom_valid = np.asarray(chunk.w_force) > 0
    e, f, v, m = signs
    return dataclasses.replace(
        chunk,
        energy=shift(chunk.energy, e, chunk.w_energy, chunk.has_energy),
        forces=shift(chunk.forces, f, chunk.w_force, atom_valid),
        virial=shift(chunk.virial, v, chunk.w_stress, chunk.has_virial),
        magmom_forces=shift(chunk.magmom_forces, m, chunk.w_magmom_force, np.asarray(chunk.w_magmom_force) > 0),
    )


def gauss_newton_diagonal(objective: Objective, params, probes: int = 4, seed: int = 0, damping: float = 1e-8,
                          projected: bool = False, grad=None) -> np.ndarray:
    """Estimated Gauss-Newton diagonal of ``objective`` at ``params`` (flat, ``ravel_pytree``
    order), damped by ``damping * max`` so that parameters the data do not see stay finite.
    ``projected``: the reduced matrix of variable projection (module docstring); the probes'
    linear solves then share one design matrix (:func:`~mlipress.fit.linear.linear_solves`).
    ``grad``: the flat gradient at ``params`` if the caller has it (the optimiser just
    evaluated it), saving one evaluation."""
    # projected: the gradient is no longer linear in the labels (theta moves with them), so small
    # probes keep the quadratic terms out of the estimate
    eps = 1e-3 if projected else 1.0
    shifted = [dataclasses.replace(objective.data, chunks=tuple(
        _perturbed_chunk(c, _probe_signs(c, m, seed, probe), eps) for c, m in zip(objective.data.chunks, objective.data.members)))
        for probe in range(probes)]
    points = [params] * (probes + 1)
    if projected:
        points = [p for p, _ in linear_solves(objective.model, params, objective.data, shifted)]

    def flat_grad(obj, p):
        g = obj.value_and_grad(p)[1]
        return np.asarray(ravel_pytree(g.zeroed(g.LINEAR) if projected else g)[0])

    g0 = flat_grad(objective, points[0]) if grad is None else np.asarray(grad, dtype=np.float64)
    acc = np.zeros_like(g0)
    for data, p in zip(shifted, points[1:]):
        acc += (flat_grad(Objective(objective.model, data, objective.weights), p) - g0) ** 2
    gn = acc / (probes * eps * eps)
    return gn + damping * max(float(gn.max()), 1e-300)


def inverse_gauss_newton_diagonal(objective: Objective, probes: int = 4, seed: int = 0, projected: bool = False):
    """``(params, grad) -> 1 / diag(GN)``: the ``precondition`` argument of :func:`mlipress.optim.bfgs`."""

    def h0(params, grad=None) -> np.ndarray:
        return 1.0 / gauss_newton_diagonal(objective, params, probes, seed, projected=projected, grad=grad)

    return h0
