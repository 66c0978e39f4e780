"""The shared kernel: what the edge box and the registry both need, owned by neither.

The watchlist index format and its search, masking of bystanders' faces, the
durable write and wipe of a private file, the encrypted evidence/snapshot store
and the typed errors. It imports only `models` (face geometry) and third-party
libraries, so the folder tree reads edge -> kernel <- registry, models below both.
"""
