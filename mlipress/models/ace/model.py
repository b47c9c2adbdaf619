"""The Atomic Cluster Expansion as a value: species, radial basis, B-basis and coefficients.

An :class:`ACE` holds what mlipress writes to (and reads from) pacemaker's B-basis ``.yaml``
with the linear embedding (``ndensity 1``, ``F(rho) = rho``; docs/ace.md): per-pair radial
matrices ``Chat_p`` (P, N_k, N_rad (L+1)) (:mod:`.radial`), the B-functions (:mod:`.basis`),
``coeffs`` (N_T, F) (``c~`` of eq. (16), one row per central species) and per-species energies
``species`` (N_T,). It is the second implementation of the model contract
(:mod:`mlipress.models.base`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mlipress.models.ace.basis import BFunction, generate_functions
from mlipress.models.ace.coupling import parse_ace_coupling
from mlipress.models.ace.radial import PairDense, PairMatrixFactorized, RadialBasisSpec
from mlipress.models.base import Params, params_class

__all__ = ["ACE", "ACEParams", "untrained_ace"]


@params_class
class ACEParams(Params):
    """Coefficients of an ACE: ``radial`` (:class:`PairDense` or :class:`PairMatrixFactorized`
    of the (P, N_k, N_rad (L+1)) matrices), ``species`` (N_T,), ``coeffs`` (N_T, F), ``scaling``
    (a factor of every R_nl, not optimised; written folded into the radial coefficients)."""

    LINEAR = ("species", "coeffs")
    FROZEN = ("scaling",)
    OFFSETS = ("species",)

    radial: object
    species: jax.Array
    coeffs: jax.Array
    scaling: jax.Array


_LAYERS = {"dense": PairDense, "mf": PairMatrixFactorized, "rmf": PairMatrixFactorized, "mfra": PairMatrixFactorized}


@dataclass(frozen=True, eq=False)
class ACE:
    """An ACE potential; untrained when ``coeffs`` is ``None``. ``elements``: the element of each
    species index (the ``.yaml`` names species by element). ``coupling``: how the B-functions
    couple the atomic base, ``"exact"`` (generalised CG) or ``"cp:R"`` (:mod:`.coupling`)."""

    elements: tuple[str, ...]
    radial_basis: RadialBasisSpec
    nrad: int
    lmax: int
    functions: tuple[BFunction, ...]
    radial_coeffs: np.ndarray | None = None
    species_coeffs: np.ndarray | None = None
    coeffs: np.ndarray | None = None
    coupling: str = "exact"

    #: ``LossWeights.coefficient_l2`` the command line fits an ACE with unless told otherwise:
    #: with hundreds of B-functions on a few hundred configurations the unregularised exact
    #: solve fits the training set and extrapolates by eV/atom (docs/ace.md, "Regularisation").
    DEFAULT_COEFFICIENT_L2: ClassVar[float] = 1e-8

    def __post_init__(self):
        object.__setattr__(self, "coupling", parse_ace_coupling(self.coupling))
        object.__setattr__(self, "elements", tuple(self.elements))
        object.__setattr__(self, "functions", tuple(self.functions))
        nt = len(self.elements)
        if nt < 1 or len(set(self.elements)) != nt:
            raise ValueError(f"ACE needs distinct elements, got {self.elements}")
        for fn in self.functions:
            if max(fn.mus) >= nt:
                raise ValueError(f"B-function {fn} uses species {max(fn.mus)} of {nt}")
            if fn.rank == 1 and fn.ns[0] > self.radial_basis.n_k:
                raise ValueError(f"B-function {fn}: n > N_k = {self.radial_basis.n_k}")
            if fn.rank > 1 and (max(fn.ns) > self.nrad or max(fn.ls) > self.lmax):
                raise ValueError(f"B-function {fn}: n > N_rad = {self.nrad} or l > L = {self.lmax}")
        expected = {"radial_coeffs": self.radial_shape, "species_coeffs": (nt,), "coeffs": (nt, len(self.functions))}
        for name, shape in expected.items():
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64)
                if value.shape != shape:
                    raise ValueError(f"{name} has shape {value.shape}, expected {shape}")
                object.__setattr__(self, name, value)

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_species(self) -> int:
        return len(self.elements)

    @property
    def cutoff(self) -> float:
        return self.radial_basis.cutoff

    @property
    def trained(self) -> bool:
        return self.coeffs is not None and self.radial_coeffs is not None

    @property
    def radial_shape(self) -> tuple[int, int, int]:
        """``(P, N_k, N_rad (L+1))``: the paper's per-pair matrices, P unordered species pairs."""
        nt = self.n_species
        return (nt * (nt + 1) // 2, self.radial_basis.n_k, self.nrad * (self.lmax + 1))

    def num_params(self) -> dict[str, int]:
        counts = {"radial": int(np.prod(self.radial_shape)), "species": self.n_species,
                  "coeffs": self.n_species * len(self.functions)}
        counts["total"] = sum(counts.values())
        return counts

    # -- the model contract ----------------------------------------------------------------
    def structure_key(self):
        return ("ACE", self.elements, self.radial_basis, self.nrad, self.lmax, self.functions, self.coupling)

    def init(self, seed: int = 0) -> ACEParams:
        """pacemaker's start (``c_nlk = delta_nk``) plus N(0, 0.1^2) noise from ``seed``; zero
        linear coefficients, scaling 1."""
        P, nk, m = self.radial_shape
        C = np.zeros((P, nk, self.nrad, self.lmax + 1))
        for n in range(min(nk, self.nrad)):
            C[:, n, n, :] = 1.0
        C = C.reshape(P, nk, m) + 0.1 * np.random.default_rng(seed).standard_normal((P, nk, m))
        return ACEParams(PairDense.from_dense(C), jnp.zeros(self.n_species),
                         jnp.zeros((self.n_species, len(self.functions))), jnp.asarray(1.0))

    def params(self) -> ACEParams:
        if not self.trained:
            raise ValueError("the ACE potential is untrained (no coefficients)")
        species = self.species_coeffs if self.species_coeffs is not None else np.zeros(self.n_species)
        return ACEParams(PairDense.from_dense(self.radial_coeffs), jnp.asarray(species), jnp.asarray(self.coeffs),
                         jnp.asarray(1.0))

    def with_params(self, params: ACEParams) -> "ACE":
        """This ACE carrying ``params`` (dense radial matrices, the scaling folded in)."""
        C = float(params.scaling) * np.asarray(params.radial.dense(), dtype=np.float64)
        return replace(self, radial_coeffs=C, species_coeffs=np.asarray(params.species, dtype=np.float64),
                       coeffs=np.asarray(params.coeffs, dtype=np.float64))

    def with_coupling(self, coupling: str) -> "ACE":
        """The same potential (basis and coefficients) with another coupling of its B-functions."""
        return replace(self, coupling=coupling)

    def radial_layer(self, spec):
        """The radial layer class of a spec: ``dense``, ``mf:R`` and ``rmf:R`` (per-pair ``U_p V_p^T``;
        R-MF on the product of the pairs' fixed-rank manifolds)."""
        from mlipress.models.layers import parse_radial_spec

        spec = parse_radial_spec(spec) if isinstance(spec, str) else spec
        if spec.kind not in _LAYERS:
            raise ValueError(f"ACE radial parametrisations are dense, mf:R, rmf:R and mfra:RMAX (per-pair U V^T, section II.F); "
                             f"{spec.kind!r} works on one matrix of the MTP's layout")
        return _LAYERS[spec.kind]

    def efs_fn(self):
        from mlipress.models.ace.evaluator import make_efs_fn

        return make_efs_fn(self)

    def features_fn(self):
        from mlipress.models.ace.evaluator import make_features_fn

        return make_features_fn(self)

    def penalty(self, params):
        return jnp.zeros(())

    def normalise(self, params):
        return params

    def write(self, path) -> None:
        """pacemaker's B-basis ``.yaml`` (:func:`mlipress.io.ace.write_ace`)."""
        from mlipress.io.ace import write_ace

        write_ace(self, path)

    @classmethod
    def read(cls, path) -> "ACE":
        from mlipress.io.ace import read_ace

        return read_ace(path)


def untrained_ace(elements, body_order: int = 4, n_k: int = 9, nrad: int = 3, lmax: int = 2, cutoff: float = 5.0,
                  nmax=None, lmax_by_rank=None, lam: float = 5.25, dcut: float = 0.01, coupling: str = "exact",
                  radbase: str = "ChebExpCos") -> ACE:
    """A fresh ACE: radial basis ``radbase`` (pacemaker's ``ChebExpCos`` or ``SBessel``,
    :mod:`.radial`) of N_k functions, radial functions up to ``nrad``, ``lmax``;
    B-functions up to ``body_order`` with per-rank limits ``nmax`` / ``lmax_by_rank`` (default:
    ``nrad`` / ``lmax`` at every rank >= 2; see :func:`mlipress.models.ace.basis.generate_functions`);
    ``coupling``: ``"exact"`` or ``"cp:R"`` (:mod:`mlipress.models.ace.coupling`)."""
    elements = tuple(elements)
    functions = generate_functions(len(elements), body_order, n_k, nrad if nmax is None else nmax,
                                   lmax if lmax_by_rank is None else lmax_by_rank)
    basis = RadialBasisSpec(float(cutoff), int(n_k), float(lam), float(dcut), str(radbase))
    return ACE(elements, basis, int(nrad), int(lmax),
               functions, coupling=coupling)
