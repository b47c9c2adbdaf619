"""Molecular dynamics with an MTP through ASE: a Verlet-skin calculator and :func:`run_md`.

:class:`SkinMTPCalculator` searches neighbours out to ``cutoff + skin`` and keeps that pair
list (atom indices and integer periodic shifts) until some atom has moved more than
``skin / 2`` since the search (measured in the cell's scaled frame, with the cell's own
deformation taken off the skin, so NPT runs do not search every step), or the atom count or
types change. In between, each call only recomputes r_ij = x_j - x_i + S_ij . cell for the
stored pairs, drops those at or beyond the cutoff and packs the rest into the same padded layout
the plain calculator uses, so the evaluation itself costs exactly what
:class:`~mlipress.calculator.MTPCalculator` costs and the results agree with it to rounding (no
pair within the cutoff can be missed: two atoms that were farther apart than ``cutoff + skin``
cannot both move ``skin / 2`` and close the gap).

:func:`run_md` drives ASE's integrators (``VelocityVerlet``; ``LangevinBAOAB`` or ``Langevin``
for NVT; ``IsotropicMTKNPT`` or ``LangevinBAOAB`` with a hydrostatic barostat for NPT), writes
an extxyz trajectory and a CSV log, and prints a progress line.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import units
from vesin import NeighborList

from mlipress.calculator import MTPCalculator
from mlipress.neighbors import NeighborBatch, _bucket

#: g/cm^3 per amu/A^3.
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660

LOG_COLUMNS = ("step", "time_ps", "epot_eV", "ekin_eV", "etot_eV", "temperature_K", "volume_A3", "density_g_cm3", "pressure_GPa")


class SkinMTPCalculator(MTPCalculator):
    """:class:`MTPCalculator` that reuses a ``cutoff + skin`` pair list between steps.

    ``skin`` in Angstrom (0.5 by default; 0 rebuilds every call). ``rebuilds`` counts the
    neighbour searches and ``calls`` the evaluations, for diagnostics and benchmarks.
    """

    def __init__(self, potential, species=None, params=None, skin: float = 0.5, **kwargs):
        super().__init__(potential, species=species, params=params, **kwargs)
        if skin < 0:
            raise ValueError(f"skin must be >= 0, got {skin}")
        self.skin = float(skin)
        self.rebuilds = 0
        self.calls = 0
        self._list = None  # (i, j, shift vectors, positions at build, cell at build, types)

    def _needs_rebuild(self, config) -> bool:
        """True when a pair now within the cutoff may be missing from the stored list.

        Positions are compared in the scaled frame of the cell, so a cell change (NPT) need not
        force a search: with M = cell0^-1 cell and sigma its smallest singular value, a pair
        that was at least ``cutoff + skin`` apart is still beyond ``cutoff`` while
        ``2 max_a |ds_a . cell| < sigma (cutoff + skin) - cutoff`` (ds: scaled displacement).
        For a fixed cell this is the usual ``max displacement < skin / 2``.
        """
        if self._list is None:
            return True
        _, _, _, reference, cell0, types0 = self._list
        if len(types0) != config.natoms or not np.array_equal(types0, config.types):
            return True
        if (cell0 is None) != (config.cell is None):
            return True
        if config.natoms == 0:
            return False
        rc = self.mtp.cutoff
        if cell0 is None:
            disp, sigma = config.positions - reference, 1.0
        else:
            cell = np.asarray(config.cell, dtype=float)
            if np.array_equal(cell, cell0):
                disp, sigma = config.positions - reference @ cell0, 1.0
            else:
                disp = (config.positions @ np.linalg.inv(cell) - reference) @ cell
                sigma = float(np.linalg.svd(np.linalg.solve(cell0, cell), compute_uv=False).min())
        moved = float(np.sqrt(np.einsum("ax,ax->a", disp, disp).max()))
        return 2.0 * moved >= sigma * (rc + self.skin) - rc

    def _rebuild(self, config) -> None:
        positions = np.array(config.positions, dtype=float)
        cell = None if config.cell is None else np.array(config.cell, dtype=float)
        if config.natoms == 0:
            i = j = np.zeros(0, np.int64)
            shifts = np.zeros((0, 3))
        else:
            nl = NeighborList(cutoff=self.mtp.cutoff + self.skin, full_list=True)
            box = np.zeros((3, 3)) if cell is None else cell
            i, j, S = nl.compute(positions, box, cell is not None, quantities="ijS")
            order = np.argsort(i, kind="stable")
            i, j = i[order].astype(np.int64), j[order].astype(np.int64)
            shifts = np.asarray(S[order], dtype=float)
        # Reference positions: Cartesian without a cell, scaled (fractional) with one.
        reference = positions if cell is None else positions @ np.linalg.inv(cell)
        self._list = (i, j, shifts, reference, cell, np.array(config.types))
        self.rebuilds += 1

    def _batch(self, config) -> NeighborBatch:
        """Padded batch of the pairs within the cutoff, from the stored skin list."""
        self.calls += 1
        if self._needs_rebuild(config):
            self._rebuild(config)
        i, j, shifts, _, _, _ = self._list
        pos = np.asarray(config.positions, dtype=float)
        d = pos[j] - pos[i]
        if config.cell is not None:
            d += shifts @ np.asarray(config.cell, dtype=float)
        keep = np.einsum("px,px->p", d, d) < self.mtp.cutoff**2
        i, j, d = i[keep], j[keep], d[keep]
        n = config.natoms
        counts = np.bincount(i, minlength=n) if n else np.zeros(0, np.int64)
        max_nbh = int(counts.max()) if len(counts) else 0
        A = _bucket(n + 1, 16)
        K = _bucket(max(max_nbh, 1), 8, growth=1.0, multiple=4)
        if A > self._pad[0] or K > self._pad[1]:
            # Same headroom rule as MTPCalculator, so both compile the same shapes.
            self._pad = (max(A, self._pad[0]), max(_bucket(K + 4, 8, growth=1.0, multiple=4), self._pad[1]))
        A, K = self._pad

        vectors = np.zeros((A, K, 3))
        types_i = np.zeros(A, np.int32)
        types_j = np.zeros((A, K), np.int32)
        index_j = np.full((A, K), A, np.int32)
        mask = np.zeros((A, K), bool)
        config_index = np.full(A, 1, np.int32)
        types_i[:n] = config.types
        config_index[:n] = 0
        if len(i):
            starts = np.cumsum(counts) - counts
            slot = np.arange(len(i)) - starts[i]
            vectors[i, slot] = d
            types_j[i, slot] = config.types[j]
            index_j[i, slot] = j
            mask[i, slot] = True
        return NeighborBatch(vectors, types_i, types_j, index_j, mask, config_index, n_configs=1)


@dataclass(frozen=True)
class MDSettings:
    """Settings of :func:`run_md`. Temperatures in K, pressure in GPa, times in fs.

    ``npt_method``: ``"mtk"`` (IsotropicMTKNPT, Nose-Hoover chains, deterministic) or
    ``"langevin"`` (LangevinBAOAB with a hydrostatic Langevin barostat). ``nvt_method``:
    ``"baoab"`` (LangevinBAOAB) or ``"langevin"`` (ase.md.Langevin). ``tdamp_fs`` and
    ``pdamp_fs`` are the thermostat and barostat time constants.
    """

    ensemble: str = "nve"
    temperature: float | None = None
    pressure: float = 0.0
    steps: int = 1000
    timestep_fs: float = 1.0
    interval: int = 10
    seed: int = 0
    tdamp_fs: float = 100.0
    pdamp_fs: float = 1000.0
    nvt_method: str = "baoab"
    npt_method: str = "langevin"

    def __post_init__(self):
        if self.ensemble not in ("nve", "nvt", "npt"):
            raise ValueError(f"ensemble must be nve, nvt or npt, got {self.ensemble!r}")
        if self.ensemble in ("nvt", "npt") and (self.temperature is None or self.temperature <= 0):
            raise ValueError(f"{self.ensemble} needs a positive temperature")
        if self.steps < 0 or self.interval < 1 or self.timestep_fs <= 0:
            raise ValueError("steps must be >= 0, interval >= 1 and timestep_fs > 0")
        if self.nvt_method not in ("baoab", "langevin"):
            raise ValueError(f"nvt_method must be baoab or langevin, got {self.nvt_method!r}")
        if self.npt_method not in ("mtk", "langevin"):
            raise ValueError(f"npt_method must be mtk or langevin, got {self.npt_method!r}")


@dataclass(frozen=True)
class MDResult:
    """What :func:`run_md` logged: ``log`` maps each of :data:`LOG_COLUMNS` to an array."""

    settings: MDSettings
    log: dict = field(repr=False)
    wall_s: float
    steps_per_second: float


def density_g_cm3(atoms) -> float:
    """Mass density in g/cm^3 (NaN without a periodic cell)."""
    if not atoms.pbc.all():
        return math.nan
    return float(atoms.get_masses().sum() / atoms.get_volume() * AMU_PER_A3_TO_G_PER_CM3)


def _state(atoms, step: int, timestep_fs: float) -> dict:
    epot = float(atoms.get_potential_energy())
    ekin = float(atoms.get_kinetic_energy())
    periodic = bool(atoms.pbc.all())
    if periodic:
        stress = atoms.get_stress(include_ideal_gas=True)
        pressure = float(-stress[:3].mean() / units.GPa)
        volume = float(atoms.get_volume())
    else:
        pressure = volume = math.nan
    return {
        "step": step,
        "time_ps": step * timestep_fs / 1000.0,
        "epot_eV": epot,
        "ekin_eV": ekin,
        "etot_eV": epot + ekin,
        "temperature_K": float(atoms.get_temperature()),
        "volume_A3": volume,
        "density_g_cm3": density_g_cm3(atoms),
        "pressure_GPa": pressure,
    }


def _integrator(atoms, s: MDSettings):
    dt = s.timestep_fs * units.fs
    rng = np.random.default_rng(s.seed)
    if s.ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if s.ensemble == "nvt":
        if s.nvt_method == "langevin":
            from ase.md.langevin import Langevin

            return Langevin(atoms, dt, temperature_K=s.temperature, friction=1.0 / (s.tdamp_fs * units.fs), rng=rng)
        from ase.md.langevinbaoab import LangevinBAOAB

        return LangevinBAOAB(atoms, dt, temperature_K=s.temperature, T_tau=s.tdamp_fs * units.fs, rng=rng)
    if not atoms.pbc.all():
        raise ValueError("npt needs a fully periodic cell")
    if s.npt_method == "mtk":
        from ase.md.nose_hoover_chain import IsotropicMTKNPT

        return IsotropicMTKNPT(
            atoms, dt, temperature_K=s.temperature, pressure_au=s.pressure * units.GPa,
            tdamp=s.tdamp_fs * units.fs, pdamp=s.pdamp_fs * units.fs,
        )
    from ase.md.langevinbaoab import LangevinBAOAB

    return LangevinBAOAB(
        atoms, dt, temperature_K=s.temperature, externalstress=s.pressure * units.GPa, hydrostatic=True,
        T_tau=s.tdamp_fs * units.fs, P_tau=s.pdamp_fs * units.fs, rng=rng,
    )


def run_md(
    atoms,
    calc=None,
    ensemble: str = "nve",
    temperature: float | None = None,
    pressure: float = 0.0,
    steps: int = 1000,
    timestep_fs: float = 1.0,
    trajectory=None,
    log_csv=None,
    interval: int = 10,
    seed: int = 0,
    progress: bool = True,
    settings: MDSettings | None = None,
) -> MDResult:
    """Run ``steps`` steps of MD on ``atoms`` (modified in place) with ``calc``.

    ``ensemble``: ``"nve"`` (VelocityVerlet), ``"nvt"`` (LangevinBAOAB) or ``"npt"``
    (isotropic, LangevinBAOAB barostat or IsotropicMTKNPT; see :class:`MDSettings`, which
    ``settings`` may give in full instead of the keywords). ``temperature`` (K) also sets
    Maxwell-Boltzmann velocities (seeded by ``seed``, zero total momentum) when the atoms
    have none; ``pressure`` in GPa. Every ``interval`` steps (and at step 0) a frame goes to
    the extxyz ``trajectory`` and a row to the CSV ``log_csv`` (columns :data:`LOG_COLUMNS`);
    ``progress`` prints steps/s and the ETA to stderr.
    """
    if settings is None:
        settings = MDSettings(
            ensemble=ensemble, temperature=temperature, pressure=pressure, steps=steps,
            timestep_fs=timestep_fs, interval=interval, seed=seed,
        )
    s = settings
    if calc is not None:
        atoms.calc = calc
    if atoms.calc is None:
        raise ValueError("no calculator: pass calc=")
    if s.temperature and not np.any(atoms.get_momenta()):
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

        MaxwellBoltzmannDistribution(atoms, temperature_K=s.temperature, rng=np.random.default_rng(s.seed))
        Stationary(atoms)
    dyn = _integrator(atoms, s)

    rows: list[dict] = []
    traj_file = open(trajectory, "w") if trajectory is not None else None
    log_file = open(log_csv, "w", newline="") if log_csv is not None else None
    writer = csv.DictWriter(log_file, fieldnames=LOG_COLUMNS) if log_file else None
    if writer:
        writer.writeheader()
    start = time.perf_counter()
    every = max(s.interval, s.steps // 20, 1)

    def observe():
        step = dyn.nsteps
        row = _state(atoms, step, s.timestep_fs)
        rows.append(row)
        if writer:
            writer.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in row.items()})
            log_file.flush()
        if traj_file:
            from ase.io import write

            write(traj_file, atoms, format="extxyz")
            traj_file.flush()
        if progress and step and (step % every == 0 or step == s.steps):
            elapsed = time.perf_counter() - start
            rate = step / elapsed if elapsed > 0 else math.inf
            eta = (s.steps - step) / rate if rate > 0 else math.nan
            print(
                f"step {step}/{s.steps}  {rate:.1f} steps/s  ETA {eta:.0f} s  "
                f"T {row['temperature_K']:.1f} K  Etot {row['etot_eV']:.6f} eV  P {row['pressure_GPa']:.3f} GPa",
                file=sys.stderr,
                flush=True,
            )

    dyn.attach(observe, interval=s.interval)
    try:
        dyn.run(s.steps)
        if s.steps % s.interval:
            observe()  # the final state always ends the log
    finally:
        for f in (traj_file, log_file):
            if f:
                f.close()
    wall = time.perf_counter() - start
    log = {k: np.array([r[k] for r in rows]) for k in LOG_COLUMNS}
    return MDResult(settings=s, log=log, wall_s=wall, steps_per_second=s.steps / wall if wall > 0 else math.inf)


def read_log(path) -> dict:
    """Columns of a CSV log written by :func:`run_md`, as float arrays."""
    with open(Path(path), newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in LOG_COLUMNS}
