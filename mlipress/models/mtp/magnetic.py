"""The magnetic MTP (mMTP) with collinear atomic moments: an MTP whose radial functions depend
on the moments s_i, s_j of the two atoms of a pair (Novikov et al. 2022).

    f_mu(r, s_i, s_j) = sum_{beta, zeta, gamma} c[z_i, z_j, mu, beta, zeta, gamma]
                        Q_beta(r) Q_zeta(s_i) Q_gamma(s_j),

with ``Q_beta(r) = T_beta(x_r) (R_cut - r)^2`` the MTP's radial basis and ``Q_zeta(s) =
T_zeta(x_s)`` Chebyshev polynomials on [min_val, max_val] (MLIP-3's ``BChebyshev`` magnetic
basis, no envelope). Everything else (moment tensors, level rule, products, linear part) is the
MTP's, so :class:`MagneticMTP` is an :class:`~mlipress.models.mtp.model.MTP` whose radial tensor
has the grouped layout ``C[z_i, z_j, mu, (beta, zeta, gamma)]`` of shape
``(N_T, N_T, N_mu, N_b N_s N_s)`` (row-major over ``beta, zeta, gamma``: MLIP-3's order in its
``.mtp`` files and in motep). Contracting it with the per-pair outer product
``Q_beta Q_zeta Q_gamma`` is exactly the MTP's ``radial_values`` with a longer basis, so the
dense and MF layers, MFRA, the loss, the linear solve, the fitting loop and the compressed fits
all apply unchanged:

- **MF** factors the same unfolding as for the MTP, ``(N_T^2) x (N_mu N_b N_s^2)``.
- **TT** runs over the six axes ``(z_i, z_j, mu, beta, zeta, gamma)`` (five ranks, spec
  ``tt:R1,R2,R3,R4,R5``, or ``tt:R`` for R at every boundary): :func:`split_tensor_train` gives
  the layer, whose ``dense()`` is the grouped tensor and whose radial values contract the three
  bases one after the other (no per-pair ``N_b N_s^2`` vector is formed).
- **TTRA** (``ttra:R1,...,R5`` or ``ttra:R``) grows the five ranks of that TT: the enrichment
  works on the six-mode tensor (the grouped tensor and its gradient reshaped), as for the MTP's
  four modes.

Moments enter through the batch (``magmoms`` s_i, ``magmoms_j`` s_j; zeros when a configuration
has none). ``efs`` adds ``magmom_forces = -dE/ds_i`` (eV/mu_B) to energy, forces and virial.

Spin-flip symmetry: ``T_k(-x) = (-1)^k T_k(x)``, so with a basis interval symmetric about 0
(the default, [-s_max, s_max]) ``E(-s) = E(s)`` for every configuration exactly when all
coefficients with odd ``zeta + gamma`` vanish. The model does not impose it (MLIP-3 does not
either); a fit to time-reversal-symmetric data learns it only approximately.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mlipress.models.base import efs_from_site_energies
from mlipress.models.layers import TensorTrain, tt_param_count
from mlipress.models.mtp.evaluator import atom_block_size, chebyshev_radial_basis, make_site_energy_fn
from mlipress.models.mtp.model import MTP

__all__ = ["MagneticBasis", "MagneticMTP", "chebyshev_magnetic_basis", "magnetic_mtp", "split_tensor_train",
           "linear_features_fn"]

#: The magnetic basis types read and written (MLIP-3's plain Chebyshev basis).
MAGNETIC_BASIS_TYPES = ("BChebyshev",)


@dataclass(frozen=True)
class MagneticBasis:
    """Chebyshev basis ``Q_zeta(s) = T_zeta(x)``, ``x = (2 s - (min_val + max_val)) / (max_val -
    min_val)``, ``zeta < size`` (MLIP-3's ``magnetic_basis_type = BChebyshev``)."""

    min_val: float
    max_val: float
    size: int = 4
    kind: str = "BChebyshev"

    def __post_init__(self):
        if self.kind not in MAGNETIC_BASIS_TYPES:
            raise ValueError(f"unsupported magnetic_basis_type {self.kind!r} (supported: {MAGNETIC_BASIS_TYPES})")
        if not self.min_val < self.max_val:
            raise ValueError(f"need min_val < max_val, got {self.min_val}, {self.max_val}")
        if self.size < 1:
            raise ValueError(f"magnetic basis_size must be >= 1, got {self.size}")
        object.__setattr__(self, "min_val", float(self.min_val))
        object.__setattr__(self, "max_val", float(self.max_val))


def chebyshev_magnetic_basis(s: jax.Array, basis: MagneticBasis) -> jax.Array:
    """``T_zeta(x(s))`` for zeta < size: shape (...) -> (..., size)."""
    x = (2.0 * s - (basis.min_val + basis.max_val)) / (basis.max_val - basis.min_val)
    terms = [jnp.ones_like(x), x]
    for _ in range(2, basis.size):
        terms.append(2.0 * x * terms[-1] - terms[-2])
    return jnp.stack(terms[: basis.size], axis=-1)


# ------------------------------------------------------------------------------------------
# the TT over (z_i, z_j, mu, beta, zeta, gamma)
# ------------------------------------------------------------------------------------------


class _SplitTensorTrain(TensorTrain):
    """A TT over six modes ``(N_T, N_T, N_mu, N_b, N_s, N_s)`` that presents itself as the grouped
    four-axis tensor ``(N_T, N_T, N_mu, N_b N_s^2)`` (``shape``, ``dims``, ``dense()``,
    ``from_dense``, ``random``, ``param_count`` take that shape), so the compressed fits treat it
    like any layer. ``split = (N_b, N_s, N_s)`` is fixed per class (:func:`split_tensor_train`).
    Three equal ranks (``tt:R``) mean R at all five boundaries."""

    split: ClassVar[tuple[int, int, int]] = ()

    @classmethod
    def modes_for(cls, shape) -> tuple[int, ...]:
        shape = tuple(int(n) for n in shape)
        if len(shape) == 6:
            return shape
        if len(shape) != 4 or shape[3] != math.prod(cls.split):
            raise ValueError(f"a magnetic TT with (N_b, N_s, N_s) = {cls.split} cannot represent shape {shape}")
        return shape[:3] + cls.split

    @staticmethod
    def expand_ranks(ranks) -> tuple[int, ...]:
        ranks = tuple(int(r) for r in ranks)
        if len(ranks) == 3 and len(set(ranks)) == 1:
            return ranks[:1] * 5
        if len(ranks) != 5:
            raise ValueError(f"a magnetic MTP's TT over six modes needs five ranks (or tt:R), got {ranks}")
        return ranks

    @classmethod
    def from_dense(cls, C, ranks):
        C = np.asarray(C, dtype=np.float64)
        return super().from_dense(C.reshape(cls.modes_for(C.shape)), cls.expand_ranks(ranks))

    @classmethod
    def random(cls, key, shape, ranks, scale: float = 0.1):
        return super().random(key, cls.modes_for(shape), cls.expand_ranks(ranks), scale)

    @classmethod
    def param_count(cls, shape, ranks) -> int:
        return tt_param_count(cls.modes_for(shape), cls.expand_ranks(ranks))

    @classmethod
    def rank_candidates(cls, shape) -> list:
        return TensorTrain.rank_candidates(cls.modes_for(shape))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.modes[:3]) + (math.prod(self.modes[3:]),)

    @property
    def dims(self) -> tuple[int, ...]:
        nt, _, nf, nq = self.shape
        return (nt, nf, nq)

    def dense(self) -> jax.Array:
        return super().dense().reshape(self.shape)

    def split_values(self, Qr, Qi, Qj, zi, zj) -> jax.Array:
        """``f[..., mu]`` from the three bases: ``Qr`` (A, K, N_b), ``Qi`` (A, N_s) of the
        central atoms, ``Qj`` (A, K, N_s); contracted from the right, gamma, zeta, beta, then the
        (z_i, z_j) pair table and mu."""
        G3, G4, G5, G6 = (jnp.asarray(g) for g in self.cores[2:])
        v = Qj @ G6[:, :, 0].T  # (A, K, r5)
        v = jnp.einsum("abc,akc->akb", jnp.einsum("az,bzc->abc", Qi, G5), v)  # (A, K, r4)
        v = jnp.einsum("akn,bnc,akc->akb", Qr, G4, v)  # (A, K, r3)
        return jnp.einsum("...a,amc,...c->...m", self._pair_table()[zi, zj], G3, v)

    def radial_values(self, Q, zi, zj) -> jax.Array:
        """From the grouped basis ``Q`` (..., N_b N_s^2) (for callers that only have that)."""
        nf = self.modes[2]
        C = self.dense()  # (N_T, N_T, N_mu, N_b N_s^2)
        return jnp.einsum("...q,...mq->...m", Q, C[jnp.broadcast_to(zi, zj.shape), zj].reshape(*zj.shape, nf, -1))

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_dataclass(cls, data_fields=["cores"], meta_fields=["modes"])


@functools.lru_cache(maxsize=None)
def split_tensor_train(n_b: int, n_s: int) -> type:
    """The TT layer class of a magnetic MTP with ``N_b`` radial and ``N_s`` magnetic basis
    functions (one class per split, so compiled code is shared)."""
    return type(f"MagneticTensorTrain_{n_b}_{n_s}", (_SplitTensorTrain,),
                {"split": (int(n_b), int(n_s), int(n_s)), "__module__": __name__})


# ------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------


def magnetic_radial_fn(model: "MagneticMTP"):
    """``radial(params, r, batch) -> (A, K, N_mu)``: the mMTP's f_mu(r_ij, s_i, s_j), the hook of
    :func:`mlipress.models.mtp.evaluator.make_moments_fn`."""
    rb, mb = model.radial_basis, model.magnetic_basis

    def radial(params, r, batch):
        Qr = chebyshev_radial_basis(r, rb, params.scaling)  # (A, K, N_b)
        Qi = chebyshev_magnetic_basis(batch.magmoms, mb)  # (A, N_s)
        Qj = chebyshev_magnetic_basis(batch.magmoms_j, mb)  # (A, K, N_s)
        zi, zj = batch.types_i[:, None], batch.types_j
        layer = params.radial
        if isinstance(layer, _SplitTensorTrain):
            return layer.split_values(Qr, Qi, Qj, zi, zj)
        Q = Qr[..., :, None, None] * Qi[:, None, None, :, None] * Qj[..., None, None, :]
        return layer.radial_values(Q.reshape(*r.shape, -1), zi, zj)

    return radial


def linear_features_fn(model):
    """``features(params, batch) -> (energy (C, P), forces (A, 3, P), virial (C, 3, 3, P),
    magmom_forces (A, P))``: every prediction is linear in ``params.linear`` (P entries), so its
    column p is the prediction at the p-th unit vector (one vmapped ``efs`` per column; fine for
    the tens of linear coefficients of the levels a magnetic MTP is fitted at)."""
    efs = model.efs_fn()

    def features(params, batch):
        P = params.linear.shape[0]
        out = jax.vmap(lambda t: efs(params.with_linear(t), batch))(jnp.eye(P))
        move = lambda x: jnp.moveaxis(x, 0, -1)  # noqa: E731
        return move(out["energy"]), move(out["forces"]), move(out["virial"]), move(out["magmom_forces"])

    return features


@dataclass(frozen=True, eq=False)
class MagneticMTP(MTP):
    """A magnetic MTP: an :class:`MTP` plus ``magnetic_basis`` (required); ``radial_coeffs`` has the
    grouped shape ``(N_T, N_T, N_mu, N_b N_s^2)`` (module docstring)."""

    magnetic_basis: MagneticBasis | None = None

    def __post_init__(self):
        if not isinstance(self.magnetic_basis, MagneticBasis):
            raise ValueError("a MagneticMTP needs magnetic_basis=MagneticBasis(min_val, max_val, size)")
        super().__post_init__()

    @property
    def radial_shape(self) -> tuple[int, int, int, int]:
        nt, ns = self.species_count, self.magnetic_basis.size
        return (nt, nt, self.radial_funcs_count, self.radial_basis.size * ns * ns)

    def structure_key(self):
        return ("MagneticMTP", self.magnetic_basis) + super().structure_key()[1:]

    def radial_layer(self, spec):
        """MF and dense as for the MTP; a TT spec (``tt``, ``ttra``) gets the six-mode
        :func:`split_tensor_train`."""
        from mlipress.models.layers import layer_for, parse_radial_spec

        spec = parse_radial_spec(spec) if isinstance(spec, str) else spec
        layer = layer_for(spec)
        if issubclass(layer, TensorTrain):
            return split_tensor_train(self.radial_basis.size, self.magnetic_basis.size)
        return layer

    def efs_fn(self, vectorised: bool = False):
        site = make_site_energy_fn(self, magnetic_radial_fn(self), vectorised)
        return efs_from_site_energies(site, lambda K: atom_block_size(self, K), magnetic=True)

    def loss_efs_fn(self):
        return self.efs_fn(vectorised=True)

    def features_fn(self):
        return linear_features_fn(self)

    def spin_flip_symmetrised(self) -> "MagneticMTP":
        """This potential with every coefficient of odd ``zeta + gamma`` set to zero: then
        ``E(-s) = E(s)`` exactly (for a basis interval symmetric about 0)."""
        nb, ns = self.radial_basis.size, self.magnetic_basis.size
        zeta, gamma = np.meshgrid(np.arange(ns), np.arange(ns), indexing="ij")
        even = np.broadcast_to(((zeta + gamma) % 2 == 0)[None], (nb, ns, ns)).reshape(-1)
        return replace(self, radial_coeffs=self.radial_coeffs * even)


def magnetic_mtp(level: int, species_count: int, min_dist: float, max_dist: float, radial_basis_size: int = 8,
                 spin_basis_size: int = 4, max_moment: float = 3.0, kind: str = "RBChebyshev") -> MagneticMTP:
    """An untrained magnetic MTP of an MTP level (the MTP's moment basis, ``N_s =
    spin_basis_size`` Chebyshev functions of s on [-max_moment, max_moment])."""
    from mlipress.models.mtp.basis import untrained_mtp

    mtp = untrained_mtp(level, species_count, min_dist, max_dist, radial_basis_size, kind)
    return MagneticMTP(mtp.species_count, mtp.radial_basis, mtp.radial_funcs_count, mtp.moments,
                       magnetic_basis=MagneticBasis(-float(max_moment), float(max_moment), int(spin_basis_size)))
