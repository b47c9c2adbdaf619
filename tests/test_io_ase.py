"""The ASE bridge: to_atoms/from_atoms sign conventions, extxyz round trips, dispatch."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from mlipress.data import Configuration, Dataset
from mlipress.io import from_atoms, parse_species, read_dataset, to_atoms, write_dataset


def labelled(seed=0, natoms=4) -> Configuration:
    rng = np.random.default_rng(seed)
    cell = np.array([[4.0, 0.1, 0.0], [0.2, 5.0, 0.0], [0.0, 0.3, 6.0]])
    virial = rng.normal(size=(3, 3))
    return Configuration(
        positions=rng.uniform(0, 4, size=(natoms, 3)),
        types=rng.integers(0, 2, size=natoms),
        cell=cell,
        energy=-3.25,
        forces=rng.normal(size=(natoms, 3)),
        virial=virial + virial.T,
    )


def test_parse_species_forms():
    assert parse_species("Nb,Mo,Ta,W") == ("Nb", "Mo", "Ta", "W")
    assert parse_species(" Nb, Mo ") == ("Nb", "Mo")
    assert parse_species(["Cu"]) == ("Cu",) and parse_species(("Li", "Si")) == ("Li", "Si")
    assert parse_species(None) is None and parse_species("") is None
    with pytest.raises(ValueError, match="twice"):
        parse_species("Mo,Mo")


def test_to_atoms_stress_sign_and_units():
    c = labelled()
    atoms = to_atoms(c, ("Cu", "Ag"))
    assert atoms.get_chemical_symbols() == [("Cu", "Ag")[t] for t in c.types]
    assert atoms.pbc.all() and np.array_equal(atoms.cell[:], c.cell)
    assert atoms.get_potential_energy() == -3.25
    assert np.array_equal(atoms.get_forces(), c.forces)
    volume = abs(np.linalg.det(c.cell))
    sigma = atoms.get_stress(voigt=False)
    assert np.allclose(sigma, -c.virial / volume, rtol=1e-14, atol=0)
    voigt = atoms.get_stress()  # ASE order xx yy zz yz xz xy
    assert voigt[3] == pytest.approx(-c.virial[1, 2] / volume, rel=1e-14)
    assert voigt[5] == pytest.approx(-c.virial[0, 1] / volume, rel=1e-14)
    back = from_atoms(atoms, "Cu,Ag")
    assert back.energy == c.energy and np.array_equal(back.types, c.types)
    assert np.array_equal(back.positions, c.positions) and np.array_equal(back.forces, c.forces)
    assert np.allclose(back.virial, c.virial, rtol=1e-13, atol=1e-15)


def test_from_atoms_with_a_live_calculator_matches_ase_virial():
    atoms = bulk("Cu", "fcc", a=3.5, cubic=True).repeat((2, 1, 1))  # compressed vs EMT's ~3.6
    atoms.rattle(0.05, seed=1)
    atoms.calc = EMT()
    c = from_atoms(atoms, ["Cu"])
    assert c.energy == pytest.approx(atoms.get_potential_energy(), abs=0)
    assert np.array_equal(c.forces, atoms.get_forces())
    assert np.allclose(c.virial, -atoms.get_volume() * atoms.get_stress(voigt=False), rtol=1e-13, atol=1e-14)
    assert np.trace(c.virial) > 0  # compressed cell pushes outward: positive PlusStress diagonal


def test_unlabelled_and_non_periodic():
    mol = Configuration(positions=[[0, 0, 0], [0, 0, 1.1]], types=[0, 1])
    atoms = to_atoms(mol, ("C", "O"))
    assert atoms.calc is None and not atoms.pbc.any() and atoms.cell.rank == 0
    back = from_atoms(atoms, ("C", "O"))
    assert back.cell is None and back.energy is None and back.forces is None and back.virial is None
    with pytest.raises(ValueError, match="only fully periodic or fully free"):
        from_atoms(Atoms("Cu", cell=np.eye(3) * 3, pbc=[True, True, False]), ["Cu"])
    with pytest.raises(ValueError, match=r"\['Fe'\] not in species"):
        from_atoms(Atoms("Fe"), ["Cu"])


def test_extxyz_round_trip(tmp_path):
    mol = Configuration(positions=[[0, 0, 0], [0, 0, 1.1]], types=[0, 1], energy=-1.0, forces=[[0, 0, 1], [0, 0, -1]])
    ds = Dataset((labelled(1), labelled(2, natoms=6), mol), species=("Cu", "Ag"), names=("a", "b", "mol"))
    path = tmp_path / "set.extxyz"
    write_dataset(ds, path)
    back = read_dataset(path, species="Cu,Ag")
    assert back.species == ("Cu", "Ag") and back.names == ("a", "b", "mol")
    for a, b in zip(ds, back):
        assert np.array_equal(a.types, b.types)
        assert a.energy == b.energy
        assert np.allclose(a.positions, b.positions, rtol=0, atol=1e-8)  # ASE writes %16.8f
        assert np.allclose(a.forces, b.forces, rtol=0, atol=1e-8)
        assert (a.cell is None) == (b.cell is None)
        if a.cell is not None:
            assert np.allclose(a.cell, b.cell, rtol=0, atol=1e-12)
            assert np.allclose(a.virial, b.virial, rtol=1e-12, atol=1e-12)
    assert back[2].virial is None
    # the species map may also come from write_dataset's argument; reading without one
    # orders the elements by atomic number (Cu 29 < Ag 47)
    bare = Dataset(ds.configurations)
    with pytest.raises(ValueError, match="needs element symbols"):
        write_dataset(bare, tmp_path / "x.xyz")
    write_dataset(bare, tmp_path / "x.xyz", species=["Cu", "Ag"])
    assert read_dataset(tmp_path / "x.xyz").species == ("Cu", "Ag")


def test_dispatch_and_unsupported_suffix(tmp_path, shared_data):
    ds = read_dataset(shared_data / "mlip-reference/cubic/train101.cfg", species="Cu")
    assert ds.species == ("Cu",) and len(ds) == 101
    path = tmp_path / "cu.xyz"
    write_dataset(ds[:5], path)
    back = read_dataset(path)
    assert back.species == ("Cu",) and len(back) == 5
    assert back[4].energy == ds[4].energy
    assert np.allclose(back[4].virial, ds[4].virial, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="supported suffixes"):
        write_dataset(ds, tmp_path / "cu.traj")
    # any other ASE format is read through ase.io
    from ase.io import write

    write(tmp_path / "cu.traj", [to_atoms(c, ("Cu",)) for c in ds[:3]])
    traj = read_dataset(tmp_path / "cu.traj")
    assert len(traj) == 3 and np.array_equal(traj[2].forces, ds[2].forces) and traj[2].energy == ds[2].energy
