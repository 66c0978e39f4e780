"""A real RTSP server for tests: serves video files as camera streams.

    /usr/bin/python3 tests/edge/rtsp_server.py --port 8554 \\
        --mount cam1=/path/a.mp4 --mount cam2=/path/b.mp4 [--loop]

Each mount is `rtsp://127.0.0.1:PORT/NAME`. The file is decoded (any format
`decodebin` knows, including OpenCV's 'mp4v' MPEG-4 part 2 through
gstreamer1.0-libav), re-encoded to H.264 and paced at the file's own frame rate,
as a camera would send it. With --loop a stream never ends: at the end of the
file it seeks back to the start, so a test camera is always "on". All clients of
one mount share one pipeline, as they would share one physical camera. Prints
`READY <port>` on stdout once it is listening; stops on SIGTERM/SIGINT.

This runs on Debian's own interpreter (/usr/bin/python3), not the project's
virtual environment: GStreamer's RTSP server is reached through the `gi`
bindings (python3-gi, gir1.2-gst-rtsp-server-1.0), which are system packages
that cannot be pip-installed into the venv. Tests start it as a subprocess
(tests/edge/rtsp.py); `make system-deps` installs the packages.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

Gst.init(None)  # before LoopingMedia is defined: its vfuncs take Gst types

# Keyframe every 5 frames: a reader that joins a running (shared) stream, or one
# reconnecting after a drop, can decode within half a second at 10 fps.
LAUNCH = (
    "( filesrc location={location} ! qtdemux ! decodebin ! videoconvert"
    " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=5"
    " ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)


class LoopingMedia(GstRtspServer.RTSPMedia):
    """A media whose pipeline goes back to the start instead of ending.

    EOS must never reach the RTP session: it would send RTCP BYE and readers
    would take the camera as gone. So once prepared, the media does a segment
    seek: at the end of the file the demuxer posts SEGMENT_DONE instead of
    sending EOS, and a non-flushing segment seek to 0 starts the next pass with
    running time (and RTP timestamps) still increasing: readers see one
    continuous stream.
    """

    def do_prepared(self) -> None:
        # Not from inside the signal: the seek waits for a preroll that this
        # thread would have to deliver.
        print("prepared", file=sys.stderr)
        GLib.idle_add(self._start_segment)

    def _start_segment(self) -> bool:
        ok, whole = GstRtsp.rtsp_range_parse("npt=0-")
        print("seek", self.seek_full(whole, Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT), file=sys.stderr)
        return GLib.SOURCE_REMOVE

    def do_handle_message(self, message: Gst.Message) -> bool:
        print("msg", message.type, file=sys.stderr)
        if message.type == Gst.MessageType.SEGMENT_DONE:
            pipeline = self.get_element().get_parent()
            pipeline.seek(
                1.0, Gst.Format.TIME, Gst.SeekFlags.SEGMENT,
                Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1,
            )
            return True
        return GstRtspServer.RTSPMedia.do_handle_message(self, message)


def make_factory(video: Path, loop: bool) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH.format(location=_quote(video)))
    factory.set_shared(True)
    if loop:
        factory.set_media_gtype(LoopingMedia.__gtype__)
    return factory


def _quote(path: Path) -> str:
    """The path as a gst-launch string value."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_mount(text: str) -> tuple[str, Path]:
    name, sep, location = text.partition("=")
    path = Path(location).resolve()
    if not sep or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path}: no such file")
    return name, path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--mount", type=parse_mount, action="append", required=True)
    parser.add_argument("--loop", action="store_true", help="repeat each file forever")
    args = parser.parse_args()

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for name, path in args.mount:
        mounts.add_factory(f"/{name}", make_factory(path, args.loop))

    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr)
        return 1

    main_loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, main_loop.quit)
    print(f"READY {args.port}", flush=True)
    main_loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
