"""Tests of the MTP basis generator against MLIP's numbers and templates (REFERENCE.md section 1)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from mlipress.models.mtp.basis import generate_moment_basis, tensor_level, untrained_mtp

# level: (N_f, alpha_moments, basic, times, scalar) -- REFERENCE.md table (04 from MLIP's template)
REFERENCE = {
    2: (1, 1, 1, 0, 1),
    4: (1, 2, 1, 1, 2),
    6: (2, 8, 5, 5, 5),
    8: (2, 18, 11, 14, 9),
    10: (3, 41, 25, 42, 16),
    12: (3, 84, 46, 117, 29),
    14: (4, 174, 81, 348, 52),
    16: (4, 350, 130, 969, 92),
    18: (5, 718, 201, 2634, 163),
    20: (5, 1352, 295, 6349, 288),
    22: (6, 2621, 421, 15431, 500),
    24: (6, 4991, 581, 36170, 864),
    26: (6, 9396, 706, 82520, 1464),
    28: (6, 17366, 866, 180069, 2445),
}


def _shared_data() -> Path | None:
    env = os.environ.get("MLIPRESS_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return path if path.is_dir() else None


def _template(level: int) -> Path:
    data = _shared_data()
    if data is None:
        pytest.skip("shared data not found (set MLIPRESS_SHARED_DATA or provide <repo>/../shared/data)")
    path = data / "mlip-reference" / "cubic" / f"{level:02d}" / "untrained.mtp"
    if not path.exists():
        pytest.skip(f"MLIP template {path} missing")
    return path


def _read_template(path: Path):
    text = path.read_text()

    def block(key):
        m = re.search(key + r"\s*=\s*\{(.*?)\}\s*\n", text, re.S)
        return m.group(1) if m else ""

    def rows(key):
        return np.array([[int(v) for v in g.split(",")] for g in re.findall(r"\{([^{}]*)\}", block(key))], dtype=np.int64).reshape(-1, 4)

    count = int(re.search(r"alpha_moments_count\s*=\s*(\d+)", text).group(1))
    mapping = np.array([int(v) for v in re.findall(r"-?\d+", block("alpha_moment_mapping"))], dtype=np.int64)
    return rows("alpha_index_basic"), rows("alpha_index_times"), mapping, count


def _evaluate(basic, times, mapping, count, vectors, radial):
    """B_alpha for each neighbourhood: vectors (S, J, 3), radial (S, J, N_f) random f_mu values."""
    r = np.linalg.norm(vectors, axis=-1, keepdims=True)
    u = vectors / r
    moments = np.zeros((count, vectors.shape[0]))
    for k, (mu, a, b, c) in enumerate(basic):
        moments[k] = np.sum(radial[:, :, mu] * u[..., 0] ** a * u[..., 1] ** b * u[..., 2] ** c, axis=1)
    for i, j, mult, k in times:
        moments[k] += mult * moments[i] * moments[j]
    return moments[mapping].T


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def _neighbourhoods(rng, samples, neighbours, nf):
    vectors = rng.normal(size=(samples, neighbours, 3)) * 2.0
    radial = rng.uniform(-1.0, 1.0, size=(samples, neighbours, nf))
    return vectors, radial


@pytest.mark.parametrize("level", sorted(REFERENCE))
def test_counts_match_mlip(level):
    basis, nf = generate_moment_basis(level)
    ref_nf, ref_count, ref_basic, ref_times, ref_scalar = REFERENCE[level]
    assert nf == ref_nf
    assert len(basis.basic) == ref_basic
    assert basis.scalar_count == ref_scalar
    assert basis.radial_funcs_needed == nf
    # same intermediate tensors as MLIP: alpha_moments_count and alpha_index_times_count
    assert basis.count == ref_count
    assert len(basis.times) == ref_times


@pytest.mark.parametrize("bad", [0, 1, 3, 7, 30, 29, -2, 2.0])
def test_rejects_bad_levels(bad):
    with pytest.raises(ValueError):
        generate_moment_basis(bad)


def test_structure_is_consistent():
    basis, nf = generate_moment_basis(20)
    # rows only use entries computed before the target (basic ones or earlier targets)
    ready = np.zeros(basis.count, dtype=bool)
    ready[: len(basis.basic)] = True
    for i, j, mult, k in basis.times:
        assert ready[i] and ready[j] and mult > 0 and k >= len(basis.basic)
        ready[k] = True
    assert ready.all()
    assert len(set(basis.mapping.tolist())) == basis.scalar_count
    # every basic tensor is within the level
    for mu, a, b, c in basis.basic:
        assert tensor_level(mu, a + b + c) <= 20


@pytest.mark.parametrize("level", [2, 4, 6])
def test_low_levels_equal_mlip_arrays(level):
    basic, times, mapping, count = _read_template(_template(level))
    basis, _ = generate_moment_basis(level)
    assert basis.count == count
    np.testing.assert_array_equal(basis.basic, basic)
    assert sorted(map(tuple, basis.times)) == sorted(map(tuple, times))
    np.testing.assert_array_equal(np.sort(basis.mapping), np.sort(mapping))


def test_basic_moments_equal_mlip_at_16():
    basic, _, _, _ = _read_template(_template(16))
    basis, _ = generate_moment_basis(16)
    np.testing.assert_array_equal(basis.basic, basic)


@pytest.mark.parametrize("level", [10, 16, 20])
def test_rotation_invariant_and_not_constant(level):
    rng = np.random.default_rng(level)
    basis, nf = generate_moment_basis(level)
    vectors, radial = _neighbourhoods(rng, 4, 10, nf)
    args = (basis.basic, basis.times, basis.mapping, basis.count)
    values = _evaluate(*args, vectors, radial)
    rotated = _evaluate(*args, vectors @ _random_rotation(rng).T, radial)
    np.testing.assert_allclose(rotated, values, rtol=1e-10, atol=1e-10 * np.abs(values).max())
    # not trivially constant: every basis function varies between neighbourhoods
    assert np.all(np.ptp(values, axis=0) > 1e-6 * (np.abs(values).max(axis=0) + 1e-300))


@pytest.mark.parametrize("level", [10, 16])
def test_spans_same_space_as_mlip(level):
    basic, times, mapping, count = _read_template(_template(level))
    basis, nf = generate_moment_basis(level)
    rng = np.random.default_rng(100 + level)
    vectors, radial = _neighbourhoods(rng, 200, 10, nf)
    mine = _evaluate(basis.basic, basis.times, basis.mapping, basis.count, vectors, radial)
    ref = _evaluate(basic, times, mapping, count, vectors, radial)
    scale = np.abs(np.vstack([mine, ref])).max(axis=0)
    mine, ref = mine / np.abs(mine).max(axis=0), ref / np.abs(ref).max(axis=0)
    r_mine, r_ref = np.linalg.matrix_rank(mine), np.linalg.matrix_rank(ref)
    # equal ranks; at level 16 both have one exact linear relation (a 3-D tensor identity)
    assert r_mine == r_ref >= basis.scalar_count - 1
    assert np.linalg.matrix_rank(np.hstack([mine, ref])) == r_ref
    coef, *_ = np.linalg.lstsq(mine, ref, rcond=None)
    residual = np.linalg.norm(mine @ coef - ref) / np.linalg.norm(ref)
    assert residual < 1e-9
    assert scale.min() > 0


@pytest.mark.parametrize("level", [16, 18, 20])
def test_same_basis_functions_as_mlip(level):
    """Every basis function equals one of MLIP's exactly (same contraction, same normalisation)."""
    basic, times, mapping, count = _read_template(_template(level))
    basis, nf = generate_moment_basis(level)
    np.testing.assert_array_equal(basis.basic, basic)
    rng = np.random.default_rng(200 + level)
    vectors, radial = _neighbourhoods(rng, 3, 9, nf)
    mine = _evaluate(basis.basic, basis.times, basis.mapping, basis.count, vectors, radial)
    ref = _evaluate(basic, times, mapping, count, vectors, radial)
    scale = np.abs(ref).max()
    key = lambda cols: sorted(map(tuple, np.round(cols.T / scale, 9)))  # noqa: E731
    assert key(mine) == key(ref)


def test_untrained_mtp():
    mtp = untrained_mtp(16, 4, 1.5, 5.0)
    assert mtp.species_count == 4 and mtp.radial_funcs_count == 4
    assert mtp.radial_basis.size == 8 and mtp.radial_basis.kind == "RBChebyshev"
    assert not mtp.trained and mtp.moments.scalar_count == 92
    assert mtp.num_params()["radial"] == 4 * 4 * 4 * 8


@pytest.mark.slow
def test_level_28_is_fast():
    from mlipress.models.mtp.basis import _generate

    _generate.cache_clear()
    start = time.perf_counter()
    basis, nf = generate_moment_basis(28)
    assert time.perf_counter() - start < 10.0
    assert basis.scalar_count == 2445 and nf == 6
