"""TT-rank adaptation (mlipress.optim.ttra), the shared augmentation loop (mlipress.optim.augment)
and the growth rule of ``mfra:auto`` / ``ttra:auto``: on small synthetic losses, on the EMT
compression problem, and through ``mlipress train`` / ``mlipress compress``."""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlipress.cli import main
from mlipress.compress import fit_compressed, read_compressed
from mlipress.data import Dataset
from mlipress.examples import make_example_dataset
from mlipress.fit import TrainSettings
from mlipress.io import write_dataset
from mlipress.io.mtp import read_mtp, write_mtp
from mlipress.loss import Objective, prepare
from mlipress.models.base import jitted_efs
from mlipress.models.layers import TensorTrain, clip_tt_ranks, parse_radial_spec
from mlipress.optim import Growth, bfgs, mfra, minimize
from mlipress.optim.ttra import boundary_gradient, direction, enrich, orthogonalise, rank_increments, tt_dense, ttra
from mlipress.optim.augment import leading_triplets
from test_compress import problem  # noqa: F401  (fixture: level-6 MTP, 5 EMT configurations)

jax.config.update("jax_enable_x64", True)

MODES = (3, 3, 4, 6)


def tt_problem(seed=0, ranks=(2, 4, 3), noise=0.0, p=300):
    """``L(xi, C) = 0.5 |A vec C - b|^2 + 0.5 |xi - 1|^2`` over a 4-mode tensor; ``b`` from a TT of
    ``ranks`` (plus ``noise``). Returns the BFGS objective over ``{"xi", "cores"}`` and the dense
    one ``(params, C) -> (value, dL/dC)``."""
    rng = np.random.default_rng(seed)
    Cs = np.asarray(TensorTrain.random(seed + 1, MODES, ranks, scale=1.0).dense())
    A = rng.standard_normal((p, Cs.size)) / np.sqrt(p)
    b = A @ Cs.ravel() + noise * rng.standard_normal(p)

    def loss(xi, C):
        r = A @ C.ravel() - b
        return 0.5 * r @ r + 0.5 * jnp.sum((xi - 1.0) ** 2)

    over_cores = jax.jit(jax.value_and_grad(lambda q: loss(q["xi"], TensorTrain(tuple(q["cores"])).dense())))
    over_c = jax.jit(jax.value_and_grad(loss, argnums=1))

    def vg(q):
        f, g = over_cores(q)
        return float(f), g

    def vg_dense(q, C):
        f, g = over_c(q["xi"], jnp.asarray(C))
        return float(f), np.asarray(g)

    return vg, vg_dense, loss


def start(ranks, seed=3):
    return {"xi": jnp.zeros(2), "cores": TensorTrain.random(seed, MODES, ranks, scale=1.0).cores}


def test_ranks_grow_on_schedule_and_loss_never_rises():
    vg, vg_dense, _ = tt_problem()
    s = 15
    opt = ttra(bfgs(vg), vg_dense, r_max=(3, 5, 3), delta_r=2, interval=s)
    values, ranks = [], []

    def record(st):
        values.append(st.value)
        ranks.append(st.rank)

    state = minimize(opt, start((1, 1, 1)), 120, callback=record)
    # each boundary grows by min(2, room): (1,1,1) -> (3,3,3) (r2 <= n3 r3 = 4 before r3 grows) -> (3,5,3)
    assert state.rank_history == ((0, (1, 1, 1)), (s, (3, 3, 3)), (2 * s, (3, 5, 3)))
    assert ranks == [(1, 1, 1) if k < s else (3, 3, 3) if k < 2 * s else (3, 5, 3) for k in range(1, 121)]
    assert state.can_stop and state.rank == (3, 5, 3)
    for a in state.augmentations:
        assert a.loss_after < 0.9 * a.loss_before  # the gradient directions help here
        assert all(h < 0.0 for h in a.h)
    assert len(state.augmentations[0].h) == 3 and len(state.augmentations[1].h) == 1  # boundaries grown
    assert np.all(np.diff(values) <= 0.0)  # neither a BFGS step nor an augmentation raises the loss
    assert state.value < 1e-4 * values[0]  # the target's ranks (2, 4, 3) are within (3, 5, 3)
    shapes = [np.shape(g) for g in state.params["cores"]]
    assert shapes == [(1, 3, 3), (3, 3, 5), (5, 4, 3), (3, 6, 1)]


@pytest.mark.parametrize("seed", [0, 1])
def test_ttra_reaches_fixed_rank_tt_loss_in_the_same_budget(seed):
    """Noisy data of TT rank (2, 4, 3), 100 BFGS iterations: TTRA from (2, 2, 2) to (3, 5, 3)
    ends at least as low as BFGS on a TT fixed at (3, 5, 3) from a random start of the same seed
    (0.940 vs 0.955 and 1.166 vs 1.367; see benchmarks/rank_adaptation.py for the MTP)."""
    vg, vg_dense, _ = tt_problem(seed=seed, ranks=(2, 4, 3), noise=0.1)
    grown = minimize(ttra(bfgs(vg), vg_dense, r_max=(3, 5, 3), interval=10), start((2, 2, 2), seed=seed + 10), 100)
    fixed = minimize(bfgs(vg), start((3, 5, 3), seed=seed + 10), 100)
    assert grown.rank_history == ((0, (2, 2, 2)), (10, (3, 4, 3)), (20, (3, 5, 3)))
    assert grown.value <= fixed.value


@pytest.mark.parametrize("boundary", [0, 1, 2])
def test_enlarged_tt_is_the_same_tensor_and_valid(boundary):
    rng = np.random.default_rng(boundary)
    cores = [np.asarray(g) for g in TensorTrain.random(4, MODES, (2, 3, 2), scale=1.0).cores]
    C = tt_dense(cores)
    grad = rng.standard_normal(MODES)
    G = orthogonalise(cores, boundary)
    np.testing.assert_allclose(tt_dense(G), C, rtol=0, atol=1e-12 * np.abs(C).max())
    for j in range(boundary):  # left-orthonormal cores left of the boundary
        M = G[j].reshape(-1, G[j].shape[2])
        np.testing.assert_allclose(M.T @ M, np.eye(M.shape[1]), atol=1e-12)
    for j in range(boundary + 2, 4):
        M = G[j].reshape(G[j].shape[0], -1)
        np.testing.assert_allclose(M @ M.T, np.eye(M.shape[0]), atol=1e-12)
    ranks = tuple(np.shape(g)[2] for g in cores[:-1])
    dr = rank_increments(ranks, MODES, (3, 5, 3), 2, boundary)
    assert dr == {0: 1, 1: 2, 2: 1}[boundary]  # capped by r_max, then by delta_r
    UD, SD, VD = leading_triplets(boundary_gradient(G, boundary, grad), dr)
    grown = enrich(G, boundary, UD, SD, VD, 0.0)  # before the line search step (t = 0)
    np.testing.assert_allclose(tt_dense(grown), C, rtol=0, atol=1e-12 * np.abs(C).max())
    tt = TensorTrain(tuple(jnp.asarray(g) for g in grown))  # validates the chain of ranks
    expected = tuple(r + dr * (k == boundary) for k, r in enumerate(ranks))
    assert tt.rank == expected and tt.rank == clip_tt_ranks(MODES, expected)
    # at step t the TT is C - t D, D = L U_D S_D V_D^T R, and <dL/dC, D> = sum S_D^2
    D = direction(G, boundary, UD, SD, VD)
    np.testing.assert_allclose(tt_dense(enrich(G, boundary, UD, SD, VD, 0.7)), C - 0.7 * D, atol=1e-12)
    assert np.sum(grad * D) == pytest.approx(np.sum(SD**2), rel=1e-12)


def test_enrichment_direction_matches_finite_differences():
    """``d/dt L(C - t D)|_0 = -sum S_D^2`` for a nonlinear loss, by central differences."""
    cores = [np.asarray(g) for g in TensorTrain.random(5, MODES, (2, 2, 2), scale=1.0).cores]
    C = tt_dense(cores)
    W = np.random.default_rng(7).standard_normal(MODES)

    def loss(C):
        return float(np.sum(np.cos(W * C)) + 0.25 * np.sum(C**4))

    grad = -W * np.sin(W * C) + C**3
    for b in range(3):
        G = orthogonalise(cores, b)
        UD, SD, VD = leading_triplets(boundary_gradient(G, b, grad), 2)
        h = 1e-5
        fd = (loss(tt_dense(enrich(G, b, UD, SD, VD, h))) - loss(tt_dense(enrich(G, b, UD, SD, VD, -h)))) / (2 * h)
        assert fd == pytest.approx(-np.sum(SD**2), rel=1e-7)


def test_augmentation_falls_back_to_the_old_tensor():
    """A line search misled by its value function (it sees decreases that are not there) ends on
    a point whose real loss is higher: the augmentation then keeps the grown cores at t = 0."""
    vg, vg_dense, _ = tt_problem(seed=1)
    opt = ttra(bfgs(vg), vg_dense, r_max=(2, 2, 2), interval=3, value_dense=lambda q, C: -1e6 * np.linalg.norm(C))
    state = opt.init(start((1, 1, 1)))
    for _ in range(3):
        state = opt.step(state)
    (aug,) = state.augmentations
    assert aug.h == (0.0, 0.0, 0.0) and aug.loss_after == aug.loss_before
    assert state.rank == (2, 2, 2)
    assert np.array_equal(np.asarray(state.params["cores"][0])[:, :, 1:], np.zeros((1, 3, 1)))
    assert opt.step(state).value < state.value  # BFGS moves the new (zero) block


def test_growth_rule_stops_below_the_maximal_rank():
    """``Growth(tol)``: with noisy data of TT rank (1, 2, 1), growth stops once the training loss
    gains less than 25% between augmentation points; the ranks never change afterwards."""
    vg, vg_dense, _ = tt_problem(seed=2, ranks=(1, 2, 1), noise=0.05)
    s = 10
    opt = ttra(bfgs(vg), vg_dense, r_max=(3, 9, 6), delta_r=1, interval=s, growth=Growth(0.25))
    values = []
    state = minimize(opt, start((1, 1, 1)), 100, callback=lambda st: values.append(st.value))
    k = state.grown_until
    assert k > 0 and state.can_stop and state.rank != (3, 9, 6)
    assert state.rank_history[-1][0] < k  # no augmentation at or after the stop
    # the monitored loss at each augmentation point is the loss just before it
    points = [a.loss_before for a in state.augmentations] + [values[k - 1]]
    gains = [(p0 - p1) / p0 for p0, p1 in zip(points, points[1:])]
    assert all(g > 0.25 for g in gains[:-1]) and not gains[-1] > 0.25


def test_mfra_growth_with_a_monitor():
    """MFRA with a validation-style monitor: growth stops at the first augmentation point at
    which the monitored value did not decrease since the previous one."""
    from test_optim_mfra import rank6_problem

    vg, _, _, (m, n, nx) = rank6_problem()

    def monitor(q):  # the training loss, plus a jump once the rank exceeds 4 ("overfitting")
        f = vg(q["xi"], np.asarray(q["U"]) @ np.asarray(q["V"]).T)[0]
        return f + (1e6 if q["U"].shape[1] > 4 else 0.0)

    opt = mfra(vg, r_max=8, interval=5, growth=Growth(0.0, monitor))
    state = minimize(opt, {"xi": np.zeros(nx), "shape": (m, n)}, 40)
    # k=5: 2 -> 4, k=10: 4 -> 6, k=15: the monitor rose -> no more growth, the fit goes on
    assert state.rank_history == ((0, 2), (5, 4), (10, 6)) and state.grown_until == 15
    assert state.iteration == 40 and state.rank == 6


# ------------------------------------------------------------------------------------------
# on the MTP: the EMT compression problem of test_compress
# ------------------------------------------------------------------------------------------

SETTINGS = TrainSettings(max_iter=6, log_every=1, linear_solve_every=3, ftol=0.0, gtol=0.0)


@pytest.fixture(scope="module")
def valid(problem):
    """The 3 EMT configurations after the 5 of ``problem``'s training set."""
    ds, species = make_example_dataset(n_configs=8)
    return Dataset(tuple(ds.configurations[5:]), species)


def test_ttra_fit_grows_on_schedule_monotonically(problem):
    res = fit_compressed(problem["trained"], problem["ds"], "ttra:2,4,2", SETTINGS, out=io.StringIO(), mfra_interval=2)
    assert res.rank_history == ((0, (2, 2, 2)), (2, (2, 4, 2)))
    assert isinstance(res.radial, TensorTrain) and res.radial.rank == (2, 4, 2)
    f = [r["f"] for r in res.history if r["event"] == "progress"]
    assert len(f) == 6 and all(b <= a for a, b in zip(f, f[1:]))
    (aug,) = res.state.augmentations
    assert aug.loss_after < aug.loss_before
    assert [r["rank"] for r in res.history if r["event"] == "progress"][:3] == [[2, 2, 2], [2, 4, 2], [2, 4, 2]]
    assert Objective(problem["mtp"], problem["data"]).value(res.params) <= f[-1] * (1 + 1e-9)


def test_mfra_auto_stops(problem, valid):
    s = TrainSettings(max_iter=12, log_every=0, linear_solve_every=3, ftol=0.0, gtol=0.0)
    res = fit_compressed(problem["trained"], problem["ds"], "mfra:auto", s, valid_data=valid,
                         out=io.StringIO(), mfra_interval=2)
    st = res.state
    assert st.grown_until > 0 and res.radial.rank < 9  # max rank min(N_T^2, N_f N_b) = 9
    assert res.rank_history[-1][0] < st.grown_until and st.iteration == 12  # the fit goes on at that rank


@pytest.mark.slow
def test_cli_train_and_compress_ttra(problem, tmp_path, capsys):
    data = tmp_path / "train.cfg"
    write_dataset(problem["ds"], data, species=problem["species"])
    sp = ",".join(problem["species"])
    out = tmp_path / "t.mtp"
    assert main(["train", "--level", "6", "--train", str(data), "--species", sp, "--max-iter", "3",
                 "--log-every", "0", "--radial", "ttra:2,4,2", "-o", str(out)]) == 0
    assert "final rank (2, 4, 2)" in capsys.readouterr().out  # s = 1 for 3 iterations: (2,2,2) -> (2,4,2)
    base = tmp_path / "base.mtp"
    write_mtp(problem["trained"], base)
    comp = tmp_path / "c.mtp"
    assert main(["compress", str(base), "--train", str(data), "--species", sp, "--radial", "ttra:2,3,2",
                 "--max-iter", "2", "--log-every", "0", "-o", str(comp)]) == 0
    for path, ranks in ((out, (2, 4, 2)), (comp, (2, 3, 2))):
        mtp, params, header = read_compressed(path)
        assert isinstance(params.radial, TensorTrain) and params.radial.rank == ranks
        assert header["kind"] == "tt" and header["spec"].startswith("ttra:")
        dense = read_mtp(path)
        batch = prepare(problem["ds"], dense, SETTINGS.weights).chunks[0].batch
        a = jitted_efs(dense)(dense.params(), batch)
        b = jitted_efs(mtp)(params, batch)
        for key in ("energy", "forces", "virial"):
            np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), rtol=1e-10, atol=1e-10)


def test_ttra_spec():
    assert parse_radial_spec("ttra:2,4,2").initial_rank(2) == (2, 2, 2)
    assert parse_radial_spec("ttra:1,4,3").initial_rank(2) == (1, 2, 2)
    assert parse_radial_spec("mfra:auto").rank == "auto" and parse_radial_spec("mfra:auto").initial_rank(2) == 2
    assert parse_radial_spec("ttra:auto").initial_rank(2) == (2, 2, 2)
    with pytest.raises(ValueError, match="'ttra:auto'"):
        parse_radial_spec("tt:auto")
