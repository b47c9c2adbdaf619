"""The fixed-rank manifold M_r (mlipress.optim.fixed_rank), Propositions IV.1 / IV.2."""

import numpy as np
import pytest

import mlipress  # noqa: F401
from mlipress.optim import fixed_rank as fr

SHAPES = [(6, 9, 2), (16, 48, 5), (4, 16, 4), (9, 7, 3)]


def random_point(rng, m, n, r):
    return fr.from_matrix(rng.standard_normal((m, r)) @ rng.standard_normal((r, n)), r)


def near(rng, x, eps=1e-2):
    """A point Y close to X on M_r."""
    return fr.retract(x, fr.project(x, eps * rng.standard_normal(x.shape)))


@pytest.mark.parametrize("m,n,r", SHAPES)
def test_projection_identities(m, n, r):
    rng = np.random.default_rng(m * 100 + n + r)
    x = random_point(rng, m, n, r)
    W = rng.standard_normal((m, n))
    PW = fr.project(x, W)
    np.testing.assert_allclose(fr.project(x, PW), PW, atol=1e-12)  # idempotent
    Pu = np.eye(m) - x.U @ x.U.T
    Pv = np.eye(n) - x.V @ x.V.T
    np.testing.assert_allclose(Pu @ PW @ Pv, 0.0, atol=1e-12)  # lies in T_X
    np.testing.assert_allclose(PW, W - Pu @ W @ Pv, atol=1e-12)
    # orthogonal projection: the residual is orthogonal to every tangent vector
    Z = fr.project(x, rng.standard_normal((m, n)))
    assert abs(np.sum((W - PW) * Z)) < 1e-10
    # X itself is tangent at X
    np.testing.assert_allclose(fr.project(x, fr.to_dense(x)), fr.to_dense(x), atol=1e-12)


@pytest.mark.parametrize("m,n,r", SHAPES)
def test_retraction(m, n, r):
    rng = np.random.default_rng(1)
    x = random_point(rng, m, n, r)
    X = fr.to_dense(x)
    np.testing.assert_allclose(fr.to_dense(fr.retract(x, np.zeros((m, n)))), X, atol=1e-12)
    xi = fr.project(x, rng.standard_normal((m, n)))
    y = fr.retract(x, 0.3 * xi)
    Y = fr.to_dense(y)
    assert y.U.shape == (m, r) and y.s.shape == (r,) and y.V.shape == (n, r)
    assert np.linalg.matrix_rank(Y, tol=1e-10 * np.abs(Y).max()) == r
    np.testing.assert_allclose(y.U.T @ y.U, np.eye(r), atol=1e-12)
    np.testing.assert_allclose(y.V.T @ y.V, np.eye(r), atol=1e-12)
    # first-order agreement: R_X(t xi) = X + t xi + O(t^2)
    for t in (1e-3, 1e-4):
        err = np.abs(fr.to_dense(fr.retract(x, t * xi)) - X - t * xi).max()
        assert err < 50 * t * t * np.abs(xi).max() ** 2 / x.s.min()
    assert fr.dim(m, n, r) == (m + n - r) * r


@pytest.mark.parametrize("m,n,r", SHAPES)
def test_transport_and_inverse_transport(m, n, r):
    rng = np.random.default_rng(2)
    x = random_point(rng, m, n, r)
    y = near(rng, x)
    xi = fr.project(x, rng.standard_normal((m, n)))
    eta = fr.transport(x, y, xi)
    Pu = np.eye(m) - y.U @ y.U.T
    Pv = np.eye(n) - y.V @ y.V.T
    np.testing.assert_allclose(Pu @ eta @ Pv, 0.0, atol=1e-12)  # T maps into T_Y
    back = fr.inverse_transport(x, y, eta)
    np.testing.assert_allclose(back, xi, atol=1e-10)
    # and the other way round: T(T^{-1} eta) = eta for eta in T_Y
    eta2 = fr.project(y, rng.standard_normal((m, n)))
    xi2 = fr.inverse_transport(x, y, eta2)
    np.testing.assert_allclose(fr.project(x, xi2), xi2, atol=1e-10)  # lies in T_X
    np.testing.assert_allclose(fr.transport(x, y, xi2), eta2, atol=1e-10)


@pytest.mark.parametrize("m,n,r", [(6, 9, 2), (4, 16, 4), (9, 7, 3), (8, 24, 3)])
def test_fast_inverse_transport_matches_proposition_IV1_reference(m, n, r):
    rng = np.random.default_rng(3)
    x = random_point(rng, m, n, r)
    y = near(rng, x, 0.2)  # not so close: the operator is far from the identity
    R = fr.inverse_transport_matrix_reference(x, y)  # B_x (B_y^T P_y B_x)^{-1} B_y^T, (mn, mn)
    for _ in range(3):
        eta = fr.project(y, rng.standard_normal((m, n)))
        fast = fr.inverse_transport(x, y, eta)
        slow = (R @ eta.ravel()).reshape(m, n)
        np.testing.assert_allclose(fast, slow, atol=1e-10 * max(1.0, np.abs(slow).max()))


@pytest.mark.parametrize("m,n,r", [(6, 9, 2), (5, 5, 3), (9, 16, 4)])
def test_transport_matrix_equals_proposition_IV2_formula(m, n, r):
    """The gathered M x M matrix equals E^T(A kron B - A' kron B')E (Prop. IV.2) and B_y^T P_y B_x."""
    rng = np.random.default_rng(4)
    x = random_point(rng, m, n, r)
    y = near(rng, x, 0.3)
    fx, fy = fr.frame(x), fr.frame(y)
    Ux, Vx, Uy, Vy = fx.U_full, fx.V_full, fy.U_full, fy.V_full
    np.testing.assert_allclose(Ux[:, :r], x.U)  # frames extend the SVD factors
    np.testing.assert_allclose(Ux.T @ Ux, np.eye(m), atol=1e-12)
    np.testing.assert_allclose(Vy.T @ Vy, np.eye(n), atol=1e-12)
    PUy = np.eye(m) - y.U @ y.U.T
    PVy = np.eye(n) - y.V @ y.V.T
    K = np.kron(Uy.T @ Ux, Vy.T @ Vx) - np.kron(Uy.T @ PUy @ Ux, Vy.T @ PVy @ Vx)
    mask = fr.tangent_mask(m, n, r).ravel()
    paper = K[mask][:, mask]
    fast = fr.transport_matrix(fx, fy)
    np.testing.assert_allclose(fast, paper, atol=1e-12)
    Bx, By = fr.tangent_basis(fx), fr.tangent_basis(fy)
    Py = np.eye(m * n) - np.kron(PUy, PVy)
    np.testing.assert_allclose(fast, By.T @ Py @ Bx, atol=1e-12)
    # P maps X-coordinates of xi to Y-coordinates of the transported vector
    xi = fr.project(x, rng.standard_normal((m, n)))
    np.testing.assert_allclose(fast @ fr.to_coords(fx, xi), fr.to_coords(fy, fr.transport(x, y, xi)), atol=1e-12)


@pytest.mark.parametrize("m,n,r", SHAPES)
def test_tangent_coordinates(m, n, r):
    rng = np.random.default_rng(5)
    x = random_point(rng, m, n, r)
    f = fr.frame(x)
    M = fr.dim(m, n, r)
    B = fr.tangent_basis(f)
    assert B.shape == (m * n, M)
    np.testing.assert_allclose(B.T @ B, np.eye(M), atol=1e-12)
    xi = fr.project(x, rng.standard_normal((m, n)))
    zeta = fr.project(x, rng.standard_normal((m, n)))
    c = fr.to_coords(f, xi)
    assert c.shape == (M,)
    np.testing.assert_allclose(fr.from_coords(f, c), xi, atol=1e-12)
    np.testing.assert_allclose(B @ c, xi.ravel(), atol=1e-12)
    np.testing.assert_allclose(c @ fr.to_coords(f, zeta), np.sum(xi * zeta), atol=1e-10)
    # coordinates of a general matrix are those of its projection
    W = rng.standard_normal((m, n))
    np.testing.assert_allclose(fr.to_coords(f, W), fr.to_coords(f, fr.project(x, W)), atol=1e-12)
