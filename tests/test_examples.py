"""The built-in Cu-Ag-Au EMT example dataset (mlipress.examples)."""

import numpy as np
import pytest

import mlipress  # noqa: F401
from mlipress.examples import SPECIES, make_example_dataset, split


@pytest.fixture(scope="module")
def small():
    return make_example_dataset(n_configs=12, seed=3)


def _same(a, b):
    return len(a) == len(b) and all(
        np.array_equal(x.positions, y.positions)
        and np.array_equal(x.types, y.types)
        and np.array_equal(x.cell, y.cell)
        and x.energy == y.energy
        and np.array_equal(x.forces, y.forces)
        and np.array_equal(x.virial, y.virial)
        for x, y in zip(a, b)
    )


def test_deterministic_for_a_seed():
    ds, _ = make_example_dataset(n_configs=4, seed=3)
    again, _ = make_example_dataset(n_configs=4, seed=3)
    other, _ = make_example_dataset(n_configs=4, seed=4)
    assert _same(ds, again)
    assert not _same(ds, other)


def test_contents(small):
    ds, species = small
    assert species == SPECIES == ("Cu", "Ag", "Au") and ds.species == species
    assert len(ds) == 12 and len(ds.names) == 12
    names = set(ds.names)
    assert {"strain", "vacancy"} <= names and any(n.startswith("md_") for n in names)
    for c, name in zip(ds, ds.names):
        assert c.periodic and c.natoms == (31 if name == "vacancy" else 32)
        assert c.energy is not None and c.forces.shape == (c.natoms, 3) and c.virial.shape == (3, 3)
        assert np.isfinite(c.energy) and np.all(np.isfinite(c.forces))
        assert set(np.unique(c.types)) <= {0, 1, 2}
    # MD snapshots are not at rest: forces are substantial
    assert max(np.abs(c.forces).max() for c in ds) > 0.1


def test_labels_match_direct_emt(small):
    from ase import Atoms
    from ase.calculators.emt import EMT

    ds, species = small
    for c in (ds[0], ds[len(ds) - 1]):  # an MD snapshot and the vacancy cell
        atoms = Atoms([species[t] for t in c.types], positions=c.positions, cell=c.cell, pbc=True)
        atoms.calc = EMT()
        assert c.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(c.forces, atoms.get_forces(), atol=1e-10)
        virial = -atoms.get_volume() * atoms.get_stress(voigt=False)
        np.testing.assert_allclose(c.virial, virial, atol=1e-10)


def test_split_disjoint_and_non_empty(small):
    ds, _ = small
    train, valid = split(ds, 0.75, seed=1)
    assert len(train) == 9 and len(valid) == 3
    ids = lambda part: {id(c) for c in part}  # noqa: E731
    assert ids(train).isdisjoint(ids(valid)) and ids(train) | ids(valid) == ids(ds)
    assert train.species == valid.species == ds.species and len(train.names) == len(train)
    t2, v2 = split(ds, 0.75, seed=1)
    assert ids(t2) == ids(train) and ids(v2) == ids(valid)
    # extreme fractions still leave both parts non-empty
    for f in (0.01, 0.99):
        a, b = split(ds, f, seed=0)
        assert len(a) >= 1 and len(b) >= 1 and len(a) + len(b) == len(ds)
    with pytest.raises(ValueError):
        split(ds, 1.0)
    with pytest.raises(ValueError):
        split(ds[:1], 0.5)


def test_default_size_counts():
    from mlipress.examples import _counts

    assert _counts(60) == (50, 9, 1)
    assert sum(_counts(1)) == 1 and sum(_counts(2)) == 2 and sum(_counts(3)) == 3
