"""Bundles and receipts: canonical JSON, signed by the sender, encrypted for the recipient.

A bundle carries, from one member to one other, the entries, corrections,
tombstones (withdrawn, erased, expired, rejected entries) and objections
(suspend, unsuspend) the recipient has not acknowledged yet, the people's
requests about the recipient's entries (forwarded to their origin) and the
origin's answers to requests the recipient forwarded. A receipt goes
back: which of them the recipient applied, signed by the recipient, so the
origin can show which members confirmed each erasure (G-SHR-4).

Both travel in the same envelope (format 2), built only from `cryptography` primitives:

1. The payload is canonical JSON (sorted keys, no spaces, UTF-8) of an
   allow-listed model, signed with the sender's Ed25519 key over
   ``b"mamoru/joint-use/v1/<kind>\\n" + payload``. The payload names sender,
   recipient and sequence itself, so a member cannot re-encrypt a bundle it
   received and pass it on as if it were addressed to a third store.
2. ``payload-length u32 | payload | signature`` is encrypted with AES-256-GCM
   under a key from HKDF-SHA256 over an X25519 exchange between a fresh
   ephemeral key and the recipient's published encryption key (salt: both
   public keys).
3. The clear header (format, kind, sender, recipient, sequence, ephemeral
   public key, nonce, and the ciphertext's length and SHA-256) is signed by
   the sender too, over ``b"mamoru/joint-use/v2/header\\n" + header``. A
   recipient checks that signature against the member's published key from
   the first few kilobytes alone, before it reads the rest or decrypts
   anything: a stranger cannot make a store read, hash or decrypt a large
   body. The header's other fields are the associated data of the
   encryption, so none of them can be changed without the tag failing either.

File layout::

    b"MAMORUJU" | header length u16 | header (canonical JSON) | header signature (64)
                | ciphertext + tag

Format 1 (no header signature) is refused with a one-line reason.

A hub or relay that carries the files sees who sends to whom, the sequence
number and the size; it can read none of the content and change none of it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from registry.clock import Timestamp
from registry.joint_use.errors import MalformedBundleError, NotForUsError, SignatureError
from registry.joint_use.export_schema import (
    ENTRY_ID_PATTERN,
    AllowListed,
    SharedEntry,
    to_wire,
)
from registry.scheme import MEMBER_ID_PATTERN

MAGIC = b"MAMORUJU"
FORMAT = 2
MAX_HEADER = 4096
_HEADER_LENGTH = struct.Struct(">H")
_PAYLOAD_LENGTH = struct.Struct(">I")
_SIGNATURE = 64
_NONCE = 12
_HKDF_INFO = b"mamoru/joint-use/v1/aes-256-gcm"
_PREAMBLE = len(MAGIC) + _HEADER_LENGTH.size
# The most a recipient reads before it knows who signed the envelope.
MAX_CLEAR_BYTES = _PREAMBLE + MAX_HEADER + _SIGNATURE
Kind = Literal["bundle", "receipt"]
# The Ed25519 key a member publishes, by member id; raises a typed refusal for a non-member.
SignerLookup = Callable[[str], Ed25519PublicKey]
TombstoneReason = Literal["withdrawn", "erased", "expired", "rejected"]
ObjectionAction = Literal["suspend", "unsuspend"]
RequestKindWire = Literal["disclosure", "correction", "stop-use", "erasure", "complaint",
                          "objection"]
RequestOutcome = Literal["answered", "refused"]


class Tombstone(AllowListed):
    """An entry the origin closed: every member erases its copy (G-REG-4, G-SHR-4)."""

    origin_entry_id: str = Field(pattern=ENTRY_ID_PATTERN)
    reason: TombstoneReason
    closed_at: Timestamp


class Objection(AllowListed):
    """反論の機会 (G-SHR-4): suspended everywhere while the origin decides an objection."""

    origin_entry_id: str = Field(pattern=ENTRY_ID_PATTERN)
    action: ObjectionAction
    at: Timestamp


class ForwardedRequest(AllowListed):
    """A person's request about an entry the recipient shared: the origin decides it (G-DSR-2).

    Neither the requester's contact nor the identity document travels: the
    member that checked identity keeps the request and answers the person.
    """

    request_id: str = Field(pattern=ENTRY_ID_PATTERN, description="the sender's request id")
    kind: RequestKindWire
    origin_entry_id: str = Field(pattern=ENTRY_ID_PATTERN)
    received_at: Timestamp
    due_at: Timestamp
    identity_method: str = Field(pattern=r"^[a-z_]{1,40}$")


class RequestAnswer(AllowListed):
    """The origin answered a request the recipient forwarded: what was done, or the ground."""

    request_id: str = Field(pattern=ENTRY_ID_PATTERN, description="the recipient's request id")
    outcome: RequestOutcome
    answer: str = Field(pattern=r"^[a-z_]{1,40}$")
    refusal_ground: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,40}$")
    answered_at: Timestamp


class Bundle(AllowListed):
    """One bundle's content. Entries and corrections are always the sender's own entries."""

    format: Literal[1] = 1
    sender: str = Field(pattern=MEMBER_ID_PATTERN)
    recipient: str = Field(pattern=MEMBER_ID_PATTERN)
    sequence: int = Field(ge=1)
    created_at: Timestamp
    scheme_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    entries: tuple[SharedEntry, ...] = ()
    corrections: tuple[SharedEntry, ...] = ()
    tombstones: tuple[Tombstone, ...] = ()
    objections: tuple[Objection, ...] = ()
    requests: tuple[ForwardedRequest, ...] = ()
    request_answers: tuple[RequestAnswer, ...] = ()

    @model_validator(mode="after")
    def _own_entries_only(self) -> Bundle:
        shared = (*self.entries, *self.corrections)
        foreign = sorted({e.origin_member for e in shared} - {self.sender})
        if foreign:
            raise ValueError(f"a member shares only its own entries; found entries of {foreign}")
        ids = [e.origin_entry_id for e in shared] + [t.origin_entry_id for t in self.tombstones]
        if len(set(ids)) != len(ids):
            raise ValueError("an entry appears more than once among entries, corrections and "
                             "tombstones")
        return self


class Receipt(AllowListed):
    """What a recipient applied from one bundle, signed by the recipient."""

    format: Literal[1] = 1
    issued_by: str = Field(pattern=MEMBER_ID_PATTERN, description="the bundle's recipient")
    origin: str = Field(pattern=MEMBER_ID_PATTERN, description="the bundle's sender")
    sequence: int = Field(ge=1)
    bundle_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    applied_at: Timestamp
    entries_applied: tuple[str, ...] = ()
    corrections_applied: tuple[str, ...] = ()
    tombstones_applied: tuple[str, ...] = ()
    objections_applied: tuple[str, ...] = ()
    requests_applied: tuple[str, ...] = ()
    request_answers_applied: tuple[str, ...] = ()


class EnvelopeHeader(BaseModel):
    """The clear, authenticated header: enough to route and to pick the key, nothing more."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[2]
    kind: Kind
    sender: str = Field(pattern=MEMBER_ID_PATTERN)
    recipient: str = Field(pattern=MEMBER_ID_PATTERN)
    sequence: int = Field(ge=1)
    ephemeral_key: str
    nonce: str
    body_bytes: int = Field(ge=16, description="the ciphertext's length, tag included")
    body_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


def canonical_json(model: AllowListed) -> bytes:
    """Sorted keys, no insignificant spaces, UTF-8: the same content is always the same bytes."""
    return _canonical(to_wire(model))


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def sha256_hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _aead_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> AESGCM:
    """The envelope's one-message key. Not `kernel.sealed`: this is a wire format between
    stores of different releases, whose nonce and routing live in the signed header that is
    checked before anything is decrypted, under a key no file at rest shares."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_HKDF_INFO)
    return AESGCM(hkdf.derive(shared))


def _signed_message(kind: str, payload: bytes) -> bytes:
    return b"mamoru/joint-use/v1/" + kind.encode("ascii") + b"\n" + payload


def _signed_header(header: bytes) -> bytes:
    return b"mamoru/joint-use/v2/header\n" + header


def _associated(header: EnvelopeHeader) -> bytes:
    """The encryption's associated data: the header without the ciphertext's own length and
    digest (which the header signature covers)."""
    return _canonical(header.model_dump(exclude={"body_bytes", "body_sha256"}))


def seal(kind: Kind, payload: AllowListed, *, sender: str, recipient: str, sequence: int,
         signing_key: Ed25519PrivateKey, recipient_key: X25519PublicKey) -> bytes:
    """Sign `payload` with the sender's key, encrypt it for the recipient only, sign the header."""
    body = canonical_json(payload)
    signature = signing_key.sign(_signed_message(kind, body))
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    recipient_raw = _raw(recipient_key)
    nonce = os.urandom(_NONCE)
    routing = EnvelopeHeader(
        format=FORMAT, kind=kind, sender=sender, recipient=recipient, sequence=sequence,
        ephemeral_key=base64.b64encode(ephemeral_raw).decode("ascii"),
        nonce=base64.b64encode(nonce).decode("ascii"), body_bytes=16, body_sha256="0" * 64)
    aead = _aead_key(ephemeral.exchange(recipient_key), ephemeral_raw, recipient_raw)
    plaintext = _PAYLOAD_LENGTH.pack(len(body)) + body + signature
    ciphertext = aead.encrypt(nonce, plaintext, _associated(routing))
    header = _canonical(routing.model_copy(update={
        "body_bytes": len(ciphertext), "body_sha256": sha256_hex(ciphertext)}).model_dump())
    return (MAGIC + _HEADER_LENGTH.pack(len(header)) + header
            + signing_key.sign(_signed_header(header)) + ciphertext)


def clear_length(prefix: bytes) -> int:
    """How many bytes precede the ciphertext, from the first ten; refuses a non-envelope."""
    if len(prefix) < _PREAMBLE or not prefix.startswith(MAGIC):
        raise MalformedBundleError("not a mamoru joint-use file (bad magic); nothing was imported")
    length: int = _HEADER_LENGTH.unpack_from(prefix, len(MAGIC))[0]
    if length > MAX_HEADER:
        raise MalformedBundleError("the joint-use file's header is too long (altered or damaged); "
                                   "nothing was imported")
    return _PREAMBLE + length + _SIGNATURE


@dataclass(frozen=True)
class SealedHeader:
    """The clear part of an envelope: the header, its signature, and the bytes they span."""

    header: EnvelopeHeader
    header_bytes: bytes
    signature: bytes

    @property
    def clear_bytes(self) -> int:
        return _PREAMBLE + len(self.header_bytes) + _SIGNATURE

    @property
    def total_bytes(self) -> int:
        """The whole envelope's length, as its header declares it."""
        return self.clear_bytes + self.header.body_bytes


def read_header(blob: bytes) -> SealedHeader:
    """The clear header (not yet trustworthy: `authenticate_header` checks who signed it).

    `blob` may be just the envelope's first `clear_length` bytes.
    """
    end = clear_length(blob)
    if len(blob) < end:
        raise MalformedBundleError("the joint-use file is truncated; nothing was imported")
    header_bytes = blob[_PREAMBLE:end - _SIGNATURE]
    try:
        declared = json.loads(header_bytes)
    except ValueError:
        declared = None
    if isinstance(declared, dict) and declared.get("format") == 1:
        raise MalformedBundleError(
            "this joint-use file is envelope format 1, whose header is not signed; this store "
            "accepts format 2 only: have the sender update mamoru and send it again; nothing was "
            "imported")
    try:
        header = EnvelopeHeader.model_validate_json(header_bytes)
    except ValidationError:
        raise MalformedBundleError("the joint-use file's header is unreadable (altered or "
                                   "damaged); nothing was imported") from None
    return SealedHeader(header, header_bytes, blob[end - _SIGNATURE:end])


def authenticate_header(clear: bytes, *, kind: Kind, our_id: str,
                        signer: SignerLookup) -> SealedHeader:
    """The header, once it is addressed to us and signed by the member it names.

    Needs only the envelope's first `clear_length` bytes: a recipient calls it
    before reading, hashing or decrypting the rest. `signer` raises for a
    sender that is not a member.
    """
    sealed = read_header(clear)
    header = sealed.header
    if header.kind != kind:
        raise MalformedBundleError(f"this file is a {header.kind}, not a {kind}; "
                                   "nothing was imported")
    if header.recipient != our_id:
        raise NotForUsError(f"this {kind} is addressed to {header.recipient}, not to this store "
                            f"({our_id}); nothing was imported")
    key = signer(header.sender)
    try:
        key.verify(sealed.signature, _signed_header(sealed.header_bytes))
    except InvalidSignature:
        raise SignatureError(
            f"the {kind} from {header.sender} does not carry a valid signature of "
            f"{header.sender}'s published key on its header (altered, forged or signed by "
            "another key); nothing was imported"
        ) from None
    return sealed


@dataclass(frozen=True)
class Opened:
    """A decrypted envelope whose signature is not checked yet."""

    header: EnvelopeHeader
    payload: bytes
    signature: bytes

    def verify(self, signer: Ed25519PublicKey) -> None:
        try:
            signer.verify(self.signature, _signed_message(self.header.kind, self.payload))
        except InvalidSignature:
            raise SignatureError(
                f"the {self.header.kind} from {self.header.sender} does not carry a valid "
                f"signature of {self.header.sender}'s published key (forged or signed by "
                "another key); nothing was imported"
            ) from None


def open_envelope(blob: bytes, *, kind: Kind, our_id: str, our_key: X25519PrivateKey,
                  signer: SignerLookup) -> Opened:
    """Decrypt an envelope addressed to us, signed by a member: nothing is decrypted before
    the header's signature and the ciphertext's digest check out."""
    sealed = authenticate_header(blob[:MAX_CLEAR_BYTES], kind=kind, our_id=our_id,
                                 signer=signer)
    header = sealed.header
    ciphertext = blob[sealed.clear_bytes:]
    if len(ciphertext) != header.body_bytes or sha256_hex(ciphertext) != header.body_sha256:
        raise SignatureError(
            f"the {kind} from {header.sender} was altered in transit or truncated (its content "
            "does not match its signed header); nothing was imported")
    try:
        ephemeral_raw = base64.b64decode(header.ephemeral_key, validate=True)
        nonce = base64.b64decode(header.nonce, validate=True)
        ephemeral = X25519PublicKey.from_public_bytes(ephemeral_raw)
        shared = our_key.exchange(ephemeral)
    except ValueError:
        raise MalformedBundleError(f"the {kind}'s key exchange data is invalid; "
                                   "nothing was imported") from None
    aead = _aead_key(shared, ephemeral_raw, _raw(our_key.public_key()))
    try:
        plaintext = aead.decrypt(nonce, ciphertext, _associated(header))
    except (InvalidTag, ValueError):
        raise NotForUsError(
            f"the {kind} from {header.sender} failed authentication: not encrypted for this "
            "store's key; nothing was imported"
        ) from None
    if len(plaintext) < _PAYLOAD_LENGTH.size:
        raise MalformedBundleError(f"the {kind} is malformed inside; nothing was imported")
    (length,) = _PAYLOAD_LENGTH.unpack_from(plaintext, 0)
    body = plaintext[_PAYLOAD_LENGTH.size:_PAYLOAD_LENGTH.size + length]
    signature = plaintext[_PAYLOAD_LENGTH.size + length:]
    if len(body) != length or len(signature) != _SIGNATURE:
        raise MalformedBundleError(f"the {kind} is malformed inside; nothing was imported")
    return Opened(header, body, signature)


def parse_payload(opened: Opened, model: type[Bundle] | type[Receipt]) -> Any:
    """The signed payload as `model`, which must agree with the authenticated header."""
    try:
        payload = model.model_validate_json(opened.payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedBundleError(
            f"the {opened.header.kind} from {opened.header.sender} breaks the joint-use schema "
            f"at {where}: {first['msg']}; nothing was imported"
        ) from None
    sender, recipient = ((payload.sender, payload.recipient) if isinstance(payload, Bundle)
                         else (payload.issued_by, payload.origin))
    header = opened.header
    if (sender, recipient, payload.sequence) != (header.sender, header.recipient, header.sequence):
        raise MalformedBundleError(
            f"the {header.kind}'s signed content names {sender}->{recipient} #{payload.sequence} "
            f"but its envelope {header.sender}->{header.recipient} #{header.sequence}; "
            "nothing was imported"
        )
    return payload
