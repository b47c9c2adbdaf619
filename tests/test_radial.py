"""Radial parametrisations (mlipress.models.layers): exactness, Eckart-Young, counts, gradients, specs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlipress  # noqa: F401  (enables float64)
from mlipress.models.layers import (
    LAYERS,
    Dense,
    MatrixFactorized,
    RadialSpec,
    TensorTrain,
    clip_tt_ranks,
    compression,
    dense_param_count,
    from_matrix,
    from_spec,
    kind_of,
    layer_for,
    parse_radial_spec,
    rank_for_compression,
    to_matrix,
    tt_param_count,
)

SHAPE = (3, 3, 4, 6)  # N_T, N_T, N_f, N_b


@pytest.fixture
def C():
    return np.random.default_rng(0).standard_normal(SHAPE)


def _pairs(n=40, seed=1, nt=SHAPE[0], nb=SHAPE[3]):
    rng = np.random.default_rng(seed)
    Q = jnp.asarray(rng.standard_normal((n, nb)))
    zi = jnp.asarray(rng.integers(0, nt, n))
    zj = jnp.asarray(rng.integers(0, nt, n))
    return Q, zi, zj


def _all_params(C):
    return [
        Dense.from_dense(C),
        MatrixFactorized.from_dense(C, 3),
        MatrixFactorized.random(jax.random.key(3), SHAPE, 4),
        TensorTrain.from_dense(C, (2, 3, 2)),
        TensorTrain.random(5, SHAPE, (3, 4, 3)),
    ]


# -- unfolding ------------------------------------------------------------------------------


def test_unfolding_is_row_major_reshape(C):
    M = to_matrix(C)
    assert M.shape == (9, 24)
    zi, zj, mu, b = 2, 1, 3, 5
    assert M[zi * 3 + zj, mu * 6 + b] == C[zi, zj, mu, b]
    np.testing.assert_array_equal(from_matrix(M, SHAPE), C)
    np.testing.assert_array_equal(from_matrix(M, (3, 4, 6)), C)
    with pytest.raises(ValueError):
        from_matrix(M, (3, 3, 5, 6))


# -- exactness at full rank -----------------------------------------------------------------


def test_dense_roundtrip(C):
    p = Dense.from_dense(C)
    assert p.shape == SHAPE and p.rank is None and p.num_params == C.size
    assert compression(p) == 0.0
    np.testing.assert_allclose(p.dense(), C, rtol=0, atol=1e-12)


def test_mf_full_rank_exact(C):
    p = MatrixFactorized.from_dense(C, 9)  # min(N_T^2, N_f N_b) = 9
    assert p.rank == 9 and p.U.shape == (9, 9) and p.V.shape == (24, 9)
    np.testing.assert_allclose(p.dense(), C, rtol=0, atol=1e-12)
    # ranks above the maximum are clipped
    assert MatrixFactorized.from_dense(C, 50).rank == 9


def test_mf_eckart_young(C):
    s = np.linalg.svd(to_matrix(C), compute_uv=False)
    for r in (1, 4, 8):
        p = MatrixFactorized.from_dense(C, r)
        err = np.linalg.norm(np.asarray(p.dense()) - C)
        np.testing.assert_allclose(err, np.sqrt(np.sum(s[r:] ** 2)), rtol=1e-10)
        assert p.num_params == r * (9 + 24)
        # balanced factors: U^T U = V^T V = diag(s_r)
        U, V = np.asarray(p.U), np.asarray(p.V)
        np.testing.assert_allclose(U.T @ U, np.diag(s[:r]), atol=1e-10)
        np.testing.assert_allclose(V.T @ V, np.diag(s[:r]), atol=1e-10)


def test_tt_full_rank_exact(C):
    full = clip_tt_ranks(SHAPE, (100, 100, 100))
    assert full == (3, 9, 6)  # (N_T, min(N_T^2, N_f N_b), N_b)
    p = TensorTrain.from_dense(C, (100, 100, 100))
    assert p.rank == full
    assert [g.shape for g in p.cores] == [(1, 3, 3), (3, 3, 9), (9, 4, 6), (6, 6, 1)]
    np.testing.assert_allclose(p.dense(), C, rtol=0, atol=1e-12)


def test_tt_truncation_error_bound(C):
    # TT-SVD quasi-optimality: ||C - TT|| <= sqrt(sum_k tail_k^2) over the unfoldings' tails
    p = TensorTrain.from_dense(C, (2, 3, 2))
    err = np.linalg.norm(np.asarray(p.dense()) - C)
    bound = 0.0
    for k, r in zip(range(1, 4), p.rank):
        s = np.linalg.svd(C.reshape(int(np.prod(SHAPE[:k])), -1), compute_uv=False)
        bound += np.sum(s[r:] ** 2)
    assert 0 < err <= np.sqrt(bound) * (1 + 1e-10)


def test_tt_param_count_formula():
    nt, nf, nb = 4, 5, 8
    for ranks in [(1, 1, 1), (2, 3, 4), (4, 7, 3)]:
        r1, r2, r3 = ranks
        expected = 1 * nt * r1 + r1 * nt * r2 + r2 * nf * r3 + r3 * nb * 1
        assert tt_param_count((nt, nt, nf, nb), ranks) == expected
        shapes = [(1, nt, r1), (r1, nt, r2), (r2, nf, r3), (r3, nb, 1)]
        p = TensorTrain(tuple(np.zeros(s) for s in shapes))
        assert p.dims == (nt, nf, nb) and p.rank == ranks and p.num_params == expected
        assert sum(g.size for g in p.cores) == expected
    for r in (1, 2, 3, 4):
        assert tt_param_count((nt, nf, nb), (r, r, r)) == (nt + nf) * r**2 + (nt + nb) * r


def test_mf_param_count_paper_example():
    shape = (4, 4, 4, 8)
    assert dense_param_count(shape) == 512
    p = MatrixFactorized.random(0, shape, 8)
    assert p.num_params == 384 == 8 * (16 + 32)
    assert compression(p) == pytest.approx(0.25)


def test_clip_tt_ranks():
    assert clip_tt_ranks((4, 4, 8), (9, 9, 9)) == (4, 9, 8)
    assert clip_tt_ranks((4, 4, 8), (1, 50, 2)) == (1, 4, 2)  # r2 <= r1 N_T and <= N_f r3
    with pytest.raises(ValueError):
        clip_tt_ranks((4, 4, 8), (1, 0, 2))


# -- factored evaluation --------------------------------------------------------------------


def test_radial_values_match_dense_gather(C):
    Q, zi, zj = _pairs()
    for p in _all_params(C):
        ref = jnp.einsum("pmb,pb->pm", p.dense()[zi, zj], Q)
        f = p.radial_values(Q, zi, zj)
        assert f.shape == (40, 4)
        np.testing.assert_allclose(f, ref, rtol=0, atol=1e-12)
        # also through jit and with extra leading (padded batch) dimensions
        f2 = jax.jit(lambda p, Q, zi, zj: p.radial_values(Q, zi, zj))(
            p, Q.reshape(5, 8, -1), zi.reshape(5, 8), zj.reshape(5, 8)
        )
        np.testing.assert_allclose(f2.reshape(40, 4), ref, rtol=0, atol=1e-12)
        # site types of an (A, K) neighbour block given once per atom, as the evaluator does
        zi_site = np.repeat(np.arange(5) % C.shape[0], 8)
        ref3 = jnp.einsum("pmb,pb->pm", p.dense()[zi_site, zj], Q)
        f3 = p.radial_values(Q.reshape(5, 8, -1), zi_site.reshape(5, 8)[:, :1], zj.reshape(5, 8))
        np.testing.assert_allclose(f3.reshape(40, 4), ref3, rtol=0, atol=1e-12)


def test_pytree_roundtrip(C):
    for p in _all_params(C):
        leaves, tree = jax.tree_util.tree_flatten(p)
        assert all(isinstance(x, jax.Array) for x in leaves)
        q = jax.tree_util.tree_unflatten(tree, leaves)
        assert type(q) is type(p) and q.dims == p.dims
        doubled = jax.tree_util.tree_map(lambda x: 2 * x, p)
        assert type(doubled) is type(p)
        stacked = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), p)
        assert jax.vmap(lambda p: p.dense())(stacked).shape == (2,) + SHAPE


# -- gradients ------------------------------------------------------------------------------


def _check_grad(fun, param, eps=1e-6, n_checks=4, seed=0):
    """Compare jax.grad(fun)(param) with central differences along random leaf entries."""
    fun = jax.jit(fun)
    g = jax.grad(fun)(param)
    leaves, tree = jax.tree_util.tree_flatten(param)
    gleaves = jax.tree_util.tree_leaves(g)
    rng = np.random.default_rng(seed)
    for li, (x, gx) in enumerate(zip(leaves, gleaves)):
        x = np.asarray(x)
        for _ in range(n_checks):
            idx = tuple(rng.integers(0, s) for s in x.shape)
            fd = []
            for sign in (1, -1):
                y = x.copy()
                y[idx] += sign * eps
                new = list(leaves)
                new[li] = jnp.asarray(y)
                fd.append(float(fun(jax.tree_util.tree_unflatten(tree, new))))
            np.testing.assert_allclose(np.asarray(gx)[idx], (fd[0] - fd[1]) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_gradients_dense_and_radial_values(C):
    Q, zi, zj = _pairs()
    W = jnp.asarray(np.random.default_rng(7).standard_normal(SHAPE))
    w = jnp.asarray(np.random.default_rng(8).standard_normal((40, 4)))
    for p in _all_params(C)[::2]:  # one of each kind
        _check_grad(lambda p: jnp.sum(W * p.dense()) + jnp.sum(p.dense() ** 2), p)
        _check_grad(lambda p: jnp.sum(w * jnp.tanh(p.radial_values(Q, zi, zj))), p)


def test_mf_gradient_identity(C):
    # dL/dU = dL/dChat V, dL/dV = (dL/dChat)^T U (section II.D.2.a)
    p = MatrixFactorized.from_dense(C, 3)
    W = jnp.asarray(np.random.default_rng(7).standard_normal(SHAPE))
    L = lambda Chat: jnp.sum(jnp.sin(from_matrix(Chat, SHAPE) * W))  # noqa: E731
    g = jax.grad(lambda p: L(to_matrix(p.dense())))(p)
    dC = jax.grad(L)(to_matrix(p.dense()))
    np.testing.assert_allclose(g.U, dC @ p.V, atol=1e-12)
    np.testing.assert_allclose(g.V, dC.T @ p.U, atol=1e-12)


# -- random initialisers --------------------------------------------------------------------


def test_random_scale_and_determinism():
    shape = (4, 4, 6, 8)
    for make in (
        lambda k, s: Dense.random(k, shape, scale=s),
        lambda k, s: MatrixFactorized.random(k, shape, 5, s),
        lambda k, s: TensorTrain.random(k, shape, (4, 5, 5), s),
    ):
        stds = [float(jnp.std(make(k, 0.1).dense())) for k in range(8)]
        assert 0.05 < np.mean(stds) < 0.15
        np.testing.assert_array_equal(make(3, 0.1).dense(), make(3, 0.1).dense())
        np.testing.assert_allclose(make(3, 0.4).dense(), 4 * make(3, 0.1).dense(), rtol=1e-12)


# -- specs and compression ------------------------------------------------------------------


def test_parse_radial_spec():
    assert parse_radial_spec("dense") == RadialSpec("dense", None)
    assert parse_radial_spec("mf:4") == RadialSpec("mf", 4)
    assert parse_radial_spec(" RMF:2 ") == RadialSpec("rmf", 2)
    assert parse_radial_spec("tt:2,3,4") == RadialSpec("tt", (2, 3, 4))
    assert parse_radial_spec("tt:3") == RadialSpec("tt", (3, 3, 3))
    assert parse_radial_spec("mfra:6") == RadialSpec("mfra", 6)
    for s in ("dense", "mf:4", "rmf:2", "tt:2,3,4", "mfra:6"):
        assert str(parse_radial_spec(s)) == s


@pytest.mark.parametrize(
    "bad, match",
    [
        ("", "unknown radial spec"),
        ("svd:3", "unknown radial spec"),
        ("mf", "needs a rank"),
        ("mf:", "needs a rank"),
        ("mf:0", "positive integer"),
        ("mf:-2", "positive integer"),
        ("mf:two", "positive integer"),
        ("mf:2.5", "positive integer"),
        ("tt:1,2", "three ranks"),
        ("tt:1,2,3,4", "three ranks"),
        ("tt:1,x,3", "positive integer"),
        ("dense:3", "takes no rank"),
        ("mfra", "needs a rank"),
    ],
)
def test_parse_radial_spec_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        parse_radial_spec(bad)


def test_from_spec(C):
    assert isinstance(from_spec("dense", C), Dense)
    assert from_spec("mf:2", C).rank == 2
    assert from_spec("rmf:3", C).rank == 3
    assert from_spec("mfra:5", C).rank == 1
    assert from_spec("tt:2,3,2", C).rank == (2, 3, 2)


def test_rank_for_compression():
    shape = (4, 4, 4, 8)  # dense 512, MF costs 48 per rank
    assert rank_for_compression(shape, 0.75, "mf") == 8  # 384 = 0.75 * 512
    assert rank_for_compression(shape, 0.5, "mf") == 5  # 240 vs 288 for a 256 target
    assert rank_for_compression((4, 4, 8), 0.5, "rmf") == 5
    assert rank_for_compression(shape, 1e-6, "mf") == 1
    assert rank_for_compression(shape, 10.0, "mf") == 16  # capped at min(N_T^2, N_f N_b)
    assert rank_for_compression(shape, 0.5, "dense") is None
    ranks = rank_for_compression(shape, 0.5, "tt")
    n = tt_param_count(shape, ranks)
    # the best over clipped equal-rank candidates
    cands = {clip_tt_ranks(shape, (r, r, r)) for r in range(1, 17)}
    assert all(abs(n - 256) <= abs(tt_param_count(shape, c) - 256) for c in cands)
    assert ranks == (4, 5, 5) and n == 236
    with pytest.raises(ValueError):
        rank_for_compression(shape, 0.5, "cp")
    with pytest.raises(ValueError):
        rank_for_compression(shape, 0.0, "mf")


# -- tensor trains of any order ---------------------------------------------------------------

SHAPE6 = (2, 2, 3, 4, 2, 3)  # a magnetic MTP's tensor has 6 axes


def _tt_direct(cores):
    """The 6-core contraction written out as one einsum."""
    return jnp.einsum("aib,bjc,ckd,dle,emf,fng->ijklmn", *cores)


def test_tt6_svd_exact_at_maximal_ranks():
    C = np.random.default_rng(4).standard_normal(SHAPE6)
    full = clip_tt_ranks(SHAPE6, (10**6,) * 5)
    # min over the unfoldings: prod of the modes on the left vs on the right
    assert full == tuple(min(int(np.prod(SHAPE6[:k])), int(np.prod(SHAPE6[k:]))) for k in range(1, 6))
    p = TensorTrain.from_dense(C, (10**6,) * 5)
    assert p.rank == full and p.shape == SHAPE6 and p.dims == SHAPE6
    assert len(p.cores) == 6
    np.testing.assert_allclose(p.dense(), C, rtol=0, atol=1e-12)
    np.testing.assert_allclose(_tt_direct(p.cores), C, rtol=0, atol=1e-12)
    # truncated: smaller ranks, a smaller (non-zero) error
    q = TensorTrain.from_dense(C, (2, 2, 3, 2, 2))
    assert q.rank == (2, 2, 3, 2, 2)
    assert 0 < np.linalg.norm(np.asarray(q.dense()) - C) < np.linalg.norm(C)


def test_tt6_param_count_formula():
    ranks = (2, 3, 5, 4, 3)
    r = (1,) + ranks + (1,)
    expected = sum(r[k] * SHAPE6[k] * r[k + 1] for k in range(6))
    assert tt_param_count(SHAPE6, ranks) == expected == 1 * 2 * 2 + 2 * 2 * 3 + 3 * 3 * 5 + 5 * 4 * 4 + 4 * 2 * 3 + 3 * 3 * 1
    p = TensorTrain(tuple(np.zeros((r[k], SHAPE6[k], r[k + 1])) for k in range(6)))
    assert p.modes == SHAPE6 and p.rank == ranks and p.num_params == expected
    assert sum(g.size for g in p.cores) == expected
    assert compression(p) == pytest.approx(1 - expected / np.prod(SHAPE6))


def test_tt6_dense_matches_direct_einsum_and_random_scale():
    p = TensorTrain.random(2, SHAPE6, (2, 3, 4, 3, 2))
    assert [g.shape for g in p.cores] == [(1, 2, 2), (2, 2, 3), (3, 3, 4), (4, 4, 3), (3, 2, 2), (2, 3, 1)]
    np.testing.assert_allclose(p.dense(), _tt_direct(p.cores), rtol=0, atol=1e-14)
    # the variance rule: std(C) = scale for any number of cores
    stds = [float(jnp.std(TensorTrain.random(k, SHAPE6, (2, 3, 4, 3, 2), 0.1).dense())) for k in range(8)]
    assert 0.05 < np.mean(stds) < 0.15
    # gradients flow through all cores of the tuple field
    g = jax.grad(lambda p: jnp.sum(p.dense() ** 2))(p)
    assert type(g) is TensorTrain and len(g.cores) == 6
    np.testing.assert_allclose(jnp.sum(p.cores[5] * g.cores[5]), 2 * jnp.sum(p.dense() ** 2), rtol=1e-12)
    with pytest.raises(ValueError, match="N_T, N_T, N_f, N_b"):
        p.radial_values(*_pairs(nt=2, nb=3))


def test_tt_of_two_and_three_cores():
    for shape in [(3, 5), (3, 4, 5)]:
        C = np.random.default_rng(6).standard_normal(shape)
        p = TensorTrain.from_dense(C, (100,) * (len(shape) - 1))
        assert len(p.cores) == len(shape) and p.shape == shape
        np.testing.assert_allclose(p.dense(), C, rtol=0, atol=1e-12)
    assert clip_tt_ranks((3, 4, 5), (9, 9)) == (3, 5)  # a 3-mode tensor: two ranks
    assert clip_tt_ranks((3, 4, 5), (9, 9, 9)) == (3, 9, 5)  # the MTP's (N_T, N_f, N_b): three


# -- the layer registry ---------------------------------------------------------------------


def _sample(cls, shape=SHAPE, seed=0):
    """A random layer of every registered kind, at its second smallest rank."""
    ranks = cls.rank_candidates(shape)
    return cls.random(seed, shape, ranks[min(1, len(ranks) - 1)])


def test_registry_kinds():
    assert LAYERS["dense"] is Dense and LAYERS["mf"] is MatrixFactorized and LAYERS["tt"] is TensorTrain
    for kind, cls in LAYERS.items():
        assert cls.kind == kind and kind_of(_sample(cls)) == kind
    with pytest.raises(TypeError):
        kind_of(np.zeros(SHAPE))  # a raw array is no layer


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_registered_layer_arrays_round_trip(kind, C):
    cls = LAYERS[kind]
    for p in (_sample(cls), _all_params(C)[[type(q) for q in _all_params(C)].index(cls)]):
        arrays = p.arrays()
        assert all(isinstance(a, np.ndarray) and a.dtype == np.float64 for a in arrays.values())
        q = cls.from_arrays(arrays, p.dims)
        assert type(q) is cls and q.dims == p.dims and q.shape == p.shape and q.rank == p.rank
        assert q.num_params == p.num_params == cls.param_count(p.shape, p.rank)
        for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(q)):
            assert isinstance(b, jax.Array)
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        with pytest.raises(ValueError):
            cls.from_arrays(arrays, (5, 4, 6))  # other dims
        with pytest.raises(ValueError):
            cls.from_arrays({}, p.dims)  # missing arrays
    # every kind's from_dense at its largest rank reproduces C, and the first rank is the smallest
    top = cls.rank_candidates(SHAPE)[-1]
    np.testing.assert_allclose(cls.from_dense(C, top).dense(), C, rtol=0, atol=1e-12)
    counts = [cls.param_count(SHAPE, r) for r in cls.rank_candidates(SHAPE)]
    assert counts == sorted(counts)


def test_tt6_arrays_round_trip():
    p = TensorTrain.random(1, SHAPE6, (2, 3, 4, 3, 2))
    arrays = p.arrays()
    assert sorted(arrays) == [f"G{k}" for k in range(1, 7)]
    q = TensorTrain.from_arrays(arrays, SHAPE6)
    assert q.modes == SHAPE6
    for a, b in zip(p.cores, q.cores):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_registered_layer_file_round_trip(kind, tmp_path):
    from mlipress.models.mtp.basis import untrained_mtp
    from mlipress.compress import read_compressed, write_compressed
    from mlipress.models.mtp.model import MTPParams

    mtp = untrained_mtp(2, 2, 2.0, 5.0, 5)
    radial = _sample(LAYERS[kind], mtp.radial_shape, seed=3)
    params = MTPParams(radial, jnp.asarray([0.5, -1.5]), jnp.linspace(-1.0, 1.0, mtp.moments.scalar_count),
                       jnp.asarray(1.25))
    path = tmp_path / f"{kind}.mtp"
    write_compressed(path, mtp, params, spec=kind)
    _, p2, header = read_compressed(path)
    assert header["kind"] == kind and type(p2.radial) is LAYERS[kind] and p2.radial.dims == radial.dims
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "text, cls, rank",
    [
        ("dense", Dense, None),
        ("mf:3", MatrixFactorized, 3),
        ("rmf:2", MatrixFactorized, 2),
        ("mfra:6", MatrixFactorized, 6),
        ("tt:2,3,4", TensorTrain, (2, 3, 4)),
        ("tt:2", TensorTrain, (2, 2, 2)),
    ],
)
def test_layer_for_spec(text, cls, rank):
    spec = parse_radial_spec(text)
    assert layer_for(spec) is cls and spec.layer is cls and layer_for(text) is cls
    assert spec.rank == rank
    with pytest.raises(ValueError, match="unknown radial kind"):
        layer_for(RadialSpec("cp", 3))
