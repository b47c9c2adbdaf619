"""The MLIP-2 training objective: weighted energy/force/stress residuals plus a radial penalty.

Definition (REFERENCE.md section 3). For configuration k with N atoms, predictions ``E^, F^,
S^`` (S = the 3x3 virial, MLIP ``PlusStress`` in eV) and reference ``E, F, S``:

    L_k = w_E' (E^ - E)^2 / N + sum_i w_F,i' |F^_i - F_i|^2 + w_S' ||S^ - S||_F^2 / N

with the Frobenius norm over all nine components of the virial. The weighting modes
(:class:`LossWeights`): ``"vibrations"`` (MLIP's default) uses ``w_E, w_F, w_S`` as given;
``"molecules"`` multiplies ``w_E`` and ``w_S`` by N; ``"structures"`` divides all three by N.
``scale_by_force = s > 0`` replaces the force weight of atom i by ``w_F' s / (|F_i|^2 + s)``
with the *reference* force F_i. Labels a configuration lacks get weight zero (e.g. no
``PlusStress`` in a non-periodic configuration).

Magnetic models (:mod:`mlipress.models.mtp.magnetic`) add ``w_M' sum_i (M^_i - M_i)^2`` for the
magnetic forces ``M_i = -dE/ds_i`` of configurations that carry them, with ``w_M'`` weighted
like the force weight (``LossWeights.magnetic_force``, default 0: the loss above unchanged).

The radial penalty (MLIP-2 coefficient 1e-9, MLIP-3 1e-6), with ``c_mu = C[:, :, mu, :]``
flattened over species pairs and basis indices,

    P(C) = sum_mu (|c_mu|^2 - 1)^2 + sum_{mu < nu} (c_mu . c_nu)^2,

is added to every configuration's loss, and the objective MLIP prints as ``f`` is their
average: ``f = (1/K) sum_k (L_k + penalty P) = (1/K) sum_k L_k + penalty P``. This module
reproduces MLIP-2's ``f`` on ``cubic/train21.cfg`` to ~2e-12 relative (L10/L16/L20) and its
gradient (``cubic/NN/loss_grad_train21.txt``) to the precision of that file (see
``tests/test_loss.py``).

Layers:

- :func:`prepare` (host, NumPy, once): configurations -> :class:`TrainingData`, a list of
  padded :class:`TrainingChunk` pytrees (neighbour batch, reference labels, flags, effective
  weights). Atom, neighbour and configuration counts are padded to bucket sizes so a dataset
  compiles only a few shapes.
- :func:`make_loss_fn` (pure JAX): ``loss_chunk(params, chunk) -> sum_k L_k`` over a chunk;
  the model's ``penalty`` (an MTP's: :func:`mlipress.models.mtp.model.radial_penalty`).
- :class:`Objective` (host): jit-compiled chunk losses and gradients summed over all chunks:
  ``value(params)`` and ``value_and_grad(params)`` return ``f`` and ``df/dparams``.
- :func:`flatten_mlip_gradient`: a gradient pytree in MLIP's parameter order
  ``[radial C[zi, zj, mu, b] row-major | species | moment]``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from mlipress import parallel
from mlipress.data import Configuration, Dataset
from mlipress.batch import PADDING, NeighborBatch, chunk_batches, chunk_plan, max_neighbors
from mlipress.models.base import Model, StructureKey

__all__ = [
    "LossWeights",
    "TrainingChunk",
    "TrainingData",
    "prepare",
    "effective_weights",
    "magnetic_weights",
    "make_loss_fn",
    "make_loss_terms_fn",
    "Objective",
    "flatten_mlip_gradient",
    "MLIP2_PENALTY",
    "MLIP3_PENALTY",
    "FAST_COMPILE",
]

#: Coefficient of the radial orthonormality penalty in MLIP-2 (REFERENCE.md section 3).
MLIP2_PENALTY = 1e-9
#: The same coefficient in MLIP-3.
MLIP3_PENALTY = 1e-6

_WEIGHTINGS = ("vibrations", "molecules", "structures")

#: XLA options trading pass speed (~35 % slower) for half the compilation time.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@dataclass(frozen=True)
class LossWeights:
    """Weights of the MLIP-2 loss (``mlp train`` options, REFERENCE.md section 3).

    - ``energy``, ``force``, ``stress``: w_E, w_F, w_S (MLIP-2 defaults 1, 0.01, 0.001).
    - ``weighting``: ``"vibrations"`` (default; weights as given), ``"molecules"`` (w_E, w_S
      times N) or ``"structures"`` (w_E, w_S, w_F divided by N).
    - ``scale_by_force``: s; when > 0 the force weight of atom i is ``w_F' s / (|F_i|^2 + s)``
      with the reference force F_i.
    - ``penalty``: coefficient of the radial orthonormality penalty, 1e-9 as in MLIP-2
      (MLIP-3 uses 1e-6, :data:`MLIP3_PENALTY`).
    - ``magnetic_force``: w_M, the weight of the magnetic forces ``-dE/ds_i`` (magnetic models
      only; per atom, scaled by the weighting mode as w_F; 0 by default).
    - ``coefficient_l2``: lambda of an L2 (ridge) term ``lambda sum theta^2`` over the linear
      coefficients but the per-species energies (``Params.OFFSETS``), added to f and honoured
      by the exact linear solves (pacemaker's ``L2_coeffs``). 0 by default, as in MLIP: an MTP
      needs none, but an ACE with many more linear coefficients than its data constrain
      extrapolates wildly without it (``docs/ace.md``).
    """

    energy: float = 1.0
    force: float = 0.01
    stress: float = 0.001
    weighting: str = "vibrations"
    scale_by_force: float = 0.0
    penalty: float = MLIP2_PENALTY
    magnetic_force: float = 0.0
    coefficient_l2: float = 0.0

    def __post_init__(self):
        if self.weighting not in _WEIGHTINGS:
            raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {self.weighting!r}")
        for name in ("energy", "force", "stress", "scale_by_force", "penalty", "magnetic_force", "coefficient_l2"):
            value = float(getattr(self, name))
            if not value >= 0.0 or math.isinf(value):
                raise ValueError(f"{name} weight must be finite and >= 0, got {value}")
            object.__setattr__(self, name, value)


# ----------------------------------------------------------------------------------------
# host-side training data
# ----------------------------------------------------------------------------------------


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class TrainingChunk:
    """One padded chunk of training configurations (a pytree; pass it to jitted functions).

    With C padded configurations (``batch.n_configs``; the extra ones are empty) and A padded
    atoms:

    - ``batch``: :class:`~mlipress.batch.NeighborBatch`.
    - ``energy`` (C,), ``forces`` (A, 3), ``virial`` (C, 3, 3): reference labels, zero where
      absent or padded.
    - ``natoms`` (C,) float: atoms per configuration (0 for padding).
    - ``has_energy``, ``has_forces``, ``has_virial`` (C,) bool: which labels exist (all False
      for padding); a missing label has weight zero.
    - ``w_energy`` (C,), ``w_force`` (A,), ``w_stress`` (C,): effective weights, so that
      ``L_k = w_energy_k (E^-E)^2 + sum_i w_force_i |F^_i-F_i|^2 + w_stress_k ||S^-S||_F^2``
      (the 1/N factors, weighting mode, scale-by-force and flags are folded in; see
      :func:`effective_weights`).
    - ``magmom_forces`` (A,): reference magnetic forces, ``has_magmom_forces`` (C,) which
      configurations carry them, ``w_magmom_force`` (A,) their weights
      (:func:`magnetic_weights`; zero without labels or with ``LossWeights.magnetic_force = 0``).
    """

    batch: NeighborBatch
    energy: jax.Array
    forces: jax.Array
    virial: jax.Array
    natoms: jax.Array
    has_energy: jax.Array
    has_forces: jax.Array
    has_virial: jax.Array
    w_energy: jax.Array
    w_force: jax.Array
    w_stress: jax.Array
    magmom_forces: jax.Array
    has_magmom_forces: jax.Array
    w_magmom_force: jax.Array


@dataclass(frozen=True, eq=False)
class TrainingData:
    """Training set prepared for :class:`Objective`.

    ``chunks``: padded :class:`TrainingChunk` s; ``members[c]``: indices (into the input
    configurations) of the real configurations of chunk c, in order; ``n_configs`` = K, the
    number of configurations the loss is averaged over; ``n_atoms``: real atoms in total;
    ``weights``: the :class:`LossWeights` the effective weights were computed with.

    Sharded over MPI ranks (:mod:`mlipress.parallel`), ``chunks`` and ``members`` are this
    rank's share, ``chunk_ids`` their indices among all chunks, ``comm`` the communicator;
    ``n_configs`` and ``n_atoms`` stay those of the whole set. Every pass over the chunks
    combines its per-chunk results with :meth:`sum` or :meth:`gather`, which see all ranks.
    """

    chunks: tuple[TrainingChunk, ...]
    members: tuple[tuple[int, ...], ...]
    n_configs: int
    n_atoms: int
    weights: LossWeights
    cutoff: float = field(default=0.0)
    chunk_ids: tuple[int, ...] | None = None
    comm: object = parallel.SERIAL

    @property
    def ids(self) -> tuple[int, ...]:
        """Global indices of this rank's chunks (all of them in a serial run)."""
        return tuple(range(len(self.chunks))) if self.chunk_ids is None else self.chunk_ids

    def sum(self, values):
        """Sum of per-chunk pytrees (one per chunk of ``chunks``) over every rank's chunks, in
        global order (:func:`mlipress.parallel.chunk_sum`)."""
        return parallel.chunk_sum(self.comm, self.ids, values)

    def gather(self, values) -> list:
        """Per-chunk values of every rank, in global chunk order (:func:`~mlipress.parallel.chunk_gather`)."""
        return parallel.chunk_gather(self.comm, self.ids, values)

    @property
    def shapes(self) -> set[tuple[int, int, int]]:
        """Distinct (configurations, atoms, neighbours) paddings = number of compilations."""
        return {(c.batch.n_configs, *c.batch.vectors.shape[:2]) for c in self.chunks}


def effective_weights(weights: LossWeights, natoms, ref_forces, atom_config, has_energy, has_forces, has_virial, xp=np):
    """Per-configuration and per-atom weights of the MLIP-2 loss (REFERENCE.md section 3).

    Args: ``natoms`` (C,), ``ref_forces`` (A, 3), ``atom_config`` (A,) configuration index of
    each atom (C for padding atoms), flags (C,). ``xp`` is ``numpy`` or ``jax.numpy``.

    Returns ``(w_energy (C,), w_force (A,), w_stress (C,))`` with

    - vibrations: ``w_E / N``, ``w_F``, ``w_S / N``;
    - molecules:  ``w_E``,     ``w_F``, ``w_S``;
    - structures: ``w_E / N^2``, ``w_F / N``, ``w_S / N^2``;

    the force weight times ``s / (|F_i|^2 + s)`` when ``scale_by_force = s > 0``, and zero
    where a label is absent or the configuration / atom is padding.
    """
    natoms = xp.asarray(natoms, dtype=xp.float64)
    n_safe = xp.where(natoms > 0, natoms, 1.0)
    if weights.weighting == "vibrations":
        e_scale, f_scale, s_scale = 1.0 / n_safe, xp.ones_like(n_safe), 1.0 / n_safe
    elif weights.weighting == "molecules":
        e_scale, f_scale, s_scale = xp.ones_like(n_safe), xp.ones_like(n_safe), xp.ones_like(n_safe)
    else:  # structures
        e_scale, f_scale, s_scale = 1.0 / n_safe**2, 1.0 / n_safe, 1.0 / n_safe**2
    w_energy = xp.where(has_energy, weights.energy * e_scale, 0.0)
    w_stress = xp.where(has_virial, weights.stress * s_scale, 0.0)
    per_config_force = xp.where(has_forces, weights.force * f_scale, 0.0)
    # padding atoms carry atom_config == C: append a zero weight for them
    per_config_force = xp.concatenate([per_config_force, xp.zeros(1)])
    w_force = per_config_force[atom_config]
    if weights.scale_by_force > 0.0:
        s = weights.scale_by_force
        w_force = w_force * s / (xp.sum(ref_forces * ref_forces, axis=-1) + s)
    return w_energy, w_force, w_stress


def magnetic_weights(weights: LossWeights, natoms, atom_config, has_magmom_forces, xp=np):
    """Per-atom weights (A,) of the magnetic-force term: ``w_M`` (vibrations, molecules) or
    ``w_M / N`` (structures), zero where a configuration has no magnetic forces or for padding."""
    natoms = xp.asarray(natoms, dtype=xp.float64)
    scale = 1.0 / xp.where(natoms > 0, natoms, 1.0) if weights.weighting == "structures" else xp.ones_like(natoms)
    per_config = xp.where(has_magmom_forces, weights.magnetic_force * scale, 0.0)
    return xp.concatenate([per_config, xp.zeros(1)])[atom_config]


def prepare(
    data: Dataset | Iterable[Configuration],
    model: Model,
    weights: LossWeights | None = None,
    max_atoms: int = 2048,
    pad_neighbors: int | None = None,
    comm=None,
) -> TrainingData:
    """Build padded training chunks once on the host (NumPy; REFERENCE.md section 3).

    Configurations are split into consecutive, nearly equal chunks of at most ``max_atoms``
    atoms (:func:`balanced_chunks`). All chunks share one padded shape: atoms rounded up to a
    multiple of 16 above the largest chunk, configurations to 1, 2, 4, ..., 64 or a multiple
    of 64 (padding configurations are empty and weightless), neighbour slots to a multiple of
    4 above the largest neighbour count (or ``pad_neighbors``). A single configuration larger
    than ``max_atoms`` gets a chunk and shape of its own. So a training set compiles once.

    A configuration without ``energy``, ``forces`` or ``virial`` gets zero weight for that
    term; non-periodic configurations never carry a virial here (their stress weight is 0).

    ``comm`` (default :func:`mlipress.parallel.world`): with more than one rank, the chunks
    of the serial run are shared out by padded size (:func:`mlipress.parallel.shard`) and each
    rank builds only its own, padded as the whole set (neighbour slots agreed over the ranks);
    so every reduction is the serial one. Only with fewer chunks than ranks is the set split
    finer (one chunk per rank at least; sums then differ from serial ones in round-off).
    """
    weights = LossWeights() if weights is None else weights
    configs = list(data.configurations if isinstance(data, Dataset) else data)
    if not configs:
        raise ValueError("no training configurations")
    max_type = max((int(c.types.max()) for c in configs if c.natoms), default=-1)
    if max_type >= model.n_species:
        raise ValueError(
            f"training data uses type index {max_type} but the potential has {model.n_species} species"
        )
    cutoff = model.cutoff
    comm = parallel.world() if comm is None else comm
    only, multiple = None, 1
    if comm.size > 1:
        # the serial chunking, so that the sums are the serial ones; split finer only if too few
        plan = chunk_plan([c.natoms for c in configs], max_atoms)
        if len(plan) < comm.size:
            multiple = comm.size
            plan = chunk_plan([c.natoms for c in configs], max_atoms, multiple)
        only = parallel.shard([pad_atoms for _, pad_atoms, _ in plan], comm.size)[comm.rank]
        if pad_neighbors is None:
            mine = [configs[k] for i in only for k in plan[i][0]]
            pad_neighbors = PADDING.neighbors(max(comm.allgather(max_neighbors(mine, cutoff))))
    chunks, groups = [], []
    for g, batch in chunk_batches(configs, cutoff, max_atoms, pad_neighbors=pad_neighbors, multiple=multiple,
                                  only=only):
        groups.append(g)
        members = [configs[k] for k in g]
        n_pad = batch.n_configs
        A = batch.types_i.shape[0]
        energy = np.zeros(n_pad)
        virial = np.zeros((n_pad, 3, 3))
        forces = np.zeros((A, 3))
        natoms = np.zeros(n_pad)
        has_e, has_f, has_v, has_m = (np.zeros(n_pad, bool) for _ in range(4))
        magmom_forces = np.zeros(A)
        offset = 0
        for k, c in enumerate(members):
            n = c.natoms
            natoms[k] = n
            if c.energy is not None:
                energy[k], has_e[k] = c.energy, True
            if c.forces is not None and n:
                forces[offset : offset + n], has_f[k] = c.forces, True
            if c.virial is not None and c.periodic:
                virial[k], has_v[k] = c.virial, True
            if c.magmom_forces is not None and n:
                magmom_forces[offset : offset + n], has_m[k] = c.magmom_forces, True
            offset += n
        w_e, w_f, w_s = effective_weights(weights, natoms, forces, batch.config_index, has_e, has_f, has_v)
        w_m = magnetic_weights(weights, natoms, batch.config_index, has_m)
        chunks.append(
            TrainingChunk(
                batch=batch,
                energy=energy,
                forces=forces,
                virial=virial,
                natoms=natoms,
                has_energy=has_e,
                has_forces=has_f,
                has_virial=has_v,
                w_energy=w_e,
                w_force=w_f,
                w_stress=w_s,
                magmom_forces=magmom_forces,
                has_magmom_forces=has_m,
                w_magmom_force=w_m,
            )
        )
    return TrainingData(
        chunks=tuple(chunks),
        members=tuple(tuple(g) for g in groups),
        n_configs=len(configs),
        n_atoms=sum(c.natoms for c in configs),
        weights=weights,
        cutoff=cutoff,
        chunk_ids=None if only is None else tuple(only),
        comm=comm,
    )


# ----------------------------------------------------------------------------------------
# pure JAX losses
# ----------------------------------------------------------------------------------------


def make_loss_terms_fn(model: Model, weights: LossWeights | None = None, magnetic: bool | None = None):
    """``terms(params, chunk) -> (e, f, s, m)``: the chunk's weighted energy, force, stress and
    magnetic-force sums, ``sum_k w_energy_k (E^-E)^2``, ``sum_i w_force_i |F^_i-F_i|^2``,
    ``sum_k w_stress_k ||S^-S||_F^2`` (all nine virial components),
    ``sum_i w_magmom_force_i (M^_i-M_i)^2`` (0 for a model without ``magmom_forces``).

    ``magnetic``: whether to build the fourth term (default: when ``weights`` has a magnetic
    weight, or, with stored weights, always); without it (and for every non-magnetic model) the
    chunk loss is exactly the three-term one.

    With ``weights`` given, the effective weights are recomputed from it in the graph (so one
    prepared :class:`TrainingData` serves any weighting); with ``None`` the chunk's stored
    ones (computed by :func:`prepare`) are used.
    """
    efs = model.loss_efs_fn() if hasattr(model, "loss_efs_fn") else model.efs_fn()
    with_magnetic = (weights is None or weights.magnetic_force > 0) if magnetic is None else magnetic

    def terms(params, chunk: TrainingChunk):
        out = efs(params, chunk.batch)
        if weights is None:
            w_e, w_f, w_s = chunk.w_energy, chunk.w_force, chunk.w_stress
        else:
            w_e, w_f, w_s = effective_weights(
                weights, chunk.natoms, chunk.forces, chunk.batch.config_index,
                chunk.has_energy, chunk.has_forces, chunk.has_virial, xp=jnp,
            )  # fmt: skip
        de = out["energy"] - chunk.energy
        df = out["forces"] - chunk.forces
        ds = out["virial"] - chunk.virial
        e = jnp.sum(w_e * de * de)
        f = jnp.sum(w_f * jnp.sum(df * df, axis=-1))
        s = jnp.sum(w_s * jnp.sum(ds * ds, axis=(-2, -1)))
        m = jnp.zeros(())
        if "magmom_forces" in out and with_magnetic:
            # stored weights: zero unless prepared with a magnetic weight; recomputed: from ``weights``
            w_m = chunk.w_magmom_force if weights is None else magnetic_weights(
                weights, chunk.natoms, chunk.batch.config_index, chunk.has_magmom_forces, xp=jnp)
            dm = out["magmom_forces"] - chunk.magmom_forces
            m = jnp.sum(w_m * dm * dm)
        return e, f, s, m

    return terms


def make_loss_fn(model: Model, weights: LossWeights | None = None):
    """``loss_chunk(params, chunk) -> sum_k L_k`` over the chunk's configurations (scalar).

    ``L_k = w_E'(E^-E)^2/N + w_F' sum_i |F^_i-F_i|^2 + w_S' ||S^-S||_F^2/N``
    (REFERENCE.md section 3), without the penalty. Pure and differentiable in ``params``
    (the model's :class:`~mlipress.models.base.Params`). ``weights``: see
    :func:`make_loss_terms_fn`.
    """
    terms = make_loss_terms_fn(model, weights)

    def loss_chunk(params, chunk: TrainingChunk) -> jax.Array:
        return sum(terms(params, chunk))

    return loss_chunk


# ----------------------------------------------------------------------------------------
# host-level objective
# ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _compiled_chunk_fns(key: StructureKey, weights: LossWeights | None, options: tuple | None = None,
                        magnetic: bool = False):
    """jit-compiled ``terms``, ``loss`` and ``value_and_grad(loss)`` of one model structure,
    shared by every :class:`Objective` of that structure (compiled once per chunk shape).
    ``options``: XLA compiler options as sorted ``(name, value)`` pairs; ``magnetic``: build the
    magnetic-force term (:func:`make_loss_terms_fn`)."""
    terms = make_loss_terms_fn(key.model, weights, magnetic)
    jit = functools.partial(jax.jit, compiler_options=dict(options)) if options else jax.jit

    def chunk_loss(params, chunk):
        return sum(terms(params, chunk))

    return jit(terms), jit(chunk_loss), jit(jax.value_and_grad(chunk_loss))


@functools.lru_cache(maxsize=32)
def _compiled_penalty_fns(key: StructureKey):
    """jit-compiled ``coef[0] * model.penalty(params) + coef[1] * |theta|^2`` (theta: the
    regularised linear coefficients) and its value and gradient."""
    penalty = key.model.penalty

    def weighted(coef, params):
        theta = params.linear * params.regularised_mask()
        return coef[0] * penalty(params) + coef[1] * jnp.sum(theta * theta)

    return jax.jit(weighted), jax.jit(jax.value_and_grad(weighted, argnums=1))


class Objective:
    """MLIP-2's training objective ``f`` over a prepared training set (REFERENCE.md section 3).

    ``f(params) = (1/K) sum_k L_k + penalty * P + coefficient_l2 * |theta|^2`` with K =
    ``data.n_configs``, P = ``model.penalty(params)`` (an MTP:
    :func:`~mlipress.models.mtp.model.radial_penalty` of its radial part), theta the linear
    coefficients but the species energies, for any model of the contract (:mod:`mlipress.models.base`).

    - ``value(params) -> float``
    - ``value_and_grad(params) -> (float, grad)``: ``grad`` has the structure of ``params``
      (a parametrisation's gradient is a parametrisation pytree of gradient leaves).
    - ``terms(params) -> dict``: mean weighted energy, force and stress parts and the penalty.

    The gradient of the fields ``params.FROZEN`` is reported as zero (an MTP's ``scaling``:
    MLIP's BFGS does not optimise the radial-basis scaling).

    ``compiler_options``: passed to ``jax.jit``; ``FAST_COMPILE``
    (``{"xla_backend_optimization_level": 0}``) halves the compilation time (L16: 24 -> 11 s
    CPU) for a ~35 % slower pass, worth it for short runs and tests.

    Each chunk loss (and its gradient) is jit-compiled once per distinct padded shape (shared
    by all objectives of the same model structure, weights and options) and accumulated on
    the device; the penalty is added once.
    """

    def __init__(
        self,
        model: Model,
        data: TrainingData,
        weights: LossWeights | None = None,
        compiler_options: dict | None = None,
    ):
        self.model = model
        self.data = data
        self.weights = data.weights if weights is None else weights
        # stored effective weights when they match, recomputed in-graph otherwise
        same = dataclasses.replace(self.weights, penalty=data.weights.penalty,
                                   coefficient_l2=data.weights.coefficient_l2) == data.weights
        in_graph = None if same else self.weights
        options = tuple(sorted(compiler_options.items())) if compiler_options else None
        key = StructureKey(model)
        magnetic = self.weights.magnetic_force > 0
        self._terms, self._loss, self._loss_grad = _compiled_chunk_fns(key, in_graph, options, magnetic)
        self._penalty_value, self._penalty_value_and_grad = _compiled_penalty_fns(key)
        self._coef = jnp.asarray([self.weights.penalty, self.weights.coefficient_l2])
        self._inv_k = 1.0 / data.n_configs

    def penalty(self, params) -> float:
        """The penalty term of ``f``: ``LossWeights.penalty * model.penalty(params)`` plus the
        L2 term of the linear coefficients (``LossWeights.coefficient_l2``)."""
        return float(self._penalty_value(self._coef, params))

    def _penalty_grad(self, params):
        return self._penalty_value_and_grad(self._coef, params)

    @property
    def n_configs(self) -> int:
        return self.data.n_configs

    def value(self, params) -> float:
        """``f(params)`` (float)."""
        total = self.data.sum([self._loss(params, chunk) for chunk in self.data.chunks])
        return float(total * self._inv_k + self._penalty_value(self._coef, params))

    def value_and_grad(self, params):
        """``(f, df/dparams)``; the gradient is a pytree like ``params`` (JAX arrays)."""
        total, grad = self.data.sum([self._loss_grad(params, chunk) for chunk in self.data.chunks])
        pv, pg = self._penalty_grad(params)
        inv_k = self._inv_k
        grad = jax.tree_util.tree_map(lambda a, b: a * inv_k + b, grad, pg)
        return float(total * inv_k + pv), grad.zeroed(grad.FROZEN)

    __call__ = value_and_grad

    def terms(self, params) -> dict:
        """Mean weighted energy / force / stress parts, penalty term and their sum ``f``."""
        acc = np.zeros(4)
        for part in self.data.gather([jax.device_get(self._terms(params, chunk)) for chunk in self.data.chunks]):
            acc += np.asarray([float(x) for x in part])
        acc *= self._inv_k
        pen = self.penalty(params)
        return {"energy": acc[0], "force": acc[1], "stress": acc[2], "magnetic_force": acc[3], "penalty": pen,
                "f": float(acc.sum() + pen)}


# ----------------------------------------------------------------------------------------
# MLIP parameter order
# ----------------------------------------------------------------------------------------


def flatten_mlip_gradient(grad, mtp=None) -> np.ndarray:
    """A gradient pytree as one vector in MLIP's order (REFERENCE.md section 4):

    ``[radial C[zi, zj, mu, b] at (zi N_T + zj) N_f R + mu R + b | species (N_T,) | moment]``.

    ``grad.radial`` must be a :class:`~mlipress.models.layers.Dense` gradient (a factored
    parametrisation has no dense gradient). ``mtp``, if given, checks the shapes. The
    ``scaling`` entry is not part of MLIP's vector and is dropped.
    """
    from mlipress.models.layers import Dense

    if not isinstance(grad.radial, Dense):
        raise TypeError("flatten_mlip_gradient needs a dense radial gradient, got a factored parametrisation")
    radial = np.asarray(grad.radial.C, dtype=np.float64)
    species = np.asarray(grad.species, dtype=np.float64).reshape(-1)
    moment = np.asarray(grad.moment, dtype=np.float64).reshape(-1)
    if mtp is not None:
        if radial.shape != mtp.radial_shape:
            raise ValueError(f"radial gradient has shape {radial.shape}, expected {mtp.radial_shape}")
        if species.shape != (mtp.species_count,) or moment.shape != (mtp.moments.scalar_count,):
            raise ValueError("species / moment gradient shapes do not match the potential")
    return np.concatenate([radial.reshape(-1), species, moment])
