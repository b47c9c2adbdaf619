"""Real spherical harmonics, Wigner-D and Clebsch-Gordan coefficients of mlipress.equivariant:
closed forms, SciPy's complex harmonics, sympy's CG / 3j / real Gaunt, quadrature, rotations."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import mlipress  # noqa: F401  (float64)
from mlipress.equivariant import (
    block_wigner_D,
    clebsch_gordan,
    complex_clebsch_gordan,
    complex_to_real,
    real_gaunt,
    sh_index,
    spherical_harmonics,
    wigner_3j,
    wigner_D,
)

LMAX = 6


def random_directions(count, seed=0):
    v = np.random.default_rng(seed).normal(size=(count, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sphere_quadrature(degree):
    """Gauss-Legendre in cos(theta) x uniform in phi: exact for polynomials up to ``degree``."""
    z, wz = np.polynomial.legendre.leggauss(degree // 2 + 1)
    n_phi = degree + 1
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    s = np.sqrt(1 - zz**2)
    points = np.stack([s * np.cos(pp), s * np.sin(pp), zz], axis=-1).reshape(-1, 3)
    weights = (wz[:, None] * np.full(n_phi, 2 * np.pi / n_phi)[None, :]).reshape(-1)
    return points, weights


def test_low_degrees_match_closed_forms():
    v = np.array([1.0, -2.0, 0.5])
    x, y, z = v / np.linalg.norm(v)
    Y = np.asarray(spherical_harmonics(2, v * 3.7))  # any length
    c1 = math.sqrt(3 / (4 * math.pi))
    expected = [
        1 / math.sqrt(4 * math.pi),
        c1 * y, c1 * z, c1 * x,
        0.5 * math.sqrt(15 / math.pi) * x * y,
        0.5 * math.sqrt(15 / math.pi) * y * z,
        0.25 * math.sqrt(5 / math.pi) * (3 * z * z - 1),
        0.5 * math.sqrt(15 / math.pi) * x * z,
        0.25 * math.sqrt(15 / math.pi) * (x * x - y * y),
    ]
    np.testing.assert_allclose(Y, expected, rtol=0, atol=1e-15)
    assert sh_index(2, -2) == 4 and sh_index(2, 2) == 8


def test_real_harmonics_are_U_times_scipy_complex_harmonics():
    from scipy.special import sph_harm_y

    r = random_directions(50)
    theta, phi = np.arccos(r[:, 2]), np.arctan2(r[:, 1], r[:, 0])
    Y = np.asarray(spherical_harmonics(LMAX, r))
    for l in range(LMAX + 1):
        complex_y = np.stack([sph_harm_y(l, m, theta, phi) for m in range(-l, l + 1)], axis=-1)
        real = complex_y @ complex_to_real(l).T
        np.testing.assert_allclose(real.imag, 0, atol=1e-13)
        np.testing.assert_allclose(Y[:, l * l:(l + 1) ** 2], real.real, atol=1e-13)


def test_orthonormal_on_the_sphere_and_addition_theorem():
    points, weights = sphere_quadrature(2 * 8)
    Y = np.asarray(spherical_harmonics(8, points))
    gram = (Y * weights[:, None]).T @ Y
    np.testing.assert_allclose(gram, np.eye(81), atol=1e-12)
    a, b = random_directions(2, seed=3)
    Ya, Yb = np.asarray(spherical_harmonics(8, a)), np.asarray(spherical_harmonics(8, b))
    for l in range(9):
        block = slice(l * l, (l + 1) ** 2)
        legendre = np.polynomial.legendre.Legendre.basis(l)(a @ b)
        np.testing.assert_allclose(Ya[block] @ Yb[block], (2 * l + 1) / (4 * math.pi) * legendre, atol=1e-13)


def test_gradients_match_finite_differences_and_zero_vectors_are_safe():
    v = jnp.array([0.3, -1.1, 0.7])
    weights = jnp.asarray(np.random.default_rng(1).normal(size=(LMAX + 1) ** 2))

    def f(v):
        return spherical_harmonics(LMAX, v) @ weights

    grad = np.asarray(jax.grad(f)(v))
    h = 1e-6
    fd = [(f(v + h * e) - f(v - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(grad, fd, atol=1e-8)
    # a padded neighbour: Y_00 only, finite gradients, also under jit and vmap
    padded = jnp.zeros((2, 3)).at[0].set(v)
    Y = jax.jit(lambda p: spherical_harmonics(LMAX, p))(padded)
    np.testing.assert_allclose(Y[1], np.eye((LMAX + 1) ** 2)[0] / math.sqrt(4 * math.pi), atol=0)
    g = jax.grad(lambda p: jnp.sum(jax.vmap(f)(p) ** 2))(padded)
    assert np.all(np.isfinite(np.asarray(g)))


def test_wigner_D_is_the_rotation_of_the_harmonics():
    R1, R2 = Rotation.random(2, random_state=7).as_matrix()
    r = random_directions(20, seed=5)
    Y = np.asarray(spherical_harmonics(LMAX, r))
    Y_rot = np.asarray(spherical_harmonics(LMAX, r @ R1.T))
    D = block_wigner_D(LMAX, R1)
    np.testing.assert_allclose(Y_rot, Y @ D.T, atol=1e-12)
    np.testing.assert_allclose(D @ D.T, np.eye(D.shape[0]), atol=1e-12)
    for l in range(LMAX + 1):
        np.testing.assert_allclose(wigner_D(l, R1 @ R2), wigner_D(l, R1) @ wigner_D(l, R2), atol=1e-12)
    np.testing.assert_allclose(wigner_D(3, np.eye(3)), np.eye(7), atol=1e-13)


def test_complex_clebsch_gordan_and_3j_match_sympy():
    from sympy.physics import wigner

    for l1, l2 in itertools.product(range(4), repeat=2):
        for l3 in range(abs(l1 - l2), l1 + l2 + 1):
            for m1, m2 in itertools.product(range(-l1, l1 + 1), range(-l2, l2 + 1)):
                m3 = m1 + m2
                if abs(m3) > l3:
                    continue
                expected = float(wigner.clebsch_gordan(l1, l2, l3, m1, m2, m3))
                assert complex_clebsch_gordan(l1, m1, l2, m2, l3, m3) == pytest.approx(expected, abs=1e-15)
                expected_3j = float(wigner.wigner_3j(l1, l2, l3, m1, m2, -m3))
                assert wigner_3j(l1, l2, l3, m1, m2, -m3) == pytest.approx(expected_3j, abs=1e-15)
    # a high degree, where float factorials would lose digits
    assert complex_clebsch_gordan(12, 3, 11, -5, 15, -2) == pytest.approx(
        float(wigner.clebsch_gordan(12, 11, 15, 3, -5, -2)), abs=1e-15
    )


def test_real_gaunt_matches_sympy_and_quadrature():
    from sympy.physics import wigner

    points, weights = sphere_quadrature(3 * 3)
    Y = np.asarray(spherical_harmonics(3, points))
    for l1, l2, l3 in itertools.product(range(4), repeat=3):
        G = real_gaunt(l1, l2, l3)
        integral = np.einsum("p,pa,pb,pc->abc", weights, Y[:, l1 * l1:(l1 + 1) ** 2], Y[:, l2 * l2:(l2 + 1) ** 2], Y[:, l3 * l3:(l3 + 1) ** 2])
        np.testing.assert_allclose(G, integral, atol=1e-13)
        # sympy's real harmonics are (-1)^m times ours
        for m1, m2, m3 in [(m1, m2, m3) for m1 in range(-l1, l1 + 1) for m2 in range(-l2, l2 + 1) for m3 in range(-l3, l3 + 1)][::5]:
            expected = float(wigner.real_gaunt(l1, l2, l3, m1, m2, m3)) * (-1) ** (m1 + m2 + m3)
            assert G[l1 + m1, l2 + m2, l3 + m3] == pytest.approx(expected, abs=1e-14)


def test_real_clebsch_gordan_is_orthonormal_and_equivariant():
    R = Rotation.random(random_state=11).as_matrix()
    rng = np.random.default_rng(2)
    for l1, l2 in itertools.product(range(5), repeat=2):
        for l3 in range(abs(l1 - l2), l1 + l2 + 1):
            C = clebsch_gordan(l1, l2, l3)
            np.testing.assert_allclose(np.einsum("abk,abq->kq", C, C), np.eye(2 * l3 + 1), atol=1e-13)
            a, b = rng.normal(size=2 * l1 + 1), rng.normal(size=2 * l2 + 1)
            rotated_inputs = np.einsum("abk,a,b->k", C, wigner_D(l1, R) @ a, wigner_D(l2, R) @ b)
            rotated_output = wigner_D(l3, R) @ np.einsum("abk,a,b->k", C, a, b)
            np.testing.assert_allclose(rotated_inputs, rotated_output, atol=1e-12)
    assert not clebsch_gordan(1, 1, 3).any()


def test_coupling_harmonics_gives_harmonics():
    r = random_directions(10, seed=4)
    Y = np.asarray(spherical_harmonics(6, r))
    block = lambda l: Y[:, l * l:(l + 1) ** 2]  # noqa: E731
    for l1, l2 in itertools.product(range(4), repeat=2):
        for l3 in range(abs(l1 - l2), min(l1 + l2, 6) + 1):
            k = math.sqrt((2 * l1 + 1) * (2 * l2 + 1) / (4 * math.pi * (2 * l3 + 1))) * complex_clebsch_gordan(l1, 0, l2, 0, l3, 0)
            coupled = np.einsum("abk,na,nb->nk", clebsch_gordan(l1, l2, l3), block(l1), block(l2))
            np.testing.assert_allclose(coupled, k * block(l3), atol=1e-13)


def test_low_degree_couplings_are_dot_and_cross_products():
    a, b = np.random.default_rng(6).normal(size=(2, 3))
    to_yzx = [1, 2, 0]  # degree-1 features are (y, z, x) in this basis
    dot = np.einsum("abk,a,b->k", clebsch_gordan(1, 1, 0), a[to_yzx], b[to_yzx])
    # <1 m 1 -m | 0 0> = (-1)^(1-m) / sqrt3 (Condon-Shortley) carries over as a minus sign
    np.testing.assert_allclose(dot, [-a @ b / math.sqrt(3)], atol=1e-15)
    cross = np.einsum("abk,a,b->k", clebsch_gordan(1, 1, 1), a[to_yzx], b[to_yzx])
    np.testing.assert_allclose(np.abs(cross), np.abs(np.cross(a, b)[to_yzx] / math.sqrt(2)), atol=1e-15)
    ratio = cross / (np.cross(a, b)[to_yzx] / math.sqrt(2))
    np.testing.assert_allclose(ratio, ratio[0], atol=1e-13)


def test_same_coupling_as_e3nn_jax_up_to_a_change_of_basis():
    """e3nn-jax uses other real bases; they differ from ours by one orthogonal Q_l per degree,
    and carrying its CG through the Q's must give ours up to one sign per path."""
    e3nn = pytest.importorskip("e3nn_jax")
    r = random_directions(60, seed=8)
    ours = np.asarray(spherical_harmonics(4, r))
    Q = []
    for l in range(5):
        theirs = np.asarray(e3nn.spherical_harmonics(f"{l}e" if l % 2 == 0 else f"{l}o", r, normalize=True, normalization="integral").array)
        q, *_ = np.linalg.lstsq(ours[:, l * l:(l + 1) ** 2], theirs, rcond=None)
        np.testing.assert_allclose(ours[:, l * l:(l + 1) ** 2] @ q, theirs, atol=1e-12)
        np.testing.assert_allclose(q.T @ q, np.eye(2 * l + 1), atol=1e-12)
        Q.append(q)
    for l1, l2 in itertools.product(range(3), repeat=2):
        for l3 in range(abs(l1 - l2), l1 + l2 + 1):
            theirs = np.asarray(e3nn.clebsch_gordan(l1, l2, l3))
            carried = np.einsum("abc,ia,jb,kc->ijk", theirs, Q[l1], Q[l2], Q[l3])
            ours_c = clebsch_gordan(l1, l2, l3)
            scale = np.sum(carried * ours_c) / np.sum(ours_c * ours_c)
            assert abs(abs(scale) * math.sqrt(2 * l3 + 1) - 1) < 1e-10 or abs(abs(scale) - 1) < 1e-10
            np.testing.assert_allclose(carried, scale * ours_c, atol=1e-12)
