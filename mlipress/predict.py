"""Host-side prediction: run the evaluator over a dataset in chunks of bounded size.

Configurations are grouped into chunks of at most ``max_atoms`` atoms; each chunk is padded to
bucket sizes (see :mod:`mlipress.batch`) so that a whole dataset compiles only a handful
of shapes.
"""

from __future__ import annotations

from typing import Iterable

import jax

from mlipress.data import Configuration, Dataset
from mlipress.models.base import jitted_efs
from mlipress.models.mtp.model import MTP
from mlipress.batch import chunk_batches


def predict(mtp: MTP, configs: Dataset | Iterable[Configuration], max_atoms: int = 4096, params=None):
    """Energies, forces and virials (and a magnetic model's magnetic forces) of every configuration.

    Returns a list of :class:`Configuration` carrying the predicted labels (the input labels
    are replaced) and, as a second value, the per-atom energies (list of (n,) arrays).
    ``params`` overrides the coefficients of ``mtp`` (e.g. a compressed radial part).
    """
    configs = list(configs)
    params = mtp.params() if params is None else params
    efs = jitted_efs(mtp)
    out, site = [None] * len(configs), [None] * len(configs)
    if not configs:
        return [], []
    for chunk, batch in chunk_batches(configs, mtp.cutoff, max_atoms):
        members = [configs[k] for k in chunk]
        res = jax.device_get(efs(params, batch))
        offset = 0
        for pos, (k, c) in enumerate(zip(chunk, members)):
            n = c.natoms
            virial = res["virial"][pos] if c.periodic else None
            magnetic = res["magmom_forces"][offset : offset + n].copy() if "magmom_forces" in res else None
            out[k] = c.with_labels(float(res["energy"][pos]), res["forces"][offset : offset + n].copy(), virial,
                                   magnetic)
            site[k] = res["energies"][offset : offset + n].copy()
            offset += n
    return out, site


def predict_dataset(mtp: MTP, dataset: Dataset, **kwargs) -> Dataset:
    """:func:`predict` returning a :class:`Dataset` with the same species map and names."""
    configs, _ = predict(mtp, dataset.configurations, **kwargs)
    return Dataset(tuple(configs), dataset.species, dataset.names)


def check_types(mtp: MTP, dataset: Dataset, source: str = "dataset") -> None:
    """Raise a clear error when the data uses a type index the potential does not have."""
    if dataset.max_type >= mtp.n_species:
        raise ValueError(
            f"{source} uses type index {dataset.max_type} but the potential has only "
            f"{mtp.n_species} species (types 0..{mtp.n_species - 1}); check --species"
        )
