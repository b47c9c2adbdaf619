"""The one iteration loop and the one set of stopping rules every optimiser runs under.

Contract: an :class:`~mlipress.optim.bfgs.Optimizer` ``(init, step, reset)`` and its state
(``value``, ``prev_value``, ``grad_norm``, ``status``, optionally ``can_stop``). :func:`iterate`
steps it; after each step ``between`` may replace the state (an exact linear solve between
steps, a reset) and ``after`` logs and checkpoints. The
stopping rules (:class:`StopRules`, :func:`stop_reason`) are written here once: the fitting
workflow (:mod:`mlipress.fit.trainer`: every model, dense or compressed, BFGS, R-BFGS,
MFRA) and the bare :func:`minimize` of the optimiser tests use the same ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["StopRules", "stop_reason", "iterate", "minimize", "converged"]


@dataclass(frozen=True)
class StopRules:
    """When to stop: after ``max_iter`` iterations; when ``|g| <= gtol``; when the line search
    fails or the gradient vanishes; when ``f`` decreased by at most ``ftol * |f|`` over the last
    ``ftol_window`` iterations (``ftol = 0``: off); after ``max_time`` seconds (0: no limit).
    The convergence tests are skipped while the state says ``can_stop = False`` (MFRA before
    the maximal rank) or the caller's ``may_converge(iteration)`` is False (pre-training)."""

    max_iter: int
    gtol: float = 0.0
    ftol: float = 0.0
    ftol_window: int = 1
    max_time: float = 0.0


def stop_reason(state, recent: list, rules: StopRules, elapsed: float = 0.0, may_converge: bool = True) -> str:
    """Why to stop after this step ('' to go on). ``recent``: the values of ``f`` since the
    window started, the current one last."""
    if may_converge and getattr(state, "can_stop", True):
        if state.grad_norm <= rules.gtol:
            return f"gradient norm {state.grad_norm:.3g} <= gtol"
        if getattr(state, "status", "") in ("line_search_failed", "stationary"):
            return f"optimiser status {state.status}"
        w = rules.ftol_window
        if rules.ftol > 0 and w and len(recent) > w:
            old = recent[-1 - w]
            if np.isfinite(old) and old - state.value <= rules.ftol * max(abs(old), abs(state.value), 1e-300):
                return f"relative decrease < ftol over {w} iterations"
    if rules.max_time and elapsed >= rules.max_time:
        return f"time limit ({rules.max_time:g} s)"
    return ""


def iterate(
    opt,
    state,
    rules: StopRules,
    *,
    start: int = 0,
    recent: list | None = None,
    between: Callable[[Any, int], tuple] | None = None,
    after: Callable[[Any, int, str], str] | None = None,
    elapsed: Callable[[], float] = lambda: 0.0,
    may_converge: Callable[[int], bool] = lambda it: True,
):
    """Step ``opt`` from ``state`` (after ``start`` iterations) until a rule stops it.

    After every step: ``between(state, iteration) -> (state, restart_window)`` may change the
    state (an exact solve, a reset; the iteration count is kept) and restart the ``ftol``
    window (after pre-training); then the rules give a reason to stop ('' to go on); then
    ``after(state, iteration, reason) -> reason`` logs, checkpoints, and may stop too (e.g.
    "callback"). Returns ``(state, iterations done, reason)``; the reason is
    ``"max_iter (N)"`` when the budget ran out.
    """
    recent = [state.value] if recent is None else recent
    it = start
    while it < rules.max_iter:
        state = opt.step(state)
        it += 1
        recent.append(state.value)
        if between is not None:
            state, restart = between(state, it)
            if restart:
                recent[:] = [state.value]
        reason = stop_reason(state, recent, rules, elapsed(), may_converge(it))
        if after is not None:
            reason = after(state, it, reason)
        if reason:
            return state, it, reason
    return state, it, f"max_iter ({rules.max_iter})"


def minimize(opt, params, max_iter: int, *, gtol: float = 0.0, ftol: float = 0.0,
             callback: Callable[[Any], Any] | None = None):
    """Run ``opt`` from ``params`` for at most ``max_iter`` steps under :func:`stop_reason`
    (relative decrease over one iteration); ``callback(state)`` after every step, True stops."""

    def after(state, it, reason):
        return reason or ("callback" if callback is not None and callback(state) else "")

    state, _, _ = iterate(opt, opt.init(params), StopRules(max_iter, gtol, ftol, 1), after=after)
    return state


def converged(state, *, gtol: float = 1e-6, ftol: float = 0.0) -> bool:
    """:func:`stop_reason` of one step (``prev_value`` -> ``value``) says stop; False before
    the first step (``prev_value`` infinite)."""
    if state.grad_norm <= gtol:
        return True
    if not math.isfinite(state.prev_value):
        return False
    return bool(stop_reason(state, [state.prev_value, state.value], StopRules(0, gtol, ftol, 1)))
