"""Generation of the MTP moment basis (MLIP's ``alpha_*`` arrays) for a given level.

Background (Shapeev 2016; Novikov et al.; REFERENCE.md section 1). A moment tensor is
``M_{mu,nu} = sum_j f_mu(r_ij) u_ij^{(x) nu}`` (u the unit vector); its *level* is
``lev M_{mu,nu} = 2 + 4 mu + nu``. A basis function B_alpha is a full contraction of a product
of moment tensors to a scalar; its level is the sum of the levels of its factors, and an MTP of
level ``L`` contains every B_alpha with ``lev B_alpha <= L``.

A full contraction of symmetric tensors is a multigraph: one vertex per factor (labelled by
(mu, nu), with degree nu) and one edge per contracted index pair. Self-loops are excluded
(a trace of M_{mu,nu} is M_{mu,nu-2} because |u| = 1), disconnected graphs are products of
scalars. Matching MLIP's templates, the generator enumerates such graphs up to isomorphism with
at most 4 factors, mu <= 5 and nu <= 10 (these three caps reproduce MLIP's numbers of scalar
basis functions for every level 2..28).

Each graph is then evaluated by a binary tree of pairwise contractions whose intermediate
tensors are stored component-wise, like MLIP does: the free indices of one factor form a
symmetric *group* (components = multisets of x, y, z), and a tensor's components are products
of its groups' components. Every tree node becomes one block of entries of the moment array
``M`` and one block of ``alpha_index_times`` rows ``(i, j, mult, k)``: ``M[k] += mult*M[i]*M[j]``
where ``mult`` counts the contracted index assignments that give the same pair (i, j).
Intermediates shared between basis functions (equal open subgraphs) are built once.

MLIP's choices, read off its templates (levels 2..26) and reproduced here:

* tree: four factors that fall into two connected pairs cheaply are a product of two pair
  tensors (``_Builder._pair_split``); otherwise factors are peeled one at a time from the root
  (fewest indices left to contract, then (mu, nu)); ties between equal factors follow the
  vertex order of MLIP's representative of the graph: the relabelling whose edge multiplicities
  over the vertex pairs (0,1), (0,2), ..., (2,3) are lexicographically smallest (``_mlip_form``);
* symmetric storage (only components with p <= q of two swapped groups): a pair of equal
  factors with equal free ranks, and a factor contracted equally into both groups of such a
  pair (the pair's remaining groups stay symmetric). Other symmetries are not exploited;
* a square ``X * X`` merges the rows (i, j) and (j, i).

Agreement with MLIP: the set of basis functions (hence alpha_scalar_moments), the basic moments
(same rows, same order), radial_funcs_count, alpha_moments_count and alpha_index_times_count
agree for every level 2..28 (levels 2-6 give identical arrays; from 8 on the same numbers of
entries and rows, partly in another order; the basis functions are exactly MLIP's, checked in
tests/test_basis.py).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

from mlipress.models.mtp.model import MTP, MomentBasis, RadialBasis

MAX_FACTORS = 4  # MLIP's templates contain products of at most 4 moment tensors
MAX_MU = 5  # ... of radial functions mu <= 5 (N_f <= 6)
MAX_NU = 10  # ... and of tensor ranks nu <= 10
MIN_LEVEL, MAX_LEVEL = 2, 28


def tensor_level(mu: int, nu: int) -> int:
    """``lev M_{mu,nu} = 2 + 4 mu + nu`` (the MTP level rule)."""
    return 2 + 4 * mu + nu


# --------------------------------------------------------------------------------------------
# components of symmetric index groups


@functools.lru_cache(maxsize=None)
def multi_indices(rank: int) -> tuple[tuple[int, int, int], ...]:
    """Exponent triples (a, b, c), a+b+c = rank, in MLIP order (lexicographically descending)."""
    return tuple((a, b, rank - a - b) for a in range(rank, -1, -1) for b in range(rank - a, -1, -1))


@functools.lru_cache(maxsize=None)
def _multinomial(c: tuple[int, int, int]) -> int:
    return math.factorial(sum(c)) // (math.factorial(c[0]) * math.factorial(c[1]) * math.factorial(c[2]))


def _add(p, q):
    return (p[0] + q[0], p[1] + q[1], p[2] + q[2])


def _first_index(c) -> tuple[int, int, int]:
    """The smallest Cartesian index (x < y < z) of a multiset, as a unit triple."""
    return (1, 0, 0) if c[0] else ((0, 1, 0) if c[1] else (0, 0, 1))


# --------------------------------------------------------------------------------------------
# contraction graphs


def _canonical(labels, edges, free=None):
    """Canonical form of a (possibly open) labelled multigraph under label-preserving relabelling.

    labels: tuple of (mu, nu) per vertex; edges: dict {(a, b): count} with a < b; free: free
    index count per vertex (None for closed graphs). Returns (key, perm) with perm[old] = new.
    """
    n = len(labels)
    free = free or (0,) * n
    order = sorted(range(n), key=lambda i: (labels[i], free[i]))
    target = [(labels[i], free[i]) for i in order]
    best = None
    groups = itertools.groupby(range(n), key=lambda i: target[i])
    blocks = [list(g) for _, g in groups]
    members = [[i for i in range(n) if (labels[i], free[i]) == target[b[0]]] for b in blocks]
    for choice in itertools.product(*[itertools.permutations(m) for m in members]):
        perm = [0] * n
        for block, chosen in zip(blocks, choice):
            for new, old in zip(block, chosen):
                perm[old] = new
        ee = tuple(sorted((min(perm[a], perm[b]), max(perm[a], perm[b]), m) for (a, b), m in edges.items() if m))
        if best is None or ee < best[0]:
            best = (ee, perm)
    return (tuple(target), best[0]), best[1]


def _graphs(labels: tuple) -> list[dict]:
    """All contraction multigraphs (no self-loops) of a sorted multiset of tensors, one per class."""
    n = len(labels)
    pairs = list(itertools.combinations(range(n), 2))
    seen, out = set(), []
    deg = [nu for _, nu in labels]

    def rec(p, edges):
        if p == len(pairs):
            if not any(deg):
                key, _ = _canonical(labels, edges)
                if key not in seen:
                    seen.add(key)
                    out.append(dict(edges))
            return
        a, b = pairs[p]
        for m in range(min(deg[a], deg[b]), -1, -1):
            deg[a] -= m
            deg[b] -= m
            edges[(a, b)] = m
            # prune: vertex a must be saturated by the remaining pairs
            total = sum(deg)
            if 2 * deg[a] <= total and 2 * deg[b] <= total:
                rec(p + 1, edges)
            deg[a] += m
            deg[b] += m
        del edges[(a, b)]

    rec(0, {})
    return out


def enumerate_scalars(level: int) -> list[tuple[tuple, dict]]:
    """All basis functions of an MTP of this level: (labels, edges) contraction graphs."""
    tensors = [
        (mu, nu)
        for mu in range(MAX_MU + 1)
        for nu in range(MAX_NU + 1)
        if tensor_level(mu, nu) <= level
    ]
    levels = [tensor_level(*t) for t in tensors]
    tail_min = [min(levels[i:]) for i in range(len(levels))]

    def multisets(n, start, budget):
        """Sorted n-multisets of tensors[start:] (as index tuples, lexicographic) within budget."""
        if n == 0:
            yield ()
            return
        for i in range(start, len(tensors)):
            if levels[i] + (n - 1) * tail_min[i] <= budget:
                for tail in multisets(n - 1, i, budget - levels[i]):
                    yield (i,) + tail

    result = []
    for n in range(1, MAX_FACTORS + 1):
        for idx in multisets(n, 0, level):
            labels = tuple(tensors[i] for i in idx)
            for edges in _graphs(labels):
                result.append((labels, edges))
    return result


# --------------------------------------------------------------------------------------------
# tensors stored component-wise


@dataclass
class _Tensor:
    """A node of the evaluation tree: ``groups`` = list of (slots, leaves) of its free indices."""

    key: tuple
    groups: tuple  # tuple of (n_slots, frozenset of leaf ids)
    leaves: int
    sort_key: tuple
    left: "_Tensor | None" = None
    right: "_Tensor | None" = None
    n: tuple = ()  # contraction counts between left groups and right groups
    sym: tuple | None = None  # (g, h): symmetric under swapping groups g and h, stored with p <= q
    offset: int = -1  # first index in M

    @property
    def components(self) -> list[tuple]:
        comps = list(itertools.product(*[multi_indices(s) for s, _ in self.groups]))
        if self.sym:  # symmetric under swapping two groups: keep p <= q only
            g, h = self.sym
            order = {c: i for i, c in enumerate(multi_indices(self.groups[g][0]))}
            comps = [c for c in comps if order[c[g]] <= order[c[h]]]
        return comps

    def lookup(self) -> dict:
        """Component tuple -> local index (both orders for a symmetric tensor)."""
        table = {c: i for i, c in enumerate(self.components)}
        if self.sym:
            g, h = self.sym
            for c, i in list(table.items()):
                swapped = list(c)
                swapped[g], swapped[h] = c[h], c[g]
                table[tuple(swapped)] = i
        return table

    @property
    def rank(self) -> int:
        return sum(s for s, _ in self.groups)


def _mlip_form(labels: tuple, edges: dict) -> dict:
    """MLIP's representative of a closed contraction graph (labels sorted by (mu, nu)).

    Among the relabellings that keep the labels in place, the one whose vector of edge
    multiplicities over the vertex pairs (0,1), (0,2), ..., (n-2,n-1) is lexicographically
    smallest. Its vertex order breaks the ties when choosing the evaluation tree.
    """
    n = len(labels)
    pairs = list(itertools.combinations(range(n), 2))
    classes = [list(g) for _, g in itertools.groupby(range(n), key=lambda i: labels[i])]
    best = None
    for choice in itertools.product(*[itertools.permutations(c) for c in classes]):
        p = [v for block in choice for v in block]  # new vertex i is old vertex p[i]
        vec = tuple(edges.get((min(p[a], p[b]), max(p[a], p[b])), 0) for a, b in pairs)
        if best is None or vec < best:
            best = vec
    return {pq: m for pq, m in zip(pairs, best) if m}


def _induced(labels, edges, verts):
    """Open subgraph on ``verts``: local labels, local edges, free index count per vertex."""
    idx = {v: i for i, v in enumerate(verts)}
    sub_labels = tuple(labels[v] for v in verts)
    sub_edges = {}
    deg = [0] * len(verts)
    for (a, b), m in edges.items():
        if m and a in idx and b in idx:
            p, q = sorted((idx[a], idx[b]))
            sub_edges[(p, q)] = m
            deg[p] += m
            deg[q] += m
    free = tuple(nu - d for (_, nu), d in zip(sub_labels, deg))
    return sub_labels, sub_edges, free


class _Builder:
    """Builds tensors for contraction graphs, sharing identical intermediates.

    Every intermediate tensor is the value of an open subgraph of a basis function's graph;
    ``graphs`` maps the canonical form of that open graph to the tensor built first for it and
    to the leaf of that tensor holding each canonical vertex, so later basis functions reuse it.
    """

    def __init__(self):
        self.tensors: dict = {}
        self.graphs: dict = {}
        self.order = 0

    def basic(self, mu, nu):
        key = ("M", mu, nu)
        if key not in self.tensors:
            self.tensors[key] = _Tensor(key, ((nu, frozenset([0])),) if nu else (), 1, (0, mu, nu))
        return self.tensors[key]

    def _register(self, t: _Tensor):
        if t.key not in self.tensors:
            self.order += 1
            t.sort_key = (t.leaves, self.order)
            self.tensors[t.key] = t
        return self.tensors[t.key]

    def contract(self, left: _Tensor, right: _Tensor, n, sym=None):
        """Tensor obtained by contracting ``n[g][h]`` indices of left group g with right group h.

        Leaves of ``right`` are renumbered after those of ``left``. ``sym``: pair of output groups
        the result is symmetric under (stored with p <= q).
        """
        groups = []
        for gi, (s, lv) in enumerate(left.groups):
            rest = s - sum(n[gi])
            if rest:
                groups.append((rest, lv))
        for hi, (s, lv) in enumerate(right.groups):
            rest = s - sum(row[hi] for row in n)
            if rest:
                groups.append((rest, frozenset(x + left.leaves for x in lv)))
        key = (left.key, right.key, tuple(map(tuple, n)), sym, tuple(s for s, _ in groups))
        t = _Tensor(key, tuple(groups), left.leaves + right.leaves, (), left, right, tuple(map(tuple, n)), sym)
        return self._register(t)

    # --- tree choice ------------------------------------------------------------------------

    def scalar(self, labels, edges):
        """Tensor evaluating a closed contraction graph (a basis function), chosen like MLIP.

        The graph is first put in MLIP's form (``_mlip_form``). Four factors fall into two
        connected pairs when that cuts fewer index pairs than the smallest rank
        (``_pair_split``); otherwise factors are peeled one at a time, the root first: the one
        with the fewest indices still to contract (nu minus the indices already contracted with
        peeled factors), then by (mu, nu), then by vertex order; the last two form the innermost
        pair.
        """
        n = len(labels)
        edges = _mlip_form(labels, edges)
        if n == 4:
            split = self._pair_split(labels, edges)
            if split is not None:
                return self._pair_product(labels, edges, split)
        if n == 1:
            return self.basic(*labels[0])
        rest = list(range(n))
        done = [0] * n
        peeled = []
        while len(rest) > 2:
            first = min(rest, key=lambda i: (labels[i][1] - done[i], labels[i][0], labels[i][1], i))
            peeled.append(first)
            rest.remove(first)
            for (a, b), m in edges.items():
                if first in (a, b):
                    done[b if a == first else a] += m
        verts = tuple(rest)
        t, vmap = self._node(labels, edges, verts)
        for v in reversed(peeled):
            verts = (v,) + verts
            t, vmap = self._node(labels, edges, verts, (t, vmap))
        return t

    def _node(self, labels, edges, verts, inner=None):
        """(tensor, vertex -> leaf id) of the open subgraph on ``verts``.

        ``verts`` is a pair (the innermost node) or ``(v,) + verts_of(inner)``: the basic tensor
        of v contracted with ``inner``. A subgraph seen before reuses its tensor.
        """
        sub_labels, sub_edges, free = _induced(labels, edges, verts)
        key, perm = _canonical(sub_labels, sub_edges, free)
        hit = self.graphs.get(key)
        if hit is not None:
            t, leaf_of = hit
            return t, {v: leaf_of[perm[i]] for i, v in enumerate(verts)}
        if inner is None:
            a, b = sorted(range(2), key=lambda i: sub_labels[i])
            A, B = self.basic(*sub_labels[a]), self.basic(*sub_labels[b])
            m = sub_edges.get((0, 1), 0)
            nmat = [[m for _ in B.groups] for _ in A.groups]
            sym = (0, 1) if sub_labels[a] == sub_labels[b] and free[a] == free[b] > 0 else None
            t = self.contract(A, B, nmat, sym)
            vmap = {verts[a]: 0, verts[b]: 1}
        else:
            T, imap = inner
            v = verts[0]
            A = self.basic(*labels[v])
            nmat = []
            if A.groups:
                row = []
                for _, lv in T.groups:
                    row.append(sum(edges.get((min(v, w), max(v, w)), 0) for w in verts[1:] if imap[w] in lv))
                nmat = [row]
            sym = None
            if T.sym and nmat and nmat[0][T.sym[0]] == nmat[0][T.sym[1]]:
                # contracting equally into both groups of a symmetric pair keeps that symmetry
                g, h = T.sym
                if T.groups[g][0] > nmat[0][g]:
                    a_rest = 1 if A.groups[0][0] > sum(nmat[0]) else 0
                    kept = [x for x, (s, _) in enumerate(T.groups) if s > nmat[0][x]]
                    sym = (a_rest + kept.index(g), a_rest + kept.index(h))
            t = self.contract(A, T, nmat, sym)
            vmap = {v: 0}
            vmap.update({w: imap[w] + 1 for w in verts[1:]})
        self.graphs[key] = (t, {perm[i]: vmap[w] for i, w in enumerate(verts)})
        return t, vmap

    def _pair_split(self, labels, edges):
        """Split of 4 factors into two pairs when it is cheaper than peeling one factor."""
        nu_first = min(nu for _, nu in labels)
        best = None
        for a, b, c, d in ((0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 1, 2)):
            if not edges.get((a, b), 0) or not edges.get((c, d), 0):
                continue
            cut = sum(m for (p, q), m in edges.items() if ({p, q} & {a, b}) and ({p, q} & {c, d}))
            if cut < nu_first and (best is None or cut < best[0]):
                best = (cut, (a, b), (c, d))
        return None if best is None else best[1:]

    def _pair_product(self, labels, edges, split):
        halves = [self._node(labels, edges, pair) for pair in split]
        halves.sort(key=lambda h: h[0].sort_key)
        (X, xmap), (Y, ymap) = halves
        nmat = []
        for _, lvx in X.groups:
            row = []
            for _, lvy in Y.groups:
                cnt = 0
                for v, lx in xmap.items():
                    for w, ly in ymap.items():
                        if lx in lvx and ly in lvy:
                            cnt += edges.get((min(v, w), max(v, w)), 0)
                row.append(cnt)
            nmat.append(row)
        return self.contract(X, Y, nmat)


# --------------------------------------------------------------------------------------------
# rows of alpha_index_times


def _rows(t: _Tensor, index) -> list[tuple[int, int, int, int]]:
    """alpha_index_times rows computing every component of the derived tensor ``t``."""
    L, R = t.left, t.right
    n = t.n
    lg, rg = len(L.groups), len(R.groups)
    lfree = [s - sum(n[g]) if n else s for g, (s, _) in enumerate(L.groups)]
    rfree = [s - (sum(row[h] for row in n) if n else 0) for h, (s, _) in enumerate(R.groups)]
    pairs = [(g, h, n[g][h]) for g in range(lg) for h in range(rg) if n and n[g][h]]
    lcomp = L.lookup()
    rcomp = R.lookup()
    out_slots = [(0, g) for g in range(lg) if lfree[g]] + [(1, h) for h in range(rg) if rfree[h]]
    rows = []
    for k, comp in enumerate(t.components):
        frees = list(comp)
        lpart = [(0, 0, 0)] * lg
        rpart = [(0, 0, 0)] * rg
        for (side, g), f in zip(out_slots, frees):
            if side == 0:
                lpart[g] = f
            else:
                rpart[g] = f
        acc: dict = {}
        for choice in itertools.product(*[multi_indices(m) for _, _, m in pairs]):
            lc, rc, w = list(lpart), list(rpart), 1
            for (g, h, _), c in zip(pairs, choice):
                lc[g] = _add(lc[g], c)
                rc[h] = _add(rc[h], c)
                w *= _multinomial(c)
            key = (L.offset + lcomp[tuple(lc)], R.offset + rcomp[tuple(rc)])
            if L is R:  # a square: M[i]*M[j] and M[j]*M[i] form one row
                key = (min(key), max(key))
            acc[key] = acc.get(key, 0) + w
        for (i, j), w in sorted(acc.items()):
            rows.append((i, j, w, t.offset + k))
    return rows


# --------------------------------------------------------------------------------------------
# public API


@functools.lru_cache(maxsize=None)
def _generate(level: int):
    if not isinstance(level, int) or level % 2 or not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(f"MTP level must be an even integer in [{MIN_LEVEL}, {MAX_LEVEL}], got {level!r}")
    builder = _Builder()
    scalars = []
    for labels, edges in enumerate_scalars(level):
        scalars.append(builder.scalar(labels, edges))
    used_basic = set()

    def collect(t):
        if t.left is None:
            used_basic.add(t.key)
        else:
            collect(t.left)
            collect(t.right)

    for t in scalars:
        collect(t)
    basics = sorted(used_basic, key=lambda k: (k[1], k[2]))
    basic_rows = []
    for key in basics:
        t = builder.tensors[key]
        t.offset = len(basic_rows)
        basic_rows.extend((key[1],) + c for c in multi_indices(key[2]))
    derived = sorted((t for t in builder.tensors.values() if t.left is not None), key=lambda t: t.sort_key)
    # keep only tensors reachable from scalars
    needed = set()

    def mark(t):
        if id(t) in needed:
            return
        needed.add(id(t))
        if t.left is not None:
            mark(t.left)
            mark(t.right)

    for t in scalars:
        mark(t)
    count = len(basic_rows)
    times = []
    for t in derived:
        if id(t) not in needed:
            continue
        t.offset = count
        count += len(t.components)
        times.extend(_rows(t, None))
    basic_scalars = [t.offset for t in scalars if t.left is None]
    derived_scalars = sorted(t.offset for t in scalars if t.left is not None)
    mapping = sorted(basic_scalars) + derived_scalars
    basis = MomentBasis(np.array(basic_rows), np.array(times, dtype=np.int64).reshape(-1, 4), np.array(mapping), count)
    nf = int(basis.basic[:, 0].max()) + 1
    return basis, nf


def generate_moment_basis(level: int) -> tuple[MomentBasis, int]:
    """MTP moment basis of an even ``level`` in [2, 28] and its ``radial_funcs_count``.

    Basis functions: all full contractions of products of at most 4 moment tensors
    ``M_{mu,nu}`` (mu <= 5, nu <= 10) with ``sum (2 + 4 mu + nu) <= level``, as in MLIP.
    Cached per level; the returned arrays must not be modified.
    """
    return _generate(level)


def untrained_mtp(
    level: int,
    species_count: int,
    min_dist: float,
    max_dist: float,
    radial_basis_size: int = 8,
    kind: str = "RBChebyshev",
) -> MTP:
    """An untrained :class:`MTP` (no coefficients) of the given level, like MLIP's templates."""
    basis, nf = generate_moment_basis(level)
    radial = RadialBasis(float(min_dist), float(max_dist), int(radial_basis_size), kind)
    return MTP(species_count=int(species_count), radial_basis=radial, radial_funcs_count=nf, moments=basis)
