"""Tests of mlipress.fit: exact linear solve, initialisation, trainer, checkpoints."""

from __future__ import annotations

import dataclasses
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Interrupted, interrupt_at

from mlipress.models.mtp.basis import untrained_mtp
from mlipress.examples import make_example_dataset
from mlipress.loss import LossWeights, Objective, prepare
from mlipress.predict import predict
from mlipress.fit import TrainSettings, initial_params, linear_solve, train
from mlipress.models.mtp.features import orthonormalise_radial
from mlipress.fit.ensemble import train_ensemble

# small and fast: level 6, 3 species, 8 configurations of 32 atoms
FAST = dict(max_iter=16, pretrain_iters=6, linear_solve_every=8, log_every=4,
            scaling_grid=(-2.5, -2.0, -1.5, -1.0), scaling_refine=2)


@pytest.fixture(scope="module")
def dataset():
    ds, _ = make_example_dataset(8, seed=1)
    return ds


@pytest.fixture(scope="module")
def mtp():
    return untrained_mtp(6, 3, 1.5, 5.0)


def test_orthonormalise_radial():
    C = np.random.default_rng(0).normal(size=(2, 2, 3, 5))
    Q = orthonormalise_radial(C)
    c = np.moveaxis(Q, 2, 0).reshape(3, -1)
    np.testing.assert_allclose(c @ c.T, np.eye(3), atol=1e-12)
    # the first radial function keeps its direction (Gram-Schmidt order)
    c0 = np.moveaxis(C, 2, 0).reshape(3, -1)[0]
    np.testing.assert_allclose(c[0], c0 / np.linalg.norm(c0), atol=1e-12)


def test_linear_solve_recovers_exact_coefficients(dataset, mtp):
    rng = np.random.default_rng(3)
    p = initial_params(mtp, seed=5, scaling=0.1)
    species = rng.normal(size=3)
    moment = rng.normal(size=mtp.moments.scalar_count)
    truth = dataclasses.replace(mtp, radial_coeffs=np.asarray(p.radial.dense()), species_coeffs=species,
                                moment_coeffs=moment, scaling=0.1)
    labelled, _ = predict(truth, dataset.configurations)
    data = prepare(labelled, mtp)
    solved, loss = linear_solve(mtp, p, data)
    assert loss < 1e-20
    np.testing.assert_allclose(np.asarray(solved.moment), moment, rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.asarray(solved.species), species, rtol=0, atol=1e-8)
    f = Objective(mtp, data).value(solved)  # residual of the E/F/S fit through the loss module
    assert f < 1e-20


def test_linear_solve_matches_objective_and_is_optimal(dataset, mtp):
    data = prepare(dataset, mtp)
    obj = Objective(mtp, data, LossWeights(penalty=0.0))
    p = initial_params(mtp, seed=0, scaling=0.03)
    solved, loss = linear_solve(mtp, p, data)
    assert obj.value(solved) == pytest.approx(loss, rel=1e-9)
    _, g = obj.value_and_grad(solved)  # stationary in the linear coefficients
    assert float(jnp.abs(g.moment).max()) < 1e-8 * max(1.0, loss)
    assert float(jnp.abs(g.species).max()) < 1e-8 * max(1.0, loss)


def test_coefficient_l2_is_in_f_and_in_the_exact_solve(dataset, mtp):
    """f gains lambda |moment|^2 (species energies exempt), and the solve minimises f with it:
    the gradient in every linear coefficient vanishes, the coefficients shrink, and a small
    ridge moves f by little."""
    lam = 1e-4
    weights = LossWeights(penalty=0.0, coefficient_l2=lam)
    data, plain = prepare(dataset, mtp, weights), prepare(dataset, mtp, LossWeights(penalty=0.0))
    obj = Objective(mtp, data)
    p = initial_params(mtp, seed=0, scaling=0.03)
    solved, loss = linear_solve(mtp, p, data)
    moment = np.asarray(solved.moment)
    assert obj.value(solved) == pytest.approx(loss + lam * float(moment @ moment), rel=1e-9)
    assert obj.penalty(solved) == pytest.approx(lam * float(moment @ moment), rel=1e-12)
    _, g = obj.value_and_grad(solved)
    f = obj.value(solved)
    assert float(jnp.abs(g.moment).max()) < 1e-8 * max(1.0, f)
    assert float(jnp.abs(g.species).max()) < 1e-8 * max(1.0, f)
    free, free_loss = linear_solve(mtp, p, plain)
    assert np.linalg.norm(moment) < np.linalg.norm(np.asarray(free.moment))
    assert free_loss <= loss and obj.value(solved) <= obj.value(free)
    with pytest.raises(ValueError, match="coefficient_l2"):
        LossWeights(coefficient_l2=-1.0)


@pytest.mark.parametrize("radial", ["dense", "mf"])
def test_design_matrix_equals_derivative_of_the_force_pass(dataset, radial):
    """The chain-rule design matrix (sparse product Jacobians) against forward-mode
    differentiation of energies, forces and virials with respect to the moment coefficients."""
    import jax

    from mlipress.models.mtp.evaluator import make_efs_fn
    from mlipress.models.layers import MatrixFactorized
    from mlipress.models.mtp.features import mtp_features_fn

    mtp = untrained_mtp(10, 3, 1.5, 5.0)
    p = initial_params(mtp, seed=2, scaling=0.1)
    if radial == "mf":
        p = p.replace(radial=MatrixFactorized.from_dense(np.asarray(p.radial.dense()), 3))
    batch = prepare(dataset, mtp).chunks[0].batch
    # the MTP's features: [species | moment] columns; the species ones are atom counts
    cols = [c[..., mtp.species_count:] for c in jax.jit(mtp_features_fn(mtp))(p, batch)]
    counts = jax.jit(mtp_features_fn(mtp))(p, batch)[0][:, :mtp.species_count]
    efs = make_efs_fn(mtp)

    def lin(m):
        out = efs(p.replace(moment=m, species=jnp.zeros(3)), batch)
        return out["energy"], out["forces"], out["virial"]

    ref = jax.jacfwd(lin)(p.moment)
    for got, want in zip(cols, ref):
        scale = float(jnp.abs(want).max())
        assert scale > 0
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-11 * scale)
    n_atoms = np.bincount(dataset.configurations[0].types, minlength=3)
    np.testing.assert_array_equal(np.asarray(counts)[0], n_atoms)


def test_settings_validation():
    with pytest.raises(ValueError, match="max_iter"):
        TrainSettings(max_iter=-1)
    with pytest.raises(ValueError, match="checkpoint path"):
        TrainSettings(checkpoint_every=10)
    with pytest.raises(ValueError, match="resume"):
        TrainSettings(resume=True)
    with pytest.raises(ValueError, match="gtol"):
        TrainSettings(gtol=float("nan"))
    with pytest.raises(ValueError, match="max_time"):
        TrainSettings(max_time=-1.0)
    with pytest.raises(TypeError, match="LossWeights"):
        TrainSettings(weights={"energy": 1.0})
    with pytest.raises(ValueError, match="weighting"):
        LossWeights(weighting="atoms")


def test_time_limit_stops_training(dataset, mtp):
    out = io.StringIO()
    result = train(mtp, dataset, TrainSettings(**{**FAST, "max_iter": 1000}, max_time=1e-3), out=out)
    assert result.stop_reason == "time limit (0.001 s)"
    assert result.history[-1]["iteration"] == 1  # the check runs after each iteration
    assert "time limit" in out.getvalue()


def test_training_converges_deterministic_and_resumes(dataset, mtp, tmp_path):
    log = tmp_path / "log.jsonl"
    ckpt_a = tmp_path / "a.npz"
    settings = TrainSettings(**FAST, seed=2, log_file=str(log), checkpoint=str(ckpt_a), checkpoint_every=5)
    out = io.StringIO()
    a = train(mtp, dataset, settings, out=out)
    text = out.getvalue()
    assert "meV/atom" in text and "ETA" in text and "done after" in text
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[-1]["event"] == "final"

    # the loss falls well below the start (after its exact linear solve + scaling search);
    # the slow test below trains longer and checks orders of magnitude
    f_start = records[0]["f"]
    assert records[0]["event"] == "scaling_search"
    assert a.state.value < 0.3 * f_start
    final = records[-1]
    assert final["energy_rmse_meV_per_atom"] < 30.0
    assert final["force_rmse_eV_per_A"] < 0.3

    # a second run of the same seed, interrupted after its checkpoint at iteration 10 and then
    # resumed, ends bit-identical to the first: determinism and checkpoint/resume together
    ckpt = tmp_path / "c.npz"
    s2 = dataclasses.replace(settings, log_file=None, checkpoint=str(ckpt))

    with pytest.raises(Interrupted):
        train(mtp, dataset, s2, callback=interrupt_at(12), out=io.StringIO())
    assert ckpt.exists()
    c = train(mtp, dataset, dataclasses.replace(s2, resume=True), out=io.StringIO())
    for k in ("radial", "species", "moment", "scaling"):
        la, lc = (jax.tree_util.tree_leaves(getattr(r.params, k)) for r in (a, c))
        assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lc)), k


@pytest.mark.slow
def test_training_reaches_low_error_on_example(mtp):
    ds, _ = make_example_dataset(20, seed=0)
    s = TrainSettings(max_iter=300, pretrain_iters=75, log_every=50)
    r = train(untrained_mtp(8, 3, 1.5, 5.0), ds, s, out=io.StringIO())
    first, final = r.history[0], r.history[-1]
    assert r.state.value < 0.02 * first["f"]
    assert final["energy_rmse_meV_per_atom"] < 5.0


@pytest.mark.slow
def test_ensemble_reports_mean_and_sigma(dataset, mtp):
    s = TrainSettings(**{**FAST, "max_iter": 4, "pretrain_iters": 2, "log_every": 0})
    ens = train_ensemble(mtp, dataset[:6], s, valid_data=dataset[6:], k=2, out=io.StringIO())
    assert ens.seeds == (0, 1)
    e = ens.summary["energy_rmse_meV_per_atom"]
    assert len(e["values"]) == 2 and e["std"] >= 0.0
    assert e["mean"] == pytest.approx(np.mean(e["values"]))
    with pytest.raises(ValueError, match="untrained"):
        train_ensemble(ens.results[0].mtp, dataset, s, k=2)


def test_variable_projection_gradient_and_value(dataset, mtp):
    """F(c) = min_theta f(c, theta): value = f at the exact linear coefficients, gradient =
    central finite differences of F (the envelope theorem), zero for species and moment."""
    from jax.flatten_util import ravel_pytree

    from mlipress.fit.projection import ProjectedObjective

    data = prepare(dataset, mtp)
    obj = Objective(mtp, data)
    proj = ProjectedObjective(obj)
    p = initial_params(mtp, seed=4, scaling=0.1)
    full = proj.complete(p)
    f, g = proj.value_and_grad(p)
    assert f == pytest.approx(obj.value(full), rel=1e-9)
    assert f < obj.value(p)  # p's own linear coefficients are not optimal
    assert float(jnp.abs(g.moment).max()) == 0.0 and float(jnp.abs(g.species).max()) == 0.0
    flat, unravel = ravel_pytree(g.radial)
    rng = np.random.default_rng(0)
    for _ in range(2):
        d = rng.normal(size=flat.shape)
        d /= np.linalg.norm(d)
        h = 1e-5 * float(np.linalg.norm(np.asarray(p.radial.dense())))
        shift = lambda t: p.replace(radial=jax.tree_util.tree_map(  # noqa: E731
            lambda a, b: a + t * b, p.radial, unravel(jnp.asarray(d))))
        fd = (proj.value(shift(h)) - proj.value(shift(-h))) / (2 * h)
        assert float(flat @ d) == pytest.approx(fd, rel=1e-5, abs=1e-9 * abs(f) / h)


def test_variable_projection_fits_better_at_equal_iterations(dataset, mtp):
    base = dict(FAST, max_iter=30, log_every=0)
    plain = train(mtp, dataset, TrainSettings(**base, seed=3, variable_projection=False))
    vp = train(mtp, dataset, TrainSettings(**base, seed=3, variable_projection=True))
    assert vp.history[-1]["f"] < 0.7 * plain.history[-1]["f"]
    # the returned potential carries the exact linear coefficients of its radial part
    solved, _ = linear_solve(mtp, vp.params, prepare(dataset, mtp))
    np.testing.assert_allclose(np.asarray(solved.moment), np.asarray(vp.params.moment), rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("radial", ["dense", "mf:2", "tt:2,3,2"])
def test_a_fit_compiles_each_chunk_function_once(dataset, radial):
    # a weakly typed scaling became strongly typed after BFGS's flatten/unflatten, and the loss
    # and design-matrix functions compiled twice (7.7 s of a 54 s NbMoTaW fit,
    # benchmarks/results/fit_overhead.md); MF/TF fits compiled the value-only loss too, for a
    # final solve that variable projection does not need
    import collections
    import logging

    from mlipress.compress.fit import fit_compressed

    compiled = collections.Counter()

    class Record(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message.startswith("Compiling "):
                compiled[message.split(" ")[1]] += 1

    # a structure no other test compiled
    mtp = untrained_mtp(4, 3, 1.5, {"dense": 5.123, "mf:2": 5.124, "tt:2,3,2": 5.125}[radial])
    n_shapes = len(prepare(dataset, mtp).shapes)
    handler, logger = Record(), logging.getLogger("jax")
    logger.addHandler(handler)
    jax.config.update("jax_log_compiles", True)
    settings = TrainSettings(max_iter=4, log_every=0, linear_solve_every=2)
    try:
        if radial == "dense":
            train(mtp, dataset, settings)
        else:
            fit_compressed(mtp, dataset, radial, settings, out=io.StringIO())
    finally:
        jax.config.update("jax_log_compiles", False)
        logger.removeHandler(handler)
    assert compiled["jit(chunk_loss)"] == n_shapes and compiled["jit(features)"] == n_shapes, compiled


def test_training_log_and_error_reports_share_one_definition(dataset, mtp):
    # `train`'s log (rmse on prepared chunks) and `compress`/`errors` (error_report on
    # predicted configurations) print the same numbers for the same potential and data
    from mlipress.fit import rmse
    from mlipress.metrics import error_report
    from mlipress.predict import predict_dataset

    fitted = train(mtp, dataset, TrainSettings(max_iter=2, log_every=0)).mtp
    from_log = rmse(fitted, fitted.params(), prepare(dataset, fitted))
    report = error_report(dataset.configurations, predict_dataset(fitted, dataset).configurations)
    assert from_log["energy_rmse"] == pytest.approx(report["energy_per_atom_eV"]["rmse"], rel=1e-9)
    assert from_log["force_rmse"] == pytest.approx(report["forces_eV_per_A"]["rmse"], rel=1e-9)
    assert from_log["virial_rmse"] == pytest.approx(report["virial_eV"]["rmse"], rel=1e-9)

    # the log's last record describes the returned potential (under variable projection: with
    # its exact linear coefficients, not BFGS's stale ones)
    res = train(mtp, dataset, TrainSettings(max_iter=2, log_every=1))
    final = rmse(res.mtp, res.params, prepare(dataset, res.mtp))
    assert res.history[-1]["energy_rmse_meV_per_atom"] == pytest.approx(1e3 * final["energy_rmse"], rel=1e-9)
    assert res.history[-1]["force_rmse_eV_per_A"] == pytest.approx(final["force_rmse"], rel=1e-9)
