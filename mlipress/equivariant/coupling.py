"""Coupling specs: ``dense``, ``sparse`` or ``cp:R`` (e.g. a model's ``--coupling`` option) to a
coupling of the fused CG tensor product of :mod:`.tensor_product`."""

from __future__ import annotations

from mlipress.equivariant.cp import cp_coupling
from mlipress.equivariant.tensor_product import dense_coupling, fused_cg_tensor, sparse_coupling

__all__ = ["COUPLING_HELP", "parse_coupling", "make_coupling"]

COUPLING_HELP = "dense | sparse (exact CG product) | cp:R (rank-R CP form, Tensor Decomposition Networks)"


def parse_coupling(spec: str) -> tuple[str, int | None]:
    """``"dense"`` -> ``("dense", None)``, ``"sparse"`` -> ``("sparse", None)``,
    ``"cp:R"`` -> ``("cp", R)``; ``ValueError`` naming the spec otherwise."""
    text = spec.strip().lower()
    if text in ("dense", "sparse"):
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
    tensor = fused_cg_tensor(lmax, lmax_out)
    return dense_coupling(tensor) if kind == "dense" else sparse_coupling(tensor)
