"""Moved to mamoru.demo.scene (the demo composes its clip the same way); kept while benchmarks migrate."""
from mamoru.demo.scene import *  # noqa: F401,F403
from mamoru.demo.scene import SceneTruth, cast, compose_walk_past  # noqa: F401
