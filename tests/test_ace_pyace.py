"""mlipress's ACE against python-ace (pacemaker's evaluator) on the same ``.yaml`` potential.

python-ace is a peer, never a dependency (academic licence): these tests run where it is
installed (``pip install python-ace``; on Python 3.11 its manylinux wheel installs from PyPI)
and skip otherwise, as in CI. Both directions: a random mlipress ACE written as a pacemaker
B-basis ``.yaml`` and evaluated by python-ace, and a basis generated and written by python-ace
(random coefficients) read by mlipress; and the ``.yace`` that pacemaker's ``pace_yaml2yace``
makes of an mlipress file (what LAMMPS ``pair_style pace`` reads). Each with both radial bases,
``radbase: ChebExpCos`` and ``SBessel``. Energies, per-atom energies, forces and stresses agree
to 1e-8 relative (measured with python-ace 0.4.0rc1: energies 2e-15, per-atom energies 3e-15,
forces 2e-11, stresses 1e-12 relative to the largest value; SBessel: energies 5e-16, forces 9e-12).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

pyace = pytest.importorskip("pyace", reason="python-ace (pacemaker's evaluator) is not installed; it is a peer, "
                                            "not a dependency: pip install python-ace")

import jax.numpy as jnp  # noqa: E402
from ase.build import bulk  # noqa: E402

from mlipress.calculator import MTPCalculator  # noqa: E402
from mlipress.io.ace import read_ace  # noqa: E402
from mlipress.models.ace.model import untrained_ace  # noqa: E402

ELEMENTS = ("Mo", "W")
RTOL = 1e-8


def _structure():
    atoms = bulk("Mo", "bcc", a=3.15, cubic=True).repeat(2)
    atoms.symbols[::3] = "W"
    atoms.rattle(0.1, seed=3)
    return atoms


def _compare(ace, path):
    """E, per-atom E, F, S of ``ace`` (mlipress) and of the file ``path`` (python-ace)."""
    ours, theirs = _structure(), _structure()
    ours.calc = MTPCalculator(ace, species=ELEMENTS)
    theirs.calc = pyace.PyACECalculator(str(path))
    e1, e2 = ours.get_potential_energy(), theirs.get_potential_energy()
    assert abs(e2) > 1.0 and abs(e1 - e2) <= RTOL * abs(e2)
    np.testing.assert_allclose(ours.get_potential_energies(), theirs.get_potential_energies(), rtol=0,
                               atol=RTOL * np.abs(theirs.get_potential_energies()).max())
    f1, f2 = ours.get_forces(), theirs.get_forces()
    assert np.abs(f2).max() > 0.1
    np.testing.assert_allclose(f1, f2, rtol=0, atol=RTOL * np.abs(f2).max())
    s1, s2 = ours.get_stress(), theirs.get_stress()
    np.testing.assert_allclose(s1, s2, rtol=0, atol=RTOL * np.abs(s2).max())


@pytest.mark.parametrize("radbase", ["ChebExpCos", "SBessel"])
def test_an_mlipress_ace_evaluates_the_same_in_python_ace(tmp_path, radbase):
    """Body order 5 (ranks 1-4, every coupling kind), two species, random coefficients. The
    per-species energies E0 are not part of pacemaker's format (zero here)."""
    ace = untrained_ace(ELEMENTS, body_order=5, n_k=4, nrad=2, lmax=2, cutoff=5.0, nmax=[2, 1, 1], radbase=radbase)
    assert ace.radial_basis.kind == radbase
    p = ace.init(0)
    coeffs = np.random.default_rng(1).standard_normal((ace.n_species, len(ace.functions)))
    ace = ace.with_params(replace(p, coeffs=jnp.asarray(coeffs), species=jnp.zeros(ace.n_species)))
    assert max(fn.rank for fn in ace.functions) == 4
    path = tmp_path / "mlipress.yaml"
    ace.write(path)
    _compare(ace, path)
    # the .yace of LAMMPS' pair_style pace, converted by pacemaker's own tool
    tool = shutil.which("pace_yaml2yace") or shutil.which("pace_yaml2yace", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.skip("pace_yaml2yace not found: the .yaml agreed, the .yace was not checked")
    yace = tmp_path / "mlipress.yace"
    subprocess.run([tool, str(path), "-o", str(yace)], check=True, capture_output=True)
    _compare(ace, yace)


@pytest.mark.parametrize("radbase", ["ChebExpCos", "SBessel"])
def test_a_python_ace_basis_reads_into_mlipress_and_evaluates_the_same(tmp_path, radbase):
    """A basis generated and written by python-ace (``radbase``, linear Finnis-Sinclair
    embedding, body order 4, random coefficients), its X-Y and Y-X bonds given the same radial
    coefficients (mlipress shares one radial tensor per unordered pair; it refuses a file where
    they differ). SBessel has no radial parameter, but python-ace 0.4.0rc1 crashes (segfault)
    building a basis whose bonds omit ``radparameters``, so they are given for both."""
    config = {"deltaSplineBins": 0.001, "elements": list(ELEMENTS),
              "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 1], "ndensity": 1}},
              "bonds": {"ALL": {"radbase": radbase, "radparameters": [5.25], "rcut": 5.0, "dcut": 0.01,
                                "NameOfCutoffFunction": "cos"}},
              "functions": {"ALL": {"nradmax_by_orders": [4, 2, 1], "lmax_by_orders": [0, 2, 2]}}}
    basis = pyace.create_multispecies_basis_config(config)
    basis.set_all_coeffs(np.random.default_rng(0).standard_normal(len(basis.get_all_coeffs())))
    written = tmp_path / "pace.yaml"
    basis.save(str(written))
    doc = yaml.safe_load(written.read_text())
    blocks = {tuple(b["speciesblock"].split()): b for b in doc["species"]}
    blocks[("W", "Mo")]["radcoefficients"] = blocks[("Mo", "W")]["radcoefficients"]
    path = tmp_path / "pace_pairs.yaml"
    path.write_text(yaml.safe_dump(doc))
    ace = read_ace(path)
    assert len(ace.functions) > 30 and ace.radial_basis.kind == radbase
    _compare(ace, path)
