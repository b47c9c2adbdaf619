"""Potential families behind one contract (:mod:`mlipress.models.base`): the MTP
(:mod:`mlipress.models.mtp`) and the ACE (:mod:`mlipress.models.ace`); :mod:`mlipress.models.layers` holds the low-rank
layers (dense, matrix-factorised, tensor-train) their radial parts are made of."""

from mlipress.models.base import Model, Params, nonlinear_bytes, params_class

__all__ = ["Model", "Params", "params_class", "nonlinear_bytes"]
