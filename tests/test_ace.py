"""ACE (mlipress.models.ace): coupling coefficients against sympy, invariances, finite
differences, the design matrix, full-rank MF = dense, an independent unvectorised NumPy
evaluation (complex harmonics from SciPy, CG from sympy), the B-basis .yaml round trip, and fits
through the same trainer and compressed fit as the MTP. The NumPy evaluation is the independent
reference in CI; agreement with python-ace itself is ``tests/test_ace_pyace.py`` (where it is
installed)."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlipress  # noqa: F401  (float64)
from mlipress.batch import build_batch
from mlipress.data import Configuration
from mlipress.io import read_potential
from mlipress.io.ace import parse_ace
from mlipress.io.errors import FileFormatError
from mlipress.models import Model
from mlipress.models.ace import ACE, BFunction, PairMatrixFactorized, untrained_ace
from mlipress.models.ace.basis import generalised_cg, real_coupling
from mlipress.models.ace.radial import cheb_exp_cos, pair_index
from mlipress.models.base import jitted_efs

ELEMENTS = ("Cu", "Ag")


def _random_ace(seed=0, body_order=4) -> ACE:
    ace = untrained_ace(ELEMENTS, body_order=body_order, n_k=5, nrad=2, lmax=2, cutoff=4.2,
                        nmax=[2, 1, 1][: body_order - 2], lmax_by_rank=[2, 2, 1][: body_order - 2])
    p = ace.init(seed)
    rng = np.random.default_rng(seed + 1)
    p = p.replace(species=jnp.asarray(rng.normal(size=2)), coeffs=jnp.asarray(0.1 * rng.normal(size=p.coeffs.shape)))
    return ace.with_params(p)


def _cluster(n=14, seed=0, periodic=True, spacing=2.4):
    rng = np.random.default_rng(seed)
    side = int(np.ceil(n ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    pos = grid * spacing + rng.normal(scale=0.2, size=(n, 3))
    cell = np.eye(3) * side * spacing + rng.normal(scale=0.1, size=(3, 3)) if periodic else None
    return Configuration(pos, rng.integers(0, 2, n), cell)


def _efs(model, config, params=None):
    batch = build_batch([config], model.cutoff, pad_atoms=32, pad_neighbors=64)
    out = jitted_efs(model)(model.params() if params is None else params, batch)
    n = config.natoms
    return float(out["energy"][0]), np.asarray(out["forces"][:n]), np.asarray(out["virial"][0]), np.asarray(out["energies"][:n])


@pytest.fixture(scope="module")
def ace():
    return _random_ace()


def test_ace_implements_the_contract(ace):
    assert isinstance(ace, Model)


def test_generalised_cg_matches_sympy_wigner_3j():
    from sympy.physics.wigner import clebsch_gordan as sym_cg
    from sympy.physics.wigner import wigner_3j

    for l in range(4):  # rank 2: <l m1 l m2 | 0 0>
        C = generalised_cg((l, l))
        for m1, m2 in itertools.product(range(-l, l + 1), repeat=2):
            assert C[m1 + l, m2 + l] == pytest.approx(float(sym_cg(l, l, 0, m1, m2, 0)), abs=1e-14)
    # rank 3: <l1 m1 l2 m2 | L M><L M l3 m3 | 0 0> = (-1)^(l1 - l2 + l3) (l1 l2 l3; m1 m2 m3)
    for l1, l2, l3 in [(1, 1, 2), (1, 2, 1), (2, 2, 2), (0, 2, 2), (2, 1, 3)]:
        C = generalised_cg((l1, l2, l3), (l3,))
        for m1, m2, m3 in itertools.product(range(-l1, l1 + 1), range(-l2, l2 + 1), range(-l3, l3 + 1)):
            ref = (-1) ** (l1 - l2 + l3) * float(wigner_3j(l1, l2, l3, m1, m2, m3))
            assert C[m1 + l1, m2 + l2, m3 + l3] == pytest.approx(ref, abs=1e-14)
    # rank 4 with L12 = L34 = L: sum_M <l1 l2|L M><l3 l4|L -M><L M L -M|0 0>
    l, L = (1, 1, 2, 2), 1
    C = generalised_cg(l, (L, L))
    m = (1, 0, -1, 0)
    ref = sum(float(sym_cg(1, 1, L, m[0], m[1], M) * sym_cg(2, 2, L, m[2], m[3], -M) * sym_cg(L, L, 0, M, -M, 0))
              for M in range(-L, L + 1))
    assert C[m[0] + 1, m[1] + 1, m[2] + 2, m[3] + 2] == pytest.approx(ref, abs=1e-14)


def test_real_coupling_is_rotation_invariant():
    from mlipress.equivariant import wigner_D
    from scipy.spatial.transform import Rotation

    R = Rotation.random(random_state=3).as_matrix()
    for ls, lint in [((1, 1), ()), ((1, 1, 2), (2,)), ((2, 1, 1), (1,)), ((1, 1, 1, 1), (2, 2))]:
        C = real_coupling(ls, lint)
        rotated = C
        for t, l in enumerate(ls):
            rotated = np.moveaxis(np.tensordot(rotated, wigner_D(l, R), axes=([t], [0])), -1, t)
        np.testing.assert_allclose(rotated, C, atol=1e-12)
        assert np.abs(C).max() > 0.05


def test_generator_drops_dependent_couplings():
    fns = untrained_ace(("Cu",), body_order=5, n_k=2, nrad=1, lmax=1).functions
    four = [f for f in fns if f.rank == 4 and f.ls == (1, 1, 1, 1)]
    assert [f.lint for f in four] == [(0, 0)]  # as in pacemaker's files: one invariant of (a.a)^2
    assert all(sum(f.ls) % 2 == 0 for f in fns)
    counts = {v: sum(f.rank == v for f in fns) for v in range(1, 5)}
    assert counts == {1: 2, 2: 2, 3: 2, 4: 3}


def test_rotation_translation_permutation_invariance(ace):
    from scipy.spatial.transform import Rotation

    c = _cluster(14, seed=2)
    e0, f0, w0, v0 = _efs(ace, c)
    R = Rotation.random(random_state=7).as_matrix()
    e1, f1, w1, v1 = _efs(ace, Configuration(c.positions @ R.T + np.array([0.3, -1.1, 2.0]), c.types, c.cell @ R.T))
    assert e1 == pytest.approx(e0, rel=1e-12)
    np.testing.assert_allclose(v1, v0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(f1, f0 @ R.T, atol=1e-11)
    np.testing.assert_allclose(w1, R @ w0 @ R.T, atol=1e-10)
    perm = np.random.default_rng(0).permutation(c.natoms)
    e2, f2, _, v2 = _efs(ace, Configuration(c.positions[perm], c.types[perm], c.cell))
    assert e2 == pytest.approx(e0, rel=1e-12)
    np.testing.assert_allclose(f2, f0[perm], atol=1e-12)


def assert_finite_differences(model, c, symmetric_virial=False, strains=((0, 0), (1, 2), (2, 0))):
    """Forces and virial of ``model`` on ``c`` against central differences of the energy (the
    symmetric part of the virial with ``symmetric_virial``: all a symmetric strain sees)."""
    _, forces, virial, _ = _efs(model, c)
    if symmetric_virial:
        virial = (virial + virial.T) / 2
    h = 1e-5
    for atom, axis in [(0, 0), (5, 1), (11, 2)]:
        shifted = []
        for sign in (1, -1):
            pos = c.positions.copy()
            pos[atom, axis] += sign * h
            shifted.append(_efs(model, Configuration(pos, c.types, c.cell))[0])
        assert forces[atom, axis] == pytest.approx(-(shifted[0] - shifted[1]) / (2 * h), rel=1e-6, abs=1e-8)
    for a, b in strains:
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h / 2 if a != b else h
        energies = [_efs(model, Configuration(c.positions @ (np.eye(3) + s * eps), c.types, c.cell @ (np.eye(3) + s * eps)))[0]
                    for s in (1, -1)]
        assert virial[a, b] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), rel=1e-6, abs=1e-8)


def test_forces_and_virial_match_finite_differences(ace):
    assert_finite_differences(ace, _cluster(14, seed=4))


def test_design_matrix_reproduces_energy_forces_virial():
    ace = _random_ace(seed=5, body_order=3)
    configs = [_cluster(10, seed=s) for s in (5, 6)]
    batch = build_batch(configs, ace.cutoff)
    p = ace.params()
    out = jax.jit(ace.efs_fn())(p, batch)
    E, F, W = jax.jit(ace.features_fn())(p, batch)
    assert E.shape[1] == p.linear.shape[0] == 2 + 2 * len(ace.functions)
    np.testing.assert_allclose(np.asarray(E @ p.linear), np.asarray(out["energy"]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(F @ p.linear), np.asarray(out["forces"]), atol=1e-12)
    np.testing.assert_allclose(np.asarray(W @ p.linear), np.asarray(out["virial"]), atol=1e-11)


def test_full_rank_mf_equals_dense(ace):
    c = _cluster(14, seed=8)
    p = ace.params()
    mf = PairMatrixFactorized.from_dense(np.asarray(p.radial.dense()), 9)
    assert mf.rank == 5 and mf.num_params == 3 * 5 * (5 + 6)  # P r (N_k + N_rad (L+1)), rank clipped to N_k
    dense, fact = _efs(ace, c, p), _efs(ace, c, p.replace(radial=mf))
    for a, b in zip(dense, fact):
        np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-12)
    low = PairMatrixFactorized.from_dense(np.asarray(p.radial.dense()), 2)
    assert low.num_params == 3 * 2 * 11
    assert np.linalg.norm(np.asarray(low.dense()) - np.asarray(p.radial.dense())) > 1e-3  # truncation is lossy


# -- an independent, unvectorised evaluation ------------------------------------------------


def _reference_site_energies(ace: ACE, config: Configuration, radial_basis=None) -> np.ndarray:
    """Loops over atoms and neighbours; complex Condon-Shortley harmonics from SciPy, generalised
    CG from sympy, the ChebExpCos formula written out again: nothing shared with the JAX code.
    ``radial_basis(r) -> g (N_k,)``: another basis written out (SBessel: tests/test_ace_sbessel.py)."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list
    from scipy.special import sph_harm_y
    from sympy.physics.wigner import clebsch_gordan as cg

    rb, L, nrad = ace.radial_basis, ace.lmax, ace.nrad
    rc, lam, nk = rb.cutoff, rb.lam, rb.n_k
    atoms = Atoms(positions=config.positions, cell=config.cell, pbc=config.cell is not None)
    I, J, D = neighbor_list("ijD", atoms, rc)
    pairs = pair_index(ace.n_species)

    def cheb_exp_cos_g(r):
        x = 1 - 2 * (math.exp(-lam * r / rc) - math.exp(-lam)) / (1 - math.exp(-lam))
        T = [1.0, x]
        for _ in range(nk):
            T.append(2 * x * T[-1] - T[-2])
        vals = np.array([1.0] + [0.5 - 0.5 * T[k] for k in range(1, nk)])
        cut = 0.5 * (1 + math.cos(math.pi * r / rc))
        if r > rc - rb.dcut:
            cut *= 0.5 * (1 + math.cos(math.pi * (r - rc + rb.dcut) / rb.dcut))
        return vals * cut

    g = cheb_exp_cos_g if radial_basis is None else radial_basis

    @__import__("functools").lru_cache(maxsize=None)
    def gcg(ls, lint):
        out = {}
        for ms in itertools.product(*[range(-l, l + 1) for l in ls]):
            if len(ls) == 1:
                c = 1.0
            elif len(ls) == 2:
                c = float(cg(ls[0], ls[1], 0, ms[0], ms[1], 0))
            elif len(ls) == 3:
                M = ms[0] + ms[1]
                c = float(cg(ls[0], ls[1], lint[0], ms[0], ms[1], M) * cg(lint[0], ls[2], 0, M, ms[2], 0)) if abs(M) <= lint[0] else 0.0
            else:
                M, N = ms[0] + ms[1], ms[2] + ms[3]
                c = float(cg(ls[0], ls[1], lint[0], ms[0], ms[1], M) * cg(ls[2], ls[3], lint[1], ms[2], ms[3], N)
                          * cg(lint[0], lint[1], 0, M, N, 0)) if abs(M) <= lint[0] and abs(N) <= lint[1] else 0.0
            if c:
                out[ms] = c
        return out

    energies = np.zeros(config.natoms)
    for i in range(config.natoms):
        zi = config.types[i]
        A1 = np.zeros((ace.n_species, nk), complex)
        A = np.zeros((ace.n_species, nrad, L + 1, 2 * L + 1), complex)
        for j, d in zip(J[I == i], D[I == i]):
            zj, r = config.types[j], np.linalg.norm(d)
            gr = g(r)
            C = ace.radial_coeffs[pairs[zi, zj]].reshape(nk, nrad, L + 1)
            polar, azimuth = math.acos(d[2] / r), math.atan2(d[1], d[0])
            A1[zj] += gr  # pacemaker's harmonics: 4 pi-normalised, Y_00 = 1
            for n in range(nrad):
                for l in range(L + 1):
                    R = float(gr @ C[:, n, l])
                    for m in range(-l, l + 1):
                        A[zj, n, l, m + L] += R * math.sqrt(4 * math.pi) * sph_harm_y(l, m, polar, azimuth)
        e = ace.species_coeffs[zi]
        for f, fn in enumerate(ace.functions):
            if fn.rank == 1:
                B = A1[fn.mus[0], fn.ns[0] - 1].real
            else:
                B = sum(c * np.prod([A[mu, n - 1, l, m + L] for mu, n, l, m in zip(fn.mus, fn.ns, fn.ls, ms)])
                        for ms, c in gcg(fn.ls, fn.lint).items()).real
            e += ace.coeffs[zi, f] * B
        energies[i] = e
    return energies


def test_agrees_with_an_unvectorised_numpy_evaluation():
    ace = _random_ace(seed=3, body_order=5)
    c = _cluster(10, seed=9, spacing=2.2)
    ref = _reference_site_energies(ace, c)
    _, _, _, site = _efs(ace, c)
    np.testing.assert_allclose(site, ref, rtol=1e-10, atol=1e-12)
    assert np.ptp(ref) > 1e-3  # the atoms differ: a real check


def test_radial_basis_values():
    rb = _random_ace().radial_basis
    g = np.asarray(cheb_exp_cos(jnp.asarray([0.0, 2.0, rb.cutoff - 1e-9, rb.cutoff + 0.5]), rb))
    # x(0) = -1, so g_k(0) = (1 - (-1)^k) / 2 for k >= 1
    np.testing.assert_allclose(g[0], [1.0] + [(1 - (-1) ** k) / 2 for k in range(1, rb.n_k)], atol=1e-14)
    assert np.abs(g[2:]).max() < 1e-12 and np.abs(g[1]).max() > 0.1


# -- files -----------------------------------------------------------------------------------


def test_yaml_round_trip_is_exact(ace, tmp_path):
    path = tmp_path / "ace.yaml"
    ace.write(path)
    back = read_potential(path)
    assert isinstance(back, ACE) and back.structure_key() == ace.structure_key()
    for name in ("radial_coeffs", "species_coeffs", "coeffs"):
        assert np.array_equal(getattr(back, name), getattr(ace, name))
    text = path.read_text()
    assert "speciesblock: Cu Ag" in text and "radbase: ChebExpCos" in text and "lint: [" in text
    assert "{type: Cu Cu Ag, nr: [1, 1], nl: [0, 0], c: [" in text
    untrained = untrained_ace(ELEMENTS, body_order=3, n_k=4, nrad=2, lmax=1)
    untrained.write(tmp_path / "u.yaml")
    u = read_potential(tmp_path / "u.yaml")
    assert not u.trained and u.structure_key() == untrained.structure_key()


def test_yaml_errors_name_the_field(ace, tmp_path):
    path = tmp_path / "ace.yaml"
    ace.write(path)
    text = path.read_text()
    bad = text.replace("ndensityi: 1", "ndensityi: 2", 1)
    with pytest.raises(FileFormatError, match=r"species\[0\]\.npoti.*linear embedding"):
        parse_ace(bad, "bad.yaml")
    with pytest.raises(FileFormatError, match="core-repulsion"):
        parse_ace(text.replace("core-repulsion: [0, 0]", "core-repulsion: [1.5, 2]", 1), "bad.yaml")
    with pytest.raises(FileFormatError, match=r"bad\.yaml.*nbody\[0\]"):
        parse_ace(text.replace("nr: [1]", "nr: [0]", 1), "bad.yaml")


def test_pacemaker_style_file_is_read(tmp_path):
    """A hand-written file in pacemaker's own layout (FinnisSinclairShiftedScaled, one density)."""
    text = """
species:
  - speciesblock: Al
    ndensityi: 1
    npoti: FinnisSinclairShiftedScaled
    parameters: [1, 1]
    nradmaxi: 1
    lmaxi: 1
    rcutij: 5.0
    dcutij: 0.01
    NameOfCutoffFunctionij: cos
    nradbaseij: 2
    radbase: ChebExpCos
    radparameters: [5.25]
    radcoefficients: [[[1.0, 0.5], [0.2, 1.0]]]
    core-repulsion: [0, 5]
    nbody:
      - {type: Al Al, nr: [1], nl: [0], c: [0.5]}
      - {type: Al Al, nr: [2], nl: [0], c: [-0.25]}
      - {type: Al Al Al, nr: [1, 1], nl: [1, 1], c: [2.0]}
"""
    ace = parse_ace(text, "al.yaml")
    assert ace.elements == ("Al",) and len(ace.functions) == 3 and ace.radial_shape == (1, 2, 2)
    assert ace.functions[2] == BFunction((0, 0), (1, 1), (1, 1))
    assert np.array_equal(ace.radial_coeffs[0], [[1.0, 0.2], [0.5, 1.0]])  # [n][l][k] -> Chat[k, n (L+1) + l]


# -- fitting ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_fits_with_the_common_trainer():
    import io

    from mlipress.compress import fit_compressed
    from mlipress.examples import make_example_dataset
    from mlipress.fit import TrainSettings, train

    ds, species = make_example_dataset(2, seed=4)
    ace = untrained_ace(species, body_order=3, n_k=3, nrad=1, lmax=1, cutoff=4.0)
    s = TrainSettings(max_iter=2, log_every=1, ftol=0.0)
    fit = train(ace, ds, s, out=io.StringIO())
    assert fit.history[-1]["f"] < fit.history[0]["f"] and isinstance(fit.mtp, ACE) and fit.mtp.trained
    with pytest.raises(ValueError, match="ACE radial parametrisations"):
        fit_compressed(ace, ds, "tt:2,2,2", s, out=io.StringIO())


@pytest.mark.slow
def test_compressed_fit_and_command_line(tmp_path, capsys):
    """``mlipress init --model ace`` -> ``train --init --radial mf:1`` (dense .yaml + factors) ->
    ``evaluate``; ``train --model ace`` without a separate init."""
    from mlipress.cli import main
    from mlipress.compress import read_compressed
    from mlipress.examples import make_example_dataset
    from mlipress.io import read_dataset, write_dataset

    ds, species = make_example_dataset(3, seed=4)
    data = tmp_path / "train.xyz"
    write_dataset(ds, data, species=species)
    init, out = tmp_path / "ace.yaml", tmp_path / "mf.yaml"
    assert main(["init", "--model", "ace", "--species", ",".join(species), "--body-order", "3", "--nk", "4",
                 "--nrad", "2", "--lmax", "1", "--cutoff", "4.5", "-o", str(init)]) == 0
    assert main(["train", "--init", str(init), "--train", str(data), "--radial", "mf:1", "--max-iter", "3",
                 "-o", str(out)]) == 0
    assert "radial parameters 48 of 96" in capsys.readouterr().out  # 6 pairs x 1 x (4 + 4) of 6 x 4 x 4
    model, params, header = read_compressed(out)
    assert isinstance(model, ACE) and isinstance(params.radial, PairMatrixFactorized) and header["kind"] == "mf"
    pred = tmp_path / "pred.xyz"
    assert main(["evaluate", str(out), str(data), str(pred)]) == 0
    from mlipress.predict import predict

    got = read_dataset(pred, species=species)
    (ref,), _ = predict(model, [read_dataset(data, species=species).configurations[0]])
    assert got.configurations[0].energy == pytest.approx(ref.energy, rel=1e-10)
    fresh = tmp_path / "fresh.yaml"
    assert main(["train", "--model", "ace", "--species", ",".join(species), "--body-order", "2", "--nk", "3",
                 "--train", str(data), "--max-iter", "2", "-o", str(fresh)]) == 0
    assert read_potential(fresh).trained

    # compress and sweep take ACE files like .mtp ones
    valid = tmp_path / "valid.xyz"
    write_dataset(make_example_dataset(2, seed=5)[0], valid, species=species)
    compressed = tmp_path / "compressed.yaml"
    assert main(["compress", str(fresh), "--train", str(data), "--valid", str(valid), "--radial", "mf:1",
                 "--max-iter", "2", "-o", str(compressed)]) == 0
    model, params, header = read_compressed(compressed)
    assert isinstance(model, ACE) and isinstance(params.radial, PairMatrixFactorized) and params.radial.rank == 1
    capsys.readouterr()
    table = tmp_path / "sweep.json"
    assert main(["sweep", "--init", str(init), "--train", str(data), "--valid", str(valid), "--kind", "mf",
                 "--ranks", "1,2", "--seeds", "1", "--max-iter", "2", "-o", str(table)]) == 0
    rows = __import__("json").loads(table.read_text())["rows"]
    assert sorted(r["rank"] for r in rows) == [1, 2] and all(math.isfinite(r["valid_loss"]) for r in rows)
