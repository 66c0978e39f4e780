"""The request desk: the people's disclosure, correction and erasure requests and complaints
(G-DSR-1..4).
"""
