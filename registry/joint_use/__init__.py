"""Joint use (共同利用) with partner stores: G-SHR-1..7.

Stores in one published scheme share their watchlists: each store sends each
member a signed, encrypted bundle of what the member has not acknowledged
yet, built only from the allow-listed fields; the member applies it in one
transaction and returns a signed receipt, so the origin can show which
members confirmed every erasure. Modules:

- `scheme`: the published scheme file (five items, members, keys, region rule), adoption.
- `keys`: this store's own Ed25519/X25519 keys, encrypted under the master key.
- `export_schema`: the allow-list, the only shape in which an entry leaves the store.
- `bundle`: bundles and receipts, their canonical JSON, signing and encryption.
- `policy`: fail-closed checks of who may send what to whom.
- `sync`: export, import, receipts, status (`export_bundle`, `import_bundle`, ...).
- `objections`: 反論の機会, suspension everywhere until decided.
- `emergency`: the one-off emergency provision outside the scheme (G-SHR-6).

Bundles and receipts are plain bytes in and out of `sync`, so how they move
is separate: files carried by hand (`mamoru joint-use export/import`) now;
the registry API can later accept and serve the very same bytes over HTTPS.

Example, at store A and then at store B::

    blob = export_bundle(ctx_a, scheme_a, to_member="store-b", now=now)
    receipt = import_bundle(ctx_b, scheme_b, blob, now=now)
    apply_receipt(ctx_a, scheme_a, receipt.blob, now=now)
"""
