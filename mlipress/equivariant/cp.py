"""Rank-R CP factors of a coupling tensor (Lin et al., "Tensor Decomposition Networks"): fitted
once by alternating least squares from a seeded start, cached on disk per (L, L_out, R, seed),
then frozen in a :class:`~mlipress.equivariant.tensor_product.CPCoupling`.

A 3-way tensor ``T (n1, n2, n3)`` is approximated by ``[[a, b, c]] = sum_r a_r (x) b_r (x) c_r``
with ``a (n1, R)``, ``b (n2, R)``, ``c (n3, R)``.

Exact form. Every slice ``T[i]`` is a matrix of rank ``rho_i``; its SVD gives
``T = sum_i sum_s e_i (x) (sigma_s u_s) (x) v_s``, an exact CP form of rank
``sum_i rho_i`` (the smallest over the three modes is :func:`exact_rank`). At ``R >=`` that
rank :func:`fit_cp` returns this form (padded with zero columns), so the CP product equals the
exact one to rounding; below it, ALS (:func:`fit_cp`).

Equivariance bound. With ``E = T - [[a, b, c]]`` and orthogonal Wigner-D matrices, since ``T``
is equivariant,

    || D3 f_R(x, y) - f_R(D1 x, D2 y) || = || E(D1 x, D2 y) - D3 E(x, y) ||
                                        <= 2 ||E||_op ||x|| ||y|| <= 2 ||E||_F ||x|| ||y||,

uniform over rotations: the form of the paper's uniform bound on the equivariance error of a CP
tensor product, here with the Frobenius norm of the CP residual (:func:`equivariance_bound`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from mlipress.equivariant.tensor_product import CPCoupling, fused_cg_tensor

__all__ = [
    "exact_cp",
    "exact_rank",
    "fit_cp",
    "cp_tensor",
    "cp_error",
    "equivariance_bound",
    "cache_dir",
    "cp_factors",
    "cp_coupling",
]

_CACHE_VERSION = 1


def _khatri_rao(p, q):
    """Column-wise Kronecker product ``(n_p n_q, R)``, row ``i * n_q + j`` = ``p[i] * q[j]``."""
    return (p[:, None, :] * q[None, :, :]).reshape(-1, p.shape[1])


def cp_tensor(factors) -> np.ndarray:
    """``[[a, b, c]]`` as a dense ``(n1, n2, n3)`` array."""
    a, b, c = (np.asarray(f) for f in factors)
    return (_khatri_rao(a, b) @ c.T).reshape(a.shape[0], b.shape[0], c.shape[0])


def cp_error(tensor, factors) -> float:
    """Relative Frobenius error ``||T - [[a, b, c]]||_F / ||T||_F``."""
    tensor = np.asarray(tensor)
    return float(np.linalg.norm(tensor - cp_tensor(factors)) / np.linalg.norm(tensor))


def equivariance_bound(tensor, factors) -> float:
    """``2 ||T - [[a, b, c]]||_F``: bounds ``||D3 f_R(x, y) - f_R(D1 x, D2 y)|| / (||x|| ||y||)``
    for every rotation when ``T`` is equivariant (module docstring)."""
    return 2.0 * float(np.linalg.norm(np.asarray(tensor) - cp_tensor(factors)))


def _slice_svd(tensor, tol):
    """Exact CP factors from the SVDs of the mode-0 slices."""
    n1, n2, n3 = tensor.shape
    columns = []
    for i in range(n1):
        u, s, vt = np.linalg.svd(tensor[i], full_matrices=False)
        for k in np.nonzero(s > tol * max(s.max(initial=0.0), 1e-300))[0]:
            columns.append((i, s[k] * u[:, k], vt[k]))
    a = np.zeros((n1, len(columns)))
    b = np.zeros((n2, len(columns)))
    c = np.zeros((n3, len(columns)))
    for r, (i, left, right) in enumerate(columns):
        a[i, r], b[:, r], c[:, r] = 1.0, left, right
    return a, b, c


_MODES = ((0, 1, 2), (1, 0, 2), (2, 0, 1))  # which axis is sliced, and the order of the rest


def exact_cp(tensor, tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An exact CP form of ``tensor`` from slice SVDs, along the mode that gives the smallest rank
    (the rank is :func:`exact_rank`; an upper bound of the CP rank)."""
    tensor = np.asarray(tensor, dtype=np.float64)
    best = None
    for mode in _MODES:
        factors = _slice_svd(np.transpose(tensor, mode), tol)
        if best is None or factors[0].shape[1] < best[1][0].shape[1]:
            best = (mode, factors)
    mode, factors = best
    ordered = [None, None, None]
    for axis, f in zip(mode, factors):
        ordered[axis] = f
    return tuple(ordered)


def exact_rank(tensor, tol: float = 1e-12) -> int:
    """Rank of :func:`exact_cp`: the CP rank at which :func:`fit_cp` is exact."""
    return int(exact_cp(tensor, tol)[0].shape[1])


def _als(tensor, factors, max_iter, tol):
    """Alternating least squares: each factor in turn solves its linear least-squares problem
    ``T_(n) ~ F_n (F_q (.) F_p)^T`` through the ``R x R`` Gram matrices (pseudo-inverse, so
    rank-deficient Grams do not blow up)."""
    a, b, c = factors
    n1, n2, n3 = tensor.shape
    unfold_a = tensor.reshape(n1, n2 * n3)
    unfold_b = np.moveaxis(tensor, 1, 0).reshape(n2, n1 * n3)
    unfold_c = np.moveaxis(tensor, 2, 0).reshape(n3, n1 * n2)
    norm = np.linalg.norm(tensor)

    def solve(unfolded, p, q):
        gram = (p.T @ p) * (q.T @ q)
        return unfolded @ _khatri_rao(p, q) @ np.linalg.pinv(gram, rcond=1e-13, hermitian=True)

    previous = np.inf
    for _ in range(max_iter):
        a = solve(unfold_a, b, c)
        b = solve(unfold_b, a, c)
        c = solve(unfold_c, a, b)
        # balance the column norms: the CP form is unchanged, the iteration better conditioned
        norms = [np.linalg.norm(f, axis=0) for f in (a, b, c)]
        scale = np.cbrt(norms[0] * norms[1] * norms[2])
        a, b, c = (f * np.where(n > 0, scale / np.maximum(n, 1e-300), 1.0) for f, n in zip((a, b, c), norms))
        error = np.linalg.norm(tensor - cp_tensor((a, b, c))) / norm
        if previous - error < tol:
            break
        previous = error
    return a, b, c


def fit_cp(tensor, rank: int, seed: int = 0, max_iter: int = 500, tol: float = 1e-10, restarts: int = 3):
    """Rank-``rank`` CP factors ``(a, b, c)`` of ``tensor`` (NumPy float64).

    At ``rank >= exact_rank(tensor)``: the exact slice-SVD form, zero-padded. Below it: ALS from
    ``restarts`` starts drawn from ``numpy.random.default_rng(seed)`` (normal entries scaled to
    the tensor's norm), each run until the relative error improves by less than ``tol`` or
    ``max_iter`` sweeps; the best is returned. Deterministic for a fixed seed (and BLAS).
    """
    tensor = np.asarray(tensor, dtype=np.float64)
    if tensor.ndim != 3:
        raise ValueError(f"need a 3-way tensor, got shape {tensor.shape}")
    if rank < 1:
        raise ValueError(f"CP rank must be >= 1, got {rank}")
    exact = exact_cp(tensor)
    if rank >= exact[0].shape[1]:
        return tuple(np.pad(f, ((0, 0), (0, rank - f.shape[1]))) for f in exact)
    rng = np.random.default_rng(seed)
    scale = np.cbrt(np.linalg.norm(tensor) / rank)
    best, best_error = None, np.inf
    for _ in range(restarts):
        start = tuple(rng.normal(size=(n, rank)) * scale / np.sqrt(n) for n in tensor.shape)
        factors = _als(tensor, start, max_iter, tol)
        error = cp_error(tensor, factors)
        if error < best_error:
            best, best_error = factors, error
    return best


def cache_dir() -> Path:
    """Where fitted factors are kept: ``$MLIPRESS_CACHE_DIR/cp``, else
    ``$XDG_CACHE_HOME/mlipress/cp``, else ``~/.cache/mlipress/cp``."""
    root = os.environ.get("MLIPRESS_CACHE_DIR")
    if root:
        return Path(root) / "cp"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mlipress" / "cp"


@lru_cache(maxsize=None)
def _fused_factors(lmax: int, lmax_out: int, rank: int, seed: int, use_disk: bool):
    path = cache_dir() / f"fused-cg_v{_CACHE_VERSION}_L{lmax}_Lout{lmax_out}_R{rank}_seed{seed}.npz"
    if use_disk and path.exists():
        try:
            with np.load(path) as data:
                factors = (data["a"], data["b"], data["c"])
            if all(f.shape[1] == rank for f in factors):
                return factors
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache file is refitted and overwritten
    factors = fit_cp(fused_cg_tensor(lmax, lmax_out), rank, seed=seed)
    if use_disk:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, a=factors[0], b=factors[1], c=factors[2])
            tmp.replace(path)
        except OSError:
            pass  # a read-only home is no reason to fail: the factors are recomputed next time
    for f in factors:
        f.setflags(write=False)
    return factors


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
