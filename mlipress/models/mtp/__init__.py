"""The Moment Tensor Potential, the first model of the contract (:mod:`mlipress.models.base`).

- :mod:`.model`: :class:`MTP` (what an ``.mtp`` file holds; the contract's methods) and its
  :class:`MTPParams`; MLIP's radial penalty.
- :mod:`.basis`: the moment basis of a level (the role of MLIP's untrained templates).
- :mod:`.evaluator`: the one implementation of the MTP math in JAX (energy, forces, virial).
- :mod:`.features`: the design matrix of the linear part, and radial orthonormalisation.
"""

from mlipress.models.mtp.basis import untrained_mtp
from mlipress.models.mtp.model import MTP, MomentBasis, MTPParams, RadialBasis, radial_penalty

__all__ = ["MTP", "MTPParams", "MomentBasis", "RadialBasis", "radial_penalty", "untrained_mtp"]
