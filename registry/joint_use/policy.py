"""Who may share what with whom: fail-closed policies composed behind one Protocol.

Each policy looks at one `Transfer` (a bundle leaving this store, or one
arriving) and either returns or raises a typed `BundleRefusedError` /
`ProvisionRefusedError` that says why in one line. `AllOf` runs them in
order and stops at the first refusal; an `AllOf` with no policies refuses
everything rather than allowing everything. The only way around a check is
`UnsafeNoOp`, which says so in its name and logs each time it is used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from registry.joint_use.bundle import Bundle, Opened
from registry.joint_use.errors import (
    NotAMemberError,
    PackMismatchError,
    ProvisionRefusedError,
    RegionRuleError,
    ReplayError,
)
from registry.joint_use.scheme import LoadedScheme

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transfer:
    """One bundle between two members, as far as it is known at the time of the check."""

    scheme: LoadedScheme
    sender: str
    recipient: str
    sequence: int
    former_members: frozenset[str] = frozenset()
    expected_sequence: int | None = None  # on import: the lowest one we accept from the sender
    opened: Opened | None = None  # on import: the decrypted envelope
    bundle: Bundle | None = None  # on import, once the signature verified
    indexed_pack: tuple[str, int] | None = None  # on import: (pack, dim) this store indexes
    notes: list[str] = field(default_factory=list, compare=False)


class TransferPolicy(Protocol):
    """A rule a transfer must pass; raises a typed refusal, never returns False."""

    def check(self, transfer: Transfer) -> None: ...


class AllOf:
    """Every policy must pass, in order; with no policies nothing passes."""

    def __init__(self, policies: Sequence[TransferPolicy]) -> None:
        self._policies = tuple(policies)

    def check(self, transfer: Transfer) -> None:
        if not self._policies:
            raise ProvisionRefusedError("no joint-use policy is configured; refusing (fail closed)")
        for policy in self._policies:
            policy.check(transfer)


class UnsafeNoOp:
    """Allows everything. For tests of other parts only; every use is logged."""

    def check(self, transfer: Transfer) -> None:
        log.warning("UnsafeNoOp joint-use policy let %s -> %s #%d through unchecked",
                    transfer.sender, transfer.recipient, transfer.sequence)


def _not_member(transfer: Transfer, member_id: str, role: str) -> NotAMemberError:
    if member_id in transfer.former_members:
        why = ("was removed from the scheme; it receives nothing more" if role == "recipient"
               else "was removed from the scheme; its bundles are refused from then on")
    else:
        why = "is not a member of the scheme"
    return NotAMemberError(f"the {role} {member_id} {why} (scheme sha256 "
                           f"{transfer.scheme.sha256[:12]}); nothing was imported")


class SenderIsCurrentMember:
    def check(self, transfer: Transfer) -> None:
        if transfer.scheme.member(transfer.sender) is None:
            raise _not_member(transfer, transfer.sender, "sender")


class RecipientIsCurrentMember:
    def check(self, transfer: Transfer) -> None:
        if transfer.scheme.member(transfer.recipient) is None:
            error = _not_member(transfer, transfer.recipient, "recipient")
            raise ProvisionRefusedError(str(error).replace("nothing was imported",
                                                           "nothing was exported"))


class SignatureVerifies:
    """The payload is signed by the sender's key as the scheme publishes it."""

    def check(self, transfer: Transfer) -> None:
        member = transfer.scheme.member(transfer.sender)
        if transfer.opened is None or member is None:
            raise ProvisionRefusedError("no signed content to verify; refusing (fail closed)")
        transfer.opened.verify(member.verifier())


class NewerSequence:
    """Only a sequence above the last one applied from this sender: no replay, no going back.

    A gap is fine: whatever a lost or skipped bundle held is not acknowledged by
    a receipt, so the sender's next sync plans it again.
    """

    def check(self, transfer: Transfer) -> None:
        expected = transfer.expected_sequence
        if expected is None:
            raise ProvisionRefusedError("the expected sequence is unknown; refusing (fail closed)")
        if transfer.sequence < expected:
            raise ReplayError(
                f"bundle #{transfer.sequence} from {transfer.sender} is not newer than #"
                f"{expected - 1}, already applied here (a replay, a duplicate, or one a later "
                "bundle covered); nothing was imported. If "
                f"{transfer.sender} still waits for this store's receipt, send it again: "
                f"`mamoru joint-use resend-receipt --from {transfer.sender}`"
            )


class RegionRuleAllows:
    """G-SHR-3: with "same_region", only members of one region share with each other."""

    def check(self, transfer: Transfer) -> None:
        scheme = transfer.scheme.scheme
        sender, recipient = scheme.member(transfer.sender), scheme.member(transfer.recipient)
        if sender is None or recipient is None:
            raise ProvisionRefusedError("a party is not a member; refusing (fail closed)")
        if scheme.region_rule == "nationwide":
            return
        if scheme.region_rule == "same_region" and sender.region == recipient.region:
            return
        raise RegionRuleError(
            f"the scheme's region rule ({scheme.region_rule}) does not allow sharing from "
            f"{sender.member_id} ({sender.region}) to {recipient.member_id} ({recipient.region}) "
            "(G-SHR-3); nothing was shared"
        )


class PackIndexedHere:
    """Every template belongs to the model pack (and dimension) this store's index holds."""

    def check(self, transfer: Transfer) -> None:
        if transfer.bundle is None or transfer.indexed_pack is None:
            raise ProvisionRefusedError("no bundle content to check; refusing (fail closed)")
        pack, dim = transfer.indexed_pack
        for entry in (*transfer.bundle.entries, *transfer.bundle.corrections):
            for template in entry.templates:
                if (template.pack, template.dim) != (pack, dim):
                    raise PackMismatchError(
                        f"entry {entry.origin_entry_id[:12]} from {transfer.sender} has templates "
                        f"of pack {template.pack} ({template.dim}-D) but this store indexes "
                        f"{pack} ({dim}-D): both stores must run the same pack; nothing was "
                        "imported"
                    )


def provision_policy() -> AllOf:
    """Before anything leaves this store for a member."""
    return AllOf([RecipientIsCurrentMember(), RegionRuleAllows()])


def signer_policy() -> AllOf:
    """Right after decryption: is the sender a member, and did it sign this?"""
    return AllOf([SenderIsCurrentMember(), SignatureVerifies()])


def content_policy() -> AllOf:
    """Once the signed content is parsed: sequence, region, pack."""
    return AllOf([NewerSequence(), RegionRuleAllows(), PackIndexedHere()])
