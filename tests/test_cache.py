"""The persistent compilation cache: on by default under MLIPRESS_CACHE_DIR, off on request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import jax, jax.numpy as jnp, mlipress
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
print(jax.config.jax_compilation_cache_dir)
print(float(jax.jit(lambda x: jnp.sin(x) * 3.0)(jnp.ones(3)).sum()))
"""


def run(tmp_path, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    full.update(MLIPRESS_CACHE_DIR=str(tmp_path), **env)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=full, capture_output=True, text=True, check=True)
    return out.stdout.split("\n")


def test_compiled_code_is_cached_under_the_cache_dir(tmp_path):
    directory, value, _ = run(tmp_path)
    assert directory == str(tmp_path / "jax")
    assert float(value) == pytest.approx(3 * 3 * 0.8414709848078965, rel=1e-15)
    entries = [p for p in (tmp_path / "jax").iterdir() if "jit__lambda" in p.name]
    assert entries, list((tmp_path / "jax").iterdir())
    # a second process finds the entry: nothing new is written
    run(tmp_path)
    assert sorted(p.name for p in (tmp_path / "jax").iterdir() if "jit__lambda" in p.name) == sorted(p.name for p in entries)


def test_cache_can_be_switched_off(tmp_path):
    directory, _, _ = run(tmp_path, MLIPRESS_COMPILATION_CACHE="0")
    assert directory in ("None", "")
    assert not (tmp_path / "jax").exists()
