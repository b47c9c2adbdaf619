"""The model contract: what every potential family gives the rest of the package.

Loss, linear solve, variable projection, fitting loop, calculator and predictions are written
against this contract only, so a new family (ACE, magnetic MTP, a pair potential) plugs in by
implementing it in its own module. A model is a frozen value describing the *structure* of a
potential (species, cutoff, basis); its coefficients live in a separate :class:`Params` pytree,
so the same compiled functions serve every set of coefficients.

A **model** provides

- ``cutoff`` (Angstrom) and ``n_species`` (type indices 0 .. n_species - 1);
- ``structure_key()``: a hashable value equal for models of the same structure (compiled
  functions are cached by it);
- ``init(seed) -> Params``: a fresh, untrained start (random nonlinear part, zero linear part);
- ``params() -> Params`` of a trained model (the coefficients it was read with) and
  ``with_params(params) -> model`` carrying new ones (what is written to a file); ``trained``;
- ``efs_fn() -> efs(params, batch)``: pure, differentiable in ``params``; returns ``energy``
  (C,), ``energies`` (A,), ``forces`` (A, 3), ``virial`` (C, 3, 3) (MLIP's PlusStress, eV) of a
  padded :class:`~mlipress.batch.NeighborBatch`;
- optionally ``loss_efs_fn()``: the same function as ``efs_fn()`` in a layout made for being
  differentiated once more in ``params`` (the training loss uses it when present; an MTP's
  vectorised basic moments);
- ``features_fn() -> features(params, batch)``: the columns of the part the model is linear in,
  ``(energy (C, P), forces (A, 3, P), virial (C, 3, 3, P))`` with ``E = energy @ params.linear``
  exactly (and so for forces and virial); this is what the exact linear solve, variable
  projection and (later) MaxVol active learning work on; a magnetic model (whose ``efs`` also
  returns ``magmom_forces`` (A,)) appends their columns (A, P) as a fourth block;
- ``penalty(params) -> scalar``: a regulariser of the nonlinear part (MTP: MLIP's radial
  orthonormality penalty), multiplied by ``LossWeights.penalty`` in the loss; 0 if none;
- ``write(path)`` and the classmethod ``read(path)``: the family's potential file (an MTP's is
  MLIP's ``.mtp``), written atomically, read with errors naming file, line and field;
- ``normalise(params) -> params``: a reparametrisation of the nonlinear part applied before the
  periodic exact solve of MLIP's training scheme (MTP: orthonormal radial functions); the
  identity where a family has none.

Compressed fits (:mod:`mlipress.compress`) need two more things of a family whose params have
a ``radial`` layer field: ``radial_shape`` (the full radial tensor shape the layer's ``random``
takes) and ``radial_layer(spec) -> layer class`` (MTP: :func:`mlipress.models.layers.layer_for`;
ACE: its per-pair dense / MF layers, ``ValueError`` for kinds it has none for).

A **params** value is a frozen dataclass registered as a JAX pytree (every field a leaf or a
pytree, e.g. a low-rank layer from :mod:`mlipress.models.layers`), declared with :func:`params_class`
and deriving from :class:`Params`. Two class attributes say what its fields are:
``LINEAR`` (fields the model is linear in, concatenated in this order into ``params.linear``)
``FROZEN`` (fields no optimiser moves: their gradient is reported as zero) and ``OFFSETS``
(linear fields that are constant energies per species, exempt from the L2 regularisation of
the linear coefficients, ``LossWeights.coefficient_l2``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Model", "Params", "params_class", "nonlinear_bytes", "StructureKey", "jitted_efs", "efs_from_site_energies", "in_blocks"]


class Params:
    """Base of every parameter pytree (see the module docstring)."""

    LINEAR: ClassVar[tuple[str, ...]] = ()
    FROZEN: ClassVar[tuple[str, ...]] = ()
    OFFSETS: ClassVar[tuple[str, ...]] = ()

    def replace(self, **fields):
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **fields)

    @property
    def linear(self) -> jax.Array:
        """The linear coefficients, flattened and concatenated in ``LINEAR`` order: (P,)."""
        parts = [jnp.ravel(jnp.asarray(getattr(self, name))) for name in self.LINEAR]
        return jnp.concatenate(parts) if parts else jnp.zeros(0)

    def regularised_mask(self) -> np.ndarray:
        """(P,) 1.0 for the entries of ``linear`` the L2 regularisation applies to, 0.0 for the
        ``OFFSETS`` fields (a per-species energy shift is set by the data, not by the model's
        capacity to overfit)."""
        parts = [np.full(math.prod(np.shape(getattr(self, name))), 0.0 if name in self.OFFSETS else 1.0)
                 for name in self.LINEAR]
        return np.concatenate(parts) if parts else np.zeros(0)

    def with_linear(self, theta):
        """A copy whose linear fields are taken from the flat vector ``theta`` (P,)."""
        theta = jnp.asarray(theta)
        fields, start = {}, 0
        for name in self.LINEAR:
            old = jnp.asarray(getattr(self, name))
            size = math.prod(old.shape)
            fields[name] = theta[start:start + size].reshape(old.shape)
            start += size
        if start != theta.shape[0]:
            raise ValueError(f"{type(self).__name__}: {theta.shape[0]} linear coefficients given, {start} expected")
        return dataclasses.replace(self, **fields)

    def zeroed(self, names):
        """A copy with the given fields replaced by zeros of the same structure (e.g. to report
        a zero gradient for frozen or projected-out fields)."""
        return dataclasses.replace(self, **{n: jax.tree_util.tree_map(jnp.zeros_like, getattr(self, n)) for n in names})


def params_class(cls):
    """Class decorator: a frozen dataclass deriving from :class:`Params`, registered as a
    pytree whose fields are all data (leaves or nested pytrees)."""
    if not issubclass(cls, Params):
        raise TypeError(f"{cls.__name__} must derive from mlipress.models.base.Params")
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for name in cls.LINEAR + cls.FROZEN:
        if name not in names:
            raise TypeError(f"{cls.__name__}: {name!r} in LINEAR/FROZEN is not a field")
    return jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])


def nonlinear_bytes(params: Params) -> bytes:
    """The bytes of every field except the linear ones: a cache key for results that depend
    on the nonlinear part only (the exact linear solve of variable projection)."""
    out = []
    for f in dataclasses.fields(params):
        if f.name not in params.LINEAR:
            out.extend(np.asarray(x).tobytes() for x in jax.tree_util.tree_leaves(getattr(params, f.name)))
    return b"".join(out)


@runtime_checkable
class Model(Protocol):
    """The contract of a potential family (module docstring)."""

    @property
    def cutoff(self) -> float: ...

    @property
    def n_species(self) -> int: ...

    @property
    def trained(self) -> bool: ...

    def structure_key(self) -> Any: ...

    def init(self, seed: int = 0) -> Params: ...

    def params(self) -> Params: ...

    def with_params(self, params: Params) -> "Model": ...

    def efs_fn(self) -> Callable: ...

    def features_fn(self) -> Callable: ...

    def penalty(self, params: Params) -> jax.Array: ...

    def normalise(self, params: Params) -> Params: ...

    def write(self, path) -> None: ...

    @classmethod
    def read(cls, path) -> "Model": ...


@dataclasses.dataclass(frozen=True, eq=False)
class StructureKey:
    """Hash a model by its structure only (``model.structure_key()``, not its coefficients),
    to share compiled code between models of the same structure."""

    model: object

    def __hash__(self):
        return hash(self.model.structure_key())

    def __eq__(self, other):
        return isinstance(other, StructureKey) and self.model.structure_key() == other.model.structure_key()


def in_blocks(fn: Callable, block: int, *arrays):
    """``fn(*arrays)`` evaluated over the leading (atom) axis in blocks of ``block`` atoms
    (``lax.map`` with rematerialisation; the last block is zero-padded), outputs concatenated
    and cut to length.

    Per-pair evaluations are memory-bound: over a whole batch every intermediate is a fresh
    multi-MB buffer (page faults, cache misses), in blocks they stay in cache (2-3x faster MTP
    forces, benchmarks/evaluate.py). ``jax.checkpoint`` makes the reverse pass (training)
    recompute each block instead of storing its intermediates: faster, and memory O(pairs).
    """
    A = arrays[0].shape[0]
    if A <= block:
        return fn(*arrays)
    count = -(-A // block)

    def blocks(x):
        x = jnp.concatenate([x, jnp.zeros((count * block - A,) + x.shape[1:], x.dtype)], 0)
        return x.reshape((count, block) + x.shape[1:])

    out = jax.lax.map(jax.checkpoint(lambda xs: fn(*xs)), tuple(blocks(x) for x in arrays))
    return jax.tree.map(lambda y: y.reshape((count * block,) + y.shape[2:])[:A], out)


#: Per-atom fields of a :class:`~mlipress.batch.NeighborBatch` that a block of atoms carries.
_ATOM_FIELDS = ("vectors", "types_i", "types_j", "index_j", "mask", "config_index")
#: The collinear moments, carried by the blocks of a magnetic model (differentiated like ``vectors``).
_SPIN_FIELDS = ("magmoms", "magmoms_j")


def efs_from_site_energies(site_energies: Callable, block_size: Callable[[int], int] = lambda K: 16,
                           magnetic: bool = False) -> Callable:
    """``efs(params, batch)`` of the contract from ``site_energies(params, batch) -> (A,)`` (zero
    for padded atoms): one reverse pass gives ``D_ij = dE/dr_ij``; ``F_i += D_ij``,
    ``F_j -= D_ij``, ``virial = -sum_ij D_ij (outer) r_ij`` (REFERENCE.md section 1).

    ``site_energies`` is called on blocks of ``block_size(K)`` atoms (:func:`in_blocks`): batches
    holding the block's rows of the per-atom fields, so it must use each atom's own neighbour
    rows only (``index_j`` still numbers atoms of the whole batch).

    ``magnetic=True`` (models of collinear moments): the blocks also carry ``magmoms`` (s_i) and
    ``magmoms_j`` (s_j), the same pass differentiates them, and the result adds
    ``magmom_forces`` (A,) ``= -dE/ds_i = -(dE/ds_i|_own + sum_{pairs ji} dE/ds_j|_pair)``."""
    fields = _ATOM_FIELDS + (_SPIN_FIELDS if magnetic else ())

    def efs(params, batch) -> dict:
        A, K = batch.types_j.shape
        n = batch.n_configs

        def site(*rows):
            block = batch.replace(**dict(zip(fields, rows)))

            def total(vectors, *spins):
                V = site_energies(params, block.replace(vectors=vectors, **dict(zip(_SPIN_FIELDS, spins))))
                return V.sum(), V

            if not magnetic:
                D, V = jax.grad(total, has_aux=True)(block.vectors)
                return V, D * block.mask[..., None]
            (D, ds_i, ds_j), V = jax.grad(total, argnums=(0, 1, 2), has_aux=True)(block.vectors, block.magmoms,
                                                                                    block.magmoms_j)
            return V, D * block.mask[..., None], ds_i, ds_j * block.mask

        out = in_blocks(site, block_size(K), *(getattr(batch, name) for name in fields))
        V, D = out[:2]
        forces = D.sum(axis=1) - jax.ops.segment_sum(D.reshape(-1, 3), batch.index_j.reshape(-1), A + 1)[:A]
        virial = -jnp.einsum("akx,aky->axy", D, batch.vectors)
        result = {"energy": jax.ops.segment_sum(V, batch.config_index, n + 1)[:n], "energies": V, "forces": forces,
                  "virial": jax.ops.segment_sum(virial, batch.config_index, n + 1)[:n]}
        if magnetic:
            ds_i, ds_j = out[2:]
            dE_ds = ds_i + jax.ops.segment_sum(ds_j.reshape(-1), batch.index_j.reshape(-1), A + 1)[:A]
            result["magmom_forces"] = -dE_ds
        return result

    return efs


@functools.lru_cache(maxsize=16)
def _jitted_efs(key: StructureKey):
    return jax.jit(key.model.efs_fn())


def jitted_efs(model):
    """A jit-compiled ``model.efs_fn()`` shared by all models of the same structure."""
    return _jitted_efs(StructureKey(model))
