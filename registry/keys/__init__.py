"""The registry's master key: the key file, its custody (infrastructure under the context),
and its rotation (a service above the backups; see tests/test_architecture.py KNOWN_TANGLES)."""
