"""Exact least-squares solve of a model's linear coefficients, and radial orthonormalisation.

REFERENCE.md section 3: MLIP-2 interleaves BFGS with an exact solve of the coefficients the
model is linear in. :func:`linear_solve` works for any model of the contract
(:mod:`mlipress.models.base`) through its ``features_fn``: the columns d(E, F, virial) /
d(params.linear). For the MTP (:func:`mtp_features_fn`), with the radial part fixed, a
configuration's energy is

    E = sum_t species[t] n_t + moment . sum_i B(i)          (n_t: atoms of species t)

and forces and virial are linear in ``moment`` alone (species energies do not depend on
positions). So the weighted E/F/S residuals of the training loss

    L = (1/K) sum_k [ w_E'(E^-E)^2/N + sum_i w_F,i |F^_i-F_i|^2 + w_S' ||S^-S||_F^2 / N ]

are a linear least-squares problem in theta = (species, moment), P = N_T + S unknowns.

Design matrix: per chunk of configurations, the columns d(E, F, virial)/d moment by the
chain rule through the basic moments (see ``_design_fn``); species columns are the atom
counts in the energy rows.

Solve: rows are weighted by sqrt(w) and reduced chunk by chunk with a streaming QR of the
augmented matrix [X | y] (TSQR), so memory is O(P^2) however large the data set, and the
normal equations (which square the condition number) are never formed. The triangular
factor is column-equilibrated and solved by SVD with a tiny ridge,
``s_i / (s_i^2 + (ridge s_max)^2)``, ``ridge = 1e-10`` by default: rank-deficient directions
(e.g. a species absent from the data, or basis functions identically zero on it) get zero
instead of noise, everything else is the exact least-squares solution to ~1e-10 relative.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from mlipress.evaluator import StructureKey, make_moments_fn
from mlipress.loss import TrainingChunk, TrainingData
from mlipress.batch import pad as pad_batch

__all__ = ["linear_solve", "mtp_features_fn", "orthonormalise_radial"]

# Memory per block of atoms in the design matrix (bytes).
_BLOCK_BYTES = 2.5e8


@dataclass(frozen=True, eq=False)
class _SparseJacobianPlan:
    """Sparsity of dM/db, the Jacobian of all moments M with respect to the basic ones b.

    A moment depends on the few basic moments of its factors only (at level 20 a basis function
    on ~19 of 295), so the Jacobian is propagated through the product stages in a flat sparse
    layout: moment m owns the entries ``offset[m] : offset[m] + len(support[m])``. A product row
    ``M_k += c M_i M_j`` adds ``c M_j dM_i + c M_i dM_j``, one gathered multiply per support
    element: stage s is ``J[lo:hi] = segment_sum(mult * M[other] * J[source], target)``
    (50-70x fewer operations than dense forward mode at levels 20-24).
    """

    nnz: int
    basic_entries: np.ndarray  # flat positions of db/db = 1
    stages: tuple  # (lo, hi, target - lo, other, source, mult) per product stage
    basis_entries: np.ndarray  # flat positions of the basis functions' entries
    basis_rows: np.ndarray  # basis function index of each
    basis_cols: np.ndarray  # basic moment index of each


def _sparse_jacobian_plan(plan) -> _SparseJacobianPlan:
    n_basic = len(plan.basic_mu)
    support = [np.array([m]) for m in range(n_basic)] + [None] * (plan.count - n_basic)
    for start, stop, I, J, _, seg in plan.stages:
        for k in range(start, stop):
            rows = seg == k - start
            support[k] = np.union1d(np.concatenate([support[i] for i in I[rows]] or [np.zeros(0, int)]),
                                    np.concatenate([support[j] for j in J[rows]] or [np.zeros(0, int)]))
    sizes = np.array([len(sp) for sp in support])
    offset = np.concatenate([[0], np.cumsum(sizes)])

    def where(m, elems):  # flat positions of elems in support[m]
        return offset[m] + np.searchsorted(support[m], elems)

    stages = []
    for start, stop, I, J, mult, seg in plan.stages:
        tgt, oth, src, mul = [], [], [], []
        for i, j, c, k in zip(I, J, mult, seg + start):
            for a, b in ((i, j), (j, i)):  # differentiate factor a, the other factor is b
                tgt.append(where(k, support[a]))
                src.append(offset[a] + np.arange(sizes[a]))
                oth.append(np.full(sizes[a], b))
                mul.append(np.full(sizes[a], c))
        tgt, oth, src, mul = (np.concatenate(x) for x in (tgt, oth, src, mul))
        order = np.argsort(tgt, kind="stable")
        lo, hi = int(offset[start]), int(offset[stop])
        stages.append((lo, hi, (tgt[order] - lo).astype(np.int32), oth[order].astype(np.int32),
                       src[order].astype(np.int32), mul[order].astype(np.float64)))
    rows = np.concatenate([np.full(sizes[m], s) for s, m in enumerate(plan.mapping)])
    cols = np.concatenate([support[m] for m in plan.mapping])
    entries = np.concatenate([offset[m] + np.arange(sizes[m]) for m in plan.mapping])
    return _SparseJacobianPlan(int(offset[-1]), offset[:n_basic].astype(np.int32), tuple(stages),
                               entries.astype(np.int32), rows.astype(np.int32), cols.astype(np.int32))


def mtp_features_fn(mtp):
    """``features(params, batch) -> (energy (C, P), forces (A, 3, P), virial (C, 3, 3, P))``:
    the columns of an MTP's linear part ``[species | moment]``, P = N_T + S (the MTP's
    ``features_fn`` of the model contract).

    Columns d(E, F, virial)/d moment by the chain rule through the two moment stages.

    With site basis functions B(i) = P(b(i)) of the basic moments b(i) = sum_j t(r_ij):
    dB(i)/dr_ij = [dP/db](i) . dt/dr_ij. The per-pair term derivatives dt/dr_ij are three
    forward tangents of the geometry (each term depends on its own pair only); the product
    Jacobians dP/db are propagated sparsely (:class:`_SparseJacobianPlan`). Differentiating
    the force pass once per basis function instead (S tangents through the reverse pass)
    was 2x slower at level 10 and 15x at level 20.
    """
    moments = make_moments_fn(mtp)
    plan = moments.plan
    sparse = _sparse_jacobian_plan(plan)
    nt, n_basic, S = mtp.species_count, len(plan.basic_mu), len(plan.mapping)

    def product_jacobian(b):  # (n_basic, A) -> dB/db (A, S, n_basic)
        A = b.shape[1]
        M = moments.products(b)
        jf = jnp.zeros((sparse.nnz, A)).at[sparse.basic_entries].set(1.0)
        for lo, hi, tgt, oth, src, mult in sparse.stages:
            vals = M[oth] * jf[src] * mult[:, None]
            jf = jf.at[lo:hi].set(jax.ops.segment_sum(vals, tgt, num_segments=hi - lo, indices_are_sorted=True))
        H = jnp.zeros((A, S, n_basic)).at[:, sparse.basis_rows, sparse.basis_cols].set(jf[sparse.basis_entries].T)
        return M[plan.mapping].T, H

    entries = sum(len(st[2]) for st in sparse.stages)

    def features(params, batch):
        (A, K), C = batch.mask.shape, batch.n_configs
        # atoms per block: bound the memory of H (S x n_basic), G (K x 3 x S) and the stage values
        block = int(min(A, max(8, _BLOCK_BYTES // (8 * (S * n_basic + 3 * S * K + entries + sparse.nnz)))))
        pad = -A % block
        padded = pad_batch(batch, A + pad, vectors=1.0)
        blocks = jax.tree.map(lambda x: x.reshape(-1, block, *x.shape[1:]), padded)

        def one_block(carry, x):
            forces, virial, energy = carry
            nb, start = x

            def terms(vectors):
                return moments.basic(params, vectors, nb.mask, nb.types_i, nb.types_j, reduce=False)

            t = terms(nb.vectors)  # (n_basic, a, K)
            units = jnp.broadcast_to(jnp.eye(3)[:, None, None, :], (3, *nb.vectors.shape))
            dt = jax.vmap(lambda u: jax.jvp(terms, (nb.vectors,), (u,))[1])(units)  # (3, n_basic, a, K)
            B, H = product_jacobian(t.sum(axis=-1))
            G = jnp.einsum("asn,dnak->akds", H, dt) * nb.mask[:, :, None, None]  # dB(i)/dr_ij
            forces = forces.at[nb.index_j.reshape(-1)].add(-G.reshape(-1, 3, S))
            forces = forces.at[jnp.arange(block) + start].add(G.sum(axis=1))
            virial = virial.at[nb.config_index].add(-jnp.einsum("akds,ake->ades", G, nb.vectors))
            energy = energy.at[nb.config_index].add(B)
            return (forces, virial, energy), None

        starts = jnp.arange(0, A + pad, block)
        init = (jnp.zeros((A + pad + 1, 3, S)), jnp.zeros((C + 1, 3, 3, S)), jnp.zeros((C + 1, S)))

        (forces, virial, energy), _ = jax.lax.scan(one_block, init, (blocks, starts))
        # species energies: atoms per species in the energy rows, nothing in forces and virial
        onehot = jax.nn.one_hot(batch.types_i, nt, dtype=jnp.float64)
        counts = jax.ops.segment_sum(onehot, batch.config_index, C + 1)[:C]
        return (jnp.concatenate([counts, energy[:C]], axis=1),
                jnp.concatenate([jnp.zeros((A, 3, nt)), forces[:A]], axis=2),
                jnp.concatenate([jnp.zeros((C, 3, 3, nt)), virial[:C]], axis=3))

    return features


@functools.lru_cache(maxsize=8)
def _compiled_features(key: StructureKey):
    return jax.jit(key.model.features_fn())


def _weighted_rows(chunk: TrainingChunk, features) -> np.ndarray:
    """Nonzero rows of sqrt(w) [X | y] of one chunk (at most C + 3A + 9C rows, P + 1 columns)."""
    dE, dF, dV = (np.asarray(a) for a in features)
    P = dE.shape[1]
    se, sf, sv = (np.sqrt(np.asarray(w)) for w in (chunk.w_energy, chunk.w_force, chunk.w_stress))
    energy, forces, virial = (np.asarray(a) for a in (chunk.energy, chunk.forces, chunk.virial))
    top = np.hstack([dE, energy[:, None]]) * se[:, None]
    forces = np.concatenate([dF, forces[..., None]], axis=2) * sf[:, None, None]
    vir = np.concatenate([dV, virial[..., None]], axis=3) * sv[:, None, None, None]
    rows = np.vstack([top, forces.reshape(-1, P + 1), vir.reshape(-1, P + 1)])
    keep = np.any(rows[:, :-1] != 0, axis=1) | (rows[:, -1] != 0)
    return rows[keep]


def linear_solve(model, params, data: TrainingData, ridge: float = 1e-10):
    """``(params with exact linear coefficients, loss of E/F/S residuals at the solution)``.

    ``data``: :func:`mlipress.loss.prepare` output; its effective weights (``w_energy``,
    ``w_force``, ``w_stress``) define the residuals, so the solve minimises exactly the data
    part of :class:`mlipress.loss.Objective`. The loss returned is that part,
    ``(1/K) sum_k L_k`` (no radial penalty, which does not depend on the linear
    coefficients), computed from the QR residual. Every field of ``params`` but the linear
    ones (an MTP's radial part, dense or factored, and scaling) is used as given; ``model``
    is any model of the contract (:mod:`mlipress.models.base`). See the module docstring.
    """
    features = _compiled_features(StructureKey(model))
    P = int(params.linear.shape[0])
    R = np.zeros((0, P + 1))
    for chunk in data.chunks:
        rows = _weighted_rows(chunk, features(params, chunk.batch))
        R = np.linalg.qr(np.vstack([R, rows]), mode="r")
        R = R[: P + 1]
    if R.shape[0] < P + 1:
        R = np.vstack([R, np.zeros((P + 1 - R.shape[0], P + 1))])
    Rx, z, res = R[:P, :P], R[:P, P], float(R[P, P]) ** 2 if R.shape[0] > P else 0.0
    scale = np.linalg.norm(Rx, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    U, s, Vt = np.linalg.svd(Rx / scale, full_matrices=False)
    lam = (ridge * (s[0] if s.size and s[0] > 0 else 1.0)) ** 2
    phi = Vt.T @ ((s / (s * s + lam)) * (U.T @ z))
    theta = phi / scale
    # loss at theta: |R theta - z|^2 + residual outside the range of R
    loss = (float(np.sum((Rx @ theta - z) ** 2)) + res) / data.n_configs
    return params.with_linear(theta), loss


def orthonormalise_radial(C) -> np.ndarray:
    """Orthonormal radial functions: C (N_T, N_T, N_f, R) -> same shape.

    The radial function mu is the vector c_mu = C[:, :, mu, :] over all species pairs and
    basis indices (length N_T^2 R), as in MLIP's penalty (REFERENCE.md section 3). The c_mu
    are orthonormalised in order mu = 0, 1, ... (Gram-Schmidt, computed as a QR
    factorisation with the signs fixed so that c_mu . c_mu_new > 0). A radial function that
    is linearly dependent on the previous ones keeps its (normalised) Gram-Schmidt direction
    from QR. This changes the model: follow it by :func:`linear_solve`, as MLIP does.
    """
    C = np.asarray(C, dtype=np.float64)
    nt, _, nf, nb = C.shape
    M = np.transpose(C, (0, 1, 3, 2)).reshape(nt * nt * nb, nf)
    Q, Rm = np.linalg.qr(M)
    signs = np.where(np.diag(Rm) < 0, -1.0, 1.0)
    Q = Q * signs
    return np.transpose(Q.reshape(nt, nt, nb, nf), (0, 1, 3, 2)).copy()
