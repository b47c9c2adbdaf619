"""Padded neighbour batches: many configurations flattened into fixed-shape arrays.

JAX compiles once per array shape (3-6 s each on this CPU), so a batch pads the number of
atoms and the neighbours per atom up to a few bucket sizes. Neighbour pairs come from
``vesin`` (fastest of ASE, matscipy and vesin here: REFERENCE.md section 6).

Layout, with A padded atoms and K neighbour slots per atom:

- ``vectors`` (A, K, 3): r_ij = x_j - x_i (including the periodic shift), Angstrom.
- ``types_i`` (A,), ``types_j`` (A, K): type indices; 0 in padding.
- ``index_j`` (A, K): atom index of neighbour j in the batch; ``A`` (one past the end) in padding,
  so scatters into an (A + 1)-long array drop padded pairs in the last row.
- ``mask`` (A, K): True for a real pair with |r_ij| < cutoff.
- ``config_index`` (A,): configuration of each atom; ``n_configs`` for padded atoms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import jax
import numpy as np
from vesin import NeighborList

from mlipress.data import Configuration


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class NeighborBatch:
    vectors: jax.Array
    types_i: jax.Array
    types_j: jax.Array
    index_j: jax.Array
    mask: jax.Array
    config_index: jax.Array
    n_configs: int = field(default=0, metadata=dict(static=True))

    @property
    def n_atoms_padded(self) -> int:
        return self.types_i.shape[0]


def _bucket(n: int, minimum: int, growth: float = 1.25, multiple: int = 8) -> int:
    """Round n up to a geometric ladder of sizes, so that similar batches share a compilation."""
    size = minimum
    while size < n:
        size = max(size + multiple, int(math.ceil(size * growth / multiple)) * multiple)
    return size


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


def build_batch(
    configs: Sequence[Configuration],
    cutoff: float,
    pad_atoms: int | None = None,
    pad_neighbors: int | None = None,
) -> NeighborBatch:
    """Flatten ``configs`` into one padded :class:`NeighborBatch` (host-side, NumPy).

    ``pad_atoms`` / ``pad_neighbors`` force the padded sizes (they must be large enough);
    by default they are rounded up to bucket sizes.
    """
    lists = [pairs(c, cutoff) for c in configs]
    counts = [np.bincount(i, minlength=c.natoms) if c.natoms else np.zeros(0, int) for c, (i, _, _) in zip(configs, lists)]
    n_atoms = sum(c.natoms for c in configs)
    max_nbh = max((int(n.max()) for n in counts if len(n)), default=0)
    A = pad_atoms if pad_atoms is not None else _bucket(n_atoms + 1, 16)
    K = pad_neighbors if pad_neighbors is not None else _bucket(max(max_nbh, 1), 8, growth=1.0, multiple=4)
    if A < n_atoms or K < max_nbh:
        raise ValueError(f"padding ({A} atoms, {K} neighbours) smaller than needed ({n_atoms}, {max_nbh})")

    vectors = np.zeros((A, K, 3))
    types_i = np.zeros(A, np.int32)
    types_j = np.zeros((A, K), np.int32)
    index_j = np.full((A, K), A, np.int32)
    mask = np.zeros((A, K), bool)
    config_index = np.full(A, len(configs), np.int32)
    offset = 0
    for c_idx, (config, (i, j, d)) in enumerate(zip(configs, lists)):
        n = config.natoms
        types_i[offset : offset + n] = config.types
        config_index[offset : offset + n] = c_idx
        if len(i):
            order = np.argsort(i, kind="stable")
            i, j, d = i[order], j[order], d[order]
            starts = np.concatenate([[0], np.cumsum(np.bincount(i, minlength=n))[:-1]])
            slot = np.arange(len(i)) - starts[i]
            rows = offset + i
            vectors[rows, slot] = d
            types_j[rows, slot] = config.types[j]
            index_j[rows, slot] = offset + j
            mask[rows, slot] = True
        offset += n
    return NeighborBatch(
        vectors=vectors,
        types_i=types_i,
        types_j=types_j,
        index_j=index_j,
        mask=mask,
        config_index=config_index,
        n_configs=len(configs),
    )


def chunk_configurations(configs: Sequence[Configuration], max_atoms: int) -> list[list[int]]:
    """Split configuration indices into consecutive chunks of at most ``max_atoms`` atoms
    (a single larger configuration gets a chunk of its own)."""
    chunks, current, size = [], [], 0
    for k, c in enumerate(configs):
        if current and size + c.natoms > max_atoms:
            chunks.append(current)
            current, size = [], 0
        current.append(k)
        size += c.natoms
    if current:
        chunks.append(current)
    return chunks
