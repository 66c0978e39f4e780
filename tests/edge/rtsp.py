"""Moved to mamoru.demo.cameras; kept while benchmarks migrate."""
from mamoru.demo.cameras import *  # noqa: F401,F403
from mamoru.demo.cameras import RtspServer, free_port, open_capture  # noqa: F401
