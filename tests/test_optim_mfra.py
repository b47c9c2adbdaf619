"""MFRA, Algorithm 1 (mlipress.optim.mfra)."""

import numpy as np
import pytest

import mlipress  # noqa: F401
from mlipress.optim import converged, mfra, minimize, random_factors
from mlipress.optim.mfra import resolve_interval


def rank6_problem(seed=2, m=9, n=16, rs=6, nx=4, p=200):
    """L(xi, C) = 0.5 |A(C) - b|^2 + 0.5 |K xi - W vec C|^2 with a unique minimiser C* of rank 6
    (m = N_T^2 = 9, n = N_f N_b = 16)."""
    rng = np.random.default_rng(seed)
    Cs = rng.standard_normal((m, rs)) @ rng.standard_normal((rs, n))
    A = rng.standard_normal((p, m * n)) / np.sqrt(p)
    b = A @ Cs.ravel()
    K = np.eye(nx) + 0.3 * rng.standard_normal((nx, nx))
    W = rng.standard_normal((nx, m * n)) / np.sqrt(m * n)
    xis = np.linalg.solve(K, W @ Cs.ravel())

    def vg(xi, C):
        C, xi = np.asarray(C), np.asarray(xi)
        ra, rk = A @ C.ravel() - b, K @ xi - W @ C.ravel()
        return 0.5 * ra @ ra + 0.5 * rk @ rk, (K.T @ rk, (A.T @ ra - W.T @ rk).reshape(m, n))

    return vg, Cs, xis, (m, n, nx)


def test_rank_schedule_monotone_augmentations_and_optimum():
    vg, Cs, xis, (m, n, nx) = rank6_problem()
    s = 25
    opt = mfra(vg, r_max=6, r_min=2, interval=s)
    values, ranks = [], []

    def cb(st):
        values.append(st.value)
        ranks.append(st.rank)

    state = minimize(opt, {"xi": np.zeros(nx), "shape": (m, n)}, 250, callback=cb)
    assert state.rank_history == ((0, 2), (s, 4), (2 * s, 6))
    # rank after step k: 2 for k < s, 4 for s <= k < 2s, 6 afterwards; never above r_max
    expected = [2 if k < s else 4 if k < 2 * s else 6 for k in range(1, state.iteration + 1)]
    assert ranks == expected
    assert state.params["U"].shape == (m, 6) and state.params["V"].shape == (n, 6)
    assert [a.iteration for a in state.augmentations] == [s, 2 * s]
    for a in state.augmentations:
        assert a.loss_after <= a.loss_before
        assert a.loss_after < 0.9 * a.loss_before  # the gradient direction helps here
        assert a.h < 0.0  # descent along -G
        assert a.rank_after == a.rank_before + 2
        assert a.n_evals <= 8
    # the loss never increases, neither in BFGS steps nor at augmentations
    assert np.all(np.diff(values) <= 0.0)
    assert state.value < 1e-14
    np.testing.assert_allclose(state.Chat, Cs, atol=1e-6)
    np.testing.assert_allclose(np.asarray(state.params["xi"]), xis, atol=1e-6)
    assert state.n_evals == state.inner.n_evals + state.n_aug_evals


def test_rank_cap_and_clipped_increment():
    vg, Cs, xis, (m, n, nx) = rank6_problem(seed=3)
    U, V = random_factors(m, n, 2, seed=1)
    opt = mfra(vg, r_max=6, delta_r=3, interval=10)
    state = opt.init({"xi": np.zeros(nx), "U": U, "V": V})
    for _ in range(45):
        state = opt.step(state)
        assert state.rank <= 6
    assert state.rank_history == ((0, 2), (10, 5), (20, 6))
    assert [(a.rank_before, a.rank_after) for a in state.augmentations] == [(2, 5), (5, 6)]
    assert all(a.loss_after <= a.loss_before for a in state.augmentations)


def test_interval_auto_and_defaults():
    assert resolve_interval("auto", 2000) == 80  # the paper's s = 80 for 2000 steps
    assert resolve_interval("auto", 500) == 20
    assert resolve_interval(7, None) == 7
    with pytest.raises(ValueError):
        resolve_interval("auto", None)
    vg, Cs, xis, (m, n, nx) = rank6_problem(seed=4)
    opt = mfra(vg, r_max=4, interval="auto", max_iter=100)  # s = 4, r_min = delta_r = 2
    state = minimize(opt, {"xi": np.zeros(nx), "shape": (m, n)}, 12)
    assert state.rank_history == ((0, 2), (4, 4))
    assert state.iteration == 12  # no early stop before r_max


def test_augmentation_never_increases_loss():
    """Even when the 1-D search finds no decrease the augmentation keeps the loss (h = 0)."""
    vg, Cs, xis, (m, n, nx) = rank6_problem(seed=5)
    opt = mfra(vg, r_max=4, interval=3, value_dense=lambda xi, C: 1e300)  # every trial is "worse"
    state = opt.init({"xi": np.zeros(nx), "shape": (m, n)})
    for _ in range(3):
        state = opt.step(state)
    (aug,) = state.augmentations
    assert aug.h == 0.0 and aug.loss_after == aug.loss_before
    assert state.rank == 4
    np.testing.assert_array_equal(np.asarray(state.params["U"])[:, 2:], 0.0)
    # BFGS still moves the new (zero) columns: dL/dU_new = G V_new != 0
    nxt = opt.step(state)
    assert nxt.value < state.value
    assert np.abs(np.asarray(nxt.params["U"])[:, 2:]).max() > 0.0


def test_stationary_low_rank_point_escapes():
    """At the best rank-2 point BFGS stalls; the augmentation still decreases the loss."""
    vg, Cs, xis, (m, n, nx) = rank6_problem(seed=6)
    opt = mfra(vg, r_max=6, interval=60)
    state = opt.init({"xi": np.zeros(nx), "shape": (m, n)})
    for _ in range(59):
        state = opt.step(state)
    stalled = state.value
    assert state.rank == 2 and state.grad_norm < 1e-3 * np.sqrt(stalled)
    state = opt.step(state)
    (aug,) = state.augmentations
    assert aug.loss_before == pytest.approx(stalled, rel=1e-6)
    assert aug.loss_after < 0.9 * aug.loss_before and state.rank == 4
    assert not converged(state, gtol=1e-8, ftol=1e-6) or state.can_stop is False
