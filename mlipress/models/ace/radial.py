"""ACE radial part: pacemaker's ``ChebExpCos`` and ``SBessel`` bases g_k(r) and the per-pair radial layers.

``R_nl^{z_i z_j}(r) = sum_k c_nlk^{z_i z_j} g_k(r)`` (eq. (17) of the paper), one tensor per
*unordered* species pair p (``N_T (N_T + 1) / 2`` of them), stored as the paper's matrices
``Chat_p = reshape(C_p, [N_k, N_rad (L + 1)])`` (column ``n (L + 1) + l``, n from 0):

- :class:`PairDense`: ``C`` (P, N_k, N_rad (L+1)), ``P N_k N_rad (L+1)`` parameters;
- :class:`PairMatrixFactorized`: ``Chat_p = U_p V_p^T`` with ``U`` (P, N_k, r), ``V``
  (P, N_rad (L+1), r): ``P r (N_k + N_rad (L+1))`` parameters (section II.F).

Both answer the radial-layer interface of :mod:`mlipress.models.layers` that the fits use
(``dense``, ``rank``, ``num_params``, ``from_dense``, ``random``, ``param_count``,
``rank_candidates``, ``arrays``/``from_arrays``); ``dims`` is ``(P, N_k, N_rad (L+1))``. They
are not registered spec kinds: :meth:`mlipress.models.ace.ACE.radial_layer` maps ``dense``,
``mf:R`` and ``rmf:R`` to them; for R-MF :class:`PairMatrixFactorized` names its manifold (the
product of one fixed-rank manifold per pair, :mod:`mlipress.optim.fixed_rank_blocks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mlipress.models.layers import DEFAULT_SCALE, RadialLayer

__all__ = ["RADIAL_BASES", "RadialBasisSpec", "radial_basis_values", "cheb_exp_cos", "simplified_bessel",
           "sbessel_recursion", "PairDense", "PairMatrixFactorized", "pair_index"]


#: pacemaker's ``radbase`` names mlipress evaluates (ML-PACE ``ACERadialFunctions::radbase``)
RADIAL_BASES = ("ChebExpCos", "SBessel")


@dataclass(frozen=True)
class RadialBasisSpec:
    """pacemaker's ``radbase`` (``kind``: ``ChebExpCos`` or ``SBessel``) with ``rcutij``
    (cutoff), ``nradbaseij`` (N_k), ``radparameters: [lam]`` and ``dcutij`` (width of the final
    cosine smoothing). ``lam`` and ``dcut`` shape ChebExpCos only; an SBessel basis keeps them
    because pacemaker's files carry them for every bond (its evaluator ignores them there)."""

    cutoff: float
    n_k: int
    lam: float = 5.25
    dcut: float = 0.01
    kind: str = "ChebExpCos"

    def __post_init__(self):
        if self.kind not in RADIAL_BASES:
            raise ValueError(f"radial basis {self.kind!r} is not supported (one of {', '.join(RADIAL_BASES)})")
        if not (self.cutoff > 0 and self.n_k >= 1):
            raise ValueError(f"bad radial basis {self}")
        if self.kind == "ChebExpCos" and not (0 < self.dcut < self.cutoff and self.lam > 0):
            raise ValueError(f"bad radial basis {self}")


def radial_basis_values(r, basis: RadialBasisSpec):
    """``g_k(r)`` of ``basis`` (its ``kind``), shape (...) -> (..., N_k); zero for ``r >= rc``."""
    return _BASES[basis.kind](r, basis)


def cheb_exp_cos(r, basis: RadialBasisSpec):
    """``g_k(r)``, k = 0..N_k-1 (pacemaker's ``chebExpCos``): ``x = 1 - 2 (e^{-lam r/rc} - e^{-lam})
    / (1 - e^{-lam})``, ``g_0 = 1``, ``g_k = (1 - T_k(x)) / 2``, all times the envelope
    ``(1 + cos(pi r / rc)) / 2`` and, for ``r > rc - dcut``, ``(1 + cos(pi (r - rc + dcut) / dcut)) / 2``;
    zero for ``r >= rc``. Shape (...) -> (..., N_k)."""
    rc, lam = basis.cutoff, basis.lam
    inside = r < rc
    r = jnp.where(inside, r, 0.5 * rc)  # finite gradients beyond the cutoff
    y2 = math.exp(-lam)
    x = 1.0 - 2.0 * (jnp.exp(-lam * r / rc) - y2) / (1.0 - y2)
    cheb = [jnp.ones_like(x), x]
    for _ in range(2, basis.n_k):
        cheb.append(2.0 * x * cheb[-1] - cheb[-2])
    g = [cheb[0]] + [0.5 - 0.5 * t for t in cheb[1 : basis.n_k]]
    env = 0.5 * (1.0 + jnp.cos(jnp.pi * r / rc))
    start = rc - basis.dcut
    smooth = jnp.where(r > start, 0.5 * (1.0 + jnp.cos(jnp.pi * (r - start) / basis.dcut)), 1.0)
    return jnp.stack(g, -1) * jnp.where(inside, env * smooth, 0.0)[..., None]


def sbessel_recursion(n_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The constants of the SBessel orthogonalisation: ``a_n = sqrt(e_n / d_{n-1})`` and
    ``b_n = 1 / sqrt(d_n)`` for n = 1..N_k-1 (index 0 unused), ``e_n = n^2 (n+2)^2 / (4 (n+1)^4
    + 1)``, ``d_0 = 1``, ``d_n = 1 - e_n / d_{n-1}`` (Kocer et al. 2019; ML-PACE's recursion)."""
    a, b = np.zeros(n_k), np.ones(n_k)
    d_prev = 1.0
    for n in range(1, n_k):
        e = n * n * (n + 2) ** 2 / (4.0 * (n + 1) ** 4 + 1.0)
        d = 1.0 - e / d_prev
        a[n], b[n] = math.sqrt(e / d_prev), 1.0 / math.sqrt(d)
        d_prev = d
    return a, b


def simplified_bessel(r, basis: RadialBasisSpec):
    """``g_k(r)``, k = 0..N_k-1, pacemaker's ``radbase: SBessel`` (ML-PACE ``simplified_bessel``;
    the simplified spherical Bessel basis of Kocer, Mason, Erturk, J. Chem. Phys. 150, 154102
    (2019)): with ``j0(x) = sin(x) / x``,

        f_n(r) = (-1)^n sqrt(2) pi / rc^(3/2) (n+1)(n+2) / sqrt((n+1)^2 + (n+2)^2)
                 (j0((n+1) pi r / rc) + j0((n+2) pi r / rc)),

    ``g_0 = f_0``, ``g_n = b_n (f_n + a_n g_{n-1})`` (:func:`sbessel_recursion`); orthonormal in
    ``int_0^rc g_m g_n r^2 dr``. Each ``f_n`` and its derivative vanish at ``rc`` by construction,
    so there is no envelope: ``lam`` and ``dcut`` are not used (as in pacemaker). Zero for
    ``r >= rc``. Shape (...) -> (..., N_k)."""
    rc = basis.cutoff
    inside = r < rc
    r = jnp.where(inside, r, 0.5 * rc)  # finite gradients beyond the cutoff
    a, b = sbessel_recursion(basis.n_k)
    g = []
    for n in range(basis.n_k):
        pref = (-1) ** n * math.sqrt(2.0) * math.pi / rc**1.5 * (n + 1) * (n + 2) / math.hypot(n + 1, n + 2)
        # jnp.sinc(t) = sin(pi t) / (pi t), smooth (and differentiable) through t = 0
        f = pref * (jnp.sinc((n + 1) * r / rc) + jnp.sinc((n + 2) * r / rc))
        g.append(f if n == 0 else b[n] * (f + a[n] * g[-1]))
    return jnp.stack(g, -1) * inside[..., None]


_BASES = {"ChebExpCos": cheb_exp_cos, "SBessel": simplified_bessel}


def pair_index(n_species: int) -> np.ndarray:
    """``(N_T, N_T)`` table of the unordered pair index p(z_i, z_j): pairs (a <= b) in row order."""
    table = np.zeros((n_species, n_species), dtype=np.int32)
    p = 0
    for a in range(n_species):
        for b in range(a, n_species):
            table[a, b] = table[b, a] = p
            p += 1
    return table


def _normals(key, *shapes):
    rng = np.random.default_rng(int(key))
    return [rng.standard_normal(s) for s in shapes]


def _pdims(shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"ACE radial matrices must be (P, N_k, N_rad (L+1)), got {shape}")
    return shape



@dataclass(frozen=True, eq=False)
class PairDense(RadialLayer):
    """All ``Chat_p`` as one array ``C`` (P, N_k, N_rad (L+1))."""

    kind: ClassVar[str] = "dense"

    C: jax.Array

    @property
    def dims(self):
        return tuple(np.shape(self.C))

    @property
    def shape(self):
        return self.dims

    @property
    def rank(self):
        return None

    def dense(self):
        return jnp.asarray(self.C)

    @classmethod
    def from_dense(cls, C, rank=None):
        if rank is not None:
            raise ValueError(f"a dense radial tensor has no rank, got {rank!r}")
        return cls(jnp.asarray(np.asarray(C, dtype=np.float64)))

    @classmethod
    def random(cls, key, shape, rank=None, scale: float = DEFAULT_SCALE):
        (C,) = _normals(key, _pdims(shape))
        return cls(jnp.asarray(scale * C))

    @classmethod
    def param_count(cls, shape, rank=None) -> int:
        return math.prod(_pdims(shape))

    @classmethod
    def rank_candidates(cls, shape):
        return [None]

    @classmethod
    def from_arrays(cls, arrays, dims):
        layer = cls(jnp.asarray(arrays["C"]))
        if layer.dims != tuple(dims):
            raise ValueError(f"C has shape {layer.dims}, expected {tuple(dims)}")
        return layer


@dataclass(frozen=True, eq=False)
class PairMatrixFactorized(RadialLayer):
    """``Chat_p = U_p V_p^T`` per unordered pair: ``U`` (P, N_k, r), ``V`` (P, N_rad (L+1), r)."""

    kind: ClassVar[str] = "mf"

    U: jax.Array
    V: jax.Array

    @property
    def dims(self):
        P, nk, _ = np.shape(self.U)
        return (P, nk, np.shape(self.V)[1])

    @property
    def shape(self):
        return self.dims

    @property
    def rank(self) -> int:
        return int(np.shape(self.U)[2])

    def dense(self):
        return jnp.einsum("pkr,pmr->pkm", jnp.asarray(self.U), jnp.asarray(self.V))

    @classmethod
    def from_dense(cls, C, rank: int):
        """Balanced truncated SVD of every ``Chat_p`` (rank clipped to ``min(N_k, N_rad (L+1))``)."""
        C = np.asarray(C, dtype=np.float64)
        P, nk, m = _pdims(C.shape)
        r = min(int(rank), nk, m)
        u, s, vt = np.linalg.svd(C, full_matrices=False)
        root = np.sqrt(s[:, :r])
        return cls(jnp.asarray(u[:, :, :r] * root[:, None, :]), jnp.asarray(np.transpose(vt[:, :r], (0, 2, 1)) * root[:, None, :]))

    @classmethod
    def from_factors(cls, U, V, dims) -> "PairMatrixFactorized":
        """The layer of stacked factors ``U (P, N_k, r)``, ``V (P, N_rad (L+1), r)`` (MFRA's result)."""
        layer = cls(jnp.asarray(U), jnp.asarray(V))
        if layer.dims != tuple(dims) or np.shape(U)[2] != np.shape(V)[2]:
            raise ValueError(f"factors U {np.shape(U)}, V {np.shape(V)} do not give pair matrices {tuple(dims)}")
        return layer

    # -- R-MF: one fixed-rank factor per pair (the product manifold) ---------------------------
    @staticmethod
    def manifold():
        """The manifold operations of R-MF: :mod:`mlipress.optim.fixed_rank_blocks`, the product
        of one fixed-rank manifold per pair matrix."""
        from mlipress.optim import fixed_rank_blocks

        return fixed_rank_blocks

    @classmethod
    def matrices(cls, C) -> np.ndarray:
        """The stacked pair matrices ``(P, N_k, N_rad (L+1))`` (the dense tensor itself)."""
        return np.asarray(C, dtype=np.float64)

    @classmethod
    def dense_of_matrices(cls, X, dims):
        X = jnp.asarray(X, dtype=jnp.float64)
        if X.shape != tuple(dims):
            raise ValueError(f"pair matrices of shape {X.shape}, expected {tuple(dims)}")
        return X

    @classmethod
    def from_point(cls, point, dims) -> "PairMatrixFactorized":
        """A point of the product manifold (one ``U diag(s) V^T`` per pair) as balanced factors."""
        U, V = [], []
        for block in point:
            root = np.sqrt(np.abs(np.asarray(block.s, dtype=np.float64)))
            U.append(np.asarray(block.U) * (np.sign(block.s) * root))
            V.append(np.asarray(block.V) * root)
        layer = cls(jnp.asarray(np.stack(U)), jnp.asarray(np.stack(V)))
        if layer.dims != tuple(dims):
            raise ValueError(f"factors of dims {layer.dims}, expected {tuple(dims)}")
        return layer

    @classmethod
    def random(cls, key, shape, rank: int, scale: float = DEFAULT_SCALE):
        """Gaussian factors of std ``sqrt(scale / sqrt(r))``: entries of C of std ``scale``."""
        P, nk, m = _pdims(shape)
        s = math.sqrt(scale / math.sqrt(rank))
        U, V = _normals(key, (P, nk, rank), (P, m, rank))
        return cls(jnp.asarray(s * U), jnp.asarray(s * V))

    @classmethod
    def param_count(cls, shape, rank: int) -> int:
        P, nk, m = _pdims(shape)
        return P * int(rank) * (nk + m)

    @classmethod
    def rank_candidates(cls, shape):
        _, nk, m = _pdims(shape)
        return list(range(1, min(nk, m) + 1))

    @classmethod
    def from_arrays(cls, arrays, dims):
        layer = cls(jnp.asarray(arrays["U"]), jnp.asarray(arrays["V"]))
        if layer.dims != tuple(dims):
            raise ValueError(f"U, V factor matrices of dims {layer.dims}, expected {tuple(dims)}")
        return layer


for _cls in (PairDense, PairMatrixFactorized):
    jax.tree_util.register_dataclass(_cls, data_fields=[f.name for f in fields(_cls)], meta_fields=[])
