"""Rank augmentation, written once for every factorisation (Algorithm 1 of the paper, II.D.3).

:func:`rank_adaptive` wraps an inner optimiser (BFGS over the factors) and, every ``s``
iterations while the rank is below its maximum, calls a factorisation's ``augment``: MF
(:mod:`.mfra`, Algorithm 1 itself) and tensor trains (:mod:`.ttra`). An augmentation is one or
more *rank-one-block* steps of the same form: a direction ``D`` built from the top singular
triplets of a gradient matrix ``P`` (:func:`leading_triplets`), a 1-D search on
``t -> L(C - t D)`` that accepts only decreases (:func:`search_along`), and factors enlarged so
that they represent ``C - t D`` exactly (``C`` itself at ``t = 0``). So the loss never rises at
an augmentation.

Growth stops at the maximal rank or, with a :class:`Growth` rule, when the monitored loss (the
validation loss, or the training loss) decreased by at most ``tol`` (relative) since the last
augmentation point: the rank added last did not pay, and the fit goes on at the current rank.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from mlipress.optim.bfgs import BFGSState, Optimizer
from mlipress.optim.linesearch import minimize_decrease

__all__ = ["Augmentation", "Growth", "RankAdaptState", "leading_triplets", "search_along", "rank_adaptive",
           "resolve_interval"]


class Augmentation(NamedTuple):
    """Record of one rank augmentation.

    iteration: k at which it happened (after the k-th inner step).
    rank_before, rank_after: the rank (an int for MF, a tuple of TT ranks) before and after.
    loss_before, loss_after: the loss before and after (loss_after <= loss_before).
    h: the step of the line search (<= 0); a tuple of one step per TT boundary for TTRA.
    n_evals: objective calls spent (line searches, gradients, the evaluation at the new point).
    """

    iteration: int
    rank_before: Any
    rank_after: Any
    loss_before: float
    loss_after: float
    h: Any
    n_evals: int


class Growth(NamedTuple):
    """When to stop growing below the maximal rank (``mfra:auto``, ``ttra:auto``).

    At each augmentation point the monitored loss ``m`` (``monitor(params)``, e.g. the
    validation loss; the training loss when ``monitor`` is None) is compared with its value at
    the previous augmentation point (the start for the first): the rank grows again only if
    ``m_prev - m > tol * |m_prev|``. Otherwise growth stops for good at the current rank.
    """

    tol: float = 0.0
    monitor: Callable[[Any], float] | None = None


class RankAdaptState(NamedTuple):
    """State of :func:`rank_adaptive`.

    inner: the inner optimiser's state (:class:`bfgs.BFGSState`).
    iteration: k, the number of ``step`` calls.
    rank: current rank (int or tuple).
    rank_history: ((k, rank), ...): the rank in effect from iteration k on; starts with (0, r_init).
    augmentations: tuple of :class:`Augmentation`.
    n_aug_evals: objective calls made by the augmentations (besides the inner optimiser's).
    can_stop: False while the rank may still grow (a stalled inner optimiser must not end the
      fit before the next augmentation; read by :func:`loop.stop_reason`).
    monitor: the monitored loss at the last augmentation point (:class:`Growth`; inf before).
    grown_until: the iteration at which a :class:`Growth` rule stopped growth (0: it did not).
    Properties ``params, value, prev_value, grad_norm, n_evals, status`` mirror the inner
    state (``n_evals`` includes the augmentation calls).
    """

    inner: BFGSState
    iteration: int
    rank: Any
    rank_history: tuple
    augmentations: tuple
    n_aug_evals: int
    can_stop: bool
    monitor: float = float("inf")
    grown_until: int = 0

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


def leading_triplets(P: np.ndarray, d: int):
    """The top ``d`` singular triplets ``(U_D (m, d), S_D (d,), V_D (n, d))`` of ``P`` (m, n);
    of every block for a stack ``P`` (B, m, n): ``(B, m, d)``, ``(B, d)``, ``(B, n, d)``."""
    u, s, vt = np.linalg.svd(np.asarray(P, dtype=np.float64), full_matrices=False)
    return u[..., :d], s[..., :d], np.swapaxes(vt[..., :d, :], -1, -2)


def search_along(value_at: Callable[[float], float], f0: float, sigma: np.ndarray, norm_c: float,
                 norm_d: float, max_evals: int) -> tuple[float, float, int]:
    """``(t, value, n_evals)``: an approximate ``argmin_{t >= 0} value_at(t)`` that only accepts
    decreases, for ``value_at(t) = L(C - t D)`` with ``D`` built from singular values ``sigma``
    of the gradient (so ``d/dt L(C - t D)|_0 = -sum(sigma^2)``).

    First trial ``t0 = min(|f0| / sum(sigma^2), |C| / |D|)``: where the linear model of a
    non-negative loss reaches 0, capped at a step as large as ``C`` itself. ``t = 0`` (value
    ``f0``) when no decrease is found.
    """
    df0 = -float(np.sum(np.square(sigma)))
    if not (norm_d > 0.0 and np.isfinite(norm_d) and df0 < 0.0):
        return 0.0, f0, 0
    t0 = min(abs(f0) / -df0 if f0 != 0.0 else np.inf, norm_c / norm_d)
    if not (np.isfinite(t0) and t0 > 0.0):
        t0 = 1.0 / norm_d
    res = minimize_decrease(lambda t: (value_at(t), None), f0, df0, t0, max_evals=max_evals)
    return res.alpha, res.value, res.n_evals


def rank_adaptive(
    inner_opt: Optimizer,
    augment: Callable[[Any, Any, int], tuple],
    rank_of: Callable[[Any], Any],
    is_max: Callable[[Any], bool],
    *,
    interval: int,
    state_type: type = RankAdaptState,
    growth: Growth | None = None,
) -> Optimizer:
    """The loop of Algorithm 1 around any factorisation.

    Args:
      inner_opt: the optimiser over the factors (its params are what ``augment`` enlarges).
      augment: ``(inner_state, rank, k) -> (params, params_at_zero, rank_after, h, n_evals)``
        or None when the rank cannot grow: the enlarged factors at the searched step (a loss
        <= ``inner_state.value`` as the line search evaluated it) and at ``t = 0`` (the old
        tensor exactly), the new rank, the step(s) and the objective calls spent.
      rank_of: ``params -> rank``; is_max: ``rank -> bool`` (no further growth possible).
      interval: s, augment after every s-th step.
      state_type: :class:`RankAdaptState` or a subclass (factorisation-specific properties).
      growth: optional :class:`Growth` rule (stop growing below the maximal rank).

    Returns an :class:`Optimizer` over ``state_type``. After an augmentation the inner optimiser
    is restarted at the new factors (new parameter shape); if its loss there is above the loss
    before (round-off between two evaluations of the same tensor) the augmentation falls back
    to ``t = 0``, which represents the old tensor, so the loss is monotone.
    """

    def initial_monitor(inner) -> float:
        if growth is None:
            return float("inf")
        return float(growth.monitor(inner.params)) if growth.monitor is not None else float(inner.value)

    def init(params, *args, **kwargs):
        inner = inner_opt.init(params, *args, **kwargs)
        r = rank_of(inner.params)
        return state_type(inner, 0, r, ((0, r),), (), 0, is_max(r), initial_monitor(inner))

    def reset(state, params=None):
        if params is None:
            return state._replace(inner=inner_opt.reset(state.inner))
        r = rank_of(params)
        hist = state.rank_history if r == state.rank else state.rank_history + ((state.iteration, r),)
        return state._replace(inner=inner_opt.reset(state.inner, params), rank=r, rank_history=hist,
                              can_stop=is_max(r) or bool(state.grown_until))

    def keeps_growing(state, k):
        """The :class:`Growth` test at augmentation point k: ``(go on?, state)``."""
        if growth is None:
            return True, state
        m = float(growth.monitor(state.params)) if growth.monitor is not None else float(state.value)
        prev = state.monitor
        if np.isfinite(prev) and not (prev - m > growth.tol * abs(prev)):
            return False, state._replace(can_stop=True, grown_until=k)
        return True, state._replace(monitor=m)

    def grow(state, k):
        inner, f0, r = state.inner, state.inner.value, state.rank
        out = augment(inner, r, k)
        if out is None:
            return state._replace(can_stop=True)
        params, params_at_zero, r_new, h, n_aug = out
        inner_new = inner_opt.reset(inner, params)
        if not inner_new.value <= f0:
            h = tuple(0.0 for _ in h) if isinstance(h, tuple) else 0.0
            inner_new = inner_opt.reset(inner_new, params_at_zero)._replace(prev_value=f0)
        n_new = inner_new.n_evals - inner.n_evals
        rec = Augmentation(k, r, r_new, f0, inner_new.value, h, n_aug + n_new)
        return state._replace(
            inner=inner_new, rank=r_new, rank_history=state.rank_history + ((k, r_new),),
            augmentations=state.augmentations + (rec,), n_aug_evals=state.n_aug_evals + n_aug,
            can_stop=is_max(r_new),
        )

    def step(state):
        k = state.iteration + 1
        state = state._replace(inner=inner_opt.step(state.inner), iteration=k)
        if k % interval == 0 and not is_max(state.rank) and not state.grown_until:
            go, state = keeps_growing(state, k)
            if go:
                state = grow(state, k)
        return state

    return Optimizer(init, step, reset)
