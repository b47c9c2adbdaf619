"""Euclidean BFGS over a parameter pytree (MLIP-2 training, REFERENCE.md section 3).

Every optimiser in :mod:`mlipress.optim` is a pair ``(init, step)`` (plus ``reset``) bundled in
an :class:`Optimizer`; ``init(params) -> state`` evaluates the objective once and
``step(state) -> state`` performs one iteration. States are immutable NamedTuples carrying at
least ``params, value, prev_value, grad_norm, n_evals, iteration, status``, so one loop and
one set of stopping rules (:mod:`.loop`) serve BFGS, Riemannian BFGS (:mod:`.rbfgs`) and rank
augmentation (:mod:`.mfra`) alike.

BFGS here: the pytree is flattened with ``jax.flatten_util.ravel_pytree`` to ``x`` of shape
(n,); the inverse Hessian approximation ``H`` (n, n) is a dense float64 NumPy matrix (n is at most
a few thousand for an MTP, and a loss evaluation costs far more than O(n^2) host work).

One iteration (Nocedal & Wright, Alg. 6.1):

    d = -H g                    (H = None means "identity, no curvature yet": d = -g)
    if g.d >= -eps |g||d|:      not a descent direction -> drop curvature, d = -g
    alpha by line search        (strong Wolfe by default; first trial 1, or 1/|g| when H = None)
    s = alpha d, y = g_new - g
    if y.s > eps_c |y||s|:      H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T, rho = 1/y.s
                                (H = None is first replaced by (y.s / y.y) I, N&W eq. 6.20)
    else:                       the update is skipped (curvature condition fails)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
from jax.flatten_util import ravel_pytree

from mlipress.optim.linesearch import armijo_backtracking, strong_wolfe

__all__ = ["Optimizer", "BFGSState", "bfgs", "bfgs_update"]


class Optimizer(NamedTuple):
    """``(init, step, reset)`` triple returned by every optimiser factory.

    init(params) -> state; step(state) -> state; reset(state, params=None) -> state drops the
    curvature information (and, if ``params`` is given, restarts from those parameters, which may
    have a different shape -- e.g. after the linear coefficients were solved exactly or the rank
    changed), keeping the iteration and evaluation counters.
    """

    init: Callable[..., Any]
    step: Callable[[Any], Any]
    reset: Callable[..., Any]


class BFGSState(NamedTuple):
    """State of :func:`bfgs`.

    params: parameter pytree at the current iterate.
    value: loss at ``params``.
    grad: (n,) float64 flat gradient in ``ravel_pytree(params)`` order.
    grad_norm: Euclidean norm of ``grad``.
    H: (n, n) inverse Hessian approximation, or None (identity, no curvature yet).
    iteration: number of ``step`` calls so far.
    n_evals: objective calls so far (value_and_grad and value together).
    n_grad_evals: value_and_grad calls so far.
    prev_value: loss before the last step (inf after init/reset with new params).
    step_norm: |x_{k+1} - x_k| of the last step (0 if it failed).
    alpha: accepted step length of the last line search.
    aux: auxiliary output of ``value_and_grad`` at ``params`` (``has_aux=True``), else None.
    status: "init", "ok", "skipped_update" (y.s too small), "restarted" (non-descent direction,
      H dropped), "reset" (by the caller), "line_search_failed" (no decrease even along -g; the
      iterate is unchanged) or "stationary" (g = 0).
    """

    params: Any
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
    aux: Any
    status: str
    h0: np.ndarray | None = None


def bfgs_update(H: np.ndarray, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inverse BFGS update ``(I - rho s y^T) H (I - rho y s^T) + rho s s^T`` (N&W eq. 6.17).

    Written for a general (not necessarily symmetric) H, O(n^2):
    ``H - rho s (y^T H) - rho (H y) s^T + (rho^2 y^T H y + rho) s s^T`` with ``rho = 1 / y.s``.
    This is also the update of Algorithm 2 (RBFGS) with ``H~`` in place of ``H``.
    """
    rho = 1.0 / float(y @ s)
    Hy = H @ y
    yH = y @ H
    c = rho * rho * float(y @ Hy) + rho
    out = H - np.outer(s, rho * yH - c * s)  # two rank-1 terms, one temporary each
    out -= np.outer(rho * Hy, s)
    return out


def _flat(tree) -> np.ndarray:
    return np.asarray(ravel_pytree(tree)[0], dtype=np.float64)


def bfgs(
    value_and_grad: Callable[[Any], Any],
    value: Callable[[Any], float] | None = None,
    *,
    line_search: str = "wolfe",
    c1: float = 1e-4,
    c2: float = 0.9,
    max_ls_evals: int = 20,
    curvature_eps: float = 1e-10,
    descent_eps: float = 1e-12,
    has_aux: bool = False,
    precondition: Callable[[Any], np.ndarray] | None = None,
) -> Optimizer:
    """BFGS with a dense inverse Hessian over a parameter pytree.

    Args:
      value_and_grad: ``params -> (value, grad_pytree)``; with ``has_aux=True``
        ``params -> ((value, aux), grad_pytree)`` and ``state.aux`` holds ``aux`` at the iterate.
      value: optional cheap ``params -> value`` used for the backtracking trials after the first
        (``line_search="armijo"`` only; the strong-Wolfe search needs gradients at every trial).
      line_search: "wolfe" (strong Wolfe, c1, c2) or "armijo" (backtracking; the curvature check
        ``y.s > curvature_eps |y||s|`` then decides whether H is updated).
      max_ls_evals: evaluation budget of one line search.
      curvature_eps: relative threshold for skipping the update.
      descent_eps: relative threshold of the descent test ``g.d < -descent_eps |g||d|``.
      precondition: optional ``(params, grad) -> (n,)`` positive diagonal ``h0`` (``grad``: the
        flat gradient at ``params``, just evaluated) used instead of the
        identity whenever there is no curvature yet (at init, after a reset or a restart):
        ``d = -h0 g``, first update from ``(y.s / y.h0 y) diag(h0)``. BFGS started this way is
        BFGS in the rescaled variables ``x / sqrt(h0)``; with ``h0`` = inverse Gauss-Newton
        diagonal it removes the orders-of-magnitude spread between MTP coefficients that
        otherwise stalls the first hundreds of iterations. Evaluated at init and at every
        ``reset(state, params)``.

    Returns:
      :class:`Optimizer` ``(init, step, reset)`` over :class:`BFGSState`.
    """
    if line_search not in ("wolfe", "armijo"):
        raise ValueError(f"line_search must be 'wolfe' or 'armijo', got {line_search!r}")

    def vg(params):
        out, g = value_and_grad(params)
        f, aux = out if has_aux else (out, None)
        return float(f), _flat(g), aux

    def diag(params, g):
        if precondition is None:
            return None
        h0 = np.asarray(precondition(params, g), dtype=np.float64).ravel()
        if not (np.all(np.isfinite(h0)) and np.all(h0 > 0)):
            raise ValueError("precondition must return a finite positive diagonal")
        return h0

    def init(params) -> BFGSState:
        f, g, aux = vg(params)
        return BFGSState(params, f, g, float(np.linalg.norm(g)), None, 0, 1, 1, np.inf, 0.0, 0.0, aux, "init", diag(params, g))

    def reset(state: BFGSState, params=None) -> BFGSState:
        if params is None:
            return state._replace(H=None, status="reset")
        f, g, aux = vg(params)
        return state._replace(
            params=params, value=f, grad=g, grad_norm=float(np.linalg.norm(g)), H=None,
            n_evals=state.n_evals + 1, n_grad_evals=state.n_grad_evals + 1,
            prev_value=state.value, step_norm=0.0, alpha=0.0, aux=aux, status="reset", h0=diag(params, g),
        )

    def search(x, unravel, f0, g, d, alpha0):
        df0 = float(g @ d)
        counts = [0, 0]  # value_and_grad calls, value calls

        def full(a):
            counts[0] += 1
            p = unravel(x + a * d)
            f, gn, aux = vg(p)
            return f, (p, gn, aux)

        if line_search == "wolfe":
            def fdf(a):
                f, pl = full(a)
                return f, float(pl[1] @ d), pl

            res = strong_wolfe(fdf, f0, df0, alpha0, c1=c1, c2=c2, max_evals=max_ls_evals)
        else:
            def phi(a):
                if counts[0] == 0 or value is None:
                    return full(a)
                counts[1] += 1
                return float(value(unravel(x + a * d))), None

            res = armijo_backtracking(phi, f0, df0, alpha0, c1=c1, max_evals=max_ls_evals)
            if res.alpha > 0.0 and res.payload is None:  # accepted a value-only trial
                f, pl = full(res.alpha)
                res = res._replace(value=f, payload=pl)
        return res, counts

    def step(state: BFGSState) -> BFGSState:
        x, unravel = ravel_pytree(state.params)
        x = np.asarray(x, dtype=np.float64)
        g, H = state.grad, state.H
        it = state.iteration + 1
        if state.grad_norm == 0.0:
            return state._replace(iteration=it, prev_value=state.value, step_norm=0.0, alpha=0.0, status="stationary")
        status = "ok"
        if H is not None:
            d = -(H @ g)
            gd = float(g @ d)
            if not (np.all(np.isfinite(d)) and gd < -descent_eps * state.grad_norm * np.linalg.norm(d)):
                H, status = None, "restarted"
        n_vg = n_v = 0
        # directions in order: quasi-Newton, preconditioned gradient, plain gradient; the next
        # one is tried only when the line search finds no decrease along the previous one
        tries = ([("H", d)] if H is not None else []) + ([("h0", -state.h0 * g)] if state.h0 is not None else [])
        tries.append(("g", -g))
        for k, (kind, d) in enumerate(tries):
            if k > 0:
                H, status = None, "restarted"
            alpha0 = min(1.0, 1.0 / state.grad_norm) if kind == "g" else 1.0
            res, (a, b) = search(x, unravel, state.value, g, d, alpha0)
            n_vg, n_v = n_vg + a, n_v + b
            if res.alpha > 0.0:
                break
        if res.alpha <= 0.0:
            return state._replace(
                iteration=it, n_evals=state.n_evals + n_vg + n_v, n_grad_evals=state.n_grad_evals + n_vg,
                prev_value=state.value, step_norm=0.0, alpha=0.0, status="line_search_failed",
            )
        p_new, g_new, aux = res.payload
        s = res.alpha * d
        y = g_new - g
        ys = float(y @ s)
        if ys > curvature_eps * np.linalg.norm(y) * np.linalg.norm(s):
            if H is None:
                h0 = np.ones(x.size) if state.h0 is None else state.h0
                H = np.diag((ys / float(y @ (h0 * y))) * h0)
            H = bfgs_update(H, s, y)
        elif status == "ok":
            status = "skipped_update"
        return BFGSState(
            p_new, res.value, g_new, float(np.linalg.norm(g_new)), H, it,
            state.n_evals + n_vg + n_v, state.n_grad_evals + n_vg, state.value,
            float(np.linalg.norm(s)), float(res.alpha), aux, status, state.h0,
        )

    return Optimizer(init, step, reset)
