"""Encrypted backups that cannot bring an erased person back."""
