"""Joint use (共同利用) with partner stores: G-SHR-1..7.

Stores in one published scheme share their watchlists: each store sends each
member a signed, encrypted bundle of what the member has not acknowledged
yet, built only from the allow-listed fields; the member applies it in one
transaction and returns a signed receipt, so the origin can show which
members confirmed every erasure. Joint use sits on top of the registry: it
imports the aggregates it shares (watchlist, request desk, notice), and only
`registry.api` and the CLI import it. Modules:

- `scheme`: adoption of the scheme file (audited), the scheme in force. The file's
  typed form and reader are `registry.scheme` (the notice and breach read it too).
- `keys`: this store's own Ed25519/X25519 keys, encrypted under the master key.
- `export_schema`: the allow-list, the only shape in which an entry leaves the store.
- `bundle`: bundles and receipts, their canonical JSON, signing and encryption.
- `policy`: fail-closed checks of who may send what to whom.
- `sync`: export (refused while the notice is outdated), import, receipts, status.
- `forwarding`: requests about shared entries, between the desks of two members.
- `check`: the key file's part of `mamoru registry check`.
- `emergency`: the one-off emergency provision outside the scheme (G-SHR-6).

An objection (反論の機会) suspends an entry everywhere until decided; recording
and deciding it is the watchlist's (`registry.watchlist.objections`), and the
suspension travels in the next bundles.

Bundles and receipts are plain bytes in and out of `sync`, so how they move
is separate: files carried by hand (`mamoru joint-use export/import`) now;
the registry API can later accept and serve the very same bytes over HTTPS.

Example, at store A and then at store B::

    blob = export_bundle(ctx_a, scheme_a, to_member="store-b", now=now)
    receipt = import_bundle(ctx_b, scheme_b, blob, now=now)
    apply_receipt(ctx_a, scheme_a, receipt.blob, now=now)
"""
