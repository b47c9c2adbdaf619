"""MLIP-2's active-learning state file (``.als``): write it for MLIP-2, read it back.

The layout, as MLIP-2 writes and reads it (the reference ``cubic10.als`` shows every part):

1. the potential, as its ``.mtp`` text (without a final newline);
2. ``"\\n^"``, then four float64 (native byte order): the weights of the neighbourhood,
   energy, force and stress rows -- configuration-wise grades are ``0, 1, 0, 0``;
3. ``"\\n#"``, then the active matrix ``A`` (n x n float64, row-major) and its inverse,
   transposed (``inv(A).T``, row-major), then ``"\\n"``;
4. n lines ``"i k"``: active row i holds configuration k, configurations numbered in order
   of first appearance; every placeholder row (MLIP-2's ``1e-5 * I`` start) holds the same
   empty configuration;
5. those configurations, each once, in that order, in MLIP's lossless ``.cfg`` layout
   (``%.16e`` numbers); the empty one has ``Size 0`` and an identity supercell.

MLIP-2 knows dense MTPs graded configuration-wise in all their coefficients (radial, species,
moment: the columns of :func:`mlipress.active.grade.parameter_names` with ``wrt="all"``), so
only that active set can be written; compressed potentials and ``nbh``/``linear`` grades stay
in mlipress's own ``POT.active.npz`` (:mod:`mlipress.active.state`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.linalg

from mlipress.active.grade import GradeSettings
from mlipress.active.maxvol import ActiveSet
from mlipress.data import Configuration, matrix_to_voigt
from mlipress.io.atomic import atomic_write
from mlipress.io.cfg import parse_cfg

__all__ = ["format_als", "write_als", "parse_als", "read_als", "CFG_WEIGHTS"]

#: (neighbourhood, energy, force, stress) row weights of configuration-wise grades.
CFG_WEIGHTS = (0.0, 1.0, 0.0, 0.0)


def _e(x: float) -> str:
    return "%.16e" % x


def _lossless_cfg(c: Configuration | None) -> str:
    """One configuration in MLIP's lossless layout; None: the empty placeholder one."""
    if c is None:
        c = Configuration(np.zeros((0, 3)), np.zeros(0, int), np.eye(3))
    out = ["BEGIN_CFG", " Size", f"    {c.natoms}"]
    if c.cell is not None:
        out += [" Supercell"] + ["    " + " ".join(map(_e, row)) for row in c.cell.tolist()]
    header = " AtomData:  id type       cartes_x      cartes_y      cartes_z"
    if c.forces is not None:
        header += "           fx          fy          fz"
    out.append(header)
    for k in range(c.natoms):
        line = f"    {k + 1} {int(c.types[k])}  " + " ".join(map(_e, c.positions[k].tolist()))
        if c.forces is not None:
            line += "  " + " ".join(map(_e, c.forces[k].tolist()))
        out.append(line)
    if c.energy is not None:
        out += [" Energy", "    " + _e(c.energy)]
    if c.virial is not None:
        out += [" PlusStress:  xx          yy          zz          yz          xz          xy",
                "     " + " ".join(map(_e, matrix_to_voigt(c.virial).tolist()))]
    out += [f" Feature   {name}\t{value}" for name, value in c.features]
    return "\n".join(out + ["END_CFG", "", ""])


def format_als(mtp_text: str, active: ActiveSet, train: Sequence[Configuration],
               weights: tuple[float, float, float, float] = CFG_WEIGHTS) -> bytes:
    """The ``.als`` bytes of ``active`` (sources: indices into ``train``, < 0 placeholders)."""
    if any(s >= len(train) for s in active.sources):
        raise ValueError(f"active set refers to configuration {active.sources.max()}, "
                         f"the training set has {len(train)}")
    numbers: dict[int, int] = {}
    for s in active.sources.tolist():
        numbers.setdefault(s if s >= 0 else -1, len(numbers))
    inv = scipy.linalg.inv(active.rows)
    out = [mtp_text.rstrip("\n").encode(), b"\n^", np.asarray(weights, dtype=np.float64).tobytes(), b"\n#",
           np.ascontiguousarray(active.rows).tobytes(), np.ascontiguousarray(inv.T).tobytes(), b"\n"]
    out += [f"{i} {numbers[s if s >= 0 else -1]}\n".encode() for i, s in enumerate(active.sources.tolist())]
    out += [_lossless_cfg(None if s < 0 else train[s]).encode() for s in numbers]
    return b"".join(out)


def write_als(path, mtp, params, active: ActiveSet, train: Sequence[Configuration],
              settings: GradeSettings = GradeSettings()) -> None:
    """Write the active set of a dense MTP (configuration-wise, all coefficients) as MLIP-2's
    ``.als``, atomically, so MLIP-2 (``mlp calc-grade --als-filename``) can go on from it."""
    if settings.mode != "cfg" or settings.wrt != "all":
        raise ValueError(f"MLIP-2's .als holds configuration-wise grades in all coefficients; "
                         f"got mode={settings.mode!r}, wrt={settings.wrt!r}")
    from mlipress.io.mtp import format_mtp
    from mlipress.models.layers import Dense

    if not isinstance(getattr(params, "radial", None), Dense) or active.size != mtp.num_params()["total"]:
        raise ValueError("MLIP-2's .als needs the active set of a dense MTP in all its coefficients "
                         "(a compressed potential's is in its factors)")
    atomic_write(path, format_als(format_mtp(mtp.with_params(params)), active, train))


def parse_als(raw: bytes, path="<bytes>") -> dict:
    """The parts of an ``.als`` (module docstring): ``mtp_text``, ``weights`` (4,), ``A``,
    ``inverse`` (n, n; ``inv(A)``), ``numbers`` (n,) and ``configurations`` (the numbered
    ones, None for the empty placeholder configuration)."""
    from mlipress.io.mtp import parse_mtp

    try:
        mark = raw.index(b"\n^")
        text = raw[:mark].decode()
        n = parse_mtp(text, path).num_params()["total"]
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not an MLIP-2 .als file ({exc})") from None
    weights = np.frombuffer(raw[mark + 2:mark + 34], dtype=np.float64).copy()
    start, end = mark + 36, mark + 36 + 16 * n * n
    if raw[mark + 34:start] != b"\n#" or raw[end:end + 1] != b"\n":
        raise ValueError(f"{path}: not an MLIP-2 .als file for {n} coefficients (no '#' after the weights, "
                         f"or no row map after the two {n} x {n} matrices)")
    tail_text = raw[end + 1:].decode()
    A = np.frombuffer(raw[start:start + 8 * n * n], dtype=np.float64).reshape(n, n).copy()
    inverse = np.frombuffer(raw[start + 8 * n * n:start + 16 * n * n], dtype=np.float64).reshape(n, n).T.copy()
    lines = tail_text.split("\n", n)
    try:
        numbers = np.array([int(line.split()[1]) for line in lines[:n]], dtype=np.int64)
        body = lines[n]
    except (ValueError, IndexError):
        raise ValueError(f"{path}: the row map after the matrices is not {n} lines 'row configuration'") from None
    configs: list[Configuration | None] = []
    for block in body.split("BEGIN_CFG")[1:]:
        if block.split("\n", 3)[2].strip() == "0":
            configs.append(None)
        else:
            configs.append(parse_cfg("BEGIN_CFG" + block, path).configurations[0])
    if numbers.max(initial=-1) >= len(configs):
        raise ValueError(f"{path}: row map refers to configuration {numbers.max()}, the file has {len(configs)}")
    return {"mtp_text": text, "weights": weights, "A": A, "inverse": inverse, "numbers": numbers,
            "configurations": configs}


def read_als(path) -> tuple[ActiveSet, list[Configuration]]:
    """An ``.als`` -> (active set, its configurations): sources index the configurations,
    -1 for placeholder rows."""
    parts = parse_als(Path(path).read_bytes(), path)
    configs = parts["configurations"]
    kept = [k for k, c in enumerate(configs) if c is not None]
    index = {k: j for j, k in enumerate(kept)}
    sources = np.array([index.get(int(k), -1) for k in parts["numbers"]])
    return ActiveSet(parts["A"], sources), [configs[k] for k in kept]
