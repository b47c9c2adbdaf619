"""Clebsch-Gordan coefficients: complex (Condon-Shortley), Wigner 3j, and real ones in the basis
of :func:`~mlipress.equivariant.harmonics.spherical_harmonics`; real Gaunt coefficients.

The complex coefficients ``<l1 m1 l2 m2 | l3 m3>`` come from Racah's formula in exact rational
arithmetic (one square root at the end), so they are correct to rounding for any degree. The
real basis is ``Y_real = U_l Y_complex`` (:func:`complex_to_real`), and the real coupling is the
complex one carried through ``U``:

    C[m1, m2, m3] = phase * sum U_l3[m3, M] <l1 mu1 l2 mu2 | l3 M> conj(U_l1[m1, mu1]) conj(U_l2[m2, mu2]),

which is real times ``phase = 1`` when ``l1 + l2 + l3`` is even and times ``phase = -i`` when
it is odd (then the transformed array is purely imaginary). ``C`` is orthonormal like the
complex one (``sum_{m1 m2} C[m1, m2, m3] C[m1, m2, m3'] = delta``) and equivariant:
``C(D_l1 a, D_l2 b) = D_l3 C(a, b)`` with the real Wigner-D of
:func:`~mlipress.equivariant.harmonics.wigner_D`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np

__all__ = ["complex_clebsch_gordan", "wigner_3j", "complex_to_real", "clebsch_gordan", "real_gaunt"]


def _triangle(l1: int, l2: int, l3: int) -> bool:
    return abs(l1 - l2) <= l3 <= l1 + l2


def complex_clebsch_gordan(l1: int, m1: int, l2: int, m2: int, l3: int, m3: int) -> float:
    """``<l1 m1 l2 m2 | l3 m3>`` for integer degrees (Condon-Shortley phase, Racah's formula)."""
    if m1 + m2 != m3 or not _triangle(l1, l2, l3) or abs(m1) > l1 or abs(m2) > l2 or abs(m3) > l3:
        return 0.0
    f = math.factorial
    prefactor = Fraction(
        (2 * l3 + 1) * f(l3 + l1 - l2) * f(l3 - l1 + l2) * f(l1 + l2 - l3),
        f(l1 + l2 + l3 + 1),
    ) * (f(l3 + m3) * f(l3 - m3) * f(l1 - m1) * f(l1 + m1) * f(l2 - m2) * f(l2 + m2))
    total = Fraction(0)
    for k in range(0, l1 + l2 - l3 + 1):
        denominators = (k, l1 + l2 - l3 - k, l1 - m1 - k, l2 + m2 - k, l3 - l2 + m1 + k, l3 - l1 - m2 + k)
        if min(denominators) < 0:
            continue
        total += Fraction((-1) ** k, math.prod(f(d) for d in denominators))
    if total == 0:
        return 0.0
    return math.copysign(math.sqrt(prefactor * total * total), total)


def wigner_3j(l1: int, l2: int, l3: int, m1: int, m2: int, m3: int) -> float:
    """Wigner 3j symbol ``(l1 l2 l3; m1 m2 m3) = (-1)^(l1 - l2 - m3) / sqrt(2 l3 + 1)
    <l1 m1 l2 m2 | l3 -m3>``."""
    return (-1) ** (l1 - l2 - m3) / math.sqrt(2 * l3 + 1) * complex_clebsch_gordan(l1, m1, l2, m2, l3, -m3)


@lru_cache(maxsize=None)
def _complex_to_real(l: int) -> np.ndarray:
    u = np.zeros((2 * l + 1, 2 * l + 1), dtype=np.complex128)
    s = 1 / math.sqrt(2)
    u[l, l] = 1.0
    for m in range(1, l + 1):
        # Y_l,m = (Y^-m + (-1)^m Y^m) / sqrt2,  Y_l,-m = i (Y^-m - (-1)^m Y^m) / sqrt2
        u[l + m, l - m] = s
        u[l + m, l + m] = (-1) ** m * s
        u[l - m, l - m] = 1j * s
        u[l - m, l + m] = -1j * (-1) ** m * s
    u.setflags(write=False)
    return u


def complex_to_real(l: int) -> np.ndarray:
    """Unitary ``U (2l+1, 2l+1)``, rows real ``m``, columns complex ``mu`` (both ``-l..l``):
    ``Y_real[m] = sum_mu U[m, mu] Y^mu`` with ``Y^mu`` the Condon-Shortley complex harmonics."""
    return _complex_to_real(l).copy()


@lru_cache(maxsize=None)
def _complex_cg_block(l1: int, l2: int, l3: int) -> np.ndarray:
    out = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            if abs(m1 + m2) <= l3:
                out[l1 + m1, l2 + m2, l3 + m1 + m2] = complex_clebsch_gordan(l1, m1, l2, m2, l3, m1 + m2)
    return out


@lru_cache(maxsize=None)
def _real_cg(l1: int, l2: int, l3: int) -> np.ndarray:
    if not _triangle(l1, l2, l3):
        out = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    else:
        u1, u2, u3 = _complex_to_real(l1), _complex_to_real(l2), _complex_to_real(l3)
        transformed = np.einsum("cM,abM,ma,nb->mnc", u3, _complex_cg_block(l1, l2, l3), u1.conj(), u2.conj())
        phase = 1.0 if (l1 + l2 + l3) % 2 == 0 else -1j
        out = (phase * transformed).real
        # the transform is exactly real (or imaginary); clean the rounding dust
        out[np.abs(out) < 1e-14] = 0.0
    out.setflags(write=False)
    return out


def clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    """Real Clebsch-Gordan coefficients ``C (2l1+1, 2l2+1, 2l3+1)`` in the real-harmonics basis.

    ``(a (x) b)_{m3} = sum_{m1 m2} C[m1, m2, m3] a_{m1} b_{m2}`` couples degree-``l1`` and
    degree-``l2`` features to degree ``l3`` equivariantly; zeros unless
    ``|l1 - l2| <= l3 <= l1 + l2``. Orthonormal over ``(m1, m2)`` for each ``m3``. For harmonics
    of one direction, ``sum C[m1, m2, m3] Y_l1m1 Y_l2m2 = k Y_l3m3`` with
    ``k = sqrt((2l1+1)(2l2+1) / (4 pi (2l3+1))) <l1 0 l2 0 | l3 0>`` (zero for odd
    ``l1 + l2 + l3``). Cached; returns a fresh writable copy.
    """
    for l in (l1, l2, l3):
        if l < 0:
            raise ValueError(f"degrees must be >= 0, got ({l1}, {l2}, {l3})")
    return _real_cg(l1, l2, l3).copy()


def real_gaunt(l1: int, l2: int, l3: int) -> np.ndarray:
    """Real Gaunt coefficients ``G[m1, m2, m3] = int Y_l1m1 Y_l2m2 Y_l3m3 dOmega`` in this basis:
    ``Y_l1m1 Y_l2m2 = sum_{l3 m3} G[m1, m2, m3] Y_l3m3``. Equal to ``k C`` with the ``k`` of
    :func:`clebsch_gordan`; zero for odd ``l1 + l2 + l3``."""
    k = math.sqrt((2 * l1 + 1) * (2 * l2 + 1) / (4 * math.pi * (2 * l3 + 1))) * complex_clebsch_gordan(l1, 0, l2, 0, l3, 0)
    return k * clebsch_gordan(l1, l2, l3)
