"""Personal-data breach response: the incident record, its deadlines and the report drafts
(G-BRE).
"""
