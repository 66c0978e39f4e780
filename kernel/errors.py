"""Typed failures of the registry. Each message is meant for the person who caused it."""

from __future__ import annotations


class RegistryError(RuntimeError):
    """Base of every registry failure a user can cause or must act on."""


class NotInitialisedError(RegistryError):
    """No registry (or no key file) where the configuration points."""


class KeyFileError(RegistryError):
    """The key file is missing, malformed or readable by others."""


class WrongKeyError(RegistryError):
    """The key does not open the encrypted database: fail closed, touch nothing."""


class AuthenticationError(RegistryError):
    """Unknown user or wrong password (deliberately not saying which)."""


class PermissionDeniedError(RegistryError):
    """The user's role or training does not allow the action (G-SEC-1)."""


class RuleViolationError(RegistryError):
    """A guideline rule forbids the action (two-person approval, evidence, state...)."""


class QualityRejectedError(RuleViolationError):
    """No registration image passed the quality gate (G-REG-1)."""


class NotFoundError(RegistryError):
    """No entry or user with that id."""


class AuditChainError(RegistryError):
    """The audit trail was edited, deleted from or re-ordered."""


class ConflictError(RuleViolationError):
    """The record is no longer in a state that allows the action (decided, closed, ...)."""


class SelfApprovalError(RuleViolationError):
    """G-REG-2: the proposer of an entry may not approve or reject it; a second person must."""


class StoreDamagedError(RegistryError):
    """A file of the registry is damaged on disk (a flipped bit, a torn write, a bad disk).

    Raised instead of whatever the low-level reader threw (SQLite "malformed",
    an AES-GCM tag mismatch, a truncated header), so that every command ends
    in one line that names the file and says how to get it back. Nothing more
    is written once a damaged file is found: the next step is a person's.
    """

    def __init__(self, path: object, problem: str, remedy: str) -> None:
        super().__init__(f"{path} is damaged ({problem}); {remedy}")
        self.path = path
        self.problem = problem
        self.remedy = remedy


class SealedFileError(RegistryError):
    """A sealed file (`kernel.sealed`) cannot be opened: refused, never partly used.

    The family every encrypted file of mamoru fails with. Each store turns it
    into its own error (evidence, index, backup, ...) at its boundary, so the
    caller's `except` clauses stay what they were; the message names the file
    and never holds key bytes.
    """


class ForeignFileError(SealedFileError):
    """The file is not a sealed file of the expected kind (another kind, or not mamoru's)."""


class UnknownVersionError(SealedFileError):
    """A sealed-file version this release does not read (written by a newer mamoru)."""


class SealedIntegrityError(SealedFileError):
    """Authentication failed: altered, truncated, renamed or moved, or under another key."""


class StorageUnavailableError(RegistryError):
    """The registry's database server cannot be reached or refuses us (one line, no secret)."""
