"""How an ACE couples its atomic base to invariants: exactly (the default) or in CP form.

Both are one :class:`ProductTable`: an *expanded base* ``x`` that is linear in the atomic base
``a`` of :mod:`.evaluator`, and a table of terms over it,

    B_f = sum_{rows with seg == f} coef * prod_t x[idx[row, t]].

``exact``: ``x = [a, 1]`` and the rows are the nonzero generalised CG coefficients
``C_real[m_1..m_v]`` of :func:`~mlipress.models.ace.basis.real_coupling` (``v nnz`` products per
B-function).

``cp:R``: every coupling tensor ``C = C_real(ls, lint)`` of rank ``v >= 2`` is replaced by its
rank-``R_k = min(R, exact_rank(C))`` CP form ``C ~ sum_r prod_t f_t[:, r]``
(:func:`~mlipress.equivariant.cp.fit_cp`, seed 0, fitted once and cached on disk, frozen), so

    B_f ~ sum_r prod_t (f_t[:, r] . A_{mu_t n_t l_t}).

The projections ``q = f . A`` are where the saving is: one factor column of degree ``l`` serves
every channel ``(mu, n)`` and every B-function that uses it, so they are computed once per atom
(``x = [a, 1, q]``, ``q_l[(mu, n), s] = sum_m a[mu, n, l, m] F_l[m, s]``, one small matrix
product per degree) and each B-function costs ``v R_k`` products instead of ``v nnz``. Factor
columns are stored normalised (sign: first nonzero entry positive) and shared between couplings
and slots when equal, their norms folded into ``coef``; the exact slice-SVD form that
:func:`fit_cp` returns at full rank is mostly unit vectors, which collapse to a few columns.
At ``R >= exact_rank`` of every coupling the B-functions are the exact ones to rounding; below,
each B-function's rotation-invariance error is at most
``equivariance_bound(C, factors) prod_t ||A_t||`` (:func:`coupling_report`).

This is the TDN idea (Lin et al.) applied per B-function, not the fused CG product of
:mod:`mlipress.equivariant.tensor_product` applied recursively: the fused tensor sums all paths
``(l1, l2) -> l3`` into one output, so B-functions with different ``ls``/``lint`` would merge
into one feature and the basis would no longer be ACE's (docs/ace.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from mlipress.equivariant import cached_fit_cp, cp_error, equivariance_bound, exact_rank
from mlipress.models.ace.basis import real_coupling

__all__ = ["COUPLING_HELP", "parse_ace_coupling", "cp_rank", "ProductTable", "product_table", "coupling_factors",
           "coupling_report"]

COUPLING_HELP = ("exact (generalised Clebsch-Gordan, the default) | cp:R (each coupling in rank-R CP form, "
                 "factors fitted once and frozen; R >= 1, exact at R >= the largest exact rank)")

#: Seed of every ACE coupling's CP fit (part of the model: a file stores only ``cp:R``).
CP_SEED = 0


def parse_ace_coupling(spec) -> str:
    """The canonical form (``"exact"`` or ``"cp:R"``) of a coupling spec; ``ValueError`` naming
    the spec otherwise."""
    text = str(spec).strip().lower()
    if text == "exact":
        return text
    kind, _, rank = text.partition(":")
    if kind == "cp" and rank.strip().isdigit() and int(rank) >= 1:
        return f"cp:{int(rank)}"
    raise ValueError(f"bad ACE coupling {spec!r}: expected {COUPLING_HELP}")


def cp_rank(spec: str) -> int | None:
    """``R`` of ``"cp:R"``, None for ``"exact"``."""
    spec = parse_ace_coupling(spec)
    return None if spec == "exact" else int(spec.split(":")[1])


def coupling_factors(ls, lint, rank: int, use_disk: bool = True) -> tuple[np.ndarray, ...]:
    """CP factors ``(f_1, ..., f_v)``, ``f_t (2 l_t + 1, R_k)``, of ``real_coupling(ls, lint)`` at
    ``R_k = min(rank, exact_rank)``: the exact slice-SVD form there, ALS below (seed 0)."""
    C = real_coupling(tuple(ls), tuple(lint))
    return cached_fit_cp(C, min(int(rank), exact_rank(C)), seed=CP_SEED, name="ace-coupling", use_disk=use_disk)


def coupling_report(ace) -> list[dict]:
    """Per coupling ``(ls, lint)`` of ``ace.functions`` (rank >= 2): how many B-functions use it,
    its nonzeros, exact rank, the CP rank used, relative CP error and invariance bound (0 for
    the exact coupling)."""
    rank = cp_rank(ace.coupling)
    out = []
    for (ls, lint), count in sorted(Counter((f.ls, f.lint) for f in ace.functions if f.rank >= 2).items()):
        C = real_coupling(ls, lint)
        row = {"ls": ls, "lint": lint, "functions": count, "nnz": int(np.count_nonzero(np.abs(C) > 1e-14)),
               "exact_rank": exact_rank(C), "rank": None, "cp_error": 0.0, "bound": 0.0}
        if rank is not None:
            factors = coupling_factors(ls, lint, rank)
            row.update(rank=int(factors[0].shape[1]), cp_error=cp_error(C, factors),
                       bound=equivariance_bound(C, factors))
        out.append(row)
    return out


@dataclass(frozen=True, eq=False)
class ProductTable:
    """``B_f = sum coef * prod_t x[idx[:, t]]`` over the rows with ``seg == f``, ``x = expand(a)``.

    ``projections``: per degree with CP columns, ``(l, a_index (N_T N_rad, 2l+1), F_l (2l+1, S_l),
    offset)``: ``x[offset + c S_l + s] = sum_m a[a_index[c, m]] F_l[m, s]``. ``dx_da``: the
    same linear map as CSR rows ``(ptr, col, weight)`` over ``x`` (identity on ``a``, nothing
    for the constant), for the design matrix."""

    idx: np.ndarray  # (T, v_max) int32 into x
    coef: np.ndarray  # (T,)
    seg: np.ndarray  # (T,) int32, sorted
    n_a: int
    n_functions: int
    projections: tuple = ()
    dx_da: tuple = ()

    @property
    def n_x(self) -> int:
        return self.n_a + 1 + sum(a_index.shape[0] * F.shape[1] for _, a_index, F, _ in self.projections)

    def expand(self, a, constant: float = 1.0):
        """``x (..., n_x)`` of ``a (..., n_a)``; ``constant=0`` gives the tangent map."""
        parts = [a, jnp.full(a.shape[:-1] + (1,), constant, a.dtype)]
        for _, a_index, F, _ in self.projections:
            parts.append((a[..., a_index] @ F).reshape(a.shape[:-1] + (-1,)))
        return jnp.concatenate(parts, -1)

    def rows_to_a(self):
        """``(term, slot, a column, weight)`` arrays: ``dB_f / da_j = sum over the rows of term
        with seg f`` of ``weight * coef * prod_{t' != slot} x[idx[term, t']]``."""
        ptr, col, weight = self.dx_da
        flat = self.idx.ravel()
        counts = ptr[flat + 1] - ptr[flat]
        pair = np.repeat(np.arange(flat.size), counts)
        within = np.arange(pair.size) - np.repeat(np.cumsum(counts) - counts, counts)
        src = ptr[flat[pair]] + within
        v = self.idx.shape[1]
        return (pair // v).astype(np.int32), (pair % v).astype(np.int32), col[src].astype(np.int32), weight[src]


def _layout(ace):
    nt, nk, nrad, L = ace.n_species, ace.radial_basis.n_k, ace.nrad, ace.lmax
    nlm = (L + 1) ** 2
    n1 = nt * nk
    return n1, n1 + nt * nrad * nlm, nlm, max(f.rank for f in ace.functions)


def _identity_rows(n_a: int, extra: list[list[tuple[int, float]]] = ()) -> tuple:
    rows = [[(j, 1.0)] for j in range(n_a)] + [[]] + list(extra)
    ptr = np.cumsum([0] + [len(r) for r in rows])
    col = np.array([j for r in rows for j, _ in r], dtype=np.int64)
    weight = np.array([w for r in rows for _, w in r], dtype=np.float64)
    return ptr, col, weight


def _table(ace, terms_of, projections=(), extra_rows=()) -> ProductTable:
    """The :class:`ProductTable` whose rank >= 2 functions have the rows ``terms_of(fn)`` yields,
    ``(coef, [x index per factor])``; rank 1 reads ``a`` directly, the constant pads."""
    _, n_a, _, vmax = _layout(ace)
    idx, coef, seg = [], [], []
    for f_index, fn in enumerate(ace.functions):
        rows = ([(1.0, [fn.mus[0] * ace.radial_basis.n_k + fn.ns[0] - 1])] if fn.rank == 1 else terms_of(fn))
        for c, row in rows:
            idx.append(list(row) + [n_a] * (vmax - len(row)))
            coef.append(c)
            seg.append(f_index)
    return ProductTable(np.asarray(idx, np.int32).reshape(-1, vmax), np.asarray(coef, np.float64),
                        np.asarray(seg, np.int32), n_a, len(ace.functions), tuple(projections),
                        _identity_rows(n_a, extra_rows))


def exact_table(ace) -> ProductTable:
    """``x = [a, 1]`` and one row per nonzero real generalised CG coefficient."""
    n1, _, nlm, _ = _layout(ace)

    def terms_of(fn):
        C = real_coupling(fn.ls, fn.lint)
        base = [n1 + (mu * ace.nrad + n - 1) * nlm + l * l for mu, n, l in zip(fn.mus, fn.ns, fn.ls)]
        return [(float(C[ms]), [b + int(m) for b, m in zip(base, ms)]) for ms in zip(*np.nonzero(np.abs(C) > 1e-14))]

    return _table(ace, terms_of)


def _normalised(column: np.ndarray):
    norm = float(np.linalg.norm(column))
    if norm == 0.0:
        return 0.0, None
    lead = column[np.nonzero(np.abs(column) > 1e-12 * norm)[0][0]]
    sign = 1.0 if lead > 0 else -1.0
    return sign * norm, sign * column / norm


def cp_table(ace, rank: int) -> ProductTable:
    """``x = [a, 1, q]`` with the CP projections ``q`` (module docstring)."""
    n1, n_a, nlm, _ = _layout(ace)
    nt, nrad = ace.n_species, ace.nrad
    columns: dict[int, dict[bytes, int]] = {}  # degree -> normalised column -> its index s
    vectors: dict[int, list[np.ndarray]] = {}
    terms: dict[tuple, list[tuple[float, tuple[int, ...]]]] = {}  # (ls, lint) -> [(coef, column per slot)]
    for key in sorted({(f.ls, f.lint) for f in ace.functions if f.rank >= 2}):
        ls, _ = key
        factors = coupling_factors(*key, rank)
        rows = []
        for r in range(factors[0].shape[1]):
            scale, cols = 1.0, []
            for l, f in zip(ls, factors):
                norm, unit = _normalised(f[:, r])
                if unit is None:
                    break
                scale *= norm
                table = columns.setdefault(l, {})
                token = (np.round(unit, 12) + 0.0).tobytes()
                if token not in table:
                    table[token] = len(table)
                    vectors.setdefault(l, []).append(unit)
                cols.append(table[token])
            else:
                rows.append((scale, tuple(cols)))
        terms[key] = rows
    projections, offsets, extra_rows, offset = [], {}, [], n_a + 1
    for l in sorted(vectors):
        F = np.stack(vectors[l], axis=1)  # (2l+1, S_l)
        channels = np.arange(nt * nrad)[:, None]
        a_index = n1 + channels * nlm + l * l + np.arange(2 * l + 1)[None, :]
        projections.append((l, jnp.asarray(a_index), jnp.asarray(F), offset))
        offsets[l] = (offset, F.shape[1])
        for c in range(nt * nrad):
            for s in range(F.shape[1]):
                extra_rows.append([(int(a_index[c, m]), float(F[m, s])) for m in range(2 * l + 1) if F[m, s] != 0.0])
        offset += nt * nrad * F.shape[1]

    def terms_of(fn):
        return [(scale, [offsets[l][0] + (mu * nrad + n - 1) * offsets[l][1] + s
                         for mu, n, l, s in zip(fn.mus, fn.ns, fn.ls, cols)])
                for scale, cols in terms[(fn.ls, fn.lint)]]

    return _table(ace, terms_of, projections, extra_rows)


def product_table(ace) -> ProductTable:
    """The :class:`ProductTable` of ``ace.coupling`` (host side, once per model)."""
    rank = cp_rank(ace.coupling)
    return exact_table(ace) if rank is None else cp_table(ace, rank)
