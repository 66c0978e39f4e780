"""The watchlist aggregate: proposal and approval with evidence (G-REG-1, G-REG-2), the life of an
entry, its periodic review.
"""
