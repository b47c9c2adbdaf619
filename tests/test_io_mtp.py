"""Reading and writing MLIP .mtp files: real published potentials, exact round trips, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mlipress.io import FileFormatError
from mlipress.io.atomic import atomic_open
from mlipress.io.mtp import format_mtp, parse_mtp, read_mtp, write_mtp
from mlipress.models.mtp.model import MTP, MomentBasis, RadialBasis

TRAINED_LEVELS = ["02", "04", "06", "08", "10", "12", "14", "16", "18", "20", "22", "24", "26"]
UNTRAINED_LEVELS = ["02", "04", "06", "08", "10", "12", "14", "16", "18", "20"]
OTHER_FILES = [
    "mlip-reference/nbmotaw-quaternary/pot.mtp",
    "mlearn/Mo/zuo2020_fitted.mtp",
    "mlearn/Li/zuo2020_fitted.mtp",
    "mlearn/Si/zuo2020_fitted.mtp",
    "nbmotaw/quaternary_yin2021.mtp",
]
ALL_FILES = (
    [f"mlip-reference/cubic/{lv}/pot.mtp" for lv in TRAINED_LEVELS]
    + [f"mlip-reference/cubic/{lv}/untrained.mtp" for lv in UNTRAINED_LEVELS]
    + OTHER_FILES
)

# REFERENCE.md section 1: (N_f, alpha_moments, basic, times, scalar) per level.
LEVEL_SIZES = {
    "02": (1, 1, 1, 0, 1), "06": (2, 8, 5, 5, 5), "08": (2, 18, 11, 14, 9),
    "10": (3, 41, 25, 42, 16), "12": (3, 84, 46, 117, 29), "14": (4, 174, 81, 348, 52),
    "16": (4, 350, 130, 969, 92), "18": (5, 718, 201, 2634, 163), "20": (5, 1352, 295, 6349, 288),
    "22": (6, 2621, 421, 15431, 500), "24": (6, 4991, 581, 36170, 864), "26": (6, 9396, 706, 82520, 1464),
}  # fmt: skip

ARRAYS = ("radial_coeffs", "species_coeffs", "moment_coeffs")


def assert_same_mtp(a: MTP, b: MTP) -> None:
    """Bit-identical potentials (NaN-free arrays compared with array_equal)."""
    assert a.species_count == b.species_count
    assert a.radial_basis == b.radial_basis
    assert a.radial_funcs_count == b.radial_funcs_count
    assert a.moments == b.moments
    assert a.scaling == b.scaling
    assert (a.potential_name, a.potential_tag) == (b.potential_name, b.potential_tag)
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype == np.float64
            assert np.array_equal(x, y), name


def file_int(text: str, key: str) -> int:
    return int(re.search(rf"^\s*{key}\s*=\s*(\d+)", text, re.M).group(1))


def lineno(text: str, prefix: str) -> int:
    """1-based number of the first line whose stripped text starts with ``prefix``."""
    for k, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith(prefix):
            return k
    raise AssertionError(prefix)


# --------------------------------------------------------------------------- small synthetic potential


def small_mtp(trained=True, nt=2, scaling=0.25, kind="RBChebyshev") -> MTP:
    """A level-06 basis (MLIP's own index lists) with deterministic awkward coefficients."""
    moments = MomentBasis(
        basic=[[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]],
        times=[[0, 0, 1, 5], [1, 1, 1, 6], [2, 2, 1, 6], [3, 3, 1, 6], [0, 5, 1, 7]],
        mapping=[0, 4, 5, 6, 7],
        count=8,
    )
    rng = np.random.default_rng(7)
    coeffs = {}
    if trained:
        coeffs = dict(
            radial_coeffs=rng.normal(size=(nt, nt, 2, 8)),  # needs 17 digits to round-trip
            species_coeffs=np.array([0.1 + 0.2, -3.0][:nt] + [1.5] * (nt - 2)),
            moment_coeffs=rng.normal(size=5) * 1e3,
        )
    return MTP(nt, RadialBasis(1.5, 5.0, 8, kind), 2, moments, scaling=scaling, **coeffs)


def test_small_round_trip_is_exact_even_for_17_digit_values(tmp_path):
    mtp = small_mtp()
    path = tmp_path / "pot.mtp"
    write_mtp(mtp, path)
    back = read_mtp(path)
    assert_same_mtp(mtp, back)
    assert back.species_coeffs[0] == 0.30000000000000004
    text = path.read_text()
    assert "species_coeffs = {3.0000000000000004e-01, -3.000000000000000e+00}" in text
    assert text.splitlines()[:3] == ["MTP", "version = 1.1.0", "potential_name = MTP1m"]
    assert "\t\t1-0" in text and "\t\t0-1" in text


def test_untrained_layout_and_scaling_rule():
    untrained = small_mtp(trained=False, scaling=1.0)
    text = format_mtp(untrained)
    assert "scaling" not in text and "radial_coeffs" not in text and "moment_coeffs" not in text
    assert "\tmin_dist = 1.5\n\tmax_dist = 5\n" in text
    assert "potential_tag = \n" in text
    assert "alpha_moment_mapping = {0, 4, 5, 6, 7}\n" in text
    # an untrained potential with a non-default scaling keeps it
    assert "scaling = 2.500000000000000e-01" in format_mtp(small_mtp(trained=False, scaling=0.25))
    # a trained one always carries scaling, even 1.0 (as MLIP writes it)
    assert "scaling = 1.000000000000000e+00" in format_mtp(small_mtp(scaling=1.0))
    back = parse_mtp(text)
    assert not back.trained and back.scaling == 1.0 and back.radial_basis.min_dist == 1.5


def test_repulsive_basis_tabs_multiline_lists_and_tags():
    text = format_mtp(small_mtp(kind="RBChebyshev_repuls"))
    assert "radial_basis_type = RBChebyshev_repuls" in text
    text = text.replace("potential_tag = ", "potential_tag =\t\tmy tag ")
    text = text.replace("alpha_index_basic = {{0, 0, 0, 0}, ", "alpha_index_basic\t=\t{{0, 0, 0, 0},\n    ")
    text = text.replace("species_coeffs = {3.0000000000000004e-01, ", "   species_coeffs   =  {3.0000000000000004e-01,\n\t\t")
    mtp = parse_mtp(text)
    assert mtp.radial_basis.kind == "RBChebyshev_repuls"
    assert mtp.potential_tag == "my tag"
    assert mtp.moments.basic.shape == (5, 4) and mtp.moments.basic[1].tolist() == [0, 1, 0, 0]
    assert mtp.species_coeffs.tolist() == [0.30000000000000004, -3.0]
    assert_same_mtp(mtp, parse_mtp(format_mtp(mtp)))


def test_radial_blocks_in_any_order():
    mtp = small_mtp(nt=3)
    text = format_mtp(mtp)
    lines = text.splitlines()
    start = lineno(text, "radial_coeffs")  # header line index (1-based) == first block's 0-based index
    blocks = [lines[start + 3 * k : start + 3 * (k + 1)] for k in range(9)]
    shuffled = lines[:start] + sum(blocks[::-1], []) + lines[start + 27 :]
    back = parse_mtp("\n".join(shuffled))
    assert_same_mtp(mtp, back)
    assert back.radial_coeffs[2, 0, 1, 3] == mtp.radial_coeffs[2, 0, 1, 3]


def test_almtp_stops_at_mvs_block(tmp_path, shared_data):
    src = shared_data / "mlip-reference/cubic/10/pot.mtp"
    path = tmp_path / "pot.almtp"
    path.write_text(src.read_text() + "\n#MVS_v1.1\nthis = {{is not, valid\n1 2 3 junk\n")
    assert_same_mtp(read_mtp(src), read_mtp(path))


# --------------------------------------------------------------------------- real files


@pytest.mark.parametrize("rel", ALL_FILES)
def test_real_file_reads_counts_match_and_round_trips(rel, shared_data, tmp_path):
    path = shared_data / rel
    text = path.read_text()
    mtp = read_mtp(path)
    m = mtp.moments
    assert mtp.species_count == file_int(text, "species_count")
    assert m.count == file_int(text, "alpha_moments_count")
    assert len(m.basic) == file_int(text, "alpha_index_basic_count")
    assert len(m.times) == file_int(text, "alpha_index_times_count")
    assert len(m.mapping) == file_int(text, "alpha_scalar_moments")
    assert mtp.radial_funcs_count == file_int(text, "radial_funcs_count")
    assert mtp.radial_basis.size == file_int(text, "radial_basis_size") == 8
    assert mtp.trained == ("moment_coeffs" in text)
    if mtp.trained:
        nt = mtp.species_count
        assert mtp.radial_coeffs.shape == (nt, nt, mtp.radial_funcs_count, 8)
        assert np.isfinite(mtp.radial_coeffs).all()
        assert mtp.moment_coeffs.shape == (len(m.mapping),) and mtp.species_coeffs.shape == (nt,)
    level = rel.split("/")[2] if rel.startswith("mlip-reference/cubic") else None
    if level in LEVEL_SIZES:
        nf, count, basic, times, scalar = LEVEL_SIZES[level]
        assert (mtp.radial_funcs_count, m.count, len(m.basic), len(m.times), len(m.mapping)) == (
            nf, count, basic, times, scalar,
        )  # fmt: skip
    out = tmp_path / "out.mtp"
    write_mtp(mtp, out)
    assert_same_mtp(mtp, read_mtp(out))


@pytest.mark.parametrize("level", TRAINED_LEVELS)
def test_written_trained_file_is_byte_identical_to_mlip(level, shared_data):
    text = (shared_data / f"mlip-reference/cubic/{level}/pot.mtp").read_text()
    assert format_mtp(parse_mtp(text)).rstrip("\n") == text.rstrip("\n")


@pytest.mark.parametrize("level", UNTRAINED_LEVELS)
def test_written_untrained_file_matches_mlip_template(level, shared_data):
    text = (shared_data / f"mlip-reference/cubic/{level}/untrained.mtp").read_text()
    norm = lambda s: [line.strip() for line in s.strip().splitlines()]  # noqa: E731
    assert norm(format_mtp(parse_mtp(text))) == norm(text)  # MLIP's templates indent a few keys oddly


def test_known_values_cubic_06(shared_data):
    mtp = read_mtp(shared_data / "mlip-reference/cubic/06/pot.mtp")
    assert mtp.scaling == 7.941360613936450e-03
    assert mtp.potential_tag == "" and mtp.potential_name == "MTP1m"
    assert mtp.radial_basis == RadialBasis(0.5, 5.0, 8, "RBChebyshev")
    assert mtp.radial_coeffs[0, 0, 0, 0] == 4.740687570352782e-01
    assert mtp.radial_coeffs[0, 0, 1, 7] == 1.057164501954956e-02
    assert mtp.species_coeffs.tolist() == [1.770048929035879e00]
    assert mtp.moment_coeffs[-1] == -1.116021898101442e04
    assert mtp.moments.times[-1].tolist() == [0, 5, 1, 7]
    untrained = read_mtp(shared_data / "mlip-reference/cubic/06/untrained.mtp")
    assert untrained.scaling == 1.0 and not untrained.trained and untrained.moments == mtp.moments


def test_quaternary_pair_orientation(shared_data):
    """Header ``i-j`` fills radial_coeffs[i, j] (central species i): 0-1 and 1-0 differ."""
    mtp = read_mtp(shared_data / "nbmotaw/quaternary_yin2021.mtp")
    assert mtp.species_count == 4 and mtp.radial_coeffs.shape == (4, 4, 4, 8)
    assert mtp.scaling == 4.384118967452301e-01
    assert mtp.radial_basis.min_dist == 1.499690000000000e00 and mtp.cutoff == 4.7
    assert mtp.radial_coeffs[0, 1, 0, 0] == 1.569071174934681e-01
    assert mtp.radial_coeffs[1, 0, 0, 0] == -5.874076900339439e-02
    assert mtp.radial_coeffs[0, 0, 3, 0] == 1.501095753625060e-01
    same = read_mtp(shared_data / "mlip-reference/nbmotaw-quaternary/pot.mtp")
    assert_same_mtp(mtp, same)


def test_published_mlearn_values(shared_data):
    mo = read_mtp(shared_data / "mlearn/Mo/zuo2020_fitted.mtp")
    assert mo.species_coeffs.tolist() == [-8.133536072621066]
    assert mo.moment_coeffs[0] == -8.672442497291165
    assert (mo.radial_funcs_count, mo.moments.scalar_count, mo.cutoff) == (5, 288, 5.2)


# --------------------------------------------------------------------------- malformed files


def write_broken(tmp_path, edit) -> tuple:
    text = format_mtp(small_mtp())
    broken = edit(text)
    assert broken != text
    path = tmp_path / "broken.mtp"
    path.write_text(broken)
    return path, broken


def check_error(excinfo, path, line, field, *fragments):
    err = excinfo.value
    assert err.path == str(path) and err.line == line and err.field == field
    message = str(err)
    assert message.startswith(f"{path}, line {line}, field {field!r}: ")
    for fragment in fragments:
        assert fragment in message


def test_error_count_disagrees_with_rows(tmp_path):
    path, text = write_broken(tmp_path, lambda t: t.replace("alpha_index_basic_count = 5", "alpha_index_basic_count = 6"))
    with pytest.raises(FileFormatError) as excinfo:
        read_mtp(path)
    check_error(excinfo, path, lineno(text, "alpha_index_basic ="), "alpha_index_basic",
                "has 5 rows but alpha_index_basic_count = 6")  # fmt: skip


def test_error_non_numeric_value(tmp_path):
    path, text = write_broken(tmp_path, lambda t: t.replace("radial_basis_size = 8", "radial_basis_size = x"))
    with pytest.raises(FileFormatError) as excinfo:
        read_mtp(path)
    check_error(excinfo, path, 10, "radial_basis_size", "expected an integer, got 'x'")
    assert str(excinfo.value) == f"{path}, line 10, field 'radial_basis_size': expected an integer, got 'x'"


def test_error_missing_key(tmp_path):
    path, _ = write_broken(tmp_path, lambda t: re.sub(r"\tmax_dist = .*\n", "", t))
    with pytest.raises(FileFormatError) as excinfo:
        read_mtp(path)
    assert excinfo.value.field == "max_dist" and excinfo.value.line is None
    assert str(excinfo.value) == f"{path}, field 'max_dist': missing required key"


def test_error_unknown_radial_basis(tmp_path):
    path, text = write_broken(tmp_path, lambda t: t.replace("RBChebyshev", "RBShapeev"))
    with pytest.raises(FileFormatError) as excinfo:
        read_mtp(path)
    check_error(excinfo, path, lineno(text, "radial_basis_type"), "radial_basis_type", "'RBShapeev'")


def test_error_missing_pair_and_short_row(tmp_path):
    def drop_pair(t):
        lines = t.splitlines()
        k = lines.index("\t\t1-0")
        return "\n".join(lines[:k] + lines[k + 3 :])

    path, text = write_broken(tmp_path, drop_pair)
    with pytest.raises(FileFormatError) as excinfo:
        read_mtp(path)
    check_error(excinfo, path, lineno(text, "radial_coeffs"), "radial_coeffs", "missing species pair block(s) 1-0")

    def short_row(t):
        lines = t.splitlines()
        k = lines.index("\t\t0-1") + 2
        lines[k] = lines[k].rsplit(",", 1)[0] + "}"
        return "\n".join(lines)

    path, text = write_broken(tmp_path, short_row)
    with pytest.raises(FileFormatError) as excinfo:
        read_mtp(path)
    line = text.splitlines().index("\t\t0-1") + 3
    check_error(excinfo, path, line, "radial_coeffs", "row has 7 values but radial_basis_size = 8")


def test_error_bad_coefficient_and_wrong_length(tmp_path):
    path, text = write_broken(tmp_path, lambda t: t.replace("-3.000000000000000e+00}", "abc}"))
    with pytest.raises(FileFormatError) as excinfo:
        read_mtp(path)
    check_error(excinfo, path, lineno(text, "species_coeffs"), "species_coeffs", "expected a number, got 'abc'")

    path, text = write_broken(tmp_path, lambda t: t.replace(", -3.000000000000000e+00}", "}"))
    with pytest.raises(FileFormatError) as excinfo:
        read_mtp(path)
    check_error(excinfo, path, lineno(text, "species_coeffs"), "species_coeffs", "has 1 values but species_count = 2")


def test_error_index_out_of_range_and_not_mtp(tmp_path):
    path, text = write_broken(tmp_path, lambda t: t.replace("{0, 5, 1, 7}", "{0, 5, 1, 8}"))
    with pytest.raises(FileFormatError) as excinfo:
        read_mtp(path)
    check_error(excinfo, path, lineno(text, "alpha_index_times ="), "alpha_index_times", "alpha_moments_count")

    path, _ = write_broken(tmp_path, lambda t: t.replace("MTP\n", "NOT\n", 1))
    with pytest.raises(FileFormatError, match=r"line 1: not an MTP file"):
        read_mtp(path)


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "pot.mtp"
    write_mtp(small_mtp(), path)
    original = path.read_bytes()
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write("MTP\nversion = 1.1.0\n")
        raise RuntimeError("interrupted midway")
    assert path.read_bytes() == original

    # a failure inside write_mtp itself (disk full at sync time) must not truncate the file
    import mlipress.io.atomic as atomic

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_mtp(small_mtp(nt=3), path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["pot.mtp"]  # no temporary left behind


def test_mtp_model_contract_file_round_trip(tmp_path):
    from mlipress.models import Model
    from mlipress.models.mtp import MTP, untrained_mtp

    mtp = untrained_mtp(6, 2, 1.5, 5.0)
    assert isinstance(mtp, Model)
    trained = mtp.with_params(mtp.init(3))
    trained.write(tmp_path / "p.mtp")
    back = MTP.read(tmp_path / "p.mtp")
    np.testing.assert_array_equal(back.radial_coeffs, trained.radial_coeffs)
    assert back.structure_key() == trained.structure_key()
