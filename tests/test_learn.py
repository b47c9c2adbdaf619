"""The active-learning loop on EMT copper at tiny size: it grows the training set with
configurations MD extrapolated on, converges, logs every iteration and resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mlipress.active import build_active_set, grade
from mlipress.active.learn import LearnSettings, learn, load_settings, resolve_calculator
from mlipress.io import from_atoms
from mlipress.io.cfg import read_cfg

SETTINGS = LearnSettings(species=("Cu",), level=6, cutoff=4.5, min_dist=2.0, fit_iters=15,
                         temperatures=(600.0,), md_steps=20, grade_mode="nbh", max_iterations=6, max_select=4)


def _initial(n=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in np.linspace(0.99, 1.01, n):
        atoms = bulk("Cu", "fcc", a=3.6 * s, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        out.append(from_atoms(atoms, ("Cu",)))
    return out


def _start():
    return [bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))]


class _Interrupt(Exception):
    pass


def test_learn_converges_logs_and_resumes(tmp_path, monkeypatch):
    import mlipress.active.learn as module

    # interrupted in the second iteration's MD (after its fit): resume from the workdir
    calls = {"n": 0}
    real = module._explore

    def explore_then_fail(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise _Interrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "_explore", explore_then_fail)
    with pytest.raises(_Interrupt):
        learn(tmp_path, _initial(), _start(), EMT, SETTINGS)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["iteration"] == 1 and state["fitted"] and state["train_size"] > 3
    monkeypatch.setattr(module, "_explore", real)
    result = learn(tmp_path, [], _start(), EMT, SETTINGS)

    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert result.converged and log[-1]["extrapolative"] == 0 and log[-1]["selected"] == 0
    assert [r["iteration"] for r in log] == list(range(len(log))) and len(log) >= 2
    sizes = [r["train_size"] for r in log]
    assert sizes[0] == 3 and all(b == a + r["selected"] for a, b, r in zip(sizes, sizes[1:], log))
    assert all(0 < r["selected"] <= 4 for r in log[:-1])
    train = read_cfg(tmp_path / "train.cfg").configurations
    assert len(train) == sizes[-1] == len(result.train)
    # the added configurations carry EMT labels
    atoms = result.train.configurations[-1]
    ref = EMT()
    from mlipress.io import to_atoms

    a = to_atoms(atoms, ("Cu",))
    a.calc = ref
    assert abs(a.get_potential_energy() - atoms.energy) < 1e-10
    # every configuration of the final MD round is interpolative for the final potential
    assert log[-1]["max_grade"] <= SETTINGS.grade_threshold
    # training configurations grade <= 1 against the final active set
    active = build_active_set(result.mtp, result.params, train, SETTINGS.grade_settings)
    assert max(g.max() for g in grade(result.mtp, result.params, active, train, SETTINGS.grade_settings)) <= 1.0000001
    # a converged workdir returns at once
    again = learn(tmp_path, [], _start(), EMT, SETTINGS)
    assert again.converged and len(again.log) == len(log)
    with pytest.raises(ValueError, match="other settings"):
        learn(tmp_path, [], _start(), EMT, LearnSettings(species=("Cu",), level=8))


def test_learn_settings_file_errors(tmp_path):
    assert resolve_calculator("ase.calculators.emt:EMT") is EMT
    with pytest.raises(ValueError, match="module:function"):
        resolve_calculator("EMT")
    with pytest.raises(ValueError, match="No module"):
        resolve_calculator("no_such_module_xyz:EMT")
    path = tmp_path / "al.toml"
    path.write_text('workdir = "w"\ntrain = "t.cfg"\nstructures = "s.xyz"\ncalculator = "ase.calculators.emt:EMT"\n'
                    '[learn]\nspecies = ["Cu"]\nlevle = 6\n')
    with pytest.raises(ValueError, match="unknown key.*levle"):
        load_settings(path)
    path.write_text('workdir = "w"\n')
    with pytest.raises(ValueError, match="missing key"):
        load_settings(path)
    from mlipress.data import Dataset
    from mlipress.io.cfg import write_cfg

    write_cfg(Dataset(tuple(_initial(2)), ("Cu",)), tmp_path / "t.cfg")
    _start()[0].write(tmp_path / "s.xyz")
    path.write_text('workdir = "w"\ntrain = "t.cfg"\nstructures = "s.xyz"\ncalculator = "ase.calculators.emt:EMT"\n'
                    '[learn]\nspecies = ["Cu"]\nlevel = 6\ntemperatures = [300, 600]\n')
    kw = load_settings(path)
    assert kw["workdir"] == tmp_path / "w" and kw["calculator"] is EMT and len(kw["train"]) == 2
    assert kw["settings"].temperatures == (300.0, 600.0) and len(kw["structures"][0]) == 32
    with pytest.raises(ValueError, match="grade_break"):
        LearnSettings(species=("Cu",), grade_threshold=3.0, grade_break=2.0)


def test_learn_resumes_inside_an_interrupted_fit(tmp_path, monkeypatch):
    """Killed right after the first fit checkpoint (iteration 10 of 15), the loop resumes the
    fit from it and ends with the potential of an uninterrupted run, bit for bit (MD left out:
    a round without extrapolation)."""
    import dataclasses

    import mlipress.active.learn as module
    import mlipress.fit.checkpoint as ckpt

    one = dataclasses.replace(SETTINGS, max_iterations=1)
    monkeypatch.setattr(module, "_explore", lambda *args, **kwargs: ([], []))
    learn(tmp_path / "straight", _initial(), _start(), EMT, one)
    real_save, real_load = ckpt.save, ckpt.load

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise _Interrupt

    monkeypatch.setattr(ckpt, "save", save_then_die)
    with pytest.raises(_Interrupt):
        learn(tmp_path / "killed", _initial(), _start(), EMT, one)
    assert (tmp_path / "killed" / "fit0.ckpt.npz").exists() and not (tmp_path / "killed" / "pot.mtp").exists()
    loaded = []

    def spy_load(*args, **kwargs):
        header, state = real_load(*args, **kwargs)
        loaded.append(header["iteration"])
        return header, state

    monkeypatch.setattr(ckpt, "save", real_save)
    monkeypatch.setattr(ckpt, "load", spy_load)
    learn(tmp_path / "killed", [], _start(), EMT, one)
    assert loaded == [10]
    assert (tmp_path / "killed" / "pot.mtp").read_text() == (tmp_path / "straight" / "pot.mtp").read_text()
    assert not (tmp_path / "killed" / "fit0.ckpt.npz").exists()
