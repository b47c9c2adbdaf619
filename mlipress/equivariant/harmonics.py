"""Real spherical harmonics (JAX) and real Wigner-D matrices (NumPy).

Convention (see the package docstring): ``Y[..., l*l + l + m]`` for ``m = -l..l``, orthonormal
on the unit sphere, no Condon-Shortley phase, so ``Y_1 = sqrt(3 / 4 pi) (y, z, x)``:

    Y_l0  = N_l0 P_l(cos t),
    Y_lm  = sqrt(2) N_lm P_l^m(cos t) cos(m phi),     m > 0,
    Y_l-m = sqrt(2) N_lm P_l^m(cos t) sin(m phi),     m > 0,
    N_lm  = sqrt((2l + 1) / (4 pi) (l - m)! / (l + m)!),

with ``P_l^m = (1 - z^2)^(m/2) d^m P_l / dz^m`` (no ``(-1)^m``). They are evaluated as solid
harmonics, homogeneous polynomials of degree ``l`` in the normalised vector ``u = r / |r|``:
``P_l^m(z) sin^m t = Q_l^m(z, |u|^2) Re/Im (x + i y)^m`` with the recurrence

    Q_m^m = (2m - 1)!!,   Q_{m+1}^m = (2m + 1) z Q_m^m,
    Q_l^m = ((2l - 1) z Q_{l-1}^m - (l + m - 1) |u|^2 Q_{l-2}^m) / (l - m),

so no angles, no divisions by ``sin t`` (smooth at the poles) and, for a padded zero vector,
``u = 0`` gives ``Y_00`` and zeros with finite gradients.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["num_harmonics", "sh_index", "degree_slices", "spherical_harmonics", "wigner_D", "block_wigner_D"]


def num_harmonics(lmax: int) -> int:
    """``(lmax + 1)^2``: the length of the last axis for all degrees ``0..lmax``."""
    return (lmax + 1) ** 2


def sh_index(l: int, m: int) -> int:
    """Position of ``Y_lm`` on the last axis: ``l*l + l + m``."""
    if not -l <= m <= l:
        raise ValueError(f"need -l <= m <= l, got l={l}, m={m}")
    return l * l + l + m


def degree_slices(lmax: int) -> list[slice]:
    """``[slice(l*l, (l+1)**2) for l in 0..lmax]``: the block of each degree."""
    return [slice(l * l, (l + 1) ** 2) for l in range(lmax + 1)]


@lru_cache(maxsize=None)
def _normalisation(l: int, m: int) -> float:
    ratio = math.factorial(l - m) / math.factorial(l + m)
    return math.sqrt((2 * l + 1) / (4 * math.pi) * ratio) * (math.sqrt(2.0) if m else 1.0)


def _unit(vectors):
    """``r / |r|``, and ``0`` for a zero vector with a finite gradient (the double-where trick:
    the square root never sees a zero)."""
    norm2 = jnp.sum(vectors * vectors, axis=-1, keepdims=True)
    safe = jnp.where(norm2 > 0, norm2, 1.0)
    return jnp.where(norm2 > 0, vectors / jnp.sqrt(safe), 0.0)


@partial(jax.jit, static_argnums=0)
def spherical_harmonics(lmax: int, vectors):
    """Real orthonormal spherical harmonics of the directions of ``vectors``.

    ``vectors``: ``(..., 3)`` Cartesian, any nonzero length (normalised here); zero vectors
    (padding) give ``Y_00 = 1 / sqrt(4 pi)`` and zeros for ``l > 0``, with finite gradients.
    Returns ``(..., (lmax + 1)^2)``, index ``l*l + l + m``. Differentiable (``jax.grad``,
    ``jax.jacfwd``); jit-compiled per ``lmax`` (static) and input shape, the loops unrolled.
    """
    if lmax < 0:
        raise ValueError(f"lmax must be >= 0, got {lmax}")
    u = _unit(jnp.asarray(vectors))
    x, y, z = u[..., 0], u[..., 1], u[..., 2]
    r2 = x * x + y * y + z * z
    # cos_m + i sin_m = (x + i y)^m
    cos_m, sin_m = [jnp.ones_like(x)], [jnp.zeros_like(x)]
    for m in range(1, lmax + 1):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(x * c - y * s)
        sin_m.append(x * s + y * c)
    out = [None] * num_harmonics(lmax)
    for m in range(lmax + 1):
        q_prev = None
        q = jnp.full_like(x, float(math.prod(range(2 * m - 1, 0, -2))))  # (2m - 1)!!
        for l in range(m, lmax + 1):
            if l == m + 1:
                q_prev, q = q, (2 * m + 1) * z * q
            elif l > m + 1:
                q_prev, q = q, ((2 * l - 1) * z * q - (l + m - 1) * r2 * q_prev) / (l - m)
            n = _normalisation(l, m)
            out[sh_index(l, m)] = n * q * cos_m[m]
            if m:
                out[sh_index(l, -m)] = n * q * sin_m[m]
    return jnp.stack(out, axis=-1)


@lru_cache(maxsize=None)
def _sample_directions(count: int) -> np.ndarray:
    # fixed points, generic enough that the harmonics matrix has full column rank
    points = np.random.default_rng(12345).normal(size=(count, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def wigner_D(l: int, rotation) -> np.ndarray:
    """Real Wigner-D matrix ``D (2l+1, 2l+1)`` of a rotation matrix ``R`` in this basis:
    ``Y_l(R r) = D Y_l(r)`` for every ``r`` (so ``D`` is orthogonal and ``D(R1 R2) = D(R1)
    D(R2)``). Found by least squares on the harmonics at fixed sample directions; exact to
    rounding because the relation is linear and the samples are generic."""
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.shape != (3, 3):
        raise ValueError(f"rotation must be a 3x3 matrix, got shape {rotation.shape}")
    points = _sample_directions(4 * (2 * l + 1) + 8)
    block = slice(l * l, (l + 1) ** 2)
    before = np.asarray(spherical_harmonics(l, points))[:, block]
    after = np.asarray(spherical_harmonics(l, points @ rotation.T))[:, block]
    transposed, *_ = np.linalg.lstsq(before, after, rcond=None)
    return transposed.T


def block_wigner_D(lmax: int, rotation) -> np.ndarray:
    """Block-diagonal ``((lmax+1)^2, (lmax+1)^2)`` Wigner-D of all degrees ``0..lmax``: acts on a
    feature vector laid out like :func:`spherical_harmonics`."""
    n = num_harmonics(lmax)
    out = np.zeros((n, n))
    for l, block in enumerate(degree_slices(lmax)):
        out[block, block] = wigner_D(l, rotation)
    return out
