"""Diagonal preconditioning: BFGS started from h0, and the Gauss-Newton diagonal estimate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from mlipress.models.mtp.basis import untrained_mtp
from mlipress.examples import make_example_dataset
from mlipress.loss import Objective, prepare
from mlipress.optim import bfgs
from mlipress.fit.init import initial_params
from mlipress.fit.linear import linear_solve
from mlipress.fit.precondition import gauss_newton_diagonal


def _quadratic(scales):
    A = jnp.diag(jnp.asarray(scales))
    target = jnp.ones(len(scales))

    def vg(p):
        r = p["x"] - target
        return float(0.5 * r @ A @ r), {"x": A @ r}

    return vg


def test_preconditioned_bfgs_solves_badly_scaled_quadratic_at_once():
    scales = np.logspace(-4, 4, 12)
    vg = _quadratic(scales)
    exact = bfgs(vg, precondition=lambda p, g: 1.0 / scales)
    state = exact.init({"x": jnp.zeros(12)})
    state = exact.step(state)
    # h0 is the exact inverse Hessian: one Newton step lands on the minimum.
    assert state.value < 1e-20
    np.testing.assert_allclose(state.params["x"], 1.0, atol=1e-10)

    plain = bfgs(vg)
    s = plain.init({"x": jnp.zeros(12)})
    for _ in range(5):
        s = plain.step(s)
    assert s.value > 1e-6  # identity start needs many more iterations on this spread


def test_precondition_must_be_positive():
    opt = bfgs(_quadratic([1.0, 2.0]), precondition=lambda p, g: np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="positive"):
        opt.init({"x": jnp.zeros(2)})


@pytest.fixture(scope="module")
def tiny_problem():
    data, _ = make_example_dataset(n_configs=6, seed=0)
    mtp = untrained_mtp(4, 3, 2.0, 5.0)
    prepared = prepare(data, mtp)
    obj = Objective(mtp, prepared)
    params, _ = linear_solve(mtp, initial_params(mtp, seed=0, scaling=0.05), prepared)
    return obj, params


def test_gauss_newton_diagonal_is_reproducible_and_sees_all_fitted_parameters(tiny_problem):
    obj, params = tiny_problem
    gn = gauss_newton_diagonal(obj, params, probes=3, seed=1)
    again = gauss_newton_diagonal(obj, params, probes=3, seed=1)
    np.testing.assert_array_equal(gn, again)
    flat, unravel = ravel_pytree(params)
    parts = unravel(jnp.asarray(gn))
    # the frozen scaling gets only the damping; every fitted coefficient is seen by the data
    assert float(parts.scaling) == pytest.approx(1e-8 * gn.max())
    for key in ("radial", "species", "moment"):
        leaves = jax.tree_util.tree_leaves(getattr(parts, key))
        assert all(np.all(np.asarray(x) > 1e-6 * gn.max()) for x in leaves), key


def test_gauss_newton_diagonal_matches_linear_part_exactly_in_expectation(tiny_problem):
    """For the species coefficients GN_ii = (2/K)^2 sum_j w_j (dr_j/dxi_i)^2 with dE/dspecies_t =
    count of type t: check the probe average against that closed form (many probes)."""
    obj, params = tiny_problem
    gn = gauss_newton_diagonal(obj, params, probes=300, seed=2, damping=0.0)
    parts = ravel_pytree(params)[1](jnp.asarray(gn))
    K = obj.data.n_configs
    expected = np.zeros(3)
    for chunk in obj.data.chunks:
        types = np.asarray(chunk.batch.types_i)
        config = np.asarray(chunk.batch.config_index)
        w = np.asarray(chunk.w_energy)
        for c in range(len(w)):
            counts = np.bincount(types[config == c], minlength=3)
            expected += w[c] * counts.astype(float) ** 2
    expected *= (2.0 / K) ** 2
    np.testing.assert_allclose(np.asarray(parts.species), expected, rtol=0.25)


def test_loss_after_exact_solve_does_not_depend_on_scaling(tiny_problem):
    """Why TrainSettings skips MLIP's scaling search by default: every radial function carries
    the scaling, so basis functions scale as s^k and the exact linear solve absorbs it."""
    obj, params = tiny_problem
    losses = [
        linear_solve(obj.model, params.replace(scaling=jnp.asarray(s)), obj.data)[1] for s in (1e-3, 0.05, 1.0, 10.0)
    ]
    assert losses[0] > 1e-3  # a real, non-zero residual
    np.testing.assert_allclose(losses, losses[0], rtol=1e-9)
