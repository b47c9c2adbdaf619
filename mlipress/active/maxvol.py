"""MaxVol: the square submatrix of (nearly) maximal volume among the rows of a tall matrix.

An *active set* is n rows A (n, n) chosen among candidate rows; a row b is expressed in the
basis of the active rows as c = b A^{-1}. Replacing active row j by b multiplies |det A| by
|c_j|, so a set is a local volume maximum exactly when no candidate has |c_j| > 1: MaxVol
(Goreinov, Oseledets et al. 2010) swaps the largest |c_ij| of C = B A^{-1} in until none
exceeds ``swap_threshold`` (MLIP-2's 1.0000001). The extrapolation grade of a row is
max_j |c_j|: 1 for an active row, <= ``swap_threshold`` for every candidate after MaxVol.

Two starts:

- ``mlip_start(n, init_threshold)``: MLIP-2's, ``init_threshold * I`` (1e-5). The placeholder
  rows let the set exist with fewer candidates than columns (or a rank-deficient matrix): a
  direction no candidate spans keeps its placeholder, and a row with a component along it
  gets a grade of about that component / 1e-5. This is the start that reproduces MLIP-2's
  active sets and grades exactly.
- ``qr_start(B)``: the n rows picked by QR with column pivoting of B^T (rank revealing),
  for a full-rank B with at least n rows; fewer swaps follow.

The swaps update A^{-1} and C by rank-one (Sherman-Morrison) formulas; :func:`grades`
recomputes from an LU factorisation of A, so grades do not inherit the drift of the updates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.linalg

__all__ = ["ActiveSet", "mlip_start", "qr_start", "maxvol", "grades", "coefficients"]

#: MLIP-2 defaults: placeholder scale, swap tolerance, grade above which selection swaps at all.
INIT_THRESHOLD = 1e-5
SWAP_THRESHOLD = 1.0000001
SELECT_THRESHOLD = 1.1


@dataclass(frozen=True, eq=False)
class ActiveSet:
    """``rows`` (n, n): the active rows; ``sources`` (n,) int: the label of each row's origin
    (-1 for a placeholder row of :func:`mlip_start`); the labels are the caller's (e.g. a
    configuration index, or a running neighbourhood number)."""

    rows: np.ndarray
    sources: np.ndarray

    def __post_init__(self):
        rows = np.asarray(self.rows, dtype=np.float64)
        sources = np.asarray(self.sources, dtype=np.int64).reshape(-1)
        if rows.ndim != 2 or rows.shape[0] != rows.shape[1] or sources.shape[0] != rows.shape[0]:
            raise ValueError(f"active set needs (n, n) rows and (n,) sources, got {rows.shape}, {sources.shape}")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "sources", sources)

    @property
    def size(self) -> int:
        return self.rows.shape[0]

    @property
    def log_volume(self) -> float:
        """log |det rows|."""
        return float(np.linalg.slogdet(self.rows)[1])

    @functools.cached_property
    def lu(self):
        """LU factors of ``rows^T`` (the solves of :func:`coefficients`), computed once."""
        return scipy.linalg.lu_factor(self.rows.T, check_finite=False)

    def placeholders(self) -> int:
        """Rows still holding the start's placeholder."""
        return int(np.count_nonzero(self.sources < 0))


def mlip_start(n: int, init_threshold: float = INIT_THRESHOLD) -> ActiveSet:
    """MLIP-2's start: ``init_threshold * I`` with placeholder sources -1."""
    if init_threshold <= 0:
        raise ValueError(f"init_threshold must be > 0, got {init_threshold}")
    return ActiveSet(init_threshold * np.eye(n), np.full(n, -1))


def qr_start(B, labels=None) -> ActiveSet:
    """The n rows of ``B`` (K, n), K >= n, chosen by rank-revealing QR of B^T."""
    B = np.asarray(B, dtype=np.float64)
    K, n = B.shape
    if K < n:
        raise ValueError(f"qr_start needs at least as many rows as columns, got {K} x {n}; use mlip_start")
    _, R, piv = scipy.linalg.qr(B.T, mode="economic", pivoting=True)
    if abs(R[n - 1, n - 1]) <= np.finfo(float).eps * n * abs(R[0, 0]):
        raise ValueError(f"the {K} x {n} matrix is rank deficient; use mlip_start")
    labels = np.arange(K) if labels is None else np.asarray(labels)
    return ActiveSet(B[piv[:n]], labels[piv[:n]])


def coefficients(active: ActiveSet, B) -> np.ndarray:
    """C = B A^{-1} (K, n) from an LU factorisation of the active rows."""
    B = np.atleast_2d(np.asarray(B, dtype=np.float64))
    if B.shape[0] == 0:
        return np.zeros((0, active.size))
    return scipy.linalg.lu_solve(active.lu, B.T, check_finite=False).T


def grades(active: ActiveSet, B) -> np.ndarray:
    """Extrapolation grade max_j |c_j| of every row of ``B`` (K, n) -> (K,)."""
    C = coefficients(active, B)
    return np.abs(C).max(axis=1) if C.shape[0] else np.zeros(0)


def maxvol(active: ActiveSet, B, labels=None, swap_threshold: float = SWAP_THRESHOLD,
           max_swaps: int | None = None) -> tuple[ActiveSet, int]:
    """Swap rows of ``B`` (K, n) into ``active`` until no |c_ij| exceeds ``swap_threshold``.

    Each step swaps the largest |c_ij| (the first in row-major order on ties, as MLIP-2): row
    i of B becomes active row j and the row it replaces becomes candidate i (so a swapped-out
    row may come back). ``labels`` (K,) label the candidates (default 0..K-1). Returns the new
    set and the number of swaps. ``swap_threshold`` must exceed 1 (each swap then grows the
    volume by that factor at least, so the loop ends).
    """
    if swap_threshold <= 1.0:
        raise ValueError(f"swap_threshold must be > 1, got {swap_threshold}")
    B = np.array(np.atleast_2d(B), dtype=np.float64)
    K, n = B.shape
    if n != active.size:
        raise ValueError(f"rows have {n} columns, the active set {active.size}")
    labels = np.arange(K) if labels is None else np.array(labels, dtype=np.int64)
    A, src = active.rows.copy(), active.sources.copy()
    if K == 0:
        return ActiveSet(A, src), 0
    inv = scipy.linalg.inv(A)
    C = B @ inv
    swaps = 0
    while max_swaps is None or swaps < max_swaps:
        flat = int(np.argmax(np.abs(C)))
        i, j = divmod(flat, n)
        cij = C[i, j]
        if not abs(cij) > swap_threshold:
            break
        # Sherman-Morrison for A' = A + e_j (b_i - a_j): (b_i - a_j) A^{-1} = c_i - e_j.
        delta = C[i].copy()
        delta[j] -= 1.0
        col = inv[:, j].copy()
        inv -= np.outer(col, delta) / cij
        old_row, old_src = A[j].copy(), src[j]
        C -= np.outer(C[:, j], delta) / cij
        A[j], src[j] = B[i], labels[i]
        B[i], labels[i] = old_row, old_src
        C[i] = old_row @ inv
        swaps += 1
    return ActiveSet(A, src), swaps
