"""Compressed MTPs: low-rank radial tensors (MF, R-MF, TF, MFRA; sections II.C-D of the paper).

- :func:`fit_compressed` (:mod:`.fit`): fit or refit an MTP with a factored radial part.
- :func:`write_compressed` / :func:`read_compressed` (:mod:`.files`): a standard dense ``.mtp``
  plus a ``.factors.npz`` sidecar with the factors.
- the ``mlipress compress`` and ``mlipress sweep`` commands are in :mod:`mlipress.cli`.
"""

from mlipress.compress.files import read_compressed, sidecar_path, write_compressed
from mlipress.compress.fit import CompressedResult, fit_compressed, initial_compressed_params, rmf_objective

__all__ = [
    "fit_compressed",
    "CompressedResult",
    "initial_compressed_params",
    "rmf_objective",
    "write_compressed",
    "read_compressed",
    "sidecar_path",
]
