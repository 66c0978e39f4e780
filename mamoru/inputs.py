"""Reading the files a person names on the command line, with errors they can act on.

A missing, unreadable or wrong kind of path is the person's to fix: it ends
in one line naming the path (exit 2), never in a traceback.
"""

from __future__ import annotations

from pathlib import Path


class InputFileError(ValueError):
    """A file named on the command line cannot be read."""


def read_input_file(path: Path, *, max_bytes: int | None = None) -> bytes:
    """The file's bytes, or `InputFileError` saying why not (missing, a folder, unreadable)."""
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if not path.is_file():
        raise InputFileError(f"{path}: not a file")
    if max_bytes is not None and path.stat().st_size > max_bytes:
        raise InputFileError(f"{path}: larger than {max_bytes // (1024 * 1024)} MB")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
