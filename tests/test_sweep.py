"""Rank sweeps (mlipress.compress.sweep), the Figure-2 plot, ``mlipress sweep`` and
``mlipress train --radial`` on a tiny problem (level 6, Cu-Ag-Au example data)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from mlipress.models.mtp.basis import untrained_mtp
from mlipress.compress import read_compressed, sidecar_path
from mlipress.compress.plot import plot_sweep
from mlipress.compress.sweep import aggregate, choose_ranks, make_spec, sweep
from mlipress.examples import make_example_dataset, split
from mlipress.models.layers import MatrixFactorized, dense_param_count, mf_param_count, tt_param_count
from mlipress.fit import TrainSettings

jax.config.update("jax_enable_x64", True)

SETTINGS = TrainSettings(max_iter=3, log_every=0, linear_solve_every=2, scaling_refine=1,
                         scaling_grid=(-1.0, 0.0), ftol=0.0, pretrain_iters=0)


@pytest.fixture(scope="module")
def problem():
    data, species = make_example_dataset(n_configs=10)
    train, valid = split(data, 0.7, seed=0)
    mtp = untrained_mtp(6, len(species), 1.5, 5.0)
    return mtp, train, valid, species


@pytest.fixture(scope="module")
def rows(problem):
    mtp, train, valid, _ = problem
    return sweep(mtp, train, valid, "mf", [1, 2], 2, SETTINGS)


def test_sweep_rows(problem, rows):
    mtp, *_ = problem
    shape = mtp.radial_shape
    base = dense_param_count(shape)
    assert [(r["rank"], r["seed"]) for r in rows] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    for r in rows:
        assert r["kind"] == "mf" and r["spec"] == f"mf:{r['rank']}"
        assert r["radial_params"] == mf_param_count(shape, r["rank"])
        assert r["base_radial_params"] == base
        assert r["compression"] == pytest.approx(1.0 - r["radial_params"] / base)
        for key in ("valid_loss", "energy_rmse_meV_per_atom", "force_rmse_eV_per_A", "train_loss"):
            assert np.isfinite(r[key]) and r[key] >= 0.0
    # different seeds -> different random starts -> different fits
    assert rows[0]["valid_loss"] != rows[1]["valid_loss"]
    agg = aggregate(rows)
    assert [e["rank"] for e in agg] == [1, 2]
    vals = [r["valid_loss"] for r in rows[:2]]
    assert agg[0]["valid_loss"]["mean"] == pytest.approx(np.mean(vals))
    assert agg[0]["valid_loss"]["std"] == pytest.approx(np.std(vals, ddof=1))


def test_make_spec_tt_counts(problem):
    mtp, *_ = problem
    spec = make_spec("tt", 2, mtp.radial_shape)
    assert spec.kind == "tt" and spec.rank == (2, 2, 2)
    assert tt_param_count(mtp.radial_shape, spec.rank) < dense_param_count(mtp.radial_shape)
    assert make_spec("dense", None).kind == "dense"


def _row(spec, n, seed, loss, base=100, kind="mf"):
    return {"kind": kind, "spec": spec, "rank": None if kind == "dense" else int(spec.split(":")[1]), "seed": seed,
            "radial_params": n, "base_radial_params": base, "compression": 1 - n / base, "valid_loss": loss,
            "energy_rmse_meV_per_atom": 1.0, "force_rmse_eV_per_A": 0.1, "stress_rmse_GPa": None, "train_loss": loss}


def test_aggregate_and_choose_ranks_threshold():
    rows = []
    # 81 params: 19% compression (not eligible, lowest loss); 80: exactly 20% (eligible)
    for spec, n, losses in (("mf:9", 81, (0.5, 0.7)), ("mf:8", 80, (1.0, 1.2)), ("mf:5", 50, (2.0, 2.0)),
                            ("mf:3", 30, (3.0, 5.0)), ("mf:6", 52, (1.5, 1.5))):
        rows += [_row(spec, n, s, v) for s, v in enumerate(losses)]
    rows += [_row("dense", 100, s, v, kind="dense") for s, v in enumerate((0.9, 1.1))]
    agg = aggregate(rows)
    by = {e["spec"]: e for e in agg}
    assert by["mf:3"]["valid_loss"]["mean"] == 4.0
    assert by["mf:3"]["valid_loss"]["std"] == pytest.approx(np.sqrt(2.0))
    assert by["mf:5"]["valid_loss"]["std"] == 0.0
    assert by["mf:8"]["compression"] == pytest.approx(0.2)
    chosen = choose_ranks(agg, 100)
    assert chosen["optimal"]["spec"] == "mf:8"  # 20% exactly counts; 19% does not
    assert chosen["half"]["spec"] == "mf:5"  # |2*50-100| = 0
    # base 101: 5 * 81 = 405 > 404 (81 still not eligible), 5 * 80 = 400 <= 404
    assert choose_ranks(agg, 101)["optimal"]["spec"] == "mf:8"
    # nothing eligible
    assert choose_ranks([e for e in agg if e["spec"] == "mf:9"], 100)["optimal"] is None
    # half: tie between 48 and 52 for base 100 goes to the smaller count
    tie = aggregate([_row("mf:4", 48, 0, 1.0), _row("mf:6", 52, 0, 0.5)])
    assert choose_ranks(tie, 100)["half"]["spec"] == "mf:4"
    # optimal: loss ties go to fewer parameters
    tie = aggregate([_row("mf:4", 40, 0, 1.0), _row("mf:6", 60, 0, 1.0)])
    assert choose_ranks(tie, 100)["optimal"]["spec"] == "mf:4"


def test_plot_written(tmp_path, rows):
    agg = aggregate(rows)
    chosen = choose_ranks(agg, rows[0]["base_radial_params"])
    path = plot_sweep(agg, tmp_path / "sweep.png", base={"mean": 1.0, "std": 0.1}, chosen=chosen, title="t")
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_sweep_and_train_radial(tmp_path, problem, capsys):
    from mlipress.cli import main
    from mlipress.io import write_dataset

    mtp, train, valid, species = problem
    tr, va = tmp_path / "train.cfg", tmp_path / "valid.cfg"
    write_dataset(train, tr, species=species)
    write_dataset(valid, va, species=species)
    sp = ",".join(species)
    out_json, out_png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    rc = main(["sweep", "--level", "6", "--species", sp, "--train", str(tr), "--valid", str(va), "--kind", "mf",
               "--ranks", "2", "--seeds", "1", "--max-iter", "2", "-o", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "<- " in text and "~50%" in text
    doc = json.loads(out_json.read_text())
    assert len(doc["rows"]) == 1 and doc["half"] == "mf:2" and doc["optimal"] == "mf:2"
    assert out_png.stat().st_size > 1000

    out = tmp_path / "mf2.mtp"
    rc = main(["train", "--level", "6", "--species", sp, "--train", str(tr), "--valid", str(va), "--radial", "mf:2",
               "--max-iter", "2", "--pretrain-iters", "0", "--log-every", "0", "-o", str(out)])
    assert rc == 0
    assert out.exists() and sidecar_path(out).exists()
    _, params, header = read_compressed(out)
    assert header["spec"] == "mf:2"
    assert isinstance(params.radial, MatrixFactorized) and params.radial.rank == 2
    assert "compression" in capsys.readouterr().out
