"""The command line end to end: init, evaluate, errors (and their error messages)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlipress.cli import main
from mlipress.io import read_dataset
from mlipress.io.mtp import read_mtp


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("init", "evaluate", "errors", "demo", "train"):
        assert command in out


def test_init_writes_mlip_counts(tmp_path, capsys):
    out = tmp_path / "untrained.mtp"
    assert main(["init", "--level", "16", "--species", "Nb,Mo,Ta,W", "--cutoff", "5.0", "-o", str(out)]) == 0
    mtp = read_mtp(out)
    # REFERENCE.md section 1: level 16 has 4 radial functions, 130 basic moments, 92 basis functions.
    assert (mtp.species_count, mtp.radial_funcs_count, len(mtp.moments.basic), mtp.moments.scalar_count) == (4, 4, 130, 92)
    assert mtp.moments.count == 350 and len(mtp.moments.times) == 969
    assert not mtp.trained
    assert "level 16" in capsys.readouterr().out


def test_init_rejects_odd_level(tmp_path, capsys):
    code = main(["init", "--level", "7", "--species", "Cu", "-o", str(tmp_path / "x.mtp")])
    assert code == 2
    assert "level" in capsys.readouterr().err
    assert not (tmp_path / "x.mtp").exists()


def test_evaluate_and_errors_on_reference(shared_data, tmp_path, capsys):
    cubic = shared_data / "mlip-reference" / "cubic"
    pot = cubic / "10" / "pot.mtp"
    out_cfg = tmp_path / "pred.cfg"
    assert main(["evaluate", str(pot), str(cubic / "train101.cfg"), str(out_cfg)]) == 0
    pred = read_dataset(out_cfg)
    ref = read_dataset(cubic / "10" / "efs.mlip2.cfg")
    assert len(pred) == 101
    for p, r in zip(pred, ref):
        assert abs(p.energy - r.energy) < 1e-9
        assert np.abs(p.forces - r.forces).max() < 1.01e-6

    # extxyz output needs element names
    out_xyz = tmp_path / "pred.xyz"
    assert main(["evaluate", str(pot), str(cubic / "train101.cfg"), str(out_xyz), "--species", "Cu"]) == 0
    back = read_dataset(out_xyz, species="Cu")
    assert back[3].energy == pytest.approx(pred[3].energy, abs=1e-8)

    report_path = tmp_path / "errors.json"
    capsys.readouterr()
    assert main(["errors", str(pot), str(cubic / "10" / "efs.mlip2.cfg"), "--json", str(report_path)]) == 0
    text = capsys.readouterr().out
    assert "per atom vector" in text and "per component" in text
    report = json.loads(report_path.read_text())
    # Predictions against MLIP's own predictions: zero up to the cfg text precision.
    assert report["energy_per_atom_eV"]["max"] < 1e-10
    assert report["forces_eV_per_A"]["max"] < 1.01e-6


def test_errors_reports_bad_file_with_line(tmp_path, shared_data, capsys):
    bad = tmp_path / "bad.cfg"
    bad.write_text("BEGIN_CFG\n Size\n    1\n AtomData:  id type cartes_x cartes_y cartes_z\n 1 x 0 0 0\nEND_CFG\n")
    code = main(["errors", str(shared_data / "mlip-reference" / "cubic" / "10" / "pot.mtp"), str(bad)])
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.cfg" in err and "line 5" in err and "type" in err


def test_species_mismatch_is_explained(tmp_path, shared_data, capsys):
    quaternary = shared_data / "mlip-reference" / "nbmotaw-quaternary"
    code = main(["errors", str(shared_data / "mlip-reference" / "cubic" / "10" / "pot.mtp"), str(quaternary / "mixed.cfg")])
    assert code == 2
    assert "species" in capsys.readouterr().err
