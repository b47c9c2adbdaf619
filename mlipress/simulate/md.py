"""Molecular dynamics with an MTP through ASE: :func:`run_md` and the skin calculator.

:class:`SkinMTPCalculator` is :class:`~mlipress.calculator.MTPCalculator` with a Verlet skin
by default (0.5 A): its :class:`~mlipress.batch.SkinNeighborList` searches neighbours out to
``cutoff + skin`` and reuses that pair list until some atom has moved more than ``skin / 2``
(the cell's own deformation taken off the skin, so NPT runs do not search every step), so the
evaluation itself costs exactly what the plain calculator's costs and the results agree with
it to rounding.

:func:`run_md` drives ASE's integrators (``VelocityVerlet``; ``LangevinBAOAB`` or ``Langevin``
for NVT; ``IsotropicMTKNPT`` or ``LangevinBAOAB`` with a hydrostatic barostat for NPT), writes
an extxyz trajectory and a CSV log, and prints a progress line. It takes any ASE calculator
and parses no arguments (the ``md`` command is :mod:`mlipress.cli.md`).
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

from mlipress.calculator import MTPCalculator

#: g/cm^3 per amu/A^3.
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660

LOG_COLUMNS = ("step", "time_ps", "epot_eV", "ekin_eV", "etot_eV", "temperature_K", "volume_A3", "density_g_cm3", "pressure_GPa")


class StopMD(Exception):
    """Raised by an observer of :func:`run_md` to end the run early (e.g. an extrapolation
    grade above the break threshold); the run returns normally with ``stopped`` set."""


class MDUnstable(RuntimeError):
    """The run left the physical range (see :func:`stability_guard`): the potential is
    extrapolating far outside its training data, and the integrator would next fail with an
    unrelated numerical error. The trajectory and log written so far are kept."""


def stability_guard(atoms, temperature: float | None = None, max_volume_ratio: float = 4.0):
    """An observer ``f(atoms, step)`` for :func:`run_md` that raises :class:`MDUnstable` when
    the energy, forces, positions or cell stop being finite, when the volume of a periodic cell
    leaves ``[V0 / max_volume_ratio, V0 * max_volume_ratio]`` (V0: the volume at the start), or
    when the kinetic temperature exceeds ``max(10 T, 10000 K)``. Each check reads values the step
    has already computed, so it costs nothing next to an evaluation."""
    periodic = bool(atoms.pbc.all())
    v0 = atoms.get_volume() if periodic else None
    t_max = max(10.0 * (temperature or 0.0), 1e4)

    def check(atoms, step):
        what = None
        energy = atoms.get_potential_energy()
        if not (np.isfinite(energy) and np.isfinite(atoms.get_forces()).all()):
            what = "the potential energy or the forces are not finite"
        elif not (np.isfinite(atoms.positions).all() and np.isfinite(atoms.cell.array).all()):
            what = "the positions or the cell are not finite"
        elif periodic and not (v0 / max_volume_ratio <= abs(atoms.get_volume()) <= v0 * max_volume_ratio):
            what = (f"the cell volume is {abs(atoms.get_volume()) / v0:.3g} x the starting volume "
                    f"(allowed {1 / max_volume_ratio:g}-{max_volume_ratio:g} x)")
        elif atoms.get_temperature() > t_max:
            what = f"the kinetic temperature is {atoms.get_temperature():.4g} K (allowed up to {t_max:g} K)"
        if what:
            raise MDUnstable(f"MD unstable at step {step}: {what} (E_pot {energy:.6g} eV); the potential is "
                             f"extrapolating outside its training data")

    return check


class SkinMTPCalculator(MTPCalculator):
    """:class:`MTPCalculator` with a Verlet skin of ``skin`` A (0.5 by default; 0 searches
    every call): the same calculator, only the default of ``skin`` differs (see
    :class:`~mlipress.batch.SkinNeighborList`). ``rebuilds`` counts the neighbour searches
    and ``calls`` the evaluations, for diagnostics and benchmarks.
    """

    def __init__(self, potential, species=None, params=None, skin: float = 0.5, **kwargs):
        super().__init__(potential, species=species, params=params, skin=skin, **kwargs)


@dataclass(frozen=True)
class MDSettings:
    """Settings of :func:`run_md`. Temperatures in K, pressure in GPa, times in fs.

    ``npt_method``: ``"mtk"`` (IsotropicMTKNPT, Nose-Hoover chains, deterministic) or
    ``"langevin"`` (LangevinBAOAB with a hydrostatic Langevin barostat). ``nvt_method``:
    ``"baoab"`` (LangevinBAOAB) or ``"langevin"`` (ase.md.Langevin). ``tdamp_fs`` and
    ``pdamp_fs`` are the thermostat and barostat time constants. ``guard``: stop with
    :class:`MDUnstable` when the run leaves the physical range (:func:`stability_guard`).
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
    guard: bool = True

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
    steps: int = 0
    stopped: str = ""


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
    observers=(),
) -> MDResult:
    """Run ``steps`` steps of MD on ``atoms`` (modified in place) with ``calc``.

    ``ensemble``: ``"nve"`` (VelocityVerlet), ``"nvt"`` (LangevinBAOAB) or ``"npt"``
    (isotropic, LangevinBAOAB barostat or IsotropicMTKNPT; see :class:`MDSettings`, which
    ``settings`` may give in full instead of the keywords). ``temperature`` (K) also sets
    Maxwell-Boltzmann velocities (seeded by ``seed``, zero total momentum) when the atoms
    have none; ``pressure`` in GPa. Every ``interval`` steps (and at step 0) a frame goes to
    the extxyz ``trajectory`` and a row to the CSV ``log_csv`` (columns :data:`LOG_COLUMNS`);
    ``progress`` prints steps/s and the ETA to stderr. ``observers``: callables
    ``f(atoms, step)`` run after every step (and at step 0); one raising :class:`StopMD` ends
    the run there (``MDResult.stopped`` holds its message, ``steps`` the steps done). With
    ``settings.guard`` (default) a run that blows up raises :class:`MDUnstable` naming the step
    and what left the physical range, after the files written so far are closed.
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
    if s.guard:
        observers = (stability_guard(atoms, s.temperature), *observers)

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
    for f in observers:
        dyn.attach(lambda f=f: f(atoms, dyn.nsteps), interval=1)
    stopped = ""
    try:
        try:
            dyn.run(s.steps)
        except StopMD as exc:
            stopped = str(exc)
        if dyn.nsteps % s.interval:
            observe()  # the final state always ends the log
    finally:
        for f in (traj_file, log_file):
            if f:
                f.close()
    wall = time.perf_counter() - start
    log = {k: np.array([r[k] for r in rows]) for k in LOG_COLUMNS}
    done = dyn.nsteps
    return MDResult(settings=s, log=log, wall_s=wall, steps_per_second=done / wall if wall > 0 else math.inf,
                    steps=done, stopped=stopped)


def read_log(path) -> dict:
    """Columns of a CSV log written by :func:`run_md`, as float arrays."""
    with open(Path(path), newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in LOG_COLUMNS}
