"""Read and write MLIP ``.mtp`` potential files (and the MTP part of MLIP-3 ``.almtp``).

The file is the interchange point with MLIP (``mlp train``, ``mlp calc-efs``, LAMMPS
``pair_style mlip``), so reading must accept everything MLIP writes and writing must produce
exactly MLIP's layout: a trained potential written here is byte-identical to the one MLIP
wrote, and an untrained one to MLIP's own templates. See REFERENCE.md section 2.

Reading is tolerant where MLIP files legitimately vary (key order, spaces vs tabs, lists
spanning lines, empty ``potential_tag``, missing ``scaling``) and strict where a mistake
would silently change the potential (counts disagreeing with lists, a missing species pair,
an unknown radial basis): those raise :class:`~mlipress.io.errors.FileFormatError` naming
the file, line and key.

Floats are written as ``%.15e`` (MLIP's 16 significant digits). Every value read from a
file therefore survives read -> write -> read bit for bit; a value that 16 digits cannot
represent exactly (e.g. straight out of an optimiser) is written with 17 so that it, too,
round-trips.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from mlipress.io.atomic import atomic_write
from mlipress.io.errors import FileFormatError
from mlipress.models.mtp.magnetic import MAGNETIC_BASIS_TYPES, MagneticBasis, MagneticMTP
from mlipress.models.mtp.model import MTP, MomentBasis, RadialBasis

__all__ = ["read_mtp", "parse_mtp", "write_mtp", "format_mtp", "RADIAL_BASIS_TYPES"]

RADIAL_BASIS_TYPES = ("RBChebyshev", "RBChebyshev_repuls")
MVS_MARKER = "#MVS_v1.1"  # start of the MLIP-3 active-learning block in .almtp files

_KNOWN_KEYS = {
    "version", "potential_name", "scaling", "species_count", "potential_tag",
    "radial_basis_type", "min_dist", "max_dist", "radial_basis_size", "radial_funcs_count",
    "alpha_moments_count", "alpha_index_basic_count", "alpha_index_basic",
    "alpha_index_times_count", "alpha_index_times", "alpha_scalar_moments",
    "alpha_moment_mapping", "species_coeffs", "moment_coeffs",
    "magnetic_basis_type", "min_val", "max_val", "basis_size",  # MLIP-3's magnetic MTP
}  # fmt: skip
_PAIR_HEADER = re.compile(r"^(\d+)\s*-\s*(\d+)$")
_ROW = re.compile(r"\{([^{}]*)\}")


# --------------------------------------------------------------------------- scanning


@dataclass
class _RadialBlock:
    i: int
    j: int
    line: int
    rows: list[tuple[str, int]] = field(default_factory=list)  # (text inside {...}, line)


@dataclass
class _Scan:
    """The file split into ``key -> (value text, line)`` plus the raw radial_coeffs blocks."""

    path: str
    entries: dict[str, tuple[str, int]]
    radial_line: int | None
    radial_blocks: list[_RadialBlock]


def _braced_value(lines, start: int, value: str, path, key: str) -> tuple[str, int]:
    """Join continuation lines until the braces of ``value`` balance; returns (text, next index)."""
    depth = value.count("{") - value.count("}")
    parts = [value]
    k = start + 1
    while depth > 0:
        if k >= len(lines) or lines[k].strip().startswith(MVS_MARKER):
            raise FileFormatError(path, "unclosed '{'", line=start + 1, field=key)
        parts.append(lines[k].strip())
        depth += lines[k].count("{") - lines[k].count("}")
        k += 1
    if depth < 0:
        raise FileFormatError(path, "unbalanced '}'", line=start + 1, field=key)
    return " ".join(parts), k


def _scan(text: str, path: str) -> _Scan:
    lines = text.splitlines()
    k = 0
    while k < len(lines) and not lines[k].strip():
        k += 1
    if k >= len(lines) or lines[k].strip() != "MTP":
        raise FileFormatError(path, "not an MTP file: the first line must be 'MTP'", line=min(k, len(lines)) + 1)
    k += 1
    entries: dict[str, tuple[str, int]] = {}
    radial_line = None
    blocks: list[_RadialBlock] = []
    in_radial = False
    while k < len(lines):
        lineno = k + 1
        s = lines[k].strip()
        if s.startswith(MVS_MARKER):
            break
        if not s or s.startswith("#"):
            k += 1
            continue
        if "=" in s:
            in_radial = False
            key, _, value = s.partition("=")
            key, value = key.strip(), value.strip()
            if not key:
                raise FileFormatError(path, "missing key before '='", line=lineno)
            if key in entries:
                raise FileFormatError(path, f"duplicate key (first on line {entries[key][1]})", line=lineno, field=key)
            if "{" in value:
                value, k = _braced_value(lines, k, value, path, key)
            else:
                k += 1
            entries[key] = (value, lineno)
            continue
        if s == "radial_coeffs":
            if radial_line is not None:
                raise FileFormatError(path, f"duplicate block (first on line {radial_line})", line=lineno, field=s)
            radial_line, in_radial = lineno, True
            k += 1
            continue
        if in_radial:
            header = _PAIR_HEADER.match(s)
            if header:
                blocks.append(_RadialBlock(int(header.group(1)), int(header.group(2)), lineno))
                k += 1
                continue
            if s.startswith("{") and blocks:
                value, k = _braced_value(lines, k, s, path, "radial_coeffs")
                blocks[-1].rows.append((value, lineno))
                continue
            raise FileFormatError(
                path, f"expected a species pair header like '0-1' or a '{{...}}' row, got {s!r}",
                line=lineno, field="radial_coeffs",
            )  # fmt: skip
        raise FileFormatError(path, f"expected 'key = value', got {s!r}", line=lineno, field=s.split()[0])
    return _Scan(path, entries, radial_line, blocks)


# --------------------------------------------------------------------------- values


def _int(token: str, path, line, key) -> int:
    try:
        return int(token)
    except ValueError:
        raise FileFormatError(path, f"expected an integer, got {token.strip()!r}", line=line, field=key) from None


def _float(token: str, path, line, key) -> float:
    try:
        return float(token)
    except ValueError:
        raise FileFormatError(path, f"expected a number, got {token.strip()!r}", line=line, field=key) from None


def _list_tokens(value: str, path, line, key) -> list[str]:
    """``{a, b, c}`` -> ['a', 'b', 'c']; ``{}`` -> []."""
    if not (value.startswith("{") and value.endswith("}")):
        raise FileFormatError(path, f"expected a list in braces, got {value[:40]!r}", line=line, field=key)
    inner = value[1:-1].strip()
    if not inner:
        return []
    tokens = [t.strip() for t in inner.split(",")]
    if any(not t for t in tokens):
        raise FileFormatError(path, "empty list element (stray comma?)", line=line, field=key)
    return tokens


def _int_rows(value: str, width: int, path, line, key) -> np.ndarray:
    """``{{0, 1, 0, 0}, {...}}`` -> (n, width) int array."""
    if not (value.startswith("{") and value.endswith("}")):
        raise FileFormatError(path, f"expected a list of lists in braces, got {value[:40]!r}", line=line, field=key)
    inner = value[1:-1]
    groups = _ROW.findall(inner)
    if _ROW.sub("", inner).replace(",", "").strip():
        raise FileFormatError(path, "malformed list of lists", line=line, field=key)
    out = np.empty((len(groups), width), dtype=np.int64)
    for r, group in enumerate(groups):
        tokens = group.split(",")
        if len(tokens) != width:
            raise FileFormatError(
                path, f"row {r} {{{group.strip()}}} has {len(tokens)} entries, expected {width}", line=line, field=key
            )
        out[r] = [_int(t, path, line, key) for t in tokens]
    return out


class _Fields:
    """Typed access to the scanned entries, raising FileFormatError with the key's line."""

    def __init__(self, scan: _Scan):
        self.scan = scan
        self.path = scan.path

    def line(self, key):
        entry = self.scan.entries.get(key)
        return entry[1] if entry else None

    def has(self, key) -> bool:
        return key in self.scan.entries

    def raw(self, key, default=None, required=True) -> str | None:
        if key in self.scan.entries:
            return self.scan.entries[key][0]
        if required:
            raise FileFormatError(self.path, "missing required key", field=key)
        return default

    def integer(self, key, minimum=0) -> int:
        value = _int(self.raw(key), self.path, self.line(key), key)
        if value < minimum:
            raise FileFormatError(self.path, f"must be >= {minimum}, got {value}", line=self.line(key), field=key)
        return value

    def number(self, key, default=None) -> float:
        raw = self.raw(key, required=default is None)
        return default if raw is None else _float(raw, self.path, self.line(key), key)

    def floats(self, key, count: int, count_key: str) -> np.ndarray | None:
        if not self.has(key):
            return None
        line = self.line(key)
        tokens = _list_tokens(self.raw(key), self.path, line, key)
        if len(tokens) != count:
            raise FileFormatError(
                self.path, f"has {len(tokens)} values but {count_key} = {count}", line=line, field=key
            )
        return np.array([_float(t, self.path, line, key) for t in tokens], dtype=np.float64)

    def counted(self, key, count_key, width=None) -> np.ndarray:
        """An index list (``width`` None) or list of rows whose length must equal ``count_key``."""
        count = self.integer(count_key)
        if not self.has(key) and count == 0:
            return np.zeros((0, width) if width else (0,), dtype=np.int64)
        line = self.line(key)
        raw = self.raw(key)
        if width is None:
            values = np.array([_int(t, self.path, line, key) for t in _list_tokens(raw, self.path, line, key)])
            values = values.astype(np.int64)
        else:
            values = _int_rows(raw, width, self.path, line, key)
        if len(values) != count:
            noun = "rows" if width else "entries"
            raise FileFormatError(
                self.path, f"has {len(values)} {noun} but {count_key} = {count}", line=line, field=key
            )
        return values


# --------------------------------------------------------------------------- reading


def _radial_coeffs(f: _Fields, nt: int, nf: int, nb: int, size_label: str = "") -> np.ndarray | None:
    scan = f.scan
    if scan.radial_line is None:
        return None
    path, key = f.path, "radial_coeffs"
    coeffs = np.full((nt, nt, nf, nb), np.nan)
    seen: dict[tuple[int, int], int] = {}
    for block in scan.radial_blocks:
        pair = (block.i, block.j)
        if block.i >= nt or block.j >= nt:
            raise FileFormatError(
                path, f"pair {block.i}-{block.j} is out of range for species_count = {nt}", line=block.line, field=key
            )
        if pair in seen:
            raise FileFormatError(
                path, f"duplicate pair {block.i}-{block.j} (first on line {seen[pair]})", line=block.line, field=key
            )
        seen[pair] = block.line
        if len(block.rows) != nf:
            raise FileFormatError(
                path, f"pair {block.i}-{block.j} has {len(block.rows)} rows but radial_funcs_count = {nf}",
                line=block.line, field=key,
            )  # fmt: skip
        for mu, (text, line) in enumerate(block.rows):
            tokens = _list_tokens(text, path, line, key)
            if len(tokens) != nb:
                raise FileFormatError(
                    path, f"row has {len(tokens)} values but radial_basis_size{size_label} = {nb}", line=line, field=key
                )
            coeffs[block.i, block.j, mu] = [_float(t, path, line, key) for t in tokens]
    missing = [f"{i}-{j}" for i in range(nt) for j in range(nt) if (i, j) not in seen]
    if missing:
        shown = ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else "")
        raise FileFormatError(path, f"missing species pair block(s) {shown}", line=scan.radial_line, field=key)
    return coeffs


def _magnetic_basis(f: _Fields) -> MagneticBasis:
    """MLIP-3's magnetic basis block: ``magnetic_basis_type``, ``min_val``, ``max_val``, ``basis_size``."""
    kind = f.raw("magnetic_basis_type")
    if kind not in MAGNETIC_BASIS_TYPES:
        raise FileFormatError(f.path, f"unknown magnetic basis {kind!r} (supported: {', '.join(MAGNETIC_BASIS_TYPES)})",
                              line=f.line("magnetic_basis_type"), field="magnetic_basis_type")
    try:
        return MagneticBasis(f.number("min_val"), f.number("max_val"), f.integer("basis_size", minimum=1), kind)
    except ValueError as exc:
        raise FileFormatError(f.path, str(exc), line=f.line("min_val"), field="min_val") from None


def _check_indices(f: _Fields, basic, times, mapping, count: int, nf: int) -> None:
    """Index ranges, checked here so the error names the offending key and line."""
    path = f.path
    if len(basic) > count:
        raise FileFormatError(
            path, f"{len(basic)} basic moments exceed alpha_moments_count = {count}",
            line=f.line("alpha_index_basic"), field="alpha_index_basic",
        )  # fmt: skip
    if len(basic) and (basic[:, 0].min() < 0 or basic[:, 0].max() >= nf or basic[:, 1:].min() < 0):
        raise FileFormatError(
            path, f"radial function index must lie in [0, {nf}) (radial_funcs_count) and powers must be >= 0",
            line=f.line("alpha_index_basic"), field="alpha_index_basic",
        )  # fmt: skip
    if len(times) and (times[:, [0, 1, 3]].min() < 0 or times[:, [0, 1, 3]].max() >= count):
        raise FileFormatError(
            path, f"moment index outside [0, {count}) (alpha_moments_count)",
            line=f.line("alpha_index_times"), field="alpha_index_times",
        )  # fmt: skip
    if len(mapping) and (mapping.min() < 0 or mapping.max() >= count):
        raise FileFormatError(
            path, f"moment index outside [0, {count}) (alpha_moments_count)",
            line=f.line("alpha_moment_mapping"), field="alpha_moment_mapping",
        )  # fmt: skip


def parse_mtp(text: str, path="<string>") -> MTP:
    """Parse the text of an ``.mtp`` (or ``.almtp``) file; ``path`` is only used in errors."""
    path = os.fspath(path)
    scan = _scan(text, path)
    f = _Fields(scan)
    for key, (_, line) in scan.entries.items():
        if key not in _KNOWN_KEYS:
            warnings.warn(f"{path}, line {line}: ignoring unknown key {key!r}", stacklevel=3)
    version = f.raw("version", required=False)
    if version is not None and version != "1.1.0":
        warnings.warn(f"{path}: MTP version {version!r} is not 1.1.0; reading it as 1.1.0", stacklevel=3)

    nt = f.integer("species_count", minimum=1)
    kind = f.raw("radial_basis_type")
    if kind not in RADIAL_BASIS_TYPES:
        raise FileFormatError(
            path, f"unknown radial basis {kind!r} (supported: {', '.join(RADIAL_BASIS_TYPES)})",
            line=f.line("radial_basis_type"), field="radial_basis_type",
        )  # fmt: skip
    min_dist, max_dist = f.number("min_dist"), f.number("max_dist")
    nb = f.integer("radial_basis_size", minimum=1)
    nf = f.integer("radial_funcs_count", minimum=1)
    try:
        radial = RadialBasis(min_dist, max_dist, nb, kind)
    except ValueError as exc:
        raise FileFormatError(path, str(exc), line=f.line("min_dist"), field="min_dist") from None

    count = f.integer("alpha_moments_count")
    basic = f.counted("alpha_index_basic", "alpha_index_basic_count", width=4)
    times = f.counted("alpha_index_times", "alpha_index_times_count", width=4)
    mapping = f.counted("alpha_moment_mapping", "alpha_scalar_moments")
    _check_indices(f, basic, times, mapping, count, nf)

    magnetic = None
    if f.has("magnetic_basis_type"):
        magnetic = _magnetic_basis(f)
    per_mu = nb * (magnetic.size ** 2 if magnetic is not None else 1)
    values = dict(
        scaling=f.number("scaling", default=1.0),
        radial_coeffs=_radial_coeffs(f, nt, nf, per_mu, "" if magnetic is None else " x basis_size^2"),
        species_coeffs=f.floats("species_coeffs", nt, "species_count"),
        moment_coeffs=f.floats("moment_coeffs", len(mapping), "alpha_scalar_moments"),
        potential_name=f.raw("potential_name", default="MTP1m", required=False),
        potential_tag=f.raw("potential_tag", default="", required=False),
    )
    if magnetic is not None:
        values["magnetic_basis"] = magnetic
    model = MTP if magnetic is None else MagneticMTP
    try:
        return model(nt, radial, nf, MomentBasis(basic, times, mapping, count), **values)
    except ValueError as exc:  # anything else the model itself rejects
        raise FileFormatError(path, str(exc)) from None


def read_mtp(path) -> MTP:
    """Read an MLIP ``.mtp`` file (trained or untrained) or the MTP part of an ``.almtp``."""
    with open(path, encoding="utf-8") as handle:
        return parse_mtp(handle.read(), path)


# --------------------------------------------------------------------------- writing


def _fmt(x: float) -> str:
    """MLIP's ``%.15e``, widened to 17 digits only when 16 would not round-trip."""
    s = "%.15e" % x
    if float(s) != x and x == x:
        s = "%.16e" % x
    return s


def _short(x: float) -> str:
    """Shortest round-trip form without a trailing '.0', as in MLIP's untrained templates."""
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


def _braces(items) -> str:
    return "{" + ", ".join(items) + "}"


def format_mtp(mtp: MTP) -> str:
    """The text of ``mtp`` as MLIP writes it (``scaling`` when trained or != 1)."""
    rb = mtp.radial_basis
    dist = _fmt if mtp.radial_coeffs is not None else _short
    out = ["MTP", "version = 1.1.0", f"potential_name = {mtp.potential_name}"]
    if mtp.trained or mtp.scaling != 1.0:
        out.append(f"scaling = {_fmt(mtp.scaling)}")
    out += [
        f"species_count = {mtp.species_count}",
        f"potential_tag = {mtp.potential_tag}",
        f"radial_basis_type = {rb.kind}",
        f"\tmin_dist = {dist(rb.min_dist)}",
        f"\tmax_dist = {dist(rb.max_dist)}",
        f"\tradial_basis_size = {rb.size}",
    ]
    if isinstance(mtp, MagneticMTP):  # MLIP-3's layout: the magnetic basis, then radial_funcs_count
        mb = mtp.magnetic_basis
        out += [f"magnetic_basis_type = {mb.kind}", f"\tmin_val = {dist(mb.min_val)}", f"\tmax_val = {dist(mb.max_val)}",
                f"\tbasis_size = {mb.size}"]
    out += [
        f"\tradial_funcs_count = {mtp.radial_funcs_count}",
    ]
    if mtp.radial_coeffs is not None:
        out.append("\tradial_coeffs")
        nt = mtp.species_count
        for i in range(nt):
            for j in range(nt):
                out.append(f"\t\t{i}-{j}")
                out += ["\t\t\t" + _braces(map(_fmt, row)) for row in mtp.radial_coeffs[i, j].tolist()]
    m = mtp.moments
    rows = lambda arr: _braces(_braces(map(str, r)) for r in arr.tolist())  # noqa: E731
    out += [
        f"alpha_moments_count = {m.count}",
        f"alpha_index_basic_count = {len(m.basic)}",
        f"alpha_index_basic = {rows(m.basic)}",
        f"alpha_index_times_count = {len(m.times)}",
        f"alpha_index_times = {rows(m.times)}",
        f"alpha_scalar_moments = {len(m.mapping)}",
        f"alpha_moment_mapping = {_braces(map(str, m.mapping.tolist()))}",
    ]
    if mtp.species_coeffs is not None:
        out.append(f"species_coeffs = {_braces(map(_fmt, mtp.species_coeffs.tolist()))}")
    if mtp.moment_coeffs is not None:
        out.append(f"moment_coeffs = {_braces(map(_fmt, mtp.moment_coeffs.tolist()))}")
    return "\n".join(out) + "\n"


def write_mtp(mtp: MTP, path) -> None:
    """Write ``mtp`` to ``path`` in MLIP's layout, atomically (an old file survives a crash)."""
    atomic_write(path, format_mtp(mtp))
