"""One-dimensional searches used by the optimisers (host side, float64).

Every search works on a restriction ``phi(alpha)`` of the loss to a ray (or, on a manifold, to
the retraction curve ``alpha -> R_x(alpha * eta)``). Evaluating the loss is the expensive part of
training (seconds per call), so the searches are written to spend as few calls as possible:

- :func:`strong_wolfe` -- Nocedal & Wright, *Numerical Optimization* (2nd ed.), Algorithms 3.5
  and 3.6 (bracketing + zoom with safeguarded cubic interpolation). Every trial needs the value
  *and* the directional derivative, so the gradient at the accepted point comes for free; with a
  good quasi-Newton direction the unit step is usually accepted after one call.
- :func:`armijo_backtracking` -- sufficient decrease only, safeguarded quadratic interpolation.
- :func:`doubling_halving` -- the step-size rule of Algorithm 2 (RBFGS) of the paper: double
  while ``L(R(2 alpha eta)) - L0 < 2 mu alpha c``, then halve while
  ``L(R(alpha eta)) - L0 >= mu alpha c``; values are cached so no step is evaluated twice.
- :func:`minimize_decrease` -- an approximate 1-D minimiser (bracketing, parabolic steps and
  golden sections) that only ever returns a point with a strictly lower value than ``phi(0)``
  or ``alpha = 0``; used for the rank-augmentation step of Algorithm 1 (MFRA).

Callables receive a float ``alpha`` and return ``(value, payload)`` (or
``(value, derivative, payload)`` for :func:`strong_wolfe`); ``payload`` is anything the caller
wants back for the accepted step (e.g. the gradient and the new point), so nothing is recomputed.
Non-finite values are treated as "too far" and never accepted.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

__all__ = [
    "LineSearchResult",
    "strong_wolfe",
    "armijo_backtracking",
    "doubling_halving",
    "minimize_decrease",
]

_GOLDEN = 0.5 * (3.0 - math.sqrt(5.0))  # 0.381966...


class LineSearchResult(NamedTuple):
    """Outcome of a line search.

    alpha: accepted step (0.0 when nothing acceptable was found).
    value: phi(alpha) (phi(0) when alpha == 0).
    payload: what the callable returned with the accepted value (None when alpha == 0).
    n_evals: number of calls made to the callable(s).
    success: the search's own acceptance test holds (strong Wolfe / Armijo / decrease).
    derivative: phi'(alpha) when known (strong Wolfe), else nan.
    """

    alpha: float
    value: float
    payload: Any
    n_evals: int
    success: bool
    derivative: float = float("nan")


def _finite(x: float) -> bool:
    return bool(np.isfinite(x))


def _cubic_minimizer(a, fa, da, b, fb, db):
    """Minimiser of the cubic interpolating (a, fa, da) and (b, fb, db); None if it has none."""
    if a == b:
        return None
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if not np.isfinite(disc) or disc < 0.0:
        return None
    d2 = math.copysign(math.sqrt(disc), b - a)
    denom = db - da + 2.0 * d2
    if denom == 0.0:
        return None
    x = b - (b - a) * (db + d2 - d1) / denom
    return x if np.isfinite(x) else None


def _quadratic_minimizer(a, fa, da, b, fb):
    """Minimiser of the quadratic through (a, fa) with slope da at a and through (b, fb)."""
    h = b - a
    curv = (fb - fa - da * h) / (h * h)
    if not np.isfinite(curv) or curv <= 0.0:
        return None
    return a - da / (2.0 * curv)


def _parabola_vertex(a, fa, b, fb, c, fc):
    """Vertex of the parabola through three points (None when degenerate or a maximum)."""
    den = (b - a) * (fb - fc) - (b - c) * (fb - fa)
    num = (b - a) ** 2 * (fb - fc) - (b - c) ** 2 * (fb - fa)
    if den == 0.0 or not np.isfinite(den) or not np.isfinite(num):
        return None
    # positive curvature <=> the middle point is below the chord
    return b - 0.5 * num / den


def strong_wolfe(
    fdf: Callable[[float], tuple[float, float, Any]],
    f0: float,
    df0: float,
    alpha0: float = 1.0,
    *,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_evals: int = 20,
    alpha_max: float = 1e10,
    f_noise: float = 1e-10,
) -> LineSearchResult:
    """Strong-Wolfe line search (Nocedal & Wright Alg. 3.5 / 3.6, own implementation).

    Finds alpha > 0 with ``phi(alpha) <= f0 + c1 alpha df0`` and ``|phi'(alpha)| <= c2 |df0|``.

    Close to a minimiser the decrease ``c1 alpha df0`` the sufficient-decrease test asks for falls
    below the rounding error of ``phi`` itself (for a quadratic, f - f* ~ |g|^2 / 2 lambda: at
    |g| ~ 1e-8 that is ~1e-17, less than one ulp of f ~ 0.3), while the derivative is still
    accurate to ~1e-15. There the search would fail at a point that is not converged. As in
    Hager & Zhang's CG_DESCENT (SIAM J. Optim. 16, 2005), a trial is also accepted under the
    *approximate* Wolfe condition: ``phi(alpha) <= f0 + f_noise |f0|`` (no rise beyond the
    noise level of f) and ``|phi'(alpha)| <= c2 |df0|``; for a quadratic the derivative
    condition implies the decrease that the values can no longer resolve. ``f_noise = 0``
    switches this off.

    Args:
      fdf: ``alpha -> (phi(alpha), phi'(alpha), payload)``.
      f0, df0: phi(0) and phi'(0) (df0 < 0 required).
      alpha0: first trial step.
    Returns:
      :class:`LineSearchResult`. When the budget runs out before the curvature condition holds,
      the best point satisfying sufficient decrease is returned with ``success=False``; when no
      such point was found, ``alpha = 0``.
    """
    if not (df0 < 0.0):
        return LineSearchResult(0.0, f0, None, 0, False)
    n = 0
    # lo: best point so far satisfying sufficient decrease (alpha=0 initially)
    lo = (0.0, f0, df0, None)
    prev = lo
    a = float(alpha0)

    def armijo(alpha, f):
        return _finite(f) and f <= f0 + c1 * alpha * df0

    def approximate_wolfe(f, d):
        return _finite(f) and _finite(d) and f <= f0 + f_noise * abs(f0) and abs(d) <= -c2 * df0

    def zoom(lo, hi, n):
        # invariant: lo satisfies sufficient decrease with the lowest value seen;
        # (hi - lo) * phi'(lo) < 0, so a minimiser lies between them.
        while n < max_evals:
            a_lo, f_lo, d_lo, _ = lo
            a_hi, f_hi, d_hi, _ = hi
            lo_b, hi_b = min(a_lo, a_hi), max(a_lo, a_hi)
            width = hi_b - lo_b
            if width <= 1e-14 * max(1.0, hi_b):
                break
            if a_lo == 0.0 and not (_finite(f_hi) and f_hi < f0):
                # nothing decreased yet (an overshoot by orders of magnitude, typical of the first
                # step after a BFGS reset): back off along the quadratic model, safeguarded to
                # [1e-3, 0.5] a_hi; the cubic's [0.1, 0.9] bracket shrinks only ~3x per trial there
                x = _quadratic_minimizer(0.0, f0, df0, a_hi, f_hi) if _finite(f_hi) else None
                x = 0.1 * a_hi if x is None else min(max(x, 1e-3 * a_hi), 0.5 * a_hi)
            else:
                x = None
                if _finite(f_hi) and _finite(d_hi):
                    x = _cubic_minimizer(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi)
                if x is None and _finite(f_hi):
                    x = _quadratic_minimizer(a_lo, f_lo, d_lo, a_hi, f_hi)
                if x is None or not (lo_b + 0.1 * width <= x <= hi_b - 0.1 * width):
                    x = 0.5 * (a_lo + a_hi) if x is None else min(max(x, lo_b + 0.1 * width), hi_b - 0.1 * width)
            f, d, pl = fdf(x)
            n += 1
            if approximate_wolfe(f, d):
                return LineSearchResult(x, f, pl, n, True, d)
            if not armijo(x, f) or f >= f_lo:
                hi = (x, f, d, pl)
            else:
                if abs(d) <= -c2 * df0:
                    return LineSearchResult(x, f, pl, n, True, d)
                if d * (a_hi - a_lo) >= 0.0:
                    hi = lo
                lo = (x, f, d, pl)
        a_lo, f_lo, d_lo, pl_lo = lo
        return LineSearchResult(a_lo, f_lo, pl_lo, n, False, d_lo if a_lo > 0 else float("nan"))

    first = True
    while n < max_evals:
        f, d, pl = fdf(a)
        n += 1
        cur = (a, f, d, pl)
        if approximate_wolfe(f, d):
            return LineSearchResult(a, f, pl, n, True, d)
        if not armijo(a, f) or (not first and f >= prev[1]):
            return zoom(lo, cur, n)
        lo = cur
        if abs(d) <= -c2 * df0:
            return LineSearchResult(a, f, pl, n, True, d)
        if d >= 0.0:
            return zoom(cur, prev, n)
        # extrapolate: cubic step beyond a, safeguarded to [2a, 10a]
        x = _cubic_minimizer(prev[0], prev[1], prev[2], a, f, d)
        if x is None or x < 2.0 * a:
            x = 2.0 * a
        x = min(x, 10.0 * a, alpha_max)
        if x <= a:
            break
        prev, a, first = cur, x, False
    a_lo, f_lo, d_lo, pl_lo = lo
    return LineSearchResult(a_lo, f_lo, pl_lo, n, False, d_lo if a_lo > 0 else float("nan"))


def armijo_backtracking(
    phi: Callable[[float], tuple[float, Any]],
    f0: float,
    df0: float,
    alpha0: float = 1.0,
    *,
    c1: float = 1e-4,
    max_evals: int = 20,
    shrink_bounds: tuple[float, float] = (0.1, 0.5),
) -> LineSearchResult:
    """Backtracking until ``phi(alpha) <= f0 + c1 alpha df0`` (safeguarded quadratic steps).

    Each new trial is the minimiser of the quadratic through phi(0), phi'(0), phi(alpha),
    clipped to ``[lo * alpha, hi * alpha]`` with ``(lo, hi) = shrink_bounds``.
    """
    if not (df0 < 0.0):
        return LineSearchResult(0.0, f0, None, 0, False)
    a = float(alpha0)
    lo_f, hi_f = shrink_bounds
    for n in range(1, max_evals + 1):
        f, pl = phi(a)
        if _finite(f) and f <= f0 + c1 * a * df0:
            return LineSearchResult(a, f, pl, n, True)
        x = _quadratic_minimizer(0.0, f0, df0, a, f) if _finite(f) else None
        a = hi_f * a if x is None else min(max(x, lo_f * a), hi_f * a)
    return LineSearchResult(0.0, f0, None, max_evals, False)


def doubling_halving(
    phi: Callable[[float], tuple[float, Any]],
    f0: float,
    c: float,
    alpha0: float = 1.0,
    *,
    mu: float = 1e-4,
    max_doublings: int = 30,
    max_halvings: int = 40,
    expand: bool = True,
    monotone: bool = True,
) -> LineSearchResult:
    """Step-size rule of Algorithm 2 (RBFGS) of the paper's supplementary material.

    With ``c = g(grad L(x), eta) < 0``::

        while L(R(2 alpha eta)) - L0 <  2 mu alpha c:  alpha <- 2 alpha     (only if expand)
        while L(R(alpha eta))   - L0 >=   mu alpha c:  alpha <- alpha / 2

    Values are cached by alpha, so the step reached by doubling is not evaluated again.

    ``monotone=True`` (default) additionally requires ``L(R(2 alpha eta)) < L(R(alpha eta))`` to
    double. Without it, with a small mu and a (quasi-)Newton direction whose line minimum is
    near alpha = 1, ``2 alpha`` lands on the far side of the minimum with almost the same value
    as L0, still passes the (very weak) test and is accepted -- progress then stalls at steps of
    2 (observed on the R-BFGS tests). The check costs no extra call when the doubling is
    rejected (L(R(alpha eta)) is needed for the halving test anyway) and one extra call otherwise.
    Returns alpha = 0 (success False) if ``max_halvings`` halvings find no sufficient decrease.
    """
    if not (c < 0.0):
        return LineSearchResult(0.0, f0, None, 0, False)
    cache: dict[float, tuple[float, Any]] = {}

    def ev(a):
        if a not in cache:
            cache[a] = phi(a)
        return cache[a]

    def ok(a):
        f = ev(a)[0]
        return _finite(f) and f - f0 < mu * a * c

    a = float(alpha0)
    if expand:
        for _ in range(max_doublings):
            if ok(2.0 * a) and (not monotone or ev(2.0 * a)[0] < ev(a)[0]):
                a *= 2.0
            else:
                break
    for _ in range(max_halvings + 1):
        if ok(a):
            f, pl = cache[a]
            return LineSearchResult(a, f, pl, len(cache), True)
        a *= 0.5
    return LineSearchResult(0.0, f0, None, len(cache), False)


def minimize_decrease(
    phi: Callable[[float], tuple[float, Any]],
    f0: float,
    df0: float,
    t0: float,
    *,
    max_evals: int = 12,
    xtol: float = 0.02,
) -> LineSearchResult:
    """Approximate ``argmin_{t >= 0} phi(t)`` that only accepts decreases (for Algorithm 1).

    Phase 1 shrinks ``t`` (safeguarded quadratic interpolation from phi(0), phi'(0)) until
    ``phi(t) < f0``; phase 2 expands (quadratic model, at most 10x per step) until the value
    rises again, which brackets a minimum ``a < b < c`` with ``phi(b)`` lowest; phase 3 refines
    with parabolic steps through the bracket, falling back to golden sections, until the bracket
    is narrower than ``xtol * b``, the parabola through the bracket has its vertex within
    ``xtol * b`` of b (for a quadratic phi this stops after two or three calls), or the budget is
    spent. The returned point always satisfies
    ``phi(t) < f0``, or ``t = 0`` with ``value = f0`` if no decrease was found.

    Args:
      phi: ``t -> (value, payload)``.
      f0, df0: phi(0) and phi'(0) (df0 < 0: decreasing for t > 0).
      t0: first trial (> 0).
    """
    n = 0
    if not (df0 < 0.0) or not (t0 > 0.0):
        return LineSearchResult(0.0, f0, None, 0, False)
    t = float(t0)
    # phase 1: find a decrease
    while True:
        f, pl = phi(t)
        n += 1
        if _finite(f) and f < f0:
            break
        if n >= max_evals:
            return LineSearchResult(0.0, f0, None, n, False)
        x = _quadratic_minimizer(0.0, f0, df0, t, f) if _finite(f) else None
        t = 0.5 * t if x is None else min(max(x, 0.02 * t), 0.5 * t)
    a, fa = 0.0, f0
    b, fb, pb = t, f, pl
    # phase 2: expand while decreasing
    c = fc = None
    while n < max_evals:
        x = _quadratic_minimizer(0.0, f0, df0, b, fb)
        if a > 0.0:
            v = _parabola_vertex(a, fa, b, fb, 0.0, f0)
            if v is not None and abs(v - b) <= xtol * b and fb < min(fa, f0):
                # the three points (0, a, b) already fit a parabola with its minimum at b
                return LineSearchResult(b, fb, pb, n, True)
            x = v if v is not None else x
        x = 2.0 * b if (x is None or x <= 1.5 * b) else min(x, 10.0 * b)
        fx, px = phi(x)
        n += 1
        if _finite(fx) and fx < fb:
            a, fa, b, fb, pb = b, fb, x, fx, px
        else:
            c, fc = x, (fx if _finite(fx) else np.inf)
            break
    if c is None:
        return LineSearchResult(b, fb, pb, n, True)
    # phase 3: refine inside (a, c) around b
    while n < max_evals and (c - a) > xtol * b:
        u = _parabola_vertex(a, fa, b, fb, c, fc) if np.isfinite(fc) else None
        if u is not None and abs(u - b) <= 0.5 * xtol * b:
            break  # the parabola through the bracket has its minimum at b
        lo, hi = a + 0.05 * (c - a), c - 0.05 * (c - a)
        if u is None or not (lo <= u <= hi) or abs(u - b) < 0.01 * (c - a):
            u = b + _GOLDEN * (c - b) if (c - b) > (b - a) else b - _GOLDEN * (b - a)
        fu, pu = phi(u)
        n += 1
        if _finite(fu) and fu < fb:
            if u > b:
                a, fa = b, fb
            else:
                c, fc = b, fb
            b, fb, pb = u, fu, pu
        else:
            fu = fu if _finite(fu) else np.inf
            if u > b:
                c, fc = u, fu
            else:
                a, fa = u, fu
    return LineSearchResult(b, fb, pb, n, True)
