"""The linear part of an MTP: the design matrix d(E, F, virial) / d[species | moment].

With the radial part fixed, a configuration's energy is

    E = sum_t species[t] n_t + moment . sum_i B(i)          (n_t: atoms of species t)

and forces and virial are linear in ``moment`` alone (species energies do not depend on
positions). :func:`mtp_features_fn` (the MTP's ``features_fn`` of the model contract) gives
the columns: d(E, F, virial)/d moment by the chain rule through the basic moments, with the
product Jacobians propagated sparsely; species columns are the atom counts in the energy rows.
The exact solve that uses them is model-independent (:mod:`mlipress.fit.linear`).
:func:`orthonormalise_radial` is MLIP's orthonormalisation of the radial functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from mlipress.batch import pad as pad_batch
from mlipress.models.mtp.evaluator import make_moments_fn

__all__ = ["mtp_features_fn", "orthonormalise_radial"]

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
                return moments.basic(params, nb.replace(vectors=vectors), reduce=False)

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
