"""Lifetimes: how long an entry is kept (G-REG-4) and the nightly job that ends every copy on
time.
"""
