"""A real RTSP server for tests: serves video files as camera streams.

    /usr/bin/python3 mamoru/demo/camera_server.py --port 8554 \\
        --mount cam1=/path/a.mp4 --mount cam2=/path/b.mp4 [--loop]

Each mount is `rtsp://127.0.0.1:PORT/NAME`. The file is decoded (anything
`decodebin` knows, including OpenCV's 'mp4v' MPEG-4 part 2 through avdec_mpeg4
from gstreamer1.0-libav), re-encoded to H.264 and paced at the file's own frame
rate, as a camera sends it. All readers of one mount share one pipeline, as
they would share one camera; a pipeline starts at the file's first frame when
its first reader connects. Without --loop a stream ends with the file (readers
get RTCP BYE); with --loop it never ends. Prints `READY <port>` on stdout once
listening; SIGTERM or SIGINT stops it.

This runs on Debian's own interpreter (/usr/bin/python3), not the project's
virtual environment: GStreamer's RTSP server is reached through the `gi`
bindings (python3-gi, gir1.2-gst-rtsp-server-1.0), system packages that pip
cannot install into the venv. Tests start it as a subprocess through
mamoru/demo/cameras.py; `make system-deps` installs the packages.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

# key-int-max=5: a reader that joins a running stream, or comes back after a
# drop, decodes within half a second at 10 fps (x264's default is 250 frames).
# sliced-threads=false: tune=zerolatency otherwise cuts each frame into slices,
# which OpenCV's FFmpeg reader turns into extra, half-concealed frames.
# config-interval=-1: SPS/PPS before every keyframe, for readers joining late.
LAUNCH = (
    "( filesrc location={location} ! qtdemux ! decodebin ! videoconvert"
    " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=5 sliced-threads=false"
    " ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)


def loop_forever(factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
    """Make a media's pipeline go back to the file's start instead of ending.

    EOS must never reach the RTP session: it sends RTCP BYE and every reader
    takes the camera as gone. So EOS is dropped before the payloader and
    answered with a flushing *segment* seek to 0; from then on the demuxer
    posts SEGMENT_DONE at the end of the file instead of sending EOS, and a
    non-flushing segment seek starts the next pass with timestamps still
    increasing. (Only the first wrap, the flushing one, restarts timestamps.)
    """
    pipeline = media.get_element().get_parent()

    def seek_to_start(flags: Gst.SeekFlags) -> bool:
        pipeline.seek(
            1.0,
            Gst.Format.TIME,
            flags | Gst.SeekFlags.SEGMENT,
            Gst.SeekType.SET,
            0,
            Gst.SeekType.NONE,
            -1,
        )
        return bool(GLib.SOURCE_REMOVE)

    def on_event(pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        if info.get_event().type != Gst.EventType.EOS:
            return Gst.PadProbeReturn.OK
        # Not from this streaming thread: a flushing seek waits for it to stop.
        GLib.idle_add(seek_to_start, Gst.SeekFlags.FLUSH)
        return Gst.PadProbeReturn.DROP

    def on_segment_done(media: GstRtspServer.RTSPMedia, message: Gst.Message) -> bool:
        seek_to_start(Gst.SeekFlags.NONE)
        return True

    payloader_sink = media.get_element().get_by_name("pay0").get_static_pad("sink")
    payloader_sink.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, on_event)
    media.connect("handle-message::segment-done", on_segment_done)


def make_factory(video: Path, loop: bool) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH.format(location=_launch_string(video)))
    factory.set_shared(True)
    if loop:
        factory.connect("media-configure", loop_forever)
    return factory


def _launch_string(path: Path) -> str:
    """A path quoted as a gst-launch property value."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_mount(text: str) -> tuple[str, Path]:
    name, sep, location = text.partition("=")
    if not sep or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    path = Path(location).resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path}: no such file")
    return name, path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument(
        "--mount",
        type=parse_mount,
        action="append",
        required=True,
        metavar="NAME=FILE",
        help="serve FILE at rtsp://127.0.0.1:PORT/NAME",
    )
    parser.add_argument("--loop", action="store_true", help="repeat each file forever")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mount_points = server.get_mount_points()
    for name, path in args.mount:
        mount_points.add_factory(f"/{name}", make_factory(path, args.loop))
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)  # noqa: T201
        return 1

    main_loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, main_loop.quit)
    print(f"READY {args.port}", flush=True)  # noqa: T201
    main_loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
