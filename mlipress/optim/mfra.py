"""Matrix factorisation with rank augmentation, MFRA (Algorithm 1 of the paper, section II.D.3).

Parameters ``{"xi": (n_xi,), "U": (m, r), "V": (n, r)}`` with ``Chat = U V^T`` (m = N_T^2,
n = N_f N_b). The objective is given densely, ``value_and_grad_dense(xi, Chat) ->
(value, (g_xi, G))`` with ``G = dL/dChat`` (m, n); the factored gradients are
``dL/dU = G V`` and ``dL/dV = G^T U`` (section II.D.2.a).

Algorithm 1, for k = 1, 2, ...:

    one BFGS step on L(xi, U V^T)                       (:func:`bfgs.bfgs`, curvature kept)
    if k mod s == 0 and r < r_max:
        G = dL/dChat at Chat = U V^T                    (kept from the last evaluation, no call)
        G ~ U~ Sigma V~^T, top dr = min(delta_r, r_max - r) triplets U_D, S_D, V_D
        h = argmin_h L(xi, U V^T + h U_D S_D V_D^T)     (1-D search, below)
        U <- [U | h U_D S_D^{1/2}],  V <- [V | V_D S_D^{1/2}],  r <- r + dr
        reset the BFGS curvature (new parameter shape)

Sign of h: ``d/dh L(xi, U V^T + h D)|_0 = <G, U_D S_D V_D^T> = sum(S_D^2) > 0``, so the loss
decreases for h < 0. The search is done over ``t = -h >= 0`` with
:func:`linesearch.minimize_decrease`, which returns only points with a strictly lower loss (or
t = 0, in which case the new U columns are zero and the loss is unchanged), so the loss never
increases at an augmentation. First trial: ``t0 = min(|L|/sum(S_D^2), |Chat|_F/|D|_F)`` (the
step at which the linear model of a non-negative loss reaches 0, capped at a step as large as
Chat itself).

Defaults follow the supplementary recommendations: s = 80 (``interval="auto"`` = 4% of
``max_iter``, i.e. within the recommended 3-5% of the budget), r_min = 2, delta_r = r_min.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import numpy as np

from mlipress.optim.bfgs import BFGSState, Optimizer, bfgs
from mlipress.optim.linesearch import minimize_decrease

__all__ = ["Augmentation", "MFRAState", "mfra", "random_factors", "resolve_interval"]


class Augmentation(NamedTuple):
    """Record of one rank augmentation (Algorithm 1).

    iteration: k at which it happened (after the k-th BFGS step).
    rank_before, rank_after: r before and after.
    loss_before, loss_after: L(xi, U V^T) before and after (loss_after <= loss_before).
    h: the step of the line search (<= 0).
    n_evals: objective calls spent (line search + the gradient at the new point).
    """

    iteration: int
    rank_before: int
    rank_after: int
    loss_before: float
    loss_after: float
    h: float
    n_evals: int


class MFRAState(NamedTuple):
    """State of :func:`mfra`.

    inner: the :class:`bfgs.BFGSState` on ``{"xi", "U", "V"}`` (its ``aux`` is G = dL/dChat).
    iteration: k, the number of ``step`` calls.
    rank: current r.
    rank_history: ((k, r), ...): rank r in effect from iteration k on; starts with (0, r_init).
    augmentations: tuple of :class:`Augmentation`.
    n_aug_evals: objective calls made by the augmentation line searches.
    can_stop: False while r < r_max (a stalled BFGS must not end training before the next
      augmentation; used by :func:`bfgs.minimize`).
    Properties ``params, value, prev_value, grad_norm, n_evals, status, Chat`` mirror the inner
    state (``n_evals`` includes the augmentation calls).
    """

    inner: BFGSState
    iteration: int
    rank: int
    rank_history: tuple
    augmentations: tuple
    n_aug_evals: int
    can_stop: bool

    @property
    def params(self):
        return self.inner.params

    @property
    def value(self) -> float:
        return self.inner.value

    @property
    def prev_value(self) -> float:
        return self.inner.prev_value

    @property
    def grad_norm(self) -> float:
        return self.inner.grad_norm

    @property
    def n_evals(self) -> int:
        return self.inner.n_evals + self.n_aug_evals

    @property
    def status(self) -> str:
        return self.inner.status

    @property
    def Chat(self) -> np.ndarray:
        p = self.inner.params
        return np.asarray(p["U"]) @ np.asarray(p["V"]).T


def resolve_interval(interval, max_iter: int | None) -> int:
    """s: an int, or "auto" = max(1, round(0.04 * max_iter)) (supplementary recommendations)."""
    if interval == "auto":
        if max_iter is None:
            raise ValueError('interval="auto" needs max_iter')
        return max(1, int(round(0.04 * max_iter)))
    s = int(interval)
    if s < 1:
        raise ValueError("interval must be >= 1")
    return s


def random_factors(m: int, n: int, r: int, *, scale: float = 0.1, seed: int = 0):
    """Random initial factors U (m, r), V (n, r) with N(0, scale^2) entries (Algorithm 1 input)."""
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((m, r)), scale * rng.standard_normal((n, r))


def mfra(
    value_and_grad_dense: Callable[[Any, Any], Any],
    *,
    r_max: int,
    r_min: int = 2,
    delta_r: int | None = None,
    interval: int | str = 80,
    max_iter: int | None = None,
    value_dense: Callable[[Any, Any], float] | None = None,
    ls_max_evals: int = 12,
    **bfgs_settings,
) -> Optimizer:
    """MFRA (Algorithm 1): BFGS on (xi, U, V) with rank augmentation every s iterations.

    Args:
      value_and_grad_dense: ``(xi (n_xi,), Chat (m, n)) -> (value, (g_xi, G (m, n)))``.
      r_max: maximal rank (never exceeded; the last increment is clipped).
      r_min: initial rank used by ``init`` when it is given ``{"xi", "Chat"}`` / a shape
        (random factors); when U, V are given their rank is used.
      delta_r: rank increment (default r_min).
      interval: s, or "auto" (4% of ``max_iter``).
      value_dense: optional cheap ``(xi, Chat) -> value`` for the augmentation line search
        (otherwise value_and_grad_dense is called and its value used).
      ls_max_evals: budget of one augmentation line search.
      **bfgs_settings: passed to :func:`bfgs.bfgs` (line_search, c1, c2, ...).

    Returns:
      :class:`bfgs.Optimizer` over :class:`MFRAState`. ``init(params, seed=0)`` takes
      ``{"xi", "U", "V"}``, or ``{"xi", "shape": (m, n)}`` for random rank-r_min factors.
    """
    s_int = resolve_interval(interval, max_iter)
    dr_default = r_min if delta_r is None else int(delta_r)
    if dr_default < 1:
        raise ValueError("delta_r must be >= 1")

    def vg(params):
        xi, U, V = params["xi"], params["U"], params["V"]
        val, (g_xi, G) = value_and_grad_dense(xi, U @ V.T)
        G = jnp.asarray(G)
        return (val, np.asarray(G, dtype=np.float64)), {"xi": g_xi, "U": G @ V, "V": G.T @ U}

    def v_dense(xi, C):
        if value_dense is not None:
            return float(value_dense(xi, C))
        return float(value_and_grad_dense(xi, C)[0])

    inner_opt = bfgs(vg, has_aux=True, **bfgs_settings)

    def _as_params(params, seed):
        xi = jnp.asarray(params["xi"], dtype=jnp.float64)
        if "U" in params:
            U, V = params["U"], params["V"]
        else:
            m, n = params["shape"]
            U, V = random_factors(m, n, r_min, seed=seed)
        return {"xi": xi, "U": jnp.asarray(U, dtype=jnp.float64), "V": jnp.asarray(V, dtype=jnp.float64)}

    def init(params, seed: int = 0) -> MFRAState:
        p = _as_params(params, seed)
        r = int(p["U"].shape[1])
        inner = inner_opt.init(p)
        return MFRAState(inner, 0, r, ((0, r),), (), 0, r >= r_max)

    def reset(state: MFRAState, params=None) -> MFRAState:
        if params is None:
            return state._replace(inner=inner_opt.reset(state.inner))
        p = _as_params(params, 0)
        r = int(p["U"].shape[1])
        hist = state.rank_history if r == state.rank else state.rank_history + ((state.iteration, r),)
        return state._replace(inner=inner_opt.reset(state.inner, p), rank=r, rank_history=hist, can_stop=r >= r_max)

    def augment(state: MFRAState, k: int) -> MFRAState:
        inner = state.inner
        p = inner.params
        xi = p["xi"]
        U, V = np.asarray(p["U"]), np.asarray(p["V"])
        m, n = U.shape[0], V.shape[0]
        r = state.rank
        dr = min(dr_default, r_max - r, min(m, n) - r)
        if dr <= 0:
            return state._replace(can_stop=True)
        G = inner.aux
        Ug, Sg, Vgt = np.linalg.svd(G, full_matrices=False)
        UD, SD, VD = Ug[:, :dr], Sg[:dr], Vgt[:dr].T
        D = (UD * SD) @ VD.T
        C = U @ V.T
        f0 = inner.value
        df0 = -float(SD @ SD)  # d/dt L(C - t D) at t = 0
        nD = float(np.linalg.norm(D))
        n_ls = 0
        t = 0.0
        if nD > 0.0 and np.isfinite(nD):
            t0 = min(abs(f0) / -df0 if f0 != 0.0 else np.inf, float(np.linalg.norm(C)) / nD)
            if not (np.isfinite(t0) and t0 > 0.0):
                t0 = 1.0 / nD
            res = minimize_decrease(lambda t: (v_dense(xi, jnp.asarray(C - t * D)), None), f0, df0, t0,
                                    max_evals=ls_max_evals)
            t, n_ls = res.alpha, res.n_evals
        h = -t
        sq = np.sqrt(SD)
        new = {
            "xi": xi,
            "U": jnp.asarray(np.hstack([U, h * UD * sq])),
            "V": jnp.asarray(np.hstack([V, VD * sq])),
        }
        inner_new = inner_opt.reset(inner, new)
        if not inner_new.value <= f0:
            # the gradient evaluation disagrees with the line search value (should not happen for a
            # deterministic loss); keep the loss monotone by falling back to h = 0
            h = 0.0
            new["U"] = jnp.asarray(np.hstack([U, np.zeros((m, dr))]))
            inner_new = inner_opt.reset(inner_new, new)
            inner_new = inner_new._replace(prev_value=f0)
        rec = Augmentation(k, r, r + dr, f0, inner_new.value, float(h), n_ls + inner_new.n_evals - inner.n_evals)
        return state._replace(
            inner=inner_new, rank=r + dr, rank_history=state.rank_history + ((k, r + dr),),
            augmentations=state.augmentations + (rec,), n_aug_evals=state.n_aug_evals + n_ls,
            can_stop=(r + dr) >= min(r_max, m, n),
        )

    def step(state: MFRAState) -> MFRAState:
        k = state.iteration + 1
        state = state._replace(inner=inner_opt.step(state.inner), iteration=k)
        if k % s_int == 0 and state.rank < r_max:
            state = augment(state, k)
        return state

    return Optimizer(init, step, reset)
