"""Encryption at rest (G-SEC-2, G-BRE-3): a stolen box holds ciphertext, not faces or names.

Every file the registry writes is searched for what a thief would look for:
the SQLite header, a registered person's name and features, and any 16-byte
run of a stored face template's float32 bytes. Opening fails closed: a wrong
key changes no byte, a key file others can read is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from kernel.errors import KeyFileError, NotInitialisedError, WrongKeyError
from mamoru.wiring import index_spec, registry_paths
from registry.backup import archive as backup
from registry.context import open_registry
from registry.keys.master import load_key_file, new_master_key, write_key_file
from tests.registries import BIDEN, OBAMA, OBAMA2, T0, Registry

NAME = "山田太郎 Yamada"
FEATURES = "紺色の帽子 navy cap, scar above left eyebrow"
WINDOW = 16


def _windows(blob: bytes, size: int = WINDOW) -> set[bytes]:
    return {blob[i : i + size] for i in range(len(blob) - size + 1)}


def _contains_any_window(data: bytes, windows: set[bytes]) -> bool:
    """Whether any of `windows` (all WINDOW bytes long) occurs anywhere in `data`.

    A numpy pre-filter on the first 8 bytes at every offset, then an exact check.
    """
    if len(data) < WINDOW:
        return False
    prefixes = np.array(
        sorted({int.from_bytes(w[:8], "little") for w in windows}), dtype=np.uint64
    )
    for shift in range(8):
        usable = (len(data) - shift) // 8 * 8
        words = np.frombuffer(data, dtype="<u8", count=usable // 8, offset=shift)
        for k in np.flatnonzero(np.isin(words, prefixes)):
            start = shift + 8 * int(k)
            if data[start : start + WINDOW] in windows:
                return True
    return False


def _all_files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(b).hexdigest()
            for p, b in _all_files(root).items()}


def test_window_search_finds_a_planted_template(registry: Registry) -> None:
    """The search below is only worth something if it finds a template that is there."""
    vector = registry.embedding(OBAMA).astype(np.float32).tobytes()
    windows = _windows(vector)
    assert _contains_any_window(b"x" * 1001 + vector[37:60] + b"y" * 999, windows)
    assert not _contains_any_window(os.urandom(1 << 16), windows)


def test_no_plaintext_in_any_registry_file(registry: Registry) -> None:
    """G-SEC-2/G-BRE-3: databases, audit trail, index, evidence and backups are all ciphertext."""
    entry_id = registry.register(OBAMA, display_name=NAME, features=FEATURES)
    registry.register(BIDEN, display_name="佐藤花子 Sato", features="red scarf")
    backup.create_backup(registry.ctx, actor=registry.user("admin"), now=T0)
    view_entry = registry.ctx.repo.entry(entry_id)
    assert view_entry is not None and view_entry.display_name == NAME  # really stored
    assert entry_id in registry.matches(OBAMA2)

    paths = registry.ctx.paths
    templates = [t.vector for e in registry.ctx.repo.entries()
                 for t in registry.ctx.repo.templates(e.entry_id)]
    assert len(templates) == 2 and all(len(t) == 4 * registry.ctx.index_spec.dim for t in templates)
    windows = set().union(*(_windows(t) for t in templates))
    registry.ctx.close()  # everything flushed; what a thief would copy

    files = _all_files(registry.data_dir)
    named = [paths.database, paths.audit_database, paths.index,
             *paths.evidence.glob("*.bin"), *paths.backups.glob("*.backup")]
    assert len(list(paths.evidence.glob("*.bin"))) == 2
    assert len(list(paths.backups.glob("*.backup"))) == 1
    for path in named:
        assert path in files, path
    secret_texts = [NAME.encode(), "山田太郎".encode(), b"Yamada", FEATURES.encode(),
                    "紺色の帽子".encode(), b"navy cap", "佐藤花子".encode()]
    for path, data in files.items():
        if path == paths.key_file:
            continue
        assert b"SQLite format 3" not in data, path
        for text in secret_texts:
            assert text not in data, (path, text)
        assert not _contains_any_window(data, windows), path
    # The evidence holds real images: PNG is not readable without the key either.
    for path in paths.evidence.glob("*.bin"):
        assert b"\x89PNG" not in files[path] and b"IHDR" not in files[path]


def test_wrong_key_is_refused_and_changes_nothing(registry: Registry) -> None:
    """G-SEC-2: fail closed before anything is written; no byte of any file changes."""
    entry_id = registry.register(OBAMA)
    registry.ctx.close()
    key_file = registry.ctx.paths.key_file
    right = load_key_file(key_file)
    write_key_file(key_file, new_master_key(), replace=True)  # valid, 0600, but another key
    before = _digests(registry.data_dir)

    with pytest.raises(WrongKeyError, match="Nothing was changed"):
        open_registry(registry_paths(registry.settings), registry.settings.registry,
                      index_spec(registry.settings))

    assert _digests(registry.data_dir) == before
    write_key_file(key_file, right, replace=True)
    ctx = registry.reopen()
    entry = ctx.repo.entry(entry_id)
    assert entry is not None and entry.state.value == "active"
    assert ctx.audit.verify().ok


def test_key_file_readable_by_others_is_refused(registry: Registry) -> None:
    """G-SEC-2: a key others can read is no protection; refuse it and say how to fix it."""
    registry.ctx.close()
    key_file = registry.ctx.paths.key_file
    os.chmod(key_file, 0o644)
    before = _digests(registry.data_dir)
    with pytest.raises(KeyFileError, match="chmod 600"):
        open_registry(registry_paths(registry.settings), registry.settings.registry,
                      index_spec(registry.settings))
    assert _digests(registry.data_dir) == before
    os.chmod(key_file, 0o600)
    registry.reopen()


def test_missing_key_file_says_how_to_initialise(registry: Registry) -> None:
    """G-SEC-2: without its key the registry does not open, and the message names the fix."""
    registry.ctx.close()
    registry.ctx.paths.key_file.unlink()
    with pytest.raises(NotInitialisedError, match="`mamoru registry init`"):
        open_registry(registry_paths(registry.settings), registry.settings.registry,
                      index_spec(registry.settings))
    assert not registry.ctx.paths.key_file.exists()  # never silently re-created


def test_missing_registry_says_how_to_initialise(tmp_path: Path, registry: Registry) -> None:
    """No registry where the configuration points: refuse, create nothing."""
    paths = registry_paths(registry.settings)
    empty = dataclasses.replace(paths, data_dir=tmp_path / "nowhere")
    with pytest.raises(NotInitialisedError, match="`mamoru registry init`"):
        open_registry(empty, registry.settings.registry, index_spec(registry.settings))
    assert not (tmp_path / "nowhere").exists()
