"""pacemaker's ``radbase: SBessel`` (mlipress.models.ace.radial.simplified_bessel): the basis
against the formula written out again with SciPy's spherical Bessel j_0, its orthonormality,
derivatives against finite differences, the smooth approach to zero at the cutoff, the .yaml
round trip, ``mlipress init --radbase SBessel``, and an SBessel ACE against the unvectorised
NumPy evaluation of tests/test_ace.py and finite differences of its energy. Agreement with
python-ace itself is in ``tests/test_ace_pyace.py`` (where it is installed)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import spherical_jn

import mlipress  # noqa: F401  (float64)
from mlipress.io import read_potential
from mlipress.io.ace import parse_ace
from mlipress.io.errors import FileFormatError
from mlipress.models.ace import ACE, untrained_ace
from mlipress.models.ace.radial import RadialBasisSpec, radial_basis_values, simplified_bessel
from test_ace import ELEMENTS, _cluster, _efs, _reference_site_energies, assert_finite_differences

RC, NK = 4.2, 7


def _scipy_sbessel(r: float, rc: float, nk: int) -> np.ndarray:
    """Kocer, Mason, Erturk (2019) as pacemaker evaluates it, written out with SciPy's j_0 and
    plain loops: f_n = (-1)^n sqrt(2) pi rc^(-3/2) (n+1)(n+2) / sqrt((n+1)^2 + (n+2)^2)
    [j0((n+1) pi r / rc) + j0((n+2) pi r / rc)], g_0 = f_0, g_n = (f_n + sqrt(e_n / d_{n-1})
    g_{n-1}) / sqrt(d_n), e_n = n^2 (n+2)^2 / (4 (n+1)^4 + 1), d_0 = 1, d_n = 1 - e_n / d_{n-1};
    zero from the cutoff on."""
    if r >= rc:
        return np.zeros(nk)
    f = [(-1) ** n * math.sqrt(2) * math.pi / rc ** 1.5 * (n + 1) * (n + 2) / math.sqrt((n + 1) ** 2 + (n + 2) ** 2)
         * (spherical_jn(0, (n + 1) * math.pi * r / rc) + spherical_jn(0, (n + 2) * math.pi * r / rc))
         for n in range(nk)]
    g, d = [f[0]], [1.0]
    for n in range(1, nk):
        e = n ** 2 * (n + 2) ** 2 / (4 * (n + 1) ** 4 + 1)
        d.append(1 - e / d[n - 1])
        g.append((f[n] + math.sqrt(e / d[n - 1]) * g[n - 1]) / math.sqrt(d[n]))
    return np.array(g)


@pytest.fixture(scope="module")
def basis():
    return RadialBasisSpec(RC, NK, kind="SBessel")


def _sbessel_ace(seed=0, body_order=4) -> ACE:
    ace = untrained_ace(ELEMENTS, body_order=body_order, n_k=5, nrad=2, lmax=2, cutoff=RC,
                        nmax=[2, 1, 1][: body_order - 2], lmax_by_rank=[2, 2, 1][: body_order - 2], radbase="SBessel")
    p = ace.init(seed)
    rng = np.random.default_rng(seed + 1)
    p = p.replace(species=jnp.asarray(rng.normal(size=2)), coeffs=jnp.asarray(0.1 * rng.normal(size=p.coeffs.shape)))
    return ace.with_params(p)


def test_sbessel_matches_the_formula_written_with_scipy(basis):
    r = np.concatenate([[0.0, 1e-7], np.linspace(0.05, RC - 1e-3, 97), [RC, RC + 0.3, 2 * RC]])
    got = np.asarray(simplified_bessel(jnp.asarray(r), basis))
    assert got.dtype == np.float64 and got.shape == (r.size, NK)
    ref = np.stack([_scipy_sbessel(x, RC, NK) for x in r])
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)
    assert np.abs(ref).max() > 1.0
    np.testing.assert_array_equal(np.asarray(radial_basis_values(jnp.asarray(r), basis)), got)


def test_sbessel_is_orthonormal_with_weight_r_squared(basis):
    """The point of the recursion (Kocer et al. 2019): int_0^rc g_m g_n r^2 dr = delta_mn."""
    x, w = np.polynomial.legendre.leggauss(120)
    r = (x + 1) * RC / 2
    g = np.asarray(simplified_bessel(jnp.asarray(r), basis))
    gram = g.T @ ((w * RC / 2 * r ** 2)[:, None] * g)
    np.testing.assert_allclose(gram, np.eye(NK), atol=1e-12)


def test_sbessel_derivative_matches_finite_differences(basis):
    r = np.linspace(0.3, RC - 0.05, 23)
    jac = jax.vmap(jax.jacfwd(lambda t: simplified_bessel(t, basis)))(jnp.asarray(r))
    h = 1e-6
    fd = (np.stack([_scipy_sbessel(x + h, RC, NK) for x in r]) - np.stack([_scipy_sbessel(x - h, RC, NK) for x in r])) / (2 * h)
    np.testing.assert_allclose(np.asarray(jac), fd, rtol=1e-6, atol=1e-8)
    # at r = 0 (j0's removable singularity) the derivative is finite and 0 (j0 is even)
    np.testing.assert_allclose(np.asarray(jax.jacfwd(lambda t: simplified_bessel(t, basis))(jnp.asarray(0.0))), 0.0,
                               atol=1e-12)


def test_sbessel_goes_smoothly_to_zero_at_the_cutoff(basis):
    """Every f_n and its derivative vanish at rc (no envelope needed), so the force of a pair is
    continuous where it leaves the cutoff; beyond it everything, gradients included, is 0."""
    grad = jax.vmap(jax.jacfwd(lambda t: simplified_bessel(t, basis)))
    for h in (1e-2, 1e-3, 1e-4):
        g = np.asarray(simplified_bessel(jnp.asarray(RC - h), basis))
        dg = np.asarray(grad(jnp.asarray([RC - h])))[0]
        assert np.abs(g).max() < 5 * h ** 2 and np.abs(dg).max() < 10 * h  # value O(h^2), slope O(h)
    inner = np.asarray(grad(jnp.asarray([RC - 0.5])))[0]
    assert np.abs(inner).max() > 0.1  # the slope is not zero everywhere: a real check
    beyond = jnp.asarray([RC, RC + 1e-9, RC + 2.0])
    assert np.all(np.asarray(simplified_bessel(beyond, basis)) == 0)
    db = np.asarray(grad(beyond))
    assert np.all(np.isfinite(db)) and np.all(db == 0)


def test_sbessel_ignores_lambda_and_dcut():
    """pacemaker's SBessel has no parameter and no dcut smoothing; the file still carries both."""
    r = jnp.linspace(0.5, RC, 9)
    a = simplified_bessel(r, RadialBasisSpec(RC, NK, 5.25, 0.01, "SBessel"))
    b = simplified_bessel(r, RadialBasisSpec(RC, NK, 1.0, 0.5, "SBessel"))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="'Gaussian' is not supported"):
        RadialBasisSpec(RC, NK, kind="Gaussian")


def test_sbessel_ace_agrees_with_the_unvectorised_numpy_evaluation():
    ace = _sbessel_ace(seed=3, body_order=5)
    c = _cluster(10, seed=9, spacing=2.2)
    ref = _reference_site_energies(ace, c, radial_basis=lambda r: _scipy_sbessel(r, RC, ace.radial_basis.n_k))
    _, _, _, site = _efs(ace, c)
    np.testing.assert_allclose(site, ref, rtol=1e-10, atol=1e-12)
    assert np.ptp(ref) > 1e-3


def test_sbessel_ace_forces_and_virial_match_finite_differences():
    assert_finite_differences(_sbessel_ace(), _cluster(14, seed=4))


def test_sbessel_yaml_round_trip(tmp_path):
    ace = _sbessel_ace(seed=1, body_order=3)
    path = tmp_path / "sb.yaml"
    ace.write(path)
    text = path.read_text()
    assert "radbase: SBessel" in text and "radbase: ChebExpCos" not in text
    back = read_potential(path)
    assert isinstance(back, ACE) and back.radial_basis.kind == "SBessel"
    assert back.structure_key() == ace.structure_key()
    for name in ("radial_coeffs", "species_coeffs", "coeffs"):
        assert np.array_equal(getattr(back, name), getattr(ace, name))
    c = _cluster(10, seed=2)
    assert _efs(back, c)[0] == _efs(ace, c)[0]
    # the same coefficients as ChebExpCos are another potential: the basis is really switched
    cheb = parse_ace(text.replace("radbase: SBessel", "radbase: ChebExpCos"), "cheb.yaml")
    assert cheb.radial_basis.kind == "ChebExpCos" and abs(_efs(cheb, c)[0] - _efs(ace, c)[0]) > 1e-3
    # SBessel needs no radparameters (pacemaker writes its default there); an unknown basis names its field
    assert parse_ace(text.replace("radparameters: [5.25]", "radparameters: []"), "x.yaml").radial_basis == ace.radial_basis
    # ... and ignores them, so pairs may carry different ones (not so for ChebExpCos)
    last = text.rindex("radparameters: [5.25]")
    mixed = text[:last] + "radparameters: [2.0]" + text[last + len("radparameters: [5.25]"):]
    assert _efs(parse_ace(mixed, "mixed.yaml"), c)[0] == _efs(ace, c)[0]
    with pytest.raises(FileFormatError, match="differ"):
        parse_ace(mixed.replace("radbase: SBessel", "radbase: ChebExpCos"), "mixed.yaml")
    with pytest.raises(FileFormatError, match=r"bad\.yaml.*species\[0\]\.radbase.*'ChebPow' is not implemented"):
        parse_ace(text.replace("radbase: SBessel", "radbase: ChebPow"), "bad.yaml")


def test_init_radbase_option(tmp_path, capsys):
    from mlipress.cli import main

    out = tmp_path / "sb.yaml"
    assert main(["init", "--model", "ace", "--species", "Mo,W", "--body-order", "3", "--nk", "4", "--nrad", "2",
                 "--lmax", "1", "--cutoff", "4.5", "--radbase", "SBessel", "-o", str(out)]) == 0
    ace = read_potential(out)
    assert ace.radial_basis == RadialBasisSpec(4.5, 4, kind="SBessel") and not ace.trained
    default = tmp_path / "cheb.yaml"
    assert main(["init", "--model", "ace", "--species", "Mo,W", "--body-order", "2", "-o", str(default)]) == 0
    assert read_potential(default).radial_basis.kind == "ChebExpCos"  # the default is unchanged
    capsys.readouterr()
    assert main(["init", "--model", "ace", "--species", "Mo", "--radbase", "Bessel", "-o", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert "--radbase" in err and "'Bessel'" in err and "SBessel" in err and not (tmp_path / "x.yaml").exists()


def test_train_radbase_option(tmp_path, capsys):
    """``train --model ace --radbase SBessel`` fits and writes an SBessel .yaml (body order 2, one
    iteration: only the wiring is under test); with ``--init`` the option is refused, since a
    start potential keeps its own basis."""
    from mlipress.cli import main
    from mlipress.examples import make_example_dataset
    from mlipress.io import write_dataset

    ds, species = make_example_dataset(2, seed=4)
    data, out = tmp_path / "train.xyz", tmp_path / "sb.yaml"
    write_dataset(ds, data, species=species)
    assert main(["train", "--model", "ace", "--species", ",".join(species), "--body-order", "2", "--nk", "3",
                 "--radbase", "SBessel", "--cutoff", "4.0", "--train", str(data), "--max-iter", "1", "--log-every", "0",
                 "-o", str(out)]) == 0
    assert "radbase: SBessel" in out.read_text()
    ace = read_potential(out)
    assert ace.trained and ace.radial_basis == RadialBasisSpec(4.0, 3, kind="SBessel")
    capsys.readouterr()
    assert main(["train", "--init", str(out), "--radbase", "SBessel", "--train", str(data), "--max-iter", "1",
                 "-o", str(tmp_path / "again.yaml")]) == 2
    assert "--radbase applies to a fresh ACE" in capsys.readouterr().err and not (tmp_path / "again.yaml").exists()
