"""Riemannian BFGS on R^{n_xi} x M_r (Algorithm 2 "RBFSG" of the supplementary material; Qi,
Gallivan & Absil 2010, with the sufficient-decrease coefficient mu).

Objective: ``value_and_grad(xi, X) -> (value, (g_xi, g_X))`` with Euclidean gradients, xi (n_xi,)
the linear parameters and X the dense (m, n) radial matrix ``Chat``. The Riemannian gradient is
``(g_xi, Proj_{T_X} g_X)``.

Representation of the inverse Hessian approximation H_k. Tangent vectors at Theta_k = (xi, X)
are written in the orthonormal coordinates ``[v_xi ; B_X^T vec(Z)]`` of length d = n_xi + M,
M = (m + n - r) r (the basis B_X of Proposition IV.2, :mod:`.fixed_rank`). H_k is a dense
(d, d) float64 matrix in these coordinates and the metric g is the plain dot product. In these
coordinates the transport ``T_{X->Y} = Proj_{T_Y}|_{T_X}`` is the M x M matrix
``P = P_{x->y} = B_Y^T B_X`` (closed form of Prop. IV.2, :func:`fixed_rank.transport_matrix`),
identity on the xi block, and the inverse transport of Prop. IV.1 is ``P^{-1}``. Hence Algorithm 2's

    H~_k = T o H_k o T^{-1}   is   H~ = D H D^{-1},   D = blockdiag(I_{n_xi}, P),

computed with one LU factorisation of P (O(d M^2)). ``H = None`` stands for the identity
(T o I o T^{-1} = I).

One iteration (Algorithm 2):

    eta = -H grad;  c = g(grad, eta)        (if c >= 0: H <- I, eta = -grad)
    alpha: doubling/halving with mu (:func:`linesearch.doubling_halving`); the first trial is 1,
           except right after init/reset (H = I) where it is min(1, 1/|grad|)
    Theta+ = (xi + alpha eta_xi, R_X(alpha eta_X))
    s = T(alpha eta),  y = grad+ - T(grad)
    H+ = H~ - rho s (y^T H~) - rho (H~ y) s^T + (rho^2 y^T H~ y + rho) s s^T,   rho = 1 / g(y, s)

Note: Algorithm 2 as printed ends the update with ``g(s, s)/g(y, s) p``; the BFGS update of
Qi et al. (and the secant condition H+ y = s) needs ``g(s, p)/g(y, s) s``, which is what is
implemented (:func:`bfgs.bfgs_update`). The update is skipped (H+ = H~) when
``g(y, s) <= curvature_eps |y||s|``, and H is reset to the identity when P is numerically
singular (X and X+ too far apart for the projection to be invertible).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import scipy.linalg

from mlipress.optim import fixed_rank as fr
from mlipress.optim.bfgs import Optimizer, bfgs_update
from mlipress.optim.linesearch import doubling_halving

__all__ = ["RBFGSState", "rbfgs"]


class RBFGSState(NamedTuple):
    """State of :func:`rbfgs`.

    params: ``(xi (n_xi,), point FixedRankPoint)``; ``state.X`` is the dense (m, n) matrix.
    frame: :class:`fixed_rank.Frame` at the point (the basis the coordinates refer to).
    value: loss at params.
    grad: (d,) Riemannian gradient in tangent coordinates, d = n_xi + (m + n - r) r.
    grad_norm: its norm (= Frobenius/Euclidean norm of (g_xi, Proj_T g_X)).
    H: (d, d) inverse Hessian approximation in tangent coordinates, or None (identity).
    iteration, n_evals, n_grad_evals, prev_value, step_norm, alpha, status: as in
      :class:`bfgs.BFGSState` (step_norm is the tangent-space norm of alpha * eta).
    """

    params: tuple
    frame: fr.Frame
    value: float
    grad: np.ndarray
    grad_norm: float
    H: np.ndarray | None
    iteration: int
    n_evals: int
    n_grad_evals: int
    prev_value: float
    step_norm: float
    alpha: float
    status: str

    @property
    def X(self) -> np.ndarray:
        point = self.params[1]
        if isinstance(point, fr.FixedRankPoint):
            return fr.to_dense(point)
        return np.stack([fr.to_dense(b) for b in point])  # a point of fixed_rank_blocks

    @property
    def xi(self) -> np.ndarray:
        return self.params[0]


def _rcond(P: np.ndarray, lu) -> float:
    """LAPACK estimate of 1 / cond_1(P) from its LU factors (O(M^2), no SVD)."""
    if not np.all(np.isfinite(lu[0])):
        return 0.0
    gecon = scipy.linalg.get_lapack_funcs("gecon", (lu[0],))
    rc, info = gecon(lu[0], np.abs(P).sum(axis=0).max(), norm="1")
    return float(rc) if info == 0 else 0.0


def rbfgs(
    value_and_grad: Callable[[Any, Any], Any],
    rank: int | None = None,
    value: Callable[[Any, Any], float] | None = None,
    *,
    mu: float = 1e-4,
    expand: bool = True,
    monotone_expand: bool = True,
    max_doublings: int = 30,
    max_halvings: int = 40,
    curvature_eps: float = 1e-10,
    descent_eps: float = 1e-12,
    cond_max: float = 1e10,
    manifold=fr,
) -> Optimizer:
    """Riemannian BFGS (Algorithm 2) on R^{n_xi} x M_r.

    Args:
      value_and_grad: ``(xi (n_xi,), X (m, n)) -> (value, (g_xi (n_xi,), g_X (m, n)))``,
        Euclidean gradients.
      rank: r; needed when ``init`` gets a dense X (it is truncated to rank r by SVD).
      value: optional cheap ``(xi, X) -> value`` for the line-search trials; without it every
        trial calls value_and_grad and the gradient of the accepted trial is reused.
      mu: sufficient-decrease coefficient of Algorithm 2 (paper: 1e-3 or 1e-4 work best).
      expand: allow the doubling phase of Algorithm 2 (False = halving only, fewer calls).
      monotone_expand: double only while the doubled step is also better than the current one
        (see :func:`linesearch.doubling_halving`; False = Algorithm 2 verbatim).
      cond_max: H is reset when the (LAPACK-estimated) 1-norm condition number of P_{x->y}
        exceeds this.
      manifold: the module of manifold operations, :mod:`.fixed_rank` (one (m, n) matrix, the
        default) or :mod:`.fixed_rank_blocks` (a (P, m, n) stack, one fixed-rank factor per
        block; points are tuples of :class:`fixed_rank.FixedRankPoint`).

    Returns:
      :class:`bfgs.Optimizer` over :class:`RBFGSState`; ``init((xi, X))`` with X dense or a
      :class:`fixed_rank.FixedRankPoint`; ``reset(state, params=None)``.
    """

    def to_point(X):
        if isinstance(X, fr.FixedRankPoint):
            return fr.FixedRankPoint(*(np.asarray(a, dtype=np.float64) for a in X))
        if isinstance(X, tuple) and all(isinstance(b, fr.FixedRankPoint) for b in X):
            return tuple(fr.FixedRankPoint(*(np.asarray(a, dtype=np.float64) for a in b)) for b in X)
        if rank is None:
            raise ValueError("rbfgs: pass rank= or give X as a FixedRankPoint")
        return manifold.from_matrix(X, rank)

    def evaluate(xi, point, f):
        val, (g_xi, g_X) = value_and_grad(xi, manifold.to_dense(point))
        g = np.concatenate([np.asarray(g_xi, dtype=np.float64).ravel(), manifold.to_coords(f, g_X)])
        return float(val), g

    def init(params) -> RBFGSState:
        xi, X = params
        xi = np.asarray(xi, dtype=np.float64)
        point = to_point(X)
        f = manifold.frame(point)
        val, g = evaluate(xi, point, f)
        return RBFGSState((xi, point), f, val, g, float(np.linalg.norm(g)), None, 0, 1, 1, np.inf, 0.0, 0.0, "init")

    def reset(state: RBFGSState, params=None) -> RBFGSState:
        if params is None:
            return state._replace(H=None, status="reset")
        new = init(params)
        return new._replace(
            iteration=state.iteration, n_evals=state.n_evals + 1, n_grad_evals=state.n_grad_evals + 1,
            prev_value=state.value, status="reset",
        )

    def step(state: RBFGSState) -> RBFGSState:
        xi, point = state.params
        fX = state.frame
        nx = xi.size
        g, H = state.grad, state.H
        it = state.iteration + 1
        if state.grad_norm == 0.0:
            return state._replace(iteration=it, prev_value=state.value, step_norm=0.0, alpha=0.0, status="stationary")
        status = "ok"
        if H is not None:
            d = -(H @ g)
            c = float(g @ d)
            if not (np.all(np.isfinite(d)) and c < -descent_eps * state.grad_norm * np.linalg.norm(d)):
                H, status = None, "restarted"
        n_vg = n_v = 0
        while True:
            if H is None:
                d = -g
                alpha0 = min(1.0, 1.0 / state.grad_norm)
            else:
                alpha0 = 1.0
            c = float(g @ d)
            eta_X = manifold.from_coords(fX, d[nx:])
            counts = [0, 0]

            def phi(a):
                p = manifold.retract(point, a * eta_X)
                x_new = xi + a * d[:nx]
                if value is None:
                    counts[0] += 1
                    f_new = manifold.frame(p)
                    val, g_new = evaluate(x_new, p, f_new)
                    return val, (x_new, p, f_new, g_new)
                counts[1] += 1
                return float(value(x_new, manifold.to_dense(p))), (x_new, p)

            res = doubling_halving(
                phi, state.value, c, alpha0, mu=mu, max_doublings=max_doublings,
                max_halvings=max_halvings, expand=expand, monotone=monotone_expand,
            )
            n_vg, n_v = n_vg + counts[0], n_v + counts[1]
            if res.alpha > 0.0 or H is None:
                break
            H, status = None, "restarted"
        if res.alpha <= 0.0:
            return state._replace(
                iteration=it, n_evals=state.n_evals + n_vg + n_v, n_grad_evals=state.n_grad_evals + n_vg,
                prev_value=state.value, step_norm=0.0, alpha=0.0, status="line_search_failed",
            )
        if value is None:
            xi_new, p_new, fY, g_new = res.payload
            val = res.value
        else:
            xi_new, p_new = res.payload
            fY = manifold.frame(p_new)
            val, g_new = evaluate(xi_new, p_new, fY)
            n_vg += 1

        # transport in coordinates: D = blockdiag(I, P), P = B_Y^T B_X (Prop. IV.2)
        P = manifold.transport_matrix(fX, fY)
        sd = res.alpha * d

        def T(v):
            return np.concatenate([v[:nx], P @ v[nx:]])

        s = T(sd)
        y = g_new - T(g)
        if H is not None:
            lu = scipy.linalg.lu_factor(P, check_finite=False)
            if _rcond(P, lu) < 1.0 / cond_max:
                H, status = None, "restarted"
            else:
                Ht = H.copy()
                Ht[nx:, :] = P @ Ht[nx:, :]  # D H
                # (D H) D^{-1}: right-multiply the X columns by P^{-1}: Z P^{-1} = (P^{-T} Z^T)^T
                Ht[:, nx:] = scipy.linalg.lu_solve(lu, Ht[:, nx:].T, trans=1).T
                H = Ht
        ys = float(y @ s)
        if ys > curvature_eps * np.linalg.norm(y) * np.linalg.norm(s):
            if H is None:
                H = (ys / float(y @ y)) * np.eye(g.size)
            H = bfgs_update(H, s, y)
        elif status == "ok":
            status = "skipped_update"
        return RBFGSState(
            (xi_new, p_new), fY, val, g_new, float(np.linalg.norm(g_new)), H, it,
            state.n_evals + n_vg + n_v, state.n_grad_evals + n_vg, state.value,
            float(np.linalg.norm(sd)), float(res.alpha), status,
        )

    return Optimizer(init, step, reset)
