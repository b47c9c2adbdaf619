"""The manifold M_r of m x n real matrices of rank r (supplementary material, sections A-B).

Points are stored as thin SVD factors :class:`FixedRankPoint` ``(U (m, r), s (r,), V (n, r))``,
``X = U diag(s) V^T``. Tangent vectors are dense (m, n) matrices in the ambient space (for an
MTP ``Chat`` is at most 16 x 48, so nothing is gained by the factored tangent format).

Operations (m x n matrices, r the rank, M = (m + n - r) r = dim M_r):

- ``project(X, W) = W - P_U^perp W P_V^perp``   (orthogonal projection onto T_X; Riemannian
  gradient = project(X, Euclidean gradient))
- ``retract(X, xi) = SVD_r(X + xi)``             (truncated SVD, section II.D.2.b)
- ``transport(X, Y, xi) = project(Y, xi)``       (vector transport T_{X->Y} by projection)
- ``inverse_transport(X, Y, eta)``               (T_{X->Y}^{-1}, Propositions IV.1 / IV.2)

Tangent coordinates (Proposition IV.2). With full orthonormal bases ``U_X = [U | U_perp]``
(m, m) and ``V_X = [V | V_perp]`` (n, n) -- a :class:`Frame` -- the matrices ``U_X E_ij V_X^T``
with ``i < r or j < r`` form an orthonormal basis ``B_x`` (mn, M) of T_X. The coordinates of a
tangent vector Z are ``(U_X^T Z V_X)[mask]`` (row-major over (i, j), ``mask[i, j] = i < r or
j < r``); because the basis is orthonormal, the Frobenius inner product of tangent vectors is the
dot product of their coordinates.

Inverse transport. Proposition IV.1 gives ``T^{-1}_{x->y} = B_x (B_y^T P_y B_x)^{-1} B_y^T`` and
Proposition IV.2 writes the M x M matrix as

    P_{x->y} = E^T ( (U_Y^T U_X) kron (V_Y^T V_X) - (U_Y^T P_UY^perp U_X) kron (V_Y^T P_VY^perp V_X) ) E.

The second Kronecker term vanishes under the mask: ``U_Y^T P_UY^perp = [0_{r x m}; U_Y,perp^T]``
has zero first r rows (likewise for V), so its (i, j)-th row of the Kronecker product is
non-zero only for ``i >= r and j >= r`` -- exactly the rows that ``E^T`` discards. (Equivalently
``P_y B_y = B_y``, hence ``B_y^T P_y B_x = B_y^T B_x``.) Therefore

    P_{x->y}[(i, j), (k, l)] = A[i, k] * B[j, l],   A = U_Y^T U_X (m, m),  B = V_Y^T V_X (n, n),

for masked (i, j), (k, l): one gather of two small matrices, O(M^2), never the (mn)^2 Kronecker
product nor a column-by-column construction. ``P_{x->y}`` is also the matrix of the forward
transport in coordinates, so ``inverse_transport`` solves ``P_{x->y} c = coords_Y(eta)`` (LU,
O(M^3); M <= a few hundred for an MTP) and returns ``B_x c``. The tests check this against the
explicit formula of Proposition IV.1 and against the unsimplified Proposition IV.2 matrix.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

__all__ = [
    "FixedRankPoint",
    "Frame",
    "dim",
    "from_matrix",
    "to_dense",
    "project",
    "retract",
    "transport",
    "inverse_transport",
    "frame",
    "tangent_mask",
    "to_coords",
    "from_coords",
    "tangent_basis",
    "transport_matrix",
    "inverse_transport_matrix_reference",
]


class FixedRankPoint(NamedTuple):
    """A point of M_r as thin SVD factors: U (m, r) and V (n, r) orthonormal, s (r,) > 0."""

    U: np.ndarray
    s: np.ndarray
    V: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.U.shape[0], self.V.shape[0])

    @property
    def rank(self) -> int:
        return self.s.shape[0]


class Frame(NamedTuple):
    """Full orthonormal bases at a point: U_full (m, m), V_full (n, n); first r columns = U, V."""

    U_full: np.ndarray
    V_full: np.ndarray
    r: int


def dim(m: int, n: int, r: int) -> int:
    """Dimension of M_r: (m + n - r) r."""
    return (m + n - r) * r


def from_matrix(X, r: int) -> FixedRankPoint:
    """Truncated SVD ``SVD_r(X)`` of an (m, n) matrix as a point of M_r."""
    X = np.asarray(X, dtype=np.float64)
    if not 1 <= r <= min(X.shape):
        raise ValueError(f"rank {r} impossible for a {X.shape} matrix")
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    return FixedRankPoint(U[:, :r].copy(), s[:r].copy(), Vt[:r].T.copy())


def to_dense(x: FixedRankPoint) -> np.ndarray:
    """``U diag(s) V^T`` (m, n)."""
    return (x.U * x.s) @ x.V.T


def project(x: FixedRankPoint, W) -> np.ndarray:
    """``Proj_{T_X} W = W - P_U^perp W P_V^perp = U U^T W + W V V^T - U U^T W V V^T`` (m, n)."""
    W = np.asarray(W, dtype=np.float64)
    UtW = x.U.T @ W
    WV = W @ x.V
    return x.U @ UtW + WV @ x.V.T - x.U @ ((UtW @ x.V) @ x.V.T)


def retract(x: FixedRankPoint, xi) -> FixedRankPoint:
    """Retraction ``R_X(xi) = SVD_r(X + xi)`` (truncated SVD, rank r = x.rank)."""
    return from_matrix(to_dense(x) + np.asarray(xi, dtype=np.float64), x.rank)


def transport(x_from: FixedRankPoint, x_to: FixedRankPoint, xi) -> np.ndarray:
    """Vector transport ``T_{X->Y} xi = Proj_{T_Y} xi`` (supplementary section A)."""
    return project(x_to, xi)


def frame(x: FixedRankPoint) -> Frame:
    """Complete U, V to full orthonormal bases (the ``U_X, V_X`` of Proposition IV.2).

    The complements come from complete QR factorisations; any orthonormal completion is valid
    because every formula that uses two frames (``transport_matrix``) accounts for them.
    """
    m, n = x.shape
    r = x.rank

    def complete(Q, k):
        full = np.linalg.qr(Q, mode="complete")[0]
        return np.hstack([Q, full[:, r:k]])

    return Frame(complete(x.U, m), complete(x.V, n), r)


def tangent_mask(m: int, n: int, r: int) -> np.ndarray:
    """Boolean (m, n) mask with ``mask[i, j] = i < r or j < r`` (the columns kept by E)."""
    mask = np.zeros((m, n), dtype=bool)
    mask[:r, :] = True
    mask[:, :r] = True
    return mask


def to_coords(f: Frame, Z) -> np.ndarray:
    """Coordinates ``B_x^T vec(Z) = (U_X^T Z V_X)[mask]`` (M,) of Z (exact for Z in T_X; for a
    general Z they are the coordinates of ``Proj_{T_X} Z``)."""
    W = f.U_full.T @ np.asarray(Z, dtype=np.float64) @ f.V_full
    return W[tangent_mask(W.shape[0], W.shape[1], f.r)]


def from_coords(f: Frame, c) -> np.ndarray:
    """Tangent vector ``B_x c = U_X W V_X^T`` (m, n), W zero outside the mask, W[mask] = c."""
    m, n = f.U_full.shape[0], f.V_full.shape[0]
    W = np.zeros((m, n))
    W[tangent_mask(m, n, f.r)] = c
    return f.U_full @ W @ f.V_full.T


def tangent_basis(f: Frame) -> np.ndarray:
    """Explicit orthonormal basis B_x (mn, M): columns ``vec(U_X E_ij V_X^T)``, (i, j) masked,
    vec row-major. For tests and references only (mn x M dense)."""
    m, n = f.U_full.shape[0], f.V_full.shape[0]
    I, J = np.nonzero(tangent_mask(m, n, f.r))
    # vec(U e_i e_j^T V^T) = kron(U[:, i], V[:, j]) (row-major vec)
    return (f.U_full[:, I][:, None, :] * f.V_full[:, J][None, :, :]).reshape(m * n, I.size)


def transport_matrix(f_from: Frame, f_to: Frame) -> np.ndarray:
    """``P_{x->y} = B_y^T P_y B_x`` (M, M) of Propositions IV.1 / IV.2 in closed form.

    ``P[(i, j), (k, l)] = (U_Y^T U_X)[i, k] (V_Y^T V_X)[j, l]`` over masked index pairs (the
    second Kronecker term of Prop. IV.2 is zero on the masked rows; see the module docstring).
    It maps X-coordinates of xi in T_X to Y-coordinates of ``Proj_{T_Y} xi``.
    """
    m, n, r = f_from.U_full.shape[0], f_from.V_full.shape[0], f_from.r
    A = f_to.U_full.T @ f_from.U_full
    B = f_to.V_full.T @ f_from.V_full
    I, J = np.nonzero(tangent_mask(m, n, r))
    return A[np.ix_(I, I)] * B[np.ix_(J, J)]


def inverse_transport(x_from: FixedRankPoint, x_to: FixedRankPoint, eta, *, frames=None) -> np.ndarray:
    """Inverse vector transport ``T_{X->Y}^{-1} eta`` (Propositions IV.1 and IV.2).

    Returns the unique xi in T_X with ``Proj_{T_Y} xi = eta`` (eta in T_Y), as an (m, n) matrix:
    ``xi = B_x P_{x->y}^{-1} B_y^T vec(eta)``, computed as one O(M^2) gather
    (:func:`transport_matrix`) and one M x M LU solve. Raises ``numpy.linalg.LinAlgError`` when
    ``P_{x->y}`` is singular (X and Y too far apart for the projection to be bijective).

    Args:
      x_from, x_to: points X, Y of M_r (same shape and rank).
      eta: (m, n) tangent vector at Y.
      frames: optional precomputed ``(frame(X), frame(Y))``.
    """
    fx, fy = frames if frames is not None else (frame(x_from), frame(x_to))
    P = transport_matrix(fx, fy)
    c = scipy.linalg.lu_solve(scipy.linalg.lu_factor(P, check_finite=True), to_coords(fy, eta))
    return from_coords(fx, c)


def inverse_transport_matrix_reference(x_from: FixedRankPoint, x_to: FixedRankPoint) -> np.ndarray:
    """Slow reference: the (mn, mn) matrix ``B_x (B_y^T P_y B_x)^{-1} B_y^T`` of Prop. IV.1,
    with the explicit projector ``P_y = I - P_UY^perp kron P_VY^perp``. For tests only."""
    fx, fy = frame(x_from), frame(x_to)
    Bx, By = tangent_basis(fx), tangent_basis(fy)
    m, n = x_to.shape
    Pu = np.eye(m) - x_to.U @ x_to.U.T
    Pv = np.eye(n) - x_to.V @ x_to.V.T
    Py = np.eye(m * n) - np.kron(Pu, Pv)
    return Bx @ np.linalg.solve(By.T @ Py @ Bx, By.T)
