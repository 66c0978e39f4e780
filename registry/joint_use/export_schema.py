"""The allow-list: exactly what may leave a store under joint use (G-SHR-2).

`SharedEntry` is the one schema of an entry in a bundle. It lists the
permitted items and nothing else; every model here refuses unknown fields
(`extra="forbid"`), and `to_wire()` re-validates before anything is
serialised, so a field smuggled in past the constructor (`model_construct`,
attribute assignment) makes serialisation raise instead of leaving the store.

Never shared: the person's name (`Entry.display_name`), address, phone
number, staff notes (incident descriptions), the proposer's and approver's
identities, decision reasons, the confirmation reference (police report
number). Those stay with the store where the incident happened (G-SHR-2).

`shared_entry(...)` is the only place that reads a registry entry to build
one: it names each permitted field explicitly rather than copying records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from registry.clock import Timestamp
from registry.domain import Entry, Incident, OffenceCategory, TemplateRecord
from registry.joint_use.errors import ForbiddenFieldError
from registry.scheme import MEMBER_ID_PATTERN
from registry.text import TextRule

ENTRY_ID_PATTERN = r"^[0-9a-f]{32}$"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_BYTES = 8 << 20
MAX_TEXT = 2000
# A member's free text obeys this store's one rule (`registry.text`), at the wire's length.
SHARED_TEXT = TextRule(MAX_TEXT, multiline=True)



def _png(value: bytes) -> bytes:
    if not value.startswith(PNG_SIGNATURE):
        raise ValueError("a shared image must be PNG bytes")
    if len(value) > MAX_IMAGE_BYTES:
        raise ValueError(f"a shared image must be at most {MAX_IMAGE_BYTES} bytes")
    return value


PngBytes = Annotated[bytes, AfterValidator(_png)]


class AllowListed(BaseModel):
    """Base of every model that goes into a bundle: unknown fields are refused.

    Bytes travel as base64 text in the canonical JSON.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64",
                              val_json_bytes="base64")

    @classmethod
    def build(cls, **fields: Any) -> Any:
        """Construct, turning an unknown field into `ForbiddenFieldError` (G-SHR-2)."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            extra = [str(e["loc"][-1]) for e in exc.errors() if e["type"] == "extra_forbidden"]
            if extra:
                raise ForbiddenFieldError(
                    f"{cls.__name__} refuses field(s) outside the joint-use allow-list "
                    f"(G-SHR-2): {', '.join(extra)}"
                ) from None
            raise


class SharedOffence(AllowListed):
    """One confirmed offence: when, what kind, what damage. No reference number, no notes."""

    occurred_at: Timestamp
    category: OffenceCategory
    damage: Annotated[str, SHARED_TEXT] = ""


class SharedTemplate(AllowListed):
    """One face template, with the model pack it belongs to (only that pack can match it)."""

    pack: str = Field(min_length=1, max_length=255)
    dim: int = Field(ge=1, le=4096)
    vector: bytes  # float32, unit length
    image: int | None = Field(default=None, ge=0, description="index into the entry's images")

    @model_validator(mode="after")
    def _unit_vector(self) -> SharedTemplate:
        if len(self.vector) != 4 * self.dim:
            raise ValueError(f"a {self.dim}-D template has {4 * self.dim} bytes")
        values = np.frombuffer(self.vector, dtype=np.float32)
        if not np.isfinite(values).all() or abs(float(np.linalg.norm(values)) - 1.0) > 1e-3:
            raise ValueError("a template must be a finite unit-length vector")
        return self


class SharedEntry(AllowListed):
    """Everything a member receives about one person: the G-SHR-2 items, nothing more."""

    origin_member: str = Field(pattern=MEMBER_ID_PATTERN)
    origin_entry_id: str = Field(pattern=ENTRY_ID_PATTERN)
    revision: int = Field(ge=1, description="bumps with every correction at the origin")
    offences: tuple[SharedOffence, ...] = Field(min_length=1, max_length=100)
    features: Annotated[str, SHARED_TEXT] = ""
    images: tuple[PngBytes, ...] = Field(default=(), max_length=16)
    templates: tuple[SharedTemplate, ...] = Field(min_length=1, max_length=64)
    expires_at: Timestamp

    @model_validator(mode="after")
    def _image_references(self) -> SharedEntry:
        for template in self.templates:
            if template.image is not None and template.image >= len(self.images):
                raise ValueError("a template refers to an image the entry does not carry")
        return self

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready form; refuses any field outside the allow-list."""
        return to_wire(self)


def to_wire(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict of an allow-listed model, re-validated so nothing extra slips out.

    A model built with `model_construct(...)` or given an attribute after
    construction carries fields no validator saw; they are caught here
    (`ForbiddenFieldError`), before a byte is serialised.
    """
    _refuse_unlisted(model)
    data = model.model_dump(mode="json")
    try:
        type(model).model_validate(data)
    except ValidationError as exc:
        raise ForbiddenFieldError(
            f"{type(model).__name__} does not validate against the allow-list: "
            f"{exc.errors()[0]['msg']}"
        ) from None
    return data


def _refuse_unlisted(model: BaseModel) -> None:
    allowed = type(model).model_fields
    extra = sorted((set(model.__dict__) | set(model.__pydantic_extra__ or {})) - set(allowed))
    if extra:
        raise ForbiddenFieldError(
            f"{type(model).__name__} refuses field(s) outside the joint-use allow-list "
            f"(G-SHR-2): {', '.join(extra)}"
        )
    for name in allowed:
        value = getattr(model, name)
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, BaseModel):
                _refuse_unlisted(item)


def shared_entry(*, origin_member: str, entry: Entry, incidents: Sequence[Incident],
                 templates: Sequence[TemplateRecord], images: dict[str, bytes]) -> SharedEntry:
    """Build the shared form of one of this store's entries, field by permitted field.

    `images` maps evidence image ids to their (already masked) PNG bytes.
    Refuses (`ForbiddenFieldError`) if the entry's name appears in a shared
    text field: a name typed into "features" must not leave the store either.
    """
    if entry.expires_at is None:
        raise ForbiddenFieldError(f"entry {entry.entry_id} has no expiry; only active entries "
                                  "are shared")
    image_ids = list(images)
    shared = SharedEntry(
        origin_member=origin_member,
        origin_entry_id=entry.entry_id,
        revision=entry.revision,
        offences=tuple(SharedOffence(occurred_at=i.occurred_at, category=i.category,
                                     damage=i.damage) for i in incidents),
        features=entry.features,
        images=tuple(images[i] for i in image_ids),
        templates=tuple(
            SharedTemplate(pack=t.pack, dim=len(t.vector) // 4, vector=t.vector,
                           image=image_ids.index(t.image_id) if t.image_id in images else None)
            for t in templates
        ),
        expires_at=entry.expires_at,
    )
    name = entry.display_name.strip()
    if name and any(name in text for text in
                    (shared.features, *(o.damage for o in shared.offences))):
        raise ForbiddenFieldError(
            f"entry {entry.entry_id}: the person's name appears in a shared text field "
            "(features or damage); correct it before sharing (G-SHR-2)"
        )
    return shared
