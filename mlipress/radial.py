"""Radial parametrisations: the radial tensor C as a dense array or in low-rank form.

The MTP radial functions (eq. (5) of the paper) are

    f_mu(r_ij, z_i, z_j) = sum_b C[z_i, z_j, mu, b] Q_b(r_ij),

with ``C`` of shape ``(N_T, N_T, N_f, N_b)`` indexed ``[z_i, z_j, mu, b]`` (central species
first) and ``Q_b(r) = T_b(r) (R_cut - r)^2`` the radial basis. The base MTP stores all
``N_T^2 N_f N_b`` entries of ``C``; section II.C of the paper replaces them by

- MF (matrix factorization, skeleton decomposition) of the unfolding
  ``Chat = reshape(C, [N_T^2, N_f N_b]) = U V^T`` with ``U (N_T^2, r)``, ``V (N_f N_b, r)``:
  ``r (N_T^2 + N_f N_b)`` parameters;
- TF (tensor train / MPS) over the index order ``(z_i, z_j, mu, b)``:
  ``C[i, j, mu, b] = sum_{a1,a2,a3} G1[0, i, a1] G2[a1, j, a2] G3[a2, mu, a3] G4[a3, b, 0]``
  with cores ``G_k (r_{k-1}, n_k, r_k)``, ``r_0 = r_4 = 1``:
  ``r0 N_T r1 + r1 N_T r2 + r2 N_f r3 + r3 N_b r4`` parameters.

A parametrisation is a small frozen pytree value (:class:`Dense`, :class:`MatrixFactorized`,
:class:`TensorTrain`): its arrays are leaves (so ``jax.grad`` / ``jit`` / optimisers see them),
the sizes ``dims = (N_T, N_f, N_b)`` are static metadata. Every one answers the same
questions, so the evaluator does not care which one it got:

- ``.shape`` -> ``(N_T, N_T, N_f, N_b)``;
- ``.dense()`` -> ``C`` as a (differentiable) JAX array;
- ``.radial_values(Q, zi, zj)`` -> ``f[..., mu]``, contracting with the radial basis values,
  in factored form for the low-rank ones (no per-pair ``C[z_i, z_j]`` is formed);
- ``.num_params`` and ``.rank``.

Constructors (``from_dense``: exact / truncated SVD / TT-SVD; ``random``) run in NumPy and
return JAX arrays. Command-line strings (``dense``, ``mf:R``, ``rmf:R``, ``tt:R1,R2,R3``,
``mfra:RMAX``) are parsed by :func:`parse_radial_spec`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Dense",
    "MatrixFactorized",
    "TensorTrain",
    "RadialSpec",
    "parse_radial_spec",
    "from_spec",
    "rank_for_compression",
    "compression",
    "dense_param_count",
    "mf_param_count",
    "tt_param_count",
    "clip_tt_ranks",
    "to_matrix",
    "from_matrix",
    "DEFAULT_SCALE",
]

#: Default standard deviation of the entries of ``C`` drawn by the ``random`` constructors.
#: With ``|Q_b(r)| <~ (R_cut - r)^2`` of order a few units at typical neighbour distances,
#: ``std(C) = 0.1`` gives ``f_mu(r) = sum_b C Q_b`` of order one (``~ 0.1 sqrt(N_b) Q``),
#: so moment tensors start neither vanishing nor exploding; the linear coefficients xi
#: absorb the remaining scale.
DEFAULT_SCALE = 0.1


# ----------------------------------------------------------------------------------------
# shapes, unfoldings and parameter counts
# ----------------------------------------------------------------------------------------


def _dims(shape) -> tuple[int, int, int]:
    """``(N_T, N_T, N_f, N_b)`` or ``(N_T, N_f, N_b)`` -> ``(N_T, N_f, N_b)`` (validated)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4:
        if shape[0] != shape[1]:
            raise ValueError(f"radial tensor must be (N_T, N_T, N_f, N_b), got {shape}")
        shape = (shape[0], shape[2], shape[3])
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected (N_T, N_T, N_f, N_b) or (N_T, N_f, N_b) with sizes >= 1, got {shape}")
    return shape


def to_matrix(C):
    """The MF unfolding ``Chat = reshape(C, [N_T^2, N_f N_b])`` (row-major, exactly a reshape).

    ``C`` (N_T, N_T, N_f, N_b) -> (N_T^2, N_f N_b); row ``z_i N_T + z_j``, column ``mu N_b + b``.
    Works on NumPy and JAX arrays alike.
    """
    nt, nt2, nf, nb = C.shape
    return C.reshape(nt * nt2, nf * nb)


def from_matrix(Chat, shape):
    """Inverse of :func:`to_matrix`: (N_T^2, N_f N_b) -> ``shape`` = (N_T, N_T, N_f, N_b).

    ``shape`` may also be given as ``(N_T, N_f, N_b)``.
    """
    nt, nf, nb = _dims(shape)
    if Chat.shape != (nt * nt, nf * nb):
        raise ValueError(f"matrix of shape {Chat.shape} does not unfold {(nt, nt, nf, nb)}")
    return Chat.reshape(nt, nt, nf, nb)


def dense_param_count(shape) -> int:
    """``N_T^2 N_f N_b``, the radial parameter count of the base MTP."""
    nt, nf, nb = _dims(shape)
    return nt * nt * nf * nb


def mf_param_count(shape, rank: int) -> int:
    """``r (N_T^2 + N_f N_b)`` (section II.C)."""
    nt, nf, nb = _dims(shape)
    return int(rank) * (nt * nt + nf * nb)


def tt_param_count(shape, ranks) -> int:
    """``r0 N_T r1 + r1 N_T r2 + r2 N_f r3 + r3 N_b r4`` with ``r0 = r4 = 1`` (section II.C).

    For ``r1 = r2 = r3 = r`` this is ``(N_T + N_f) r^2 + (N_T + N_b) r``. ``ranks`` are used
    as given (not clipped).
    """
    nt, nf, nb = _dims(shape)
    r1, r2, r3 = (int(r) for r in ranks)
    return nt * r1 + r1 * nt * r2 + r2 * nf * r3 + r3 * nb


def clip_tt_ranks(shape, ranks) -> tuple[int, int, int]:
    """Clip TT ranks ``(r1, r2, r3)`` to the largest ones the mode sizes allow.

    With mode sizes ``n = (N_T, N_T, N_f, N_b)`` and ``r0 = r4 = 1``, a TT without redundant
    parameters needs ``r_k <= r_{k-1} n_k`` and ``r_k <= n_{k+1} r_{k+1}`` (both follow from
    ``r_k`` being at most the rank of the k-th unfolding). A forward then a backward sweep
    reaches the fixpoint. At the clipped maximal ranks TT-SVD is exact.
    """
    nt, nf, nb = _dims(shape)
    n = (nt, nt, nf, nb)
    r = [1] + [int(x) for x in ranks] + [1]
    if len(r) != 5:
        raise ValueError(f"need three TT ranks (r1, r2, r3), got {tuple(ranks)}")
    if min(r) < 1:
        raise ValueError(f"TT ranks must be >= 1, got {tuple(ranks)}")
    for k in range(1, 4):
        r[k] = min(r[k], r[k - 1] * n[k - 1])
    for k in range(3, 0, -1):
        r[k] = min(r[k], n[k] * r[k + 1])
    return tuple(r[1:4])


def _max_mf_rank(shape) -> int:
    nt, nf, nb = _dims(shape)
    return min(nt * nt, nf * nb)


# ----------------------------------------------------------------------------------------
# the three parametrisations
# ----------------------------------------------------------------------------------------


def _has_shapes(*xs) -> bool:
    return all(hasattr(x, "shape") and hasattr(x, "ndim") for x in xs)


# Leaf shapes are validated only when a value is built by hand without ``dims``. Pytree
# unflattening always passes ``dims`` and may carry placeholder leaves (None, object(),
# sharding specs) or batched leaves (a stack of parameters for vmap), which must pass.


def _normals(key, *shapes):
    """Independent standard-normal float64 arrays of the given shapes.

    ``key``: a JAX PRNG key (``jax.random.key`` or ``PRNGKey``) or an int seed. One flat draw
    is sliced into the pieces, so each call compiles a single sampler.
    """
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key))
    sizes = [math.prod(s) for s in shapes]
    flat = jax.random.normal(key, (sum(sizes),), dtype=jnp.float64)
    out, start = [], 0
    for size, shape in zip(sizes, shapes):
        out.append(flat[start : start + size].reshape(shape))
        start += size
    return out


@dataclass(frozen=True, eq=False)
class Dense:
    """The full radial tensor ``C`` (N_T, N_T, N_f, N_b), ``N_T^2 N_f N_b`` parameters.

    Pytree: leaf ``C``; static ``dims = (N_T, N_f, N_b)`` (derived from ``C``, and ``C``
    validated, when omitted).
    """

    C: jax.Array
    dims: tuple[int, int, int] | None = None

    def __post_init__(self):
        if self.dims is None and _has_shapes(self.C):
            if self.C.ndim != 4:
                raise ValueError(f"C must be (N_T, N_T, N_f, N_b), got shape {self.C.shape}")
            object.__setattr__(self, "dims", _dims(self.C.shape))
        elif self.dims is not None:
            object.__setattr__(self, "dims", _dims(self.dims))

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def from_dense(cls, C) -> "Dense":
        """Wrap a dense tensor (copied to a float64 JAX array)."""
        return cls(jnp.asarray(np.asarray(C, dtype=np.float64)))

    @classmethod
    def random(cls, key, shape, scale: float = DEFAULT_SCALE) -> "Dense":
        """``C`` with i.i.d. N(0, scale^2) entries. ``key``: JAX PRNG key or int seed."""
        nt, nf, nb = _dims(shape)
        (C,) = _normals(key, (nt, nt, nf, nb))
        return cls(scale * C)

    # -- the common interface ------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int]:
        nt, nf, nb = self.dims
        return (nt, nt, nf, nb)

    @property
    def rank(self) -> None:
        return None

    @property
    def num_params(self) -> int:
        return dense_param_count(self.dims)

    def dense(self) -> jax.Array:
        """``C`` (N_T, N_T, N_f, N_b)."""
        return jnp.asarray(self.C)

    def radial_values(self, Q, zi, zj) -> jax.Array:
        """``f[..., mu] = sum_b C[zi, zj, mu, b] Q[..., b]`` (eq. (5)).

        ``Q`` (..., N_b) radial basis values, ``zi``, ``zj`` (...) int species (same shape as
        ``Q.shape[:-1]``). Returns (..., N_f). Contracts a one-hot of the species pair with C
        instead of gathering ``C[zi, zj]`` per pair: the gather's transpose is a serial
        scatter on CPU, which made the force pass ten times slower than the energy.
        """
        C = jnp.asarray(self.C)
        nt, _, nf, nb = C.shape
        if nt == 1:
            return Q @ C[0, 0].T
        pair = jax.nn.one_hot(jnp.asarray(zi) * nt + jnp.asarray(zj), nt * nt, dtype=Q.dtype)
        weighted = (pair[..., :, None] * Q[..., None, :]).reshape(*Q.shape[:-1], nt * nt * nb)
        return weighted @ jnp.transpose(C, (0, 1, 3, 2)).reshape(nt * nt * nb, nf)


@dataclass(frozen=True, eq=False)
class MatrixFactorized:
    """MF: ``reshape(C, [N_T^2, N_f N_b]) = U V^T`` (section II.C), ``r (N_T^2 + N_f N_b)`` params.

    Pytree: leaves ``U`` (N_T^2, r) (row ``z_i N_T + z_j``) and ``V`` (N_f N_b, r) (row
    ``mu N_b + b``); static ``dims = (N_T, N_f, N_b)`` (required: ``V`` alone does not tell
    ``N_f`` from ``N_b``; use :meth:`checked` to validate hand-made factors). The factors are
    not unique (``U S^-1``, ``V S^T`` give the same C); :meth:`from_dense` returns the balanced SVD factors ``U_r sqrt(S_r)``, ``V_r sqrt(S_r)``.
    """

    U: jax.Array
    V: jax.Array
    dims: tuple[int, int, int]

    def __post_init__(self):
        object.__setattr__(self, "dims", _dims(self.dims))

    @classmethod
    def checked(cls, U, V, dims) -> "MatrixFactorized":
        """Build from factors, validating ``U (N_T^2, r)``, ``V (N_f N_b, r)`` against ``dims``."""
        nt, nf, nb = _dims(dims)
        U, V = jnp.asarray(U), jnp.asarray(V)
        if U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[1]:
            raise ValueError(f"U (N_T^2, r), V (N_f N_b, r) expected, got {U.shape}, {V.shape}")
        if U.shape[0] != nt * nt or V.shape[0] != nf * nb:
            raise ValueError(
                f"U {U.shape}, V {V.shape} do not factor a (N_T^2, N_f N_b) = ({nt * nt}, {nf * nb}) matrix"
            )
        return cls(U, V, (nt, nf, nb))

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def from_dense(cls, C, rank: int) -> "MatrixFactorized":
        """Best rank-``rank`` approximation of the unfolding (truncated SVD, Eckart-Young).

        ``Chat = U_s S V_s^T``; returns ``U = U_s[:, :r] sqrt(S_r)``, ``V = V_s[:, :r] sqrt(S_r)``.
        ``rank`` is clipped to ``min(N_T^2, N_f N_b)``; the Frobenius error is
        ``sqrt(sum_{k > r} s_k^2)``.
        """
        C = np.asarray(C, dtype=np.float64)
        dims = _dims(C.shape)
        rank = int(rank)
        if rank < 1:
            raise ValueError(f"MF rank must be >= 1, got {rank}")
        rank = min(rank, _max_mf_rank(dims))
        u, s, vt = np.linalg.svd(to_matrix(C), full_matrices=False)
        root = np.sqrt(s[:rank])
        return cls(jnp.asarray(u[:, :rank] * root), jnp.asarray(vt[:rank].T * root), dims)

    @classmethod
    def random(cls, key, shape, rank: int, scale: float = DEFAULT_SCALE) -> "MatrixFactorized":
        """Gaussian factors with ``std(U) = std(V) = sqrt(scale / sqrt(r))``.

        Then each entry ``sum_k U_ik V_jk`` of ``C`` has variance ``r (scale / sqrt(r))^2 =
        scale^2``, i.e. the same magnitude as :meth:`Dense.random` with the same ``scale``,
        split evenly between the two factors. ``rank`` is not clipped.
        """
        nt, nf, nb = _dims(shape)
        rank = int(rank)
        if rank < 1:
            raise ValueError(f"MF rank must be >= 1, got {rank}")
        s = math.sqrt(scale / math.sqrt(rank))
        U, V = _normals(key, (nt * nt, rank), (nf * nb, rank))
        return cls(s * U, s * V, (nt, nf, nb))

    # -- the common interface ------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int]:
        nt, nf, nb = self.dims
        return (nt, nt, nf, nb)

    @property
    def rank(self) -> int:
        return int(self.U.shape[1])

    @property
    def num_params(self) -> int:
        return mf_param_count(self.dims, self.rank)

    def dense(self) -> jax.Array:
        """``C = reshape(U V^T, [N_T, N_T, N_f, N_b])``."""
        return from_matrix(jnp.asarray(self.U) @ jnp.asarray(self.V).T, self.dims)

    def radial_values(self, Q, zi, zj) -> jax.Array:
        """``f[..., mu] = sum_k U[zi N_T + zj, k] sum_b Q[..., b] V[mu N_b + b, k]``, factored.

        ``Q`` (..., N_b), ``zi``, ``zj`` (...) -> (..., N_f). Costs one (P, N_b) x (N_b, N_f r)
        product and a gather of r numbers per pair; no per-pair ``C[zi, zj]`` is formed.
        """
        nt, nf, nb = self.dims
        r = self.rank
        # (N_f N_b, r) -> (N_b, N_f r): column mu r + k holds V[mu N_b + b, k]
        W = jnp.asarray(self.V).reshape(nf, nb, r).transpose(1, 0, 2).reshape(nb, nf * r)
        QW = (Q @ W).reshape(Q.shape[:-1] + (nf, r))  # (..., N_f, r)
        Up = jnp.asarray(self.U)[jnp.asarray(zi) * nt + jnp.asarray(zj)]  # (..., r)
        return jnp.einsum("...mk,...k->...m", QW, Up)


@dataclass(frozen=True, eq=False)
class TensorTrain:
    """TF: tensor train over ``(z_i, z_j, mu, b)`` (section II.C).

    ``C[i, j, mu, b] = sum_{a1,a2,a3} G1[0, i, a1] G2[a1, j, a2] G3[a2, mu, a3] G4[a3, b, 0]``
    with cores ``G1 (1, N_T, r1)``, ``G2 (r1, N_T, r2)``, ``G3 (r2, N_f, r3)``,
    ``G4 (r3, N_b, 1)``; ``N_T r1 + r1 N_T r2 + r2 N_f r3 + r3 N_b`` parameters.

    Pytree: the four cores are leaves; static ``dims = (N_T, N_f, N_b)`` (derived from the
    cores, and the cores validated, when omitted).
    """

    G1: jax.Array
    G2: jax.Array
    G3: jax.Array
    G4: jax.Array
    dims: tuple[int, int, int] | None = None

    def __post_init__(self):
        if self.dims is None and _has_shapes(self.G1, self.G2, self.G3, self.G4):
            g = (self.G1, self.G2, self.G3, self.G4)
            if any(x.ndim != 3 for x in g):
                raise ValueError(f"TT cores must be 3-D, got shapes {[x.shape for x in g]}")
            if g[0].shape[0] != 1 or g[3].shape[2] != 1:
                raise ValueError("TT boundary ranks must be r0 = r4 = 1")
            for a, b in zip(g[:-1], g[1:]):
                if a.shape[2] != b.shape[0]:
                    raise ValueError(f"TT core ranks do not chain: {[x.shape for x in g]}")
            if g[0].shape[1] != g[1].shape[1]:
                raise ValueError(f"G1 and G2 must share the mode size N_T, got {g[0].shape}, {g[1].shape}")
            object.__setattr__(self, "dims", (g[0].shape[1], g[2].shape[1], g[3].shape[1]))
        elif self.dims is not None:
            object.__setattr__(self, "dims", _dims(self.dims))

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def from_dense(cls, C, ranks) -> "TensorTrain":
        """TT-SVD (Oseledets 2011): sweep left to right, truncating an SVD at each unfolding.

        ``ranks = (r1, r2, r3)`` are first clipped by :func:`clip_tt_ranks`; at the maximal
        ranks the decomposition is exact. The result is left-orthogonal (G1..G3 orthonormal
        as (r_{k-1} n_k, r_k) matrices), with the norm carried by G4.
        """
        C = np.asarray(C, dtype=np.float64)
        dims = _dims(C.shape)
        nt, nf, nb = dims
        n = (nt, nt, nf, nb)
        r = (1,) + clip_tt_ranks(dims, ranks) + (1,)
        cores = []
        rest = C.reshape(1, -1)  # (r_{k-1}, n_k ... n_4)
        for k in range(3):
            mat = rest.reshape(r[k] * n[k], -1)
            u, s, vt = np.linalg.svd(mat, full_matrices=False)
            rk = min(r[k + 1], len(s))
            cores.append(u[:, :rk].reshape(r[k], n[k], rk))
            rest = s[:rk, None] * vt[:rk]
            if rk != r[k + 1]:  # cannot happen after clipping; kept as a guard
                raise AssertionError("TT rank clipping inconsistent with the unfolding sizes")
        cores.append(rest.reshape(r[3], n[3], 1))
        return cls(*(jnp.asarray(g) for g in cores))

    @classmethod
    def random(cls, key, shape, ranks, scale: float = DEFAULT_SCALE) -> "TensorTrain":
        """Gaussian cores with variances ``sqrt(scale) * (1, 1/r1, 1/r2, 1/r3)``.

        Each entry of ``C`` sums ``r1 r2 r3`` products of four core entries, so its variance
        is ``r1 r2 r3 * scale^2 / (r1 r2 r3) = scale^2``: the same magnitude as
        :meth:`Dense.random`, with every core contributing a factor of order
        ``scale^(1/4)`` after its rank sum. ``ranks`` are clipped by :func:`clip_tt_ranks`.
        """
        nt, nf, nb = _dims(shape)
        r1, r2, r3 = clip_tt_ranks((nt, nf, nb), ranks)
        q = scale**0.25
        G1, G2, G3, G4 = _normals(key, (1, nt, r1), (r1, nt, r2), (r2, nf, r3), (r3, nb, 1))
        return cls(q * G1, q / math.sqrt(r1) * G2, q / math.sqrt(r2) * G3, q / math.sqrt(r3) * G4)

    # -- the common interface ------------------------------------------------------------
    @property
    def cores(self) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        return (self.G1, self.G2, self.G3, self.G4)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        nt, nf, nb = self.dims
        return (nt, nt, nf, nb)

    @property
    def rank(self) -> tuple[int, int, int]:
        return (int(self.G1.shape[2]), int(self.G2.shape[2]), int(self.G3.shape[2]))

    @property
    def num_params(self) -> int:
        return tt_param_count(self.dims, self.rank)

    def _pair_table(self) -> jax.Array:
        """``A[i, j, a2] = sum_a1 G1[0, i, a1] G2[a1, j, a2]``: (N_T, N_T, r2)."""
        return jnp.einsum("ia,ajb->ijb", jnp.asarray(self.G1)[0], jnp.asarray(self.G2))

    def dense(self) -> jax.Array:
        """``C`` (N_T, N_T, N_f, N_b) by contracting the four cores."""
        return jnp.einsum(
            "ijb,bmc,cn->ijmn", self._pair_table(), jnp.asarray(self.G3), jnp.asarray(self.G4)[:, :, 0]
        )

    def radial_values(self, Q, zi, zj) -> jax.Array:
        """``f[..., mu] = sum A[zi, zj, a2] G3[a2, mu, a3] (sum_b G4[a3, b] Q[..., b])``, factored.

        ``Q`` (..., N_b), ``zi``, ``zj`` (...) -> (..., N_f), with ``A`` the (N_T, N_T, r2)
        table of :meth:`_pair_table`. Per pair: a gather of r2 numbers, ``N_b r3`` and
        ``r2 N_f r3`` multiply-adds; no per-pair ``C[zi, zj]`` is formed.
        """
        left = self._pair_table()[zi, zj]  # (..., r2)
        right = Q @ jnp.asarray(self.G4)[:, :, 0].T  # (..., r3)
        return jnp.einsum("...a,amc,...c->...m", left, jnp.asarray(self.G3), right)


jax.tree_util.register_dataclass(Dense, data_fields=["C"], meta_fields=["dims"])
jax.tree_util.register_dataclass(MatrixFactorized, data_fields=["U", "V"], meta_fields=["dims"])
jax.tree_util.register_dataclass(TensorTrain, data_fields=["G1", "G2", "G3", "G4"], meta_fields=["dims"])

RadialParam = Dense | MatrixFactorized | TensorTrain


def compression(param) -> float:
    """``1 - num_params / (N_T^2 N_f N_b)``: 0 for dense, 0.5 for half the parameters."""
    return 1.0 - param.num_params / dense_param_count(param.dims)


# ----------------------------------------------------------------------------------------
# command-line specs
# ----------------------------------------------------------------------------------------

_SPEC_HELP = "expected one of 'dense', 'mf:R', 'rmf:R', 'tt:R1,R2,R3' (or 'tt:R'), 'mfra:RMAX'"


@dataclass(frozen=True)
class RadialSpec:
    """A parsed radial parametrisation choice.

    ``kind``: ``"dense"`` (rank None), ``"mf"`` (fixed-rank MF, rank int), ``"rmf"``
    (Riemannian MF, rank int), ``"tt"`` (TT, rank ``(r1, r2, r3)``), ``"mfra"`` (MF with
    rank augmentation up to ``rank`` = RMAX).
    """

    kind: str
    rank: int | tuple[int, int, int] | None = None

    def __str__(self) -> str:
        if self.kind == "dense":
            return "dense"
        if self.kind == "tt":
            return "tt:" + ",".join(str(r) for r in self.rank)
        return f"{self.kind}:{self.rank}"


def _positive_int(text: str, what: str, spec: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"radial spec {spec!r}: {what} must be a positive integer, got {text.strip()!r}") from None
    if value < 1:
        raise ValueError(f"radial spec {spec!r}: {what} must be a positive integer, got {value}")
    return value


def parse_radial_spec(spec: str) -> RadialSpec:
    """Parse ``dense``, ``mf:R``, ``rmf:R``, ``tt:R1,R2,R3``, ``mfra:RMAX`` (case-insensitive).

    ``tt:R`` is accepted as shorthand for ``tt:R,R,R`` (the paper's ``r1 = r2 = r3 = r``).
    Raises ``ValueError`` with the accepted forms on anything else.
    """
    if not isinstance(spec, str):
        raise TypeError(f"radial spec must be a string, got {type(spec).__name__}")
    text = spec.strip().lower()
    kind, sep, arg = text.partition(":")
    kind = kind.strip()
    if kind == "dense":
        if sep and arg.strip():
            raise ValueError(f"radial spec {spec!r}: 'dense' takes no rank; {_SPEC_HELP}")
        return RadialSpec("dense", None)
    if kind in ("mf", "rmf", "mfra"):
        if not sep or not arg.strip():
            raise ValueError(f"radial spec {spec!r}: '{kind}' needs a rank, e.g. '{kind}:4'; {_SPEC_HELP}")
        what = "maximal rank RMAX" if kind == "mfra" else "rank R"
        return RadialSpec(kind, _positive_int(arg, what, spec))
    if kind == "tt":
        if not sep or not arg.strip():
            raise ValueError(f"radial spec {spec!r}: 'tt' needs ranks, e.g. 'tt:2,4,3'; {_SPEC_HELP}")
        parts = arg.split(",")
        if len(parts) == 1:
            r = _positive_int(parts[0], "TT rank", spec)
            return RadialSpec("tt", (r, r, r))
        if len(parts) != 3:
            raise ValueError(f"radial spec {spec!r}: 'tt' needs three ranks R1,R2,R3, got {len(parts)}")
        return RadialSpec("tt", tuple(_positive_int(p, f"TT rank R{k + 1}", spec) for k, p in enumerate(parts)))
    raise ValueError(f"unknown radial spec {spec!r}; {_SPEC_HELP}")


def from_spec(spec: RadialSpec | str, C):
    """Parametrise a dense tensor ``C`` (N_T, N_T, N_f, N_b) according to ``spec``.

    ``dense`` -> :class:`Dense`; ``mf:R`` and ``rmf:R`` -> rank-R truncated SVD;
    ``tt:...`` -> TT-SVD; ``mfra:RMAX`` -> rank-1 truncated SVD (rank augmentation starts at
    rank 1 and grows to RMAX during training).
    """
    if isinstance(spec, str):
        spec = parse_radial_spec(spec)
    if spec.kind == "dense":
        return Dense.from_dense(C)
    if spec.kind in ("mf", "rmf"):
        return MatrixFactorized.from_dense(C, spec.rank)
    if spec.kind == "mfra":
        return MatrixFactorized.from_dense(C, 1)
    if spec.kind == "tt":
        return TensorTrain.from_dense(C, spec.rank)
    raise ValueError(f"unknown radial kind {spec.kind!r}")


def rank_for_compression(shape, fraction: float, kind: str = "mf"):
    """The rank whose parameter count is closest to ``fraction * N_T^2 N_f N_b``.

    ``shape``: (N_T, N_T, N_f, N_b) or (N_T, N_f, N_b). ``fraction``: the fraction of the
    dense parameter count to keep (0.5 for "~50% compression").
    ``kind``: ``"mf"``/``"rmf"``/``"mfra"`` -> an int ``r`` in ``[1, min(N_T^2, N_f N_b)]``
    with ``r (N_T^2 + N_f N_b)`` parameters; ``"tt"`` -> equal ranks ``(r, r, r)`` clipped by
    :func:`clip_tt_ranks`, counted with the paper's TT formula; ``"dense"`` -> None.
    Ties go to the smaller count.

    Example: N_T = 4, N_f = 4, N_b = 8 has 512 dense parameters; MF rank 8 has
    8 (16 + 32) = 384 of them, so ``rank_for_compression(..., 0.75, "mf") == 8``.
    """
    fraction = float(fraction)
    if not fraction > 0:
        raise ValueError(f"fraction must be > 0, got {fraction}")
    kind = kind.lower()
    dims = _dims(shape)
    target = fraction * dense_param_count(dims)
    if kind == "dense":
        return None
    if kind in ("mf", "rmf", "mfra"):
        candidates = [(r, mf_param_count(dims, r)) for r in range(1, _max_mf_rank(dims) + 1)]
    elif kind == "tt":
        nt, nf, nb = dims
        rmax = max(clip_tt_ranks(dims, (10**9,) * 3))
        seen, candidates = set(), []
        for r in range(1, rmax + 1):
            ranks = clip_tt_ranks(dims, (r, r, r))
            if ranks not in seen:
                seen.add(ranks)
                candidates.append((ranks, tt_param_count(dims, ranks)))
    else:
        raise ValueError(f"unknown kind {kind!r}; expected 'dense', 'mf', 'rmf', 'mfra' or 'tt'")
    return min(candidates, key=lambda c: (abs(c[1] - target), c[1]))[0]
