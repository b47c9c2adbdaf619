"""The fused CG tensor product (dense, sparse) and its CP form: agreement, exactness at full
rank, equivariance error against rank and the bound, reproducible factors, path-weight sharing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import mlipress  # noqa: F401  (float64)
from mlipress.equivariant import (
    block_sparse_coupling,
    block_wigner_D,
    cg_paths,
    clebsch_gordan,
    cp_coupling,
    cp_error,
    cp_factors,
    dense_coupling,
    equivariance_bound,
    equivariance_error,
    exact_rank,
    fit_cp,
    fused_cg_tensor,
    make_coupling,
    parse_coupling,
    sparse_coupling,
)
from mlipress.equivariant.cp import cache_dir
from mlipress.equivariant.tensor_product import CPCoupling


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Fitted factors go to a temporary cache, not the user's."""
    monkeypatch.setenv("MLIPRESS_CACHE_DIR", str(tmp_path / "cache"))


def features(lmax, count, seed=0, channels=None):
    shape = (count,) + ((channels,) if channels else ()) + ((lmax + 1) ** 2,)
    return np.random.default_rng(seed).normal(size=shape)


def test_fused_tensor_holds_every_path_and_dense_sparse_agree():
    L = 3
    T = fused_cg_tensor(L)
    assert T.shape == (16, 16, 16)
    paths = cg_paths(L)
    assert len(paths) == 34 and (1, 1, 1) in paths and (3, 3, 4) not in paths
    np.testing.assert_array_equal(T[1:4, 4:9, 9:16], clebsch_gordan(1, 2, 3))
    weighted = fused_cg_tensor(L, path_weights=np.arange(len(paths)) + 1.0)
    np.testing.assert_array_equal(weighted[1:4, 4:9, 9:16], (paths.index((1, 2, 3)) + 1) * clebsch_gordan(1, 2, 3))
    x, y = features(L, 8), features(L, 8, seed=1)
    expected = np.einsum("ijk,ni,nj->nk", T, x, y)
    dense, sparse = dense_coupling(T), sparse_coupling(T)
    np.testing.assert_allclose(dense(x, y), expected, atol=1e-13)
    np.testing.assert_allclose(sparse(x, y), expected, atol=1e-13)
    np.testing.assert_array_equal(sparse.tensor(), T)
    assert sparse.flops_per_pair == 3 * np.count_nonzero(T) < dense.flops_per_pair
    blocks = block_sparse_coupling(T)
    np.testing.assert_allclose(blocks(x, y), expected, atol=1e-13)
    np.testing.assert_array_equal(blocks.tensor(), T)
    assert sparse.flops_per_pair < blocks.flops_per_pair < dense.flops_per_pair
    # a degree-limited output
    assert fused_cg_tensor(3, lmax_out=1).shape == (16, 16, 4)


def test_exact_product_is_equivariant():
    assert equivariance_error(dense_coupling(fused_cg_tensor(3)), 3, rotations=4, pairs=16) < 1e-12


@pytest.mark.parametrize("lmax", [1, 2, 3])
def test_cp_at_full_rank_equals_the_exact_product(lmax):
    T = fused_cg_tensor(lmax)
    rank = exact_rank(T)
    assert rank <= T.shape[0] * T.shape[1]
    cp = cp_coupling(lmax, rank, use_disk=False)
    x, y = features(lmax, 32), features(lmax, 32, seed=1)
    np.testing.assert_allclose(cp(x, y), dense_coupling(T)(x, y), rtol=0, atol=1e-10)
    assert cp_error(T, (cp.a, cp.b, cp.c)) < 1e-13


def test_als_reaches_the_exact_tensor_below_the_slice_rank():
    """The fused CG tensor has a lower CP rank than its slice-SVD form: ALS finds it."""
    T = fused_cg_tensor(1)
    assert exact_rank(T) == 16
    assert cp_error(T, fit_cp(T, 12, seed=0)) < 1e-9


def test_cp_of_higher_order_tensors():
    """ACE couples 3 or 4 features at once: the fits take any order."""
    rng = np.random.default_rng(0)
    planted = [rng.normal(size=(n, 3)) for n in (3, 4, 5, 6)]
    T = np.einsum("ar,br,cr,dr->abcd", *planted)
    assert cp_error(T, fit_cp(T, 3, seed=0)) < 1e-10
    assert cp_error(T, fit_cp(T, exact_rank(T))) < 1e-14
    assert cp_error(T, fit_cp(T, 2, seed=0)) > 1e-3
    # order 2: ALS finds the truncated SVD
    M = rng.normal(size=(4, 5))
    s = np.linalg.svd(M, compute_uv=False)
    assert cp_error(M, fit_cp(M, 2, seed=0)) == pytest.approx(np.linalg.norm(s[2:]) / np.linalg.norm(s), rel=1e-8)


def test_cp_of_an_ace_style_invariant_coupling_is_invariant_within_the_bound():
    """A rank-3 ACE coupling (l1 l2 -> L = l3, then to 0) in CP form, as an ACE model would use
    it: B = sum_r prod_t (f_t[:, r] . A_t)."""
    G = np.einsum("abM,Mc->abc", clebsch_gordan(2, 2, 2), clebsch_gordan(2, 2, 0)[:, :, 0])
    rng = np.random.default_rng(4)
    A = rng.normal(size=(3, 5))
    rotations = [block_wigner_D(2, R)[4:9, 4:9] for R in Rotation.random(4, random_state=1).as_matrix()]
    for rank in (4, exact_rank(G)):
        factors = fit_cp(G, rank, seed=0)
        B = lambda A: np.sum(np.prod([f.T @ a for f, a in zip(factors, A)], axis=0))  # noqa: E731
        error = max(abs(B([D @ a for a in A]) - B(A)) for D in rotations) / np.prod(np.linalg.norm(A, axis=1))
        assert error <= equivariance_bound(G, factors) + 1e-14
        if rank == exact_rank(G):
            assert error < 1e-13 and B(A) == pytest.approx(np.einsum("abc,a,b,c->", G, *A), abs=1e-13)
        else:
            assert error > 1e-6  # approximately invariant only


def test_equivariance_error_decreases_with_rank_and_stays_below_the_bound():
    L = 2
    T = fused_cg_tensor(L)
    ranks = [9, 18, 36, exact_rank(T)]
    measured, bounds = [], []
    for rank in ranks:
        cp = cp_coupling(L, rank, use_disk=False)
        measured.append(equivariance_error(cp, L, rotations=4, pairs=16))
        bounds.append(equivariance_bound(T, (cp.a, cp.b, cp.c)))
    assert all(m <= b + 1e-12 for m, b in zip(measured, bounds)), (measured, bounds)
    assert all(later < earlier for earlier, later in zip(measured, measured[1:])), measured
    assert measured[0] > 0.1 and measured[-1] < 1e-12


def test_factors_are_reproducible_and_cached_on_disk(tmp_path, monkeypatch):
    T = fused_cg_tensor(2)
    first, again, other = fit_cp(T, 18, seed=5), fit_cp(T, 18, seed=5), fit_cp(T, 18, seed=6)
    for f, g in zip(first, again):
        np.testing.assert_array_equal(f, g)
    assert not np.allclose(first[0], other[0])
    monkeypatch.setenv("MLIPRESS_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "cp"
    factors = cp_factors(1, 5, seed=1)
    (stored,) = (tmp_path / "cp").glob("*L1_Lout1_R5_seed1.npz")
    with np.load(stored) as data:
        for t, f in enumerate(factors):
            np.testing.assert_array_equal(data[f"f{t}"], f)
    for f, g in zip(factors, fit_cp(fused_cg_tensor(1), 5, seed=1)):
        np.testing.assert_array_equal(f, g)


@pytest.mark.parametrize("spec", ["dense", "sparse", "blocks", "cp:74"])
def test_path_weight_sharing_is_one_weight_set_for_all_paths(spec):
    L, U, V, W = 2, 3, 2, 4
    coupling = make_coupling(spec, L)
    x, y = features(L, 5, channels=U), features(L, 5, seed=1, channels=V)
    weights = np.random.default_rng(2).normal(size=(U, V, W))
    T = fused_cg_tensor(L)
    expected = np.einsum("uvw,ijk,nui,nvj->nwk", weights, T, x, y)
    np.testing.assert_allclose(coupling.mix(x, y, weights), expected, atol=1e-11)
    R = Rotation.random(random_state=3).as_matrix()
    D = block_wigner_D(L, R)
    rotated = coupling.mix(x @ D.T, y @ D.T, weights)
    np.testing.assert_allclose(rotated, np.asarray(coupling.mix(x, y, weights)) @ D.T, atol=1e-11)


def test_cp_coupling_is_a_jittable_differentiable_pytree():
    cp = cp_coupling(2, 20, use_disk=False)
    assert isinstance(cp, CPCoupling) and cp.rank == 20 and cp.shape == (9, 9, 9)
    assert cp.flops_per_pair == 2 * 20 * 27 + 20
    x, y = jnp.asarray(features(2, 1)[0]), jnp.asarray(features(2, 1, seed=1)[0])
    f = jax.jit(lambda c, x: jnp.sum(c(x, y) ** 2))
    grad = jax.grad(f, argnums=1)(cp, x)
    h = 1e-6
    fd = [(f(cp, x + h * e) - f(cp, x - h * e)) / (2 * h) for e in np.eye(9)]
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_coupling_specs():
    assert parse_coupling("cp:16") == ("cp", 16)
    assert parse_coupling(" Dense ") == ("dense", None)
    for bad in ("cp", "cp:0", "cp:x", "tucker:3"):
        with pytest.raises(ValueError, match="bad coupling"):
            parse_coupling(bad)
