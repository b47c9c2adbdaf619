"""ACE with CP-decomposed couplings (``coupling="cp:R"``, mlipress.models.ace.coupling): exact at
full CP rank, invariance error below the library's bound and falling with rank, finite-difference
forces and virial, the design matrix, the .yaml round trip of the coupling and clear errors for a
bad ``--coupling``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import mlipress  # noqa: F401  (float64)
from mlipress.batch import build_batch
from mlipress.data import Configuration
from mlipress.io import read_potential
from mlipress.io.ace import parse_ace
from mlipress.io.errors import FileFormatError
from mlipress.models.ace import ACE, untrained_ace
from mlipress.models.ace.coupling import (coupling_factors, coupling_report, cp_rank, parse_ace_coupling,
                                          product_table)
from mlipress.models.ace.evaluator import make_site_basis_fn
from test_ace import ELEMENTS, _cluster, _efs, assert_finite_differences

FULL = "cp:21"  # >= the exact rank of every coupling of degrees <= 2, rank <= 3 ((2, 2, 2): 21)


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Fitted factors go to a temporary cache, not the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLIPRESS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def ace():
    """A small trained-looking ACE with every coupling of degrees <= 2 up to rank 3 (41 B-functions)."""
    ace = untrained_ace(ELEMENTS, body_order=4, n_k=3, nrad=1, lmax=2, cutoff=4.2, nmax=[1, 1], lmax_by_rank=[2, 2])
    p = ace.init(0)
    rng = np.random.default_rng(1)
    return ace.with_params(p.replace(species=jnp.asarray(rng.normal(size=2)),
                                     coeffs=jnp.asarray(0.1 * rng.normal(size=p.coeffs.shape))))


def test_full_rank_cp_equals_the_exact_coupling(ace):
    full = ace.with_coupling(FULL)
    assert max(r["exact_rank"] for r in coupling_report(full)) == 21
    assert all(r["rank"] == r["exact_rank"] and r["cp_error"] < 1e-13 for r in coupling_report(full))
    c = _cluster(14, seed=3)
    for exact, cp in zip(_efs(ace, c), _efs(full, c)):
        scale = np.max(np.abs(exact))
        np.testing.assert_allclose(cp, exact, rtol=0, atol=1e-10 * scale)
    # fewer product terms than the nonzero CG coefficients: (1, 1, 2): 9 < 11, (2, 2, 2): 21 < 25
    assert product_table(full).coef.size < product_table(ace).coef.size


def _bases(model, config):
    """(A (atoms, n_a), B (atoms, F)) of the real atoms of ``config``."""
    basis = make_site_basis_fn(model)
    batch = build_batch([config], model.cutoff)
    p = model.params()
    a = basis.phi(p, batch.vectors, batch.mask, batch.types_i[:, None], batch.types_j).sum(axis=1)
    n = config.natoms
    return np.asarray(a)[:n], np.asarray(basis.from_base(a))[:n]


def _factor_norms(model, a):
    """prod_t ||A_{mu_t n_t l_t}|| of every B-function (atoms, F); 1 for rank 1."""
    nt, nk, nrad, L = model.n_species, model.radial_basis.n_k, model.nrad, model.lmax
    nlm = (L + 1) ** 2
    out = np.ones((a.shape[0], len(model.functions)))
    for f, fn in enumerate(model.functions):
        if fn.rank == 1:
            continue
        for mu, n, l in zip(fn.mus, fn.ns, fn.ls):
            start = nt * nk + (mu * nrad + n - 1) * nlm + l * l
            out[:, f] *= np.linalg.norm(a[:, start:start + 2 * l + 1], axis=1)
    return out


def test_invariance_error_is_below_the_bound_and_falls_with_rank(ace):
    c = _cluster(12, seed=6, periodic=False)
    rotated = [Configuration(c.positions @ R.T, c.types) for R in Rotation.random(3, random_state=1).as_matrix()]
    errors = []
    for rank in (1, 4, 21):
        model = ace.with_coupling(f"cp:{rank}")
        bound = {(r["ls"], r["lint"]): r["bound"] for r in coupling_report(model)}
        a, B = _bases(model, c)
        norms = _factor_norms(model, a)
        per_function = np.array([bound.get((fn.ls, fn.lint), 0.0) for fn in model.functions])
        worst = 0.0
        for config in rotated:
            _, B_rot = _bases(model, config)
            diff = np.abs(B_rot - B)
            assert np.all(diff <= per_function * norms + 1e-12 * (1 + np.abs(B))), rank
            worst = max(worst, float(np.max(diff / norms)))
        errors.append(worst)
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[0] > 1e-2 and errors[-1] < 1e-12, errors


def test_cp_forces_and_virial_match_finite_differences(ace):
    """Below full rank the potential is not exactly rotation invariant, so its virial
    ``-sum r (x) dE/dr`` has an antisymmetric part (a torque); a symmetric strain sees the
    symmetric part."""
    model = ace.with_coupling("cp:4")
    c = _cluster(14, seed=4)
    assert _efs(model, c)[0] != pytest.approx(_efs(ace, c)[0], rel=1e-6)  # reduced rank: a different potential
    assert_finite_differences(model, c, symmetric_virial=True, strains=((0, 0), (1, 2)))


def test_cp_design_matrix_reproduces_energy_forces_virial(ace):
    model = ace.with_coupling("cp:4")
    batch = build_batch([_cluster(10, seed=s) for s in (5, 6)], model.cutoff)
    p = model.params()
    out = jax.jit(model.efs_fn())(p, batch)
    E, F, W = jax.jit(model.features_fn())(p, batch)
    np.testing.assert_allclose(np.asarray(E @ p.linear), np.asarray(out["energy"]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(F @ p.linear), np.asarray(out["forces"]), atol=1e-12)
    np.testing.assert_allclose(np.asarray(W @ p.linear), np.asarray(out["virial"]), atol=1e-11)


def test_factors_are_reproducible_and_clipped_to_the_exact_rank():
    first, again = coupling_factors((2, 2, 2), (2,), 6), coupling_factors((2, 2, 2), (2,), 6, use_disk=False)
    for f, g in zip(first, again):
        np.testing.assert_array_equal(f, g)
    assert first[0].shape == (5, 6) and coupling_factors((1, 1), (), 50)[0].shape == (3, 3)


def test_coupling_round_trips_through_the_yaml(ace, tmp_path):
    model = ace.with_coupling("cp:4")
    model.write(tmp_path / "cp.yaml")
    back = read_potential(tmp_path / "cp.yaml")
    assert isinstance(back, ACE) and back.coupling == "cp:4" and back.structure_key() == model.structure_key()
    assert back.structure_key() != ace.structure_key()
    c = _cluster(8, seed=9)
    assert _efs(back, c)[0] == _efs(model, c)[0]
    text = (tmp_path / "cp.yaml").read_text()
    assert "mlipress_coupling: 'cp:4'" in text
    ace.write(tmp_path / "exact.yaml")
    assert "mlipress_coupling" not in (tmp_path / "exact.yaml").read_text()
    assert read_potential(tmp_path / "exact.yaml").coupling == "exact"
    with pytest.raises(FileFormatError, match=r"bad\.yaml.*metadata\.mlipress_coupling.*cp:R"):
        parse_ace(text.replace("mlipress_coupling: 'cp:4'", "mlipress_coupling: 'cp:zero'"), "bad.yaml")


def test_coupling_specs_and_errors(tmp_path, capsys):
    from mlipress.cli import main

    assert parse_ace_coupling(" CP:08 ") == "cp:8" and cp_rank("cp:8") == 8 and cp_rank("exact") is None
    for bad in ("cp:0", "cp", "cp:-1", "dense", "cp:2.5", ""):
        with pytest.raises(ValueError, match="bad ACE coupling"):
            untrained_ace(ELEMENTS, body_order=3, n_k=3, nrad=1, lmax=1, coupling=bad)
    out = tmp_path / "ace.yaml"
    args = ["init", "--model", "ace", "--species", "Cu,Ag", "--body-order", "3", "--nk", "3", "--nrad", "1",
            "--lmax", "1", "-o", str(out)]
    assert main(args + ["--coupling", "cp:x"]) == 2
    err = capsys.readouterr().err
    assert "mlipress init: error: --coupling: bad ACE coupling 'cp:x'" in err and "cp:R" in err and not out.exists()
    assert main(args + ["--coupling", "cp:3"]) == 0
    assert "cp:3 coupling" in capsys.readouterr().out
    assert read_potential(out).coupling == "cp:3"


@pytest.mark.slow
def test_cp_ace_trains_from_the_command_line(tmp_path, capsys):
    """``train --model ace --coupling cp:R`` and ``train --init --coupling``: the common trainer
    (variable projection on the contract), the coupling kept in the output file."""
    from mlipress.cli import main
    from mlipress.examples import make_example_dataset
    from mlipress.io import read_dataset, write_dataset
    from mlipress.predict import predict

    ds, species = make_example_dataset(4, seed=2)
    data = tmp_path / "train.xyz"
    write_dataset(ds, data, species=species)
    out = tmp_path / "cp.yaml"
    assert main(["train", "--model", "ace", "--species", ",".join(species), "--body-order", "4", "--nk", "4",
                 "--nrad", "1", "--lmax", "2", "--coupling", "cp:2", "--train", str(data), "--max-iter", "3",
                 "-o", str(out)]) == 0
    model = read_potential(out)
    assert model.trained and model.coupling == "cp:2"
    (pred,), _ = predict(model, [read_dataset(data, species=species).configurations[0]])
    assert np.isfinite(pred.energy)
    again = tmp_path / "exact.yaml"
    assert main(["train", "--init", str(out), "--coupling", "exact", "--train", str(data), "--max-iter", "2",
                 "-o", str(again)]) == 0
    assert read_potential(again).coupling == "exact"
    assert main(["train", "--level", "2", "--coupling", "cp:2", "--train", str(data), "-o", str(tmp_path / "m.mtp")]) == 2
    assert "--coupling applies to ACE" in capsys.readouterr().err
