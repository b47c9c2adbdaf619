"""Equivariant building blocks: real spherical harmonics, Clebsch-Gordan coefficients, Wigner-D
matrices, and the Clebsch-Gordan tensor product in exact and CP-decomposed form.

API and conventions (stable: other modules code against them)
--------------------------------------------------------------
Layout. A feature of all degrees ``0..L`` is a vector of length ``(L+1)^2`` on the last axis,
degree ``l``, order ``m = -l..l`` at index ``l*l + l + m`` (:func:`sh_index`; the blocks are
:func:`degree_slices`). Everything here uses this one real basis.

``spherical_harmonics(lmax, vectors) -> (..., (lmax+1)^2)`` (JAX, differentiable, jit-able).
    Real harmonics of the directions of ``vectors (..., 3)``, normalised inside; orthonormal on
    the sphere (``Y_00 = 1 / sqrt(4 pi)``), **no Condon-Shortley phase**:
    ``Y_lm ~ P_l^m(cos t) cos(m phi)`` for ``m > 0``, ``~ sin(|m| phi)`` for ``m < 0``, so
    ``(Y_1,-1, Y_10, Y_11) = sqrt(3 / 4 pi) (y, z, x) / r``. In terms of the complex
    Condon-Shortley ``Y^m``: ``Y_l,m = (Y^-m + (-1)^m Y^m) / sqrt2``,
    ``Y_l,-m = i (Y^-m - (-1)^m Y^m) / sqrt2`` (``m > 0``), i.e. ``Y_real = U Y^complex`` with
    ``U = complex_to_real(l)``. (sympy's ``Znm`` / ``real_gaunt`` basis is ``(-1)^m`` times
    this one.) A zero vector (padding) gives ``Y_00`` and zeros, with finite gradients.

``clebsch_gordan(l1, l2, l3) -> (2l1+1, 2l2+1, 2l3+1)`` (NumPy float64, cached).
    Real coupling coefficients ``C[m1, m2, m3]``: ``(a (x) b)_{m3} = sum C a_{m1} b_{m2}`` is
    equivariant, ``C`` is orthonormal over ``(m1, m2)``, zero outside the triangle
    ``|l1 - l2| <= l3 <= l1 + l2``. Phase: ``C = Re(T)`` for even ``l1 + l2 + l3`` and
    ``C = Im(T)`` for odd, with ``T`` the complex CG carried through ``U`` (see
    :mod:`.clebsch_gordan`). For one direction, ``sum C Y_l1 Y_l2 = k Y_l3`` with
    ``k = sqrt((2l1+1)(2l2+1) / (4 pi (2l3+1))) <l1 0 l2 0 | l3 0>`` (zero for odd paths such
    as the cross product ``1 x 1 -> 1``, which is still a valid equivariant coupling). The
    signs follow Condon-Shortley's complex CG: ``clebsch_gordan(1, 1, 0)`` is
    ``-identity / sqrt3`` (a minus dot product) and ``clebsch_gordan(l, 0, l)`` the identity.
``real_gaunt(l1, l2, l3)``: ``int Y_l1m1 Y_l2m2 Y_l3m3 = k C``.
``complex_clebsch_gordan(l1, m1, l2, m2, l3, m3)``, ``wigner_3j(l1, l2, l3, m1, m2, m3)``:
    the complex scalars (Condon-Shortley), exact rational arithmetic.

``wigner_D(l, R) -> (2l+1, 2l+1)``, ``block_wigner_D(L, R)`` (NumPy): the real Wigner-D of a
    rotation matrix ``R`` in this basis, ``Y_l(R r) = D Y_l(r)``; orthogonal; block diagonal
    over degrees for the second.

Tensor products (:mod:`.tensor_product`, :mod:`.cp`, :mod:`.coupling`)
-----------------------------------------------------------------------
``fused_cg_tensor(L, L_out=None, path_weights=None) -> ((L+1)^2, (L+1)^2, (L_out+1)^2)``: all
    CG paths ``(l1, l2) -> l3`` (:func:`cg_paths`) in one tensor, each block ``clebsch_gordan``.
``make_coupling(spec, L, L_out=None)`` with ``spec`` ``"dense"``, ``"sparse"`` (nonzero
    entries), ``"blocks"`` (nonzero degree blocks) or ``"cp:R"``:
    a frozen pytree ``coupling`` with ``coupling(x, y)`` (``x (..., n1)``, ``y (..., n2)`` ->
    ``(..., n3)``), ``coupling.mix(x, y, W)`` (channels ``x (..., U, n1)``, ``y (..., V, n2)``,
    one shared ``W (U, V, W_out)`` for all paths: path-weight sharing), ``.tensor()``,
    ``.flops_per_pair``. ``cp:R`` is the rank-R CP form of Lin et al., "Tensor Decomposition
    Networks" (:func:`cp_coupling`): factors fitted once by ALS (seed 0), cached on disk
    (:func:`~mlipress.equivariant.cp.cache_dir`), exact (to rounding) at ``R >= exact_rank``.
``fit_cp(T, R, seed)`` (``cached_fit_cp``: fitted once, kept on disk), ``exact_rank(T)``, ``cp_error``, ``equivariance_bound`` for a coupling
    tensor of any order >= 2 (a CG path block, ACE's generalised CG); ``equivariance_error``
    measures a coupling's error under random rotations.
"""

from mlipress.equivariant.clebsch_gordan import (
    clebsch_gordan,
    complex_clebsch_gordan,
    complex_to_real,
    real_gaunt,
    wigner_3j,
)
from mlipress.equivariant.coupling import COUPLING_HELP, make_coupling, parse_coupling
from mlipress.equivariant.cp import (
    cached_fit_cp,
    cp_coupling,
    cp_error,
    cp_factors,
    equivariance_bound,
    equivariance_error,
    exact_rank,
    fit_cp,
)
from mlipress.equivariant.harmonics import (
    block_wigner_D,
    degree_slices,
    num_harmonics,
    sh_index,
    spherical_harmonics,
    wigner_D,
)
from mlipress.equivariant.tensor_product import (
    BlockSparseCoupling,
    CPCoupling,
    DenseCoupling,
    SparseCoupling,
    block_sparse_coupling,
    cg_paths,
    dense_coupling,
    fused_cg_tensor,
    sparse_coupling,
)

__all__ = [
    "spherical_harmonics",
    "num_harmonics",
    "sh_index",
    "degree_slices",
    "wigner_D",
    "block_wigner_D",
    "clebsch_gordan",
    "complex_clebsch_gordan",
    "complex_to_real",
    "real_gaunt",
    "wigner_3j",
    "cg_paths",
    "fused_cg_tensor",
    "DenseCoupling",
    "SparseCoupling",
    "BlockSparseCoupling",
    "CPCoupling",
    "dense_coupling",
    "sparse_coupling",
    "block_sparse_coupling",
    "fit_cp",
    "exact_rank",
    "cp_error",
    "equivariance_bound",
    "equivariance_error",
    "cached_fit_cp",
    "cp_factors",
    "cp_coupling",
    "COUPLING_HELP",
    "parse_coupling",
    "make_coupling",
]
