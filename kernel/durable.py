"""Writing and erasing private files so that a crash never leaves half of one.

Every file mamoru writes holds personal data or keys (encrypted, but still):
it is created 0600 from its first byte, in a folder made 0700 by
`make_private_dir` (each level it creates, whatever the umask), written to a temporary name in the
same folder, fsynced, renamed over the target, and the folder is fsynced so
the rename itself survives a power cut. Erasure overwrites before unlinking
(G-REG-4); on flash or copy-on-write storage that may not reach every old
block, which is why everything is also encrypted and keys can be rotated.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_WIPE_CHUNK = 1 << 20


def temp_prefix(path: Path) -> str:
    """Temporary files of `path` start with this, so a sweep can find crashed writes."""
    return f".{path.name}."


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> Path:
    """Create `path` and its missing parents as 0700 folders, whatever the umask.

    `mkdir(parents=True, mode=0o700)` gives the mode to the last folder only,
    and cuts it by the umask: `edge/` of `edge/outbox` came out 0755. Folders
    that exist already are left as they are (a caller that owns one tightens
    it itself).
    """
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another process
        os.chmod(folder, 0o700)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a folder")
    return path


def write_private_file(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably, mode 0600."""
    with private_file_writer(path) as handle:
        handle.write(data)


@contextlib.contextmanager
def private_file_writer(path: Path) -> Iterator[BinaryIO]:
    """A handle whose bytes replace `path` atomically and durably, mode 0600, on a clean exit.

    For files written piece by piece (a backup streamed through `kernel.sealed`,
    larger than memory): the same temporary name, fsync, rename and folder fsync
    as `write_private_file`; if the block raises, the temporary file is removed
    and `path` is left as it was.
    """
    fd, temp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            fd = -1  # owned by the handle now
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_directory(path.parent)


def wipe_file(path: Path) -> bool:
    """Overwrite with zeros, fsync, unlink; True if the file existed. Idempotent."""
    try:
        handle = path.open("r+b")
    except FileNotFoundError:
        return False
    with handle:
        size = os.fstat(handle.fileno()).st_size
        zeros = bytes(min(size, _WIPE_CHUNK))
        written = 0
        while written < size:
            written += handle.write(zeros[: size - written])
        handle.flush()
        os.fsync(handle.fileno())
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fsync_directory(path.parent)
    return True
