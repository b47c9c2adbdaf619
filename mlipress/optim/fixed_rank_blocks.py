"""The product ``M_r x ... x M_r`` of fixed-rank manifolds, one factor per block (ACE: one
``N_k x N_rad (L+1)`` radial matrix per unordered species pair, section II.F).

Same operations as :mod:`.fixed_rank`, blockwise: a point is a tuple of
:class:`~.fixed_rank.FixedRankPoint` (one per block), the dense form a stacked ``(P, m, n)``
array, the frame a tuple of frames, coordinates the concatenation of the blocks' coordinates
(still orthonormal: the product metric is the sum of the blocks' Frobenius products), the
retraction the blockwise truncated SVD and the transport matrix ``P_{x->y}`` block diagonal
(its inverse, the inverse transport, blockwise too). :func:`mlipress.optim.rbfgs.rbfgs` takes
this module as its ``manifold``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from mlipress.optim import fixed_rank as fr

__all__ = ["from_matrix", "to_dense", "project", "retract", "frame", "to_coords", "from_coords",
           "transport_matrix", "dim"]


def _blocks(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"blockwise fixed-rank matrices are (P, m, n), got shape {X.shape}")
    return X


def dim(P: int, m: int, n: int, r: int) -> int:
    return P * fr.dim(m, n, r)


def from_matrix(X, r: int) -> tuple:
    return tuple(fr.from_matrix(x, r) for x in _blocks(X))


def to_dense(x) -> np.ndarray:
    return np.stack([fr.to_dense(b) for b in x])


def project(x, W) -> np.ndarray:
    return np.stack([fr.project(b, w) for b, w in zip(x, _blocks(W))])


def retract(x, xi) -> tuple:
    return tuple(fr.retract(b, d) for b, d in zip(x, _blocks(xi)))


def frame(x) -> tuple:
    return tuple(fr.frame(b) for b in x)


def _sizes(f) -> list[int]:
    return [fr.dim(b.U_full.shape[0], b.V_full.shape[0], b.r) for b in f]


def to_coords(f, Z) -> np.ndarray:
    return np.concatenate([fr.to_coords(b, z) for b, z in zip(f, _blocks(Z))])


def from_coords(f, c) -> np.ndarray:
    parts = np.split(np.asarray(c, dtype=np.float64), np.cumsum(_sizes(f))[:-1])
    return np.stack([fr.from_coords(b, p) for b, p in zip(f, parts)])


def transport_matrix(f_from, f_to) -> np.ndarray:
    return scipy.linalg.block_diag(*[fr.transport_matrix(a, b) for a, b in zip(f_from, f_to)])
