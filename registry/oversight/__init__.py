"""What auditors read (G-SHR-4): the trail's report, its verification, its records.

Above the aggregates whose counts the report gives (the request desk, watchlist
reviews); the trail itself, which every use case writes, is `registry.audit.trail`.
"""
