"""Neighbour batches: configurations packed into fixed-shape arrays for the evaluator.

This room owns everything between a :class:`~mlipress.data.Configuration` and the arrays the
evaluator consumes: the neighbour search (``vesin``, fastest of ASE, matscipy and vesin here:
REFERENCE.md section 6), the one packer, the one padding policy, chunking of datasets, and
the Verlet-skin neighbour list that the ASE calculator and the LAMMPS driver share. It
depends on :mod:`mlipress.data` only; nothing here knows about potentials beyond a cutoff.

Contract of a :class:`NeighborBatch`, with A padded atoms, K neighbour slots per atom and C
configurations:

- ``vectors`` (A, K, 3): r_ij = x_j - x_i (including the periodic shift), Angstrom.
- ``types_i`` (A,), ``types_j`` (A, K): type indices; 0 in padding.
- ``index_j`` (A, K): atom index of neighbour j in the batch; ``A`` (one past the end) in padding,
  so scatters into an (A + 1)-long array drop padded pairs in the last row.
- ``mask`` (A, K): True for a real pair with |r_ij| < cutoff.
- ``config_index`` (A,): configuration of each atom; ``n_configs`` (= C) for padded atoms.
- ``magmoms`` (A,), ``magmoms_j`` (A, K): collinear magnetic moment s_i of each atom and s_j of
  each neighbour (zeros without moments and in padding); only magnetic models read them.

Fields are named, never positional: derive a batch with :meth:`NeighborBatch.replace` and pad
it with :func:`pad`, which read each field's padding value and axes from the field itself, so
a new per-atom field cannot shift the others.

Padding policy (:class:`Padding`, the instance :data:`PADDING`): JAX compiles once per array
shape (3-6 s each on this CPU), so atom counts (plus one padding atom) are rounded up a
geometric ladder of sizes (:func:`bucket_size`) and neighbour slots to multiples of 4 from 8.
A sequence of single systems (molecular dynamics) uses :meth:`Padding.grow`: shapes only
grow, with 4 neighbour slots of headroom, so a run compiles once or twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from vesin import NeighborList

from mlipress.data import Configuration

__all__ = [
    "NeighborBatch",
    "Padding",
    "PADDING",
    "SkinNeighborList",
    "bucket_size",
    "build_batch",
    "balanced_chunks",
    "chunk_batches",
    "chunk_plan",
    "max_neighbors",
    "config_bucket",
    "pad",
    "pairs",
]

# Padding values that depend on the batch: the padded atom count (one past the end) and the
# number of configurations.
_ATOMS, _CONFIGS = "n_atoms_padded", "n_configs"


def _array(fill, per_pair: bool):
    """A data field of :class:`NeighborBatch`: its padding value and whether axis 1 holds the
    neighbour slots (axis 0 always holds the atoms)."""
    return field(metadata=dict(fill=fill, per_pair=per_pair))


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class NeighborBatch:
    """Padded neighbour pairs of one or more configurations (layout: module docstring)."""

    vectors: jax.Array = _array(0.0, True)
    types_i: jax.Array = _array(0, False)
    types_j: jax.Array = _array(0, True)
    index_j: jax.Array = _array(_ATOMS, True)
    mask: jax.Array = _array(False, True)
    config_index: jax.Array = _array(_CONFIGS, False)
    magmoms: jax.Array = _array(0.0, False)
    magmoms_j: jax.Array = _array(0.0, True)
    n_configs: int = field(default=0, metadata=dict(static=True))

    @property
    def n_atoms_padded(self) -> int:
        return self.types_i.shape[0]

    @property
    def n_neighbors_padded(self) -> int:
        return self.mask.shape[1]

    def replace(self, **changes) -> "NeighborBatch":
        """A copy with the named fields replaced (``batch.replace(vectors=v)``); works on traced
        arrays inside ``jax.jit``."""
        return replace(self, **changes)


def pad(batch: NeighborBatch, n_atoms: int | None = None, n_neighbors: int | None = None, **fill) -> NeighborBatch:
    """``batch`` padded to ``n_atoms`` atoms and ``n_neighbors`` slots (None: unchanged).

    Every array field is padded by name with its own padding value (``index_j`` with the new
    atom count, to which padded pairs are moved too, ``config_index`` with ``n_configs``, the
    rest with 0 / False); ``fill`` overrides the value of named fields (``vectors=1.0``). NumPy
    in, NumPy out; JAX arrays (also traced ones) give JAX arrays.
    """
    A, K = batch.n_atoms_padded, batch.n_neighbors_padded
    A2 = A if n_atoms is None else int(n_atoms)
    K2 = K if n_neighbors is None else int(n_neighbors)
    if A2 < A or K2 < K:
        raise ValueError(f"cannot pad a batch of ({A} atoms, {K} neighbours) down to ({A2}, {K2})")
    names = {f.name for f in fields(batch) if "fill" in f.metadata}
    if set(fill) - names:
        raise ValueError(f"unknown NeighborBatch field(s) {sorted(set(fill) - names)}")
    xp = np if isinstance(batch.types_i, np.ndarray) else jnp
    changes = {}
    for f in fields(batch):
        if "fill" not in f.metadata:
            continue
        x = getattr(batch, f.name)
        value = fill.get(f.name, f.metadata["fill"])
        if value == _ATOMS:
            value = A2
            x = xp.where(x == A, A2, x) if A2 != A else x
        elif value == _CONFIGS:
            value = batch.n_configs
        widths = [(0, A2 - A)] + ([(0, K2 - K)] if f.metadata["per_pair"] else []) + [(0, 0)] * (x.ndim - 1 - f.metadata["per_pair"])
        changes[f.name] = xp.pad(x, widths, constant_values=value)
    return batch.replace(**changes)


def bucket_size(n: int, minimum: int, growth: float = 1.25, multiple: int = 8) -> int:
    """Round n up to a geometric ladder of sizes, so that similar batches share a compilation."""
    size = minimum
    while size < n:
        size = max(size + multiple, int(math.ceil(size * growth / multiple)) * multiple)
    return size


@dataclass(frozen=True)
class Padding:
    """The padded shape (atoms, neighbour slots) of a batch; see the module docstring.

    Atoms: ``n + 1`` (at least one padding atom) rounded up the ladder from ``min_atoms`` by
    ``growth``, in multiples of ``atom_multiple``. Neighbour slots: the largest neighbour count
    rounded up to a multiple of ``neighbor_multiple``, at least ``min_neighbors``.
    :meth:`grow` adds ``headroom`` slots whenever a growing shape has to grow.
    """

    min_atoms: int = 16
    growth: float = 1.25
    atom_multiple: int = 8
    min_neighbors: int = 8
    neighbor_multiple: int = 4
    headroom: int = 4

    def atoms(self, n_atoms: int) -> int:
        return bucket_size(n_atoms + 1, self.min_atoms, self.growth, self.atom_multiple)

    def neighbors(self, max_neighbors: int) -> int:
        return bucket_size(max(max_neighbors, 1), self.min_neighbors, 1.0, self.neighbor_multiple)

    def shape(self, n_atoms: int, max_neighbors: int) -> tuple[int, int]:
        """(A, K) for a batch of ``n_atoms`` atoms with at most ``max_neighbors`` neighbours each."""
        return self.atoms(n_atoms), self.neighbors(max_neighbors)

    def grow(self, current: tuple[int, int], n_atoms: int, max_neighbors: int) -> tuple[int, int]:
        """The shape for the next system of a sequence: ``current`` unless it is too small,
        else the larger of both, with ``headroom`` neighbour slots added."""
        A, K = self.shape(n_atoms, max_neighbors)
        if A <= current[0] and K <= current[1]:
            return current
        return max(A, current[0]), max(self.neighbors(K + self.headroom), current[1])


#: The padding policy of every batch in the package.
PADDING = Padding()


def pairs(config: Configuration, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs (i, j, r_ij) with |r_ij| < cutoff (full list, both directions)."""
    if config.natoms == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    nl = NeighborList(cutoff=cutoff, full_list=True)
    if config.cell is None:
        i, j, d = nl.compute(config.positions, np.zeros((3, 3)), False, quantities="ijD")
    else:
        i, j, d = nl.compute(config.positions, config.cell, True, quantities="ijD")
    keep = np.einsum("pk,pk->p", d, d) < cutoff * cutoff
    return i[keep].astype(np.int64), j[keep].astype(np.int64), d[keep]


def _max_neighbors(configs: Sequence[Configuration], lists) -> int:
    return max((int(np.bincount(i, minlength=c.natoms).max()) for c, (i, _, _) in zip(configs, lists) if len(i)),
               default=0)


def _pack(configs: Sequence[Configuration], lists, max_nbh: int, A: int, K: int) -> NeighborBatch:
    """The one packer: pair lists ``(i, j, r_ij)`` of each configuration (at most ``max_nbh``
    pairs per atom) into an (A, K) batch."""
    n_atoms = sum(c.natoms for c in configs)
    if A < n_atoms or K < max_nbh:
        raise ValueError(f"padding ({A} atoms, {K} neighbours) smaller than needed ({n_atoms}, {max_nbh})")
    vectors = np.zeros((A, K, 3))
    types_i = np.zeros(A, np.int32)
    types_j = np.zeros((A, K), np.int32)
    index_j = np.full((A, K), A, np.int32)
    mask = np.zeros((A, K), bool)
    config_index = np.full(A, len(configs), np.int32)
    magmoms = np.zeros(A)
    magmoms_j = np.zeros((A, K))
    offset = 0
    for c_idx, (config, (i, j, d)) in enumerate(zip(configs, lists)):
        n = config.natoms
        types_i[offset : offset + n] = config.types
        config_index[offset : offset + n] = c_idx
        spins = config.spins
        magmoms[offset : offset + n] = spins
        if len(i):
            order = np.argsort(i, kind="stable")
            i, j, d = i[order], j[order], d[order]
            starts = np.concatenate([[0], np.cumsum(np.bincount(i, minlength=n))[:-1]])
            slot = np.arange(len(i)) - starts[i]
            rows = offset + i
            vectors[rows, slot] = d
            types_j[rows, slot] = config.types[j]
            index_j[rows, slot] = offset + j
            magmoms_j[rows, slot] = spins[j]
            mask[rows, slot] = True
        offset += n
    return NeighborBatch(
        vectors=vectors,
        types_i=types_i,
        types_j=types_j,
        index_j=index_j,
        mask=mask,
        config_index=config_index,
        magmoms=magmoms,
        magmoms_j=magmoms_j,
        n_configs=len(configs),
    )


def build_batch(
    configs: Sequence[Configuration],
    cutoff: float,
    pad_atoms: int | None = None,
    pad_neighbors: int | None = None,
    padding: Padding = PADDING,
) -> NeighborBatch:
    """Flatten ``configs`` into one padded :class:`NeighborBatch` (host-side, NumPy).

    ``pad_atoms`` / ``pad_neighbors`` force the padded sizes (they must be large enough);
    by default they come from ``padding`` (:meth:`Padding.shape`).
    """
    lists = [pairs(c, cutoff) for c in configs]
    max_nbh = _max_neighbors(configs, lists)
    A, K = padding.shape(sum(c.natoms for c in configs), max_nbh)
    return _pack(configs, lists, max_nbh, A if pad_atoms is None else pad_atoms, K if pad_neighbors is None else pad_neighbors)


def balanced_chunks(sizes: Sequence[int], max_atoms: int, multiple: int = 1) -> list[list[int]]:
    """Split configurations (``sizes`` = atoms of each) into consecutive chunks of at most
    ``max_atoms`` atoms, as few as possible and of nearly equal size (so one padded shape
    fits all of them with little waste). A configuration larger than ``max_atoms`` gets a
    chunk of its own. ``multiple``: aim at a multiple of this many chunks (MPI ranks sharing
    them evenly), as long as there are configurations to fill them.
    """
    sizes = [int(s) for s in sizes]
    if not sizes:
        return []
    cum = np.concatenate([[0], np.cumsum(sizes)])
    total = int(cum[-1])
    n = max(1, -(-total // max_atoms))
    n = min(-(-n // multiple) * multiple, max(n, len(sizes)))
    while True:
        bounds = [0]
        for j in range(1, n):
            b = int(np.argmin(np.abs(cum - j * total / n)))
            if bounds[-1] < b < len(sizes):
                bounds.append(b)
        bounds.append(len(sizes))
        groups = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
        if all(len(g) == 1 or cum[g[-1] + 1] - cum[g[0]] <= max_atoms for g in groups):
            return groups
        n += 1


def config_bucket(n: int) -> int:
    """Configurations per chunk padded to 1, 2, 4, 8, ..., then multiples of 64."""
    if n <= 64:
        return 1 << max(0, (n - 1).bit_length())
    return -(-n // 64) * 64


def _empty_configuration() -> Configuration:
    return Configuration(np.zeros((0, 3)), np.zeros(0, np.int64))


def max_neighbors(configs: Sequence[Configuration], cutoff: float) -> int:
    """The largest number of neighbours within ``cutoff`` of any atom of ``configs``."""
    return max((int(np.bincount(pairs(c, cutoff)[0]).max(initial=0)) for c in configs if c.natoms), default=0)


def chunk_plan(sizes: Sequence[int], max_atoms: int, multiple: int = 1) -> list[tuple[list[int], int, int]]:
    """``[(configuration indices, padded atoms, padded configurations)]`` of each chunk of
    :func:`chunk_batches` (no neighbour search: atom counts decide). ``multiple``: see
    :func:`balanced_chunks`."""
    groups = balanced_chunks(sizes, max_atoms, multiple)
    totals = [sum(int(sizes[k]) for k in g) for g in groups]
    regular = [s for s, g in zip(totals, groups) if s <= max_atoms or len(g) > 1]
    A_common = -(-(max(regular, default=0) + 1) // 16) * 16
    C_common = config_bucket(max((len(g) for g in groups), default=1))
    return [(g, A_common if size + 1 <= A_common else -(-(size + 1) // 16) * 16,
             C_common if len(g) <= C_common else config_bucket(len(g))) for g, size in zip(groups, totals)]


def chunk_batches(
    configs: Sequence[Configuration],
    cutoff: float,
    max_atoms: int,
    pad_neighbors: int | None = None,
    padding: Padding = PADDING,
    multiple: int = 1,
    only: Sequence[int] | None = None,
) -> list[tuple[list[int], NeighborBatch]]:
    """A dataset as padded batches of one shape: ``[(indices of the configurations, batch)]``.

    Consecutive, nearly equal chunks of at most ``max_atoms`` atoms (:func:`balanced_chunks`),
    all padded to one shape: configurations to :func:`config_bucket` of the largest chunk
    (the extra ones empty), atoms to a multiple of 16 above the largest chunk, neighbour slots
    by ``padding`` from the largest neighbour count (or ``pad_neighbors``). A configuration
    larger than ``max_atoms`` gets a chunk and a shape of its own. So a dataset compiles once.
    ``only``: build just these chunks (indices into the plan, :func:`chunk_plan`), padded as in
    the whole dataset (an MPI rank's share); ``multiple``: see :func:`balanced_chunks`.
    """
    configs = list(configs)
    plan = chunk_plan([c.natoms for c in configs], max_atoms, multiple)
    if pad_neighbors is None:
        pad_neighbors = padding.neighbors(max_neighbors(configs, cutoff))
    empty = Configuration(np.zeros((0, 3)), np.zeros(0, np.int64))
    out = []
    for g, pad_atoms, n_pad in (plan if only is None else [plan[i] for i in only]):
        members = [configs[k] for k in g] + [empty] * (n_pad - len(g))
        out.append((g, build_batch(members, cutoff, pad_atoms=pad_atoms, pad_neighbors=pad_neighbors)))
    return out


class SkinNeighborList:
    """Neighbour batches of one evolving system (MD, relaxation), with a Verlet skin.

    ``batch(config)`` returns the padded :class:`NeighborBatch` of the pairs within ``cutoff``
    for the current positions; its shape only grows (:meth:`Padding.grow`), so the evaluator
    compiles once or twice per run. With ``skin > 0`` the search runs out to ``cutoff + skin``
    and its pair list (atom indices and integer periodic shifts) is kept until some atom has
    moved more than ``skin / 2`` since the search (measured in the cell's scaled frame, with
    the cell's own deformation taken off the skin, so NPT runs do not search every step), or
    the atom count, the types or the periodicity change. In between, a call only recomputes
    r_ij = x_j - x_i + S_ij . cell for the stored pairs and drops those at or beyond the
    cutoff; no pair within the cutoff can be missed (two atoms farther apart than
    ``cutoff + skin`` cannot both move ``skin / 2`` and close the gap), so the batch equals a
    fresh search's to rounding. ``skin = 0`` searches afresh (:func:`pairs`) every call.

    ``rebuilds`` counts the neighbour searches and ``calls`` the batches, for diagnostics.
    """

    def __init__(self, cutoff: float, skin: float = 0.5, padding: Padding = PADDING):
        if skin < 0:
            raise ValueError(f"skin must be >= 0, got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.padding = padding
        self.rebuilds = 0
        self.calls = 0
        self.shape = (0, 0)  # padded (atoms, neighbour slots) of the last batch
        self._list = None  # (i, j, shift vectors, positions at build, cell at build, types)

    def needs_rebuild(self, config: Configuration) -> bool:
        """True when a pair now within the cutoff may be missing from the stored list.

        Positions are compared in the scaled frame of the cell, so a cell change (NPT) need not
        force a search: with M = cell0^-1 cell and sigma its smallest singular value, a pair
        that was at least ``cutoff + skin`` apart is still beyond ``cutoff`` while
        ``2 max_a |ds_a . cell| < sigma (cutoff + skin) - cutoff`` (ds: scaled displacement).
        For a fixed cell this is the usual ``max displacement < skin / 2``.
        """
        if self.skin == 0 or self._list is None:
            return True
        _, _, _, reference, cell0, types0 = self._list
        if len(types0) != config.natoms or not np.array_equal(types0, config.types):
            return True
        if (cell0 is None) != (config.cell is None):
            return True
        if config.natoms == 0:
            return False
        rc = self.cutoff
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

    def _rebuild(self, config: Configuration) -> None:
        positions = np.array(config.positions, dtype=float)
        cell = None if config.cell is None else np.array(config.cell, dtype=float)
        if config.natoms == 0:
            i = j = np.zeros(0, np.int64)
            shifts = np.zeros((0, 3))
        else:
            nl = NeighborList(cutoff=self.cutoff + self.skin, full_list=True)
            box = np.zeros((3, 3)) if cell is None else cell
            i, j, S = nl.compute(positions, box, cell is not None, quantities="ijS")
            order = np.argsort(i, kind="stable")
            i, j = i[order].astype(np.int64), j[order].astype(np.int64)
            shifts = np.asarray(S[order], dtype=float)
        # Reference positions: Cartesian without a cell, scaled (fractional) with one.
        reference = positions if cell is None else positions @ np.linalg.inv(cell)
        self._list = (i, j, shifts, reference, cell, np.array(config.types))

    def _pairs(self, config: Configuration) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.skin == 0:
            self.rebuilds += 1
            return pairs(config, self.cutoff)
        if self.needs_rebuild(config):
            self._rebuild(config)
            self.rebuilds += 1
        i, j, shifts, _, _, _ = self._list
        pos = np.asarray(config.positions, dtype=float)
        d = pos[j] - pos[i]
        if config.cell is not None:
            d += shifts @ np.asarray(config.cell, dtype=float)
        keep = np.einsum("px,px->p", d, d) < self.cutoff**2
        return i[keep], j[keep], d[keep]

    def batch(self, config: Configuration) -> NeighborBatch:
        """The padded batch of the pairs within the cutoff at ``config``'s positions."""
        self.calls += 1
        lists = [self._pairs(config)]
        max_nbh = _max_neighbors([config], lists)
        self.shape = self.padding.grow(self.shape, config.natoms, max_nbh)
        return _pack([config], lists, max_nbh, *self.shape)
