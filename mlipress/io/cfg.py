"""Read and write MLIP ``.cfg`` configuration files.

``.cfg`` is what ``mlp train`` and ``mlp calc-efs`` consume and produce, so datasets must pass
through it without loss. Reading follows REFERENCE.md section 2: sections are recognised by
keyword, ``AtomData`` and ``PlusStress`` columns by *name* (files differ in column order and
carry extra columns such as ``nbh_grades``), unknown sections (``EnergyWeight``, ...) are
skipped, and ``Feature`` lines are kept verbatim. Anything that would silently corrupt the
data (an atom count not matching ``Size``, a non-integer type, a short row, a missing
``END_CFG``, a 1D/2D ``Supercell``) raises :class:`~mlipress.io.errors.FileFormatError`
naming the file, line and field.

Writing uses MLIP's layout but shortest round-trip float formatting (``repr``), so
read -> write -> read reproduces every number bit for bit; MLIP parses these fine.
"""

from __future__ import annotations

import os

import numpy as np

from mlipress.data import Configuration, Dataset, matrix_to_voigt, voigt_to_matrix
from mlipress.io.atomic import atomic_write
from mlipress.io.errors import FileFormatError

__all__ = ["read_cfg", "parse_cfg", "write_cfg", "format_cfg"]

_STRESS_COLUMNS = ("xx", "yy", "zz", "yz", "xz", "xy")
_POSITION_COLUMNS = {"cartes": ("cartes_x", "cartes_y", "cartes_z"), "direct": ("direct_x", "direct_y", "direct_z")}
_FORCE_COLUMNS = ("fx", "fy", "fz")
# MLIP-3's magnetic columns: the moment vector and dE/dm; collinear moments lie along x.
_MAGMOM_COLUMNS = ("magmom_x", "magmom_y", "magmom_z")
_EN_DER_COLUMNS = ("en_der_mx", "en_der_my", "en_der_mz")


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


class _Lines:
    """A cursor over the file's lines that knows the 1-based line number of each."""

    def __init__(self, text: str, path: str):
        self.lines = text.splitlines()
        self.k = 0
        self.path = path

    def done(self) -> bool:
        return self.k >= len(self.lines)

    @property
    def lineno(self) -> int:
        return self.k + 1

    def peek(self) -> str:
        return self.lines[self.k]

    def next_data_line(self, field: str) -> tuple[list[str], int]:
        """The next non-blank line as tokens; it must start with a number."""
        while not self.done() and not self.peek().strip():
            self.k += 1
        if self.done():
            raise FileFormatError(self.path, "unexpected end of file", line=self.k, field=field)
        tokens, line = self.peek().split(), self.lineno
        if not _is_number(tokens[0]):
            raise FileFormatError(self.path, f"expected a value, got {self.peek().strip()!r}", line=line, field=field)
        self.k += 1
        return tokens, line

    def numeric_block(self) -> list[tuple[list[str], int]]:
        """Consecutive lines starting with a number (blank lines in between are skipped)."""
        rows = []
        while not self.done():
            s = self.peek().split()
            if s and not _is_number(s[0]):
                break
            if s:
                rows.append((s, self.lineno))
            self.k += 1
        return rows


def _err(path, message, line, field):
    return FileFormatError(path, message, line=line, field=field)


def _to_float(token, path, line, field) -> float:
    try:
        return float(token)
    except ValueError:
        raise _err(path, f"expected a number, got {token!r}", line, field) from None


def _to_int(token, path, line, field) -> int:
    try:
        return int(token)
    except ValueError:
        raise _err(path, f"expected an integer, got {token!r}", line, field) from None


def _header_columns(header: str, path, line, field) -> list[str]:
    """Column names after ``AtomData:`` / ``PlusStress:``; duplicates are an error."""
    columns = header.split()
    if len(set(columns)) != len(columns):
        raise _err(path, f"duplicate column names in {columns}", line, field)
    return columns


def _atom_data(rows, columns, size, path, header_line):
    """Parse the AtomData rows into types, positions (cartesian or direct) and forces."""
    if len(rows) != size:
        where = rows[size][1] if len(rows) > size else header_line
        raise _err(path, f"Size is {size} but AtomData has {len(rows)} atom lines", where, "Size")
    for tokens, line in rows:
        if len(tokens) < len(columns):
            raise _err(
                path, f"{len(tokens)} values but the AtomData header names {len(columns)} columns",
                line, columns[len(tokens)],
            )  # fmt: skip
    index = {name: c for c, name in enumerate(columns)}
    if "type" not in index:
        raise _err(path, "AtomData has no 'type' column", header_line, "AtomData")
    kinds = [kind for kind, names in _POSITION_COLUMNS.items() if all(n in index for n in names)]
    if not kinds:
        raise _err(path, "AtomData needs cartes_x/y/z or direct_x/y/z columns", header_line, "AtomData")
    present_forces = [n for n in _FORCE_COLUMNS if n in index]
    if present_forces and len(present_forces) != 3:
        raise _err(path, f"AtomData has {present_forces} but not all of fx fy fz", header_line, "AtomData")

    def column(name, convert):
        c = index[name]
        return [convert(tokens[c], path, line, name) for tokens, line in rows]

    def collinear(names):
        """The x column of a (x, y, z) triple of MLIP-3 magnetic columns, or None; y, z must be 0."""
        present = [n for n in names if n in index]
        if not present:
            return None
        if len(present) != 3:
            raise _err(path, f"AtomData has {present} but not all of {' '.join(names)}", header_line, "AtomData")
        for name in names[1:]:
            for (tokens, line), v in zip(rows, column(name, _to_float)):
                if v != 0.0:
                    raise _err(path, f"non-collinear magnetic data ({name} = {v}); only collinear "
                               "moments (along x, MLIP-3's convention) are supported", line, name)
        return np.array(column(names[0], _to_float), dtype=np.float64)

    types = np.array(column("type", _to_int), dtype=np.int64)
    for (tokens, line), t in zip(rows, types):
        if t < 0:
            raise _err(path, f"type must be >= 0 (types are 0-based), got {t}", line, "type")
    kind = kinds[0]
    xyz = np.array([column(n, _to_float) for n in _POSITION_COLUMNS[kind]], dtype=np.float64).T.reshape(-1, 3)
    forces = None
    if present_forces:
        forces = np.array([column(n, _to_float) for n in _FORCE_COLUMNS], dtype=np.float64).T.reshape(-1, 3)
    en_der = collinear(_EN_DER_COLUMNS)
    return types, kind, xyz, forces, collinear(_MAGMOM_COLUMNS), None if en_der is None else -en_der


def _supercell(block, path, line):
    if not 1 <= len(block) <= 3:
        raise _err(path, f"Supercell has {len(block)} rows, expected 3", line, "Supercell")
    if len(block) < 3:
        raise _err(
            path, f"Supercell has {len(block)} row(s): only 3D-periodic (3 rows) or non-periodic "
            "(no Supercell) configurations are supported", line, "Supercell",
        )  # fmt: skip
    cell = np.empty((3, 3))
    for r, (tokens, row_line) in enumerate(block):
        if len(tokens) != 3:
            raise _err(path, f"a lattice vector needs 3 components, got {len(tokens)}", row_line, "Supercell")
        cell[r] = [_to_float(t, path, row_line, "Supercell") for t in tokens]
    return cell


def _one_configuration(cur: _Lines, begin_line: int) -> Configuration:
    """Parse from just after BEGIN_CFG through END_CFG."""
    path = cur.path
    size = cell = energy = virial = forces = None
    atoms = None  # (types, kind, xyz, forces)
    features: list[tuple[str, str]] = []
    while True:
        if cur.done():
            raise _err(path, f"configuration starting on line {begin_line} has no END_CFG", cur.k, "END_CFG")
        raw, line = cur.peek(), cur.lineno
        s = raw.strip()
        cur.k += 1
        if not s:
            continue
        word, rest = (s.split(None, 1) + [""])[:2]
        if s == "END_CFG":
            break
        if word == "BEGIN_CFG":
            raise _err(path, f"configuration starting on line {begin_line} has no END_CFG", line, "END_CFG")
        if word == "Size":
            tokens, size_line = cur.next_data_line("Size")
            size = _to_int(tokens[0], path, size_line, "Size")
            if size < 0:
                raise _err(path, f"Size must be >= 0, got {size}", size_line, "Size")
        elif word == "Supercell":
            cell = _supercell(cur.numeric_block(), path, line)
        elif word.startswith("AtomData"):
            if size is None:
                raise _err(path, "AtomData before Size", line, "Size")
            header = s.split(":", 1)[1] if ":" in s else rest
            columns = _header_columns(header, path, line, "AtomData")
            atoms = _atom_data(cur.numeric_block(), columns, size, path, line)
        elif word == "Energy":
            tokens, e_line = cur.next_data_line("Energy")
            energy = _to_float(tokens[0], path, e_line, "Energy")
        elif word.startswith("PlusStress"):
            header = s.split(":", 1)[1] if ":" in s else rest
            columns = _header_columns(header, path, line, "PlusStress")
            missing = [c for c in _STRESS_COLUMNS if c not in columns]
            if missing:
                raise _err(path, f"PlusStress header lacks column(s) {missing}", line, "PlusStress")
            tokens, s_line = cur.next_data_line("PlusStress")
            if len(tokens) < len(columns):
                raise _err(path, f"{len(tokens)} values for {len(columns)} columns", s_line, columns[len(tokens)])
            values = {name: _to_float(tokens[c], path, s_line, name) for c, name in enumerate(columns)}
            virial = voigt_to_matrix([values[c] for c in _STRESS_COLUMNS])
        elif word == "Feature":
            name, value = (rest.split(None, 1) + [""])[:2]
            if not name:
                raise _err(path, "Feature line without a name", line, "Feature")
            features.append((name, value.strip()))
        else:
            cur.numeric_block()  # an unknown section (EnergyWeight, ...): skip it with its data lines
    if size is None:
        raise _err(path, f"configuration starting on line {begin_line} has no Size", begin_line, "Size")
    if atoms is None:
        if size:
            raise _err(path, f"configuration starting on line {begin_line} has no AtomData", begin_line, "AtomData")
        atoms = (np.zeros(0, np.int64), "cartes", np.zeros((0, 3)), None, None, None)
    types, kind, xyz, forces, magmoms, magmom_forces = atoms
    if kind == "direct":
        if cell is None:
            raise _err(path, "direct_x/y/z coordinates need a Supercell", begin_line, "Supercell")
        xyz = xyz @ cell
    return Configuration(xyz, types, cell, energy, forces, virial, tuple(features), magmoms, magmom_forces)


def parse_cfg(text: str, path="<string>", species=None) -> Dataset:
    """Parse the text of a ``.cfg`` file; ``path`` is only used in error messages."""
    from mlipress.io import parse_species  # here to avoid an import cycle with the package

    path = os.fspath(path)
    cur = _Lines(text, path)
    configs = []
    while not cur.done():
        s, line = cur.peek().strip(), cur.lineno
        cur.k += 1
        if not s:
            continue
        if s != "BEGIN_CFG":
            raise _err(path, f"expected BEGIN_CFG, got {s[:40]!r}", line, "BEGIN_CFG")
        configs.append(_one_configuration(cur, line))
    species = parse_species(species)
    if species is not None:
        max_type = max((int(c.types.max()) for c in configs if c.natoms), default=-1)
        if max_type >= len(species):
            raise FileFormatError(path, f"type {max_type} has no element in species {species}", field="type")
    return Dataset(tuple(configs), species)


def read_cfg(path, species=None) -> Dataset:
    """Read an MLIP ``.cfg`` file; ``species`` (symbols in type order) sets ``Dataset.species``."""
    with open(path, encoding="utf-8") as handle:
        return parse_cfg(handle.read(), path, species)


# --------------------------------------------------------------------------- writing


_W = 21  # column width; ``%r`` is the shortest repr that parses back to the same float
_ROW3 = " ".join(["%21r"] * 3)
_ATOM = "%14d %4d " + _ROW3
_ATOM_F = _ATOM + " " + _ROW3


def _format_configuration(c: Configuration) -> str:
    out = ["BEGIN_CFG", " Size", f"    {c.natoms}"]
    if c.cell is not None:
        out.append(" Supercell")
        out += ["    " + _ROW3 % tuple(row) for row in c.cell.tolist()]
    header = " AtomData:  id type " + " ".join(n.rjust(_W) for n in _POSITION_COLUMNS["cartes"])
    ids = range(1, c.natoms + 1)
    if c.forces is not None:
        header += " " + " ".join(n.rjust(_W) for n in _FORCE_COLUMNS)
        rows = zip(ids, c.types.tolist(), c.positions.tolist(), c.forces.tolist())
        atoms = [_ATOM_F % (a, t, *p, *f) for a, t, p, f in rows]
    else:
        atoms = [_ATOM % (a, t, *p) for a, t, p in zip(ids, c.types.tolist(), c.positions.tolist())]
    # MLIP-3's magnetic columns (moment along x; en_der = dE/dm = -magmom_forces)
    for names, values in ((_MAGMOM_COLUMNS, c.magmoms), (_EN_DER_COLUMNS, c.magmom_forces)):
        if values is not None:
            header += " " + " ".join(n.rjust(_W) for n in names)
            sign = -1.0 if names is _EN_DER_COLUMNS else 1.0
            atoms = [row + " " + _ROW3 % (sign * v + 0.0, 0.0, 0.0) for row, v in zip(atoms, values.tolist())]
    out.append(header)
    out += atoms
    if c.energy is not None:
        out += [" Energy", "    " + repr(float(c.energy))]
    if c.virial is not None:
        out.append(" PlusStress: " + " ".join(n.rjust(_W) for n in _STRESS_COLUMNS))
        out.append("    " + " ".join(["%21r"] * 6) % tuple(matrix_to_voigt(c.virial).tolist()))
    out += [f" Feature   {name}\t{value}" for name, value in c.features]
    out.append("END_CFG")
    return "\n".join(out) + "\n"


def format_cfg(dataset: Dataset) -> str:
    """The text of ``dataset`` in MLIP ``.cfg`` layout, one blank line after each END_CFG."""
    configs = dataset.configurations if isinstance(dataset, Dataset) else tuple(dataset)
    return "\n".join(_format_configuration(c) for c in configs) + ("\n" if configs else "")


def write_cfg(dataset: Dataset, path) -> None:
    """Write ``dataset`` (or an iterable of Configuration) as ``.cfg``, atomically."""
    atomic_write(path, format_cfg(dataset))
