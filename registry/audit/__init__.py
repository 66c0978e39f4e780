"""The append-only audit trail every use case writes (what auditors read: `registry.oversight`)."""
