"""The append-only audit trail and what auditors read from it."""
