"""The Moment Tensor Potential as a value: basis description plus coefficients.

An :class:`MTP` mirrors exactly what an MLIP ``.mtp`` file holds (REFERENCE.md section 1-2),
so reading and writing are lossless. It is the first implementation of the model contract
(:mod:`mlipress.models.base`): its structure (species, radial and moment bases) defines the
pure JAX functions of :mod:`mlipress.models.mtp.evaluator`; its coefficients are an :class:`MTPParams`
pytree (``mtp.params()``), and ``mtp.with_params(params)`` is the potential to write.

Shapes: ``radial_coeffs`` (N_T, N_T, N_f, R) indexed ``[z_i, z_j, mu, b]`` (central species
first), ``species_coeffs`` (N_T,), ``moment_coeffs`` (alpha_scalar_moments,).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from mlipress.models.base import Params, params_class


@params_class
class MTPParams(Params):
    """Coefficients of an MTP: ``radial`` a radial parametrisation (:mod:`mlipress.models.layers`:
    ``Dense``, ``MatrixFactorized``, ``TensorTrain``) of C (N_T, N_T, N_f, N_b), ``species``
    (N_T,), ``moment`` (number of basis functions,), ``scaling`` (scalar; not optimised, as in
    MLIP's BFGS). The energy is linear in ``species`` and ``moment``."""

    LINEAR = ("species", "moment")
    FROZEN = ("scaling",)
    OFFSETS = ("species",)

    radial: object
    species: jax.Array
    moment: jax.Array
    scaling: jax.Array


@dataclass(frozen=True)
class RadialBasis:
    """Chebyshev radial basis ``Q_b(r) = T_b(x) (max_dist - r)^2`` on [min_dist, max_dist].

    ``kind`` is ``"RBChebyshev"`` (no clamp below min_dist) or ``"RBChebyshev_repuls"``
    (r clamped to min_dist before evaluating T_b).
    """

    min_dist: float
    max_dist: float
    size: int = 8
    kind: str = "RBChebyshev"

    def __post_init__(self):
        if self.kind not in ("RBChebyshev", "RBChebyshev_repuls"):
            raise ValueError(f"unsupported radial_basis_type {self.kind!r}")
        if not 0 <= self.min_dist < self.max_dist:
            raise ValueError(f"need 0 <= min_dist < max_dist, got {self.min_dist}, {self.max_dist}")
        if self.size < 1:
            raise ValueError(f"radial_basis_size must be >= 1, got {self.size}")


@dataclass(frozen=True, eq=False)
class MomentBasis:
    """The contraction structure of an MTP (MLIP's alpha_* arrays).

    - ``basic`` (n_basic, 4): rows ``(mu, a, b, c)``: ``M_k = sum_j f_mu(r_ij) u_x^a u_y^b u_z^c``.
    - ``times`` (n_times, 4): rows ``(i, j, mult, k)``: ``M[k] += mult * M[i] * M[j]`` in order.
    - ``mapping`` (n_scalar,): indices of M that are the basis functions B_alpha.
    - ``count``: alpha_moments_count, the length of M.
    """

    basic: np.ndarray
    times: np.ndarray
    mapping: np.ndarray
    count: int

    def __post_init__(self):
        for name in ("basic", "times"):
            arr = np.asarray(getattr(self, name), dtype=np.int64).reshape(-1, 4)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "mapping", np.asarray(self.mapping, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "count", int(self.count))
        if len(self.basic) > self.count:
            raise ValueError("more basic moments than alpha_moments_count")
        if len(self.times) and (self.times[:, [0, 1, 3]].max() >= self.count or self.times.min() < 0):
            raise ValueError("alpha_index_times refers to a moment outside alpha_moments_count")
        if len(self.mapping) and (self.mapping.max() >= self.count or self.mapping.min() < 0):
            raise ValueError("alpha_moment_mapping refers to a moment outside alpha_moments_count")

    @property
    def scalar_count(self) -> int:
        return len(self.mapping)

    @property
    def radial_funcs_needed(self) -> int:
        return int(self.basic[:, 0].max()) + 1 if len(self.basic) else 0

    @property
    def max_angular_degree(self) -> int:
        return int(self.basic[:, 1:].sum(axis=1).max()) if len(self.basic) else 0

    def __eq__(self, other):
        return (
            isinstance(other, MomentBasis)
            and self.count == other.count
            and np.array_equal(self.basic, other.basic)
            and np.array_equal(self.times, other.times)
            and np.array_equal(self.mapping, other.mapping)
        )

    __hash__ = None


@dataclass(frozen=True, eq=False)
class MTP:
    """A Moment Tensor Potential; untrained when its coefficient arrays are ``None``."""

    species_count: int
    radial_basis: RadialBasis
    radial_funcs_count: int
    moments: MomentBasis
    scaling: float = 1.0
    radial_coeffs: np.ndarray | None = None
    species_coeffs: np.ndarray | None = None
    moment_coeffs: np.ndarray | None = None
    potential_name: str = "MTP1m"
    potential_tag: str = ""

    def __post_init__(self):
        nt, nf = self.species_count, self.radial_funcs_count
        if nt < 1:
            raise ValueError(f"species_count must be >= 1, got {nt}")
        if self.moments.radial_funcs_needed > nf:
            raise ValueError(
                f"alpha_index_basic uses radial function {self.moments.radial_funcs_needed - 1} "
                f"but radial_funcs_count = {nf}"
            )
        expected = {
            "radial_coeffs": self.radial_shape,
            "species_coeffs": (nt,),
            "moment_coeffs": (self.moments.scalar_count,),
        }
        for name, shape in expected.items():
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64)
                if value.shape != shape:
                    raise ValueError(f"{name} has shape {value.shape}, expected {shape}")
                object.__setattr__(self, name, value)
        object.__setattr__(self, "scaling", float(self.scaling))

    @property
    def trained(self) -> bool:
        return self.radial_coeffs is not None and self.moment_coeffs is not None

    @property
    def radial_shape(self) -> tuple[int, int, int, int]:
        return (self.species_count, self.species_count, self.radial_funcs_count, self.radial_basis.size)

    @property
    def cutoff(self) -> float:
        return self.radial_basis.max_dist

    # -- the model contract (mlipress.models.base) ------------------------------------------
    @property
    def n_species(self) -> int:
        return self.species_count

    def structure_key(self):
        """Equal for MTPs of the same structure, whatever their coefficients."""
        m = self.moments
        return ("MTP", self.species_count, self.radial_funcs_count, self.radial_basis, m.count,
                m.basic.tobytes(), m.times.tobytes(), m.mapping.tobytes())

    def init(self, seed: int = 0) -> MTPParams:
        """Fresh start: random orthonormal radial functions (reproducible for a seed), zero
        species and moment coefficients, scaling 1."""
        from mlipress.models.layers import Dense
        from mlipress.models.mtp.features import orthonormalise_radial

        C = orthonormalise_radial(np.random.default_rng(seed).standard_normal(self.radial_shape))
        return MTPParams(Dense.from_dense(C), jnp.zeros(self.species_count), jnp.zeros(self.moments.scalar_count),
                         jnp.asarray(1.0, dtype=jnp.float64))

    def params(self) -> MTPParams:
        """The coefficients of a trained MTP (dense radial tensor)."""
        from mlipress.models.layers import Dense

        if not self.trained:
            raise ValueError("the potential is untrained (no radial/moment coefficients)")
        species = self.species_coeffs if self.species_coeffs is not None else np.zeros(self.species_count)
        return MTPParams(Dense.from_dense(self.radial_coeffs), jnp.asarray(species), jnp.asarray(self.moment_coeffs),
                         jnp.asarray(self.scaling, dtype=jnp.float64))

    def with_params(self, params: MTPParams) -> "MTP":
        """This MTP carrying ``params`` (the dense C of a factored radial part)."""
        from dataclasses import replace

        return replace(
            self,
            radial_coeffs=np.asarray(params.radial.dense(), dtype=np.float64),
            species_coeffs=np.asarray(params.species, dtype=np.float64),
            moment_coeffs=np.asarray(params.moment, dtype=np.float64),
            scaling=float(params.scaling),
        )

    def radial_layer(self, spec):
        """The radial layer class of a spec (:func:`mlipress.models.layers.layer_for`)."""
        from mlipress.models.layers import layer_for

        return layer_for(spec)

    def normalise(self, params: MTPParams) -> MTPParams:
        """Orthonormal radial functions (MLIP's step before a periodic linear solve; changes
        the model, so a linear solve follows)."""
        from mlipress.models.layers import Dense
        from mlipress.models.mtp.features import orthonormalise_radial

        return params.replace(radial=Dense.from_dense(orthonormalise_radial(params.radial.dense())))

    def write(self, path) -> None:
        """MLIP's ``.mtp`` file (:func:`mlipress.io.mtp.write_mtp`)."""
        from mlipress.io.mtp import write_mtp

        write_mtp(self, path)

    @classmethod
    def read(cls, path) -> "MTP":
        """An ``.mtp`` file, trained or untrained (:func:`mlipress.io.mtp.read_mtp`)."""
        from mlipress.io.mtp import read_mtp

        return read_mtp(path)

    def efs_fn(self):
        from mlipress.models.mtp.evaluator import make_efs_fn

        return make_efs_fn(self)

    def loss_efs_fn(self):
        """:meth:`efs_fn` laid out for the training loss's second derivative (2.5-3x faster
        there, slower for plain evaluation; :func:`~mlipress.models.mtp.evaluator.make_moments_fn`)."""
        from mlipress.models.mtp.evaluator import make_efs_fn

        return make_efs_fn(self, vectorised=True)

    def features_fn(self):
        from mlipress.models.mtp.features import mtp_features_fn

        return mtp_features_fn(self)

    def penalty(self, params: MTPParams):
        return radial_penalty(params.radial.dense())

    def num_params(self) -> dict[str, int]:
        """Parameter counts: radial, species, moment (linear) and total."""
        radial = int(np.prod(self.radial_shape))
        counts = {"radial": radial, "species": self.species_count, "moment": self.moments.scalar_count}
        counts["total"] = sum(counts.values())
        return counts


def radial_penalty(C) -> jax.Array:
    """MLIP's orthonormality penalty of the radial functions (REFERENCE.md section 3).

    ``C`` (N_T, N_T, N_f, R), the dense radial tensor (``param.dense()`` of a parametrisation); with
    ``c_mu = C[:, :, mu, :]`` flattened to (N_T^2 R,) and the Gram matrix ``G = c c^T``
    (N_f, N_f): ``sum_mu (G_mu,mu - 1)^2 + sum_{mu<nu} G_mu,nu^2``. Returns a scalar.
    """
    C = jnp.asarray(C)
    nf = C.shape[2]
    c = jnp.moveaxis(C, 2, 0).reshape(nf, -1)
    G = c @ c.T
    off = jnp.triu(G, k=1)
    return jnp.sum((jnp.diagonal(G) - 1.0) ** 2) + jnp.sum(off * off)
