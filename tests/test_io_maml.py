"""Reading mlearn/maml JSON datasets, including the kbar stress -> eV virial conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlipress.io import FileFormatError, read_dataset
from mlipress.io.cfg import read_cfg, write_cfg
from mlipress.io.maml import read_maml_json

KBAR = 1602.1766208  # kbar per eV/A^3


def record(elements, lattice, xyz, energy=None, forces=None, stress=None, key="stress", group="G"):
    outputs = {}
    if energy is not None:
        outputs["energy"] = energy
    if forces is not None:
        outputs["forces"] = forces
    if stress is not None:
        outputs[key] = stress
    return {
        "group": group,
        "structure": {
            "lattice": {"matrix": lattice},
            "sites": [{"species": [{"element": e, "occu": 1}], "xyz": p} for e, p in zip(elements, xyz)],
        },
        "outputs": outputs,
    }


@pytest.fixture
def synthetic(tmp_path):
    """Two hand-made records: an orthorhombic 2x3x4 cell (V = 24) and an unlabelled one."""
    records = [
        record(
            ["W", "Nb"], [[2, 0, 0], [0, 3, 0], [0, 0, 4]], [[0, 0, 0], [1, 1.5, 2]], energy=-20.5,
            forces=[[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]], stress=[10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        ),
        record(["Nb"], [[3, 0, 0], [0, 3, 0], [0, 0, 3]], [[0.5, 0.5, 0.5]], key="virial_stress", group=None),
    ]  # fmt: skip
    path = tmp_path / "set.json"
    path.write_text(json.dumps(records))
    return path


def test_stress_conversion_by_hand(synthetic):
    ds = read_maml_json(synthetic)
    assert ds.species == ("Nb", "W")  # ordered by atomic number: Nb 41 < W 74
    assert ds.names == ("G", "")
    c = ds[0]
    assert c.types.tolist() == [1, 0] and c.energy == -20.5 and c.volume == pytest.approx(24.0, rel=1e-15)
    assert c.forces.tolist() == [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]]
    # VASP order xx yy zz xy yz zx = 10 20 30 40 50 60 (kbar, = -sigma); virial = value * V / 1602.18
    f = 24.0 / 1602.1766208
    expected = np.array([[10 * f, 40 * f, 60 * f], [40 * f, 20 * f, 50 * f], [60 * f, 50 * f, 30 * f]])
    assert np.allclose(c.virial, expected, rtol=1e-14, atol=0)
    assert c.virial[0, 0] == pytest.approx(0.149796219, rel=1e-8)
    # the unlabelled record has no labels at all
    assert ds[1].energy is None and ds[1].forces is None and ds[1].virial is None


def test_species_map_given_and_missing(synthetic):
    ds = read_maml_json(synthetic, species="W,Nb,Mo")
    assert ds.species == ("W", "Nb", "Mo") and ds[0].types.tolist() == [0, 1]
    with pytest.raises(FileFormatError) as excinfo:
        read_maml_json(synthetic, species=("Nb",))
    message = str(excinfo.value)
    assert str(synthetic) in message and "record 0" in message and "'W'" in message
    assert excinfo.value.field == "element"


def test_malformed_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"structure": {"lattice": {"matrix": [[1,0,0],[0,1,0],[0,0,1]]}}}]')
    with pytest.raises(FileFormatError, match=r"bad.json, field 'structure.sites': record 0 has no"):
        read_maml_json(path)
    path.write_text("[\n{,\n")
    with pytest.raises(FileFormatError, match=r"bad.json, line 2: invalid JSON"):
        read_maml_json(path)


def test_nbmo_record_matches_mlip_cfg_and_by_hand(shared_data):
    ds = read_maml_json(shared_data / "nbmotaw/NbMo_Test.json", species="Nb,Mo,Ta,W")
    assert len(ds) == 40 and set(ds.names) == {"Nb-Mo"}
    raw = json.loads((shared_data / "nbmotaw/NbMo_Test.json").read_text())[0]
    assert raw["outputs"]["stress"][0] == -142.40647645
    c = ds[0]
    volume = 3.322565 * 6.64513 * 6.64513  # the cell is a permuted orthorhombic box
    assert c.volume == pytest.approx(volume, rel=1e-14)
    # virial = -sigma V = (VASP value) * V / 1602.1766208: negative for a stretched cell
    assert c.virial[0, 0] == pytest.approx(-142.40647645 * volume / KBAR, rel=1e-14)
    assert c.virial[0, 0] == pytest.approx(-13.04066684, abs=5e-9)
    assert c.energy == -83.82005651
    # The first 40 configurations of MLIP's mixed.cfg are this file, converted by the reference.
    mixed = read_cfg(shared_data / "mlip-reference/nbmotaw-quaternary/mixed.cfg")
    for a, b in zip(ds, mixed[:40]):
        assert a.energy == b.energy
        assert np.array_equal(a.types, b.types)
        assert np.allclose(a.positions, b.positions, rtol=0, atol=1e-12)
        assert np.allclose(a.forces, b.forces, rtol=0, atol=1e-12)
        assert np.allclose(a.virial, b.virial, rtol=0, atol=1e-8)  # cfg holds 8 decimals


def test_off_diagonal_reordering_on_real_record(shared_data):
    raw = json.loads((shared_data / "nbmotaw/Mo_Test.json").read_text())[0]
    xx, yy, zz, xy, yz, zx = raw["outputs"]["stress"]
    (c,) = read_maml_json(shared_data / "nbmotaw/Mo_Test.json")[:1]
    scale = c.volume / KBAR
    assert c.virial[0, 1] == pytest.approx(xy * scale, rel=1e-14)
    assert c.virial[1, 2] == pytest.approx(yz * scale, rel=1e-14)
    assert c.virial[0, 2] == pytest.approx(zx * scale, rel=1e-14)
    assert c.virial[1, 2] == pytest.approx(-1.44722738 * 858.1479526647526 / KBAR, rel=1e-12)


def test_mlearn_virial_stress_key_and_cfg_round_trip(shared_data, tmp_path):
    ds = read_dataset(shared_data / "mlearn/Mo/test.json")
    assert ds.species == ("Mo",) and len(ds) == 23 and ds.names[0] == "Vacancy"
    assert ds[0].natoms == 53 and ds[0].energy == -539.80255298
    raw = json.loads((shared_data / "mlearn/Mo/test.json").read_text())[0]
    assert ds[0].virial[0, 0] == pytest.approx(raw["outputs"]["virial_stress"][0] * ds[0].volume / KBAR, rel=1e-14)
    assert all(c.virial is not None and c.forces is not None for c in ds)
    path = tmp_path / "mo.cfg"
    write_cfg(ds, path)
    back = read_cfg(path, species=ds.species)
    for a, b in zip(ds, back):
        assert a.energy == b.energy
        for name in ("positions", "forces", "virial", "cell"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
