"""Checkpoints of a fit: the optimiser state (any NamedTuple state of :mod:`mlipress.optim`) and a
JSON header in one ``.npz``, written atomically.

Contract: :func:`save` writes every array of the state exactly (float64 bits), every scalar
exactly (``repr`` of floats), and the nesting of NamedTuples, tuples, lists and dicts (BFGS's
inverse Hessian, R-BFGS's frame, MFRA's and TTRA's inner BFGS state and rank history alike).
Registered pytrees without a structure of their own in the file (a model's ``Params``) are
stored as their leaves and rebuilt with the structure of a *template* state, the state a fresh
start of the same fit makes (:func:`load`). So a resumed fit continues from bit-identical
numbers. No pickles: the file is data only.
"""

from __future__ import annotations

import io
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlipress.io.atomic import atomic_write

__all__ = ["VERSION", "save", "load"]

VERSION = 2

_SCALARS = {"bool": bool, "int": int, "float": float, "str": str}


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _encode(value, path: str, arrays: dict) -> dict:
    if value is None:
        return {"k": "none"}
    if isinstance(value, (bool, np.bool_)):
        return {"k": "scalar", "t": "bool", "v": bool(value)}
    if isinstance(value, (int, np.integer)):
        return {"k": "scalar", "t": "int", "v": int(value)}
    if isinstance(value, (float, np.floating)):
        return {"k": "scalar", "t": "float", "v": repr(float(value))}
    if isinstance(value, str):
        return {"k": "scalar", "t": "str", "v": value}
    if isinstance(value, (np.ndarray, jax.Array)):
        arrays[path] = np.asarray(value)
        return {"k": "array", "jax": isinstance(value, jax.Array)}
    if _is_namedtuple(value):
        return {"k": "namedtuple", "type": type(value).__name__,
                "fields": {f: _encode(getattr(value, f), f"{path}/{f}", arrays) for f in value._fields}}
    if isinstance(value, (tuple, list)):
        return {"k": type(value).__name__, "items": [_encode(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"k": "dict", "items": {k: _encode(v, f"{path}/{k}", arrays) for k, v in value.items()}}
    leaves = jax.tree_util.tree_leaves(value)
    for i, leaf in enumerate(leaves):
        arrays[f"{path}/{i}"] = np.asarray(leaf)
    return {"k": "tree", "n": len(leaves), "jax": [isinstance(x, jax.Array) for x in leaves]}


def _state_types() -> dict:
    """The NamedTuple types of the optimiser states, by name."""
    import importlib

    modules = [importlib.import_module(f"mlipress.optim.{m}") for m in ("augment", "bfgs", "fixed_rank", "mfra", "rbfgs")]
    return {name: obj for mod in modules for name, obj in vars(mod).items()
            if isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")}


def _decode(meta: dict, path: str, z, template) -> Any:
    k = meta["k"]
    if k == "none":
        return None
    if k == "scalar":
        return _SCALARS[meta["t"]](meta["v"])
    if k == "array":
        a = z[path]
        return jnp.asarray(a) if meta["jax"] else np.asarray(a)
    if k == "namedtuple":
        if _is_namedtuple(template) and type(template).__name__ == meta["type"]:
            cls = type(template)
        elif template is None and meta["type"] in _state_types():
            cls = _state_types()[meta["type"]]  # e.g. an MFRA augmentation record, absent at the start
        else:
            raise ValueError(f"checkpoint holds a {meta['type']} at {path}, the fit makes {type(template).__name__}")
        return cls(**{f: _decode(m, f"{path}/{f}", z, getattr(template, f, None)) for f, m in meta["fields"].items()})
    if k in ("tuple", "list"):
        items = [_decode(m, f"{path}/{i}", z, template[i] if isinstance(template, (tuple, list)) and i < len(template)
                         else None) for i, m in enumerate(meta["items"])]
        return tuple(items) if k == "tuple" else items
    if k == "dict":
        return {key: _decode(m, f"{path}/{key}", z, template.get(key) if isinstance(template, dict) else None)
                for key, m in meta["items"].items()}
    # a registered pytree: the template's structure, the file's leaves
    leaves = [z[f"{path}/{i}"] for i in range(meta["n"])]
    treedef = jax.tree_util.tree_structure(template)
    if treedef.num_leaves != len(leaves):
        raise ValueError(f"checkpoint: {path} has {len(leaves)} arrays, the fit's parameters {treedef.num_leaves}")
    conv = [jnp.asarray(a) if is_jax else np.asarray(a) for a, is_jax in zip(leaves, meta["jax"])]
    return jax.tree_util.tree_unflatten(treedef, conv)


def save(path, state, header: dict) -> None:
    """Write ``state`` and the JSON-serialisable ``header`` atomically to ``path``."""
    arrays: dict = {}
    meta = _encode(state, "state", arrays)
    header = {**header, "version": VERSION, "state": meta}
    buf = io.BytesIO()
    np.savez(buf, __header__=np.array(json.dumps(header)), **arrays)
    atomic_write(path, buf.getvalue())


def load(path, template) -> tuple[dict, Any]:
    """``(header, state)`` from ``path``; ``template``: a state of the same fit (its type and
    the structure of its parameter pytrees)."""
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["__header__"]))
        if header.get("version") != VERSION:
            raise ValueError(f"checkpoint {path}: unsupported version {header.get('version')} (expected {VERSION})")
        state = _decode(header["state"], "state", z, template)
    return header, state
