"""Data-parallel fitting: one communicator, a serial no-op default, MPI through mpi4py.

A fit run as ``mpirun -np N mlipress train ...`` shards the training chunks over the N ranks
(:func:`shard`); every data pass (loss, gradient, Gauss-Newton probes, linear-solve QR,
error statistics) evaluates the rank's own chunks and combines the per-chunk results with
:func:`chunk_sum` / :func:`chunk_gather`. Both gather every chunk's result on every rank and
combine them in global chunk order with the same operations as the serial loop, so

- every rank computes bit-identical values and parameters (the optimiser paths cannot
  diverge, no broadcast of parameters is needed), and
- for the same chunking the result is bit-identical to the serial run, whatever N.

Per-chunk results are small (a scalar, a gradient, a (P+1)^2 triangular factor, residuals
for the error report), so an allgather of Python objects is all the communication needed.

Only rank 0 writes: :func:`is_root` is what the writers ask (:mod:`mlipress.io.atomic`, the
training log), and the command line sends the other ranks' standard output to ``os.devnull``.

The process-wide communicator (:func:`world`) is :data:`SERIAL` unless :func:`use` or
:func:`from_environment` (called by the command line) installs an MPI one; mpi4py is
imported only then, so the default install never needs it (extra ``mlipress[mpi]``).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Serial",
    "MPIComm",
    "SERIAL",
    "world",
    "use",
    "is_root",
    "launched_ranks",
    "LAUNCHER_SIZE_VARIABLES",
    "from_environment",
    "shard",
    "chunk_sum",
    "chunk_gather",
]

#: Environment variables in which MPI launchers give the world size (MPICH's and Intel MPI's
#: Hydra and PMI-based srun, Open MPI, MVAPICH); a batch allocation alone sets none of them.
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class Serial:
    """The one-process communicator: rank 0 of 1; every collective is the identity."""

    rank = 0
    size = 1

    def allgather(self, obj) -> list:
        return [obj]

    def bcast(self, obj):
        return obj

    def barrier(self) -> None:
        pass

    def abort(self, code: int) -> None:
        raise SystemExit(code)


class MPIComm:
    """An mpi4py communicator with the same three collectives as :class:`Serial`."""

    def __init__(self, comm):
        self._comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())

    def allgather(self, obj) -> list:
        return self._comm.allgather(obj)

    def bcast(self, obj):
        return self._comm.bcast(obj, root=0)

    def barrier(self) -> None:
        self._comm.Barrier()

    def abort(self, code: int) -> None:
        """End every rank (one rank's error must not leave the others waiting in a collective)."""
        self._comm.Abort(code)


SERIAL = Serial()
_world: Any = SERIAL


def world():
    """The process-wide communicator (:data:`SERIAL` unless one was installed)."""
    return _world


def use(comm) -> None:
    """Install ``comm`` (:class:`Serial`, :class:`MPIComm` or None for serial) as :func:`world`."""
    global _world
    _world = SERIAL if comm is None else comm


def is_root() -> bool:
    """True on the rank that writes output (rank 0; always in a serial run)."""
    return _world.rank == 0


def launched_ranks(environ=None) -> int:
    """Number of ranks the MPI launcher started (1 when not started by one)."""
    environ = os.environ if environ is None else environ
    for name in LAUNCHER_SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit() and int(value) > 1:
            return int(value)
    return 1


def from_environment():
    """Install and return MPI's world communicator when started by ``mpirun`` with more than
    one rank; otherwise leave :func:`world` as it is and return it. Raises a clear error when
    the launcher asked for several ranks but mpi4py is missing."""
    n = launched_ranks()
    if n == 1:
        return _world
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise RuntimeError(
            f"started by an MPI launcher with {n} ranks, but mpi4py is not installed: "
            "pip install 'mlipress[mpi]'"
        ) from exc
    comm = MPIComm(MPI.COMM_WORLD)
    if comm.size != n:
        raise RuntimeError(f"the launcher asked for {n} ranks but MPI reports {comm.size}: is mpi4py built "
                           "for the MPI of this mpirun?")
    use(comm)
    return comm


def shard(costs: Sequence[float], size: int) -> list[list[int]]:
    """Items (e.g. padded training chunks, ``costs`` = their padded atom counts) assigned to
    ``size`` ranks: largest first to the least loaded rank (ties to the lower rank), each
    rank's items in increasing order. Deterministic, so every rank computes the same plan.
    Needs at least one item per rank."""
    if size < 1:
        raise ValueError(f"need at least one rank, got {size}")
    if len(costs) < size:
        raise ValueError(f"{len(costs)} chunks cannot be shared by {size} ranks")
    load = [0.0] * size
    plan: list[list[int]] = [[] for _ in range(size)]
    for i in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        r = min(range(size), key=lambda r: (load[r], r))
        plan[r].append(i)
        load[r] += float(costs[i])
    return [sorted(p) for p in plan]


def chunk_gather(comm, ids: Sequence[int], values: Sequence) -> list:
    """Every rank's per-chunk ``values`` (``ids``: their global chunk indices), on every rank,
    in global chunk order. Serial: ``values`` as given."""
    if comm.size == 1:
        return list(values)
    pairs = [p for part in comm.allgather(list(zip(ids, values))) for p in part]
    pairs.sort(key=lambda p: p[0])
    return [v for _, v in pairs]


def chunk_sum(comm, ids: Sequence[int], values: Sequence):
    """Sum of the per-chunk pytrees ``values`` over all ranks, in global chunk order, the same
    leaf-wise additions as the serial loop (bit-identical to it and on every rank).
    Serial: summed on the device as they are; MPI: summed on the host, returned as JAX arrays."""
    if comm.size == 1:
        total = values[0]
        for v in values[1:]:
            total = jax.tree_util.tree_map(jnp.add, total, v)
        return total
    treedef = jax.tree_util.tree_structure(values[0])
    local = [[np.asarray(x) for x in jax.tree_util.tree_leaves(v)] for v in jax.device_get(list(values))]
    parts = chunk_gather(comm, ids, local)
    total = parts[0]
    for part in parts[1:]:
        total = [a + b for a, b in zip(total, part)]
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in total])
