"""Riemannian BFGS on R^{n_xi} x M_r (Algorithm 2), mlipress.optim.rbfgs."""

import numpy as np
import pytest

import mlipress  # noqa: F401
from mlipress.optim import converged, minimize, rbfgs
from mlipress.optim import fixed_rank as fr


def recovery_problem(seed=1, m=8, n=12, r=3, nx=5, p=120):
    """0.5 |A(X) - b|^2 + 0.5 |K xi - W vec X|^2, minimiser X* of rank r, xi* = K^{-1} W vec X*."""
    rng = np.random.default_rng(seed)
    Xs = rng.standard_normal((m, r)) @ rng.standard_normal((r, n))
    A = rng.standard_normal((p, m * n)) / np.sqrt(p)
    b = A @ Xs.ravel()
    K = np.eye(nx) + 0.3 * rng.standard_normal((nx, nx))
    W = rng.standard_normal((nx, m * n)) / np.sqrt(m * n)
    xis = np.linalg.solve(K, W @ Xs.ravel())
    calls = {"vg": 0, "v": 0}

    def residuals(xi, X):
        X = np.asarray(X)
        return A @ X.ravel() - b, K @ np.asarray(xi) - W @ X.ravel()

    def value(xi, X):
        calls["v"] += 1
        ra, rk = residuals(xi, X)
        return 0.5 * ra @ ra + 0.5 * rk @ rk

    def value_and_grad(xi, X):
        calls["vg"] += 1
        ra, rk = residuals(xi, X)
        return 0.5 * ra @ ra + 0.5 * rk @ rk, (K.T @ rk, (A.T @ ra - W.T @ rk).reshape(m, n))

    x0 = (np.zeros(nx), rng.standard_normal((m, n)))
    return value_and_grad, value, Xs, xis, x0, calls


@pytest.mark.parametrize("use_value,expand", [(False, True), (True, True), (False, False)])
def test_recovers_low_rank_optimum_monotonically(use_value, expand):
    vg, value, Xs, xis, x0, calls = recovery_problem()
    opt = rbfgs(vg, rank=3, value=value if use_value else None, expand=expand)
    values = []
    state = minimize(opt, x0, 300, gtol=1e-9, callback=lambda s: values.append(s.value))
    assert np.all(np.diff(values) < 0.0)  # strictly monotone (sufficient decrease)
    assert state.grad_norm <= 1e-9
    assert state.value < 1e-16
    np.testing.assert_allclose(state.X, Xs, atol=1e-8)
    np.testing.assert_allclose(state.xi, xis, atol=1e-8)
    assert state.params[1].rank == 3
    assert state.iteration < 150
    assert state.n_evals == calls["vg"] + calls["v"]
    assert state.n_grad_evals == calls["vg"]


def test_paper_verbatim_line_search_still_decreases():
    vg, value, Xs, xis, x0, _ = recovery_problem(seed=2)
    opt = rbfgs(vg, rank=3, value=value, mu=1e-4, monotone_expand=False)
    state = opt.init(x0)
    values = [state.value]
    for _ in range(40):
        state = opt.step(state)
        values.append(state.value)
        # Algorithm 2's test: L(Theta+) - L(Theta) < mu alpha g(grad, eta) < 0
    assert np.all(np.diff(values) < 0.0)
    assert values[-1] < 1e-3 * values[0]


def test_gradient_is_projected_euclidean_gradient_and_secant_holds():
    vg, value, Xs, xis, x0, _ = recovery_problem(seed=3)
    opt = rbfgs(vg, rank=3)
    s0 = opt.init(x0)
    xi, point = s0.params
    g_xi, g_X = vg(xi, fr.to_dense(point))[1]
    rg = np.concatenate([g_xi, fr.to_coords(s0.frame, fr.project(point, g_X))])
    np.testing.assert_allclose(s0.grad, rg, atol=1e-12)
    np.testing.assert_allclose(s0.grad_norm, np.sqrt(g_xi @ g_xi + np.sum(fr.project(point, g_X) ** 2)), rtol=1e-12)
    s1 = opt.step(opt.step(s0))
    s2 = opt.step(s1)
    assert s2.status == "ok"
    # rebuild s_k, y_k in the coordinates of the new point and check the secant equation H+ y = s
    nx = xi.size
    P = fr.transport_matrix(s1.frame, s2.frame)
    T = lambda v: np.concatenate([v[:nx], P @ v[nx:]])  # noqa: E731
    d = -(s1.H @ s1.grad)
    s = T(s2.alpha * d)
    y = s2.grad - T(s1.grad)
    np.testing.assert_allclose(s2.H @ y, s, atol=1e-9 * max(1.0, np.abs(s).max()))
    # the step really is the retraction of the direction
    eta_X = fr.from_coords(s1.frame, d[nx:])
    np.testing.assert_allclose(fr.to_dense(fr.retract(s1.params[1], s2.alpha * eta_X)), s2.X, atol=1e-12)


def test_transported_inverse_hessian_conjugation():
    """H~ = T o H o T^{-1}: checked against the ambient operators (Prop. IV.1 reference)."""
    rng = np.random.default_rng(7)
    m, n, r = 5, 6, 2
    x = fr.from_matrix(rng.standard_normal((m, r)) @ rng.standard_normal((r, n)), r)
    y = fr.retract(x, fr.project(x, 0.1 * rng.standard_normal((m, n))))
    fx, fy = fr.frame(x), fr.frame(y)
    M = fr.dim(m, n, r)
    Q = rng.standard_normal((M, M))
    H = Q @ Q.T + np.eye(M)  # some operator on T_X in X-coordinates
    P = fr.transport_matrix(fx, fy)
    Ht = P @ H @ np.linalg.inv(P)  # what rbfgs computes (block for the matrix part)
    eta = fr.project(y, rng.standard_normal((m, n)))
    # ambient: T(H(T^{-1} eta))
    xi = fr.inverse_transport(x, y, eta)
    Hxi = fr.from_coords(fx, H @ fr.to_coords(fx, xi))
    ambient = fr.transport(x, y, Hxi)
    np.testing.assert_allclose(fr.from_coords(fy, Ht @ fr.to_coords(fy, eta)), ambient, atol=1e-10)


def test_reset_and_fixed_rank_point_input():
    vg, value, Xs, xis, x0, _ = recovery_problem(seed=4)
    opt = rbfgs(vg)  # no rank: X must be given as a point
    with pytest.raises(ValueError):
        opt.init(x0)
    state = opt.init((x0[0], fr.from_matrix(x0[1], 3)))
    for _ in range(5):
        state = opt.step(state)
    assert state.H is not None
    r = opt.reset(state)
    assert r.H is None and r.status == "reset"
    r2 = opt.reset(state, (state.xi, fr.from_matrix(state.X, 3)))
    assert r2.iteration == state.iteration and r2.n_evals == state.n_evals + 1
    assert abs(r2.value - state.value) < 1e-10 * max(1.0, state.value)
    s = opt.step(r2)
    assert s.value < r2.value
    assert not converged(s, gtol=1e-12, ftol=0.0)


def test_pure_manifold_problem_without_linear_parameters():
    rng = np.random.default_rng(0)
    Xs = rng.standard_normal((5, 2)) @ rng.standard_normal((2, 7))

    def vg(xi, X):
        return 0.5 * np.sum((X - Xs) ** 2), (xi, X - Xs)

    state = minimize(rbfgs(vg, rank=2), (np.zeros(0), rng.standard_normal((5, 7))), 100, gtol=1e-10)
    assert state.grad.shape == (2 * (5 + 7 - 2),)
    np.testing.assert_allclose(state.X, Xs, atol=1e-9)
