"""The chain back-end on PostgreSQL (issue 15): schema, roles and a throw-away cluster.

`schema` holds the DDL (the SQLCipher registry and audit schemas translated, plus
stores), the least-privilege grants and the list of personal columns the
application seals before PostgreSQL sees them; `cluster` starts a local cluster
in a temporary folder for tests and benchmarks.
"""
