"""Where the master key is kept, so that a stolen data disk does not carry its own key.

A leak of well-encrypted data whose key stayed safe is not a reportable leak
(APPI rule 7; G-BRE-3); a data disk that holds its own key file is a leak of
every face and record on it. So the key is kept, in this order of preference:

1. a systemd credential (`systemd-creds encrypt`, TPM2-bound where the box has
   a TPM, host-key otherwise). Units load it with `LoadCredentialEncrypted=`
   and the decrypted key appears only in `$CREDENTIALS_DIRECTORY` (a
   non-swappable, per-unit tmpfs); the CLI calls `systemd-creds decrypt` on the
   configured `.cred` file.
2. a passphrase-wrapped key file (argon2id + AES-256-GCM) for boxes without
   systemd: the passphrase is typed (or given in `MAMORU_KEY_PASSPHRASE`) and
   never stored.
3. a plain key file, which is refused when it lies on the data directory's
   filesystem unless `key.insecure_plain_key_file_on_data_disk` is on
   (development, tests, the demo).

Every kind is a file at `path`; a key rotation writes the new key of the same
kind to `<path>.next` and then moves it over `path` (`promote`).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field

from kernel.durable import write_private_file
from kernel.errors import KeyFileError, NotInitialisedError
from registry.keys.master import KEY_BYTES, MasterKey, key_file_damaged

CREDENTIAL_NAME = "mamoru-master-key"
WRAPPED_FORMAT = "mamoru-wrapped-key/1"
CredentialKey = Literal["auto", "host", "tpm2", "host+tpm2"]
Passphrase = Callable[[], str]


class KeyCustodySettings(BaseModel):
    """How the master key is kept (see the module docstring for the order)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    credential_file: Path | None = Field(
        default=None,
        description="systemd-creds encrypted master key, e.g. /etc/mamoru/master-key.cred "
                    "(`mamoru key seal --systemd-credential`)",
    )
    credential_name: str = Field(
        default=CREDENTIAL_NAME, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="the credential's name, as in LoadCredentialEncrypted=NAME:PATH",
    )
    credential_with_key: CredentialKey = Field(
        default="auto",
        description="systemd-creds --with-key: auto = TPM2 where present, else host",
    )
    wrapped_key_file: Path | None = Field(
        default=None,
        description="passphrase-wrapped master key (argon2id + AES-256-GCM) for boxes without "
                    "systemd; passphrase from MAMORU_KEY_PASSPHRASE or a prompt",
    )
    insecure_plain_key_file_on_data_disk: bool = Field(
        default=False,
        description="INSECURE, development and demo only: allow a plain key file on the data "
                    "directory's filesystem, so a stolen disk carries its own key",
    )


class KeyCustody:
    """One place a master key is kept: a file at `path` in some encoding."""

    kind = "key file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> MasterKey:
        """The master key; one clear `RegistryError` when it cannot be had."""
        if not self.path.is_file():
            raise NotInitialisedError(
                f"no master key: {self} does not exist (run `mamoru registry init`, or see "
                "deploy/README.md 'Key custody' for where the key is configured)"
            )
        self.check_allowed()
        return self._decode(self.path.read_bytes())

    def store(self, key: MasterKey, *, replace: bool = False) -> None:
        """Write `key` here (0600, atomically); never over an existing key unless `replace`."""
        self.check_allowed()
        if self.path.exists() and not replace:
            raise KeyFileError(f"{self} already exists; refusing to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(self.path, self._encode(key))

    def pending(self) -> KeyCustody | None:
        """Where a rotation parks the new key (`<path>.next`, same kind); None if read-only."""
        return self._sibling(self.path.with_name(self.path.name + ".next"))

    def promote(self, pending: KeyCustody) -> None:
        """Make the parked key this custody's key."""
        os.replace(pending.path, self.path)

    def check_allowed(self) -> None:
        """Refuse a custody the configuration does not allow (only plain files can be refused)."""

    def _sibling(self, path: Path) -> KeyCustody | None:
        raise NotImplementedError

    def _encode(self, key: MasterKey) -> bytes:
        raise NotImplementedError

    def _decode(self, blob: bytes) -> MasterKey:
        raise NotImplementedError


def _hex_key(text: bytes, source: KeyCustody) -> MasterKey:
    try:
        raw = bytes.fromhex(text.decode("ascii", errors="replace").strip())
    except ValueError:
        raise key_file_damaged(source.path, "not a hex-encoded key") from None
    if len(raw) != KEY_BYTES:
        raise key_file_damaged(source.path, f"does not hold a {KEY_BYTES * 8}-bit key")
    return MasterKey(raw)


def _hex(key: MasterKey) -> bytes:
    return (key._raw.hex() + "\n").encode("ascii")  # noqa: SLF001 - the one place keys are written


class PlainKeyFile(KeyCustody):
    """The key in the clear (hex, 0600): refused on the data disk unless explicitly allowed."""

    kind = "plain key file"

    def __init__(self, path: Path, data_dir: Path, *, allow_on_data_disk: bool) -> None:
        super().__init__(path)
        self.data_dir = data_dir
        self.allow_on_data_disk = allow_on_data_disk

    def check_allowed(self) -> None:
        if self.allow_on_data_disk or not on_same_filesystem(self.path, self.data_dir):
            return
        raise KeyFileError(
            f"refusing the plain key file {self.path}: it is on the same filesystem as the data "
            f"in {self.data_dir}, so a stolen disk carries its own key; seal it "
            "(`mamoru key seal`) or, for development only, set "
            "MAMORU_KEY__INSECURE_PLAIN_KEY_FILE_ON_DATA_DISK=true"
        )

    def load(self) -> MasterKey:
        if self.path.is_file():
            self.check_allowed()
            mode = stat.S_IMODE(self.path.stat().st_mode)
            if mode & 0o077:
                raise KeyFileError(f"key file {self.path} is readable by others (mode {mode:o}); "
                                   f"run `chmod 600 {self.path}`")
        return super().load()

    def _sibling(self, path: Path) -> KeyCustody:
        return PlainKeyFile(path, self.data_dir, allow_on_data_disk=self.allow_on_data_disk)

    def _encode(self, key: MasterKey) -> bytes:
        return _hex(key)

    def _decode(self, blob: bytes) -> MasterKey:
        return _hex_key(blob, self)


class SystemdCredential(KeyCustody):
    """A `systemd-creds` encrypted credential, decrypted by systemd-creds itself."""

    kind = "systemd credential"

    def __init__(self, path: Path, name: str = CREDENTIAL_NAME,
                 with_key: CredentialKey = "auto") -> None:
        super().__init__(path)
        self.name = name
        self.with_key = with_key

    def _sibling(self, path: Path) -> KeyCustody:
        return SystemdCredential(path, self.name, self.with_key)

    def _encode(self, key: MasterKey) -> bytes:
        return _systemd_creds("encrypt", f"--name={self.name}", f"--with-key={self.with_key}",
                              "-", "-", data=_hex(key), what=str(self))

    def _decode(self, blob: bytes) -> MasterKey:
        plain = _systemd_creds("decrypt", f"--name={self.name}", str(self.path), "-",
                               data=b"", what=str(self))
        return _hex_key(plain, self)


class LoadedCredential(KeyCustody):
    """The key systemd decrypted for this unit (`LoadCredentialEncrypted=`): read-only."""

    kind = "unit credential"

    def pending(self) -> KeyCustody | None:
        return None

    def store(self, key: MasterKey, *, replace: bool = False) -> None:
        raise KeyFileError(f"{self} is read-only; rotate or seal the key with the `mamoru` "
                           "command outside the unit")

    def _decode(self, blob: bytes) -> MasterKey:
        return _hex_key(blob, self)


class WrappedKeyFile(KeyCustody):
    """The key encrypted under a passphrase: argon2id (64 MiB, t=3) derives an AES-256-GCM key."""

    kind = "passphrase-wrapped key file"
    TIME_COST, MEMORY_KIB, PARALLELISM = 3, 64 * 1024, 4

    def __init__(self, path: Path, passphrase: Passphrase) -> None:
        super().__init__(path)
        self._passphrase = passphrase

    def _sibling(self, path: Path) -> KeyCustody:
        return WrappedKeyFile(path, self._passphrase)

    def _kek(self, header: dict[str, object], salt: bytes) -> bytes:
        passphrase = self._passphrase()
        if not passphrase:
            raise KeyFileError(f"{self} needs its passphrase (MAMORU_KEY_PASSPHRASE or a prompt)")
        return hash_secret_raw(passphrase.encode(), salt, time_cost=int(str(header["time_cost"])),
                               memory_cost=int(str(header["memory_kib"])),
                               parallelism=int(str(header["parallelism"])),
                               hash_len=KEY_BYTES, type=Type.ID)

    def _encode(self, key: MasterKey) -> bytes:
        # Not kernel.sealed: a key file is a documented JSON (argon2 parameters and salt in
        # clear), kept off the data disk for years; a second layout would need this reader too.
        header: dict[str, object] = {"format": WRAPPED_FORMAT, "kdf": "argon2id",
                                     "time_cost": self.TIME_COST, "memory_kib": self.MEMORY_KIB,
                                     "parallelism": self.PARALLELISM}
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        sealed = AESGCM(self._kek(header, salt)).encrypt(nonce, key._raw, _aad(header))  # noqa: SLF001
        body = {**header, "salt": _b64(salt), "nonce": _b64(nonce), "ciphertext": _b64(sealed)}
        return (json.dumps(body, indent=1) + "\n").encode("ascii")

    def _decode(self, blob: bytes) -> MasterKey:
        try:
            body = json.loads(blob)
            header = {k: body[k] for k in ("format", "kdf", "time_cost", "memory_kib",
                                           "parallelism")}
            salt, nonce = base64.b64decode(body["salt"]), base64.b64decode(body["nonce"])
            sealed = base64.b64decode(body["ciphertext"])
        except (ValueError, KeyError, TypeError):
            raise key_file_damaged(self.path, "not a mamoru wrapped key file") from None
        if header["format"] != WRAPPED_FORMAT or header["kdf"] != "argon2id":
            raise key_file_damaged(self.path, f"unknown format {header['format']!r}")
        try:
            raw = AESGCM(self._kek(header, salt)).decrypt(nonce, sealed, _aad(header))
        except InvalidTag:
            raise KeyFileError(f"wrong passphrase for {self} (or the file was altered)") from None
        return MasterKey(raw)


def _aad(header: dict[str, object]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _systemd_creds(*args: str, data: bytes, what: str) -> bytes:
    """Run systemd-creds; any failure is one line naming the credential, never the key."""
    tool = shutil.which("systemd-creds")
    if tool is None:
        raise KeyFileError(f"{what} needs systemd-creds, which is not installed on this box")
    result = subprocess.run([tool, *args], input=data, capture_output=True, check=False,
                            timeout=60)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines()
        raise KeyFileError(f"systemd-creds cannot {args[0]} {what}: "
                           f"{reason[-1] if reason else f'exit {result.returncode}'}")
    return result.stdout


def on_same_filesystem(path: Path, data_dir: Path) -> bool:
    """Whether `path` is inside `data_dir` or on the filesystem that holds it.

    Judged by the nearest existing folder of each, so it works before either exists.
    """
    resolved, data = path.resolve(), data_dir.resolve()
    if resolved.is_relative_to(data):
        return True
    return _device(resolved.parent) == _device(data)


def _device(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path.stat().st_dev


def resolve_custody(settings: KeyCustodySettings, *, data_dir: Path, key_file: Path,
                    passphrase: Passphrase) -> KeyCustody:
    """The custody the configuration names, in the order of the module docstring."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / settings.credential_name).is_file():
        return LoadedCredential(Path(credentials) / settings.credential_name)
    if settings.credential_file is not None:
        return SystemdCredential(settings.credential_file, settings.credential_name,
                                 settings.credential_with_key)
    if settings.wrapped_key_file is not None:
        return WrappedKeyFile(settings.wrapped_key_file, passphrase)
    return PlainKeyFile(key_file, data_dir,
                        allow_on_data_disk=settings.insecure_plain_key_file_on_data_disk)
