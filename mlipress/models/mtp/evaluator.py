"""The MTP evaluator: site energies, energies, forces and virials of padded neighbour batches.

This is the one implementation of the MTP math (REFERENCE.md section 1; eqs. (2)-(5) of the
paper) in the package; the calculator, the error reports and the training losses all call
the factories below. In the style of jax-md, factories take a model description and return
pure functions of ``(params, batch)``:

- ``params`` is an :class:`~mlipress.models.mtp.model.MTPParams` pytree (``radial``, ``species``,
  ``moment``, ``scaling``); ``radial`` is any radial parametrisation of :mod:`mlipress.models.layers`
  (dense or low-rank), all contracted by their ``radial_values(Q, zi, zj)``, so compressed
  models run through exactly the same code.
- ``batch`` is a :class:`mlipress.batch.NeighborBatch`.

Products of moments (``alpha_index_times``) are grouped into dependency stages: stage s holds
every product whose inputs are final after stage s-1. Each stage is one gather, multiply and
segment-sum over all its rows, so even level 28 (180 069 products) compiles to a few dozen
vectorised operations instead of one op per product.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from mlipress.models.mtp.model import MTP, MomentBasis, RadialBasis
from mlipress.batch import NeighborBatch
from mlipress.models.base import efs_from_site_energies


def chebyshev_radial_basis(r: jax.Array, basis: RadialBasis, scaling) -> jax.Array:
    """``Q_b(r) = scaling * T_b(x) * (max_dist - r)^2`` for b < R, zero for r >= max_dist.

    ``x = (2 r - (min_dist + max_dist)) / (max_dist - min_dist)``. Shape (...) -> (..., R).
    ``RBChebyshev_repuls`` clamps r to min_dist first; plain ``RBChebyshev`` does not.
    """
    if basis.kind == "RBChebyshev_repuls":
        r = jnp.maximum(r, basis.min_dist)
    x = (2.0 * r - (basis.min_dist + basis.max_dist)) / (basis.max_dist - basis.min_dist)
    terms = [jnp.ones_like(x), x]
    for _ in range(2, basis.size):
        terms.append(2.0 * x * terms[-1] - terms[-2])
    cheb = jnp.stack(terms[: basis.size], axis=-1)
    envelope = jnp.where(r < basis.max_dist, (basis.max_dist - r) ** 2, 0.0)
    return scaling * cheb * envelope[..., None]


@dataclass(frozen=True, eq=False)
class MomentPlan:
    """Host-side precomputation of how to evaluate a :class:`MomentBasis` efficiently.

    Moments are renumbered so that basic moments come first and each product stage writes a
    contiguous block: ``stages[s] = (start, stop, I, J, mult, seg)`` computes
    ``M[start:stop] = segment_sum(mult * M[I] * M[J], seg)``.
    """

    monomials: np.ndarray  # (n_mono, 3) exponents (a, b, c)
    basic_mu: np.ndarray  # (n_basic,)
    basic_mono: np.ndarray  # (n_basic,) index into monomials
    stages: tuple
    mapping: np.ndarray  # (n_scalar,) renumbered indices of the basis functions
    count: int  # number of moments actually computed
    max_degree: int


@functools.lru_cache(maxsize=32)
def _plan_cached(key) -> MomentPlan:
    basic, times, mapping = (np.array(k, dtype=np.int64) for k in key[:3])
    return _make_plan(basic.reshape(-1, 4), times.reshape(-1, 4), mapping, key[3])


def moment_plan(moments: MomentBasis) -> MomentPlan:
    key = (
        tuple(moments.basic.ravel().tolist()),
        tuple(moments.times.ravel().tolist()),
        tuple(moments.mapping.tolist()),
        moments.count,
    )
    return _plan_cached(key)


def _make_plan(basic: np.ndarray, times: np.ndarray, mapping: np.ndarray, count: int) -> MomentPlan:
    n_basic = len(basic)
    stage = np.full(count, -1, np.int64)
    stage[:n_basic] = 0
    used_at = {}  # moment -> first row using it, to check MLIP's in-order semantics
    for row, (i, j, _, k) in enumerate(times):
        for src in (i, j):
            if stage[src] < 0:
                raise ValueError(f"alpha_index_times row {row} uses moment {src} before it is computed")
            used_at.setdefault(src, row)
        if k in used_at:
            raise ValueError(f"alpha_index_times row {row} adds to moment {k} after it was used")
        if k < n_basic:
            raise ValueError(f"alpha_index_times row {row} writes into basic moment {k}")
        stage[k] = max(stage[k], 1 + max(stage[i], stage[j]))

    # Renumber: basic moments, then each stage's targets in ascending original order.
    new_index = np.full(count, -1, np.int64)
    new_index[:n_basic] = np.arange(n_basic)
    next_free = n_basic
    stages = []
    for s in range(1, int(stage.max(initial=0)) + 1):
        targets = np.flatnonzero(stage == s)
        new_index[targets] = np.arange(next_free, next_free + len(targets))
        next_free += len(targets)
    for s in range(1, int(stage.max(initial=0)) + 1):
        rows = times[stage[times[:, 3]] == s]
        targets = new_index[rows[:, 3]]
        order = np.argsort(targets, kind="stable")
        rows, targets = rows[order], targets[order]
        start = int(new_index[stage == s].min())
        stop = start + int((stage == s).sum())
        stages.append(
            (
                start,
                stop,
                new_index[rows[:, 0]].astype(np.int32),
                new_index[rows[:, 1]].astype(np.int32),
                rows[:, 2].astype(np.float64),
                (targets - start).astype(np.int32),
            )
        )
    if np.any(new_index[mapping] < 0):
        raise ValueError("alpha_moment_mapping refers to a moment that is never computed")

    exps = basic[:, 1:]
    monomials, basic_mono = np.unique(exps, axis=0, return_inverse=True)
    return MomentPlan(
        monomials=monomials,
        basic_mu=basic[:, 0].astype(np.int32),
        basic_mono=basic_mono.reshape(-1).astype(np.int32),
        stages=tuple(stages),
        mapping=new_index[mapping].astype(np.int32),
        count=next_free,
        max_degree=int(exps.sum(axis=1).max(initial=0)),
    )


def _pair_geometry(vectors, mask):
    """Distances and unit vectors with padding replaced by a harmless dummy (no NaN gradients)."""
    safe = jnp.where(mask[..., None], vectors, jnp.array([1.0, 0.0, 0.0]))
    r = jnp.sqrt(jnp.sum(safe * safe, axis=-1))
    return r, safe / r[..., None]


def plain_radial_fn(mtp: MTP):
    """``radial(params, r, batch) -> f (A, K, N_f)``: the MTP's radial functions
    ``f_mu(r_ij) = sum_b C[z_i, z_j, mu, b] Q_b(r_ij)`` of the pairs of ``batch``."""
    rb = mtp.radial_basis

    def radial(params, r, batch):
        Q = chebyshev_radial_basis(r, rb, params.scaling)
        return params.radial.radial_values(Q, batch.types_i[:, None], batch.types_j)

    return radial


def _monomials(u, exponents):
    """{(a, b, c): u_x^a u_y^b u_z^c} for the given exponent triples and all their
    prefixes, built by a chain of products (differentiates without gathers)."""
    cache = {(0, 0, 0): None}
    comps = (u[..., 0], u[..., 1], u[..., 2])

    def get(e):
        if e not in cache:
            axis = next(k for k in range(3) if e[k] > 0)
            prev = list(e)
            prev[axis] -= 1
            base = get(tuple(prev))
            cache[e] = comps[axis] if base is None else base * comps[axis]
        return cache[e]

    for e in exponents:
        get(tuple(int(x) for x in e))
    return cache


def _rank_monomials(u, max_rank: int) -> jax.Array:
    """All monomials ``u_x^a u_y^b u_z^c`` of rank ``a+b+c <= max_rank``, rank by rank and in
    MLIP's order within a rank (:func:`~mlipress.models.mtp.basis.multi_indices`): shape
    (n_mono, ...) for ``u`` (3, ...).

    Rank n is ``x * (rank n-1)``, ``y * (the a = 0 part of rank n-1, its last n entries)``,
    ``z * (its last entry)``: three broadcast multiplies and a concatenation per rank, no
    gathers (a chain of products differentiates into the same few vectorised ops)."""
    x, y, z = u[0][None], u[1][None], u[2][None]
    prev = jnp.ones_like(u[:1])
    ranks = [prev]
    for n in range(1, max_rank + 1):
        prev = jax.lax.optimization_barrier(jnp.concatenate([x * prev, y * prev[-n:], z * prev[-1:]], 0))
        ranks.append(prev)
    return jnp.concatenate(ranks, 0)


def _basic_layout(plan: MomentPlan, n_f: int):
    """How to read the basic moments off per-radial-function monomial prefixes.

    For each mu, the moments ``sum_j f_mu u^e`` for every monomial of rank <= the largest rank
    used with mu form one prefix of :func:`_rank_monomials` (MLIP's basic moments are exactly
    these). Returns ``(max_rank, prefix lengths per mu, index of each basic moment in the
    concatenation of the prefixes or None when the concatenation is the basic order)``."""
    from mlipress.models.mtp.basis import multi_indices

    exps = plan.monomials[plan.basic_mono]  # (n_basic, 3)
    ranks = exps.sum(axis=1)
    max_rank = int(ranks.max(initial=0))
    position = {}
    for n in range(max_rank + 1):
        for e in multi_indices(n):
            position[e] = len(position)
    prefix = []
    for mu in range(n_f):
        sel = plan.basic_mu == mu
        top = int(ranks[sel].max()) if sel.any() else -1
        prefix.append((top + 1) * (top + 2) * (top + 3) // 6)
    starts = np.concatenate([[0], np.cumsum(prefix)[:-1]]).astype(np.int64)
    index = np.array([starts[mu] + position[tuple(int(v) for v in e)] for mu, e in zip(plan.basic_mu, exps)],
                     dtype=np.int32)
    identity = len(index) == sum(prefix) and np.array_equal(index, np.arange(len(index)))
    return max_rank, tuple(prefix), None if identity else index


def make_moments_fn(mtp: MTP, radial_fn=None, vectorised: bool = False):
    """``moments(params, batch) -> (count, A)``: all moments M of every atom (renumbered, see
    :class:`MomentPlan`); the basis functions are rows ``plan.mapping``.

    ``radial_fn(params, r, batch) -> (A, K, N_f)`` gives the radial functions of every pair
    (default :func:`plain_radial_fn`); a model whose radial functions depend on more pair data
    (the magnetic MTP: the moments s_i, s_j) passes its own and shares everything else.

    ``vectorised`` picks one of two layouts of the basic moments, equal to rounding:

    - ``False`` (for evaluation): one fused multiply-and-reduce per basic moment, in which XLA
      recomputes the monomial instead of materialising (A, K) temporaries; fastest for energy,
      forces and stress (a first derivative).
    - ``True`` (for the training loss, differentiated once more in the parameters): the
      monomials of every pair, (n_mono, A, K), built rank by rank, and one multiply-and-reduce
      per radial function over the monomial prefix it is used with. One op per moment makes
      the second-order graph huge; vectorised, the loss+gradient pass is 2.5-3x faster at
      levels 16 and 20 and compiles faster, while energy+forces+stress is up to 1.4x slower at
      levels 10-16 (benchmarks/results/speed.md). The optimization barriers keep XLA from
      fusing the monomial chain into every consumer."""
    plan = moment_plan(mtp.moments)
    radial = plain_radial_fn(mtp) if radial_fn is None else radial_fn
    n_basic = len(plan.basic_mu)
    if vectorised:
        max_rank, prefix, gather = _basic_layout(plan, mtp.radial_funcs_count)
    else:
        # Basic moments grouped by radial function: mu -> (positions in M, exponent triples).
        by_mu = [
            (np.flatnonzero(plan.basic_mu == mu), plan.monomials[plan.basic_mono[plan.basic_mu == mu]])
            for mu in range(mtp.radial_funcs_count)
        ]
        order = np.argsort(np.concatenate([pos for pos, _ in by_mu]), kind="stable")

    def basic_moments(params, batch: NeighborBatch, reduce=True):
        """(n_basic, A) moments, or with ``reduce=False`` the (n_basic, A, K) per-pair terms."""
        r, u = _pair_geometry(batch.vectors, batch.mask)
        f = radial(params, r, batch) * batch.mask[..., None]
        if n_basic == 0:
            return jnp.zeros((0,) + (r.shape[:1] if reduce else r.shape))
        blocks = []
        if vectorised:
            f = jnp.moveaxis(f, -1, 0)  # (N_f, A, K)
            mono = _rank_monomials(jnp.moveaxis(u, -1, 0), max_rank)  # (n_mono, A, K)
            for mu, p in enumerate(prefix):
                if p:
                    term = mono[:p] * f[mu][None]
                    blocks.append(term.sum(axis=-1) if reduce else term)
            out = jnp.concatenate(blocks, 0)
            return out if gather is None else out[gather]
        mono = _monomials(u, plan.monomials)
        for mu, (pos, exps) in enumerate(by_mu):
            for e in map(tuple, exps.tolist()):
                term = f[..., mu] if e == (0, 0, 0) else f[..., mu] * mono[e]
                blocks.append(term.sum(axis=-1) if reduce else term)
        return jnp.stack(blocks, 0)[order]

    def products(basic: jax.Array) -> jax.Array:
        """All moments (count, A) from the basic ones (n_basic, A)."""
        A = basic.shape[1]
        M = jnp.concatenate([basic, jnp.zeros((plan.count - n_basic, A), basic.dtype)], 0)
        for start, stop, I, J, mult, seg in plan.stages:
            prod = M[I] * M[J] * mult[:, None]
            block = jax.ops.segment_sum(prod, seg, num_segments=stop - start, indices_are_sorted=True)
            M = M.at[start:stop].set(block)
        return M

    def moments(params, batch: NeighborBatch) -> jax.Array:
        return products(basic_moments(params, batch))

    # The two stages separately, for the linear design matrix (mlipress.fit.linear).
    moments.plan, moments.basic, moments.products = plan, basic_moments, products
    return moments


#: Working set of one block of atoms in the pair-level arrays (bytes): blocks of atoms whose
#: intermediates stay in cache (:func:`mlipress.models.base.in_blocks`).
BLOCK_BYTES = 5e5


def atom_block_size(mtp: MTP, neighbours: int) -> int:
    """Atoms per block: the power of two (8 to 64) whose per-pair basic-moment terms,
    ``n_basic * neighbours * 8`` bytes per atom, fit in :data:`BLOCK_BYTES` (8-16 measured
    best at levels 10-20 with ~48 neighbour slots)."""
    per_atom = max(len(mtp.moments.basic), 1) * max(neighbours, 1) * 8
    size = 2 ** int(np.floor(np.log2(max(BLOCK_BYTES / per_atom, 1))))
    return int(min(max(size, 8), 64))


def make_site_energy_fn(mtp: MTP, radial_fn=None, vectorised: bool = False):
    """``site_energies(params, batch) -> (A,)``: V_i = species[z_i] + sum_s moment[s] B_s; 0 in
    padding. ``radial_fn``, ``vectorised``: see :func:`make_moments_fn`."""
    moments = make_moments_fn(mtp, radial_fn, vectorised)
    mapping = moments.plan.mapping

    def site_energies(params, batch: NeighborBatch) -> jax.Array:
        M = moments(params, batch)
        V = params.species[batch.types_i] + params.moment @ M[mapping]
        return jnp.where(batch.config_index < batch.n_configs, V, 0.0)

    return site_energies


def make_efs_fn(mtp: MTP, vectorised: bool = False):
    """``efs(params, batch) -> dict`` with ``energy`` (C,), ``energies`` (A,), ``forces``
    (A, 3) and ``virial`` (C, 3, 3) (MLIP PlusStress, eV), differentiable in ``params``:
    :func:`~mlipress.models.base.efs_from_site_energies` in blocks of :func:`atom_block_size`.
    ``vectorised``: the layout for the training loss (:func:`make_moments_fn`)."""
    return efs_from_site_energies(make_site_energy_fn(mtp, vectorised=vectorised), lambda K: atom_block_size(mtp, K))
