"""Files of compressed MTPs: a standard dense ``.mtp`` plus a factored sidecar.

A compressed potential ``X.mtp`` is written as two files:

1. ``X.mtp`` -- a standard MLIP ``.mtp`` with ``radial_coeffs = param.dense()`` (eq. (5):
   ``C[z_i, z_j, mu, b]``), read by ``mlipress evaluate`` / MLIP itself with the same
   predictions as the factored model (to round-off, ~1e-12 relative).
2. ``X.mtp.factors.npz`` (:func:`sidecar_path`) -- the radial layer, a NumPy ``.npz`` (no
   pickles) with

   - ``header``: a JSON string ``{"format": "mlipress-factored-radial", "version": 1,
     "kind": <layer kind>, "spec": "mf:8", "rank": r | [r1, r2, r3] | null,
     "dims": [N_T, N_f, N_b], "mtp_sha256": <sha256 of the X.mtp text>}``;
   - the layer's arrays, as its ``arrays()`` names them: ``U`` (N_T^2, r), ``V`` (N_f N_b, r)
     for MF (section II.C, ``reshape(C, [N_T^2, N_f N_b]) = U V^T``), ``G1..G4`` for TT,
     ``C`` for dense;
   - the other fields of the params, bit-exact (MTP: ``species``, ``moment``, ``scaling``;
     ACE: ``species``, ``coeffs``, ``scaling``).

The same pair works for any model of the contract with a ``radial`` layer: the potential file
is the model's own (``model.write``; an ACE's is a B-basis ``.yaml``), the layer class comes
from ``model.radial_layer(kind)``.

This module knows no layer kinds: ``kind`` is the layer's registered name
(:data:`mlipress.models.layers.LAYERS`) and the layer writes and reads its own arrays
(``arrays()`` / ``from_arrays(arrays, dims)``), so any registered layer is stored; the names
``header`` and the other params fields are reserved. Both files are written
atomically (the .mtp first). :func:`read_compressed` returns the ``MTP`` (from the .mtp, with
everything but the radial block) and the params with the radial layer, identical (bit for
bit) to what was written; it checks that the sidecar belongs to the ``.mtp`` (hash) and that
the shapes agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from mlipress import parallel
from mlipress.io.atomic import atomic_write
from mlipress.io import read_potential
from mlipress.models.layers import RadialSpec, kind_of

__all__ = ["FORMAT", "VERSION", "sidecar_path", "write_compressed", "read_compressed", "radial_kind"]

FORMAT = "mlipress-factored-radial"
VERSION = 1


def sidecar_path(path) -> Path:
    """``X.mtp`` -> ``X.mtp.factors.npz``."""
    path = Path(path)
    return path.with_name(path.name + ".factors.npz")


def radial_kind(param) -> str:
    """The registered kind of a radial layer (``"dense"``, ``"mf"``, ``"tt"``, ...);
    ``TypeError`` for anything that is not a registered layer."""
    return kind_of(param)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _layer_kind(model, radial) -> str:
    """The kind a model knows ``radial`` by (its ``radial_layer(kind)`` is the layer's class)."""
    kind = getattr(type(radial), "kind", "")
    try:
        known = model.radial_layer(RadialSpec(kind)) is type(radial)
    except ValueError:
        known = False
    if not known:
        raise TypeError(f"{type(radial).__name__} is not a radial layer of {type(model).__name__}")
    return kind


def _other_fields(params) -> list[str]:
    return [f.name for f in dataclasses.fields(params) if f.name != "radial"]


def write_compressed(path, mtp, params, spec: str | None = None) -> tuple[Path, Path]:
    """Write the dense potential file at ``path`` and the factored sidecar next to it.

    ``mtp``: the potential's structure, any model of the contract with a ``radial`` layer field
    (an MTP: ``.mtp``; an ACE: B-basis ``.yaml``); its coefficients are replaced by ``params``,
    whose ``radial`` is one of the model's layers (``mtp.radial_layer(kind)``);
    ``spec``: optional spec string recorded in the header (e.g. ``"rmf:6"``).
    Returns ``(potential_path, sidecar_path)``.
    """
    path = Path(path)
    radial = params.radial
    kind = _layer_kind(mtp, radial)
    if not parallel.is_root():  # MPI: rank 0 writes (and reads back the text it hashes)
        return path, sidecar_path(path)
    mtp.with_params(params).write(path)
    text = path.read_text(encoding="utf-8")
    rank = radial.rank
    header = {
        "format": FORMAT, "version": VERSION, "kind": kind, "spec": spec,
        "rank": list(rank) if isinstance(rank, tuple) else rank,
        "dims": list(radial.dims), "mtp_sha256": _sha(text),
    }
    arrays = radial.arrays()
    others = _other_fields(params)
    clash = sorted(set(arrays) & ({"header"} | set(others)))
    if clash:
        raise ValueError(f"radial layer {kind!r} names arrays {clash}, reserved in the sidecar")
    arrays.update({name: np.asarray(getattr(params, name), dtype=np.float64) for name in others})
    buf = io.BytesIO()
    np.savez(buf, header=np.array(json.dumps(header)), **arrays)
    side = sidecar_path(path)
    atomic_write(side, buf.getvalue())
    return path, side


def read_compressed(path, check_hash: bool = True):
    """Read ``path`` (a potential file) and its sidecar -> ``(model, params, header)``.

    ``params.radial`` is the factored parametrisation exactly as written; ``model`` is the
    dense potential of the file (:func:`mlipress.io.read_potential`). Raises ``ValueError`` when
    the sidecar is missing, of an unknown format/version, written for another file
    (``check_hash``) or of the wrong shape.
    """
    path = Path(path)
    side = sidecar_path(path)
    text = path.read_text(encoding="utf-8")
    mtp = read_potential(path)
    if not side.exists():
        raise ValueError(f"{path}: no factored sidecar {side}")
    base = mtp.params()
    others = _other_fields(base)
    with np.load(side, allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise ValueError(f"{side}: not a {FORMAT} v{VERSION} file")
        if check_hash and header.get("mtp_sha256") != _sha(text):
            raise ValueError(f"{side} was written for a different {path.name} (hash mismatch)")
        kind = header["kind"]
        try:
            layer = mtp.radial_layer(RadialSpec(kind))
        except ValueError:
            raise ValueError(f"{side}: unknown radial kind {kind!r}") from None
        layer_arrays = {name: z[name] for name in z.files if name != "header" and name not in others}
        fields = {k: jnp.asarray(z[k]) for k in others}
    dims = tuple(int(d) for d in header["dims"])
    try:
        radial = layer.from_arrays(layer_arrays, dims)
    except ValueError as e:
        raise ValueError(f"{side}: {e}") from None
    if tuple(radial.shape) != tuple(mtp.radial_shape):
        raise ValueError(f"{side}: radial shape {radial.shape} does not match {path} {mtp.radial_shape}")
    return mtp, base.replace(radial=radial, **fields), header
