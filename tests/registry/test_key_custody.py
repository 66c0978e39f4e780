"""Key custody (G-BRE-3, G-SEC-2): a copy of the data directory alone decrypts nothing.

The master key is sealed in a systemd credential (real `systemd-creds`, host
key) or a passphrase-wrapped file (argon2id + AES-256-GCM); the data folder a
thief copies holds no SQLite header, no image, no template, no name, and
`mamoru` on that copy ends in one line. A plain key file on the data disk is
refused unless the loudly named development setting is on.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kernel.errors import KeyFileError, NotInitialisedError
from mamoru.settings import get_settings
from mamoru.wiring import index_spec, registry_paths, seal_plain_key
from registry.backup import archive as backup
from registry.backup.key_rotation import rotate_key
from registry.context import init_registry, open_registry
from registry.keys.custody import (
    KeyCustodySettings,
    LoadedCredential,
    PlainKeyFile,
    SystemdCredential,
    WrappedKeyFile,
    on_same_filesystem,
)
from registry.keys.master import new_master_key
from tests.registries import BIDEN, OBAMA, OBAMA2, PASSWORD, T0, Registry
from tests.registry.test_encryption_at_rest import _all_files, _contains_any_window, _windows

INSECURE = "MAMORU_KEY__INSECURE_PLAIN_KEY_FILE_ON_DATA_DISK"
NAME = "山田太郎 Yamada"
FEATURES = "紺色の帽子 navy cap"
PASSPHRASE = "a long store passphrase, typed at start-up"
HAS_SYSTEMD_CREDS = shutil.which("systemd-creds") is not None


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A `python -m mamoru` environment with the development setting removed (the default)."""
    env = {k: v for k, v in os.environ.items()
           if k != INSECURE and not k.startswith("MAMORU_KEY")}
    return {**env, "MAMORU_DATA_DIR": str(data_dir), "PYTHONWARNINGS": "ignore",
            "MAMORU_PASSWORD": PASSWORD, **extra}


def _mamoru(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mamoru", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def _populate(registry: Registry) -> set[bytes]:
    """Two registered people and a backup; the 16-byte windows of their stored templates."""
    entry_id = registry.register(OBAMA, display_name=NAME, features=FEATURES)
    registry.register(BIDEN, display_name="佐藤花子 Sato", features="red scarf")
    backup.create_backup(registry.ctx, actor=registry.user("admin"), now=T0)
    assert entry_id in registry.matches(OBAMA2)
    templates = [t.vector for e in registry.ctx.repo.entries()
                 for t in registry.ctx.repo.templates(e.entry_id)]
    assert len(templates) == 2
    return set().union(*(_windows(t) for t in templates))


def _assert_copy_reveals_nothing(copy: Path, windows: set[bytes]) -> None:
    files = _all_files(copy)
    assert any(p.name == "registry.db" for p in files) and any(p.suffix == ".bin" for p in files)
    assert not (copy / "master.key").exists()
    for path, data in files.items():
        assert b"SQLite format 3" not in data, path
        for magic in (b"\x89PNG\r\n\x1a\n", b"IHDR", b"JFIF", b"Exif\x00"):  # no image
            assert magic not in data, (path, magic)
        for text in (NAME.encode(), "佐藤花子".encode(), FEATURES.encode()):
            assert text not in data, (path, text)
        assert not _contains_any_window(data, windows), path


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mamoru: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.cli
def test_default_refuses_a_plain_key_file_on_the_data_disk(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default: start-up refuses <data_dir>/master.key, in the library and on the CLI."""
    registry.ctx.close()
    monkeypatch.delenv(INSECURE)
    settings = get_settings(data_dir=registry.data_dir)
    assert settings.key.insecure_plain_key_file_on_data_disk is False
    with pytest.raises(KeyFileError, match="same filesystem as the data"):
        open_registry(registry_paths(settings), settings.registry, index_spec(settings))
    line = _one_line_error(_mamoru(_env(registry.data_dir), "watchlist", "list", "--as", "admin"))
    assert "refusing the plain key file" in line and "INSECURE_PLAIN_KEY_FILE" in line
    # With the explicit setting (what the tests and the demo use) the same registry opens.
    allowed = _mamoru(_env(registry.data_dir, **{INSECURE: "true"}), "watchlist", "list",
                      "--as", "admin")
    assert allowed.returncode == 0, allowed.stderr


def test_init_refuses_a_plain_key_file_before_creating_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INSECURE)
    settings = get_settings(data_dir=tmp_path / "data")
    with pytest.raises(KeyFileError, match="refusing the plain key file"):
        init_registry(registry_paths(settings), settings.registry, index_spec(settings))
    assert not (tmp_path / "data").exists()


def test_plain_key_on_another_filesystem_is_allowed(tmp_path: Path) -> None:
    """Only the data disk is refused: a key on other media (here tmpfs) is not on it."""
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.fail("this check needs /dev/shm on another filesystem than the tests' tmp dir")
    other = Path("/dev/shm") / f"mamoru-test-{os.getpid()}" / "master.key"
    try:
        custody = PlainKeyFile(other, tmp_path, allow_on_data_disk=False)
        key = new_master_key()
        custody.store(key)
        assert custody.load().derive("index") == key.derive("index")
        assert on_same_filesystem(tmp_path / "data" / "master.key", tmp_path)
        assert not on_same_filesystem(other, tmp_path)
    finally:
        shutil.rmtree(other.parent, ignore_errors=True)


@pytest.mark.skipif(not HAS_SYSTEMD_CREDS, reason="systemd-creds not installed; see the "
                    "wrapped-file test for boxes without systemd")
@pytest.mark.cli
def test_systemd_credential_copy_of_data_dir_decrypts_nothing(
        registry: Registry, tmp_path: Path) -> None:
    """G-BRE-3: sealed with `mamoru key seal --systemd-credential`, the data copy is ciphertext."""
    windows = _populate(registry)
    registry.ctx.close()
    cred = tmp_path / "etc" / "master-key.cred"
    env = _env(registry.data_dir, **{INSECURE: "true"})  # the plain file is read once, to seal
    sealed = _mamoru(env, "key", "seal", "--systemd-credential", str(cred), "--with-key", "host")
    assert sealed.returncode == 0, sealed.stderr
    assert cred.is_file() and not (registry.data_dir / "master.key").exists()
    assert b"SQLite" not in cred.read_bytes()

    # The configured box opens with the credential; the default refusal no longer applies.
    with_cred = _env(registry.data_dir, MAMORU_KEY__CREDENTIAL_FILE=str(cred))
    listed = _mamoru(with_cred, "watchlist", "list", "--as", "admin")
    assert listed.returncode == 0, listed.stderr
    # Under a unit, LoadCredentialEncrypted= puts the decrypted key in $CREDENTIALS_DIRECTORY.
    unit_dir = tmp_path / "run-credentials"
    unit_dir.mkdir(mode=0o700)
    decrypted = subprocess.run(["systemd-creds", "decrypt", "--name=mamoru-master-key", str(cred),
                                str(unit_dir / "mamoru-master-key")], check=True)
    assert decrypted.returncode == 0
    in_unit = _mamoru(_env(registry.data_dir, CREDENTIALS_DIRECTORY=str(unit_dir)),
                      "watchlist", "list", "--as", "admin")
    assert in_unit.returncode == 0, in_unit.stderr

    copy = tmp_path / "stolen"
    shutil.copytree(registry.data_dir, copy)
    _assert_copy_reveals_nothing(copy, windows)
    line = _one_line_error(_mamoru(_env(copy), "watchlist", "list", "--as", "admin"))
    assert "no master key" in line
    line = _one_line_error(_mamoru(_env(copy, **{INSECURE: "true"}), "watchlist", "list",
                                   "--as", "admin"))
    assert "no master key" in line


@pytest.mark.cli
def test_wrapped_key_file_copy_of_data_dir_decrypts_nothing(
        registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without systemd: the wrapped key may even sit in the data folder; without the passphrase
    the copy decrypts nothing, and a wrong passphrase is one line."""
    windows = _populate(registry)
    registry.ctx.close()
    wrapped = registry.data_dir / "master.key.wrapped"
    monkeypatch.setenv("MAMORU_KEY_PASSPHRASE", PASSPHRASE)
    seal_plain_key(get_settings(data_dir=registry.data_dir), credential=None, with_key="auto",
                   wrapped=wrapped)
    monkeypatch.delenv(INSECURE)
    monkeypatch.setenv("MAMORU_KEY__WRAPPED_KEY_FILE", str(wrapped))
    settings = get_settings(data_dir=registry.data_dir)
    with open_registry(registry_paths(settings), settings.registry, index_spec(settings)) as ctx:
        assert len(ctx.repo.entries()) == 2

    copy = tmp_path / "stolen"
    shutil.copytree(registry.data_dir, copy)
    _assert_copy_reveals_nothing(copy, windows)
    stolen_wrapped = str(copy / "master.key.wrapped")
    line = _one_line_error(_mamoru(_env(copy, MAMORU_KEY__WRAPPED_KEY_FILE=stolen_wrapped),
                                   "watchlist", "list", "--as", "admin"))
    assert "needs its passphrase" in line
    line = _one_line_error(_mamoru(_env(copy, MAMORU_KEY__WRAPPED_KEY_FILE=stolen_wrapped,
                                        MAMORU_KEY_PASSPHRASE="guess"),
                                   "watchlist", "list", "--as", "admin"))
    assert "wrong passphrase" in line and PASSPHRASE not in line


def test_rotation_keeps_the_key_sealed(registry: Registry, tmp_path: Path) -> None:
    """`mamoru key rotate` writes the new key in the same custody; no plain key appears."""
    key = registry.ctx.master_key
    custody = WrappedKeyFile(tmp_path / "keys" / "master.key.wrapped", lambda: PASSPHRASE)
    custody.store(key)
    registry.ctx.close()
    (registry.data_dir / "master.key").unlink()
    paths = registry_paths(registry.settings)
    paths = dataclasses.replace(paths, custody=custody)
    with open_registry(paths, registry.settings.registry, registry.ctx.index_spec) as ctx:
        rotate_key(ctx, actor=ctx.repo.user_by_name("admin"), now=T0)  # type: ignore[arg-type]
        new_key = ctx.master_key
    assert new_key.derive("database") != key.derive("database")
    assert custody.load().derive("database") == new_key.derive("database")
    assert not (tmp_path / "keys" / "master.key.wrapped.next").exists()
    assert not any(p.name.startswith("master.key") for p in registry.data_dir.iterdir())


def test_unit_credential_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "mamoru-master-key"
    path.write_text(new_master_key()._raw.hex())  # noqa: SLF001 - what systemd writes there
    custody = LoadedCredential(path)
    assert custody.pending() is None
    with pytest.raises(KeyFileError, match="read-only"):
        custody.store(new_master_key(), replace=True)


@pytest.mark.skipif(not HAS_SYSTEMD_CREDS, reason="systemd-creds not installed")
def test_systemd_credential_with_the_wrong_name_is_one_clear_error(tmp_path: Path) -> None:
    cred = SystemdCredential(tmp_path / "k.cred", "mamoru-master-key", "host")
    cred.store(new_master_key())
    other = SystemdCredential(cred.path, "another-name", "host")
    with pytest.raises(KeyFileError, match="systemd-creds cannot decrypt"):
        other.load()
    with pytest.raises(NotInitialisedError):
        SystemdCredential(tmp_path / "missing.cred").load()


def test_settings_default_is_safe() -> None:
    assert KeyCustodySettings().insecure_plain_key_file_on_data_disk is False
