"""Crash-safe file writing.

A potential or dataset file is often the only copy of hours of training. Writers therefore
write into a temporary file in the destination directory and atomically rename it over the
target (``os.replace``), so an exception, a kill or a full disk midway through leaves the
previous file untouched and never a half-written one.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from pathlib import Path

from mlipress import parallel

__all__ = ["atomic_open", "atomic_write"]

_MODES = {"w": "w", "wt": "w", "wb": "wb"}


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", encoding: str = "utf-8"):
    """Open ``path`` for writing so that it is replaced only when the block completes.

    ``mode`` is ``"w"``/``"wt"`` (text, ``encoding``, ``\\n`` line endings) or ``"wb"``.
    If the ``with`` block raises, the temporary file is removed and ``path`` keeps its
    old contents (or stays absent). An existing file's permission bits are preserved.
    In an MPI run (:mod:`mlipress.parallel`) only rank 0 writes; the other ranks write into
    a buffer that is dropped.
    """
    if mode not in _MODES:
        raise ValueError(f"atomic_open supports modes 'w', 'wt' and 'wb', not {mode!r}")
    if not parallel.is_root():
        with io.BytesIO() if _MODES[mode] == "wb" else io.StringIO() as sink:
            yield sink
        return
    target = Path(path)
    directory = target.parent
    tmp = directory / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    # os.open with 0o666 applies the process umask, like a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        binary = _MODES[mode] == "wb"
        handle = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding=encoding, newline="\n")
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path, data: str | bytes, encoding: str = "utf-8") -> None:
    """Write ``data`` (text or bytes) to ``path`` atomically (see :func:`atomic_open`)."""
    mode = "wb" if isinstance(data, (bytes, bytearray, memoryview)) else "w"
    with atomic_open(path, mode, encoding=encoding) as handle:
        handle.write(data)
