"""The fused Clebsch-Gordan tensor product of two features of degrees ``<= L``, and three ways to
apply a 3-way coupling tensor to a batch of feature pairs: dense, sparse, CP.

Fused CG tensor (Lin et al., "Tensor Decomposition Networks", section 3): with features laid
out as in :func:`~mlipress.equivariant.harmonics.spherical_harmonics` (``(L+1)^2`` entries,
degree ``l`` at ``l*l .. (l+1)^2 - 1``), all CG paths ``(l1, l2) -> l3`` with ``l1, l2 <= L``,
``|l1 - l2| <= l3 <= min(l1 + l2, L_out)`` are stacked into one tensor

    T[l1 m1, l2 m2, l3 m3] = w_(l1 l2 l3) C^(l1 l2 l3)[m1, m2, m3]      (n1, n2, n3),

so the whole tensor product is one bilinear map ``z_k = sum_ij T[i, j, k] x_i y_j``. It costs
``O(L^6)`` as a dense contraction, ``O(L^5)`` over its nonzeros (``O(L^6)`` with a smaller
constant over its nonzero ``(l1, l2)`` blocks, e3nn's way); the rank-R CP form
``T ~ sum_r a_r (x) b_r (x) c_r`` of :mod:`.cp` costs ``O(R L^2)``.

Couplings. :class:`DenseCoupling`, :class:`SparseCoupling` (entries),
:class:`BlockSparseCoupling` (degree blocks) and :class:`CPCoupling` are frozen
pytree dataclasses with one interface: ``coupling(x, y)`` for ``x (..., n1)``, ``y (..., n2)``
-> ``(..., n3)`` (broadcasting over the leading axes), ``.mix(x, y, weights)`` (path-weight
sharing, below), ``.tensor()`` (the dense tensor it applies, NumPy), ``.shape``,
``.flops_per_pair``. They hold constants: a model keeps them outside its trainable parameters.

Path-weight sharing (TDN section 4): in an e3nn-style weighted product every path ``p`` has its
own multiplicity weights ``W_p[u, v, w]``, ``O(L^3)`` sets; sharing one set across all paths,

    out[..., w, :] = sum_uv W[u, v, w] T(x[..., u, :], y[..., v, :]),

is still equivariant (the weights act on channels, the coupling on ``m``) and needs one set of
``U V W`` weights. It is also what lets a single CP factorisation of the fused ``T`` serve every
channel pair: ``.mix`` of :class:`CPCoupling` costs ``O(R (U n1 + V n2 + U V W + W n3))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from mlipress.equivariant.clebsch_gordan import clebsch_gordan
from mlipress.equivariant.harmonics import num_harmonics

__all__ = [
    "cg_paths",
    "fused_cg_tensor",
    "DenseCoupling",
    "SparseCoupling",
    "BlockSparseCoupling",
    "CPCoupling",
    "dense_coupling",
    "sparse_coupling",
    "block_sparse_coupling",
]


def cg_paths(lmax: int, lmax_out: int | None = None) -> tuple[tuple[int, int, int], ...]:
    """All ``(l1, l2, l3)`` with ``l1, l2 <= lmax``, ``|l1 - l2| <= l3 <= min(l1 + l2, lmax_out)``
    (``lmax_out`` defaults to ``lmax``), in lexicographic order: ``O(L^3)`` of them."""
    lmax_out = lmax if lmax_out is None else lmax_out
    return tuple(
        (l1, l2, l3)
        for l1 in range(lmax + 1)
        for l2 in range(lmax + 1)
        for l3 in range(abs(l1 - l2), min(l1 + l2, lmax_out) + 1)
    )


@lru_cache(maxsize=None)
def _fused(lmax: int, lmax_out: int, weights: tuple[float, ...] | None) -> np.ndarray:
    paths = cg_paths(lmax, lmax_out)
    n, n_out = num_harmonics(lmax), num_harmonics(lmax_out)
    out = np.zeros((n, n, n_out))
    for p, (l1, l2, l3) in enumerate(paths):
        w = 1.0 if weights is None else weights[p]
        out[l1 * l1:(l1 + 1) ** 2, l2 * l2:(l2 + 1) ** 2, l3 * l3:(l3 + 1) ** 2] = w * clebsch_gordan(l1, l2, l3)
    out.setflags(write=False)
    return out


def fused_cg_tensor(lmax: int, lmax_out: int | None = None, path_weights=None) -> np.ndarray:
    """The fused CG tensor ``T ((L+1)^2, (L+1)^2, (L_out+1)^2)`` of all :func:`cg_paths`, each
    path scaled by ``path_weights[p]`` (one float per path, in :func:`cg_paths` order; default 1,
    so every output component of every path has unit norm over ``(m1, m2)``). Cached."""
    lmax_out = lmax if lmax_out is None else lmax_out
    if lmax < 0 or lmax_out < 0:
        raise ValueError(f"degrees must be >= 0, got lmax={lmax}, lmax_out={lmax_out}")
    weights = None
    if path_weights is not None:
        weights = tuple(float(w) for w in np.asarray(path_weights, dtype=np.float64).ravel())
        if len(weights) != len(cg_paths(lmax, lmax_out)):
            raise ValueError(f"need {len(cg_paths(lmax, lmax_out))} path weights, got {len(weights)}")
    return _fused(lmax, lmax_out, weights).copy()


def _static():
    return field(metadata={"static": True})


def _register(cls):
    static = [f for f, spec in cls.__dataclass_fields__.items() if spec.metadata.get("static")]
    data = [f for f in cls.__dataclass_fields__ if f not in static]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=static)


@_register
@dataclass(frozen=True)
class DenseCoupling:
    """``z_k = sum_ij T[i, j, k] x_i y_j`` with the dense ``T (n1, n2, n3)``: ``2 n1 n2 n3``
    flops per pair."""

    coefficients: jax.Array

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.coefficients.shape)

    @property
    def flops_per_pair(self) -> int:
        n1, n2, n3 = self.shape
        return n1 * n2 + 2 * n1 * n2 * n3

    def __call__(self, x, y):
        outer = x[..., :, None] * y[..., None, :]
        return jnp.einsum("...ij,ijk->...k", outer, self.coefficients)

    def mix(self, x, y, weights):
        """Path-weight sharing: ``x (..., U, n1)``, ``y (..., V, n2)``, ``weights (U, V, W)`` ->
        ``(..., W, n3)``."""
        xw = jnp.einsum("...ui,uvw->...vwi", x, weights)
        return jnp.einsum("...vwi,...vj,ijk->...wk", xw, y, self.coefficients)

    def tensor(self) -> np.ndarray:
        return np.asarray(self.coefficients)


@_register
@dataclass(frozen=True)
class SparseCoupling:
    """The same product over the nonzeros ``(rows, cols, outs, values)`` of ``T``: gather,
    multiply, scatter-add; ``3 nnz`` flops per pair (``O(L^5)`` for the fused CG tensor)."""

    rows: jax.Array
    cols: jax.Array
    outs: jax.Array
    values: jax.Array
    shape: tuple[int, int, int] = _static()

    @property
    def flops_per_pair(self) -> int:
        return 3 * int(self.values.shape[0])

    def __call__(self, x, y):
        return self._scatter(x[..., self.rows] * y[..., self.cols] * self.values)

    def _scatter(self, terms):
        out = jnp.zeros(terms.shape[:-1] + (self.shape[2],), terms.dtype)
        return out.at[..., self.outs].add(terms)

    def mix(self, x, y, weights):
        terms = jnp.einsum("...un,...vn,uvw->...wn", x[..., self.rows], y[..., self.cols], weights) * self.values
        return self._scatter(terms)

    def tensor(self) -> np.ndarray:
        out = np.zeros(self.shape)
        np.add.at(out, (np.asarray(self.rows), np.asarray(self.cols), np.asarray(self.outs)), np.asarray(self.values))
        return out


@_register
@dataclass(frozen=True)
class BlockSparseCoupling:
    """The same product over the nonzero degree blocks of ``T``: for each ``(l1, l2)`` with a
    nonzero block, the outer product of ``x_l1`` and ``y_l2`` times the block's
    ``((2l1+1)(2l2+1), span)`` matrix onto the span of output columns it reaches. Dense matrix
    products on small blocks: slower than sparse entries in flops, faster on CPUs."""

    blocks: tuple
    layout: tuple = _static()  # per block: (row start, row stop, col start, col stop, out start, out stop)
    shape: tuple[int, int, int] = _static()

    @property
    def flops_per_pair(self) -> int:
        return sum((r1 - r0) * (c1 - c0) * (1 + 2 * (o1 - o0)) for r0, r1, c0, c1, o0, o1 in self.layout)

    def __call__(self, x, y):
        out = jnp.zeros(jnp.broadcast_shapes(x.shape[:-1], y.shape[:-1]) + (self.shape[2],), x.dtype)
        for block, (r0, r1, c0, c1, o0, o1) in zip(self.blocks, self.layout):
            outer = (x[..., r0:r1, None] * y[..., None, c0:c1]).reshape(*out.shape[:-1], -1)
            out = out.at[..., o0:o1].add(outer @ block)
        return out

    def mix(self, x, y, weights):
        out = jnp.zeros(jnp.broadcast_shapes(x.shape[:-2], y.shape[:-2]) + (weights.shape[2], self.shape[2]), x.dtype)
        for block, (r0, r1, c0, c1, o0, o1) in zip(self.blocks, self.layout):
            pairs = jnp.einsum("...ui,...vj,uvw->...wij", x[..., r0:r1], y[..., c0:c1], weights)
            out = out.at[..., o0:o1].add(pairs.reshape(*out.shape[:-1], -1) @ block)
        return out

    def tensor(self) -> np.ndarray:
        out = np.zeros(self.shape)
        for block, (r0, r1, c0, c1, o0, o1) in zip(self.blocks, self.layout):
            out[r0:r1, c0:c1, o0:o1] = np.asarray(block).reshape(r1 - r0, c1 - c0, o1 - o0)
        return out


@_register
@dataclass(frozen=True)
class CPCoupling:
    """Rank-R CP form ``T[i, j, k] ~ sum_r a[i, r] b[j, r] c[k, r]``:
    ``z = c ((a^T x) * (b^T y))``, ``2 R (n1 + n2 + n3) + R`` flops per pair. The factors are
    fitted once to a fixed tensor (:func:`mlipress.equivariant.cp.cp_coupling`) and frozen."""

    a: jax.Array
    b: jax.Array
    c: jax.Array

    @property
    def rank(self) -> int:
        return int(self.a.shape[1])

    @property
    def shape(self) -> tuple[int, int, int]:
        return (int(self.a.shape[0]), int(self.b.shape[0]), int(self.c.shape[0]))

    @property
    def flops_per_pair(self) -> int:
        return 2 * self.rank * sum(self.shape) + self.rank

    def __call__(self, x, y):
        return ((x @ self.a) * (y @ self.b)) @ self.c.T

    def mix(self, x, y, weights):
        shared = jnp.einsum("...ur,...vr,uvw->...wr", x @ self.a, y @ self.b, weights)
        return shared @ self.c.T

    def tensor(self) -> np.ndarray:
        return np.einsum("ir,jr,kr->ijk", np.asarray(self.a), np.asarray(self.b), np.asarray(self.c))


def _three_way(tensor) -> np.ndarray:
    tensor = np.asarray(tensor, dtype=np.float64)
    if tensor.ndim != 3:
        raise ValueError(f"need a 3-way tensor, got shape {tensor.shape}")
    return tensor


def dense_coupling(tensor) -> DenseCoupling:
    """:class:`DenseCoupling` of a 3-way tensor (e.g. :func:`fused_cg_tensor`)."""
    return DenseCoupling(jnp.asarray(_three_way(tensor)))


def sparse_coupling(tensor, tol: float = 0.0) -> SparseCoupling:
    """:class:`SparseCoupling` of the entries of ``tensor`` with ``|value| > tol``."""
    tensor = _three_way(tensor)
    rows, cols, outs = np.nonzero(np.abs(tensor) > tol)
    return SparseCoupling(
        jnp.asarray(rows), jnp.asarray(cols), jnp.asarray(outs), jnp.asarray(tensor[rows, cols, outs]), tuple(tensor.shape)
    )


def _degree_blocks(size: int, axis: str) -> list[tuple[int, int]]:
    lmax = math.isqrt(size) - 1
    if (lmax + 1) ** 2 != size:
        raise ValueError(f"axis {axis} has length {size}, not (L+1)^2 of a degree-ordered feature")
    return [(l * l, (l + 1) ** 2) for l in range(lmax + 1)]


def block_sparse_coupling(tensor) -> BlockSparseCoupling:
    """:class:`BlockSparseCoupling` of a tensor whose axes are degree-ordered features (lengths
    ``(L+1)^2``), e.g. :func:`fused_cg_tensor`: one block per nonzero ``(l1, l2)`` pair."""
    tensor = _three_way(tensor)
    blocks, layout = [], []
    for r0, r1 in _degree_blocks(tensor.shape[0], "0"):
        for c0, c1 in _degree_blocks(tensor.shape[1], "1"):
            columns = np.nonzero(np.any(tensor[r0:r1, c0:c1] != 0, axis=(0, 1)))[0]
            if columns.size:
                o0, o1 = int(columns[0]), int(columns[-1]) + 1
                blocks.append(jnp.asarray(tensor[r0:r1, c0:c1, o0:o1].reshape((r1 - r0) * (c1 - c0), o1 - o0)))
                layout.append((r0, r1, c0, c1, o0, o1))
    return BlockSparseCoupling(tuple(blocks), tuple(layout), tuple(tensor.shape))
