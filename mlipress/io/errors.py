"""The one exception every reader in :mod:`mlipress.io` raises for a malformed file.

Users of MLIP files fix them by hand in an editor, so the message must point at the exact
place: the file, the 1-based line and the field (key, column or section) that is wrong.
It subclasses :class:`ValueError` so callers that already catch bad values keep working.
"""

from __future__ import annotations

import os


class FileFormatError(ValueError):
    """A file that cannot be read as the format it claims to be.

    Attributes: ``path`` (str), ``line`` (1-based int or None when the problem is not tied
    to one line), ``field`` (the key/column/section name, or None) and ``message``.
    ``str(err)`` reads ``"pot.mtp, line 12, field 'radial_basis_size': expected an integer, got 'x'"``.
    """

    def __init__(self, path, message: str, *, line: int | None = None, field: str | None = None):
        self.path = os.fspath(path) if path is not None else "<string>"
        self.line = None if line is None else int(line)
        self.field = field
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.path]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return f"{', '.join(parts)}: {self.message}"

    def __str__(self) -> str:
        return self._render()

    def __reduce__(self):
        # Keep the keyword-only attributes through pickling (multiprocessing workers).
        return (_rebuild, (self.path, self.message, self.line, self.field))


def _rebuild(path, message, line, field):
    return FileFormatError(path, message, line=line, field=field)
