"""Coupling specs: ``dense``, ``sparse``, ``blocks`` or ``cp:R`` (e.g. a model's ``--coupling`` option) to a
coupling of the fused CG tensor product of :mod:`.tensor_product`."""

from __future__ import annotations

from mlipress.equivariant.cp import cp_coupling
from mlipress.equivariant.tensor_product import block_sparse_coupling, dense_coupling, fused_cg_tensor, sparse_coupling

__all__ = ["COUPLING_HELP", "parse_coupling", "make_coupling"]

COUPLING_HELP = (
    "dense | sparse | blocks (exact CG product: dense tensor, nonzero entries, nonzero degree blocks) "
    "| cp:R (rank-R CP form, Tensor Decomposition Networks)"
)
_EXACT = {"dense": dense_coupling, "sparse": sparse_coupling, "blocks": block_sparse_coupling}


def parse_coupling(spec: str) -> tuple[str, int | None]:
    """``"dense"`` -> ``("dense", None)`` (also ``"sparse"``, ``"blocks"``), ``"cp:R"`` ->
    ``("cp", R)``; ``ValueError`` naming the spec otherwise."""
    text = spec.strip().lower()
    if text in _EXACT:
        return text, None
    kind, _, rank = text.partition(":")
    if kind == "cp" and rank.isdigit() and int(rank) >= 1:
        return "cp", int(rank)
    raise ValueError(f"bad coupling {spec!r}: expected {COUPLING_HELP}")


def make_coupling(spec: str, lmax: int, lmax_out: int | None = None, seed: int = 0):
    """The coupling of ``spec`` for the fused CG tensor product of features of degrees
    ``<= lmax`` to degrees ``<= lmax_out`` (default ``lmax``): a callable ``(x, y) -> z`` on the
    last axis, see :mod:`.tensor_product`."""
    kind, rank = parse_coupling(spec)
    if kind == "cp":
        return cp_coupling(lmax, rank, seed=seed, lmax_out=lmax_out)
    return _EXACT[kind](fused_cg_tensor(lmax, lmax_out))
