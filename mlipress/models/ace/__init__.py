"""The Atomic Cluster Expansion (Drautz 2019; section II.F of the paper), the second model of
the contract (:mod:`mlipress.models.base`), with per-pair matrix-factorised radial functions.

- :mod:`.model`: :class:`ACE` (what a pacemaker B-basis ``.yaml`` holds, linear embedding),
  :class:`ACEParams`, :func:`untrained_ace`;
- :mod:`.basis`: B-function labels, generalised Clebsch-Gordan coefficients, the basis generator;
- :mod:`.radial`: pacemaker's ChebExpCos and SBessel radial bases and the dense / MF per-pair radial layers;
- :mod:`.evaluator`: energies, forces, virials and the linear design matrix in JAX.
"""

from mlipress.models.ace.basis import BFunction, generate_functions
from mlipress.models.ace.model import ACE, ACEParams, untrained_ace
from mlipress.models.ace.radial import PairDense, PairMatrixFactorized, RadialBasisSpec

__all__ = ["ACE", "ACEParams", "BFunction", "PairDense", "PairMatrixFactorized", "RadialBasisSpec",
           "generate_functions", "untrained_ace"]
