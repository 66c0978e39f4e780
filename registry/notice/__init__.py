"""The public notice (G-NOT-1..4, G-SHR-1, G-SEC-3), generated from the configuration in force.

- `content`: what the notice says, built from the settings, the written criteria
  and the adopted joint-use scheme; never hand-written, never personal data.
- `page`: the notice as one HTML page (Japanese first, then English) and its SHA-256.
- `publication`: the page's hash recorded in the audit trail whenever it changes;
  joint-use export refuses while the recorded notice is not the current one.
- `sign`: the printable A4 sign (PDF) with a QR code to the notice URL.
"""
