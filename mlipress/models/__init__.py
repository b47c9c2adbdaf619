"""Potential families behind one contract (:mod:`mlipress.models.base`); the MTP
(:class:`mlipress.models.mtp.model.MTP`) is the first."""

from mlipress.models.base import Model, Params, nonlinear_bytes, params_class

__all__ = ["Model", "Params", "params_class", "nonlinear_bytes"]
