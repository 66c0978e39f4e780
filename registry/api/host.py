"""What the API receives from the program that hosts it: settings, factories, the clock.

The API never reads the process's configuration or opens the registry by
itself: `mamoru` (the CLI and wiring, one layer up) builds an `ApiHost` and
passes it to `create_app`; tests build one with a clock they can move. So
`registry.api` does not import `mamoru`, and the package arrows stay one-way
(mamoru -> registry.api -> registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from models.engine import FaceEngine
from models.quality import QualityPolicy
from registry.clock import utc_now
from registry.config import RegistrySettings, WebSettings
from registry.context import RegistryContext
from registry.rate_limits import MemoryRateLimitStore, RateLimitStore


@dataclass(frozen=True)
class ApiHost:
    """The API's view of the installation: read by routes through `deps.HostDep` only.

    `open_registry` and `open_engine` are called once, when the app starts
    (its lifespan); the app closes the registry it opened when it stops.
    `rate_limits` makes the store the rate limits count in, once per app: in
    this process by default, a shared one when several workers serve.
    """

    registry: RegistrySettings
    web: WebSettings
    registration_quality: QualityPolicy  # the gate a proposal's photos must pass (G-REG-1)
    open_registry: Callable[[], RegistryContext]
    open_engine: Callable[[], FaceEngine]
    version: str
    clock: Callable[[], datetime] = field(default=utc_now)
    rate_limits: Callable[[], RateLimitStore] = field(default=MemoryRateLimitStore)
