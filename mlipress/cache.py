"""Where mlipress keeps what it can recompute, and the persistent XLA compilation cache.

Compiling the loss and its gradient is the largest fixed cost of a fit (a level-20 MTP: about a
minute of CPU, longer than hundreds of iterations on a small set; ``benchmarks/small_fit.py``).
The compiled executables depend only on the model's structure, the padded chunk shapes, the JAX
version and the XLA flags, so a second fit, an ensemble run as separate processes, a study that
resumes, or MD with the same potential can load them from disk instead. JAX keys the entries on
all of those, so a stale entry is never used.

:func:`enable_compilation_cache` (called on ``import mlipress``) points JAX's persistent cache at
``cache_root() / "jax"`` unless the user configured one (``JAX_COMPILATION_CACHE_DIR``) or set
``MLIPRESS_COMPILATION_CACHE=0``; only compilations over one second are stored, at most
``MAX_BYTES`` in all when the ``filelock`` package is installed (least recently used entries
are dropped; without it JAX cannot bound the cache: delete the folder to reclaim space).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "enable_compilation_cache", "MAX_BYTES"]

MAX_BYTES = 2 * 1024**3


def cache_root() -> Path:
    """``$MLIPRESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlipress``, else ``~/.cache/mlipress``."""
    root = os.environ.get("MLIPRESS_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mlipress"


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache under :func:`cache_root` (module docstring);
    returns its directory, or None when it is off or configured by the user."""
    import jax

    if os.environ.get("MLIPRESS_COMPILATION_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if jax.config.jax_compilation_cache_dir:
        return None
    path = cache_root() / "jax"
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    try:  # JAX bounds the cache only with the filelock package; without it, unbounded
        import filelock  # noqa: F401

        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    except (ImportError, AttributeError):
        pass
    return path
