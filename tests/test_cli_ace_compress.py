"""``mlipress compress`` and ``mlipress sweep`` on ACE ``.yaml`` potentials with the
Riemannian (``rmf:R``) and rank-augmenting (``mfra:RMAX``) radial specs, end to end through the
command line: the written files read back with :func:`mlipress.io.read_potential` and
:func:`mlipress.compress.read_compressed`, with the rank and radial parameter count the spec
asks for, and finite losses. Tiny on purpose (2 species, body order 3, 6 EMT configurations, a
few iterations) so that they stay in the default run; the MF path is in tests/test_ace.py
(slow). Body order 3 is the lowest whose energy depends on the radial tensor at all: rank-1
B-functions use the g_k directly (as in pacemaker), so at body order 2 the gradient is 0.

Sizes: 2 species -> 3 unordered pairs, each pair matrix N_k x N_rad (L+1) = 8 x 6 (N_rad 3,
L 1; dense 144 radial parameters); rank r costs 3 r (8 + 6) = 42 r. MFRA starts at rank 2 (r_min) and grows by
2 up to RMAX: ``mfra:3`` ends at rank 3 (126 parameters) once it has augmented."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import mlipress  # noqa: F401  (float64)
from mlipress.cli import main
from mlipress.compress import read_compressed
from mlipress.io import read_potential
from mlipress.models.ace import ACE, PairMatrixFactorized

SPECIES = ("Cu", "Ag")
DENSE, PER_RANK = 144, 42


def _emt_dataset(n: int, seed: int):
    """``n`` rattled, strained 8-atom Cu-Ag fcc cells labelled by ASE's EMT."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from mlipress.data import Dataset
    from mlipress.io import from_atoms

    rng = np.random.default_rng(seed)
    configs = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 1, 1))
        atoms.symbols[rng.permutation(8)[: 2 + i % 3]] = "Ag"
        atoms.set_cell(atoms.cell * (1 + 0.02 * rng.normal(size=(3, 3))), scale_atoms=True)
        atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        configs.append(from_atoms(atoms, SPECIES))
    return Dataset(configs)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Training / validation data, an untrained ACE from ``mlipress init --model ace`` and a
    "trained" one: the same with random coefficients, written from Python (a real ``train``
    would only add a compilation of the dense loss to the run time)."""
    import jax.numpy as jnp

    from mlipress.io import write_dataset

    d = tmp_path_factory.mktemp("ace_cli")
    train, valid = d / "train.xyz", d / "valid.xyz"
    write_dataset(_emt_dataset(4, seed=0), train, species=SPECIES)
    write_dataset(_emt_dataset(2, seed=1), valid, species=SPECIES)
    init, trained = d / "init.yaml", d / "trained.yaml"
    assert main(["init", "--model", "ace", "--species", ",".join(SPECIES), "--body-order", "3", "--nk", "8",
                 "--nrad", "3", "--lmax", "1", "--cutoff", "4.5", "-o", str(init)]) == 0
    ace = read_potential(init)
    assert not ace.trained and math.prod(ace.radial_shape) == DENSE
    p = ace.init(0)
    rng = np.random.default_rng(2)
    p = p.replace(species=jnp.asarray(rng.normal(size=2)), coeffs=jnp.asarray(0.01 * rng.normal(size=p.coeffs.shape)))
    ace.with_params(p).write(trained)
    assert read_potential(trained).trained
    return {"train": train, "valid": valid, "init": init, "trained": trained}


def _check_compressed(path, spec: str, rank: int):
    """The dense .yaml reads as a trained ACE; the factors have ``rank`` in every pair, and
    their product is what the dense file holds (what python-ace / LAMMPS evaluate)."""
    dense = read_potential(path)
    assert isinstance(dense, ACE) and dense.trained
    model, params, header = read_compressed(path)
    assert isinstance(model, ACE) and isinstance(params.radial, PairMatrixFactorized)
    assert header["spec"] == spec and header["kind"] == "mf"  # R-MF and MFRA store MF factors
    assert params.radial.rank == rank and params.radial.num_params == PER_RANK * rank
    C = np.asarray(params.radial.dense())
    assert C.shape == (3, 8, 6) and np.all(np.linalg.matrix_rank(C, tol=1e-10) == rank)
    np.testing.assert_allclose(np.asarray(dense.params().radial.dense()), C, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("spec, rank", [("rmf:1", 1), ("mfra:3", 3)])
def test_compress_an_ace_with_rmf_and_mfra(files, tmp_path, capsys, spec, rank):
    out = tmp_path / "compressed.yaml"
    capsys.readouterr()
    argv = ["compress", str(files["trained"]), "--train", str(files["train"]), "--valid", str(files["valid"]),
            "--radial", spec, "--max-iter", "3", "--log-every", "0", "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"radial parameters: base {DENSE}, compressed {PER_RANK * rank} " in text
    before, after = (float(line.split("E ")[1].split()[0]) for line in text.splitlines() if "errors " in line)
    assert math.isfinite(before) and math.isfinite(after) and after > 0
    _check_compressed(out, spec, rank)


@pytest.mark.parametrize("kind, ranks, final", [("rmf", "1,2", [1, 2]), ("mfra", "3", [3])])
def test_sweep_an_ace_with_rmf_and_mfra(files, tmp_path, kind, ranks, final):
    table = tmp_path / "sweep.json"
    assert main(["sweep", "--init", str(files["init"]), "--train", str(files["train"]), "--valid", str(files["valid"]),
                 "--kind", kind, "--ranks", ranks, "--seeds", "1", "--max-iter", "2", "-o", str(table)]) == 0
    doc = json.loads(table.read_text())
    rows = sorted(doc["rows"], key=lambda r: r["rank"])
    assert [r["kind"] for r in rows] == [kind] * len(final) and [r["rank"] for r in rows] == final
    assert [r["radial_params"] for r in rows] == [PER_RANK * r for r in final]
    assert all(r["base_radial_params"] == DENSE for r in rows)
    assert all(math.isfinite(r["valid_loss"]) and r["valid_loss"] > 0 for r in rows)
    if kind == "mfra":
        assert [r["final_rank"] for r in rows] == final  # grown from r_min = 2 within the 2 iterations


def test_train_an_ace_regularises_its_coefficients_by_default(files, tmp_path, capsys):
    """``train`` fits an ACE with ``coefficient_l2`` 1e-8 unless told otherwise (an MTP with
    0): the default is announced, and the exact solve's coefficients shrink as lambda grows
    while the species energies (exempt) stay free to absorb the mean energy."""
    norms = {}
    for l2 in (None, "0", "1e-2"):
        out = tmp_path / f"l2_{l2}.yaml"
        argv = ["train", "--init", str(files["init"]), "--train", str(files["train"]), "--max-iter", "1",
                "--log-every", "0", "-o", str(out)] + ([] if l2 is None else ["--coefficient-l2", l2])
        capsys.readouterr()
        assert main(argv) == 0
        text = capsys.readouterr().out
        assert ("L2 of the linear coefficients 1e-08" in text) == (l2 is None)
        assert ("L2 of the linear coefficients 0.01" in text) == (l2 == "1e-2")
        norms[l2] = float(np.linalg.norm(np.asarray(read_potential(out).params().coeffs)))
    assert norms["1e-2"] < 0.5 * norms[None] and norms[None] <= norms["0"] * (1 + 1e-9)
    assert main(["train", "--init", str(files["init"]), "--train", str(files["train"]), "--max-iter", "1",
                 "--coefficient-l2", "-1", "-o", str(tmp_path / "bad.yaml")]) != 0
    assert "coefficient_l2 weight must be finite and >= 0, got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "bad.yaml").exists()
