"""Tests of ``mlipress train``: flags, TOML settings, readable output, clear errors."""

from __future__ import annotations

import json

import pytest

from mlipress.cli import main
from mlipress.examples import make_example_dataset
from mlipress.io import write_dataset
from mlipress.io.mtp import read_mtp

FAST = ["--max-iter", "4", "--pretrain-iters", "2", "--log-every", "2", "--linear-solve-every", "2"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    ds, species = make_example_dataset(6, seed=2)
    path = tmp_path_factory.mktemp("data") / "train.cfg"
    write_dataset(ds, path, species=species)
    return path


def test_toml_settings_with_flag_override(data_file, tmp_path, capsys):
    toml = tmp_path / "settings.toml"
    toml.write_text(
        f'level = 4\ntrain = "{data_file}"\nspecies = ["Cu", "Ag", "Au"]\nvalid-fraction = 0.34\n'
        f'max_iter = 1000\npretrain_iters = 2\nlog_every = 2\nlinear_solve_every = 2\n'
        f'output = "pot.mtp"\nlog = "train.jsonl"\n'
    )
    assert main(["train", str(toml), "--max-iter", "3"]) == 0
    out = capsys.readouterr().out
    assert "validation errors" in out and "meV/atom" in out
    pot = tmp_path / "pot.mtp"  # relative paths in the TOML are relative to the file
    mtp = read_mtp(pot)
    assert mtp.trained and mtp.species_count == 3
    records = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    # --max-iter counts every iteration, the 2 pre-training ones of the TOML file included
    assert max(r["iteration"] for r in records if r["event"] == "progress") == 3
    assert main(["evaluate", str(pot), str(data_file), str(tmp_path / "pred.cfg")]) == 0


@pytest.mark.parametrize("scheme", [[], ["--no-variable-projection"],
                                    ["--no-variable-projection", "--pretrain-iters", "3"]])
def test_max_iter_is_the_number_of_iterations(data_file, tmp_path, capsys, scheme):
    log = tmp_path / "train.jsonl"
    assert main(["train", "--level", "4", "--train", str(data_file), "--species", "Cu,Ag,Au", "--max-iter", "5",
                 "--ftol", "0", "--gtol", "0", "--log-every", "1", "--log", str(log), *scheme,
                 "-o", str(tmp_path / "t.mtp")]) == 0
    out = capsys.readouterr().out
    iters = [r["iteration"] for r in map(json.loads, log.read_text().splitlines()) if r["event"] == "progress"]
    assert iters == [1, 2, 3, 4, 5]
    # the first progress line says what will run: MLIP's scheme pre-trains (75 by default,
    # capped by --max-iter), variable projection does not
    n_pre = 3 if "3" in scheme else (5 if scheme else 0)
    expected = "at most 5 iterations" + (f" ({n_pre} pre-training, then {5 - n_pre} main)" if n_pre else "")
    assert expected + "\n" in out


def test_flags_write_readable_mtp(data_file, tmp_path):
    out = tmp_path / "t.mtp"
    assert main(["train", "--level", "4", "--train", str(data_file), "--species", "Cu,Ag,Au",
                 "--force-weight", "0.02", "--seed", "3", *FAST, "-o", str(out)]) == 0
    assert read_mtp(out).trained


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--level", "4", "-o", "x.mtp"], "--train"),
        (["--level", "4", "--init", "a.mtp", "--train", "{data}", "-o", "x.mtp"], "exactly one"),
        (["--level", "4", "--train", "{data}", "-o", "x.mtp", "--weighting", "atoms"], "weighting"),
        (["--level", "4", "--train", "{data}", "-o", "x.mtp", "--max-iter", "-3"], "max_iter"),
    ],
)
def test_bad_settings_give_clear_errors(data_file, tmp_path, capsys, argv, message):
    argv = [a.replace("{data}", str(data_file)) for a in argv]
    assert main(["train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_unknown_toml_key(tmp_path, capsys):
    toml = tmp_path / "s.toml"
    toml.write_text("levle = 4\n")
    assert main(["train", str(toml)]) == 2
    assert "unknown setting 'levle'" in capsys.readouterr().err


@pytest.mark.slow
def test_ensemble_writes_members_and_summary(data_file, tmp_path):
    out = tmp_path / "e.mtp"
    assert main(["train", "--level", "4", "--train", str(data_file), "--valid-fraction", "0.34",
                 "--ensemble", "2", *FAST, "-o", str(out)]) == 0
    assert read_mtp(tmp_path / "e.0.mtp").trained and read_mtp(tmp_path / "e.1.mtp").trained
    summary = json.loads((tmp_path / "e.summary.json").read_text())
    assert "mean" in summary["validation"]["energy_rmse_meV_per_atom"]
