"""Typed failures of joint use. Each message is one line for the person who must act on it.

Every refusal of an incoming bundle or receipt is a `BundleRefusedError`:
the whole file is refused and nothing in the registry changed.
"""

from __future__ import annotations

from kernel.errors import RegistryError, RuleViolationError
from registry.scheme import SchemeError


class JointUseError(RegistryError):
    """Base of every joint-use failure."""


class SchemeNotAdoptedError(SchemeError, JointUseError):
    """The scheme file differs from the one an admin adopted (an unaudited membership change)."""


class StoreKeysError(JointUseError):
    """This store's joint-use keys are missing, unreadable, or do not match the scheme."""


class ForbiddenFieldError(JointUseError):
    """Something outside the allow-list (G-SHR-2) was about to leave the store."""


class ProvisionRefusedError(JointUseError, RuleViolationError):
    """This store may not provide data to that member (not a member, region rule, ...)."""


class NoticeOutdatedError(ProvisionRefusedError):
    """The published notice does not describe the settings and scheme in force (G-NOT-2)."""


class BundleRefusedError(JointUseError):
    """An incoming bundle or receipt is refused whole; nothing was imported or changed."""


class NotForUsError(BundleRefusedError):
    """Addressed to another store, or fails decryption with our key (altered in transit)."""


class MalformedBundleError(BundleRefusedError):
    """Not a mamoru joint-use file, or its content breaks the bundle schema."""


class NotAMemberError(BundleRefusedError):
    """The signer is not a current member of the scheme (unknown, or removed)."""


class SignatureError(BundleRefusedError):
    """The signature does not verify under the member's published key."""


class SequenceError(BundleRefusedError):
    """Not a newer sequence number than the last applied from that sender."""


class ReplayError(SequenceError):
    """A sequence number that was already applied (a replay or a duplicate)."""


class RegionRuleError(BundleRefusedError, ProvisionRefusedError):
    """The scheme's region rule does not allow sharing between these members (G-SHR-3)."""


class PackMismatchError(BundleRefusedError):
    """The templates belong to a model pack this store does not index."""


class ReceiptError(BundleRefusedError):
    """A receipt that does not match any bundle this store sent, or was already applied."""


class TransportError(JointUseError):
    """A bundle could not be delivered over HTTPS (network, TLS, or the member's server failing).

    Nothing is lost: the bundle stays pending and the next push sends it again.
    """


class PushRefusedError(BundleRefusedError):
    """The member's registry refused a pushed bundle (4xx); its one-line reason is the message."""
