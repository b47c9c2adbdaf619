"""Shared test helpers: where the shared real data lives, and a fixture that skips without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    """``$MLIPRESS_SHARED_DATA`` or ``<repo>/../shared/data``; None when neither exists."""
    env = os.environ.get("MLIPRESS_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data directory; skips the test when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared data not found: set MLIPRESS_SHARED_DATA or place it at ../shared/data")
    return path


@pytest.fixture(scope="session")
def cu_level10_potential(shared_data) -> Path:
    """MLIP's fitted level-10 Cu potential (cubic/10/pot.mtp), used by the MD and LAMMPS tests."""
    path = shared_data / "mlip-reference" / "cubic" / "10" / "pot.mtp"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


class Interrupted(Exception):
    """Raised by :func:`interrupt_at`: a fit killed in the middle, as by a signal."""


def interrupt_at(iteration: int):
    """A fit callback that interrupts the fit at the first progress record at or after
    ``iteration``, before that iteration's checkpoint is written: a resumed fit restarts from
    the checkpoint before it."""

    def callback(record):
        if record.get("event") == "progress" and record["iteration"] >= iteration:
            raise Interrupted

    return callback
