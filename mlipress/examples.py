"""A built-in demo dataset: small Cu-Ag-Au cells labelled with ASE's EMT potential.

The package ships no data files; :func:`make_example_dataset` generates a deterministic,
few-second training set so that the command line, the tests and the tutorials can fit,
compress and evaluate an MTP without downloading anything. EMT (effective medium theory,
``ase.calculators.emt.EMT``) is a cheap many-body potential with Cu, Ag and Au parameters;
it stands in for DFT here.

What is generated (all cells are 2x2x2 conventional fcc cells, 32 sites):

- molecular-dynamics snapshots: one random-occupation alloy per temperature in
  :data:`TEMPERATURES` (300-1200 K), Maxwell-Boltzmann velocities, Langevin dynamics
  (velocity-Verlet with friction), a few thermalisation steps, then a snapshot every few
  steps;
- strained cells: a fresh random alloy under a random symmetric strain (|eps_ab| <= 4%)
  with small random displacements;
- one vacancy cell: a random alloy with one site removed, slightly rattled.

The lattice constant of each alloy follows Vegard's law, ``a = sum_s x_s a_s``, over EMT's own
equilibrium fcc lattice constants :data:`LATTICE_CONSTANTS`, so unstrained cells sit near
zero pressure. Labels are EMT energy (eV), forces (eV/A) and virial
``-V * sigma_ASE`` (eV, 3x3; see :mod:`mlipress.data`), converted with
:func:`mlipress.io.from_atoms`.
"""

from __future__ import annotations

import numpy as np

from mlipress.data import Dataset

__all__ = ["SPECIES", "LATTICE_CONSTANTS", "TEMPERATURES", "make_example_dataset", "random_alloy", "split"]

#: Species order of the example dataset: type 0 is Cu, 1 is Ag, 2 is Au.
SPECIES: tuple[str, ...] = ("Cu", "Ag", "Au")

#: EMT's equilibrium fcc lattice constants in Angstrom (minimum of the EMT energy per atom).
LATTICE_CONSTANTS = {"Cu": 3.59, "Ag": 4.065, "Au": 4.055}

#: Langevin MD temperatures in K, one trajectory each.
TEMPERATURES: tuple[float, ...] = (300.0, 600.0, 900.0, 1200.0)

_REPEAT = 2  # 2x2x2 conventional cells = 32 atoms
_TIMESTEP_FS = 3.0
_FRICTION_PER_FS = 0.02
_THERMALISE_STEPS = 10
_SNAPSHOT_EVERY = 5
_MAX_STRAIN = 0.04
_RATTLE = 0.05  # Angstrom


def random_alloy(rng: np.random.Generator, species=SPECIES, repeat: int = _REPEAT):
    """A periodic fcc Cu-Ag-Au cell with a uniformly random element on every site.

    ``rng``: NumPy Generator. The conventional cubic cell is repeated ``repeat`` times along
    each axis (``4 repeat^3`` atoms); the lattice constant is Vegard's mix of
    :data:`LATTICE_CONSTANTS` over the drawn composition.
    """
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=1.0, cubic=True).repeat(repeat)
    symbols = [species[i] for i in rng.integers(0, len(species), len(atoms))]
    a = float(np.mean([LATTICE_CONSTANTS[s] for s in symbols]))
    atoms.set_chemical_symbols(symbols)
    atoms.set_cell(atoms.cell * a, scale_atoms=True)
    atoms.pbc = True
    return atoms


def _label(atoms, species):
    """EMT energy/forces/stress of a copy of ``atoms`` as a labelled Configuration."""
    from ase.calculators.emt import EMT

    from mlipress.io import from_atoms

    snap = atoms.copy()
    snap.calc = EMT()
    snap.get_stress()  # compute all properties while the calculator is known to be attached
    config = from_atoms(snap, species)
    if config.energy is None or config.forces is None or config.virial is None:
        raise RuntimeError("EMT did not provide energy, forces and stress")
    return config


def _counts(n_configs: int) -> tuple[int, int, int]:
    """(MD snapshots, strained cells, vacancy cells) adding up to ``n_configs``."""
    n_vac = 1 if n_configs >= 3 else 0
    n_strain = 0 if n_configs < 2 else min(max(1, round(0.15 * n_configs)), n_configs - n_vac - 1)
    return n_configs - n_strain - n_vac, n_strain, n_vac


def make_example_dataset(n_configs: int = 60, seed: int = 0) -> tuple[Dataset, tuple[str, ...]]:
    """Generate the Cu-Ag-Au EMT demo dataset (see the module docstring).

    Returns ``(dataset, species)`` with ``species == ("Cu", "Ag", "Au")``; the dataset's
    ``names`` label each configuration ``"md_<T>K"``, ``"strain"`` or ``"vacancy"``. About 15%
    of the configurations are strained cells, one is a vacancy cell (for ``n_configs >= 3``),
    the rest are MD snapshots spread evenly over :data:`TEMPERATURES`. The same
    ``(n_configs, seed)`` always gives the same dataset.
    """
    from ase import units
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin

    n_configs = int(n_configs)
    if n_configs < 1:
        raise ValueError(f"n_configs must be >= 1, got {n_configs}")
    rng = np.random.default_rng(seed)
    n_md, n_strain, n_vac = _counts(n_configs)
    configs, names = [], []

    # MD snapshots: one trajectory per temperature, snapshots split as evenly as possible
    per_temp = np.diff(np.linspace(0, n_md, len(TEMPERATURES) + 1).round().astype(int))
    for temperature, n_snap in zip(TEMPERATURES, per_temp):
        if n_snap == 0:
            continue
        atoms = random_alloy(rng)
        atoms.calc = EMT()
        # Maxwell-Boltzmann momenta p ~ N(0, m k_B T) per component, zero total momentum
        # (drawn here rather than with ASE's helper, whose name changed in ASE 3.29)
        masses = atoms.get_masses()[:, None]
        momenta = rng.normal(0.0, 1.0, (len(atoms), 3)) * np.sqrt(masses * units.kB * temperature)
        atoms.set_momenta(momenta - masses * momenta.sum(0) / masses.sum())
        dyn = Langevin(
            atoms,
            timestep=_TIMESTEP_FS * units.fs,
            temperature_K=temperature,
            friction=_FRICTION_PER_FS / units.fs,
            fixcm=False,  # the net drift is harmless here; avoids ASE's fixcm deprecation
            rng=rng,
        )
        dyn.run(_THERMALISE_STEPS)
        for _ in range(n_snap):
            dyn.run(_SNAPSHOT_EVERY)
            configs.append(_label(atoms, SPECIES))
            names.append(f"md_{temperature:.0f}K")

    # strained cells: random symmetric strain, small random displacements
    for _ in range(n_strain):
        atoms = random_alloy(rng)
        eps = rng.uniform(-_MAX_STRAIN, _MAX_STRAIN, (3, 3))
        eps = 0.5 * (eps + eps.T)
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
        atoms.positions += rng.normal(0.0, _RATTLE, atoms.positions.shape)
        configs.append(_label(atoms, SPECIES))
        names.append("strain")

    # one vacancy
    for _ in range(n_vac):
        atoms = random_alloy(rng)
        del atoms[int(rng.integers(0, len(atoms)))]
        atoms.positions += rng.normal(0.0, _RATTLE, atoms.positions.shape)
        configs.append(_label(atoms, SPECIES))
        names.append("vacancy")

    return Dataset(tuple(configs), SPECIES, tuple(names)), SPECIES


def split(dataset: Dataset, fraction: float = 0.8, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Random disjoint ``(train, valid)`` split; ``fraction`` is the share that goes to ``train``.

    ``round(fraction * n)`` configurations (at least one, at most ``n - 1``) go to training;
    both parts keep the dataset's order, species and names. Needs ``n >= 2`` and
    ``0 < fraction < 1``; deterministic for a ``seed``.
    """
    n = len(dataset)
    if n < 2:
        raise ValueError(f"cannot split a dataset of {n} configuration(s) into two non-empty parts")
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction}")
    n_train = min(max(int(round(float(fraction) * n)), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    train, valid = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    return dataset[train.tolist()], dataset[valid.tolist()]
