"""Exact least-squares solve of the linear MTP coefficients, and radial orthonormalisation.

REFERENCE.md section 3: MLIP-2 interleaves BFGS with an exact solve of the coefficients the
model is linear in. With the radial part fixed, a configuration's energy is

    E = sum_t species[t] n_t + moment . sum_i B(i)          (n_t: atoms of species t)

and forces and virial are linear in ``moment`` alone (species energies do not depend on
positions). So the weighted E/F/S residuals of the training loss

    L = (1/K) sum_k [ w_E'(E^-E)^2/N + sum_i w_F,i |F^_i-F_i|^2 + w_S' ||S^-S||_F^2 / N ]

are a linear least-squares problem in theta = (species, moment), P = N_T + S unknowns.

Design matrix: per chunk of configurations, ``jax.jacfwd`` of the evaluator's
``(energy, forces, virial)`` with respect to ``moment`` (exact, the map is linear) gives the
columns; species columns are the atom counts in the energy rows. Cost per chunk: S forward
tangents through one force pass, i.e. about S/3 force evaluations and S times its memory
(at level 20, S ~ 500, keep chunks to a few hundred atoms: ``max_atoms``).

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
import jax
import jax.numpy as jnp
import numpy as np

from mlipress.evaluator import StructureKey, make_efs_fn
from mlipress.loss import TrainingChunk, TrainingData
from mlipress.model import MTP

__all__ = ["linear_solve", "orthonormalise_radial"]

@functools.lru_cache(maxsize=8)
def _design_fn(key: StructureKey):
    efs = make_efs_fn(key.mtp)

    nt = key.mtp.species_count

    @jax.jit
    def design(params, batch):
        """Atoms per species (C, N_T) and columns d(E, F, virial)/d moment: (C, S),
        (A, 3, S), (C, 3, 3, S)."""

        def lin(m):
            out = efs({**params, "moment": m, "species": jnp.zeros_like(params["species"])}, batch)
            return out["energy"], out["forces"], out["virial"]

        onehot = jax.nn.one_hot(batch.types_i, nt, dtype=jnp.float64)
        counts = jax.ops.segment_sum(onehot, batch.config_index, batch.n_configs + 1)[: batch.n_configs]
        return (counts, *jax.jacfwd(lin)(params["moment"]))

    return design


def _weighted_rows(chunk: TrainingChunk, design) -> np.ndarray:
    """Nonzero rows of sqrt(w) [X | y] of one chunk (at most C + 3A + 9C rows, P + 1 columns)."""
    counts, dE, dF, dV = (np.asarray(a) for a in design)
    C, A, S = dE.shape[0], dF.shape[0], dE.shape[1]
    nt = counts.shape[1]
    se, sf, sv = (np.sqrt(np.asarray(w)) for w in (chunk.w_energy, chunk.w_force, chunk.w_stress))
    energy, forces, virial = (np.asarray(a) for a in (chunk.energy, chunk.forces, chunk.virial))
    top = np.hstack([counts, dE, energy[:, None]]) * se[:, None]
    forces = np.concatenate(
        [np.zeros((A, 3, nt)), dF, forces[..., None]], axis=2
    ) * sf[:, None, None]
    vir = np.concatenate(
        [np.zeros((C, 3, 3, nt)), dV, virial[..., None]], axis=3
    ) * sv[:, None, None, None]
    rows = np.vstack([top, forces.reshape(-1, nt + S + 1), vir.reshape(-1, nt + S + 1)])
    keep = np.any(rows[:, :-1] != 0, axis=1) | (rows[:, -1] != 0)
    return rows[keep]


def linear_solve(mtp: MTP, params: dict, data: TrainingData, ridge: float = 1e-10) -> tuple[dict, float]:
    """``(params with exact species and moment, loss of E/F/S residuals at the solution)``.

    ``data``: :func:`mlipress.loss.prepare` output; its effective weights (``w_energy``,
    ``w_force``, ``w_stress``) define the residuals, so the solve minimises exactly the data
    part of :class:`mlipress.loss.Objective`. The loss returned is that part,
    ``(1/K) sum_k L_k`` (no radial penalty, which does not depend on the linear
    coefficients), computed from the QR residual. ``params["radial"]`` (dense or any
    parametrisation) and ``params["scaling"]`` are used as given. See the module docstring.
    """
    design = _design_fn(StructureKey(mtp))
    nt, S = mtp.species_count, mtp.moments.scalar_count
    P = nt + S
    R = np.zeros((0, P + 1))
    for chunk in data.chunks:
        rows = _weighted_rows(chunk, design(params, chunk.batch))
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
    new = {**params, "species": jnp.asarray(theta[:nt]), "moment": jnp.asarray(theta[nt:])}
    return new, loss


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
