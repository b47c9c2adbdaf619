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

Blocks: with stacked factors ``U (P, m, r)``, ``V (P, n, r)`` (one matrix per block, e.g. an
ACE's species pairs) everything above is blockwise: ``Chat_p = U_p V_p^T``, each block's top
triplets of its ``G_p``, one common step ``h`` along ``D = (U_Dp S_Dp V_Dp^T)_p`` (still
``<G, D> = sum_p sum(S_Dp^2) > 0``, so the loss never increases), every block enlarged by ``dr``.

The loop, the 1-D search and the monotone fallback are :mod:`.augment`'s, shared with the
tensor-train version (:mod:`.ttra`); this module holds what is specific to MF: the SVD of G
and the two enlarged factors. ``growth`` (:class:`augment.Growth`) stops growth below r_max
(``mfra:auto``).

Defaults follow the supplementary recommendations: s = 80 (``interval="auto"`` = 4% of
``max_iter``, i.e. within the recommended 3-5% of the budget), r_min = 2, delta_r = r_min.
"""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from mlipress.optim.augment import Augmentation, Growth, RankAdaptState, leading_triplets, rank_adaptive, \
    resolve_interval, search_along
from mlipress.optim.bfgs import Optimizer, bfgs

__all__ = ["Augmentation", "MFRAState", "mfra", "random_factors", "resolve_interval"]


class MFRAState(RankAdaptState):
    """State of :func:`mfra` (:class:`augment.RankAdaptState` over ``{"xi", "U", "V"}``; the inner
    BFGS state's ``aux`` is G = dL/dChat), plus ``Chat = U V^T``."""

    __slots__ = ()

    @property
    def Chat(self) -> np.ndarray:
        p = self.inner.params
        return np.asarray(_product(p["U"], p["V"]))


def _product(U, V):
    """``U V^T`` of one (m, r), (n, r) pair or of every block of (P, m, r), (P, n, r) stacks."""
    return jnp.einsum("...mr,...nr->...mn", jnp.asarray(U), jnp.asarray(V))


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
    growth: Growth | None = None,
    **bfgs_settings,
) -> Optimizer:
    """MFRA (Algorithm 1): BFGS on (xi, U, V) with rank augmentation every s iterations.

    Args:
      value_and_grad_dense: ``(xi (n_xi,), Chat (m, n)) -> (value, (g_xi, G (m, n)))``.
      r_max: maximal rank (never exceeded; the last increment is clipped).
      r_min: initial rank used by ``init`` when it is given ``{"xi", "shape"}`` (random
        factors); when U, V are given their rank is used.
      delta_r: rank increment (default r_min).
      interval: s, or "auto" (4% of ``max_iter``).
      value_dense: optional cheap ``(xi, Chat) -> value`` for the augmentation line search
        (otherwise value_and_grad_dense is called and its value used).
      ls_max_evals: budget of one augmentation line search.
      growth: optional :class:`augment.Growth`: stop growing when the monitored loss (a
        function of ``{"xi", "U", "V"}``) stops decreasing by more than ``tol``.
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
        val, (g_xi, G) = value_and_grad_dense(xi, _product(U, V))
        G = jnp.asarray(G)
        return (val, np.asarray(G, dtype=np.float64)), {"xi": g_xi, "U": jnp.einsum("...mn,...nr->...mr", G, V),
                                                         "V": jnp.einsum("...mn,...mr->...nr", G, U)}

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

    def augment(inner, r, k):
        p = inner.params
        U, V = np.asarray(p["U"]), np.asarray(p["V"])
        dr = min(dr_default, r_max - r, min(U.shape[-2], V.shape[-2]) - r)
        if dr <= 0:
            return None
        UD, SD, VD = leading_triplets(inner.aux, dr)  # aux: G at U V^T, kept from the last evaluation
        sq = np.sqrt(SD)[..., None, :]
        D = np.asarray(_product(UD * SD[..., None, :], VD))
        C = np.asarray(_product(U, V))
        t, _, n_ls = search_along(lambda t: v_dense(p["xi"], jnp.asarray(C - t * D)), inner.value, SD.ravel(),
                                  float(np.linalg.norm(C)), float(np.linalg.norm(D)), ls_max_evals)

        def enlarged(h):
            return {"xi": p["xi"], "U": jnp.asarray(np.concatenate([U, h * UD * sq], axis=-1)),
                    "V": jnp.asarray(np.concatenate([V, VD * sq], axis=-1))}

        return enlarged(-t), enlarged(0.0), r + dr, -t, n_ls

    def is_max(r):
        return r >= r_max

    base = rank_adaptive(inner_opt, augment, lambda p: int(p["U"].shape[-1]), is_max, interval=s_int,
                         state_type=MFRAState, growth=growth)

    def init(params, seed: int = 0) -> MFRAState:
        return base.init(_as_params(params, seed))

    def reset(state: MFRAState, params=None) -> MFRAState:
        return base.reset(state, None if params is None else _as_params(params, 0))

    return Optimizer(init, base.step, reset)
