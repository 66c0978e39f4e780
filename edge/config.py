"""Edge loop settings: cameras and the loop's policy, one section of the validated tree.

Global/per-camera pairs follow Frigate's habit: a camera that sets nothing
inherits the loop's defaults. URLs may carry camera passwords, so they are
`SecretStr` and never printed; logs and metrics name cameras, not URLs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

CAMERA_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"


@dataclass(frozen=True)
class OutboxLifetimes:
    """How long an alert copy that was not delivered may stay on the box, in seconds."""

    rejected_s: float = 24 * 3600.0
    undelivered_s: float = 7 * 24 * 3600.0


DetectorInput = tuple[int, int]


class CameraConfig(BaseModel):
    """One camera: an RTSP URL or a video file (files replay at their own frame rate).

    `url` is the *analysis* stream: on a real IP camera, point it at the
    sub-stream (720p or 640x360) and set that stream's frame rate to the
    analysis rate on the camera itself, so the box decodes only the frames it
    analyses (issue 16: decoding a 1080p/25 fps main stream costs ~165 ms of a
    core per second, most of a 2-core box's budget for one camera). The
    `expected_*` fields are the profile the installer configured; the box
    checks them against what the stream really delivers at start-up.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=CAMERA_NAME)
    url: SecretStr = Field(description="analysis stream: rtsp://user:pass@host/stream2 or a file")
    snapshot_url: SecretStr | None = Field(
        default=None,
        description="main stream (e.g. rtsp://user:pass@host/stream1), used only for the alert "
                    "snapshot: opened for one frame when an alert is raised, never decoded "
                    "continuously; the analysis frame is the snapshot when it fails",
    )
    analysis_fps: float | None = Field(
        default=None, gt=0.0, le=30.0, description="frames analysed per second; default: loop's"
    )
    expected_width: int | None = Field(default=None, ge=32, le=7680)
    expected_height: int | None = Field(default=None, ge=32, le=4320)
    expected_fps: float | None = Field(
        default=None, gt=0.0, le=120.0,
        description="frame rate the analysis stream is set to deliver (ideally the analysis rate)",
    )
    detector_input: DetectorInput | None = Field(
        default=None,
        description="(width, height) the detector runs at, multiples of 32; e.g. (640, 384) for "
                    "a 16:9 stream instead of the pack's letterboxed square; default: the loop's",
    )
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("camera url is empty")
        return value

    @field_validator("detector_input")
    @classmethod
    def _detector_input(cls, value: DetectorInput | None) -> DetectorInput | None:
        return check_detector_input(value)

    @property
    def is_file(self) -> bool:
        return "://" not in self.url.get_secret_value()


def check_detector_input(value: DetectorInput | None) -> DetectorInput | None:
    """A detector input the networks' strides (8, 16, 32) divide, 128..1920 a side."""
    if value is not None and not all(128 <= v <= 1920 and v % 32 == 0 for v in value):
        raise ValueError("detector_input: width and height must be multiples of 32 in 128..1920")
    return value


class EdgeSettings(BaseModel):
    """How the in-store box captures, tracks, matches and alerts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cameras: tuple[CameraConfig, ...] = ()
    analysis_fps: float = Field(default=5.0, gt=0.0, le=30.0)
    detector_input: DetectorInput | None = Field(
        default=None, description="default detector input (width, height); None: the pack's"
    )
    hw_decode: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: OpenCV's FFmpeg decodes on VAAPI/NVDEC where the box has one "
                    "(software otherwise); off: always software",
    )
    stream_check_s: float = Field(
        default=5.0, ge=0.0, le=60.0,
        description="measure each stream's real frame rate and size over its first seconds and "
                    "warn when it sends much more than is analysed (0 = off)",
    )
    analysis_workers: int = Field(
        default=2, ge=1, le=8, description="analysis threads; cameras are shared out among them"
    )
    snapshot_timeout_s: float = Field(
        default=2.0, ge=0.5, le=30.0,
        description="open and read timeouts of a camera's main stream (snapshot_url) when an "
                    "alert's snapshot is grabbed from it, on the snapshot thread",
    )
    open_timeout_s: float = Field(default=5.0, ge=0.5, le=60.0)
    read_timeout_s: float = Field(default=5.0, ge=0.5, le=60.0)
    reconnect_initial_s: float = Field(default=0.5, ge=0.1, le=60.0)
    reconnect_max_s: float = Field(default=15.0, ge=0.5, le=600.0)
    alert_cooldown_s: float = Field(
        default=60.0, ge=1.0, le=3600.0,
        description="one alert per (subject, camera) per window, not one per frame",
    )
    embed_interval_s: float = Field(
        default=0.5, ge=0.0, le=10.0, description="a track is embedded at most this often"
    )
    max_embeds_per_track: int = Field(default=6, ge=1, le=100)
    max_embeds_per_frame: int = Field(
        default=1, ge=1, le=32,
        description="faces of one frame embedded at most; the others wait for the next frame, "
                    "never-embedded faces first, so a crowd spreads over frames instead of "
                    "stalling the cameras that share the analysis worker",
    )
    track_max_age_s: float = Field(default=1.5, gt=0.0, le=30.0)
    mask_style: Literal["solid", "pixelate"] = "solid"
    index_poll_s: float = Field(default=1.0, ge=0.1, le=60.0, description="hot-reload check")
    index_source: Literal["local", "registry"] = Field(
        default="local",
        description="local: read the registry's published index file on this box (single-box "
                    "install); registry: fetch it from registry_url with the device token, "
                    "deltas after the first download, cached encrypted (a chain's store box)",
    )
    registry_url: str | None = Field(
        default=None, description="registry API base URL; alerts wait in the outbox without it"
    )
    registry_ca_file: Path | None = Field(
        default=None,
        description=(
            "PEM certificate to trust for registry_url (e.g. the registry's self-signed one)"),
    )
    device_token_file: Path | None = Field(
        default=None, description="0600 file with this box's device token (`mamoru device add`)"
    )
    outbox_max_backoff_s: float = Field(
        default=30.0, ge=0.5, le=600.0, description="longest wait between delivery attempts"
    )
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Prometheus; 0 = off")
    status_report_s: float = Field(
        default=30.0, ge=5.0, le=300.0,
        description="the box reports its state (watchlist current or stale) this often and on "
                    "every change; the tablet flags a box silent for three intervals",
    )
    rejected_retention_hours: float = Field(
        default=24.0, ge=1.0, le=7 * 24.0,
        description="an alert the registry refused is kept aside this long for a person to "
                    "look at, then wiped (issue 10: every copy has a lifetime)",
    )
    undelivered_retention_days: float = Field(
        default=7.0, ge=1.0, le=30.0,
        description="an alert never delivered (no registry, or one down for days) is wiped "
                    "after this long, with its snapshot",
    )

    def outbox_lifetimes(self) -> OutboxLifetimes:
        return OutboxLifetimes(rejected_s=self.rejected_retention_hours * 3600.0,
                               undelivered_s=self.undelivered_retention_days * 86400.0)

    @field_validator("detector_input")
    @classmethod
    def _detector_input(cls, value: DetectorInput | None) -> DetectorInput | None:
        return check_detector_input(value)

    def camera_fps(self, camera: CameraConfig) -> float:
        return camera.analysis_fps or self.analysis_fps

    def camera_detector_input(self, camera: CameraConfig) -> DetectorInput | None:
        return camera.detector_input or self.detector_input
