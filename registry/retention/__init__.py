"""Lifetimes: the nightly job that ends every copy on time (how long an entry is kept, G-REG-4,
is the watchlist's rule: `registry.watchlist.period`).
"""
