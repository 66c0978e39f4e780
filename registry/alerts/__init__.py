"""Alerts from the edge boxes and the staff's judgement of them (a match is a lead, not a
verdict).
"""
