"""Exact least-squares solve of a model's linear coefficients.

REFERENCE.md section 3: MLIP-2 interleaves BFGS with an exact solve of the coefficients the
model is linear in. :func:`linear_solve` works for any model of the contract
(:mod:`mlipress.models.base`) through its ``features_fn``: the columns d(E, F, virial) /
d(params.linear) (an MTP's: :mod:`mlipress.models.mtp.features`). With the nonlinear part
fixed, the weighted E/F/S residuals of the training loss

    L = (1/K) sum_k [ w_E'(E^-E)^2/N + sum_i w_F,i |F^_i-F_i|^2 + w_S' ||S^-S||_F^2 / N ]

are a linear least-squares problem in theta = params.linear (P unknowns).

Solve: rows are weighted by sqrt(w); each chunk's rows of the augmented matrix [X | y] are
reduced to their triangular QR factor and the factors merged in chunk order by QR of stacked
pairs (TSQR), so memory is O(P^2) however large the data set, the normal equations (which
square the condition number) are never formed, and the chunks of MPI ranks reduce in
parallel to the factors of a serial run (:meth:`~mlipress.loss.TrainingData.gather`). The triangular
factor is column-equilibrated and solved by SVD with a tiny ridge,
``s_i / (s_i^2 + (ridge s_max)^2)``, ``ridge = 1e-10`` by default: rank-deficient directions
(e.g. a species absent from the data, or basis functions identically zero on it) get zero
instead of noise, everything else is the exact least-squares solution to ~1e-10 relative.
With ``LossWeights.coefficient_l2`` > 0 the solve includes f's L2 term of the linear
coefficients (rows ``sqrt(K lambda) M`` below the factor, M the regularised-coefficient mask),
so it minimises the data part plus that term exactly.
"""

from __future__ import annotations

import functools
import math

import jax
import numpy as np

from mlipress.loss import TrainingChunk, TrainingData
from mlipress.models.base import StructureKey

__all__ = ["linear_solve", "linear_solves"]


@functools.lru_cache(maxsize=8)
def _compiled_features(key: StructureKey):
    return jax.jit(key.model.features_fn())


def _weighted_rows(chunk: TrainingChunk, features, labelled=()) -> np.ndarray:
    """Nonzero rows of sqrt(w) [X | y | y_1 ...] of one chunk (at most C + 3A + 9C rows, A more
    for a magnetic model's fourth feature block, the magnetic forces; P + 1 + len(labelled)
    columns); ``labelled``: chunks of the same geometry and weights with other labels."""
    dE, dF, dV = (np.asarray(a) for a in features[:3])
    P = dE.shape[1]
    se, sf, sv = (np.sqrt(np.asarray(w)) for w in (chunk.w_energy, chunk.w_force, chunk.w_stress))
    ys = (chunk,) + tuple(labelled)

    def labels(name):
        return np.stack([np.asarray(getattr(c, name)) for c in ys], axis=-1)

    top = np.concatenate([dE, labels("energy")], axis=1) * se[:, None]
    forces = np.concatenate([dF, labels("forces")], axis=2) * sf[:, None, None]
    vir = np.concatenate([dV, labels("virial")], axis=3) * sv[:, None, None, None]
    m = P + len(ys)
    blocks = [top, forces.reshape(-1, m), vir.reshape(-1, m)]
    if len(features) > 3:
        sm = np.sqrt(np.asarray(chunk.w_magmom_force))
        blocks.append(np.concatenate([np.asarray(features[3]), labels("magmom_forces")], axis=1) * sm[:, None])
    rows = np.vstack(blocks)
    return rows[np.any(rows != 0, axis=1)]


def _triangular(rows: np.ndarray, n: int) -> np.ndarray:
    """The (n, n) triangular factor of the QR of ``rows`` (n columns), zero rows appended
    when there are fewer than n rows."""
    R = np.linalg.qr(rows, mode="r")[:n]
    return R if R.shape[0] == n else np.vstack([R, np.zeros((n - R.shape[0], n))])


def linear_solve(model, params, data: TrainingData, ridge: float = 1e-10):
    """``(params with exact linear coefficients, loss of E/F/S residuals at the solution)``.

    ``data``: :func:`mlipress.loss.prepare` output; its effective weights (``w_energy``,
    ``w_force``, ``w_stress``) define the residuals and ``coefficient_l2`` its L2 term, so the
    solve minimises exactly the part of :class:`mlipress.loss.Objective` that depends on the
    linear coefficients. The loss returned is the data part, ``(1/K) sum_k L_k`` (no radial
    penalty, no L2 term), computed from the QR residual. Every field of ``params`` but the linear
    ones (an MTP's radial part, dense or factored, and scaling) is used as given; ``model``
    is any model of the contract (:mod:`mlipress.models.base`). See the module docstring.
    """
    return linear_solves(model, params, data, ridge=ridge)[0]


def linear_solves(model, params, data: TrainingData, relabelled=(), ridge: float = 1e-10) -> list:
    """:func:`linear_solve` for ``data`` and for every data set of ``relabelled`` (the same
    configurations and weights, other labels: the Gauss-Newton probes of
    :mod:`mlipress.fit.precondition`) at the cost of one design matrix: the labels are extra
    right-hand sides of the same QR. Returns ``[(params, loss), ...]``, ``data``'s first."""
    features = _compiled_features(StructureKey(model))
    P = int(params.linear.shape[0])
    m = P + 1 + len(relabelled)
    factors = data.gather([
        _triangular(_weighted_rows(chunk, features(params, chunk.batch), [d.chunks[k] for d in relabelled]), m)
        for k, chunk in enumerate(data.chunks)])
    R = factors[0]
    for Rc in factors[1:]:
        R = _triangular(np.vstack([R, Rc]), m)
    Rx, Z = R[:P, :P], R[:P, P:]
    l2 = data.weights.coefficient_l2
    if l2 > 0:  # f's L2 term, K l2 |M theta|^2 in units of the summed residuals: extra rows
        Rx = np.vstack([Rx, math.sqrt(data.n_configs * l2) * np.diag(params.regularised_mask())])
        Z = np.vstack([Z, np.zeros((P, m - P))])
    scale = np.linalg.norm(Rx, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    U, s, Vt = np.linalg.svd(Rx / scale, full_matrices=False)
    lam = (ridge * (s[0] if s.size and s[0] > 0 else 1.0)) ** 2
    out = []
    for j in range(P, m):
        z, res = Z[:, j - P], float(np.sum(R[P:, j] ** 2))  # res: outside the range of X
        theta = Vt.T @ ((s / (s * s + lam)) * (U.T @ z)) / scale
        loss = (float(np.sum((R[:P, :P] @ theta - R[:P, j]) ** 2)) + res) / data.n_configs
        out.append((params.with_linear(theta), loss))
    return out
