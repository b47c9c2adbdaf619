"""Rank-R CP factors of a coupling tensor (Lin et al., "Tensor Decomposition Networks"): fitted
once by alternating least squares from a seeded start, cached on disk per (L, L_out, R, seed),
then frozen in a :class:`~mlipress.equivariant.tensor_product.CPCoupling`.

A 3-way tensor ``T (n1, n2, n3)`` is approximated by ``[[a, b, c]] = sum_r a_r (x) b_r (x) c_r``
with ``a (n1, R)``, ``b (n2, R)``, ``c (n3, R)``; :func:`fit_cp` and :func:`exact_cp` take
tensors of any order (e.g. ACE's generalised CG coefficients of 3 or 4 features).

Exact form. Every slice ``T[i]`` is a matrix of rank ``rho_i``; its SVD gives
``T = sum_i sum_s e_i (x) (sigma_s u_s) (x) v_s``, an exact CP form of rank
``sum_i rho_i`` (the smallest over the choices of the two SVD axes is :func:`exact_rank`). At ``R >=`` that
rank :func:`fit_cp` returns this form (padded with zero columns), so the CP product equals the
exact one to rounding; below it, ALS (:func:`fit_cp`).

Equivariance bound. With ``E = T - [[a, b, c]]`` and orthogonal Wigner-D matrices, since ``T``
is equivariant,

    || D3 f_R(x, y) - f_R(D1 x, D2 y) || = || E(D1 x, D2 y) - D3 E(x, y) ||
                                        <= 2 ||E||_op ||x|| ||y|| <= 2 ||E_(t)||_2 ||x|| ||y||
                                                                  <= 2 ||E||_F ||x|| ||y||,

uniform over rotations (``||E||_op``: the operator norm of the bilinear map, bounded by the
spectral norm of any unfolding ``E_(t)``): the form of the paper's uniform bound on the
equivariance error of a CP tensor product, computable from the CP residual
(:func:`equivariance_bound`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from functools import lru_cache
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from mlipress.cache import cache_root
from mlipress.equivariant.harmonics import block_wigner_D, num_harmonics
from mlipress.equivariant.tensor_product import CPCoupling, fused_cg_tensor

__all__ = [
    "exact_cp",
    "exact_rank",
    "fit_cp",
    "cp_tensor",
    "cp_error",
    "equivariance_bound",
    "equivariance_error",
    "cache_dir",
    "cached_fit_cp",
    "cp_factors",
    "cp_coupling",
]

_CACHE_VERSION = 2


def _khatri_rao(*matrices):
    """Column-wise Kronecker product ``(n_1 ... n_k, R)``; rows in row-major order of
    ``(i_1, ..., i_k)``, matching ``reshape`` of the remaining axes of an unfolding."""
    out = matrices[0]
    for q in matrices[1:]:
        out = (out[:, None, :] * q[None, :, :]).reshape(-1, out.shape[1])
    return out


def cp_tensor(factors) -> np.ndarray:
    """``[[f_1, ..., f_N]] = sum_r f_1[:, r] (x) ... (x) f_N[:, r]`` as a dense array."""
    factors = [np.asarray(f) for f in factors]
    return (_khatri_rao(*factors[:-1]) @ factors[-1].T).reshape([f.shape[0] for f in factors])


def cp_error(tensor, factors) -> float:
    """Relative Frobenius error ``||T - [[f_1, ..., f_N]]||_F / ||T||_F``."""
    tensor = np.asarray(tensor)
    return float(np.linalg.norm(tensor - cp_tensor(factors)) / np.linalg.norm(tensor))


def equivariance_bound(tensor, factors) -> float:
    """``2 min_t ||E_(t)||_2 <= 2 ||E||_F`` for the residual ``E = T - [[f_1, ..., f_N]]``
    (``E_(t)``: its unfolding along axis ``t``, whose spectral norm bounds the multilinear
    operator norm of ``E``). Bounds ``||D3 f_R(x, y) - f_R(D1 x, D2 y)|| / (||x|| ||y||)`` for
    every rotation when ``T`` is equivariant (module docstring); for an invariant coupling of
    ``N`` features (all axes inputs, e.g. an ACE B-function) it bounds
    ``|f_R(D x_1, ..., D x_N) - f_R(x_1, ..., x_N)| / prod ||x_t||`` the same way."""
    residual = np.asarray(tensor) - cp_tensor(factors)
    spectral = min(np.linalg.norm(np.moveaxis(residual, t, 0).reshape(residual.shape[t], -1), 2) for t in range(residual.ndim))
    return 2.0 * float(spectral)


def equivariance_error(coupling, lmax: int, rotations: int = 8, pairs: int = 256, seed: int = 0) -> float:
    """Measured ``max ||D f(x, y) - f(D x, D y)|| / (||x|| ||y||)`` of a coupling of two
    degree-``<= lmax`` features onto the same layout, over ``rotations`` random rotations and
    ``pairs`` random Gaussian pairs (both from ``seed``); compare :func:`equivariance_bound`."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    n = num_harmonics(lmax)
    x, y = rng.normal(size=(pairs, n)), rng.normal(size=(pairs, n))
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    worst = 0.0
    for R in Rotation.random(rotations, random_state=seed).as_matrix():
        D = block_wigner_D(lmax, R)
        diff = np.asarray(coupling(x, y)) @ D.T - np.asarray(coupling(x @ D.T, y @ D.T))
        worst = max(worst, float(np.max(np.linalg.norm(diff, axis=1) / norms)))
    return worst


def _slice_svd(tensor, pair, tol):
    """Exact CP factors from the SVDs of the matrices ``T[..., :, :]`` over the two axes
    ``pair``, one per index of the other axes (their factors are unit vectors)."""
    p, q = pair
    others = [axis for axis in range(tensor.ndim) if axis not in pair]
    slices = np.moveaxis(tensor, others + [p, q], range(tensor.ndim))
    slices = slices.reshape(-1, tensor.shape[p], tensor.shape[q])
    columns = []
    for index, matrix in enumerate(slices):
        u, s, vt = np.linalg.svd(matrix, full_matrices=False)
        for k in np.nonzero(s > tol * max(s.max(initial=0.0), 1e-300))[0]:
            columns.append((index, s[k] * u[:, k], vt[k]))
    factors = [np.zeros((n, len(columns))) for n in tensor.shape]
    for r, (index, left, right) in enumerate(columns):
        for axis, i in zip(others, np.unravel_index(index, [tensor.shape[a] for a in others]) if others else ()):
            factors[axis][i, r] = 1.0
        factors[p][:, r], factors[q][:, r] = left, right
    return tuple(factors)


def exact_cp(tensor, tol: float = 1e-12) -> tuple[np.ndarray, ...]:
    """An exact CP form of ``tensor`` (any order >= 2) from slice SVDs, over the pair of axes
    that gives the smallest rank (the rank is :func:`exact_rank`; an upper bound of the CP
    rank)."""
    tensor = np.asarray(tensor, dtype=np.float64)
    best = None
    for pair in reversed(list(itertools.combinations(range(tensor.ndim), 2))):
        factors = _slice_svd(tensor, pair, tol)
        if best is None or factors[0].shape[1] < best[0].shape[1]:
            best = factors
    return best


def exact_rank(tensor, tol: float = 1e-12) -> int:
    """Rank of :func:`exact_cp`: the CP rank at which :func:`fit_cp` is exact."""
    return int(exact_cp(tensor, tol)[0].shape[1])


def _als(tensor, factors, max_iter, tol):
    """Alternating least squares: each factor in turn solves its linear least-squares problem
    ``T_(t) ~ F_t (Khatri-Rao of the others)^T`` through the Hadamard product of the others'
    ``R x R`` Gram matrices (pseudo-inverse, so rank-deficient Grams do not blow up)."""
    factors = list(factors)
    order = tensor.ndim
    unfoldings = [np.moveaxis(tensor, t, 0).reshape(tensor.shape[t], -1) for t in range(order)]
    norm = np.linalg.norm(tensor)
    previous = np.inf
    for _ in range(max_iter):
        for t in range(order):
            others = [factors[u] for u in range(order) if u != t]
            gram = others[0].T @ others[0]
            for f in others[1:]:
                gram = gram * (f.T @ f)
            factors[t] = unfoldings[t] @ _khatri_rao(*others) @ np.linalg.pinv(gram, rcond=1e-13, hermitian=True)
        # balance the column norms: the CP form is unchanged, the iteration better conditioned
        norms = [np.linalg.norm(f, axis=0) for f in factors]
        scale = np.prod(norms, axis=0) ** (1.0 / order)
        factors = [f * np.where(n > 0, scale / np.maximum(n, 1e-300), 1.0) for f, n in zip(factors, norms)]
        error = np.linalg.norm(tensor - cp_tensor(factors)) / norm
        if previous - error < tol:
            break
        previous = error
    return tuple(factors)


def fit_cp(tensor, rank: int, seed: int = 0, max_iter: int = 500, tol: float = 1e-10, restarts: int = 3):
    """Rank-``rank`` CP factors ``(f_1, ..., f_N)``, ``f_t (n_t, rank)``, of ``tensor`` (any
    order ``N >= 2``; NumPy float64).

    At ``rank >= exact_rank(tensor)``: the exact slice-SVD form, zero-padded. Below it: ALS from
    ``restarts`` starts drawn from ``numpy.random.default_rng(seed)`` (normal entries scaled to
    the tensor's norm), each run until the relative error improves by less than ``tol`` or
    ``max_iter`` sweeps; the best is returned. Deterministic for a fixed seed (and BLAS).
    """
    tensor = np.asarray(tensor, dtype=np.float64)
    if tensor.ndim < 2:
        raise ValueError(f"need a tensor of order >= 2, got shape {tensor.shape}")
    if rank < 1:
        raise ValueError(f"CP rank must be >= 1, got {rank}")
    exact = exact_cp(tensor)
    if rank >= exact[0].shape[1]:
        return tuple(np.pad(f, ((0, 0), (0, rank - f.shape[1]))) for f in exact)
    rng = np.random.default_rng(seed)
    scale = (np.linalg.norm(tensor) / rank) ** (1.0 / tensor.ndim)
    best, best_error = None, np.inf
    for _ in range(restarts):
        start = tuple(rng.normal(size=(n, rank)) * scale / np.sqrt(n) for n in tensor.shape)
        factors = _als(tensor, start, max_iter, tol)
        error = cp_error(tensor, factors)
        if error < best_error:
            best, best_error = factors, error
    return best


def cache_dir() -> Path:
    """Where fitted factors are kept: ``cp`` under :func:`mlipress.cache.cache_root`
    (``$MLIPRESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlipress``, else ``~/.cache/mlipress``)."""
    return cache_root() / "cp"


def _load_or_fit(path: Path, make_tensor, rank: int, seed: int, use_disk: bool) -> tuple[np.ndarray, ...]:
    """Factors ``f0, f1, ...`` stored at ``path``, else ``fit_cp(make_tensor(), rank, seed)``
    written there atomically (a damaged or unwritable cache is refitted, never an error)."""
    if use_disk and path.exists():
        try:
            with np.load(path) as data:
                factors = tuple(data[f"f{t}"] for t in range(len(data.files)))
            if factors and all(f.shape[1] == rank for f in factors):
                return factors
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache file is refitted and overwritten
    factors = fit_cp(make_tensor(), rank, seed=seed)
    if use_disk:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **{f"f{t}": f for t, f in enumerate(factors)})
            tmp.replace(path)
        except OSError:
            pass  # a read-only home is no reason to fail: the factors are recomputed next time
    for f in factors:
        f.setflags(write=False)
    return factors


@lru_cache(maxsize=None)
def _fused_factors(lmax: int, lmax_out: int, rank: int, seed: int, use_disk: bool):
    path = cache_dir() / f"fused-cg_v{_CACHE_VERSION}_L{lmax}_Lout{lmax_out}_R{rank}_seed{seed}.npz"
    return _load_or_fit(path, lambda: fused_cg_tensor(lmax, lmax_out), rank, seed, use_disk)


@lru_cache(maxsize=None)
def _tensor_factors(name: str, data: bytes, shape: tuple[int, ...], rank: int, seed: int, use_disk: bool):
    digest = hashlib.sha256(data + repr(shape).encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}_v{_CACHE_VERSION}_{digest}_R{rank}_seed{seed}.npz"
    return _load_or_fit(path, lambda: np.frombuffer(data, dtype=np.float64).reshape(shape), rank, seed, use_disk)


def cached_fit_cp(tensor, rank: int, seed: int = 0, name: str = "tensor", use_disk: bool = True):
    """:func:`fit_cp` of any fixed coupling tensor, fitted once and then read from
    :func:`cache_dir` (file ``NAME_v2_<content hash>_R<rank>_seed<seed>.npz``) and memory."""
    tensor = np.ascontiguousarray(tensor, dtype=np.float64)
    return tuple(f.copy() for f in _tensor_factors(name, tensor.tobytes(), tensor.shape, int(rank), int(seed), use_disk))


def cp_factors(lmax: int, rank: int, seed: int = 0, lmax_out: int | None = None, use_disk: bool = True):
    """CP factors ``(a, b, c)`` of the fused CG tensor
    :func:`~mlipress.equivariant.tensor_product.fused_cg_tensor` ``(lmax, lmax_out)``: fitted
    once by :func:`fit_cp` with ``seed``, then read from :func:`cache_dir` (and memory)."""
    lmax_out = lmax if lmax_out is None else lmax_out
    return tuple(f.copy() for f in _fused_factors(lmax, lmax_out, rank, seed, use_disk))


def cp_coupling(lmax: int, rank: int, seed: int = 0, lmax_out: int | None = None, use_disk: bool = True) -> CPCoupling:
    """The frozen rank-``rank`` CP tensor product of features of degrees ``<= lmax`` to degrees
    ``<= lmax_out``: ``cp_coupling(L, R)(x, y) ~ dense_coupling(fused_cg_tensor(L))(x, y)``."""
    return CPCoupling(*(jnp.asarray(f) for f in cp_factors(lmax, rank, seed, lmax_out, use_disk)))
