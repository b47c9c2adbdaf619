"""Reading and writing MLIP .cfg files: real files, exact round trips, column names, errors."""

from __future__ import annotations

import numpy as np
import pytest

from mlipress.data import Configuration, Dataset
from mlipress.io import FileFormatError, read_dataset, write_dataset
from mlipress.io.atomic import atomic_write
from mlipress.io.cfg import format_cfg, parse_cfg, read_cfg, write_cfg


def assert_same_config(a: Configuration, b: Configuration) -> None:
    """Bit-identical configurations (arrays compared exactly, None where absent)."""
    assert np.array_equal(a.types, b.types)
    assert np.array_equal(a.positions, b.positions)
    for name in ("cell", "forces", "virial"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert np.array_equal(x, y), name
    assert a.energy == b.energy
    assert a.features == b.features


def assert_same_dataset(a: Dataset, b: Dataset) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert_same_config(x, y)


# --------------------------------------------------------------------------- real files


def test_train101_values_and_round_trip(shared_data, tmp_path):
    ds = read_cfg(shared_data / "mlip-reference/cubic/train101.cfg")
    assert len(ds) == 101 and ds.natoms == 101 * 32 and ds.species is None
    first = ds[0]
    assert np.array_equal(first.cell, np.diag([7.22, 7.22, 7.22]))
    assert first.positions[1].tolist() == [0.0, 1.805, 1.805]
    assert first.energy == -0.181808363475
    assert np.array_equal(np.diag(first.virial), [-5.12584] * 3)
    assert first.virial[0, 1] == 0.0 and first.types.tolist() == [0] * 32
    assert all(c.forces.shape == (32, 3) for c in ds)
    out = tmp_path / "train101.cfg"
    write_cfg(ds, out)
    assert_same_dataset(ds, read_cfg(out))


def test_mixed_quaternary_values_and_round_trip(shared_data, tmp_path):
    ds = read_cfg(shared_data / "mlip-reference/nbmotaw-quaternary/mixed.cfg", species="Nb,Mo,Ta,W")
    assert len(ds) == 91 and ds.species == ("Nb", "Mo", "Ta", "W")
    first = ds[0]
    assert first.types.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # a row-permuted Supercell is kept as written
    assert first.cell.tolist() == [[0.0, 0.0, 3.322565], [6.64513, 0.0, 0.0], [0.0, 6.64513, 0.0]]
    assert first.energy == -83.82005651
    assert first.forces[2, 0] == 0.9102692 and first.forces[7, 0] == -0.63103698
    assert first.virial[0, 0] == -13.04066684 and first.virial[2, 2] == -12.98055985
    assert set(np.unique(np.concatenate([c.types for c in ds]))) <= {0, 1, 2, 3}
    out = tmp_path / "mixed.cfg"
    write_dataset(ds, out)
    back = read_dataset(out, species=ds.species)
    assert back.species == ds.species
    assert_same_dataset(ds, back)


# --------------------------------------------------------------------------- layout features

REORDERED = """BEGIN_CFG
 Size
  2
 Supercell
  3.0 0.0 0.0
  0.0 4.0 0.0
  0.5 0.0 5.0
 AtomData:  fz type id cartes_z cartes_y cartes_x fy nbh_grades fx
  0.3  1  1  0.25  0.5  0.75  0.2  1.5  0.1
  -0.3 0  2  1.25  1.5  1.75  -0.2 0.0  -0.1
 EnergyWeight
  2.0
 Energy
  -7.5
 PlusStress:  xy xz yz zz yy xx
  0.6 0.5 0.4 0.3 0.2 0.1
 Feature   EFS_by\tVASP
 Feature   mindist 1.23 A
END_CFG
"""


def test_columns_are_read_by_name_and_unknown_sections_skipped():
    (c,) = parse_cfg(REORDERED)
    assert c.types.tolist() == [1, 0]
    assert c.positions.tolist() == [[0.75, 0.5, 0.25], [1.75, 1.5, 1.25]]
    assert c.forces.tolist() == [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]]
    assert c.energy == -7.5
    # PlusStress columns by name: xx=0.1 yy=0.2 zz=0.3 yz=0.4 xz=0.5 xy=0.6
    assert c.virial.tolist() == [[0.1, 0.6, 0.5], [0.6, 0.2, 0.4], [0.5, 0.4, 0.3]]
    assert c.cell[2].tolist() == [0.5, 0.0, 5.0]
    assert c.features == (("EFS_by", "VASP"), ("mindist", "1.23 A"))
    back = parse_cfg(format_cfg(Dataset((c,))))
    assert_same_dataset(Dataset((c,)), back)
    assert "nbh_grades" not in format_cfg(Dataset((c,)))


def test_direct_coordinates_are_converted_with_the_supercell():
    text = REORDERED.replace("cartes_", "direct_")
    (c,) = parse_cfg(text)
    cell = np.array([[3.0, 0, 0], [0, 4.0, 0], [0.5, 0, 5.0]])
    assert np.allclose(c.positions, np.array([[0.75, 0.5, 0.25], [1.75, 1.5, 1.25]]) @ cell, rtol=0, atol=1e-15)
    assert c.positions[0].tolist() == pytest.approx([2.375, 2.0, 1.25], abs=1e-15)


def test_non_periodic_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    molecule = Configuration(
        positions=rng.normal(size=(5, 3)),
        types=[0, 1, 1, 0, 2],
        energy=-12.345678901234567,
        forces=rng.normal(size=(5, 3)) / 3,
    )
    unlabelled = Configuration(positions=rng.normal(size=(3, 3)), types=[0, 0, 0])
    ds = Dataset((molecule, unlabelled))
    path = tmp_path / "mol.cfg"
    write_cfg(ds, path)
    text = path.read_text()
    assert "Supercell" not in text and text.count("BEGIN_CFG") == 2 and text.count("Energy") == 1
    back = read_cfg(path)
    assert back[0].cell is None and back[0].virial is None and back[1].forces is None and back[1].energy is None
    assert back[0].energy == -12.345678901234567
    assert_same_dataset(ds, back)


def test_full_precision_and_negative_zero():
    c = Configuration(
        positions=[[0.1 + 0.2, -0.0, 1e-300]], types=[0], cell=np.eye(3) * 1 / 3, energy=1 / 3,
        forces=[[-0.0, 2.0 / 3, 1e17 / 7]], virial=np.arange(6) / 7.0,
    )  # fmt: skip
    (back,) = parse_cfg(format_cfg(Dataset((c,))))
    assert_same_config(c, back)
    assert np.signbit(back.positions[0, 1]) and back.positions[0, 0] == 0.30000000000000004


def test_species_option():
    ds = parse_cfg(REORDERED, species=["Nb", "Mo"])
    assert ds.species == ("Nb", "Mo")
    with pytest.raises(FileFormatError, match="type 1 has no element"):
        parse_cfg(REORDERED, species="Nb")


# --------------------------------------------------------------------------- malformed files


def line_of(text: str, fragment: str) -> int:
    for k, line in enumerate(text.splitlines(), 1):
        if fragment in line:
            return k
    raise AssertionError(fragment)


def read_broken(tmp_path, text):
    path = tmp_path / "broken.cfg"
    path.write_text(text)
    with pytest.raises(FileFormatError) as excinfo:
        read_cfg(path)
    err = excinfo.value
    assert err.path == str(path)
    assert str(err).startswith(f"{path}, line {err.line}, field {err.field!r}: ")
    return err


def test_error_type_not_integer(tmp_path):
    text = REORDERED.replace("  -0.3 0  2", "  -0.3 Nb  2")
    err = read_broken(tmp_path, text)
    assert (err.line, err.field) == (line_of(text, "-0.3 Nb"), "type")
    assert "expected an integer, got 'Nb'" in str(err)


def test_error_fewer_columns_than_header(tmp_path):
    text = REORDERED.replace(" 1.5  0.1\n", " 1.5\n")
    err = read_broken(tmp_path, text)
    assert (err.line, err.field) == (9, "fx")  # the first atom line
    assert "8 values but the AtomData header names 9 columns" in str(err)


def test_error_size_disagrees_with_atom_lines(tmp_path):
    text = REORDERED.replace(" Size\n  2\n", " Size\n  3\n")
    err = read_broken(tmp_path, text)
    assert (err.line, err.field) == (line_of(text, "AtomData"), "Size")
    assert "Size is 3 but AtomData has 2 atom lines" in str(err)
    text = REORDERED.replace(" Size\n  2\n", " Size\n  1\n")
    err = read_broken(tmp_path, text)
    assert (err.line, err.field) == (10, "Size")  # the first surplus atom line


def test_error_missing_end_cfg(tmp_path):
    text = REORDERED.replace("END_CFG\n", "") + "\n" + REORDERED
    err = read_broken(tmp_path, text)
    assert err.field == "END_CFG" and err.line == line_of(text, "Feature   mindist") + 2
    assert "configuration starting on line 1 has no END_CFG" in str(err)
    err = read_broken(tmp_path, REORDERED.replace("END_CFG\n", ""))
    assert err.field == "END_CFG" and "has no END_CFG" in str(err)


def test_error_two_row_supercell_and_bad_numbers(tmp_path):
    text = REORDERED.replace("  0.5 0.0 5.0\n", "")
    err = read_broken(tmp_path, text)
    assert (err.line, err.field) == (4, "Supercell") and "only 3D-periodic" in str(err)

    text = REORDERED.replace("  -7.5", "  -7.5eV")
    err = read_broken(tmp_path, text)
    assert (err.line, err.field) == (line_of(text, "-7.5eV"), "Energy")

    text = REORDERED.replace("0.6 0.5 0.4", "0.6 oops 0.4")
    err = read_broken(tmp_path, text)
    assert (err.line, err.field) == (line_of(text, "oops"), "xz")

    text = REORDERED.replace("cartes_y", "cartes_w")
    err = read_broken(tmp_path, text)
    assert (err.line, err.field) == (8, "AtomData") and "cartes_x/y/z" in str(err)

    text = "garbage\n" + REORDERED
    err = read_broken(tmp_path, text)
    assert (err.line, err.field) == (1, "BEGIN_CFG")


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_keeps_old_cfg_when_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "data.cfg"
    ds = parse_cfg(REORDERED)
    write_cfg(ds, path)
    original = path.read_text()
    import mlipress.io.atomic as atomic

    real_fdopen = atomic.os.fdopen

    class Exploding:
        """A file object that dies after the first chunk, like a full disk."""

        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            self.fh.write(data[:10])
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(atomic.os, "fdopen", lambda *a, **k: Exploding(real_fdopen(*a, **k)))
    with pytest.raises(OSError, match="No space"):
        write_cfg(Dataset(ds.configurations * 3), path)
    assert path.read_text() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.cfg"]
    monkeypatch.undo()
    atomic_write(path, b"bytes too\n")
    assert path.read_bytes() == b"bytes too\n"
