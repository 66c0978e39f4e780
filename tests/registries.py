"""A real registry per test: SQLCipher files, real faces, real ONNX inference, no mocks.

The `registry` fixture (tests/conftest.py) gives each test one; this module holds
what tests import to drive it: the `Registry` handle, the users, the photos, T0.

Users (G-SEC-1): `admin` (admin), `staff` (staff), `mgr1` and `mgr2` (two
managers, so the two-person rule of G-REG-2 can be exercised), `auditor`, all
with recorded training except `untrained` (a staff user without it).

Building the users costs one argon2 hash each (~0.3 s), so the registry is
initialised once per session and each test gets its own byte copy of it in
its own `tmp_path`: every test still starts from a fresh, unused registry with
its own files, and nothing one test does can be seen by another.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kernel.watchlist_index import Hit, WatchlistIndex
from mamoru.settings import MamoruSettings
from mamoru.wiring import index_spec, registry_paths
from models.engine import FaceEngine
from registry.accounts import users
from registry.context import RegistryContext, open_registry
from registry.domain import ConfirmationKind, IncidentInput, OffenceCategory, Role, User
from registry.watchlist import approval
from tests.faces import image, main_face_embedding

Image = npt.NDArray[np.uint8]
Vector = npt.NDArray[np.float32]

PACK = "yunet-sface"  # the default pack, the one index_spec(settings) indexes
PASSWORD = "correct horse battery"
T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)  # "now" of every registration unless a test says

OBAMA = "face_recognition/obama.jpg"
OBAMA2 = "face_recognition/obama2.jpg"  # a different photo of the same person: the probe
BIDEN = "face_recognition/biden.jpg"
GROUP = "insightface/t1.jpg"  # six people; the largest face is taken as the subject
NO_FACE = "pyfeat/free-mountain-vector-01.jpg"

USERS: tuple[tuple[str, Role, bool], ...] = (
    ("admin", Role.ADMIN, True),
    ("staff", Role.STAFF, True),
    ("mgr1", Role.MANAGER, True),
    ("mgr2", Role.MANAGER, True),
    ("auditor", Role.AUDITOR, True),
    ("untrained", Role.STAFF, False),
)


def add_test_users(ctx: RegistryContext) -> None:
    """Every user of `USERS` with `PASSWORD`, trained (G-SEC-1) where the table says so."""
    for name, role, _ in USERS:
        users.add_user(ctx.repo, ctx.audit, actor="system", username=name, role=role,
                       password=PASSWORD, now=T0)
    admin = ctx.repo.user_by_name("admin")
    assert admin is not None
    for name, _, trained in USERS:
        if trained:
            users.record_training(ctx.repo, ctx.audit, admin=admin, username=name, now=T0)


def incident(occurred_at: datetime = T0, *, ref: str = "被害届-2026-0042",
             category: OffenceCategory = OffenceCategory.THEFT) -> IncidentInput:
    """An objectively confirmed offence (G-REG-2) of a registrable category (G-REG-5)."""
    return IncidentInput(category, occurred_at, ConfirmationKind.POLICE_REPORT, ref,
                         damage="3 items, 4,200 yen", description="left without paying")


@dataclass
class Registry:
    """One test's registry, opened, with the shared engine and the real face data."""

    settings: MamoruSettings
    ctx: RegistryContext
    engine: FaceEngine
    face_data: Path
    _images: dict[str, Image] = field(default_factory=dict, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def user(self, name: str) -> User:
        found = self.ctx.repo.user_by_name(name)
        assert found is not None, name
        return found

    def image(self, relative: str) -> Image:
        if relative not in self._images:
            self._images[relative] = image(self.face_data, relative)
        return self._images[relative]

    def reopen(self) -> RegistryContext:
        """Close and open again the way the application does (key file, no shortcuts)."""
        with contextlib.suppress(Exception):
            self.ctx.close()
        self.ctx = open_registry(registry_paths(self.settings), self.settings.registry,
                                 index_spec(self.settings))
        return self.ctx

    def index(self) -> WatchlistIndex:
        return WatchlistIndex.load(self.ctx.paths.index, key=self.ctx.index_key(),
                                   expected_pack=self.ctx.index_spec.pack)

    def embedding(self, relative: str) -> Vector:
        return _embedding(self.engine, self.face_data, relative)

    def hits(self, probe: str) -> list[Hit]:
        """Every template in the published index, best first, for the probe photo's face."""
        index = self.index()
        if len(index) == 0:
            return []
        return index.search(self.embedding(probe), k=len(index))[0]

    def matches(self, probe: str) -> dict[str, float]:
        """entry_id -> best score, for hits at or above the engine's threshold."""
        found: dict[str, float] = {}
        for hit in self.hits(probe):
            if hit.score >= self.engine.threshold:
                found[hit.entry_id] = max(hit.score, found.get(hit.entry_id, -1.0))
        return found

    def propose(self, *photos: str, proposer: str = "staff", display_name: str = "",
                features: str = "", occurred_at: datetime = T0,
                now: datetime = T0) -> approval.ProposalResult:
        return approval.propose(
            self.ctx, self.engine, self.settings.quality.registration,
            actor=self.user(proposer),
            photos=[approval.Photo(Path(p).stem, self.image(p)) for p in photos],
            incident=incident(occurred_at), features=features, display_name=display_name,
            now=now,
        )

    def register(self, *photos: str, proposer: str = "staff", approver: str = "mgr1",
                 display_name: str = "", features: str = "", occurred_at: datetime = T0,
                 now: datetime = T0) -> str:
        """Propose from real photos and have a second, different manager approve; the entry id."""
        result = self.propose(*photos, proposer=proposer, display_name=display_name,
                              features=features, occurred_at=occurred_at, now=now)
        approval.approve(self.ctx, actor=self.user(approver), entry_id=result.entry_id,
                         reason="police damage report checked", now=now)
        return result.entry_id

    def evidence_files(self) -> set[str]:
        return {p.name for p in self.ctx.paths.evidence.glob("*.bin")}


_EMBEDDINGS: dict[tuple[str, str], Vector] = {}


def _embedding(engine: FaceEngine, face_data: Path, relative: str) -> Vector:
    key = (engine.info.pack, relative)
    if key not in _EMBEDDINGS:
        _EMBEDDINGS[key] = main_face_embedding(engine, image(face_data, relative))
    return _EMBEDDINGS[key]
