"""The product of fixed-rank manifolds (mlipress.optim.fixed_rank_blocks) and R-BFGS on it."""

import numpy as np

import mlipress  # noqa: F401
from mlipress.optim import minimize, rbfgs
from mlipress.optim import fixed_rank as fr
from mlipress.optim import fixed_rank_blocks as frb


def _point(seed=0, P=3, m=5, n=7, r=2):
    rng = np.random.default_rng(seed)
    return frb.from_matrix(rng.standard_normal((P, m, n)), r), rng


def test_blockwise_operations_are_the_blocks_operations():
    x, rng = _point()
    y = frb.retract(x, 0.1 * rng.standard_normal((3, 5, 7)))
    fx, fy = frb.frame(x), frb.frame(y)
    Z = rng.standard_normal((3, 5, 7))
    c = frb.to_coords(fx, Z)
    assert c.size == frb.dim(3, 5, 7, 2) == 3 * fr.dim(5, 7, 2)
    np.testing.assert_allclose(frb.from_coords(fx, c), frb.project(x, Z), atol=1e-13)  # B B^T = projection
    for b in range(3):  # retraction blockwise
        np.testing.assert_allclose(frb.to_dense(y)[b], fr.to_dense(y[b]), atol=0)
        assert y[b].rank == 2
    P = frb.transport_matrix(fx, fy)
    # transport in coordinates = projection onto T_Y, block by block
    np.testing.assert_allclose(P @ c, frb.to_coords(fy, frb.project(y, frb.from_coords(fx, c))), atol=1e-12)
    k = fr.dim(5, 7, 2)
    assert np.abs(P[:k, k:]).max() == 0.0  # block diagonal


def test_riemannian_gradient_matches_finite_differences_along_retraction():
    x, rng = _point(1)
    T = rng.standard_normal((3, 5, 7))

    def loss(X):
        return 0.5 * np.sum((X - T) ** 2) + np.sum(X ** 4) / 4

    G = frb.to_dense(x) - T + frb.to_dense(x) ** 3
    f = frb.frame(x)
    grad = frb.to_coords(f, G)  # the Riemannian gradient (projected Euclidean gradient) in coordinates
    d = rng.standard_normal(grad.size)
    eta = frb.from_coords(f, d)
    h = 1e-5
    fd = (loss(frb.to_dense(frb.retract(x, h * eta))) - loss(frb.to_dense(frb.retract(x, -h * eta)))) / (2 * h)
    assert abs(fd - grad @ d) < 1e-7 * max(1.0, abs(fd))


def test_rbfgs_on_blocks_recovers_each_blocks_low_rank_optimum():
    rng = np.random.default_rng(3)
    P, m, n, r = 3, 6, 8, 2
    Xs = np.einsum("pmr,pnr->pmn", rng.standard_normal((P, m, r)), rng.standard_normal((P, n, r)))
    A = rng.standard_normal((150, P * m * n)) / np.sqrt(150)
    b = A @ Xs.ravel()

    def vg(xi, X):
        res = A @ np.asarray(X).ravel() - b
        return 0.5 * res @ res, (np.zeros(0), (A.T @ res).reshape(P, m, n))

    opt = rbfgs(vg, rank=r, manifold=frb)
    values = []
    state = minimize(opt, (np.zeros(0), rng.standard_normal((P, m, n))), 300, gtol=1e-9,
                     callback=lambda s: values.append(s.value))
    assert np.all(np.diff(values) < 0.0)
    assert state.value < 1e-14 and values[0] > 1.0
    np.testing.assert_allclose(state.X, Xs, atol=1e-6)
    assert all(block.rank == r for block in state.params[1])
