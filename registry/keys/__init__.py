"""The registry's master key: the key file, its custody, and its rotation."""
