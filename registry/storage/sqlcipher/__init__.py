"""The repository protocols (`registry/repository.py`) on SQLCipher, one module per aggregate."""
