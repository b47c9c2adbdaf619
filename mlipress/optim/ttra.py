"""TT-rank adaptation, TTRA: Algorithm 1 of the paper for a tensor train (the TF of II.C).

The radial tensor is a TT ``C = G_1 G_2 ... G_d`` with cores ``G_k (r_{k-1}, n_k, r_k)``. Every
s iterations of BFGS on the cores (and whatever else the parameters hold), while some rank is
below its maximum, each TT boundary ``k`` (between ``G_k`` and ``G_{k+1}``) whose rank may grow
is enriched in turn, left to right:

    G <- dL/dC at the current C                        (one gradient call; skipped when the
                                                        previous boundary did not move C)
    orthogonalise: G_1..G_{k-1} left-, G_{k+2}..G_d right-orthonormal (the same tensor)
    P = L^T G R^T    (r_{k-1} n_k, n_{k+1} r_{k+1})    the gradient of the loss with respect to
                                                        the two-site supercore W = G_k G_{k+1},
                                                        L, R the orthonormal interfaces
    P ~ U_D S_D V_D^T, top dr = min(delta_r, room) triplets
    t = argmin_{t >= 0} L(C - t D),  D = L U_D S_D V_D^T R   (:func:`augment.search_along`)
    G_k <- [G_k | -t U_D S_D^{1/2}],  G_{k+1} <- [G_{k+1}; S_D^{1/2} V_D^T],  r_k <- r_k + dr

The enlarged TT represents ``C - t D`` exactly (``C`` at ``t = 0``), ``<G, D> = sum S_D^2``, so
the loss never rises at an augmentation (:mod:`.augment`). It is the two-site enrichment of
DMRG/AMEn with Algorithm 1's line search: the leading directions of the k-th unfolding of the
gradient within the current interfaces. ``room`` keeps the cores free of redundant ranks:
``r_k + dr <= min(r_max_k, r_{k-1} n_k, n_{k+1} r_{k+1})`` with the neighbours' current ranks.

The line searches and gradients work on the dense tensor (``value_dense(params, C)``,
``value_and_grad_dense(params, C)``), so intermediate ranks are never compiled for.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mlipress.optim.augment import Growth, rank_adaptive, resolve_interval, leading_triplets, search_along
from mlipress.optim.bfgs import Optimizer

__all__ = ["ttra", "tt_dense", "orthogonalise", "enrich", "balance", "direction", "boundary_gradient", "rank_increments"]


def tt_dense(cores) -> np.ndarray:
    """The full tensor (n_1, ..., n_d) of NumPy cores ``G_k (r_{k-1}, n_k, r_k)``."""
    cores = [np.asarray(g, dtype=np.float64) for g in cores]
    M = cores[0].reshape(-1, cores[0].shape[2])
    for g in cores[1:]:
        M = (M @ g.reshape(g.shape[0], -1)).reshape(-1, g.shape[2])
    return M.reshape(tuple(g.shape[1] for g in cores))


def orthogonalise(cores, k: int) -> list[np.ndarray]:
    """The same TT with ``G_1 .. G_k`` left-orthonormal (as ``(r_{j-1} n_j, r_j)`` matrices) and
    ``G_{k+3} .. G_d`` right-orthonormal (as ``(r_{j-1}, n_j r_j)``; 1-based core numbers,
    boundary ``k`` 0-based between cores ``k`` and ``k + 1``), by QR sweeps that push the
    triangular factors into the two cores at the boundary. Ranks are kept (they must not exceed
    the unfolding sizes, as :func:`mlipress.models.layers.clip_tt_ranks` ensures)."""
    G = [np.array(g, dtype=np.float64) for g in cores]
    for j in range(k):
        r0, n, r1 = G[j].shape
        q, t = np.linalg.qr(G[j].reshape(r0 * n, r1))
        G[j] = q.reshape(r0, n, r1)
        G[j + 1] = np.einsum("ab,bjc->ajc", t, G[j + 1])
    for j in range(len(G) - 1, k + 1, -1):
        r0, n, r1 = G[j].shape
        q, t = np.linalg.qr(G[j].reshape(r0, n * r1).T)
        G[j] = q.T.reshape(r0, n, r1)
        G[j - 1] = np.einsum("ajb,cb->ajc", G[j - 1], t)
    return G


def _interfaces(G, k: int):
    """``L (n_1 .. n_k, r_k)`` and ``R (r_{k+2}, n_{k+3} .. n_d)``: the products of the cores left
    and right of the two-site supercore at boundary k (0-based; ones(1, 1) when empty)."""
    L = np.ones((1, 1))
    for g in G[:k]:
        L = (L @ g.reshape(g.shape[0], -1)).reshape(-1, g.shape[2])
    R = np.ones((1, 1))
    for g in reversed(G[k + 2:]):
        R = (g.reshape(-1, g.shape[2]) @ R).reshape(g.shape[0], -1)
    return L, R


def boundary_gradient(G, k: int, grad: np.ndarray) -> np.ndarray:
    """``P = L^T dL/dC R^T`` (r_{k-1} n_k, n_{k+1} r_{k+1}) for orthogonalised cores ``G``: the
    gradient of the loss with respect to the supercore ``G_k G_{k+1}`` at boundary k."""
    L, R = _interfaces(G, k)
    n = G[k].shape[1], G[k + 1].shape[1]
    g4 = np.asarray(grad, dtype=np.float64).reshape(L.shape[0], n[0], n[1], R.shape[1])
    P = np.einsum("xa,xijy,cy->aijc", L, g4, R)
    return P.reshape(G[k].shape[0] * n[0], n[1] * G[k + 1].shape[2])


def enrich(G, k: int, UD: np.ndarray, SD: np.ndarray, VD: np.ndarray, t: float) -> list[np.ndarray]:
    """The TT with boundary k enlarged by ``dr = len(SD)``: ``G_k <- [G_k | -a U_D S^{1/2}]``,
    ``G_{k+1} <- [G_{k+1}; b S^{1/2} V_D^T]`` with ``a b = t``. It represents
    ``C - t L U_D S V_D^T R``, exactly the old tensor at ``t = 0``. For ``t > 0`` the step is
    split evenly (``a = b = sqrt(t)``: no block orders of magnitude larger than its partner,
    which BFGS on the cores would pay for); at ``t = 0`` ``a = 0, b = 1``, so the gradient with
    respect to the new block of ``G_k`` is not zero and BFGS can still move it."""
    G = list(G)
    r0, n0, _ = G[k].shape
    _, n1, r1 = G[k + 1].shape
    sq = np.sqrt(SD)
    a, b = (np.sqrt(t), np.sqrt(t)) if t > 0.0 else (t, 1.0)
    A = (-a * UD * sq).reshape(r0, n0, -1)
    B = (b * VD * sq).T.reshape(-1, n1, r1)
    G[k] = np.concatenate([G[k], A], axis=2)
    G[k + 1] = np.concatenate([G[k + 1], B], axis=0)
    return G


def direction(G, k: int, UD: np.ndarray, SD: np.ndarray, VD: np.ndarray) -> np.ndarray:
    """``D = L U_D S_D V_D^T R`` as a full tensor: what :func:`enrich` subtracts per unit of t."""
    L, R = _interfaces(G, k)
    r0, n0, _ = G[k].shape
    _, n1, r1 = G[k + 1].shape
    W = ((UD * SD) @ VD.T).reshape(r0, n0, n1, r1)
    return np.einsum("xa,aijc,cy->xijy", L, W, R).reshape(tuple(g.shape[1] for g in G))


def balance(G) -> list[np.ndarray]:
    """The same TT with every core of the same Frobenius norm (each scaled by a positive
    factor, the factors multiplying to 1): the orthogonalisation sweeps leave the whole norm
    in the cores at the last boundary, a gauge Euclidean BFGS on the cores is slow in."""
    norms = np.array([np.linalg.norm(g) for g in G])
    if not np.all(norms > 0.0):
        return list(G)
    mean = np.exp(np.mean(np.log(norms)))
    return [g * (mean / n) for g, n in zip(G, norms)]


def rank_increments(ranks, modes, r_max, delta_r: int, k: int) -> int:
    """How much boundary k (0-based) may grow: ``min(delta_r, r_max_k - r_k, r_{k-1} n_k - r_k,
    n_{k+1} r_{k+1} - r_k)`` (>= 0) with ``r_0 = r_d = 1``."""
    r = (1,) + tuple(ranks) + (1,)
    return max(0, min(delta_r, r_max[k] - r[k + 1], r[k] * modes[k] - r[k + 1], modes[k + 1] * r[k + 2] - r[k + 1]))


def _ranks(cores) -> tuple[int, ...]:
    return tuple(int(np.shape(g)[2]) for g in cores[:-1])


def ttra(
    inner_opt: Optimizer,
    value_and_grad_dense: Callable[[Any, np.ndarray], tuple],
    *,
    r_max,
    delta_r: int = 2,
    interval: int | str = 80,
    max_iter: int | None = None,
    value_dense: Callable[[Any, np.ndarray], float] | None = None,
    cores_of: Callable[[Any], tuple] = lambda p: p["cores"],
    with_cores: Callable[[Any, tuple], Any] = lambda p, cores: {**p, "cores": tuple(cores)},
    ls_max_evals: int = 12,
    growth: Growth | None = None,
) -> Optimizer:
    """TTRA: ``inner_opt`` (BFGS over parameters holding TT cores) with TT-rank augmentation every
    s iterations (module docstring).

    Args:
      inner_opt: the optimiser over the parameters (e.g. :func:`bfgs.bfgs`, preconditioned).
      value_and_grad_dense: ``(params, C) -> (value, dL/dC)``: the loss with the TT replaced by the
        dense tensor ``C`` (n_1, ..., n_d), everything else from ``params``.
      r_max: maximal TT ranks ``(r_1, ..., r_{d-1})``; each boundary grows by at most ``delta_r``
        per augmentation and never beyond its maximum or the unfolding sizes.
      interval: s, or "auto" (4% of ``max_iter``).
      value_dense: optional cheaper ``(params, C) -> value`` for the line searches.
      cores_of, with_cores: read the cores from / put them into the parameters (default: the
        ``"cores"`` entry of a dict).
      growth: optional :class:`augment.Growth` rule (stop growing below ``r_max``).

    Returns:
      an :class:`Optimizer` over :class:`augment.RankAdaptState`; ``init(params)``.
    """
    s_int = resolve_interval(interval, max_iter)
    r_max = tuple(int(r) for r in r_max)
    if delta_r < 1:
        raise ValueError("delta_r must be >= 1")

    def v_dense(params, C):
        return float(value_dense(params, C)) if value_dense is not None else float(value_and_grad_dense(params, C)[0])

    def augment(inner, ranks, k):
        params = inner.params
        G = [np.asarray(g, dtype=np.float64) for g in cores_of(params)]
        modes = tuple(g.shape[1] for g in G)
        zero = list(G)
        f, grad, n_evals, steps = inner.value, None, 0, []
        for b in range(len(G) - 1):
            dr = rank_increments(_ranks(G), modes, r_max, delta_r, b)
            if dr == 0:
                continue
            if grad is None:  # the gradient at the current C (stale once a boundary moved it)
                f_here, grad = value_and_grad_dense(params, tt_dense(G))
                n_evals += 1
                if steps:
                    f = float(f_here)
            G = orthogonalise(G, b)
            UD, SD, VD = leading_triplets(boundary_gradient(G, b, np.asarray(grad)), dr)
            C, D = tt_dense(G), direction(G, b, UD, SD, VD)
            t, f_t, n_ls = search_along(lambda t: v_dense(params, C - t * D), f, SD, float(np.linalg.norm(C)),
                                        float(np.linalg.norm(D)), ls_max_evals)
            n_evals += n_ls
            zero = enrich(zero, b, UD, SD, VD, 0.0)
            G = enrich(G, b, UD, SD, VD, t)
            steps.append(-t)
            if t > 0.0:
                f, grad = f_t, None
        if not steps:
            return None
        return (with_cores(params, tuple(balance(G))), with_cores(params, tuple(zero)), _ranks(G), tuple(steps),
                n_evals)

    def is_max(ranks):
        return all(r >= m for r, m in zip(ranks, r_max))

    return rank_adaptive(inner_opt, augment, lambda p: _ranks(cores_of(p)), is_max, interval=s_int, growth=growth)
