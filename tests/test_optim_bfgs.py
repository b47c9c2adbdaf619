"""Euclidean BFGS, the line searches and the shared loop (mlipress.optim.bfgs / .linesearch)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlipress  # noqa: F401  (enables float64)
from mlipress.optim import bfgs, bfgs_update, converged, minimize
from mlipress.optim.linesearch import (
    armijo_backtracking,
    doubling_halving,
    minimize_decrease,
    strong_wolfe,
)


def rosenbrock(p):
    x = p["x"]
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


ROSEN_VG = jax.jit(jax.value_and_grad(rosenbrock))
ROSEN_V = jax.jit(rosenbrock)


@pytest.mark.parametrize("line_search", ["wolfe", "armijo"])
def test_rosenbrock_converges_to_one_one(line_search):
    calls = {"vg": 0, "v": 0}

    def vg(p):
        calls["vg"] += 1
        return ROSEN_VG(p)

    def v(p):
        calls["v"] += 1
        return ROSEN_V(p)

    opt = bfgs(vg, v, line_search=line_search)
    values = []
    state = minimize(opt, {"x": jnp.array([-1.2, 1.0])}, 200, gtol=1e-10,
                     callback=lambda s: values.append(s.value))
    np.testing.assert_allclose(np.asarray(state.params["x"]), [1.0, 1.0], atol=1e-6)
    assert state.value < 1e-12
    assert state.grad_norm <= 1e-10
    assert np.all(np.diff(values) <= 0.0)  # monotone
    assert state.n_evals == calls["vg"] + calls["v"]
    assert state.n_grad_evals == calls["vg"]
    assert state.iteration < 80
    # quasi-Newton: most steps accepted at the first trial
    assert state.n_evals < 1.8 * state.iteration


def test_quadratic_over_pytree_known_minimiser():
    rng = np.random.default_rng(0)
    n = 7
    Q = rng.standard_normal((n, n))
    A = Q @ Q.T + n * np.eye(n)
    bvec = rng.standard_normal(n)
    x_star = np.linalg.solve(A, bvec)

    def f(p):
        x = jnp.concatenate([p["a"], p["b"].ravel(), p["c"][None]])
        return 0.5 * x @ A @ x - bvec @ x

    opt = bfgs(jax.jit(jax.value_and_grad(f)))
    p0 = {"a": jnp.zeros(2), "b": jnp.ones((2, 2)), "c": jnp.array(3.0)}
    state = minimize(opt, p0, 100, gtol=1e-9)
    assert set(state.params) == {"a", "b", "c"} and state.params["b"].shape == (2, 2)
    x = np.concatenate([state.params["a"], np.ravel(state.params["b"]), [state.params["c"]]])
    np.testing.assert_allclose(x, x_star, atol=1e-10)
    assert state.status == "ok" and state.iteration <= 3 * n
    assert state.n_evals <= state.iteration + 2  # unit steps accepted after the first iteration
    # the inverse Hessian approximation approaches A^{-1} (x ordered as ravel_pytree: a, b, c)
    np.testing.assert_allclose(state.H, np.linalg.inv(A), atol=0.05 * np.abs(np.linalg.inv(A)).max())


def test_reset_drops_curvature_and_accepts_new_shape():
    def f(p):
        return sum(jnp.sum((v - 1.0) ** 2 * (1.0 + jnp.arange(v.size))) for v in jax.tree_util.tree_leaves(p))

    vg = jax.value_and_grad(f)
    opt = bfgs(vg)
    state = opt.init({"u": jnp.zeros(3)})
    for _ in range(3):
        state = opt.step(state)
    assert state.H is not None
    it, ne = state.iteration, state.n_evals
    s2 = opt.reset(state)
    assert s2.H is None and s2.status == "reset" and s2.params is state.params
    # reset with new params of a different shape (e.g. after a rank change)
    s3 = opt.reset(state, {"u": jnp.zeros(3), "w": jnp.zeros(2)})
    assert s3.H is None and s3.iteration == it and s3.n_evals == ne + 1
    assert s3.grad.shape == (5,)
    s4 = opt.step(s3)
    assert s4.value < s3.value and s4.H.shape == (5, 5)
    final = minimize(opt, {"u": jnp.zeros(3), "w": jnp.zeros(2)}, 50, gtol=1e-10)
    np.testing.assert_allclose(np.asarray(final.params["w"]), 1.0, atol=1e-8)


def test_non_descent_direction_restarts_along_gradient():
    vg = jax.value_and_grad(lambda p: jnp.sum(p["x"] ** 2))
    opt = bfgs(vg)
    state = opt.init({"x": jnp.array([1.0, -2.0])})
    bad = state._replace(H=-np.eye(2))  # -H g is an ascent direction
    new = opt.step(bad)
    assert new.status == "restarted"
    assert new.value < state.value


def test_has_aux_and_line_search_failure_keeps_iterate():
    def vg(p):
        x = p["x"]
        return (jnp.sum(x**2), {"norm": jnp.linalg.norm(x)}), {"x": 2 * x}

    opt = bfgs(vg, has_aux=True)
    state = opt.step(opt.init({"x": jnp.array([3.0, 4.0])}))
    np.testing.assert_allclose(float(state.aux["norm"]), np.linalg.norm(state.params["x"]))

    # a gradient that lies (points uphill): no decrease can be found
    def liar(p):
        x = p["x"]
        return jnp.sum(x**2), {"x": -2 * x}

    opt = bfgs(liar)
    s0 = opt.init({"x": jnp.array([3.0, 4.0])})
    s1 = opt.step(s0)
    assert s1.status == "line_search_failed" and s1.value == s0.value
    np.testing.assert_array_equal(np.asarray(s1.params["x"]), [3.0, 4.0])
    assert converged(s1, gtol=0.0, ftol=0.0)


def test_bfgs_update_secant_condition():
    rng = np.random.default_rng(1)
    n = 6
    Q = rng.standard_normal((n, n))
    H = Q @ Q.T + np.eye(n)
    s, y = rng.standard_normal(n), rng.standard_normal(n)
    if y @ s < 0:
        y = -y
    H1 = bfgs_update(H, s, y)
    np.testing.assert_allclose(H1 @ y, s, atol=1e-10)
    np.testing.assert_allclose(H1, H1.T, atol=1e-10)
    assert np.all(np.linalg.eigvalsh(H1) > 0)


def test_converged_helper():
    class S:
        def __init__(self, value, prev, g, status="ok"):
            self.value, self.prev_value, self.grad_norm, self.status = value, prev, g, status

    assert converged(S(1.0, 2.0, 1e-9), gtol=1e-8)
    assert not converged(S(1.0, 2.0, 1e-3), gtol=1e-8, ftol=1e-6)
    assert converged(S(1.0, 1.0 + 1e-9, 1e-3), gtol=1e-8, ftol=1e-6)
    assert not converged(S(1.0, np.inf, 1e-3), gtol=1e-8, ftol=1e-6)


# ---- line searches ---------------------------------------------------------------------------


def test_strong_wolfe_conditions_hold():
    # phi(a) = (a - 3)^2 + 0.1 a^4 ... minimum near a ~ 1.9; start far too short and far too long
    def fdf(a):
        return (a - 3) ** 2 + 0.1 * a**4, 2 * (a - 3) + 0.4 * a**3, a

    f0, df0 = 9.0, -6.0
    for a0 in (1e-3, 1.0, 50.0):
        res = strong_wolfe(fdf, f0, df0, a0, c1=1e-4, c2=0.5)
        assert res.success
        assert res.value <= f0 + 1e-4 * res.alpha * df0
        assert abs(res.derivative) <= 0.5 * abs(df0)
        assert res.n_evals <= 12


def test_strong_wolfe_accepts_a_step_hidden_in_the_rounding_of_f():
    # Near a minimiser the decrease of f is below one ulp of f while the slope is still exact
    # (the cause of issue 16: BFGS on a quadratic "failed" at |g| ~ 1e-8). phi is the quadratic
    # s (a - 1)^2 / 2 with s = 1e-20 on top of f = 0.3: every value rounds to 0.3 or one ulp
    # above it, the derivative s (a - 1) does not.
    s, base = 1e-20, 0.3
    ulp = np.spacing(base)

    def fdf(a):
        return base + (ulp if a != 0.0 else 0.0), s * (a - 1.0), a

    res = strong_wolfe(fdf, base, -s, 1.0)
    assert res.success and res.alpha == 1.0 and res.derivative == 0.0
    # without the approximate-Wolfe test the same search finds no acceptable point
    res = strong_wolfe(fdf, base, -s, 1.0, f_noise=0.0)
    assert not res.success and res.alpha == 0.0
    # a genuine rise above the noise level is still rejected
    res = strong_wolfe(lambda a: (base + 1e-6 * a, s * (a - 1.0), a), base, -s, 1.0)
    assert res.alpha == 0.0


def test_armijo_and_doubling_halving():
    phi = lambda a: ((a - 10.0) ** 2, None)  # noqa: E731
    res = armijo_backtracking(phi, 100.0, -20.0, 64.0)
    assert res.success and res.value <= 100.0 - 1e-4 * res.alpha * 20.0
    # Algorithm 2 rule: from alpha0 = 1 the step doubles towards the minimum at 10
    res = doubling_halving(phi, 100.0, -20.0, 1.0, mu=1e-4)
    assert res.success and res.alpha == 8.0
    res = doubling_halving(phi, 100.0, -20.0, 1.0, mu=1e-4, monotone=False)
    assert res.alpha == 16.0  # verbatim Algorithm 2: 16 still passes the weak test
    res = doubling_halving(phi, 100.0, -20.0, 1.0, expand=False)
    assert res.alpha == 1.0 and res.n_evals == 1
    res = doubling_halving(phi, 100.0, -20.0, 64.0, expand=False)
    assert res.alpha == 16.0


def test_minimize_decrease_quadratic_and_no_decrease():
    calls = []

    def phi(t):
        calls.append(t)
        return 3.0 * (t - 0.7) ** 2 - 1.0, t

    f0, df0 = 3.0 * 0.49 - 1.0, -4.2
    for t0 in (1e-3, 0.2, 50.0):
        calls.clear()
        res = minimize_decrease(phi, f0, df0, t0)
        assert res.success and abs(res.alpha - 0.7) < 0.02 and res.value < f0
        assert len(calls) <= 8

    # phi increasing although df0 claims descent: nothing accepted, t = 0
    res = minimize_decrease(lambda t: (f0 + t, None), f0, -1.0, 1.0, max_evals=6)
    assert res.alpha == 0.0 and res.value == f0 and not res.success
