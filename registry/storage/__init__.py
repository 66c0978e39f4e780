"""Storage behind the repository interface: SQLCipher files as the embedded default."""
