"""Radial layers: the radial tensor C as a dense array or in low-rank form, one registry of kinds.

The MTP radial functions (eq. (5) of the paper) are

    f_mu(r_ij, z_i, z_j) = sum_b C[z_i, z_j, mu, b] Q_b(r_ij),

with ``C`` of shape ``(N_T, N_T, N_f, N_b)`` indexed ``[z_i, z_j, mu, b]`` (central species
first) and ``Q_b(r) = T_b(r) (R_cut - r)^2`` the radial basis. The base MTP stores all
``N_T^2 N_f N_b`` entries of ``C``; section II.C of the paper replaces them by

- MF (matrix factorization, skeleton decomposition) of the unfolding
  ``Chat = reshape(C, [N_T^2, N_f N_b]) = U V^T`` with ``U (N_T^2, r)``, ``V (N_f N_b, r)``:
  ``r (N_T^2 + N_f N_b)`` parameters;
- TF (tensor train / MPS) over the index order ``(z_i, z_j, mu, b)``:
  ``C[i, j, mu, b] = sum_{a1,a2,a3} G1[0, i, a1] G2[a1, j, a2] G3[a2, mu, a3] G4[a3, b, 0]``
  with cores ``G_k (r_{k-1}, n_k, r_k)``, ``r_0 = r_4 = 1``:
  ``r0 N_T r1 + r1 N_T r2 + r2 N_f r3 + r3 N_b r4`` parameters. :class:`TensorTrain` takes any
  number ``d >= 2`` of cores over a tensor of any order (a magnetic MTP's tensor has 6 axes).

The layer registry
------------------
A layer is a small frozen pytree dataclass deriving from :class:`RadialLayer` and registered
with :func:`register_layer` (which also registers it with JAX: fields marked
``metadata={"static": True}`` are static metadata, the others are leaves, so ``jax.grad`` /
``jit`` / optimisers see the arrays). :data:`LAYERS` maps each ``kind`` name to its class:
``"dense"`` (:class:`Dense`), ``"mf"`` (:class:`MatrixFactorized`), ``"tt"``
(:class:`TensorTrain`). Every registered layer answers the same interface, so the evaluator,
the fits and the files never ask which one they have:

- ``kind`` (class attribute): its name in spec strings and in the ``.factors.npz`` sidecar;
- ``.shape`` (the full tensor shape; ``(N_T, N_T, N_f, N_b)`` for the MTP) and ``.dims``
  (the static sizes that fix it: ``(N_T, N_f, N_b)`` for the MTP layout), ``.rank``
  (``None``, an int, a tuple of ints), ``.num_params`` (``param_count(shape, rank)``);
- ``.dense()`` -> ``C`` as a (differentiable) JAX array;
- ``.radial_values(Q, zi, zj)`` -> ``f[..., mu]`` for the MTP layout, contracting with the
  radial basis values in factored form for the low-rank layers (no per-pair ``C[z_i, z_j]``
  is formed); :class:`Dense` holds the one dense contraction;
- classmethods ``from_dense(C, rank)`` (exact / truncated SVD / TT-SVD), ``random(key, shape,
  rank, scale)`` (entries of ``C`` of standard deviation ``scale``), ``param_count(shape,
  rank)``, ``rank_candidates(shape)`` (the distinct ranks worth trying, smallest first);
- ``.arrays()`` -> ``{name: float64 ndarray}`` and ``from_arrays(arrays, dims)``: the file
  round trip, bit for bit (:mod:`mlipress.compress.files` stores the arrays under these names);
- ``parse_rank`` / ``spec_help``: how the rank is written in a spec string.

Constructors run in NumPy and return JAX arrays. A new kind (e.g. CP) is one more class with
this interface and one :func:`register_layer` call; the spec ``cp:R``, the files, the random
and truncated starts and the Euclidean BFGS fit of :mod:`mlipress.compress.fit` then work.

Specs
-----
Command-line strings (``dense``, ``mf:R``, ``rmf:R``, ``tt:R1,R2,R3``, ``mfra:RMAX``,
``ttra:R1,R2,R3``, ``mfra:auto``, ``ttra:auto``) are parsed by :func:`parse_radial_spec` into a
:class:`RadialSpec`. Every layer kind is a spec kind;
:func:`register_spec_kind` adds the kinds that fit a layer with another optimiser (``rmf``:
Riemannian BFGS of an MF layer, ``mfra``: MF with rank augmentation, ``ttra``: TT with
TT-rank augmentation). :func:`layer_for` gives
a spec's layer class.
"""

from __future__ import annotations

import math
import string
import types
from dataclasses import dataclass, field, fields
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "RadialLayer",
    "LAYERS",
    "register_layer",
    "register_spec_kind",
    "layer_for",
    "kind_of",
    "Dense",
    "MatrixFactorized",
    "TensorTrain",
    "RadialSpec",
    "parse_radial_spec",
    "from_spec",
    "rank_for_compression",
    "compression",
    "dense_param_count",
    "mf_param_count",
    "tt_param_count",
    "clip_tt_ranks",
    "to_matrix",
    "from_matrix",
    "DEFAULT_SCALE",
]

#: Default standard deviation of the entries of ``C`` drawn by the ``random`` constructors.
#: With ``|Q_b(r)| <~ (R_cut - r)^2`` of order a few units at typical neighbour distances,
#: ``std(C) = 0.1`` gives ``f_mu(r) = sum_b C Q_b`` of order one (``~ 0.1 sqrt(N_b) Q``),
#: so moment tensors start neither vanishing nor exploding; the linear coefficients xi
#: absorb the remaining scale.
DEFAULT_SCALE = 0.1

_STATIC = {"static": True}  # dataclass field metadata: static pytree metadata, not a leaf


# ----------------------------------------------------------------------------------------
# shapes, unfoldings and parameter counts
# ----------------------------------------------------------------------------------------


def _dims(shape) -> tuple[int, int, int]:
    """``(N_T, N_T, N_f, N_b)`` or ``(N_T, N_f, N_b)`` -> ``(N_T, N_f, N_b)`` (validated)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4:
        if shape[0] != shape[1]:
            raise ValueError(f"radial tensor must be (N_T, N_T, N_f, N_b), got {shape}")
        shape = (shape[0], shape[2], shape[3])
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected (N_T, N_T, N_f, N_b) or (N_T, N_f, N_b) with sizes >= 1, got {shape}")
    return shape


def _mtp_shape(dims) -> tuple[int, int, int, int]:
    """``(N_T, N_f, N_b)`` (or the full shape) -> ``(N_T, N_T, N_f, N_b)``."""
    nt, nf, nb = _dims(dims)
    return (nt, nt, nf, nb)


def _is_mtp_layout(shape) -> bool:
    return len(shape) == 4 and shape[0] == shape[1]


def _tt_modes(shape, n_ranks: int | None = None) -> tuple[int, ...]:
    """The mode sizes ``(n_1, ..., n_d)`` of a TT over ``shape``.

    ``shape`` is the full tensor shape, or the MTP's ``(N_T, N_f, N_b)`` for its 4-mode radial
    tensor ``(N_T, N_T, N_f, N_b)``. A 3-tuple is read as the MTP's unless ``n_ranks == 2``
    (then it is a tensor of order 3).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3 and n_ranks != 2:
        shape = _mtp_shape(shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"a tensor train needs at least two modes of size >= 1, got {shape}")
    if n_ranks is not None and n_ranks != len(shape) - 1:
        raise ValueError(f"a TT over {len(shape)} modes {shape} needs {len(shape) - 1} ranks, got {n_ranks}")
    return shape


def to_matrix(C):
    """The MF unfolding ``Chat = reshape(C, [N_T^2, N_f N_b])`` (row-major, exactly a reshape).

    ``C`` (N_T, N_T, N_f, N_b) -> (N_T^2, N_f N_b); row ``z_i N_T + z_j``, column ``mu N_b + b``.
    Works on NumPy and JAX arrays alike.
    """
    nt, nt2, nf, nb = C.shape
    return C.reshape(nt * nt2, nf * nb)


def from_matrix(Chat, shape):
    """Inverse of :func:`to_matrix`: (N_T^2, N_f N_b) -> ``shape`` = (N_T, N_T, N_f, N_b).

    ``shape`` may also be given as ``(N_T, N_f, N_b)``.
    """
    nt, nf, nb = _dims(shape)
    if Chat.shape != (nt * nt, nf * nb):
        raise ValueError(f"matrix of shape {Chat.shape} does not unfold {(nt, nt, nf, nb)}")
    return Chat.reshape(nt, nt, nf, nb)


def dense_param_count(shape) -> int:
    """``N_T^2 N_f N_b``, the radial parameter count of the base MTP."""
    nt, nf, nb = _dims(shape)
    return nt * nt * nf * nb


def mf_param_count(shape, rank: int) -> int:
    """``r (N_T^2 + N_f N_b)`` (section II.C)."""
    nt, nf, nb = _dims(shape)
    return int(rank) * (nt * nt + nf * nb)


def tt_param_count(shape, ranks) -> int:
    """``sum_k r_{k-1} n_k r_k`` with ``r_0 = r_d = 1``: the size of the cores.

    ``shape``: the mode sizes ``(n_1, ..., n_d)`` with ``d - 1`` ``ranks``, or the MTP's
    ``(N_T, N_f, N_b)`` with three: ``r0 N_T r1 + r1 N_T r2 + r2 N_f r3 + r3 N_b r4``
    (section II.C), which for ``r1 = r2 = r3 = r`` is ``(N_T + N_f) r^2 + (N_T + N_b) r``.
    ``ranks`` are used as given (not clipped).
    """
    ranks = tuple(int(r) for r in ranks)
    n = _tt_modes(shape, len(ranks))
    r = (1,) + ranks + (1,)
    return sum(r[k] * n[k] * r[k + 1] for k in range(len(n)))


def clip_tt_ranks(shape, ranks) -> tuple[int, ...]:
    """Clip TT ranks ``(r_1, ..., r_{d-1})`` to the largest ones the mode sizes allow.

    ``shape`` as in :func:`tt_param_count`. With mode sizes ``n_k`` and ``r_0 = r_d = 1``, a TT
    without redundant parameters needs ``r_k <= r_{k-1} n_k`` and ``r_k <= n_{k+1} r_{k+1}``
    (both follow from ``r_k`` being at most the rank of the k-th unfolding). A forward then a
    backward sweep reaches the fixpoint. At the clipped maximal ranks TT-SVD is exact.
    """
    ranks = tuple(ranks)
    n = _tt_modes(shape, len(ranks))
    r = [1] + [int(x) for x in ranks] + [1]
    if min(r) < 1:
        raise ValueError(f"TT ranks must be >= 1, got {ranks}")
    d = len(n)
    for k in range(1, d):
        r[k] = min(r[k], r[k - 1] * n[k - 1])
    for k in range(d - 1, 0, -1):
        r[k] = min(r[k], n[k] * r[k + 1])
    return tuple(r[1:d])


def _max_mf_rank(shape) -> int:
    nt, nf, nb = _dims(shape)
    return min(nt * nt, nf * nb)


def _normals(key, *shapes):
    """Independent standard-normal float64 arrays of the given shapes.

    ``key``: a JAX PRNG key (``jax.random.key`` or ``PRNGKey``) or an int seed. One flat draw
    is sliced into the pieces, so each call compiles a single sampler.
    """
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key))
    sizes = [math.prod(s) for s in shapes]
    flat = jax.random.normal(key, (sum(sizes),), dtype=jnp.float64)
    out, start = [], 0
    for size, shape in zip(sizes, shapes):
        out.append(flat[start : start + size].reshape(shape))
        start += size
    return out


def _positive_int(text: str, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{what} must be a positive integer, got {text.strip()!r}") from None
    if value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value}")
    return value


# ----------------------------------------------------------------------------------------
# the layer contract and its registry
# ----------------------------------------------------------------------------------------

_LAYERS: dict[str, type] = {}
#: The registered layer classes by ``kind`` (read-only; add one with :func:`register_layer`).
LAYERS = types.MappingProxyType(_LAYERS)


class RadialLayer:
    """Base of the registered radial layers: the interface of the module docstring.

    Subclasses are frozen dataclasses whose array fields are the pytree leaves and whose
    ``metadata={"static": True}`` fields are static. They set ``kind`` and implement the
    methods below that raise ``NotImplementedError``; the others have defaults.
    """

    #: The layer's name in spec strings and sidecar headers.
    kind: ClassVar[str] = ""
    #: How its rank is named in spec errors and written in the spec help (``mf:R``).
    rank_what: ClassVar[str] = "rank R"
    rank_form: ClassVar[str] = "R"

    # -- sizes ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """The full tensor shape, ``(N_T, N_T, N_f, N_b)`` for the MTP."""
        return _mtp_shape(self.dims)

    @property
    def rank(self):
        raise NotImplementedError

    @property
    def num_params(self) -> int:
        return type(self).param_count(self.shape, self.rank)

    # -- values --------------------------------------------------------------------------
    def dense(self) -> jax.Array:
        """The full tensor ``C`` as a JAX array."""
        raise NotImplementedError

    def radial_values(self, Q, zi, zj) -> jax.Array:
        """``f[..., mu] = sum_b C[zi, zj, mu, b] Q[..., b]`` (eq. (5)).

        ``Q`` (..., N_b) radial basis values, ``zj`` (...) int species (shape ``Q.shape[:-1]``),
        ``zi`` int species broadcastable against ``zj`` (the evaluator passes ``types_i[:, None]``
        for an (A, K) block). Returns (..., N_f).
        """
        raise NotImplementedError

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def from_dense(cls, C, rank=None):
        """The layer of ``rank`` closest to (or, at full rank, equal to) the tensor ``C``."""
        raise NotImplementedError

    @classmethod
    def random(cls, key, shape, rank=None, scale: float = DEFAULT_SCALE):
        """Random factors with entries of ``C`` of standard deviation ``scale``."""
        raise NotImplementedError

    @classmethod
    def param_count(cls, shape, rank) -> int:
        raise NotImplementedError

    @classmethod
    def rank_candidates(cls, shape) -> list:
        """The distinct ranks of a layer over ``shape``, by increasing parameter count."""
        raise NotImplementedError

    # -- files ---------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The leaves as float64 NumPy arrays, by field name."""
        return {name: np.asarray(getattr(self, name), dtype=np.float64) for name in _leaf_fields(type(self))}

    @classmethod
    def from_arrays(cls, arrays, dims):
        """Inverse of :meth:`arrays`: the layer of shape ``dims`` (as ``.dims``) from the arrays
        (JAX copies, bit for bit). Raises ``ValueError`` on missing arrays or other shapes."""
        leaves = {name: _take(arrays, name) for name in _leaf_fields(cls)}
        return _check_dims(cls(**leaves), dims)

    # -- specs ---------------------------------------------------------------------------
    @classmethod
    def parse_rank(cls, arg: str, name: str, what: str):
        """The rank written ``arg`` in the spec ``name:arg`` (a positive integer by default);
        ``ValueError`` with the reason otherwise."""
        if not arg:
            raise ValueError(f"'{name}' needs a rank, e.g. '{name}:4'")
        return _positive_int(arg, what)

    @classmethod
    def spec_help(cls, name: str, form: str) -> str:
        return f"'{name}:{form}'"


def _leaf_fields(cls) -> list[str]:
    """The dataclass fields of a layer class that are pytree leaves (not marked static)."""
    return [f.name for f in fields(cls) if not f.metadata.get("static")]


def _take(arrays, name: str) -> jax.Array:
    if name not in arrays:
        raise ValueError(f"missing array {name!r} (have {sorted(arrays)})")
    return jnp.asarray(arrays[name])


def _check_dims(layer, dims):
    if tuple(int(d) for d in dims) != tuple(layer.dims):
        raise ValueError(f"{type(layer).__name__} arrays of dims {layer.dims} where {tuple(dims)} was expected")
    return layer


@dataclass(frozen=True)
class _SpecKind:
    layer: type
    what: str  # the rank in error messages
    help: str  # the accepted form, e.g. "'mf:R'"
    grows: bool  # rank augmentation: the fit starts below the spec's rank


_SPEC_KINDS: dict[str, _SpecKind] = {}


def register_spec_kind(name: str, layer_kind: str, what: str | None = None, form: str | None = None,
                       grows: bool = False) -> None:
    """Make ``name`` a spec kind fitting the registered layer ``layer_kind``.

    ``what`` / ``form``: how its rank is named in errors and written in the help (default: the
    layer's ``rank_what`` / ``rank_form``); ``grows``: the rank is a maximum that the fit grows
    to (:meth:`RadialSpec.initial_rank`). :func:`register_layer` calls this for every layer.
    """
    if name in _SPEC_KINDS:
        raise ValueError(f"radial spec kind {name!r} is already registered")
    layer = _LAYERS[layer_kind]
    text = layer.spec_help(name, form or layer.rank_form) + (f" or '{name}:auto'" if grows else "")
    _SPEC_KINDS[name] = _SpecKind(layer, what or layer.rank_what, text, grows)


def register_layer(cls):
    """Register a :class:`RadialLayer` dataclass under ``cls.kind`` (class decorator).

    Makes it a JAX pytree (static fields: those with ``metadata={"static": True}``) and a spec
    kind of the same name (:func:`register_spec_kind`).
    """
    if not (isinstance(cls, type) and issubclass(cls, RadialLayer)) or not cls.kind:
        raise TypeError(f"{cls!r} is not a RadialLayer subclass with a kind")
    if cls.kind in _LAYERS:
        raise ValueError(f"radial layer kind {cls.kind!r} is already registered ({_LAYERS[cls.kind].__name__})")
    data = _leaf_fields(cls)
    static = [f.name for f in fields(cls) if f.name not in data]
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=static)
    _LAYERS[cls.kind] = cls
    register_spec_kind(cls.kind, cls.kind)
    return cls


def kind_of(layer) -> str:
    """The registered ``kind`` of a layer value; ``TypeError`` for anything else (a raw array)."""
    cls = type(layer)
    # a subclass of a registered layer (the magnetic MTP's split TT) keeps its kind
    if not isinstance(layer, RadialLayer) or not issubclass(cls, _LAYERS.get(cls.kind, ())):
        raise TypeError(f"not a registered radial layer: {cls.__name__} (registered: {sorted(_LAYERS)})")
    return cls.kind


# ----------------------------------------------------------------------------------------
# the three layers
# ----------------------------------------------------------------------------------------

# Leaf shapes are validated only when a value is built by hand without its static sizes.
# Pytree unflattening always passes them and may carry placeholder leaves (None, object(),
# sharding specs) or batched leaves (a stack of parameters for vmap), which must pass.


@register_layer
@dataclass(frozen=True, eq=False)
class Dense(RadialLayer):
    """The full radial tensor ``C`` (N_T, N_T, N_f, N_b), ``N_T^2 N_f N_b`` parameters.

    Pytree: leaf ``C``; static ``dims = (N_T, N_f, N_b)`` (derived from ``C``, and ``C``
    validated, when omitted). No rank: ``rank`` is None and the constructors take ``rank=None``.
    """

    kind: ClassVar[str] = "dense"

    C: jax.Array
    dims: tuple[int, int, int] | None = field(default=None, metadata=_STATIC)

    def __post_init__(self):
        if self.dims is None:
            shape = np.shape(self.C)
            if len(shape) != 4:
                raise ValueError(f"C must be (N_T, N_T, N_f, N_b), got shape {shape}")
            object.__setattr__(self, "dims", _dims(shape))
        else:
            object.__setattr__(self, "dims", _dims(self.dims))

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def from_dense(cls, C, rank=None) -> "Dense":
        """Wrap a dense tensor (copied to a float64 JAX array)."""
        _no_rank(rank)
        return cls(jnp.asarray(np.asarray(C, dtype=np.float64)))

    @classmethod
    def random(cls, key, shape, rank=None, scale: float = DEFAULT_SCALE) -> "Dense":
        """``C`` with i.i.d. N(0, scale^2) entries. ``key``: JAX PRNG key or int seed."""
        _no_rank(rank)
        nt, nf, nb = _dims(shape)
        (C,) = _normals(key, (nt, nt, nf, nb))
        return cls(scale * C)

    @classmethod
    def param_count(cls, shape, rank=None) -> int:
        return dense_param_count(shape)

    @classmethod
    def rank_candidates(cls, shape) -> list:
        return [None]

    # -- the common interface ------------------------------------------------------------
    @property
    def rank(self) -> None:
        return None

    def dense(self) -> jax.Array:
        """``C`` (N_T, N_T, N_f, N_b)."""
        return jnp.asarray(self.C)

    def radial_values(self, Q, zi, zj) -> jax.Array:
        """``f[..., mu] = sum_b C[zi, zj, mu, b] Q[..., b]`` (eq. (5)), the dense contraction.

        ``C[zi]`` is gathered once per atom when ``zi`` has a trailing axis of length one
        (the site types of an (A, K) neighbour block, ``types_i[:, None]``) and contracted with
        a one-hot of ``zj`` only: N_T times fewer operations than a one-hot of the species
        pair. The pair one-hot is kept for the general case: a gather of ``C[zi, zj]`` per
        pair has a per-pair scatter as its transpose, serial on CPU (ten times slower forces).
        """
        C = jnp.asarray(self.C)
        nt, _, nf, nb = C.shape
        if nt == 1:
            return Q @ C[0, 0].T
        zi, zj = jnp.asarray(zi), jnp.asarray(zj)
        if Q.ndim == 3 and zi.ndim == 2 and zi.shape[-1] == 1:
            site = jnp.transpose(C[zi[:, 0]], (0, 1, 3, 2)).reshape(-1, nt * nb, nf)  # (A, N_T N_b, N_f)
            weighted = (jax.nn.one_hot(zj, nt, dtype=Q.dtype)[..., :, None] * Q[..., None, :]).reshape(
                *Q.shape[:-1], nt * nb
            )
            return jnp.einsum("akc,acf->akf", weighted, site)
        zi = jnp.broadcast_to(zi, zj.shape)
        pair = jax.nn.one_hot(zi * nt + zj, nt * nt, dtype=Q.dtype)
        weighted = (pair[..., :, None] * Q[..., None, :]).reshape(*Q.shape[:-1], nt * nt * nb)
        return weighted @ jnp.transpose(C, (0, 1, 3, 2)).reshape(nt * nt * nb, nf)

    @classmethod
    def parse_rank(cls, arg: str, name: str, what: str) -> None:
        if arg:
            raise ValueError(f"'{name}' takes no rank")
        return None

    @classmethod
    def spec_help(cls, name: str, form: str) -> str:
        return f"'{name}'"


def _no_rank(rank) -> None:
    if rank is not None:
        raise ValueError(f"a dense radial tensor has no rank, got {rank!r}")


@register_layer
@dataclass(frozen=True, eq=False)
class MatrixFactorized(RadialLayer):
    """MF: ``reshape(C, [N_T^2, N_f N_b]) = U V^T`` (section II.C), ``r (N_T^2 + N_f N_b)`` params.

    Pytree: leaves ``U`` (N_T^2, r) (row ``z_i N_T + z_j``) and ``V`` (N_f N_b, r) (row
    ``mu N_b + b``); static ``dims = (N_T, N_f, N_b)`` (required: ``V`` alone does not tell
    ``N_f`` from ``N_b``; use :meth:`checked` to validate hand-made factors). The factors are
    not unique (``U S^-1``, ``V S^T`` give the same C); :meth:`from_dense` returns the balanced SVD factors ``U_r sqrt(S_r)``, ``V_r sqrt(S_r)``.
    """

    kind: ClassVar[str] = "mf"

    U: jax.Array
    V: jax.Array
    dims: tuple[int, int, int] = field(metadata=_STATIC)

    def __post_init__(self):
        object.__setattr__(self, "dims", _dims(self.dims))

    @classmethod
    def checked(cls, U, V, dims) -> "MatrixFactorized":
        """Build from factors, validating ``U (N_T^2, r)``, ``V (N_f N_b, r)`` against ``dims``."""
        nt, nf, nb = _dims(dims)
        U, V = jnp.asarray(U), jnp.asarray(V)
        if U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[1]:
            raise ValueError(f"U (N_T^2, r), V (N_f N_b, r) expected, got {U.shape}, {V.shape}")
        if U.shape[0] != nt * nt or V.shape[0] != nf * nb:
            raise ValueError(
                f"U {U.shape}, V {V.shape} do not factor a (N_T^2, N_f N_b) = ({nt * nt}, {nf * nb}) matrix"
            )
        return cls(U, V, (nt, nf, nb))

    @classmethod
    def from_factors(cls, U, V, dims) -> "MatrixFactorized":
        """The layer of factors ``U``, ``V`` (:meth:`checked`; MFRA's result)."""
        return cls.checked(U, V, dims)

    # -- R-MF: the fixed-rank manifold this layer's matrix lives on ---------------------------
    @staticmethod
    def manifold():
        """The manifold operations of R-MF (:mod:`mlipress.optim.fixed_rank`: one matrix)."""
        from mlipress.optim import fixed_rank

        return fixed_rank

    @classmethod
    def matrices(cls, C) -> np.ndarray:
        """The manifold's matrix of a dense radial tensor: the unfolding ``Chat``."""
        return np.asarray(to_matrix(jnp.asarray(C)), dtype=np.float64)

    @classmethod
    def dense_of_matrices(cls, X, dims):
        """The dense radial tensor of the manifold's matrix (inverse of :meth:`matrices`)."""
        return from_matrix(jnp.asarray(X, dtype=jnp.float64), tuple(dims))

    @classmethod
    def from_point(cls, point, dims) -> "MatrixFactorized":
        """A fixed-rank point ``U diag(s) V^T`` as balanced factors (the same ``Chat``)."""
        root = np.sqrt(np.abs(np.asarray(point.s, dtype=np.float64)))
        return cls.checked(np.asarray(point.U) * (np.sign(point.s) * root), np.asarray(point.V) * root, dims)

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def from_dense(cls, C, rank: int) -> "MatrixFactorized":
        """Best rank-``rank`` approximation of the unfolding (truncated SVD, Eckart-Young).

        ``Chat = U_s S V_s^T``; returns ``U = U_s[:, :r] sqrt(S_r)``, ``V = V_s[:, :r] sqrt(S_r)``.
        ``rank`` is clipped to ``min(N_T^2, N_f N_b)``; the Frobenius error is
        ``sqrt(sum_{k > r} s_k^2)``.
        """
        C = np.asarray(C, dtype=np.float64)
        dims = _dims(C.shape)
        rank = min(_mf_rank(rank), _max_mf_rank(dims))
        u, s, vt = np.linalg.svd(to_matrix(C), full_matrices=False)
        root = np.sqrt(s[:rank])
        return cls(jnp.asarray(u[:, :rank] * root), jnp.asarray(vt[:rank].T * root), dims)

    @classmethod
    def random(cls, key, shape, rank: int, scale: float = DEFAULT_SCALE) -> "MatrixFactorized":
        """Gaussian factors with ``std(U) = std(V) = sqrt(scale / sqrt(r))``.

        Then each entry ``sum_k U_ik V_jk`` of ``C`` has variance ``r (scale / sqrt(r))^2 =
        scale^2``, i.e. the same magnitude as :meth:`Dense.random` with the same ``scale``,
        split evenly between the two factors. ``rank`` is not clipped.
        """
        nt, nf, nb = _dims(shape)
        rank = _mf_rank(rank)
        s = math.sqrt(scale / math.sqrt(rank))
        U, V = _normals(key, (nt * nt, rank), (nf * nb, rank))
        return cls(s * U, s * V, (nt, nf, nb))

    @classmethod
    def param_count(cls, shape, rank: int) -> int:
        return mf_param_count(shape, rank)

    @classmethod
    def rank_candidates(cls, shape) -> list:
        return list(range(1, _max_mf_rank(shape) + 1))

    @classmethod
    def from_arrays(cls, arrays, dims) -> "MatrixFactorized":
        return cls.checked(_take(arrays, "U"), _take(arrays, "V"), dims)

    # -- the common interface ------------------------------------------------------------
    @property
    def rank(self) -> int:
        return int(self.U.shape[1])

    def dense(self) -> jax.Array:
        """``C = reshape(U V^T, [N_T, N_T, N_f, N_b])``."""
        return from_matrix(jnp.asarray(self.U) @ jnp.asarray(self.V).T, self.dims)

    def radial_values(self, Q, zi, zj) -> jax.Array:
        """``f[..., mu] = sum_k U[zi N_T + zj, k] sum_b Q[..., b] V[mu N_b + b, k]``, factored.

        ``Q`` (..., N_b), ``zi``, ``zj`` (...) -> (..., N_f). Costs one (P, N_b) x (N_b, N_f r)
        product and a gather of r numbers per pair; no per-pair ``C[zi, zj]`` is formed.
        """
        nt, nf, nb = self.dims
        r = self.rank
        # (N_f N_b, r) -> (N_b, N_f r): column mu r + k holds V[mu N_b + b, k]
        W = jnp.asarray(self.V).reshape(nf, nb, r).transpose(1, 0, 2).reshape(nb, nf * r)
        QW = (Q @ W).reshape(Q.shape[:-1] + (nf, r))  # (..., N_f, r)
        Up = jnp.asarray(self.U)[jnp.asarray(zi) * nt + jnp.asarray(zj)]  # (..., r)
        return jnp.einsum("...mk,...k->...m", QW, Up)


def _mf_rank(rank) -> int:
    rank = int(rank)
    if rank < 1:
        raise ValueError(f"MF rank must be >= 1, got {rank}")
    return rank


# MF layers fitted by other optimisers (spec kinds of mlipress.compress.fit)
register_spec_kind("rmf", "mf")  # Riemannian BFGS on the fixed-rank manifold
register_spec_kind("mfra", "mf", what="maximal rank RMAX", form="RMAX", grows=True)  # rank augmentation


@register_layer
@dataclass(frozen=True, eq=False)
class TensorTrain(RadialLayer):
    """TT (TF in the paper, section II.C): a tensor train of ``d >= 2`` cores over a tensor of
    order d.

    ``C[i_1, ..., i_d] = sum_{a} G_1[0, i_1, a_1] G_2[a_1, i_2, a_2] ... G_d[a_{d-1}, i_d, 0]``
    with cores ``G_k (r_{k-1}, n_k, r_k)``, ``r_0 = r_d = 1``: ``sum_k r_{k-1} n_k r_k``
    parameters. For the MTP, ``d = 4`` over ``(z_i, z_j, mu, b)``: ``G1 (1, N_T, r1)``,
    ``G2 (r1, N_T, r2)``, ``G3 (r2, N_f, r3)``, ``G4 (r3, N_b, 1)``.

    Pytree: the tuple ``cores`` holds the leaves; static ``modes = (n_1, ..., n_d)`` (derived
    from the cores, and the cores validated, when omitted). ``dims`` is ``(N_T, N_f, N_b)`` for
    the MTP layout ``(N_T, N_T, N_f, N_b)`` and ``modes`` otherwise; :meth:`radial_values`
    needs the MTP layout. Files store the cores as ``G1 .. Gd``.
    """

    kind: ClassVar[str] = "tt"
    rank_what: ClassVar[str] = "TT rank"
    rank_form: ClassVar[str] = "R1,R2,R3"

    cores: tuple
    modes: tuple[int, ...] | None = field(default=None, metadata=_STATIC)

    def __post_init__(self):
        if isinstance(self.cores, list):
            object.__setattr__(self, "cores", tuple(self.cores))
        if self.modes is not None:
            object.__setattr__(self, "modes", tuple(int(n) for n in self.modes))
            return
        shapes = [tuple(np.shape(g)) for g in self.cores]
        if len(shapes) < 2 or any(len(s) != 3 for s in shapes):
            raise ValueError(f"a TT needs at least two 3-D cores, got shapes {shapes}")
        if shapes[0][0] != 1 or shapes[-1][2] != 1:
            raise ValueError(f"TT boundary ranks must be r0 = r{len(shapes)} = 1, got shapes {shapes}")
        for a, b in zip(shapes[:-1], shapes[1:]):
            if a[2] != b[0]:
                raise ValueError(f"TT core ranks do not chain: {shapes}")
        object.__setattr__(self, "modes", tuple(s[1] for s in shapes))

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def from_dense(cls, C, ranks) -> "TensorTrain":
        """TT-SVD (Oseledets 2011): sweep left to right, truncating an SVD at each unfolding.

        ``C`` of any order d >= 2, ``ranks = (r_1, ..., r_{d-1})`` (``(r1, r2, r3)`` for the
        MTP), first clipped by :func:`clip_tt_ranks`; at the maximal ranks the decomposition is
        exact. The result is left-orthogonal (``G_1 .. G_{d-1}`` orthonormal as
        ``(r_{k-1} n_k, r_k)`` matrices), with the norm carried by ``G_d``.
        """
        C = np.asarray(C, dtype=np.float64)
        n, d = C.shape, C.ndim
        if d < 2 or len(tuple(ranks)) != d - 1:
            raise ValueError(f"TT-SVD of a tensor of order {d} needs {d - 1} ranks (d >= 2), got {tuple(ranks)}")
        r = (1,) + clip_tt_ranks(n, ranks) + (1,)
        cores = []
        rest = C.reshape(1, -1)  # (r_{k-1}, n_k ... n_d)
        for k in range(d - 1):
            mat = rest.reshape(r[k] * n[k], -1)
            u, s, vt = np.linalg.svd(mat, full_matrices=False)
            rk = min(r[k + 1], len(s))
            cores.append(u[:, :rk].reshape(r[k], n[k], rk))
            rest = s[:rk, None] * vt[:rk]
            if rk != r[k + 1]:  # cannot happen after clipping; kept as a guard
                raise AssertionError("TT rank clipping inconsistent with the unfolding sizes")
        cores.append(rest.reshape(r[d - 1], n[d - 1], 1))
        return cls(tuple(jnp.asarray(g) for g in cores))

    @classmethod
    def random(cls, key, shape, ranks, scale: float = DEFAULT_SCALE) -> "TensorTrain":
        """Gaussian cores: ``G_k`` with standard deviation ``scale^(1/d) / sqrt(r_{k-1})``.

        Each entry of ``C`` sums ``r_1 ... r_{d-1}`` products of d core entries, so its
        variance is ``r_1 ... r_{d-1} * scale^2 / (r_1 ... r_{d-1}) = scale^2``: the same
        magnitude as :meth:`Dense.random`, with every core contributing a factor of order
        ``scale^(1/d)`` after its rank sum. ``shape`` as in :func:`tt_param_count`; ``ranks``
        are clipped by :func:`clip_tt_ranks`. The cores are slices of one draw, in order.
        """
        n = _tt_modes(shape, len(tuple(ranks)))
        d = len(n)
        r = (1,) + clip_tt_ranks(n, ranks) + (1,)
        q = scale ** (1.0 / d)
        G = _normals(key, *((r[k], n[k], r[k + 1]) for k in range(d)))
        return cls(tuple(q / math.sqrt(r[k]) * g for k, g in enumerate(G)))

    @classmethod
    def param_count(cls, shape, ranks) -> int:
        return tt_param_count(shape, ranks)

    @classmethod
    def modes_for(cls, shape) -> tuple[int, ...]:
        """The TT's mode sizes for a radial tensor of ``shape`` (:func:`_tt_modes`)."""
        return _tt_modes(shape)

    @classmethod
    def expand_ranks(cls, ranks) -> tuple[int, ...]:
        """The ranks at every boundary of :meth:`modes_for` that a spec's ``ranks`` mean."""
        return tuple(int(r) for r in ranks)

    @classmethod
    def rank_candidates(cls, shape) -> list:
        """Equal ranks ``(r, ..., r)`` clipped by :func:`clip_tt_ranks`, without repeats."""
        n = _tt_modes(shape)
        big = clip_tt_ranks(n, (10**9,) * (len(n) - 1))
        out = []
        for r in range(1, max(big) + 1):
            ranks = clip_tt_ranks(n, (r,) * (len(n) - 1))
            if ranks not in out:
                out.append(ranks)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """``{"G1": G_1, ..., "Gd": G_d}``."""
        return {f"G{k + 1}": np.asarray(g, dtype=np.float64) for k, g in enumerate(self.cores)}

    @classmethod
    def from_arrays(cls, arrays, dims) -> "TensorTrain":
        d = 0
        while f"G{d + 1}" in arrays:
            d += 1
        return _check_dims(cls(tuple(_take(arrays, f"G{k + 1}") for k in range(max(d, 2)))), dims)

    # -- the common interface ------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.modes

    @property
    def dims(self) -> tuple[int, ...]:
        return _dims(self.modes) if _is_mtp_layout(self.modes) else self.modes

    @property
    def rank(self) -> tuple[int, ...]:
        return tuple(int(np.shape(g)[2]) for g in self.cores[:-1])

    def _pair_table(self) -> jax.Array:
        """``A[i, j, a2] = sum_a1 G1[0, i, a1] G2[a1, j, a2]``: (n_1, n_2, r_2)."""
        return jnp.einsum("ia,ajb->ijb", jnp.asarray(self.cores[0])[0], jnp.asarray(self.cores[1]))

    def dense(self) -> jax.Array:
        """``C`` (n_1, ..., n_d) by contracting the cores (the pair table of the first two,
        then one contraction of it with the others)."""
        pair = self._pair_table()
        if len(self.cores) == 2:
            return pair[..., 0]
        mid, last = self.cores[2:-1], jnp.asarray(self.cores[-1])[:, :, 0]
        mode, link = string.ascii_lowercase[8:], string.ascii_uppercase  # i, j, k, ... / A, B, ...
        d = len(self.cores)
        terms = [mode[:2] + link[1]] + [link[k - 1] + mode[k] + link[k] for k in range(2, d - 1)]
        terms.append(link[d - 2] + mode[d - 1])
        return jnp.einsum(",".join(terms) + "->" + mode[:d], pair, *(jnp.asarray(g) for g in mid), last)

    def radial_values(self, Q, zi, zj) -> jax.Array:
        """``f[..., mu] = sum A[zi, zj, a2] G3[a2, mu, a3] (sum_b G4[a3, b] Q[..., b])``, factored.

        ``Q`` (..., N_b), ``zi``, ``zj`` (...) -> (..., N_f), with ``A`` the (N_T, N_T, r2)
        table of :meth:`_pair_table`. Per pair: a gather of r2 numbers, ``N_b r3`` and
        ``r2 N_f r3`` multiply-adds; no per-pair ``C[zi, zj]`` is formed. Needs the MTP layout
        (four cores over ``(N_T, N_T, N_f, N_b)``).
        """
        if not _is_mtp_layout(self.modes):
            raise ValueError(f"radial values need a TT over (N_T, N_T, N_f, N_b), this one has modes {self.modes}")
        left = self._pair_table()[zi, zj]  # (..., r2)
        right = Q @ jnp.asarray(self.cores[3])[:, :, 0].T  # (..., r3)
        return jnp.einsum("...a,amc,...c->...m", left, jnp.asarray(self.cores[2]), right)

    @classmethod
    def parse_rank(cls, arg: str, name: str, what: str) -> tuple[int, ...]:
        """``R1,R2,R3`` (the MTP's three ranks), ``R`` for ``R,R,R``, or the five ranks
        ``R1,...,R5`` of a magnetic MTP's TT over six modes (:mod:`mlipress.models.mtp.magnetic`)."""
        if not arg:
            raise ValueError(f"'{name}' needs ranks, e.g. '{name}:2,4,3'")
        parts = arg.split(",")
        if len(parts) == 1:
            return (_positive_int(parts[0], what),) * 3
        if len(parts) not in (3, 5):
            raise ValueError(f"'{name}' needs three ranks R1,R2,R3 (five for a magnetic MTP), got {len(parts)}")
        return tuple(_positive_int(p, f"{what} R{k + 1}") for k, p in enumerate(parts))

    @classmethod
    def spec_help(cls, name: str, form: str) -> str:
        return f"'{name}:{form}' (or '{name}:R')"


# a TT layer fitted with TT-rank augmentation (mlipress.optim.ttra)
register_spec_kind("ttra", "tt", what="maximal TT rank", form="R1,R2,R3", grows=True)


def compression(param) -> float:
    """``1 - num_params / prod(shape)``: 0 for dense, 0.5 for half the parameters."""
    return 1.0 - param.num_params / math.prod(param.shape)


# ----------------------------------------------------------------------------------------
# command-line specs
# ----------------------------------------------------------------------------------------


def _spec_help() -> str:
    return "expected one of " + ", ".join(k.help for k in _SPEC_KINDS.values())


@dataclass(frozen=True)
class RadialSpec:
    """A parsed radial parametrisation choice.

    ``kind``: a registered spec kind: ``"dense"`` (rank None), ``"mf"`` (fixed-rank MF, rank
    int), ``"rmf"`` (Riemannian MF, rank int), ``"tt"`` (TT, rank ``(r1, r2, r3)``), ``"mfra"``
    (MF with rank augmentation up to ``rank`` = RMAX), ``"ttra"`` (TT with rank augmentation
    up to ``rank`` = ``(R1, R2, R3)``). A kind whose rank grows (``grows``) also takes ``rank =
    "auto"``: grow while it pays (:mod:`mlipress.compress.fit`). ``layer`` is its layer class.
    """

    kind: str
    rank: int | tuple[int, ...] | str | None = None

    def __str__(self) -> str:
        if self.rank is None:
            return self.kind
        return f"{self.kind}:" + (",".join(map(str, self.rank)) if isinstance(self.rank, tuple) else str(self.rank))

    @property
    def layer(self) -> type:
        return layer_for(self)

    @property
    def grows(self) -> bool:
        """The rank grows during the fit (``mfra``, ``ttra``): ``rank`` is a maximum or "auto"."""
        return _spec_kind(self.kind).grows

    def initial_rank(self, r_min: int = 1):
        """The rank a fit starts from: ``rank``, or for a kind whose rank grows during the fit
        (``mfra``, ``ttra``) ``min(r_min, rank)`` (per TT boundary; ``r_min`` for "auto")."""
        if not self.grows:
            return self.rank
        start = self.layer.parse_rank(str(r_min), self.kind, "r_min")
        if self.rank == "auto":
            return start
        if isinstance(self.rank, tuple):
            if len(start) != len(self.rank) and len(set(start)) == 1:  # r_min at every boundary
                start = start[:1] * len(self.rank)
            return tuple(min(a, b) for a, b in zip(start, self.rank))
        return min(start, self.rank)


def _spec_kind(kind: str) -> _SpecKind:
    entry = _SPEC_KINDS.get(kind)
    if entry is None:
        raise ValueError(f"unknown radial kind {kind!r}; expected one of {', '.join(map(repr, _SPEC_KINDS))}")
    return entry


def layer_for(spec: RadialSpec | str) -> type:
    """The layer class of a spec (``dense`` -> :class:`Dense`; ``mf``, ``rmf``, ``mfra`` ->
    :class:`MatrixFactorized`; ``tt`` -> :class:`TensorTrain`)."""
    if isinstance(spec, str):
        spec = parse_radial_spec(spec)
    return _spec_kind(spec.kind).layer


def parse_radial_spec(spec: str) -> RadialSpec:
    """Parse ``dense``, ``mf:R``, ``rmf:R``, ``tt:R1,R2,R3``, ``mfra:RMAX``, ``ttra:R1,R2,R3``,
    ``mfra:auto``, ``ttra:auto`` (case-insensitive), or any other registered spec kind.

    ``tt:R`` is accepted as shorthand for ``tt:R,R,R`` (the paper's ``r1 = r2 = r3 = r``).
    Raises ``ValueError`` with the accepted forms on anything else.
    """
    if not isinstance(spec, str):
        raise TypeError(f"radial spec must be a string, got {type(spec).__name__}")
    kind, _, arg = spec.strip().lower().partition(":")
    entry = _SPEC_KINDS.get(kind.strip())
    if entry is None:
        raise ValueError(f"unknown radial spec {spec!r}; {_spec_help()}")
    try:
        auto = entry.grows and arg.strip() == "auto"
        rank = "auto" if auto else entry.layer.parse_rank(arg.strip(), kind.strip(), entry.what)
    except ValueError as e:
        raise ValueError(f"radial spec {spec!r}: {e}; {_spec_help()}") from None
    return RadialSpec(kind.strip(), rank)


def from_spec(spec: RadialSpec | str, C):
    """Parametrise a dense tensor ``C`` (N_T, N_T, N_f, N_b) according to ``spec``.

    ``dense`` -> :class:`Dense`; ``mf:R`` and ``rmf:R`` -> rank-R truncated SVD;
    ``tt:...`` -> TT-SVD; ``mfra:RMAX`` -> rank-1 truncated SVD (rank augmentation starts at
    rank 1 and grows to RMAX during training).
    """
    if isinstance(spec, str):
        spec = parse_radial_spec(spec)
    return layer_for(spec).from_dense(C, spec.initial_rank())


def rank_for_compression(shape, fraction: float, kind: str = "mf"):
    """The rank whose parameter count is closest to ``fraction * N_T^2 N_f N_b``.

    ``shape``: (N_T, N_T, N_f, N_b) or (N_T, N_f, N_b). ``fraction``: the fraction of the
    dense parameter count to keep (0.5 for "~50% compression").
    ``kind``: a spec kind, through its layer's ``rank_candidates`` and ``param_count``:
    ``"mf"``/``"rmf"``/``"mfra"`` -> an int ``r`` in ``[1, min(N_T^2, N_f N_b)]`` with
    ``r (N_T^2 + N_f N_b)`` parameters; ``"tt"`` -> equal ranks ``(r, r, r)`` clipped by
    :func:`clip_tt_ranks`, counted with the paper's TT formula; ``"dense"`` -> None.
    Ties go to the smaller count.

    Example: N_T = 4, N_f = 4, N_b = 8 has 512 dense parameters; MF rank 8 has
    8 (16 + 32) = 384 of them, so ``rank_for_compression(..., 0.75, "mf") == 8``.
    """
    fraction = float(fraction)
    if not fraction > 0:
        raise ValueError(f"fraction must be > 0, got {fraction}")
    layer = _spec_kind(kind.lower()).layer
    dims = _dims(shape)
    target = fraction * dense_param_count(dims)
    candidates = [(r, layer.param_count(dims, r)) for r in layer.rank_candidates(dims)]
    return min(candidates, key=lambda c: (abs(c[1] - target), c[1]))[0]
