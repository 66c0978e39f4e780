"""Measurements of the engine (speed, accuracy) run by hand, not by the test suite."""
