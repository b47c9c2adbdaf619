"""The ACE B-basis: which products of atomic-base functions are coupled to invariants, and how.

A B-function of rank v (body order v + 1) is labelled as in pacemaker's B-basis ``.yaml``
(``nbody`` entries): neighbour species ``mus``, radial indices ``ns`` (1-based), degrees ``ls``
and intermediate couplings ``lint``. Its value at atom i is (Drautz 2019; eq. (15)-(16) of the
paper)

    B = Re sum_{m_1..m_v} C^{l, lint}_{m_1..m_v} prod_t A^c_{mu_t n_t l_t m_t},

with A^c the atomic base in complex Condon-Shortley harmonics and C the generalised
Clebsch-Gordan coefficients of pacemaker's binary coupling tree:

- v = 1: ``l = (0,)``, C = 1 (A uses the radial *basis* g_n directly, n = 1..N_k);
- v = 2: ``<l1 m1 l2 m2 | 0 0>``;
- v = 3: ``lint = (L,)``: ``<l1 m1 l2 m2 | L M> <L M l3 m3 | 0 0>`` (L = l3);
- v = 4: ``lint = (L12, L34)``: ``<l1 l2 | L12 M> <l3 l4 | L34 -M'> <L12 M L34 M' | 0 0>``.

mlipress evaluates with real harmonics (:mod:`mlipress.equivariant`, ``Y_real = U Y_complex``),
so C is carried into the real basis once, on the host (:func:`real_coupling`):
``C_real = Re(C (x) conj(U_l1) (x) ... )``, which gives the same B for real A.

The generator (:func:`generate_functions`) enumerates, per rank, the tuples
``(mu_t, n_t, l_t)`` sorted lexicographically (the products commute), with ``sum l`` even
(parity) and the triangle rules, and every admissible ``lint``; a coupling is kept only if,
symmetrised over the permutations of equal tuples, it is non-zero and linearly independent of
the couplings already kept for that tuple (this drops e.g. ``lint = (1, 1)`` of four equal
``l = 1`` factors, as pacemaker does).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from mlipress.equivariant import complex_clebsch_gordan, complex_to_real

__all__ = ["BFunction", "generalised_cg", "real_coupling", "generate_functions", "MAX_RANK"]

#: Ranks (products of A) supported by the coupling tree: body order up to 5.
MAX_RANK = 4


@dataclass(frozen=True, order=True)
class BFunction:
    """One B-function: ``mus`` (neighbour species, 0-based), ``ns`` (radial index, 1-based as in
    pacemaker), ``ls`` (degrees), ``lint`` (intermediate couplings, ``max(0, rank - 2)`` of them)."""

    mus: tuple[int, ...]
    ns: tuple[int, ...]
    ls: tuple[int, ...]
    lint: tuple[int, ...] = ()

    def __post_init__(self):
        for name in ("mus", "ns", "ls", "lint"):
            object.__setattr__(self, name, tuple(int(x) for x in getattr(self, name)))
        v = len(self.ns)
        if not 1 <= v <= MAX_RANK or len(self.mus) != v or len(self.ls) != v:
            raise ValueError(f"B-function {self}: mus, ns, ls must have the same length 1..{MAX_RANK}")
        if len(self.lint) != max(0, v - 2):
            raise ValueError(f"B-function {self}: rank {v} needs {max(0, v - 2)} intermediate couplings (lint)")
        if min(self.ns) < 1 or min(self.ls) < 0:
            raise ValueError(f"B-function {self}: ns start at 1, ls at 0")
        if v == 1 and self.ls != (0,):
            raise ValueError(f"B-function {self}: a rank-1 function has l = 0")

    @property
    def rank(self) -> int:
        return len(self.ns)

    def sort_key(self):
        """The canonical order of a basis: by rank, then the sorted ``(mu, n, l)`` tuples, then lint."""
        return (self.rank, tuple(zip(self.mus, self.ns, self.ls)), self.lint)


def _cg_block(l1: int, l2: int, l3: int) -> np.ndarray:
    """Complex ``<l1 m1 l2 m2 | l3 m3>`` as an array (2l1+1, 2l2+1, 2l3+1), m from -l."""
    out = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            m3 = m1 + m2
            if abs(m3) <= l3:
                out[m1 + l1, m2 + l2, m3 + l3] = complex_clebsch_gordan(l1, m1, l2, m2, l3, m3)
    return out


@functools.lru_cache(maxsize=None)
def generalised_cg(ls: tuple[int, ...], lint: tuple[int, ...] = ()) -> np.ndarray:
    """Pacemaker's generalised CG coefficients in the complex basis (module docstring):
    an array of shape ``(2 l_1 + 1, ..., 2 l_v + 1)``, zeros where a coupling rule fails."""
    ls, lint = tuple(ls), tuple(lint)
    v = len(ls)
    if v == 1:
        return np.ones((2 * ls[0] + 1,)) if ls[0] == 0 else np.zeros((2 * ls[0] + 1,))
    if v == 2:
        return _cg_block(ls[0], ls[1], 0)[:, :, 0]
    if v == 3:
        (L,) = lint
        return np.einsum("abM,Mc->abc", _cg_block(ls[0], ls[1], L), _cg_block(L, ls[2], 0)[:, :, 0])
    if v == 4:
        L12, L34 = lint
        left, right = _cg_block(ls[0], ls[1], L12), _cg_block(ls[2], ls[3], L34)
        return np.einsum("abM,cdN,MN->abcd", left, right, _cg_block(L12, L34, 0)[:, :, 0])
    raise ValueError(f"rank {v} > {MAX_RANK} is not supported")


@functools.lru_cache(maxsize=None)
def real_coupling(ls: tuple[int, ...], lint: tuple[int, ...] = ()) -> np.ndarray:
    """:func:`generalised_cg` carried into the real-harmonics basis of :mod:`mlipress.equivariant`:
    ``C_real[m'] = Re sum_m C[m] prod_t conj(U_{l_t}[m'_t, m_t])`` (``A^c = U^H A^real``)."""
    C = generalised_cg(tuple(ls), tuple(lint)).astype(complex)
    for t, l in enumerate(ls):
        Uh = np.conj(complex_to_real(l))  # [real m', complex m]
        C = np.moveaxis(np.tensordot(C, Uh, axes=([t], [1])), -1, t)
    return np.ascontiguousarray(C.real)


def _lint_candidates(ls) -> list[tuple[int, ...]]:
    v = len(ls)
    if v <= 2:
        return [()] if v == 1 or ls[0] == ls[1] else []
    if v == 3:
        return [(ls[2],)] if abs(ls[0] - ls[1]) <= ls[2] <= ls[0] + ls[1] else []
    lo = max(abs(ls[0] - ls[1]), abs(ls[2] - ls[3]))
    hi = min(ls[0] + ls[1], ls[2] + ls[3])
    return [(L, L) for L in range(lo, hi + 1)]


def _symmetrised(C: np.ndarray, tuples) -> np.ndarray:
    """``C`` averaged over the permutations of its axes that map equal tuples onto each other."""
    v = len(tuples)
    perms = [p for p in itertools.permutations(range(v)) if all(tuples[p[t]] == tuples[t] for t in range(v))]
    return sum(np.transpose(C, p) for p in perms) / len(perms)


def _independent_lints(tuples) -> list[tuple[int, ...]]:
    ls = tuple(t[2] for t in tuples)
    kept, rows = [], []
    for lint in _lint_candidates(ls):
        s = _symmetrised(real_coupling(ls, lint), tuples).ravel()
        trial = np.array(rows + [s])
        if np.linalg.matrix_rank(trial, tol=1e-10 * max(1.0, np.abs(trial).max())) == len(rows) + 1:
            kept.append(lint)
            rows.append(s)
    return kept


def generate_functions(n_species: int, body_order: int, n_k: int, nmax, lmax) -> tuple[BFunction, ...]:
    """All B-functions up to ``body_order`` (rank ``body_order - 1``) for one central species.

    ``n_k``: radial basis size N_k (rank 1 uses g_1..g_N_k); ``nmax``, ``lmax``: an int (the same
    for every rank >= 2) or a sequence indexed by rank - 2 (``nmax[0]`` for rank 2, ...).
    The list is the same for every central species (as pacemaker's generator gives).
    """
    max_rank = int(body_order) - 1
    if not 1 <= max_rank <= MAX_RANK:
        raise ValueError(f"body order must be 2..{MAX_RANK + 1}, got {body_order}")

    def per_rank(value, v, what):
        seq = [value] * (max_rank - 1) if np.isscalar(value) else list(value)
        if len(seq) < max_rank - 1:
            raise ValueError(f"{what} gives {len(seq)} values; ranks 2..{max_rank} need {max_rank - 1}")
        return int(seq[v - 2])

    out = [BFunction((mu,), (n,), (0,)) for mu in range(n_species) for n in range(1, n_k + 1)]
    for v in range(2, max_rank + 1):
        nv, lv = per_rank(nmax, v, "nmax"), per_rank(lmax, v, "lmax")
        singles = [(mu, n, l) for mu in range(n_species) for n in range(1, nv + 1) for l in range(lv + 1)]
        for tuples in itertools.combinations_with_replacement(singles, v):
            ls = [t[2] for t in tuples]
            if sum(ls) % 2:
                continue
            for lint in _independent_lints(tuples):
                out.append(BFunction(*zip(*tuples), lint=lint))
    return tuple(sorted(out, key=BFunction.sort_key))
