"""MaxVol, extrapolation grades and selection: volume optimality, MLIP-2 reference agreement,
invariances."""

from __future__ import annotations

import numpy as np
import pytest

from mlipress.active import (ActiveSet, GradeSettings, build_active_set, grade, grades, maxvol, mlip_start,
                             qr_start, select)
from mlipress.io.cfg import read_cfg
from mlipress.io.mtp import read_mtp

AL = ("mlip-reference", "active-learning")


def _no_swap_grows_volume(active: ActiveSet, B, tol=1e-7):
    """Brute force: replacing any active row by any candidate row never grows |det| by more
    than the tolerance."""
    logdet = active.log_volume
    for b in B:
        for j in range(active.size):
            A = active.rows.copy()
            A[j] = b
            sign, ld = np.linalg.slogdet(A)
            assert sign == 0 or ld <= logdet + np.log1p(tol) + 1e-10


@pytest.mark.parametrize("start", ["mlip", "qr"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_maxvol_is_a_local_volume_maximum(start, seed):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((40, 6)) * rng.uniform(0.1, 10.0, 6)
    begin = mlip_start(6) if start == "mlip" else qr_start(B)
    active, swaps = maxvol(begin, B)
    _no_swap_grows_volume(active, B)
    assert grades(active, B).max() <= 1.0000001 + 1e-9
    assert active.placeholders() == 0
    # every active row is one of the candidates and grades exactly 1
    assert np.allclose(grades(active, B[active.sources]), 1.0, atol=1e-12)
    assert np.allclose(active.rows, B[active.sources])
    # the volume only grows: from the placeholder start, at least one swap per column
    assert start == "qr" or swaps >= 6


def test_maxvol_keeps_placeholders_for_unspanned_directions():
    rng = np.random.default_rng(3)
    B = rng.standard_normal((10, 3)) @ rng.standard_normal((3, 5))  # rank 3 in 5 columns
    active, _ = maxvol(mlip_start(5), B)
    assert active.placeholders() == 2
    probe = np.array([[0.0, 0.0, 0.0, 1.0, 1.0]])  # outside the span: huge grade
    assert grades(active, probe)[0] > 1e3
    with pytest.raises(ValueError, match="rank deficient"):
        qr_start(B)
    with pytest.raises(ValueError, match="swap_threshold"):
        maxvol(active, B, swap_threshold=1.0)


@pytest.fixture(scope="module")
def cubic10(shared_data):
    root = shared_data / "mlip-reference"
    mtp = read_mtp(root / "cubic" / "10" / "pot.mtp")
    train = read_cfg(root / "cubic" / "first50.cfg").configurations
    params = mtp.params()
    return mtp, params, train, build_active_set(mtp, params, train)


def _mlip_grades(path):
    data = read_cfg(path).configurations
    return data, np.array([float(dict(c.features)["MV_grade"]) for c in data])


def _assert_mlip_close(ours, ref, rtol):
    # MLIP prints 6 decimals: an absolute floor of 5e-7 for grades below 1
    assert np.all(np.abs(ours - ref) <= np.maximum(rtol * ref, 5.1e-7)), np.abs(ours / ref - 1).max()


def test_active_set_is_mlip2s(cubic10, shared_data):
    """The active matrix equals the one in MLIP-2's .als (41 x 41: 24 radial, 1 species,
    16 moment columns; placeholders at the same rows), its inverse (stored transposed) too."""
    from mlipress.active.als import parse_als

    mtp, params, train, active = cubic10
    ref = parse_als((shared_data.joinpath(*AL) / "cubic10.als").read_bytes())
    n = active.size
    assert n == 41 == mtp.num_params()["total"]
    A = ref["A"]
    assert np.abs(active.rows - A).max() <= 1e-12 * np.abs(A).max()
    # MLIP-2 updates its inverse by rank-one steps
    assert np.abs(np.linalg.inv(active.rows) - ref["inverse"]).max() <= 1e-7 * np.abs(ref["inverse"]).max()
    assert active.placeholders() == 26
    assert np.array_equal(active.sources < 0, np.all(np.isin(A, [0.0, 1e-5]), axis=1))


def test_als_round_trip(cubic10, shared_data, tmp_path):
    """mlipress's .als of the Cu active set is MLIP-2's byte for byte outside the two binary
    matrices (potential text, weights, row map, the 15 training configurations and the empty
    placeholder one, 16-digit numbers); reading it back gives the same active set."""
    from mlipress.active.als import CFG_WEIGHTS, format_als, parse_als, read_als, write_als
    from mlipress.io.mtp import format_mtp
    from mlipress.models.layers import MatrixFactorized

    mtp, params, train, active = cubic10
    ref_bytes = (shared_data.joinpath(*AL) / "cubic10.als").read_bytes()
    path = tmp_path / "pot.als"
    write_als(path, mtp, params, active, train)
    ours = path.read_bytes()
    assert ours == format_als(format_mtp(mtp), active, train)
    n = active.size
    start = ref_bytes.index(b"\n^") + 36
    end = start + 16 * n * n
    assert len(ours) == len(ref_bytes) and ours[:start] == ref_bytes[:start] and ours[end:] == ref_bytes[end:]
    mine, ref = parse_als(ours), parse_als(ref_bytes)
    assert np.array_equal(mine["weights"], CFG_WEIGHTS) and np.array_equal(mine["numbers"], ref["numbers"])
    assert np.abs(mine["inverse"] - ref["inverse"]).max() <= 1e-7 * np.abs(ref["inverse"]).max()
    back, configs = read_als(path)
    assert np.array_equal(back.rows, active.rows) and len(configs) == n - active.placeholders() == 15
    index = [-1 if s < 0 else next(k for k, c in enumerate(train) if np.array_equal(c.positions, configs[s].positions))
             for s in back.sources]
    assert index == active.sources.tolist()
    for c, k in zip(configs, (s for s in active.sources if s >= 0)):
        t = train[k]
        assert c.energy == t.energy and np.array_equal(c.forces, t.forces) and np.array_equal(c.virial, t.virial)
    with pytest.raises(ValueError, match="configuration-wise"):
        write_als(path, mtp, params, active, train, GradeSettings(mode="nbh"))
    mf = params.replace(radial=MatrixFactorized.from_dense(params.radial.dense(), rank=1))
    with pytest.raises(ValueError, match="dense MTP"):
        write_als(path, mtp, mf, active, train)
    with pytest.raises(ValueError, match="not an MLIP-2 .als"):
        parse_als(ref_bytes[:start + 100])


def test_grades_agree_with_mlip2(cubic10, shared_data):
    mtp, params, train, active = cubic10
    root = shared_data.joinpath(*AL)
    cands, ref = _mlip_grades(root / "grade_cubic10.cfg")
    ours = np.array([g[0] for g in grade(mtp, params, active, cands)])
    _assert_mlip_close(ours, ref, 1e-6)
    assert ours.min() > 10.0  # unscaled and strained candidates: all extrapolative
    _, self_ref = _mlip_grades(root / "grade_cubic10_self.cfg")  # graded: first50.cfg itself
    ours_self = np.array([g[0] for g in grade(mtp, params, active, train)])
    _assert_mlip_close(ours_self, self_ref, 1e-6)
    assert ours_self.max() <= 1.0000001 and np.sum(np.isclose(ours_self, 1.0)) == 41 - 26


def test_select_picks_mlip2s_configurations(cubic10, shared_data):
    mtp, params, train, active = cubic10
    root = shared_data.joinpath(*AL)
    cands = read_cfg(root / "candidates20.cfg").configurations
    chosen, new, g = select(mtp, params, active, cands, threshold=1.1)
    picked = read_cfg(root / "selected_cubic10.cfg").configurations
    ref = sorted(next(k for k, c in enumerate(cands) if np.allclose(c.positions, p.positions, atol=1e-5)) for p in picked)
    assert chosen == ref and len(chosen) == 19
    assert new.log_volume > active.log_volume
    # after selection every candidate grades <= 1 (up to the swap tolerance)
    assert max(x[0] for x in grade(mtp, params, new, cands)) <= 1.0000001 + 1e-9
    # duplicates are never picked twice; --max limits greedily
    twice, _, _ = select(mtp, params, active, list(cands) + list(cands), threshold=1.1)
    assert len(twice) == 19 and len({k % 20 for k in twice}) == 19
    three, _, _ = select(mtp, params, active, cands, threshold=1.1, max_count=3)
    assert len(three) == 3 and int(np.argmax(g)) in three  # the largest grade comes first


def test_grades_agree_with_mlip2_fewer_configurations_than_columns(shared_data):
    """4 species, level 16: 568 coefficients, 60 training configurations; 508 placeholder
    rows stay, grades are ~1e4-1e5 (residuals outside the training span / 1e-5, cond(A) ~ 1e8).
    MLIP-2 graded ``mixed_rest31.cfg``; its output reprints the positions with 6 decimals,
    which moves these amplified grades by up to 1.7e-5, so the rows come from the input file
    and only ``MV_grade`` from the output: agreement 5e-11, the 6 printed decimals."""
    root = shared_data / "mlip-reference"
    al = shared_data.joinpath(*AL)
    mtp = read_mtp(root / "nbmotaw-quaternary" / "pot.mtp")
    params = mtp.params()
    active = build_active_set(mtp, params, read_cfg(al / "mixed_train60.cfg").configurations)
    assert active.size == 568 and active.placeholders() == 508
    printed, ref = _mlip_grades(al / "grade_quaternary.cfg")
    cfgs = read_cfg(al / "mixed_rest31.cfg").configurations
    assert len(cfgs) == len(printed) == 31
    assert all(np.abs(c.positions - p.positions).max() <= 5.1e-7 for c, p in zip(cfgs, printed))
    ours = np.array([g[0] for g in grade(mtp, params, active, cfgs)])
    _assert_mlip_close(ours, ref, 1e-9)
    rounded = np.array([g[0] for g in grade(mtp, params, active, printed)])
    assert np.abs(rounded / ref - 1).max() > 1e-6  # why the printed positions are not the input


def test_grade_invariances_and_extrapolation(cubic10):
    mtp, params, train, active = cubic10
    cfg = train[7]
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    perm = rng.permutation(cfg.natoms)
    rotated = type(cfg)(cfg.positions @ Q.T, cfg.types, cfg.cell @ Q.T)
    permuted = type(cfg)(cfg.positions[perm], cfg.types[perm], cfg.cell)
    strained = type(cfg)(cfg.positions * 1.15, cfg.types, cfg.cell * 1.15)
    nbh = GradeSettings(mode="nbh")
    nbh_active = build_active_set(mtp, params, train[:10], nbh)
    g_cfg = [x[0] for x in grade(mtp, params, active, [cfg, rotated, permuted, strained])]
    g_nbh = grade(mtp, params, nbh_active, [cfg, rotated, permuted], nbh)
    assert g_cfg[0] <= 1.0000001
    # round-off of the energy derivatives (1e-16) amplified by cond(A) ~ 3e8
    assert abs(g_cfg[1] - g_cfg[0]) <= 1e-7 * g_cfg[0] and abs(g_cfg[2] - g_cfg[0]) <= 1e-7 * g_cfg[0]
    assert g_cfg[3] > 100.0
    np.testing.assert_allclose(g_nbh[1], g_nbh[0], rtol=1e-8)
    np.testing.assert_allclose(g_nbh[2], g_nbh[0][perm], rtol=1e-8)


def test_linear_grades_and_compressed_factors():
    """wrt="linear" uses species and moment columns only; a factored radial layer is graded
    in its factors (MF: U, V), and the training set's own grades stay <= 1."""
    from mlipress.examples import make_example_dataset
    from mlipress.models.layers import MatrixFactorized
    from mlipress.models.mtp.basis import untrained_mtp

    data, _ = make_example_dataset(12, seed=0)
    mtp = untrained_mtp(6, species_count=3, min_dist=1.5, max_dist=4.5)
    p = mtp.init(0)
    p = p.replace(moment=np.linspace(-1.0, 1.0, p.moment.shape[0]), species=np.array([-3.0, -2.5, -3.2]))
    train = data.configurations
    lin = GradeSettings(wrt="linear")
    a_lin = build_active_set(mtp, p, train, lin)
    assert a_lin.size == 3 + p.moment.shape[0]
    assert max(x[0] for x in grade(mtp, p, a_lin, train, lin)) <= 1.0000001
    # the linear rows are the contract's features_fn energy columns / N
    from mlipress.active import energy_rows
    from mlipress.batch import build_batch

    feats = np.asarray(mtp.features_fn()(p, build_batch(train[:3], mtp.cutoff))[0])
    rows = np.concatenate(energy_rows(mtp, p, train[:3], wrt="linear"))
    np.testing.assert_allclose(rows * np.array([[c.natoms] for c in train[:3]]), feats, rtol=1e-10, atol=1e-12)
    mf = p.replace(radial=MatrixFactorized.from_dense(p.radial.dense(), rank=2))
    a_mf = build_active_set(mtp, mf, train)
    assert a_mf.size == mf.radial.U.size + mf.radial.V.size + 3 + p.moment.shape[0]
    assert max(x[0] for x in grade(mtp, mf, a_mf, train)) <= 1.0000001


def test_grade_and_select_commands(shared_data, tmp_path, capsys):
    """``mlipress grade`` writes MLIP-2's MV_grade lines (to its printed digits), saves the
    active set next to the potential and reuses it; ``mlipress select`` writes the 19."""
    import shutil

    from mlipress.active.state import active_set_path
    from mlipress.cli import main

    root = shared_data / "mlip-reference"
    pot = tmp_path / "pot.mtp"
    shutil.copy(root / "cubic" / "10" / "pot.mtp", pot)
    train, cands = root / "cubic" / "first50.cfg", shared_data.joinpath(*AL) / "candidates20.cfg"
    out, als = tmp_path / "graded.cfg", tmp_path / "pot.als"
    assert main(["grade", str(pot), str(train), str(cands), str(out), "--als-filename", str(als)]) == 0
    assert "built and saved" in capsys.readouterr().out and active_set_path(pot).exists()
    from mlipress.active.als import read_als

    assert read_als(als)[0].placeholders() == 26
    _, ref = _mlip_grades(shared_data.joinpath(*AL) / "grade_cubic10.cfg")
    _, ours = _mlip_grades(out)
    _assert_mlip_close(ours, ref, 1e-6)
    xyz = tmp_path / "graded.xyz"
    assert main(["grade", str(pot), str(train), str(cands), str(xyz), "--species", "Cu"]) == 0
    assert "reused" in capsys.readouterr().out
    import ase.io

    frames = ase.io.read(xyz, index=":")
    np.testing.assert_allclose([a.info["MV_grade"] for a in frames], ours, rtol=1e-6)
    nbh_xyz = tmp_path / "graded_nbh.xyz"
    assert main(["grade", str(pot), str(train), str(cands), str(nbh_xyz), "--species", "Cu", "--mode", "nbh"]) == 0
    frames = ase.io.read(nbh_xyz, index=":")
    assert all(a.arrays["nbh_grades"].shape == (32,) for a in frames)
    assert all(np.isclose(a.info["MV_grade"], a.arrays["nbh_grades"].max()) for a in frames)
    assert max(a.info["MV_grade"] for a in frames) > 2.0  # the strained candidates
    sel = tmp_path / "selected.cfg"
    assert main(["select", str(pot), str(train), str(cands), "-o", str(sel)]) == 0
    assert "selected 19 of 20" in capsys.readouterr().out
    assert len(read_cfg(sel)) == 19
    # a potential with other coefficients invalidates the saved set
    text = pot.read_text().replace("species_coeffs = {1.9", "species_coeffs = {2.9")
    pot.write_text(text)
    assert main(["grade", str(pot), str(train), str(cands), str(out)]) == 0
    assert "built and saved" in capsys.readouterr().out


def test_calculator_grades_on_the_fly(cubic10, shared_data, tmp_path, capsys):
    """``MTPCalculator(grade=True)`` gives the same grade as :func:`grade`; ``mlipress md``
    saves the configurations above the threshold and stops above the break threshold."""
    from mlipress.calculator import MTPCalculator
    from mlipress.cli import main
    from mlipress.io import to_atoms

    mtp, params, train, active = cubic10
    cands = read_cfg(shared_data.joinpath(*AL) / "candidates20.cfg").configurations
    calc = MTPCalculator(mtp, grade=True, active_set=active)
    nbh_calc = MTPCalculator(mtp, grade=True, train=train[:10], grade_settings=GradeSettings(mode="nbh"))
    for c in (train[3], cands[0], cands[3]):
        atoms = to_atoms(c, ("Cu",))
        atoms.calc = calc
        atoms.get_potential_energy()
        assert abs(calc.results["grade"] - grade(mtp, params, active, [c])[0][0]) <= 1e-9 * calc.results["grade"]
        atoms.calc = nbh_calc
        atoms.get_forces()
        assert nbh_calc.results["grades"].shape == (c.natoms,)
        assert nbh_calc.results["grade"] == nbh_calc.results["grades"].max()
    with pytest.raises(ValueError, match="training set"):
        MTPCalculator(mtp, grade=True)

    structure = tmp_path / "start.xyz"
    to_atoms(cands[0], ("Cu",)).write(structure)
    pot = tmp_path / "pot.mtp"
    mtp.write(pot)
    saved = tmp_path / "extrapolative.cfg"
    args = ["md", str(structure), str(pot), "--species", "Cu", "--ensemble", "nvt", "--temperature", "1500",
            "--steps", "40", "--timestep", "2", "--train", str(shared_data / "mlip-reference" / "cubic" / "first50.cfg"),
            "--grade-threshold", "2", "--grade-break", "30", "--save-extrapolative", str(saved), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    got = read_cfg(saved).configurations
    values = [float(dict(c.features)["MV_grade"]) for c in got]
    assert got and min(values) > 2.0
    assert ("stopped: grade" in out) == (max(values) > 30.0)
