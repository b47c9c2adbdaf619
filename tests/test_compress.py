"""Compressed MTPs (mlipress.compress): gradients through MF/TT, fitting MF/TT/R-MF/MFRA,
factored files, dense export and the ``mlipress compress`` command, on a tiny problem."""

from __future__ import annotations

import dataclasses
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Interrupted, interrupt_at

from mlipress.models.mtp.basis import untrained_mtp
from mlipress.compress import fit_compressed, initial_compressed_params, read_compressed, sidecar_path, write_compressed
from mlipress.compress.fit import rmf_objective, join_xi
from mlipress.data import Dataset
from mlipress.models.base import jitted_efs
from mlipress.examples import make_example_dataset
from mlipress.loss import Objective, prepare
from mlipress.models.mtp.model import MTPParams
from mlipress.models.layers import Dense, MatrixFactorized, TensorTrain, to_matrix
from mlipress.fit import TrainSettings, linear_solve

jax.config.update("jax_enable_x64", True)

SETTINGS = TrainSettings(max_iter=6, log_every=0, linear_solve_every=3, scaling_refine=1,
                         scaling_grid=(-1.0, 0.0), ftol=0.0)


@pytest.fixture(scope="module")
def problem():
    """Level-6, 3-species MTP with random radial part and exactly solved linear coefficients
    (a cheap stand-in for a trained potential), 8 EMT configurations."""
    ds, species = make_example_dataset(n_configs=8)
    ds = Dataset(tuple(ds.configurations[:5]), species)
    mtp = untrained_mtp(6, 3, 2.0, 5.0, 6)
    data = prepare(ds, mtp, SETTINGS.weights)
    rng = np.random.default_rng(1)
    params = MTPParams(Dense.from_dense(0.3 * rng.standard_normal(mtp.radial_shape)),
                       jnp.zeros(3), jnp.zeros(mtp.moments.scalar_count), jnp.asarray(1.0))
    params, _ = linear_solve(mtp, params, data)
    trained = mtp.with_params(params)
    return {"ds": ds, "species": species, "mtp": mtp, "trained": trained, "data": data}


def _fd_check(obj, params, leaf_path, rng, n_dirs=2, h=1e-6):
    f0, g = obj.value_and_grad(params)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    gflat, _ = jax.flatten_util.ravel_pytree(g)
    for _ in range(n_dirs):
        d = rng.standard_normal(flat.shape)
        # keep scaling fixed (the objective reports a zero gradient for it)
        d = np.asarray(jax.flatten_util.ravel_pytree(unravel(d).zeroed(("scaling",)))[0])
        fp = obj.value(unravel(flat + h * d))
        fm = obj.value(unravel(flat - h * d))
        fd = (fp - fm) / (2 * h)
        an = float(gflat @ d)
        assert abs(fd - an) <= 1e-5 * max(1.0, abs(an)), (leaf_path, fd, an)


@pytest.mark.parametrize("kind", ["mf", "tt"])
def test_gradient_through_factors_matches_finite_differences(problem, kind):
    import jax.flatten_util  # noqa: F401

    mtp = problem["mtp"]
    base = problem["trained"].params()
    radial = (MatrixFactorized.random(3, mtp.radial_shape, 2) if kind == "mf"
              else TensorTrain.random(3, mtp.radial_shape, (2, 2, 2)))
    params = base.replace(radial=radial)
    obj = Objective(mtp, problem["data"])
    _fd_check(obj, params, kind, np.random.default_rng(0))


@pytest.mark.slow
def test_rmf_adapter_gradient(problem):
    mtp = problem["mtp"]
    p = problem["trained"].params()
    obj = Objective(mtp, problem["data"])
    vg, v = rmf_objective(obj, p)
    xi, X = join_xi(p), np.asarray(to_matrix(p.radial.dense()))
    f, (gxi, gX) = vg(xi, X)
    assert np.isclose(f, obj.value(p), rtol=1e-12)
    rng = np.random.default_rng(2)
    dxi, dX = rng.standard_normal(xi.shape), rng.standard_normal(X.shape)
    nrm = np.sqrt(np.sum(dxi**2) + np.sum(dX**2))
    dxi, dX = dxi / nrm, dX / nrm
    # the loss is stiff in xi: Richardson-extrapolated central differences
    c = lambda h: (v(xi + h * dxi, X + h * dX) - v(xi - h * dxi, X - h * dX)) / (2 * h)  # noqa: E731
    h = 1e-6
    fd = (4 * c(h / 2) - c(h)) / 3
    assert np.isclose(fd, gxi @ dxi + np.sum(gX * dX), rtol=1e-4, atol=1e-8)


@pytest.mark.slow
def test_full_rank_compression_reproduces_model(problem):
    mtp, trained = problem["mtp"], problem["trained"]
    base = trained.params()
    batch = problem["data"].chunks[0].batch
    efs = jitted_efs(mtp)
    ref = efs(base, batch)
    shape = mtp.radial_shape
    for spec in ("mf:100", "rmf:100", "tt:100,100,100"):
        p = initial_compressed_params(trained, problem["data"], spec, SETTINGS, resolve=False)
        out = efs(p, batch)
        np.testing.assert_allclose(np.asarray(p.radial.dense()), np.asarray(base.radial.dense()), atol=1e-12)
        np.testing.assert_allclose(np.asarray(out["energy"]), np.asarray(ref["energy"]), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(np.asarray(out["forces"]), np.asarray(ref["forces"]), atol=1e-10)
    assert shape == p.radial.shape


def _f_history(res):
    return [r["f"] for r in res.history if "f" in r]


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["mf:2", "tt:2,2,2"])
def test_mf_tt_refit_decreases_loss(problem, spec):
    trained = problem["trained"]
    obj = Objective(problem["mtp"], problem["data"])
    p0 = initial_compressed_params(trained, problem["data"], spec, SETTINGS)
    res = fit_compressed(trained, problem["ds"], spec, SETTINGS, out=io.StringIO())
    kind = spec.split(":")[0]
    assert type(res.radial).__name__ == {"mf": "MatrixFactorized", "tt": "TensorTrain"}[kind]
    assert obj.value(res.params) < obj.value(p0)
    assert res.radial.num_params < trained.radial_coeffs.size


@pytest.mark.parametrize("projection", [False, True])
def test_rmf_decreases_monotonically(problem, projection):
    trained = problem["trained"]
    s = TrainSettings(max_iter=6, log_every=1, ftol=0.0, variable_projection=projection)
    res = fit_compressed(trained, problem["ds"], "rmf:2", s, out=io.StringIO())
    f = [r["f"] for r in res.history if r["event"] == "progress"]
    assert len(f) >= 3
    assert all(b <= a for a, b in zip(f, f[1:])) and f[-1] < f[0]
    assert res.radial.rank == 2
    obj = Objective(problem["mtp"], problem["data"])
    assert obj.value(res.params) == pytest.approx(f[-1], rel=1e-9)
    if projection:  # the linear coefficients are exact for the final radial part
        solved, _ = linear_solve(problem["mtp"], res.params, problem["data"])
        np.testing.assert_allclose(np.asarray(solved.moment), np.asarray(res.params.moment),
                                   rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("projection", [False, True])
def test_mfra_grows_rank_on_schedule(problem, projection):
    trained = problem["trained"]
    s = TrainSettings(max_iter=6, log_every=0, ftol=0.0, variable_projection=projection)
    res = fit_compressed(trained, problem["ds"], "mfra:6", s, out=io.StringIO(), mfra_interval=2)
    # r_min = 2, delta_r = 2, every 2 iterations, up to r_max = 6 (N_f N_b = 12 >= 6; N_T^2 = 9)
    assert res.rank_history == ((0, 2), (2, 4), (4, 6))
    assert res.radial.rank == 6
    f = [r["f"] for r in res.history]
    assert all(b <= a + 1e-12 for a, b in zip(f, f[1:]))


@pytest.mark.slow
def test_untrained_start(problem):
    res = fit_compressed(problem["mtp"], problem["ds"], "mf:2", SETTINGS, out=io.StringIO())
    assert np.isfinite(res.history[-1]["f"]) and res.radial.rank == 2


@pytest.mark.parametrize("kind", ["mf", "tt", "dense"])
def test_factored_file_round_trip_and_dense_export(problem, tmp_path, kind):
    from mlipress.io.mtp import read_mtp
    from mlipress.models.layers import Dense

    mtp, base = problem["mtp"], problem["trained"].params()
    radial = {"mf": MatrixFactorized.random(5, mtp.radial_shape, 2),
              "tt": TensorTrain.random(5, mtp.radial_shape, (2, 2, 2)),
              "dense": Dense.from_dense(base.radial.dense())}[kind]
    params = base.replace(radial=radial)
    path = tmp_path / "c.mtp"
    write_compressed(path, mtp, params, spec=kind)
    assert sidecar_path(path).exists()
    mtp2, p2, header = read_compressed(path)
    assert header["kind"] == kind and type(p2.radial) is type(radial)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the dense .mtp predicts what the factored model predicts
    dense_mtp = read_mtp(path)
    batch = problem["data"].chunks[0].batch
    out_f = jitted_efs(mtp)(params, batch)
    out_d = jitted_efs(dense_mtp)(dense_mtp.params(), batch)
    for key in ("energy", "forces", "virial"):
        np.testing.assert_allclose(np.asarray(out_d[key]), np.asarray(out_f[key]), atol=1e-10, rtol=1e-10)
    # a sidecar of another potential is refused
    other = tmp_path / "other.mtp"
    other.write_text(path.read_text().replace("species_count", "species_count", 1) + "\n")
    sidecar_path(other).write_bytes(sidecar_path(path).read_bytes())
    with pytest.raises(ValueError, match="hash"):
        read_compressed(other)


def test_cli_compress_end_to_end(problem, tmp_path, capsys):
    from mlipress.cli import main
    from mlipress.io import write_dataset
    from mlipress.io.mtp import write_mtp

    pot = tmp_path / "trained.mtp"
    write_mtp(problem["trained"], pot)
    data = tmp_path / "train.cfg"
    write_dataset(problem["ds"], data, species=problem["species"])
    out = tmp_path / "comp.mtp"
    rc = main(["compress", str(pot), "--train", str(data), "--valid", str(data), "--species", ",".join(problem["species"]),
               "--radial", "mf", "--fraction", "0.4", "--max-iter", "3", "--log-every", "0", "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "radial parameters: base 108, compressed 42 (61.1% compression)" in text and "compression" in text
    assert "errors before" in text and "errors after" in text
    mtp2, p2, header = read_compressed(out)
    assert header["kind"] == "mf" and header["spec"].startswith("mf:")
    # evaluate reads the dense export
    pred = tmp_path / "pred.cfg"
    assert main(["evaluate", str(out), str(data), str(pred), "--species", ",".join(problem["species"])]) == 0

    # checkpoints from the command line: a resumed run ends on the same potential
    args = ["compress", str(pot), "--train", str(data), "--species", ",".join(problem["species"]), "--radial", "rmf:2",
            "--max-iter", "3", "--log-every", "0", "--checkpoint", str(tmp_path / "c.npz"), "--checkpoint-every", "1"]
    assert main([*args, "-o", str(tmp_path / "a.mtp")]) == 0
    assert main([*args, "--resume", "-o", str(tmp_path / "b.mtp")]) == 0
    assert (tmp_path / "a.mtp").read_text() == (tmp_path / "b.mtp").read_text()


@pytest.mark.parametrize("spec", ["dense", "mf:2", "tt:2,2,2", "rmf:2", "mfra:4"])
def test_max_iter_is_the_number_of_iterations(problem, spec):
    # what `compress --max-iter` and `sweep --max-iter` pass down: N iterations, no more, no fewer
    s = dataclasses.replace(SETTINGS, max_iter=5, log_every=1, gtol=0.0)
    res = fit_compressed(problem["trained"], problem["ds"], spec, s, out=io.StringIO())
    iters = [r["iteration"] for r in res.history if r["event"] == "progress"]
    assert iters == [1, 2, 3, 4, 5], spec


# ttra:3,6,4 grows (2,2,2) -> (3,4,4) at 2 and -> (3,6,4) at 4, after the resume from iteration 2
@pytest.mark.parametrize("spec", ["mf:2", "tt:2,2,2", "rmf:2", "mfra:4", "ttra:3,6,4"])
def test_compressed_fit_checkpoints_and_resumes_bit_identically(problem, spec, tmp_path):
    s = dataclasses.replace(SETTINGS, max_iter=6, log_every=1, gtol=0.0)
    a = fit_compressed(problem["trained"], problem["ds"], spec, s, out=io.StringIO(), mfra_interval=2)
    ckpt = tmp_path / "c.npz"
    s2 = dataclasses.replace(s, checkpoint=str(ckpt), checkpoint_every=2)

    with pytest.raises(Interrupted):
        fit_compressed(problem["trained"], problem["ds"], spec, s2, out=io.StringIO(), mfra_interval=2,
                       callback=interrupt_at(3))
    assert ckpt.exists()
    b = fit_compressed(problem["trained"], problem["ds"], spec, dataclasses.replace(s2, resume=True),
                       out=io.StringIO(), mfra_interval=2)
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        assert np.array_equal(np.asarray(x), np.asarray(y)), spec
    assert a.rank_history == b.rank_history
    if spec == "ttra:3,6,4":
        assert a.rank_history == ((0, (2, 2, 2)), (2, (3, 4, 4)), (4, (3, 6, 4)))
    assert [r["f"] for r in a.history if r["event"] == "progress"] == [r["f"] for r in b.history if r["event"] == "progress"]
