"""The ACE evaluator in JAX: atomic base, B-functions, energies, forces, virials, design matrix.

For a padded :class:`~mlipress.batch.NeighborBatch` (A atoms, K neighbour slots) every atom gets
one vector ``a`` of its atomic base (eq. (14) of the paper), laid out as

- ``N_T N_k`` rank-1 entries ``A1[mu, k] = sum_j [z_j = mu] g_k(r_ij) Y_00``;
- ``N_T N_rad (L+1)^2`` entries ``A[mu, n, lm] = sum_j [z_j = mu] R_nl^{z_i z_j}(r_ij) Y_lm(r_ij)``,

with pacemaker's harmonics, normalised to 4 pi on the sphere (``Y_00 = 1``: the orthonormal
ones times sqrt(4 pi)), so that the coefficients of a pacemaker ``.yaml`` mean the same here and
in python-ace (a rank-v B-function is (4 pi)^(v/2) times its orthonormal-harmonics form;
checked against python-ace in ``tests/test_ace_pyace.py``).

The B-functions are a fixed table of terms ``(f, coef, idx_1..idx_v)`` over the expanded base
``x = [a, 1, q(a)]`` of the model's coupling (:mod:`.coupling`; the constant 1 pads every
product to the same number of factors, ``q`` are the CP projections, none for the exact
coupling): ``B_f = sum_terms coef prod_t x[idx_t]``, one gather, product and segment-sum for the
whole basis. ``E_i = E0[z_i] + sum_f c[z_i, f] B_f``.

Forces and virials come from one reverse pass (as for the MTP). The design matrix of the linear
part uses the chain rule ``dB/dr_ij = dB/da . dphi(r_ij)/dr_ij``: ``dB/da`` from the partial
products of the term table carried back through the linear map ``x(a)``, ``dphi/dr_ij`` from
three forward tangents per pair, so no per-coefficient pass is made.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from mlipress.equivariant import spherical_harmonics
from mlipress.models.ace.coupling import product_table
from mlipress.models.ace.radial import pair_index, radial_basis_values
from mlipress.models.base import efs_from_site_energies

__all__ = ["make_efs_fn", "make_features_fn", "make_site_basis_fn"]

#: pacemaker's harmonics are the orthonormal ones times this (``Y_00 = 1``)
SQRT_4PI = math.sqrt(4.0 * math.pi)


def _pair_phi_fn(ace):
    """``phi(params, vectors, mask, types_i, types_j) -> (..., n_a)``: each pair's contribution
    to the atomic base ``a`` of its central atom (zero for padded pairs)."""
    nt, nrad, L = ace.n_species, ace.nrad, ace.lmax
    l_of_lm = np.repeat(np.arange(L + 1), 2 * np.arange(L + 1) + 1)
    pairs = jnp.asarray(pair_index(nt))
    n_pairs = nt * (nt + 1) // 2

    def phi(params, vectors, mask, types_i, types_j):
        safe = jnp.where(mask[..., None], vectors, jnp.array([1.0, 0.0, 0.0]))
        r = jnp.sqrt(jnp.sum(safe * safe, axis=-1))
        g = radial_basis_values(r, ace.radial_basis) * mask[..., None]
        Y = SQRT_4PI * spherical_harmonics(L, safe)
        zi = jnp.broadcast_to(types_i, types_j.shape)
        C = params.radial.dense()  # (P, N_k, N_rad (L+1))
        one_pair = jax.nn.one_hot(pairs[zi, types_j], n_pairs, dtype=g.dtype)
        R = params.scaling * jnp.einsum("...p,...k,pkm->...m", one_pair, g, C).reshape(g.shape[:-1] + (nrad, L + 1))
        nb = jax.nn.one_hot(types_j, nt, dtype=g.dtype)
        A1 = (nb[..., :, None] * g[..., None, :]).reshape(g.shape[:-1] + (-1,))
        A = (nb[..., :, None, None] * (R[..., l_of_lm] * Y[..., None, :])[..., None, :, :]).reshape(g.shape[:-1] + (-1,))
        return jnp.concatenate([A1, A], -1)

    return phi


def make_site_basis_fn(ace):
    """``basis(params, batch) -> (A, F)``: the B-functions of every atom."""
    table = product_table(ace)
    phi = _pair_phi_fn(ace)
    idx, coef, seg = jnp.asarray(table.idx), jnp.asarray(table.coef), jnp.asarray(table.seg)

    def from_base(a):
        factors = table.expand(a)[:, idx]  # (A, T, v)
        terms = jnp.prod(factors, axis=-1) * coef
        return jax.ops.segment_sum(terms.T, seg, table.n_functions, indices_are_sorted=True).T

    def basis(params, batch):
        return from_base(phi(params, batch.vectors, batch.mask, batch.types_i[:, None], batch.types_j).sum(axis=1))

    basis.table, basis.phi, basis.from_base = table, phi, from_base
    return basis


def _valid_atoms(batch):
    return batch.config_index < batch.n_configs


def make_efs_fn(ace):
    """``efs(params, batch) -> dict`` with ``energy`` (C,), ``energies`` (A,), ``forces`` (A, 3),
    ``virial`` (C, 3, 3) (MLIP's PlusStress), differentiable in ``params``."""
    basis = make_site_basis_fn(ace)

    def site_energies(params, batch):
        B = basis(params, batch)
        V = params.species[batch.types_i] + jnp.sum(params.coeffs[batch.types_i] * B, axis=-1)
        return jnp.where(_valid_atoms(batch), V, 0.0)

    efs = efs_from_site_energies(site_energies)
    efs.site_energies = site_energies
    return efs


def make_features_fn(ace):
    """``features(params, batch) -> (energy (C, P), forces (A, 3, P), virial (C, 3, 3, P))``, the
    columns of ``params.linear = [species (N_T) | coeffs (N_T, F) row-major]``."""
    basis = make_site_basis_fn(ace)
    table, phi = basis.table, basis.phi
    nt, F, n_a = ace.n_species, table.n_functions, table.n_a
    idx, coef, seg = jnp.asarray(table.idx), jnp.asarray(table.coef), jnp.asarray(table.seg)
    v = table.idx.shape[1]

    term, slot, col, weight = (jnp.asarray(x) for x in table.rows_to_a())
    targets = seg[term] * n_a + col

    def dB_da(a):
        """(A, F, n_a): the partial products of the term table, carried back through ``x(a)``."""
        X = table.expand(a)[:, idx]  # (A, T, v)
        partial = jnp.stack([jnp.prod(jnp.delete(X, t, axis=-1), axis=-1) if v > 1 else jnp.ones(X.shape[:2])
                             for t in range(v)], -1) * coef[:, None]  # (A, T, v)
        out = jax.ops.segment_sum((partial[:, term, slot] * weight).T, targets, F * n_a)  # (F n_a, A)
        return out.reshape(F, n_a, -1).transpose(2, 0, 1)

    def features(params, batch):
        A, n, K = batch.types_i.shape[0], batch.n_configs, batch.vectors.shape[1]
        zi = batch.types_i[:, None]
        pair = lambda vec: phi(params, vec, batch.mask, zi, batch.types_j)  # noqa: E731
        a = pair(batch.vectors).sum(axis=1)
        B = basis.from_base(a)  # (A, F)
        dphi = jnp.stack([jax.jvp(pair, (batch.vectors,), (jnp.zeros_like(batch.vectors).at[..., x].set(1.0),))[1]
                          for x in range(3)], -1)  # (A, K, n_a, 3)
        G = jnp.einsum("afj,akjx->afkx", dB_da(a), dphi) * batch.mask[:, None, :, None]  # dB_f/dr_ik
        valid = _valid_atoms(batch)
        S = jax.nn.one_hot(batch.types_i, nt, dtype=B.dtype) * valid[:, None]  # (A, N_T)
        # energies
        e_species = jax.ops.segment_sum(S, batch.config_index, n + 1)[:n]
        e_coeffs = jax.ops.segment_sum(S[:, :, None] * B[:, None, :], batch.config_index, n + 1)[:n]
        # forces: F_a = sum_k dV_a/dr_ak - sum_{(i,k): j = a} dV_i/dr_ik
        own = jnp.einsum("az,afkx->axzf", S, G)
        seg_j = (batch.index_j * nt + batch.types_i[:, None]).reshape(-1)
        Gz = jnp.transpose(G, (0, 2, 3, 1)).reshape(A * K, 3, F) * valid.repeat(K)[:, None, None]
        other = jax.ops.segment_sum(Gz, seg_j, (A + 1) * nt)[: A * nt].reshape(A, nt, 3, F).transpose(0, 2, 1, 3)
        f_coeffs = (own - other).reshape(A, 3, nt * F)
        # virial: -sum_{ik} dV_i/dr_ik (outer) r_ik
        W = -jnp.einsum("afkx,aky->axyf", G, batch.vectors)
        w_coeffs = jax.ops.segment_sum(S[:, None, None, :, None] * W[:, :, :, None, :], batch.config_index, n + 1)[:n]
        energy = jnp.concatenate([e_species, e_coeffs.reshape(n, nt * F)], -1)
        forces = jnp.concatenate([jnp.zeros((A, 3, nt)), f_coeffs], -1)
        virial = jnp.concatenate([jnp.zeros((n, 3, 3, nt)), w_coeffs.reshape(n, 3, 3, nt * F)], -1)
        return energy, forces, virial

    return features
